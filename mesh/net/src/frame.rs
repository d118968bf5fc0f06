//! Wire formats of Sotto's two protocols and their libp2p request-response codecs.
//!
//! Every message on a stream is `[length: u32 LE][body]`. The length is checked against the
//! configured limit before anything is allocated, and the body is read into a buffer that grows
//! with the bytes that actually arrive, so a peer cannot make a node reserve memory by lying
//! about a length. Every body starts with a version byte ([`WIRE_VERSION`]), checked before
//! anything else is decoded.
//!
//! - `/sotto/mpc/2`: one long-lived stream per (sender, receiver) pair. The sender writes
//!   [`MpcFrame`]s back to back, each `[length][version][postcard FrameHeader][payload]`, with
//!   no per-frame answer. The payload is one protocol message of [`mesh::transport`] (its own
//!   version, round and count, then field elements as u128 little-endian), carried as raw
//!   bytes after the postcard header rather than as a postcard byte sequence, so encoding a
//!   64 MiB round is a copy, not a loop over serde calls. The receiver writes back only when
//!   it drops a frame: a [`Rejection`], `[length][version][postcard]`. A frame over the
//!   receiver's limit is refused on its length prefix and its body skipped without being
//!   stored ([`read_stream_frame`]), so the stream stays in step.
//! - `/sotto/announce/2`: request and response = `Option<`[`Announcement`]`>` (`None` from an
//!   observer such as a client), body `[version][postcard]`, at most
//!   [`MAX_ANNOUNCEMENT_BYTES`] (the roster's entries are bounded when decoded).
//! - `/sotto/control/1`: request and response = opaque bytes (at most
//!   [`MAX_CONTROL_MESSAGE_BYTES`]), body `[version][bytes]`. The mesh only carries them; the
//!   node defines what they mean (session requests, recovery, status).

use std::fmt;
use std::io;

use async_trait::async_trait;
use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::StreamProtocol;
use libp2p::request_response;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use mesh::Endpoint;

use crate::quorum::Announcement;

/// Version byte at the start of every body; bumped on any incompatible change.
pub const WIRE_VERSION: u8 = 1;
/// Sender index of the client: 0 is the Shamir point of the secret itself, never a party.
pub const CLIENT: u8 = 0;

/// The sender number an [`MpcFrame`] carries for `from`: a party's 1-based number, [`CLIENT`]
/// for the client.
pub fn wire_number(from: Endpoint) -> u8 {
    match from {
        Endpoint::Party(p) => p.number(),
        Endpoint::Client => CLIENT,
    }
}
/// Protocol name of MPC round traffic.
pub const MPC_PROTOCOL: StreamProtocol = StreamProtocol::new("/sotto/mpc/2");
/// Protocol name of the announcement exchange.
// 2: announcements carry the roster (party index -> device peer ID).
pub const ANNOUNCE_PROTOCOL: StreamProtocol = StreamProtocol::new("/sotto/announce/2");
/// Protocol name of the node's control messages (sessions, recovery, status).
pub const CONTROL_PROTOCOL: StreamProtocol = StreamProtocol::new("/sotto/control/1");
/// Limit on one control message: session requests and status replies are a few kilobytes.
pub const MAX_CONTROL_MESSAGE_BYTES: usize = 64 * 1024;
/// Default limit on one MPC frame body (64 MiB: 4 Mi field elements).
pub const DEFAULT_MAX_FRAME_BYTES: usize = 64 * 1024 * 1024;
/// Limit on announcements, acks and rejections: all are a few dozen bytes, so anything larger is hostile.
pub const MAX_CONTROL_BYTES: usize = 1024;
/// Limit on one announcement: the summary and the roster, at most 64 parties of at most
/// [`crate::roster::MAX_PEER_ID_BYTES`] bytes each (an ed25519 roster of 64 is about 2.5 KiB).
pub const MAX_ANNOUNCEMENT_BYTES: usize = 8 * 1024;
/// Bytes of the length prefix in front of every body.
pub const LENGTH_PREFIX_BYTES: usize = 4;

/// First allocation when reading a body; it grows only as bytes arrive.
const INITIAL_READ_CAPACITY: usize = 64 * 1024;
/// Largest postcard encoding of `FrameHeader`: two u64 varints, a u8 and a u32 varint.
const MAX_HEADER_BYTES: usize = 10 + 10 + 1 + 5;

