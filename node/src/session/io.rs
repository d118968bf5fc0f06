//! The session protocol's view of what carries its messages: the small I/O traits the party
//! and client sides are written against, once. The network implements them over a
//! `mesh_net::NetHandle` ([`crate::server::net`], [`crate::client`]); the in-memory one
//! ([`crate::memory`]) over a router in one process. Both are blocking: the protocol runs on
//! plain OS threads.

use std::time::Instant;

use mesh::PartyId;
use mesh_net::SessionId;

use super::wire::{Control, Reply};

/// The other end of a frame: a party, or the session's client.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Peer {
    /// A party of the quorum.
    Party(PartyId),
    /// The client of the session.
    Client,
}

impl std::fmt::Display for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Peer::Party(p) => write!(f, "party {p}"),
            Peer::Client => write!(f, "the client"),
        }
    }
}

/// Why a frame could not be sent or received.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// Nothing arrived before the deadline (the caller may wait again).
    #[error("timed out")]
    Timeout,
    /// Another receive for the same frame is already waiting.
    #[error("another receive is waiting for this frame")]
    Busy,
    /// The peer is not connected, or left.
    #[error("{0}")]
    Gone(String),
    /// Anything else (a refused frame, a stopped node).
    #[error("{0}")]
    Failed(String),
}

/// Numbered frames of one session's streams, between parties and to or from the client.
pub trait Frames: Send + Sync {
    /// Sends `payload` as frame `round` of `session` to `to`.
    fn send(
        &self,
        to: Peer,
        session: SessionId,
        round: u64,
        payload: Vec<u8>,
    ) -> Result<(), FrameError>;

    /// Waits until `deadline` for frame `round` of `session` from `from`.
    fn recv(
        &self,
        from: Peer,
        session: SessionId,
        round: u64,
        deadline: Instant,
    ) -> Result<Vec<u8>, FrameError>;

    /// Forgets a stream: its buffered frames are dropped and later ones refused.
    fn end(&self, session: SessionId);
}

/// What the client noticed while waiting: a party's stall report or a lost party.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    /// A party says a round of `epoch` failed.
    Stalled {
        /// The reporting party.
        party: PartyId,
        /// Its epoch.
        epoch: u32,
        /// What failed.
        reason: String,
    },
    /// The link to a party closed.
    Disconnected(PartyId),
}

/// The client's side: frames plus control messages to each party.
pub trait ClientIo: Frames {
    /// Sends `msg` to `party` and waits for its reply.
    fn control(&self, party: PartyId, msg: &Control) -> Result<Reply, FrameError>;

    /// The failures noticed since the last call, for the session `key` (the parties'
    /// `Stalled` reports are answered here).
    fn failures(&self, key: &super::wire::SessionKey) -> Vec<Failure>;
}

/// The party's side: frames plus a way to warn the client.
pub trait PartyIo: Frames {
    /// Sends `msg` (a [`Control::Stalled`]) to the session's client without waiting.
    fn tell_client(&self, msg: Control);
}

/// Implements [`Frames`] for a type by forwarding to one of its fields (the session I/O types
/// wrap a frame carrier and add their side's control messages).
#[macro_export]
macro_rules! frames_via {
    ($t:ty, $field:ident) => {
        impl $crate::session::Frames for $t {
            fn send(
                &self,
                to: $crate::session::Peer,
                session: mesh_net::SessionId,
                round: u64,
                payload: Vec<u8>,
            ) -> Result<(), $crate::session::FrameError> {
                self.$field.send(to, session, round, payload)
            }

            fn recv(
                &self,
                from: $crate::session::Peer,
                session: mesh_net::SessionId,
                round: u64,
                deadline: std::time::Instant,
            ) -> Result<Vec<u8>, $crate::session::FrameError> {
                self.$field.recv(from, session, round, deadline)
            }

            fn end(&self, session: mesh_net::SessionId) {
                self.$field.end(session)
            }
        }
    };
}
