//! MPC frames on long-lived streams (`/sotto/mpc/2`, through `libp2p-stream`).
//!
//! Each node opens one stream to each peer it sends frames to, the first time it has one, and
//! keeps writing `[length][frame]` messages on it back to back: no substream, protocol
//! negotiation or acknowledgement per frame. A per-peer writer task owns the sending half; a
//! per-stream reader task reads what a peer sends and hands every frame to the event loop,
//! which alone decides whether to accept it (the allow-list keeps non-admitted peers from
//! having a connection, let alone a stream; the event loop checks announcements, sender index
//! and sessions exactly as for every frame). A receiver writes back on the same stream only to
//! report a dropped frame ([`Rejection`]); the sender turns that into
//! [`super::NetEvent::SendFailed`], as it did with per-frame acks.
//!
//! Failures: a write that fails (connection gone, stream reset) is reported as a failed send
//! and the next frame opens a fresh stream; a stream the receiver closed is noticed by the
//! writer's rejection reader and replaced before the next frame. Peer loss itself is still
//! detected by the swarm (connection closed), which ends the peer's writer.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::io::{ReadHalf, WriteHalf};
use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, StreamExt};
use libp2p::{PeerId, Stream};
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::time::Instant;
use tracing::{debug, warn};

use crate::frame::{
    FrameError, MAX_CONTROL_BYTES, MPC_PROTOCOL, MpcFrame, Rejection, StreamItem, WIRE_VERSION,
    decode_control, encode_control, read_length_prefixed, read_stream_body, read_stream_prefix,
    write_length_prefixed,
};
use crate::throttle::{Throttle, WARN_WINDOW};

/// Frames read from peers and waiting for the event loop; a full queue stops the readers, and
/// Yamux's flow control then stops the senders. Their memory is bounded by the
/// [`InboundBudget`] they hold, not by this count.
pub(crate) const INBOUND_QUEUE: usize = 256;
/// Rejections one stream's reader may have queued for its peer; more are dropped and counted
/// (a peer that keeps sending bad frames does not get an answer to each).
pub(crate) const REJECTION_QUEUE: usize = 64;
/// MPC streams one peer may have open to this node at once: one is normal, a replaced one's
/// reader may still be finishing. More are dropped at once.
pub(crate) const MAX_STREAMS_PER_PEER: usize = 4;
/// How often a sender tries to open a stream the receiver then drops.
const OPEN_ATTEMPTS: u32 = 5;
/// How long a sender waits for a new stream's greeting.
const GREETING_TIMEOUT: Duration = Duration::from_secs(10);

/// Memory for incoming frames between the wire and the event loop, in bytes, shared by every
/// stream reader: a reader reserves twice a body's length (the body and the frame decoded
/// from it) before it reads the body, gives back the body's half once decoded, and the frame
/// carries the rest until the event loop has handled it. When the budget is spent, readers
/// wait, and Yamux's flow control stops their senders.
#[derive(Clone, Debug)]
pub(crate) struct InboundBudget {
    bytes: Arc<Semaphore>,
    total: usize,
}

impl InboundBudget {
    /// A budget of `total` bytes (at most `u32::MAX`, checked by the config).
    pub(crate) fn new(total: usize) -> Self {
        let total = total.min(u32::MAX as usize);
        InboundBudget {
            bytes: Arc::new(Semaphore::new(total)),
            total,
        }
    }

    /// The longest body a reader can ever reserve for.
    pub(crate) fn largest_frame(&self) -> usize {
        self.total / 2
    }

    /// Bytes not reserved now.
    pub(crate) fn available(&self) -> usize {
        self.bytes.available_permits()
    }

    /// Waits until twice `len` bytes are free and reserves them; `None` if `len` is over
    /// [`InboundBudget::largest_frame`].
    async fn reserve(&self, len: u32) -> Option<OwnedSemaphorePermit> {
        if usize::try_from(len).map_or(true, |l| l > self.largest_frame()) {
            return None;
        }
        let charge = len.checked_mul(2)?;
        Arc::clone(&self.bytes)
            .acquire_many_owned(charge)
            .await
            .ok()
    }
}

