//! The network layer's error type.

use libp2p::Multiaddr;
use mesh::{Endpoint, PartyId};

use crate::config::ConfigError;
use crate::frame::{FrameError, SessionId};
use crate::identity::IdentityError;

/// Anything the network layer can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NetError {
    /// The configuration cannot work.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A key file could not be used.
    #[error(transparent)]
    Identity(#[from] IdentityError),
    /// A frame could not be encoded (e.g. above the size limit).
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// The libp2p stack could not be built.
    #[error("could not set up the network stack ({what}): {source}")]
    Setup {
        /// Which part.
        what: &'static str,
        /// The failure.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Listening failed (address in use, not local, ...).
    #[error("could not listen on {addr}: {reason}")]
    Listen {
        /// The address.
        addr: Multiaddr,
        /// Why.
        reason: String,
    },
    /// No message arrived before the deadline.
    #[error("timed out waiting for {from}'s message of session {session} round {round}")]
    Timeout {
        /// Sender.
        from: Endpoint,
        /// Session.
        session: SessionId,
        /// Round.
        round: u64,
    },
    /// No admitted, connected peer holds this party index.
    #[error("party {party} is not connected (no admitted peer has announced that index)")]
    PartyNotConnected {
        /// The party.
        party: PartyId,
    },
    /// The sender (the peer holding a party index, or the session's client) disconnected
    /// while a receive was waiting for it.
    #[error("{from} disconnected while waiting for its message of session {session} round {round}")]
    PartyDisconnected {
        /// Sender.
        from: Endpoint,
        /// Session.
        session: SessionId,
        /// Round.
        round: u64,
    },
    /// Two receives for the same message at once (a protocol bug).
    #[error("a receive for {from}, session {session}, round {round} is already waiting")]
    AlreadyWaiting {
        /// Sender.
        from: Endpoint,
        /// Session.
        session: SessionId,
        /// Round.
        round: u64,
    },
    /// A control request got no answer.
    #[error("control request to {peer} failed: {reason}")]
    Control {
        /// The peer asked.
        peer: libp2p::PeerId,
        /// Why.
        reason: String,
    },
    /// A session already belongs to another client.
    #[error("session {session} already belongs to another client")]
    SessionTaken {
        /// The session.
        session: SessionId,
    },
    /// Only an observer (a client) may change the share summary it counts.
    #[error("this node is a party; only an observer can adopt another share summary")]
    NotAnObserver,
    /// The node has no party index, so it cannot take part in rounds.
    #[error("this node is an observer (no party index) and cannot send or receive MPC rounds")]
    NotAParty,
    /// The event loop has stopped (shut down or panicked).
    #[error("the network event loop has stopped")]
    Shutdown,
    /// The quorum did not form in time.
    #[error(
        "quorum not formed: parties {present:?} are present, {required} are needed; check that the other devices run, share the mesh key and are on each other's allow-lists"
    )]
    QuorumNotFormed {
        /// Parties present (this node's included).
        present: Vec<PartyId>,
        /// 2t+1.
        required: usize,
    },
}
