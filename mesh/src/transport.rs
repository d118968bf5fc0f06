//! How parties talk: the [`Transport`] trait (one call = one communication round), the
//! client's [`ClientLink`], the wire frame every message uses, and the [`Counters`].
//!
//! Transports move opaque byte messages; the protocol layer ([`crate::Party`]) frames them, so
//! the counters and the checks on a peer's message are the same whatever carries the bytes.
//!
//! Frame: `version: u8 | round: u32 LE | count: u32 LE | count x 16-byte LE field elements`.
//! A receiver checks all four against what the protocol step expects before using anything.

use crate::error::{Endpoint, MeshError, MessageError};
use crate::field::{ELEMENT_BYTES, Fp};

/// Wire-format version byte.
pub const WIRE_VERSION: u8 = 1;
/// Frame header bytes.
pub const HEADER_BYTES: usize = 9;

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

/// Start a frame for `count` elements.
pub(crate) fn frame(round: u32, count: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(HEADER_BYTES + count * ELEMENT_BYTES);
    v.push(WIRE_VERSION);
    v.extend_from_slice(&round.to_le_bytes());
    v.extend_from_slice(&(count as u32).to_le_bytes());
    v
}

#[inline(always)]
pub(crate) fn push(frame: &mut Vec<u8>, x: Fp) {
    frame.extend_from_slice(&x.to_le_bytes());
}

/// Check a frame's header and length against what the step expects; returns its payload.
pub(crate) fn check_frame(
    msg: &[u8],
    round: u32,
    count: usize,
    from: Endpoint,
) -> Result<&[u8], MeshError> {
    let err = |error| MeshError::Malformed { from, error };
    if msg.len() < HEADER_BYTES {
        return Err(err(MessageError::Short(msg.len())));
    }
    if msg[0] != WIRE_VERSION {
        return Err(err(MessageError::Version(msg[0])));
    }
    let got_round = u32::from_le_bytes([msg[1], msg[2], msg[3], msg[4]]);
    if got_round != round {
        return Err(err(MessageError::Sequence {
            expected: round,
            got: got_round,
        }));
    }
    let got_count = u32::from_le_bytes([msg[5], msg[6], msg[7], msg[8]]) as usize;
    if got_count != count {
        return Err(err(MessageError::Count {
            expected: count,
            got: got_count,
        }));
    }
    let expected = HEADER_BYTES + count * ELEMENT_BYTES;
    if msg.len() != expected {
        return Err(err(MessageError::Length {
            expected,
            got: msg.len(),
        }));
    }
    Ok(&msg[HEADER_BYTES..])
}

/// Reads canonical elements from a checked payload.
pub(crate) struct Reader<'a> {
    payload: &'a [u8],
    pos: usize,
    from: Endpoint,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(payload: &'a [u8], from: Endpoint) -> Reader<'a> {
        Reader {
            payload,
            pos: 0,
            from,
        }
    }

    /// The next element. The payload length was checked, so running past the end is a bug in
    /// the caller's count; it is still reported as a malformed message rather than a panic.
    #[inline(always)]
    pub(crate) fn next(&mut self) -> Result<Fp, MeshError> {
        let i = self.pos;
        let bytes = self
            .payload
            .get(i * ELEMENT_BYTES..(i + 1) * ELEMENT_BYTES)
            .ok_or(MeshError::Malformed {
                from: self.from,
                error: MessageError::Short(self.payload.len()),
            })?;
        let mut b = [0u8; ELEMENT_BYTES];
        b.copy_from_slice(bytes);
        self.pos += 1;
        Fp::from_le_bytes(b).ok_or(MeshError::Malformed {
            from: self.from,
            error: MessageError::NonCanonical(i),
        })
    }
}