/// How many MPC streams each peer has open to this node.
#[derive(Clone, Debug)]
pub(crate) struct StreamSlots {
    open: Arc<Mutex<HashMap<PeerId, usize>>>,
    max: usize,
}

/// One open stream's place; given back when dropped.
#[derive(Debug)]
pub(crate) struct Slot {
    slots: StreamSlots,
    peer: PeerId,
}

impl StreamSlots {
    pub(crate) fn new(max: usize) -> Self {
        StreamSlots {
            open: Arc::new(Mutex::new(HashMap::new())),
            max,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<PeerId, usize>> {
        // Plain counts: a panicking holder leaves them usable.
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A place for one more stream of `peer`, unless it has `max` open.
    pub(crate) fn take(&self, peer: PeerId) -> Option<Slot> {
        let mut open = self.lock();
        let count = open.entry(peer).or_insert(0);
        if *count >= self.max {
            return None;
        }
        *count += 1;
        Some(Slot {
            slots: self.clone(),
            peer,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.slots.lock();
        if let Some(count) = open.get_mut(&self.peer) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.peer);
            }
        }
    }
}

/// Where the event loop (or the reader itself) sends the rejections of one stream's frames
/// back to their sender: a bounded queue; what does not fit is dropped and counted.
#[derive(Clone, Debug)]
pub(crate) struct Notices {
    queue: mpsc::Sender<Rejection>,
    dropped: Arc<AtomicU64>,
}

impl Notices {
    /// Queues `rejection` for the peer, or counts it as dropped when the queue is full.
    pub(crate) fn send(&self, rejection: Rejection) {
        match self.queue.try_send(rejection) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
            // The stream is gone: nobody left to tell.
            Err(TrySendError::Closed(_)) => {}
        }
    }
}

/// What the stream tasks tell the event loop.
#[derive(Debug)]
pub(crate) enum StreamEvent {
    /// A frame arrived; reject it through `notices`. `reserved` is its share of the
    /// [`InboundBudget`], given back when the event is dropped.
    Frame {
        peer: PeerId,
        frame: MpcFrame,
        notices: Notices,
        reserved: OwnedSemaphorePermit,
    },
    /// A message on a stream from `peer` was not an acceptable frame (already reported back).
    InboundRejected { peer: PeerId, reason: String },
    /// A frame to `peer` could not be written.
    SendFailed { peer: PeerId, reason: String },
    /// `peer` reported that it dropped one of our frames.
    RejectedByPeer { peer: PeerId, rejection: Rejection },
}

/// The sending side of the stream to one peer.
#[derive(Debug)]
pub(crate) struct PeerWriter {
    queue: mpsc::UnboundedSender<MpcFrame>,
}

impl PeerWriter {
    /// Starts the writer task of `peer`. It opens its stream with the first frame and ends when
    /// the `PeerWriter` is dropped (after writing what was queued).
    pub(crate) fn spawn(
        peer: PeerId,
        control: libp2p_stream::Control,
        max_frame_bytes: usize,
        events: mpsc::Sender<StreamEvent>,
    ) -> Self {
        let (queue, frames) = mpsc::unbounded_channel();
        tokio::spawn(write_frames(peer, control, max_frame_bytes, frames, events));
        PeerWriter { queue }
    }

