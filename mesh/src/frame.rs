//! The wire framing of MPC messages, sealed off from the protocols: building a frame,
//! checking a received one against what the step expects, and reading its elements.
//!
//! Frame: `version: u8 | round: u32 LE | count: u32 LE | count x 16-byte LE field elements`.
//! A receiver checks all four against what the protocol step expects before using anything.

use crate::error::{MeshError, MessageError, Origin};
use crate::field::{ELEMENT_BYTES, Fp};

/// Wire-format version byte.
pub const WIRE_VERSION: u8 = 1;
/// Frame header bytes.
pub const HEADER_BYTES: usize = 9;

/// Start a frame for `count` elements.
pub(crate) fn frame(round: u32, count: usize) -> Vec<u8> {
    frame_in(Vec::new(), round, count)
}

/// Start a frame for `count` elements in `buf` (a reused buffer: its old contents are
/// dropped, its capacity kept).
pub(crate) fn frame_in(mut buf: Vec<u8>, round: u32, count: usize) -> Vec<u8> {
    buf.clear();
    buf.reserve(HEADER_BYTES + count * ELEMENT_BYTES);
    buf.push(WIRE_VERSION);
    buf.extend_from_slice(&round.to_le_bytes());
    buf.extend_from_slice(&(count as u32).to_le_bytes());
    buf
}

/// Append one element to a frame.
#[inline(always)]
pub(crate) fn push(frame: &mut Vec<u8>, x: Fp) {
    frame.extend_from_slice(&x.to_le_bytes());
}

/// Check a frame's header and length against what the step expects; returns its payload.
pub(crate) fn check_frame(
    msg: &[u8],
    round: u32,
    count: usize,
    from: Origin,
) -> Result<&[u8], MeshError> {
    let err = |error| from.error(|from| MeshError::Malformed { from, error });
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
    from: Origin,
}

impl<'a> Reader<'a> {
    /// A reader over the payload of a frame that [`check_frame`] accepted.
    pub(crate) fn of_checked_frame(msg: &'a [u8], from: Origin) -> Reader<'a> {
        Reader::new(msg.get(HEADER_BYTES..).unwrap_or_default(), from)
    }

    pub(crate) fn new(payload: &'a [u8], from: Origin) -> Reader<'a> {
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
            .ok_or_else(|| self.malformed(MessageError::Short(self.payload.len())))?;
        let mut b = [0u8; ELEMENT_BYTES];
        b.copy_from_slice(bytes);
        self.pos += 1;
        Fp::from_le_bytes(b).ok_or_else(|| self.malformed(MessageError::NonCanonical(i)))
    }

    fn malformed(&self, error: MessageError) -> MeshError {
        self.from.error(|from| MeshError::Malformed { from, error })
    }
}
