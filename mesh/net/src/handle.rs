//! The cloneable async handle to the event loop ([`NetHandle`]), and [`new`], which builds both.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use libp2p::identity::Keypair;
use libp2p::{Multiaddr, PeerId};
use mesh::{Endpoint, PartyId};
use tokio::sync::{broadcast, mpsc, oneshot};
use tracing::info;

use crate::api::{Command, ControlRequest, NetEvent};
use crate::behaviour::build_swarm;
use crate::config::{ConfigError, NetConfig};
use crate::error::NetError;
use crate::event_loop::{EventLoop, LoopSettings};
use crate::frame::{CLIENT, FrameError, LENGTH_PREFIX_BYTES, MpcFrame, SessionId};
use crate::quorum::{Announcement, Quorum, QuorumView, ShareSummary};

/// Commands in flight before `send` waits; bounds memory if the loop falls behind.
const COMMAND_QUEUE: usize = 1024;
/// Events kept for slow subscribers before they see `Lagged`.
const EVENT_QUEUE: usize = 1024;
/// Control requests waiting for the node's handler; more are refused at once.
const CONTROL_QUEUE: usize = 64;

/// Builds a mesh node: the [`NetHandle`] and the [`EventLoop`] to spawn
/// (`tokio::spawn(event_loop.run())`). Must be called inside a tokio runtime.
///
/// Starts listening on `config.listen` at once, so address problems are reported here.
pub fn new(config: NetConfig, keypair: Keypair) -> Result<(NetHandle, EventLoop), NetError> {
    config.validate()?;
    let quorum = Quorum::new(config.summary, config.party, config.roster.clone())
        .map_err(ConfigError::from)?;
    let local_peer_id = keypair.public().to_peer_id();
    let mut swarm = build_swarm(&config, keypair)?;
    for addr in &config.listen {
        swarm
            .listen_on(addr.clone())
            .map_err(|e| NetError::Listen {
                addr: addr.clone(),
                reason: e.to_string(),
            })?;
    }
    info!(
        peer = %local_peer_id,
        party = ?config.party,
        psk = %config.psk.fingerprint(),
        mdns = config.mdns,
        link = %config.link,
        "mesh node configured"
    );
    let (commands, command_rx) = mpsc::channel(COMMAND_QUEUE);
    let (events, _) = broadcast::channel(EVENT_QUEUE);
    let (control_tx, control_rx) = mpsc::channel(CONTROL_QUEUE);
    let control_taken = Arc::new(AtomicBool::new(false));
    let settings = LoopSettings {
        static_peers: config.static_peers.clone(),
        allowed: config.allowed_peers.iter().copied().collect::<HashSet<_>>(),
        link: config.link,
        redial_interval: config.redial_interval,
        max_buffered_frames: config.max_buffered_frames,
        max_buffered_bytes: config.max_buffered_bytes,
        control_tx,
        control_taken: Arc::clone(&control_taken),
        self_commands: commands.clone(),
        learning: config.learn_summary && config.party.is_none(),
        max_frame_bytes: config.max_frame_bytes,
    };
    let event_loop = EventLoop::new(swarm, command_rx, events.clone(), quorum, settings)?;
    let handle = NetHandle {
        commands,
        events,
        local_peer_id,
        local_party: config.party,
        n: config.summary.n,
        max_frame_bytes: config.max_frame_bytes,
        control_requests: Arc::new(Mutex::new(Some(control_rx))),
        control_taken,
    };
    Ok((handle, event_loop))
}

/// A cloneable handle to a running mesh node. The swarm itself is only ever touched by the
/// [`EventLoop`].
#[derive(Clone, Debug)]
pub struct NetHandle {
    pub(crate) commands: mpsc::Sender<Command>,
    events: broadcast::Sender<NetEvent>,
    local_peer_id: PeerId,
    pub(crate) local_party: Option<PartyId>,
    pub(crate) n: u8,
    pub(crate) max_frame_bytes: usize,
    control_requests: Arc<Mutex<Option<mpsc::Receiver<ControlRequest>>>>,
    control_taken: Arc<AtomicBool>,
}

impl NetHandle {
    /// This node's peer ID.
    pub fn local_peer_id(&self) -> PeerId {
        self.local_peer_id
    }

    /// This node's party (`None` for an observer).
    pub fn local_party(&self) -> Option<PartyId> {
        self.local_party
    }

    async fn request<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, NetError> {
        let (reply, response) = oneshot::channel();
        self.commands
            .send(make(reply))
            .await
            .map_err(|_| NetError::Shutdown)?;
        response.await.map_err(|_| NetError::Shutdown)
    }

    /// Listens on `addr` and returns the actual address (with the port the OS chose for
    /// `/tcp/0`).
    pub async fn listen(&self, addr: Multiaddr) -> Result<Multiaddr, NetError> {
        self.request(|reply| Command::Listen { addr, reply })
            .await?
    }

    /// Adds a static peer (`.../p2p/<peer id>`, on the allow-list) and dials it now and
    /// whenever it is disconnected.
    pub async fn add_static_peer(&self, addr: Multiaddr) -> Result<(), NetError> {
        self.request(|reply| Command::AddStaticPeer { addr, reply })
            .await?
    }

