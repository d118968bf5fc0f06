//! What the event loop and the rest of the crate say to each other: the [`NetEvent`]s it
//! broadcasts, the [`Command`]s [`crate::NetHandle`] and [`crate::NetTransport`] send it, and
//! the [`ControlRequest`]s it hands to the node.

use std::collections::HashMap;
use std::time::Duration;

use libp2p::{Multiaddr, PeerId};
use mesh::{Endpoint, PartyId};
use tokio::sync::{mpsc, oneshot};

use crate::error::{DialFailure, NetError};
use crate::frame::{MpcFrame, SessionId};
use crate::quorum::{Announcement, QuorumConflict, QuorumView, ShareSummary};

/// Where the answer to a receive or a control request goes.
pub(crate) type Reply = oneshot::Sender<Result<Vec<u8>, NetError>>;

/// Something that happened on the mesh, for whoever subscribed ([`crate::NetHandle::subscribe`]).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum NetEvent {
    /// Listening on a new address.
    Listening(Multiaddr),
    /// First connection to an admitted peer.
    PeerConnected(PeerId),
    /// Last connection to a peer closed.
    PeerDisconnected(PeerId),
    /// A peer's announcement was accepted into the quorum view.
    Announced {
        /// The peer.
        peer: PeerId,
        /// What it announced.
        announcement: Announcement,
    },
    /// A peer's announcement was not accepted.
    Conflict(QuorumConflict),
    /// At least 2t+1 distinct parties are now connected.
    QuorumFormed(QuorumView),
    /// The quorum fell below 2t+1 parties.
    QuorumLost(QuorumView),
    /// A connection attempt to this node failed or was denied (wrong PSK, failed Noise
    /// handshake, peer not on the allow-list, garbage).
    Refused {
        /// The peer, when the handshake got far enough to know it.
        peer: Option<PeerId>,
        /// Where it came from.
        addr: Multiaddr,
        /// Why.
        reason: String,
    },
    /// A frame this node sent was not delivered.
    SendFailed {
        /// The destination (a party or the session's client), if known.
        to: Option<Endpoint>,
        /// The destination peer, if known.
        peer: Option<PeerId>,
        /// Why.
        reason: String,
    },
    /// An incoming frame was rejected or could not be read.
    InboundRejected {
        /// The sending peer.
        peer: PeerId,
        /// Why.
        reason: String,
    },
}

/// Requests from [`crate::NetHandle`] and [`crate::NetTransport`] to the event loop.
#[derive(Debug)]
pub(crate) enum Command {
    Listen {
        addr: Multiaddr,
        reply: oneshot::Sender<Result<Multiaddr, NetError>>,
    },
    AddStaticPeer {
        addr: Multiaddr,
        reply: oneshot::Sender<Result<(), NetError>>,
    },
    /// Fire and forget: delivery problems are logged and show up at the receiver.
    Send {
        to: Endpoint,
        frame: MpcFrame,
    },
    Recv {
        from: Endpoint,
        session: SessionId,
        round: u64,
        deadline: std::time::Instant,
        reply: Reply,
    },
    EndSession {
        session: SessionId,
    },
    Quorum {
        reply: oneshot::Sender<QuorumView>,
    },
    Control {
        peer: PeerId,
        body: Vec<u8>,
        reply: Reply,
    },
    ControlRespond {
        id: u64,
        body: Vec<u8>,
    },
    BindClient {
        session: SessionId,
        peer: PeerId,
        reply: oneshot::Sender<Result<(), NetError>>,
    },
    AdoptSummary {
        summary: ShareSummary,
        reply: oneshot::Sender<Result<QuorumView, NetError>>,
    },
    Announcements {
        reply: oneshot::Sender<Vec<(PeerId, Announcement)>>,
    },
    Rtts {
        reply: oneshot::Sender<HashMap<PeerId, Duration>>,
    },
    DialFailures {
        reply: oneshot::Sender<Vec<(PeerId, DialFailure)>>,
    },
    Instances {
        reply: oneshot::Sender<HashMap<PeerId, Vec<Vec<Multiaddr>>>>,
    },
    Shutdown,
}

/// A control message from a connected (admitted) peer. Answer it with
/// [`ControlRequest::respond`]; one that is dropped unanswered fails at the requester when its
/// request times out.
#[derive(Debug)]
pub struct ControlRequest {
    /// The sending peer.
    pub peer: PeerId,
    /// Its party index, if it announced one that this node's quorum view accepted.
    pub party: Option<PartyId>,
    /// The message (opaque to the mesh).
    pub body: Vec<u8>,
    pub(crate) id: u64,
    pub(crate) commands: mpsc::Sender<Command>,
}

impl ControlRequest {
    /// Sends the answer back to the requester.
    pub async fn respond(self, body: Vec<u8>) -> Result<(), NetError> {
        self.commands
            .send(Command::ControlRespond { id: self.id, body })
            .await
            .map_err(|_| NetError::Shutdown)
    }
}