/// Identifies one MPC computation (one query), so rounds of two queries never mix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct SessionId(pub u64);

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// One party's whole traffic to one other party (or the client) in one round.
///
/// `Debug` prints the payload's length, never its bytes: they are shares.
#[derive(Clone, PartialEq, Eq)]
pub struct MpcFrame {
    /// The computation this round belongs to.
    pub session: SessionId,
    /// Round number within the session.
    pub round: u64,
    /// The sender's party index (1-based Shamir evaluation point; [`CLIENT`] for the client).
    /// The receiver checks it against what the sending peer announced.
    pub sender: u8,
    /// One protocol message (opaque here).
    pub payload: Vec<u8>,
}

impl fmt::Debug for MpcFrame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MpcFrame")
            .field("session", &self.session)
            .field("round", &self.round)
            .field("sender", &self.sender)
            .field("payload_bytes", &self.payload.len())
            .finish()
    }
}

#[derive(Serialize, Deserialize)]
struct FrameHeader {
    session: u64,
    round: u64,
    sender: u8,
    len: u32,
}

impl MpcFrame {
    fn header(&self) -> Result<FrameHeader, FrameError> {
        let len = u32::try_from(self.payload.len()).map_err(|_| FrameError::TooLarge {
            len: self.payload.len() as u64,
            max: u32::MAX as usize,
        })?;
        Ok(FrameHeader {
            session: self.session.0,
            round: self.round,
            sender: self.sender,
            len,
        })
    }

    /// Length of [`MpcFrame::encode`]'s output, computed without building it (the link
    /// emulator needs it on the send path).
    pub fn encoded_len(&self) -> Result<usize, FrameError> {
        let mut scratch = [0u8; MAX_HEADER_BYTES];
        let header = postcard::to_slice(&self.header()?, &mut scratch)?;
        Ok(1 + header.len() + self.payload.len())
    }

    /// The frame body (without length prefix).
    pub fn encode(&self) -> Result<Vec<u8>, FrameError> {
        let mut scratch = [0u8; MAX_HEADER_BYTES];
        let header = postcard::to_slice(&self.header()?, &mut scratch)?;
        let mut body = Vec::with_capacity(1 + header.len() + self.payload.len());
        body.push(WIRE_VERSION);
        body.extend_from_slice(header);
        body.extend_from_slice(&self.payload);
        Ok(body)
    }

    /// The frame as it goes on an MPC stream: `[length: u32 LE][body]`, in one buffer so that
    /// it leaves in one write. Refuses bodies above `max`.
    pub fn encode_prefixed(&self, max: usize) -> Result<Vec<u8>, FrameError> {
        let mut scratch = [0u8; MAX_HEADER_BYTES];
        let header = postcard::to_slice(&self.header()?, &mut scratch)?;
        let body_len = 1 + header.len() + self.payload.len();
        let len = u32::try_from(body_len)
            .ok()
            .filter(|&l| l as usize <= max)
            .ok_or(FrameError::TooLarge {
                len: body_len as u64,
                max,
            })?;
        let mut wire = Vec::with_capacity(LENGTH_PREFIX_BYTES + body_len);
        wire.extend_from_slice(&len.to_le_bytes());
        wire.push(WIRE_VERSION);
        wire.extend_from_slice(header);
        wire.extend_from_slice(&self.payload);
        Ok(wire)
    }

    /// Parses a frame body; any inconsistency is an error, never a panic.
    pub fn decode(body: &[u8]) -> Result<Self, FrameError> {
        let rest = check_version(body)?;
        let (header, payload) = postcard::take_from_bytes::<FrameHeader>(rest)?;
        if payload.len() as u64 != u64::from(header.len) {
            return Err(FrameError::PayloadLength {
                declared: header.len,
                bytes: payload.len(),
            });
        }
        Ok(MpcFrame {
            session: SessionId(header.session),
            round: header.round,
            sender: header.sender,
            payload: payload.to_vec(),
        })
    }
}

/// The receiver's verdict on an [`MpcFrame`]; only a rejection travels back to the sender.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Ack {
    /// Delivered to a waiting receive or buffered for a later one.
    Accepted,
    /// Dropped; the sender logs why.
    Rejected(Rejection),
}

