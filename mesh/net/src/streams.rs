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

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::io::{ReadHalf, WriteHalf};
use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, StreamExt};
use libp2p::{PeerId, Stream};
use tokio::sync::mpsc;
use tracing::{debug, warn};

use crate::frame::{
    FrameError, MAX_CONTROL_BYTES, MPC_PROTOCOL, MpcFrame, Rejection, StreamItem, WIRE_VERSION,
    decode_control, encode_control, read_length_prefixed, read_stream_frame, write_length_prefixed,
};

/// Frames read from peers and waiting for the event loop; a full queue stops the readers, and
/// Yamux's flow control then stops the senders.
pub(crate) const INBOUND_QUEUE: usize = 256;
/// How often a sender tries to open a stream the receiver then drops.
const OPEN_ATTEMPTS: u32 = 5;
/// How long a sender waits for a new stream's greeting.
const GREETING_TIMEOUT: Duration = Duration::from_secs(10);

/// What the stream tasks tell the event loop.
#[derive(Debug)]
pub(crate) enum StreamEvent {
    /// A frame arrived; reject it through `notices`.
    Frame {
        peer: PeerId,
        frame: MpcFrame,
        notices: mpsc::UnboundedSender<Rejection>,
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

struct OpenStream {
    writer: WriteHalf<Stream>,
    /// Set by the rejection reader when the receiver closed or reset the stream.
    closed: Arc<AtomicBool>,
}

async fn write_frames(
    peer: PeerId,
    mut control: libp2p_stream::Control,
    max_frame_bytes: usize,
    mut frames: mpsc::UnboundedReceiver<MpcFrame>,
    events: mpsc::Sender<StreamEvent>,
) {
    let mut stream: Option<OpenStream> = None;
    while let Some(frame) = frames.recv().await {
        if stream
            .as_ref()
            .is_some_and(|s| s.closed.load(Ordering::SeqCst))
        {
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
                    let closed = Arc::new(AtomicBool::new(false));
                    tokio::spawn(read_rejections(
                        peer,
                        reader,
                        Arc::clone(&closed),
                        events.clone(),
                    ));
                    stream.insert(OpenStream { writer, closed })
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

/// Reads the receiver's rejections of our frames until the stream ends.
async fn read_rejections(
    peer: PeerId,
    mut reader: ReadHalf<Stream>,
    closed: Arc<AtomicBool>,
    events: mpsc::Sender<StreamEvent>,
) {
    loop {
        let rejection = match read_length_prefixed(&mut reader, MAX_CONTROL_BYTES).await {
            Ok(body) => decode_control::<Rejection>(&body),
            Err(e) => Err(e),
        };
        match rejection {
            Ok(rejection) => {
                if events
                    .send(StreamEvent::RejectedByPeer { peer, rejection })
                    .await
                    .is_err()
                {
                    break;
                }
            }
            Err(e) => {
                debug!(%peer, error = %e, "MPC stream ended");
                break;
            }
        }
    }
    closed.store(true, Ordering::SeqCst);
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
    max_frame_bytes: usize,
    events: mpsc::Sender<StreamEvent>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while let Some((peer, stream)) = incoming.next().await {
            if !allowed.contains(&peer) {
                warn!(%peer, "MPC stream from a peer not on the allow-list dropped");
                continue;
            }
            debug!(%peer, "incoming MPC stream");
            drop(spawn_reader(peer, stream, max_frame_bytes, events.clone()));
        }
    })
}

/// Serves one stream a peer opened to us: every frame goes to the event loop, every rejection
/// back to the peer. Ends when the peer closes the stream or it fails.
fn spawn_reader<S>(
    peer: PeerId,
    stream: S,
    max_frame_bytes: usize,
    events: mpsc::Sender<StreamEvent>,
) -> tokio::task::JoinHandle<()>
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    tokio::spawn(async move {
        let (mut reader, mut writer) = stream.split();
        if let Err(e) = greet(&mut writer).await {
            debug!(%peer, error = %e, "could not greet an incoming MPC stream");
            return;
        }
        let (notices, mut pending) = mpsc::unbounded_channel::<Rejection>();
        let read = async {
            loop {
                match read_stream_frame(&mut reader, max_frame_bytes).await {
                    Ok(StreamItem::Frame(frame)) => {
                        let event = StreamEvent::Frame {
                            peer,
                            frame,
                            notices: notices.clone(),
                        };
                        if events.send(event).await.is_err() {
                            break;
                        }
                    }
                    Ok(StreamItem::Bad(e)) => {
                        warn!(%peer, error = %e, "dropped unreadable incoming MPC frame");
                        let rejection = match e {
                            FrameError::TooLarge { .. } => Rejection::TooLarge,
                            _ => Rejection::Malformed,
                        };
                        let _ = notices.send(rejection);
                        let event = StreamEvent::InboundRejected {
                            peer,
                            reason: e.to_string(),
                        };
                        if events.send(event).await.is_err() {
                            break;
                        }
                    }
                    Ok(StreamItem::End) => break,
                    Err(e) => {
                        debug!(%peer, error = %e, "incoming MPC stream failed");
                        break;
                    }
                }
            }
        };
        // Never finishes on its own: the reader decides when the stream is done.
        let write = async {
            while let Some(rejection) = pending.recv().await {
                let sent = async {
                    let body = encode_control(&rejection)?;
                    write_length_prefixed(&mut writer, &body, MAX_CONTROL_BYTES).await?;
                    writer.flush().await?;
                    Ok::<(), FrameError>(())
                }
                .await;
                if let Err(e) = sent {
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
            let Ok(body) = encode_control(&rejection) else {
                break;
            };
            if write_length_prefixed(&mut writer, &body, MAX_CONTROL_BYTES)
                .await
                .is_err()
            {
                break;
            }
        }
        let _ = writer.close().await;
    })
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

    /// Runs a reader over `input` to its end; returns its events and what it wrote back.
    async fn serve(input: Vec<u8>, max: usize) -> (Vec<StreamEvent>, Vec<u8>) {
        let output = Arc::new(Mutex::new(Vec::new()));
        let wire = Wire {
            input: Cursor::new(input),
            output: Arc::clone(&output),
        };
        let (tx, mut rx) = mpsc::channel(4096);
        spawn_reader(PeerId::random(), wire, max, tx)
            .await
            .expect("the reader never panics");
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