    /// Subscribes to [`NetEvent`]s from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<NetEvent> {
        self.events.subscribe()
    }

    /// The current quorum view.
    pub async fn quorum(&self) -> Result<QuorumView, NetError> {
        self.request(|reply| Command::Quorum { reply }).await
    }

    /// Waits until the quorum is formed, at most `timeout`.
    pub async fn wait_for_quorum(&self, timeout: Duration) -> Result<QuorumView, NetError> {
        // Subscribe before looking, so a formation in between is not missed.
        let mut events = self.subscribe();
        let view = self.quorum().await?;
        if view.formed {
            return Ok(view);
        }
        let waited = tokio::time::timeout(timeout, async {
            loop {
                match events.recv().await {
                    Ok(NetEvent::QuorumFormed(view)) => return Ok(view),
                    Ok(_) => {}
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        let view = self.quorum().await?;
                        if view.formed {
                            return Ok(view);
                        }
                    }
                    Err(broadcast::error::RecvError::Closed) => return Err(NetError::Shutdown),
                }
            }
        })
        .await;
        match waited {
            Ok(result) => result,
            Err(_) => {
                let view = self.quorum().await?;
                Err(NetError::QuorumNotFormed {
                    present: view.parties(),
                    required: view.summary.required(),
                })
            }
        }
    }

    /// Builds this node's frame, checking the size limit before anything is queued.
    pub(crate) fn make_frame(
        &self,
        session: SessionId,
        round: u64,
        payload: Vec<u8>,
    ) -> Result<MpcFrame, NetError> {
        let sender = self.local_party.map_or(CLIENT, PartyId::number);
        let frame = MpcFrame {
            session,
            round,
            sender,
            payload,
        };
        let len = frame.encoded_len()?;
        if len > self.max_frame_bytes {
            return Err(FrameError::TooLarge {
                len: len as u64,
                max: self.max_frame_bytes,
            }
            .into());
        }
        Ok(frame)
    }

    /// Sends this node's message of one round to `to` (a party, or the client of `session`). Returns the frame's wire size once the event loop has it; the
    /// frame then leaves on its own (after link emulation).
    pub async fn send_round(
        &self,
        to: Endpoint,
        session: SessionId,
        round: u64,
        payload: Vec<u8>,
    ) -> Result<usize, NetError> {
        let frame = self.make_frame(session, round, payload)?;
        let bytes = frame.encoded_len()? + LENGTH_PREFIX_BYTES;
        self.commands
            .send(Command::Send { to, frame })
            .await
            .map_err(|_| NetError::Shutdown)?;
        Ok(bytes)
    }

    /// Receives `from`'s message of one round, waiting until `deadline`; frames that
    /// arrived earlier were buffered and are returned at once.
    pub async fn recv_round(
        &self,
        from: Endpoint,
        session: SessionId,
        round: u64,
        deadline: std::time::Instant,
    ) -> Result<Vec<u8>, NetError> {
        self.request(|reply| Command::Recv {
            from,
            session,
            round,
            deadline,
            reply,
        })
        .await?
    }

    /// Drops buffered frames of a finished session.
    pub async fn end_session(&self, session: SessionId) -> Result<(), NetError> {
        self.commands
            .send(Command::EndSession { session })
            .await
            .map_err(|_| NetError::Shutdown)
    }

    /// The incoming control requests (`/sotto/control/1`), for the one task that answers them;
    /// `None` after the first call. Until it is taken, incoming control requests fail at once.
    pub fn take_control_requests(&self) -> Option<mpsc::Receiver<ControlRequest>> {
        let taken = self
            .control_requests
            .lock()
            .ok()
            .and_then(|mut slot| slot.take());
        if taken.is_some() {
            self.control_taken.store(true, Ordering::SeqCst);
        }
        taken
    }

    /// Sends a control message to a connected peer and waits for its answer (bounded by the
    /// configured request timeout).
    pub async fn control(&self, peer: PeerId, body: Vec<u8>) -> Result<Vec<u8>, NetError> {
        self.request(|reply| Command::Control { peer, body, reply })
            .await?
    }

    /// Routes `session`'s frames for the client to `peer` and refuses client frames of that
    /// session from anyone else. A party binds the sessions of a request it accepted, before
    /// the client has sent anything on them.
    pub async fn bind_client(&self, session: SessionId, peer: PeerId) -> Result<(), NetError> {
        self.request(|reply| Command::BindClient {
            session,
            peer,
            reply,
        })
        .await?
    }

    /// Observer only: count the connected peers that announce `summary` from now on (a client
    /// learns the quorum's summary from the announcements it received).
    pub async fn adopt_summary(&self, summary: ShareSummary) -> Result<QuorumView, NetError> {
        self.request(|reply| Command::AdoptSummary { summary, reply })
            .await?
    }

    /// Every connected peer's announcement, whether or not the quorum view counts it.
    pub async fn announcements(&self) -> Result<Vec<(PeerId, Announcement)>, NetError> {
        self.request(|reply| Command::Announcements { reply }).await
    }

    /// The last ping round trip to each connected peer.
    pub async fn rtts(&self) -> Result<HashMap<PeerId, Duration>, NetError> {
        self.request(|reply| Command::Rtts { reply }).await
    }

    /// Stops the event loop (the swarm closes every connection).
    pub async fn shutdown(&self) {
        let _ = self.commands.send(Command::Shutdown).await;
    }
}