/// Why a receiver dropped an [`MpcFrame`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[non_exhaustive]
pub enum Rejection {
    /// The sending peer has not (successfully) announced a party index to the receiver.
    #[error("the receiver has no accepted announcement from the sending peer")]
    NotAnnounced,
    /// The frame's sender index differs from the index the peer announced.
    #[error("the frame's sender index does not match the sending peer's announced party")]
    SenderMismatch,
    /// A frame for the same (sender, session, round) is already buffered.
    #[error("a frame for this sender, session and round was already received")]
    Duplicate,
    /// The receiver's bounded buffer of not-yet-requested frames is full.
    #[error("the receiver's buffer of frames for future rounds is full")]
    BufferFull,
    /// A client sent a frame for a session another client started.
    #[error("the session belongs to another client")]
    ForeignSession,
    /// The frame is longer than the receiver's `max_frame_bytes`; its body was skipped.
    #[error(
        "the frame exceeds the receiver's frame size limit (max_frame_bytes must be the same on every node)"
    )]
    TooLarge,
    /// The frame's body did not decode (wrong version, bad header, inconsistent length).
    #[error("the frame could not be decoded")]
    Malformed,
}

/// A message that could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The length prefix (or an outgoing frame) exceeds the configured limit.
    #[error(
        "message of {len} bytes exceeds the limit of {max} bytes (max_frame_bytes must be the same on every node)"
    )]
    TooLarge {
        /// Announced or actual length.
        len: u64,
        /// Configured limit.
        max: usize,
    },
    /// The stream ended before the announced length.
    #[error("message truncated: {got} of {expected} bytes arrived")]
    Truncated {
        /// Announced length.
        expected: usize,
        /// Bytes that arrived.
        got: usize,
    },
    /// A body with no version byte.
    #[error("empty message")]
    Empty,
    /// The peer speaks another wire version.
    #[error(
        "unsupported wire version {got} (this node speaks {expected}): run the same Sotto version on every device"
    )]
    UnsupportedVersion {
        /// Version byte received.
        got: u8,
        /// [`WIRE_VERSION`].
        expected: u8,
    },
    /// The postcard part did not decode (or encode).
    #[error("malformed message: {0}")]
    Malformed(#[from] postcard::Error),
    /// The payload length in the header disagrees with the bytes present.
    #[error("frame declares a {declared}-byte payload but carries {bytes} bytes")]
    PayloadLength {
        /// Payload length from the header.
        declared: u32,
        /// Payload bytes present.
        bytes: usize,
    },
    /// Bytes left over after a complete control message.
    #[error("{0} unexpected bytes after the message")]
    TrailingBytes(usize),
    /// The stream failed.
    #[error("stream error: {0}")]
    Io(#[from] io::Error),
}

impl From<FrameError> for io::Error {
    fn from(e: FrameError) -> io::Error {
        match e {
            FrameError::Io(e) => e,
            other => io::Error::new(io::ErrorKind::InvalidData, other),
        }
    }
}

fn check_version(body: &[u8]) -> Result<&[u8], FrameError> {
    let (&version, rest) = body.split_first().ok_or(FrameError::Empty)?;
    if version != WIRE_VERSION {
        return Err(FrameError::UnsupportedVersion {
            got: version,
            expected: WIRE_VERSION,
        });
    }
    Ok(rest)
}

/// Encodes a control message (announcement, ack): `[version][postcard]`.
pub fn encode_control<T: Serialize>(msg: &T) -> Result<Vec<u8>, FrameError> {
    let mut body = vec![WIRE_VERSION];
    body.extend_from_slice(&postcard::to_allocvec(msg)?);
    Ok(body)
}

/// Decodes a control message, rejecting trailing bytes.
pub fn decode_control<T: DeserializeOwned>(body: &[u8]) -> Result<T, FrameError> {
    let rest = check_version(body)?;
    let (msg, trailing) = postcard::take_from_bytes::<T>(rest)?;
    if !trailing.is_empty() {
        return Err(FrameError::TrailingBytes(trailing.len()));
    }
    Ok(msg)
}

/// Reads one `[length][body]` message, refusing lengths above `max` before allocating.
pub async fn read_length_prefixed<R>(io: &mut R, max: usize) -> Result<Vec<u8>, FrameError>
where
    R: AsyncRead + Unpin,
{
    let mut prefix = [0u8; LENGTH_PREFIX_BYTES];
    io.read_exact(&mut prefix).await?;
    let len = u32::from_le_bytes(prefix);
    check_length(len, max)?;
    read_body(io, len).await
}

fn check_length(len: u32, max: usize) -> Result<(), FrameError> {
    if usize::try_from(len).unwrap_or(usize::MAX) > max {
        return Err(FrameError::TooLarge {
            len: u64::from(len),
            max,
        });
    }
    Ok(())
}

/// Reads a body of `len` bytes into a buffer that grows only as bytes arrive.
async fn read_body<R>(io: &mut R, len: u32) -> Result<Vec<u8>, FrameError>
where
    R: AsyncRead + Unpin,
{
    let len_usize = usize::try_from(len).unwrap_or(usize::MAX);
    let mut body = Vec::with_capacity(len_usize.min(INITIAL_READ_CAPACITY));
    (&mut *io)
        .take(u64::from(len))
        .read_to_end(&mut body)
        .await?;
    if body.len() != len_usize {
        return Err(FrameError::Truncated {
            expected: len_usize,
            got: body.len(),
        });
    }
    Ok(body)
}

/// One read from an MPC stream ([`read_stream_frame`]).
#[derive(Debug)]
pub enum StreamItem {
    /// A complete, well-formed frame.
    Frame(MpcFrame),
    /// A complete message that is not an acceptable frame (over the limit, whose body was
    /// skipped without being stored, or undecodable). The stream is still in step.
    Bad(FrameError),
    /// The sender closed the stream cleanly, between two frames.
    End,
}

/// Reads the next frame of an MPC stream. A length above `max` is refused before anything is
/// allocated; the body is then read and discarded through a small fixed buffer, so the stream
/// stays usable and memory stays bounded. `Err` means the stream itself failed or ended in
/// the middle of a frame, and cannot be read further.
pub async fn read_stream_frame<R>(io: &mut R, max: usize) -> Result<StreamItem, FrameError>
where
    R: AsyncRead + Unpin,
{
    let mut prefix = [0u8; LENGTH_PREFIX_BYTES];
    // A clean end is only possible before the first byte of a prefix.
    let first = io.read(&mut prefix[..1]).await?;
    if first == 0 {
        return Ok(StreamItem::End);
    }
    io.read_exact(&mut prefix[1..]).await?;
    let len = u32::from_le_bytes(prefix);
    if let Err(e) = check_length(len, max) {
        let skipped =
            futures::io::copy((&mut *io).take(u64::from(len)), &mut futures::io::sink()).await?;
        if skipped != u64::from(len) {
            return Err(FrameError::Truncated {
                expected: usize::try_from(len).unwrap_or(usize::MAX),
                got: usize::try_from(skipped).unwrap_or(usize::MAX),
            });
        }
        return Ok(StreamItem::Bad(e));
    }
    let body = read_body(io, len).await?;
    Ok(match MpcFrame::decode(&body) {
        Ok(frame) => StreamItem::Frame(frame),
        Err(e) => StreamItem::Bad(e),
    })
}

/// Writes one `[length][body]` message, refusing bodies above `max`.
pub async fn write_length_prefixed<W>(io: &mut W, body: &[u8], max: usize) -> Result<(), FrameError>
where
    W: AsyncWrite + Unpin,
{
    let len = u32::try_from(body.len())
        .ok()
        .filter(|&l| l as usize <= max)
        .ok_or(FrameError::TooLarge {
            len: body.len() as u64,
            max,
        })?;
    io.write_all(&len.to_le_bytes()).await?;
    io.write_all(body).await?;
    Ok(())
}

/// Codec of `/sotto/announce/2`.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct AnnounceCodec;

#[async_trait]
impl request_response::Codec for AnnounceCodec {
    type Protocol = StreamProtocol;
    type Request = Option<Announcement>;
    type Response = Option<Announcement>;

    async fn read_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<Option<Announcement>>
    where
        T: AsyncRead + Unpin + Send,
    {
        let body = read_length_prefixed(io, MAX_ANNOUNCEMENT_BYTES).await?;
        Ok(decode_control(&body)?)
    }

    async fn read_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<Option<Announcement>>
    where
        T: AsyncRead + Unpin + Send,
    {
        let body = read_length_prefixed(io, MAX_ANNOUNCEMENT_BYTES).await?;
        Ok(decode_control(&body)?)
    }

    async fn write_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        msg: Option<Announcement>,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        let body = encode_control(&msg)?;
        Ok(write_length_prefixed(io, &body, MAX_ANNOUNCEMENT_BYTES).await?)
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        msg: Option<Announcement>,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        let body = encode_control(&msg)?;
        Ok(write_length_prefixed(io, &body, MAX_ANNOUNCEMENT_BYTES).await?)
    }
}