    /// Queues a frame; gives it back if the writer task is gone.
    pub(crate) fn send(&self, frame: MpcFrame) -> Result<(), MpcFrame> {
        self.queue.send(frame).map_err(|e| e.0)
    }
}

/// The receiver's next rejection being read, owning the read half until it has one (so that
/// waiting for a frame to send never cancels a half-read rejection).
type NextRejection =
    futures::future::BoxFuture<'static, (ReadHalf<Stream>, Result<Rejection, FrameError>)>;

fn next_rejection(mut reader: ReadHalf<Stream>) -> NextRejection {
    Box::pin(async move {
        let rejection = match read_length_prefixed(&mut reader, MAX_CONTROL_BYTES).await {
            Ok(body) => decode_control::<Rejection>(&body),
            Err(e) => Err(e),
        };
        (reader, rejection)
    })
}

/// Reports a rejection the receiver sent and starts reading the next one; `None` once the
/// stream ended, `Err` once the event loop is gone.
async fn on_rejection(
    peer: PeerId,
    events: &mpsc::Sender<StreamEvent>,
    reader: ReadHalf<Stream>,
    rejection: Result<Rejection, FrameError>,
) -> Result<Option<NextRejection>, ()> {
    match rejection {
        Ok(rejection) => {
            events
                .send(StreamEvent::RejectedByPeer { peer, rejection })
                .await
                .map_err(|_| ())?;
            Ok(Some(next_rejection(reader)))
        }
        Err(e) => {
            debug!(%peer, error = %e, "MPC stream ended");
            Ok(None)
        }
    }
}

struct OpenStream {
    writer: WriteHalf<Stream>,
    /// `None` once the receiver closed or reset the stream.
    rejections: Option<NextRejection>,
}

// The writer task also reads the receiver's rejections, rather than a task of their own: a
// yamux stream's reads send window updates through the same channel its writes use, and that
// channel wakes only the task that polled it last, so a reader task parked on it took the
// writer's wake-up and the writer stalled for good (seen after ~20 rejected frames).
async fn write_frames(
    peer: PeerId,
    mut control: libp2p_stream::Control,
    max_frame_bytes: usize,
    mut frames: mpsc::UnboundedReceiver<MpcFrame>,
    events: mpsc::Sender<StreamEvent>,
) {
    let mut stream: Option<OpenStream> = None;
    loop {
        let frame = {
            let rejections = stream.as_mut().and_then(|s| s.rejections.as_mut());
            tokio::select! {
                frame = frames.recv() => match frame {
                    Some(frame) => frame,
                    None => break,
                },
                // No stream, or one the receiver closed: nothing to read, never ready.
                (reader, rejection) = async {
                    match rejections {
                        Some(next) => next.await,
                        None => std::future::pending().await,
                    }
                } => {
                    let Ok(next) = on_rejection(peer, &events, reader, rejection).await else {
                        break;
                    };
                    if let Some(open) = stream.as_mut() {
                        open.rejections = next;
                    }
                    continue;
                }
            }
        };
        if stream.as_ref().is_some_and(|s| s.rejections.is_none()) {
            debug!(%peer, "MPC stream closed by the peer; opening a new one");
            stream = None;
        }
        let open = match stream.as_mut() {
            Some(open) => open,
            // The peer is gone (the event loop dropped this writer): do not dial it again just
            // to deliver what was still queued.
            None if frames.is_closed() => {
                let _ = events
                    .send(StreamEvent::SendFailed {
                        peer,
                        reason: "peer disconnected".to_owned(),
                    })
                    .await;
                continue;
            }
            None => match open(&mut control, peer).await {
                Ok(s) => {
                    let (reader, writer) = s.split();
                    stream.insert(OpenStream {
                        writer,
                        rejections: Some(next_rejection(reader)),
                    })
                }
                Err(reason) => {
                    let _ = events.send(StreamEvent::SendFailed { peer, reason }).await;
                    continue;
                }
            },
        };
        let written = async {
            let wire = frame.encode_prefixed(max_frame_bytes)?;
            open.writer.write_all(&wire).await?;
            open.writer.flush().await?;
            Ok::<(), FrameError>(())
        }
        .await;
        if let Err(e) = written {
            stream = None;
            let _ = events
                .send(StreamEvent::SendFailed {
                    peer,
                    reason: e.to_string(),
                })
                .await;
        }
    }
    if let Some(mut open) = stream {
        let _ = open.writer.close().await;
    }
}

/// Opens a stream to `peer` and waits for the receiver's greeting (one byte, the wire
/// version): `libp2p-stream` drops an incoming stream when its (one-slot) queue of new
/// streams is full, and a frame written on such a stream would be lost without a trace. A
/// stream that is closed instead of greeted is opened again, a few times.
async fn open(control: &mut libp2p_stream::Control, peer: PeerId) -> Result<Stream, String> {
    let mut last_error = String::new();
    for attempt in 0..OPEN_ATTEMPTS {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(20 * u64::from(attempt))).await;
        }
        let mut stream = match control.open_stream(peer, MPC_PROTOCOL).await {
            Ok(stream) => stream,
            // Not connected and not dialable, or the peer does not speak the protocol:
            // trying again at once will not help.
            Err(e) => return Err(e.to_string()),
        };
        let mut greeting = [0u8; 1];
        match tokio::time::timeout(GREETING_TIMEOUT, stream.read_exact(&mut greeting)).await {
            Ok(Ok(())) if greeting[0] == WIRE_VERSION => return Ok(stream),
            Ok(Ok(())) => {
                return Err(FrameError::UnsupportedVersion {
                    got: greeting[0],
                    expected: WIRE_VERSION,
                }
                .to_string());
            }
            Ok(Err(e)) => last_error = format!("MPC stream closed before the greeting: {e}"),
            Err(_) => last_error = "no greeting on the MPC stream".to_owned(),
        }
        debug!(%peer, attempt, error = %last_error, "MPC stream not accepted; retrying");
    }
    Err(last_error)
}

