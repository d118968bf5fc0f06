//! The network layer's error type.

use libp2p::{Multiaddr, PeerId};
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
    /// Listening failed (address not local, not TCP, ...).
    #[error("could not listen on {addr}: {reason}")]
    Listen {
        /// The address.
        addr: Multiaddr,
        /// Why (the whole chain of causes).
        reason: String,
    },
    /// Another socket holds the port (libp2p would have shared it, see
    /// `behaviour::check_port_free`).
    #[error(
        "could not listen on {addr}: address already in use ({reason}); another program, perhaps a second `sotto run` of this device, holds that port: stop it, or give this node another port in its listen address"
    )]
    AddressInUse {
        /// The address.
        addr: Multiaddr,
        /// What the operating system said.
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

/// Why the last attempt to reach a peer failed, as far as this node can tell (see
/// [`crate::NetHandle::dial_failures`]).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DialFailure {
    /// Nothing listens at the address (TCP connection refused).
    #[error(
        "connection refused: nothing listens at that address; check that `sotto run` runs there and that the address and port are right"
    )]
    Refused,
    /// TCP connected, but the mesh handshake (pre-shared key, then Noise) failed.
    #[error(
        "handshake failed ({detail}): the device answered but the mesh handshake did not complete; most likely its mesh key differs from --psk"
    )]
    HandshakeFailed {
        /// The transport's reason.
        detail: String,
    },
    /// The connection was made, then closed by the peer before it announced itself: it does
    /// not admit this node.
    #[error(
        "not admitted: the device accepted the connection, then closed it; add this node's peer ID to its node.toml (`clients` for a client; a device must be in the share files' roster)"
    )]
    NotAdmitted,
    /// Nothing answered before the handshake timeout. A device with another mesh key looks
    /// the same from here: it reads our handshake as noise and waits for more.
    #[error(
        "no answer within the handshake timeout: the device is off or unreachable, the address is wrong, or its mesh key differs from --psk"
    )]
    NoAnswer,
    /// A device answered at the address, but with another identity.
    #[error(
        "wrong peer ID: the device at that address is {obtained}; correct the /p2p/ part of the address"
    )]
    WrongPeer {
        /// The peer ID the device proved.
        obtained: PeerId,
    },
    /// Anything else.
    #[error("{detail}")]
    Other {
        /// What libp2p said.
        detail: String,
    },
}

/// An error and its causes in one line. Some libp2p errors print nothing themselves (a
/// `TransportError::Other` keeps its cause in `source()`), which left "could not listen on
/// ...: " with an empty reason.
pub(crate) fn describe(error: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = Some(error);
    while let Some(e) = next {
        let text = e.to_string();
        // A wrapper often repeats its cause's text; say each thing once.
        if !text.is_empty() && !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        next = e.source();
    }
    if parts.is_empty() {
        return "unknown error (the network stack gave no reason)".to_owned();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use libp2p::TransportError;

    use super::*;

    #[test]
    fn a_silent_transport_error_is_described_by_its_cause() {
        let cause = std::io::Error::new(std::io::ErrorKind::AddrNotAvailable, "cannot assign");
        let silent: TransportError<std::io::Error> = TransportError::Other(cause);
        assert_eq!(
            silent.to_string(),
            "",
            "the libp2p error itself says nothing"
        );
        assert_eq!(describe(&silent), "cannot assign");
    }
}