/// Codec of `/sotto/control/1`: opaque bodies behind the version byte.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct ControlCodec;

impl ControlCodec {
    async fn read<T>(io: &mut T) -> io::Result<Vec<u8>>
    where
        T: AsyncRead + Unpin + Send,
    {
        let body = read_length_prefixed(io, MAX_CONTROL_MESSAGE_BYTES + 1).await?;
        Ok(check_version(&body)?.to_vec())
    }

    async fn write<T>(io: &mut T, msg: Vec<u8>) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        let mut body = Vec::with_capacity(msg.len() + 1);
        body.push(WIRE_VERSION);
        body.extend_from_slice(&msg);
        Ok(write_length_prefixed(io, &body, MAX_CONTROL_MESSAGE_BYTES + 1).await?)
    }
}

#[async_trait]
impl request_response::Codec for ControlCodec {
    type Protocol = StreamProtocol;
    type Request = Vec<u8>;
    type Response = Vec<u8>;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Vec<u8>>
    where
        T: AsyncRead + Unpin + Send,
    {
        Self::read(io).await
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Vec<u8>>
    where
        T: AsyncRead + Unpin + Send,
    {
        Self::read(io).await
    }

    async fn write_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        msg: Vec<u8>,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        Self::write(io, msg).await
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        msg: Vec<u8>,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        Self::write(io, msg).await
    }
}