async fn greet<W: AsyncWrite + Unpin>(writer: &mut W) -> std::io::Result<()> {
    writer.write_all(&[WIRE_VERSION]).await?;
    writer.flush().await
}

/// Accepts the MPC streams peers open to this node, for as long as the task runs: streams from
/// peers on the allow-list get a reader ([`spawn_reader`]), any other is dropped (the
/// allow-list already refuses their connections; this is a second lock). A task of its own,
/// so that new streams never wait for the event loop.
pub(crate) fn spawn_acceptor(
    mut incoming: libp2p_stream::IncomingStreams,
    allowed: HashSet<PeerId>,
    limits: ReaderLimits,
    events: mpsc::Sender<StreamEvent>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let slots = StreamSlots::new(MAX_STREAMS_PER_PEER);
        let mut warnings = Throttle::new(WARN_WINDOW);
        while let Some((peer, stream)) = incoming.next().await {
            if !allowed.contains(&peer) {
                if let Some(suppressed) = warnings.check((peer, "not allowed"), Instant::now()) {
                    warn!(%peer, suppressed, "MPC stream from a peer not on the allow-list dropped");
                }
                continue;
            }
            let Some(slot) = slots.take(peer) else {
                if let Some(suppressed) = warnings.check((peer, "too many"), Instant::now()) {
                    warn!(%peer, suppressed, max = MAX_STREAMS_PER_PEER, "MPC stream dropped: the peer has too many open");
                }
                continue;
            };
            debug!(%peer, "incoming MPC stream");
            drop(spawn_reader(
                peer,
                stream,
                slot,
                limits.clone(),
                events.clone(),
            ));
        }
    })
}

/// What bounds every stream reader.
#[derive(Clone, Debug)]
pub(crate) struct ReaderLimits {
    pub(crate) max_frame_bytes: usize,
    pub(crate) budget: InboundBudget,
    /// Rejections dropped because a reader's queue was full, over all streams.
    pub(crate) dropped_notices: Arc<AtomicU64>,
}

/// Serves one stream a peer opened to us: every frame goes to the event loop, every rejection
/// back to the peer. Ends when the peer closes the stream or it fails; `slot` is given back
/// then.
fn spawn_reader<S>(
    peer: PeerId,
    stream: S,
    slot: Slot,
    limits: ReaderLimits,
    events: mpsc::Sender<StreamEvent>,
) -> tokio::task::JoinHandle<()>
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    tokio::spawn(async move {
        let _slot = slot;
        let (mut reader, mut writer) = stream.split();
        if let Err(e) = greet(&mut writer).await {
            debug!(%peer, error = %e, "could not greet an incoming MPC stream");
            return;
        }
        let (queue, mut pending) = mpsc::channel::<Rejection>(REJECTION_QUEUE);
        let notices = Notices {
            queue,
            dropped: Arc::clone(&limits.dropped_notices),
        };
        let read = read_frames(peer, &mut reader, &limits, &notices, &events);
        // Never finishes on its own: the reader decides when the stream is done.
        let write = async {
            while let Some(rejection) = pending.recv().await {
                if let Err(e) = write_rejection(&mut writer, rejection).await {
                    debug!(%peer, error = %e, "could not report a rejection");
                    break;
                }
            }
            futures::future::pending::<()>().await;
        };
        tokio::select! {
            () = read => {}
            () = write => {}
        }
        // Rejections the reader queued just before the stream ended: best effort.
        while let Ok(rejection) = pending.try_recv() {
            if write_rejection(&mut writer, rejection).await.is_err() {
                break;
            }
        }
        let _ = writer.close().await;
    })
}

