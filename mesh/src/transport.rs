//! How parties talk: the [`Transport`] trait (one call = one communication round), the
//! client's [`ClientLink`], and the [`Counters`] of what was sent.
//!
//! Transports move opaque byte messages; the protocol layer ([`crate::Party`]) frames them
//! (module `frame`, whose constants are re-exported here), so the counters and the checks on a
//! peer's message are the same whatever carries the bytes.

use crate::error::MeshError;

pub use crate::frame::{HEADER_BYTES, WIRE_VERSION};

/// A party's link to the other parties and to the client. Blocking: a protocol thread waits in
/// [`Transport::exchange`] until every expected message has arrived (or a deadline passes).
pub trait Transport: Send {
    /// Number of parties in the mesh.
    fn parties(&self) -> usize;
    /// This party's 0-based index.
    fn index(&self) -> usize;
    /// One communication round: send `outgoing[j]` to every party `j` where it is `Some`, then
    /// receive exactly one message from every party `j` with `expect[j]`. Entry `j` of the
    /// result is the message from party `j` (`None` where none was expected).
    fn exchange(
        &mut self,
        outgoing: Vec<Option<Vec<u8>>>,
        expect: &[bool],
    ) -> Result<Vec<Option<Vec<u8>>>, MeshError>;
    /// Send a message to the client.
    fn send_to_client(&mut self, msg: Vec<u8>) -> Result<(), MeshError>;
    /// Wait for the next message from the client.
    fn recv_from_client(&mut self) -> Result<Vec<u8>, MeshError>;
}

/// The client's link to the parties.
pub trait ClientLink: Send {
    /// Number of parties.
    fn parties(&self) -> usize;
    /// Send a message to one party.
    fn send_to_party(&mut self, party: usize, msg: Vec<u8>) -> Result<(), MeshError>;
    /// Wait for the next message from one party.
    fn recv_from_party(&mut self, party: usize) -> Result<Vec<u8>, MeshError>;
}

/// Traffic of one phase, as seen by one party (sent side only; the protocol is symmetric
/// enough that received figures follow).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PhaseCounters {
    /// Communication rounds (calls of [`Transport::exchange`]).
    pub rounds: u64,
    /// Messages sent.
    pub messages: u64,
    /// Field elements sent (summed over messages).
    pub elements: u64,
    /// Bytes sent, frame headers included.
    pub bytes: u64,
    /// Degree reductions (multiplications) this party took part in.
    pub reductions: u64,
    /// Values opened (masked values made public to the parties).
    pub openings: u64,
}

impl PhaseCounters {
    /// Component-wise difference `self - earlier` (for measuring one operation).
    pub fn since(&self, earlier: &PhaseCounters) -> PhaseCounters {
        PhaseCounters {
            rounds: self.rounds - earlier.rounds,
            messages: self.messages - earlier.messages,
            elements: self.elements - earlier.elements,
            bytes: self.bytes - earlier.bytes,
            reductions: self.reductions - earlier.reductions,
            openings: self.openings - earlier.openings,
        }
    }
}

/// All counters of one party.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// The online phase (protocols on inputs).
    pub online: PhaseCounters,
    /// Preprocessing (random masks and bits), whenever it ran.
    pub offline: PhaseCounters,
    /// Messages to the client (`rounds` stays 0: the client is not part of a round).
    pub client: PhaseCounters,
}

impl Counters {
    /// Component-wise difference `self - earlier`.
    pub fn since(&self, earlier: &Counters) -> Counters {
        Counters {
            online: self.online.since(&earlier.online),
            offline: self.offline.since(&earlier.offline),
            client: self.client.since(&earlier.client),
        }
    }
}