#[cfg(test)]
mod tests {
    use futures::executor::block_on;
    use futures::io::Cursor;
    use proptest::prelude::*;

    use super::*;
    use crate::quorum::ShareSummary;

    fn frame(payload: Vec<u8>) -> MpcFrame {
        MpcFrame {
            session: SessionId(0xdead_beef),
            round: 7,
            sender: 2,
            payload,
        }
    }

    #[test]
    fn frame_round_trips_and_reports_its_length() {
        let f = frame((0..=255).collect());
        let body = f.encode().unwrap();
        assert_eq!(body.len(), f.encoded_len().unwrap());
        assert_eq!(body[0], WIRE_VERSION);
        assert_eq!(MpcFrame::decode(&body).unwrap(), f);
        let wire = f.encode_prefixed(body.len()).unwrap();
        assert_eq!(
            wire[..LENGTH_PREFIX_BYTES],
            (body.len() as u32).to_le_bytes()
        );
        assert_eq!(wire[LENGTH_PREFIX_BYTES..], body[..]);
        assert!(matches!(
            f.encode_prefixed(body.len() - 1),
            Err(FrameError::TooLarge { .. })
        ));
    }

    #[test]
    fn payload_is_carried_verbatim_after_the_header() {
        let payload: Vec<u8> = (1..=40).collect();
        let body = frame(payload.clone()).encode().unwrap();
        assert_eq!(&body[body.len() - payload.len()..], &payload[..]);
    }

    #[test]
    fn wrong_version_is_rejected() {
        let mut body = frame(vec![5]).encode().unwrap();
        body[0] = WIRE_VERSION + 1;
        assert!(matches!(
            MpcFrame::decode(&body),
            Err(FrameError::UnsupportedVersion { got, .. }) if got == WIRE_VERSION + 1
        ));
        assert!(matches!(MpcFrame::decode(&[]), Err(FrameError::Empty)));
    }

    #[test]
    fn declared_length_must_match_payload() {
        let mut body = frame(vec![5, 6]).encode().unwrap();
        body.pop();
        assert!(matches!(
            MpcFrame::decode(&body),
            Err(FrameError::PayloadLength {
                declared: 2,
                bytes: 1
            })
        ));
        body.extend_from_slice(&[6, 7]);
        assert!(matches!(
            MpcFrame::decode(&body),
            Err(FrameError::PayloadLength {
                declared: 2,
                bytes: 3
            })
        ));
    }