async fn write_rejection<W: AsyncWrite + Unpin>(
    writer: &mut W,
    rejection: Rejection,
) -> Result<(), FrameError> {
    let body = encode_control(&rejection)?;
    write_length_prefixed(writer, &body, MAX_CONTROL_BYTES).await?;
    writer.flush().await?;
    Ok(())
}

/// Reads frames until the stream ends, each within the memory budget; hands good ones to the
/// event loop and rejects bad ones (logging them at most once per window).
async fn read_frames<R: AsyncRead + Unpin>(
    peer: PeerId,
    reader: &mut R,
    limits: &ReaderLimits,
    notices: &Notices,
    events: &mpsc::Sender<StreamEvent>,
) {
    // A frame the budget could never hold is refused like one over the frame limit.
    let max = limits.max_frame_bytes.min(limits.budget.largest_frame());
    let mut warnings = Throttle::new(WARN_WINDOW);
    loop {
        let len = match read_stream_prefix(reader).await {
            Ok(Some(len)) => len,
            Ok(None) => break,
            Err(e) => {
                debug!(%peer, error = %e, "incoming MPC stream failed");
                break;
            }
        };
        // Reserved before the body is read; nothing is reserved for a body that is skipped.
        let reserved = match usize::try_from(len) {
            Ok(l) if l <= max => limits.budget.reserve(len).await,
            _ => None,
        };
        let event = match read_stream_body(reader, len, max).await {
            Ok(StreamItem::Frame(frame)) => {
                let Some(mut reserved) = reserved else { break };
                // The body is gone once decoded: give its half back.
                drop(reserved.split(len as usize));
                StreamEvent::Frame {
                    peer,
                    frame,
                    notices: notices.clone(),
                    reserved,
                }
            }
            Ok(StreamItem::Bad(e)) => {
                let rejection = match e {
                    FrameError::TooLarge { .. } => Rejection::TooLarge,
                    _ => Rejection::Malformed,
                };
                if let Some(suppressed) = warnings.check(rejection, Instant::now()) {
                    warn!(%peer, error = %e, suppressed, "dropped unreadable incoming MPC frame");
                }
                notices.send(rejection);
                StreamEvent::InboundRejected {
                    peer,
                    reason: e.to_string(),
                }
            }
            Ok(StreamItem::End) => break,
            Err(e) => {
                debug!(%peer, error = %e, "incoming MPC stream failed");
                break;
            }
        };
        if events.send(event).await.is_err() {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::pin::Pin;
    use std::sync::Mutex;
    use std::task::{Context, Poll};

    use futures::io::Cursor;
    use proptest::prelude::*;

    use super::*;
    use crate::frame::{DEFAULT_MAX_FRAME_BYTES, SessionId};

    /// A stream whose incoming bytes are fixed and whose outgoing bytes are recorded.
    struct Wire {
        input: Cursor<Vec<u8>>,
        output: Arc<Mutex<Vec<u8>>>,
    }

    impl AsyncRead for Wire {
        fn poll_read(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut [u8],
        ) -> Poll<io::Result<usize>> {
            Pin::new(&mut self.get_mut().input).poll_read(cx, buf)
        }
    }

    impl AsyncWrite for Wire {
        fn poll_write(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            self.output.lock().unwrap().extend_from_slice(buf);
            Poll::Ready(Ok(buf.len()))
        }

        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }

        fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    /// Frames up to `max` bytes, and a budget that holds every frame of a short test input.
    fn limits(max: usize) -> ReaderLimits {
        ReaderLimits {
            max_frame_bytes: max,
            budget: InboundBudget::new(2 * max + (1 << 20)),
            dropped_notices: Arc::default(),
        }
    }

    /// Starts a reader over `input`; its events go to `tx`, what it writes back to the result.
    fn start_reader(
        input: Vec<u8>,
        limits: ReaderLimits,
        tx: mpsc::Sender<StreamEvent>,
    ) -> (tokio::task::JoinHandle<()>, Arc<Mutex<Vec<u8>>>) {
        let output = Arc::new(Mutex::new(Vec::new()));
        let wire = Wire {
            input: Cursor::new(input),
            output: Arc::clone(&output),
        };
        let peer = PeerId::random();
        let slot = StreamSlots::new(1).take(peer).unwrap();
        (spawn_reader(peer, wire, slot, limits, tx), output)
    }

    /// Runs a reader over `input` to its end; returns its events and what it wrote back.
    async fn serve(input: Vec<u8>, max: usize) -> (Vec<StreamEvent>, Vec<u8>) {
        let (tx, mut rx) = mpsc::channel(4096);
        let (reader, output) = start_reader(input, limits(max), tx);
        reader.await.expect("the reader never panics");
        let mut events = Vec::new();
        while let Ok(event) = rx.try_recv() {
            events.push(event);
        }
        let written = output.lock().unwrap().clone();
        (events, written)
    }

    fn frame(round: u64, len: usize) -> MpcFrame {
        MpcFrame {
            session: SessionId(9),
            round,
            sender: 2,
            payload: vec![round as u8; len],
        }
    }

    fn rejections(mut written: &[u8]) -> Vec<Rejection> {
        let mut out = Vec::new();
        while !written.is_empty() {
            let body = futures::executor::block_on(read_length_prefixed(&mut written, 1024))
                .expect("well-formed rejection");
            out.push(decode_control(&body).unwrap());
        }
        out
    }

    #[tokio::test]
    async fn frames_back_to_back_survive_oversized_and_malformed_neighbours() {
        let max = 4096;
        let mut input = frame(0, 100).encode_prefixed(max).unwrap();
        // Over the limit: refused on the prefix, body skipped, stream still in step.
        input.extend_from_slice(&100_000u32.to_le_bytes());
        input.extend_from_slice(&vec![0xAB; 100_000]);
        input.extend_from_slice(&frame(1, 4000).encode_prefixed(max).unwrap());
        // A well-delimited body that is not a frame.
        input.extend_from_slice(&5u32.to_le_bytes());
        input.extend_from_slice(&[WIRE_VERSION, 0xFF, 0xFF, 0xFF, 0xFF]);
        input.extend_from_slice(&frame(2, 0).encode_prefixed(max).unwrap());
        let (events, written) = serve(input, max).await;
        let summary: Vec<String> = events
            .iter()
            .map(|e| match e {
                StreamEvent::Frame { frame, .. } => {
                    format!("frame {} {}", frame.round, frame.payload.len())
                }
                StreamEvent::InboundRejected { .. } => "rejected".to_owned(),
                other => format!("{other:?}"),
            })
            .collect();
        assert_eq!(
            summary,
            [
                "frame 0 100",
                "rejected",
                "frame 1 4000",
                "rejected",
                "frame 2 0"
            ]
        );
        // The greeting, then one rejection per dropped message, in order.
        assert_eq!(written[0], WIRE_VERSION);
        assert_eq!(
            rejections(&written[1..]),
            [Rejection::TooLarge, Rejection::Malformed]
        );
    }

    #[tokio::test]
    async fn a_lying_length_prefix_costs_no_memory_and_ends_the_stream() {
        // Claims 4 GiB - 1 and sends 10 bytes: refused on the prefix, and the skip fails
        // when the stream ends, without anything having been allocated for it.
        let mut input = u32::MAX.to_le_bytes().to_vec();
        input.extend_from_slice(&[1; 10]);
        let (events, written) = serve(input, DEFAULT_MAX_FRAME_BYTES).await;
        assert!(events.is_empty(), "{events:?}");
        assert_eq!(written, [WIRE_VERSION]);
        // A stream cut inside a frame delivers nothing either.
        let mut input = frame(0, 100).encode_prefixed(4096).unwrap();
        input.truncate(50);
        let (events, _) = serve(input, 4096).await;
        assert!(events.is_empty(), "{events:?}");
    }

    #[tokio::test]
    async fn frames_wait_for_memory_and_a_frame_the_budget_cannot_hold_is_refused() {
        let payload = 900;
        let len = frame(0, payload).encoded_len().unwrap();
        // Room to read one such frame (body and decoded copy), not two at once.
        let limits = ReaderLimits {
            max_frame_bytes: 1 << 20,
            budget: InboundBudget::new(2 * len + 100),
            dropped_notices: Arc::default(),
        };
        let budget = limits.budget.clone();
        let total = budget.available();
        let mut input = frame(0, payload).encode_prefixed(1 << 20).unwrap();
        input.extend_from_slice(&frame(1, payload).encode_prefixed(1 << 20).unwrap());
        // Under the frame limit but over what the budget could ever hold: skipped, refused.
        input.extend_from_slice(&frame(2, 2 * len).encode_prefixed(1 << 20).unwrap());
        let (tx, mut rx) = mpsc::channel(16);
        let (reader, output) = start_reader(input, limits, tx);

        let first = rx.recv().await.expect("the first frame");
        assert!(matches!(&first, StreamEvent::Frame { frame, .. } if frame.round == 0));
        // The second frame can only be read once the first (holding its decoded size until the
        // event loop lets go of it) gives its memory back.
        drop(first);
        let second = rx
            .recv()
            .await
            .expect("the second frame, once memory is free");
        assert!(matches!(&second, StreamEvent::Frame { frame, .. } if frame.round == 1));
        drop(second);
        let third = rx.recv().await.expect("the third message");
        assert!(
            matches!(third, StreamEvent::InboundRejected { .. }),
            "{third:?}"
        );
        reader.await.unwrap();
        assert_eq!(
            budget.available(),
            total,
            "every reservation was given back"
        );
        let written = output.lock().unwrap().clone();
        assert_eq!(rejections(&written[1..]), [Rejection::TooLarge]);
    }

    #[test]
    fn a_peer_may_have_only_so_many_streams_open() {
        let slots = StreamSlots::new(MAX_STREAMS_PER_PEER);
        let (a, b) = (PeerId::random(), PeerId::random());
        let mut held: Vec<Slot> = (0..MAX_STREAMS_PER_PEER)
            .map(|_| slots.take(a).expect("within the limit"))
            .collect();
        assert!(slots.take(a).is_none(), "one stream too many");
        assert!(slots.take(b).is_some(), "another peer is not affected");
        held.pop();
        assert!(slots.take(a).is_some(), "a closed stream frees its place");
    }

    #[test]
    fn rejections_beyond_the_queue_are_dropped_and_counted() {
        let (queue, mut pending) = mpsc::channel(2);
        let notices = Notices {
            queue,
            dropped: Arc::default(),
        };
        for _ in 0..5 {
            notices.send(Rejection::Malformed);
        }
        assert_eq!(notices.dropped.load(Ordering::Relaxed), 3);
        assert_eq!(pending.try_recv(), Ok(Rejection::Malformed));
        assert_eq!(pending.try_recv(), Ok(Rejection::Malformed));
        assert!(pending.try_recv().is_err());
    }

    proptest! {
        #[test]
        fn random_stream_bytes_never_panic_or_exceed_the_limit(
            bytes in proptest::collection::vec(any::<u8>(), 0..512),
        ) {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let (events, _) = runtime.block_on(serve(bytes, 256));
            for event in events {
                if let StreamEvent::Frame { frame, .. } = event {
                    prop_assert!(frame.encoded_len().unwrap() <= 256);
                }
            }
        }
    }
}