    #[test]
    fn oversized_length_prefix_is_refused_before_reading_the_body() {
        // Claims 4 GiB - 1 and then provides nothing: the reader must fail on the prefix
        // alone, never allocate, never wait for a body.
        let mut wire = Cursor::new(u32::MAX.to_le_bytes().to_vec());
        let err = block_on(read_length_prefixed(&mut wire, DEFAULT_MAX_FRAME_BYTES)).unwrap_err();
        assert!(matches!(err, FrameError::TooLarge { len, .. } if len == u64::from(u32::MAX)));
        // One byte over the limit is enough.
        let mut wire = Cursor::new(1025u32.to_le_bytes().to_vec());
        assert!(matches!(
            block_on(read_length_prefixed(&mut wire, 1024)),
            Err(FrameError::TooLarge {
                len: 1025,
                max: 1024
            })
        ));
    }

    #[test]
    fn short_body_is_truncated_not_padded() {
        let mut bytes = 100u32.to_le_bytes().to_vec();
        bytes.extend_from_slice(&[WIRE_VERSION; 10]);
        let mut wire = Cursor::new(bytes);
        assert!(matches!(
            block_on(read_length_prefixed(&mut wire, 1024)),
            Err(FrameError::Truncated {
                expected: 100,
                got: 10
            })
        ));
    }

    #[test]
    fn writer_refuses_bodies_over_the_limit() {
        let mut out = Cursor::new(Vec::new());
        assert!(matches!(
            block_on(write_length_prefixed(&mut out, &[0; 11], 10)),
            Err(FrameError::TooLarge { len: 11, max: 10 })
        ));
        assert!(out.get_ref().is_empty());
    }

    #[test]
    fn control_messages_round_trip_and_reject_trailing_bytes() {
        let ann = Some(Announcement {
            party: mesh::PartyId::from_number(3).unwrap(),
            summary: ShareSummary {
                model_sha256: [7; 32],
                provisioning_id: [9; 16],
                n: 3,
                t: 1,
                roster_sha256: [5; 32],
            },
            roster: crate::roster::Roster::new(vec![libp2p::PeerId::random(); 1]).unwrap(),
        });
        let mut body = encode_control(&ann).unwrap();
        assert!(body.len() <= MAX_ANNOUNCEMENT_BYTES);
        assert_eq!(decode_control::<Option<Announcement>>(&body).unwrap(), ann);
        // Version, Some, then the party as its 1-based number in one byte (as before PartyId).
        assert_eq!(body[..3], [WIRE_VERSION, 1, 3]);
        let mut zero = body.clone();
        zero[2] = 0;
        assert!(
            decode_control::<Option<Announcement>>(&zero).is_err(),
            "party 0 is the secret's point, never a party"
        );
        body.push(0);
        assert!(matches!(
            decode_control::<Option<Announcement>>(&body),
            Err(FrameError::TrailingBytes(1))
        ));
        let ack = Ack::Rejected(Rejection::BufferFull);
        assert_eq!(
            decode_control::<Ack>(&encode_control(&ack).unwrap()).unwrap(),
            ack
        );
    }

    proptest! {
        #[test]
        fn random_bodies_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = MpcFrame::decode(&bytes);
            let _ = decode_control::<Option<Announcement>>(&bytes);
            let _ = decode_control::<Ack>(&bytes);
        }

        #[test]
        fn random_streams_never_panic_or_exceed_the_limit(
            bytes in proptest::collection::vec(any::<u8>(), 0..512),
        ) {
            let mut wire = Cursor::new(bytes);
            if let Ok(body) = block_on(read_length_prefixed(&mut wire, 256)) {
                prop_assert!(body.len() <= 256);
                let _ = MpcFrame::decode(&body);
            }
        }

        #[test]
        fn versioned_random_bodies_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            // With a valid version byte the decoder gets past the first check and has to cope
            // with a random header.
            let mut body = vec![WIRE_VERSION];
            body.extend_from_slice(&bytes);
            let _ = MpcFrame::decode(&body);
            let _ = decode_control::<Option<Announcement>>(&body);
        }

        #[test]
        fn frames_round_trip(
            session in any::<u64>(),
            round in any::<u64>(),
            sender in any::<u8>(),
            payload in proptest::collection::vec(any::<u8>(), 0..1024),
        ) {
            let f = MpcFrame { session: SessionId(session), round, sender, payload };
            let body = f.encode().unwrap();
            prop_assert_eq!(body.len(), f.encoded_len().unwrap());
            prop_assert_eq!(MpcFrame::decode(&body).unwrap(), f);
        }
    }
}
