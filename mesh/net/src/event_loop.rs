//! The task that owns the swarm. Everything else talks to it through [`Command`]s.
//!
//! It admits peers (PSK and allow-list are enforced by the stack; this loop logs refusals),
//! exchanges announcements on every new connection and keeps the [`Quorum`] view, routes
//! outgoing frames through link emulation, and matches incoming frames with waiting receives,
//! buffering (bounded) frames of rounds nobody has asked for yet. Control messages
//! (`/sotto/control/1`) are passed to whoever took [`super::NetHandle::take_control_requests`]
//! and answered through [`ControlRequest::respond`].

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::StreamExt;
use libp2p::core::transport::ListenerId;
use libp2p::request_response::{self, Message, OutboundRequestId, ResponseChannel};
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::swarm::{DialError, SwarmEvent};
use libp2p::{Multiaddr, PeerId, Swarm, identify, mdns, ping};
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::time::Instant;
use tracing::{debug, info, trace, warn};

use crate::behaviour::{Behaviour, BehaviourEvent};
use crate::config::{ConfigError, static_peer_id};
use crate::error::NetError;
use crate::frame::{
    Ack, CLIENT, LENGTH_PREFIX_BYTES, MPC_PROTOCOL, MpcFrame, Rejection, SessionId,
};
use crate::link::LinkProfile;
use crate::quorum::{Announcement, Quorum, QuorumConflict, QuorumView, ShareSummary};
use crate::shaper::PeerLink;
use crate::streams::{INBOUND_QUEUE, PeerWriter, StreamEvent, spawn_acceptor};

/// Something that happened on the mesh, for whoever subscribed ([`super::NetHandle::subscribe`]).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum NetEvent {
    /// Listening on a new address.
    Listening(Multiaddr),
    /// First connection to an admitted peer.
    PeerConnected(PeerId),
    /// Last connection to a peer closed.
    PeerDisconnected(PeerId),
    /// A peer's announcement was accepted into the quorum view.
    Announced {
        /// The peer.
        peer: PeerId,
        /// What it announced.
        announcement: Announcement,
    },
    /// A peer's announcement was not accepted.
    Conflict(QuorumConflict),
    /// At least 2t+1 distinct parties are now connected.
    QuorumFormed(QuorumView),
    /// The quorum fell below 2t+1 parties.
    QuorumLost(QuorumView),
    /// A connection attempt to this node failed or was denied (wrong PSK, failed Noise
    /// handshake, peer not on the allow-list, garbage).
    Refused {
        /// The peer, when the handshake got far enough to know it.
        peer: Option<PeerId>,
        /// Where it came from.
        addr: Multiaddr,
        /// Why.
        reason: String,
    },
    /// A frame this node sent was not delivered.
    SendFailed {
        /// The destination party.
        party: Option<u8>,
        /// The destination peer, if known.
        peer: Option<PeerId>,
        /// Why.
        reason: String,
    },
    /// An incoming frame was rejected or could not be read.
    InboundRejected {
        /// The sending peer.
        peer: PeerId,
        /// Why.
        reason: String,
    },
}

/// Requests from [`super::NetHandle`] and [`super::NetTransport`] to the event loop.
#[derive(Debug)]
pub(crate) enum Command {
    Listen {
        addr: Multiaddr,
        reply: oneshot::Sender<Result<Multiaddr, NetError>>,
    },
    AddStaticPeer {
        addr: Multiaddr,
        reply: oneshot::Sender<Result<(), NetError>>,
    },
    /// Fire and forget: delivery problems are logged and show up at the receiver.
    Send {
        to: u8,
        frame: MpcFrame,
    },
    Recv {
        from: u8,
        session: SessionId,
        round: u64,
        deadline: std::time::Instant,
        reply: oneshot::Sender<Result<Vec<u8>, NetError>>,
    },
    EndSession {
        session: SessionId,
    },
    Quorum {
        reply: oneshot::Sender<QuorumView>,
    },
    Control {
        peer: PeerId,
        body: Vec<u8>,
        reply: oneshot::Sender<Result<Vec<u8>, NetError>>,
    },
    ControlRespond {
        id: u64,
        body: Vec<u8>,
    },
    BindClient {
        session: SessionId,
        peer: PeerId,
        reply: oneshot::Sender<Result<(), NetError>>,
    },
    AdoptSummary {
        summary: ShareSummary,
        reply: oneshot::Sender<Result<QuorumView, NetError>>,
    },
    Announcements {
        reply: oneshot::Sender<Vec<(PeerId, Announcement)>>,
    },
    Rtts {
        reply: oneshot::Sender<HashMap<PeerId, Duration>>,
    },
    Shutdown,
}

/// A control message from a connected (admitted) peer. Answer it with
/// [`ControlRequest::respond`]; one that is dropped unanswered fails at the requester when its
/// request times out.
#[derive(Debug)]
pub struct ControlRequest {
    /// The sending peer.
    pub peer: PeerId,
    /// Its party index, if it announced one that this node's quorum view accepted.
    pub party: Option<u8>,
    /// The message (opaque to the mesh).
    pub body: Vec<u8>,
    id: u64,
    commands: mpsc::Sender<Command>,
}

impl ControlRequest {
    /// Sends the answer back to the requester.
    pub async fn respond(self, body: Vec<u8>) -> Result<(), NetError> {
        self.commands
            .send(Command::ControlRespond { id: self.id, body })
            .await
            .map_err(|_| NetError::Shutdown)
    }
}

/// (sending party, session, round): one frame per peer per round.
type Key = (u8, SessionId, u64);

type Reply = oneshot::Sender<Result<Vec<u8>, NetError>>;

struct Waiter {
    deadline: Instant,
    reply: Reply,
}

/// Frames that arrived before anyone asked for them.
struct Inbox {
    frames: HashMap<Key, Vec<u8>>,
    bytes: usize,
    max_frames: usize,
    max_bytes: usize,
}

impl Inbox {
    fn take(&mut self, key: &Key) -> Option<Vec<u8>> {
        let payload = self.frames.remove(key)?;
        self.bytes -= payload.len();
        Some(payload)
    }

    fn insert(&mut self, key: Key, payload: Vec<u8>) -> Result<(), Rejection> {
        if self.frames.contains_key(&key) {
            return Err(Rejection::Duplicate);
        }
        let bytes = payload.len();
        if self.frames.len() >= self.max_frames || self.bytes + bytes > self.max_bytes {
            return Err(Rejection::BufferFull);
        }
        self.bytes += bytes;
        self.frames.insert(key, payload);
        Ok(())
    }

    fn end_session(&mut self, session: SessionId) {
        let stale: Vec<Key> = self
            .frames
            .keys()
            .filter(|k| k.1 == session)
            .copied()
            .collect();
        for key in stale {
            self.take(&key);
        }
    }
}

/// Limits and settings the loop needs after construction.
pub(crate) struct LoopSettings {
    pub(crate) static_peers: Vec<Multiaddr>,
    pub(crate) allowed: HashSet<PeerId>,
    pub(crate) link: LinkProfile,
    pub(crate) redial_interval: Duration,
    pub(crate) max_buffered_frames: usize,
    pub(crate) max_buffered_bytes: usize,
    pub(crate) control_tx: mpsc::Sender<ControlRequest>,
    pub(crate) control_taken: Arc<AtomicBool>,
    pub(crate) self_commands: mpsc::Sender<Command>,
    pub(crate) learning: bool,
    pub(crate) max_frame_bytes: usize,
}

/// The task that owns the swarm; run it with `tokio::spawn(event_loop.run())`.
pub struct EventLoop {
    swarm: Swarm<Behaviour>,
    commands: mpsc::Receiver<Command>,
    events: broadcast::Sender<NetEvent>,
    transmit_tx: mpsc::UnboundedSender<(PeerId, MpcFrame)>,
    transmit_rx: mpsc::UnboundedReceiver<(PeerId, MpcFrame)>,
    quorum: Quorum,
    /// Connected peers that announced no party index (clients).
    observers: HashSet<PeerId>,
    /// Which client a session belongs to: set by its first frame, so replies go back to it
    /// and no other client can inject into it.
    session_clients: HashMap<SessionId, PeerId>,
    allowed: HashSet<PeerId>,
    static_peers: HashMap<PeerId, Vec<Multiaddr>>,
    /// Allowed peers found by mDNS (until their records expire): redialed like static peers,
    /// since a dial that lost a race (see [`EventLoop::dial`]) is otherwise never retried.
    discovered: HashSet<PeerId>,
    /// Since when each not-yet-connected peer has been wanted (see [`EventLoop::dial`]).
    dial_wanted: HashMap<PeerId, Instant>,
    pending_listens: HashMap<ListenerId, (Multiaddr, oneshot::Sender<Result<Multiaddr, NetError>>)>,
    inbox: Inbox,
    waiters: HashMap<Key, Waiter>,
    link: LinkProfile,
    links: HashMap<PeerId, PeerLink>,
    redial_interval: Duration,
    /// Every connected peer's last announcement, accepted or not (an observer may adopt
    /// another summary later).
    announced: HashMap<PeerId, Announcement>,
    /// Last measured ping round trip per connected peer.
    rtts: HashMap<PeerId, Duration>,
    control_tx: mpsc::Sender<ControlRequest>,
    /// Whether anyone took the control requests (until then they are refused at once).
    control_taken: Arc<AtomicBool>,
    /// Handed to every [`ControlRequest`] so its answer comes back here.
    self_commands: mpsc::Sender<Command>,
    next_control_id: u64,
    pending_control: HashMap<u64, (PeerId, ResponseChannel<Vec<u8>>)>,
    control_replies: HashMap<OutboundRequestId, oneshot::Sender<Result<Vec<u8>, NetError>>>,
    /// An observer that will adopt the summary most parties announce.
    learning: bool,
    /// Opens MPC streams (`crate::streams`).
    stream_control: libp2p_stream::Control,
    /// MPC streams peers opened to this node, until `run` hands them to the acceptor task.
    incoming: Option<libp2p_stream::IncomingStreams>,
    /// The sending side of the MPC stream to each peer frames were sent to.
    writers: HashMap<PeerId, PeerWriter>,
    stream_events_tx: mpsc::Sender<StreamEvent>,
    stream_events_rx: mpsc::Receiver<StreamEvent>,
    max_frame_bytes: usize,
}

impl fmt::Debug for EventLoop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventLoop")
            .field("local_peer_id", self.swarm.local_peer_id())
            .field("quorum", &self.quorum.view())
            .field("buffered_frames", &self.inbox.frames.len())
            .field("waiters", &self.waiters.len())
            .field("link", &self.link)
            .finish()
    }
}

impl EventLoop {
    pub(crate) fn new(
        swarm: Swarm<Behaviour>,
        commands: mpsc::Receiver<Command>,
        events: broadcast::Sender<NetEvent>,
        quorum: Quorum,
        settings: LoopSettings,
    ) -> Result<Self, NetError> {
        let (transmit_tx, transmit_rx) = mpsc::unbounded_channel();
        let (stream_events_tx, stream_events_rx) = mpsc::channel(INBOUND_QUEUE);
        let mut stream_control = swarm.behaviour().mpc.new_control();
        let incoming = stream_control
            .accept(MPC_PROTOCOL)
            .map_err(|e| NetError::Setup {
                what: "mpc streams",
                source: e.into(),
            })?;
        let mut event_loop = EventLoop {
            swarm,
            commands,
            events,
            transmit_tx,
            transmit_rx,
            quorum,
            observers: HashSet::new(),
            session_clients: HashMap::new(),
            allowed: settings.allowed,
            static_peers: HashMap::new(),
            discovered: HashSet::new(),
            dial_wanted: HashMap::new(),
            pending_listens: HashMap::new(),
            inbox: Inbox {
                frames: HashMap::new(),
                bytes: 0,
                max_frames: settings.max_buffered_frames,
                max_bytes: settings.max_buffered_bytes,
            },
            waiters: HashMap::new(),
            link: settings.link,
            links: HashMap::new(),
            redial_interval: settings.redial_interval,
            announced: HashMap::new(),
            rtts: HashMap::new(),
            control_tx: settings.control_tx,
            control_taken: settings.control_taken,
            self_commands: settings.self_commands,
            next_control_id: 0,
            pending_control: HashMap::new(),
            control_replies: HashMap::new(),
            learning: settings.learning,
            stream_control,
            incoming: Some(incoming),
            writers: HashMap::new(),
            stream_events_tx,
            stream_events_rx,
            max_frame_bytes: settings.max_frame_bytes,
        };
        for addr in settings.static_peers {
            event_loop.add_static_peer(addr)?;
        }
        Ok(event_loop)
    }

    /// Runs until [`super::NetHandle::shutdown`] or until every client handle is dropped. Pending
    /// receives then fail with [`NetError::Shutdown`].
    pub async fn run(mut self) {
        let acceptor = self.incoming.take().map(|incoming| {
            spawn_acceptor(
                incoming,
                self.allowed.clone(),
                self.max_frame_bytes,
                self.stream_events_tx.clone(),
            )
        });
        let mut redial = tokio::time::interval(self.redial_interval);
        redial.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let next_deadline = self.waiters.values().map(|w| w.deadline).min();
            // The sleep is only polled when a waiter exists; the fallback just has to be valid.
            let sleep = tokio::time::sleep_until(
                next_deadline.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600)),
            );
            tokio::select! {
                event = self.swarm.select_next_some() => self.on_swarm_event(event),
                command = self.commands.recv() => match command {
                    Some(Command::Shutdown) | None => break,
                    Some(command) => self.on_command(command),
                },
                Some((peer, frame)) = self.transmit_rx.recv() => self.transmit(peer, frame),
                Some(event) = self.stream_events_rx.recv() => self.on_stream_event(event),
                _ = redial.tick() => self.redial(),
                () = sleep, if next_deadline.is_some() => self.expire_waiters(),
            }
        }
        if let Some(acceptor) = acceptor {
            acceptor.abort();
        }
        info!(peer = %self.swarm.local_peer_id(), "mesh event loop stopped");
    }

    fn emit(&self, event: NetEvent) {
        // No subscriber is fine: events are also logged.
        let _ = self.events.send(event);
    }

    fn add_static_peer(&mut self, addr: Multiaddr) -> Result<(), NetError> {
        let peer = static_peer_id(&addr)?;
        if !self.allowed.contains(&peer) {
            return Err(ConfigError::StaticPeerNotAllowed { addr, peer }.into());
        }
        self.swarm.add_peer_address(peer, addr.clone());
        let addrs = self.static_peers.entry(peer).or_default();
        if !addrs.contains(&addr) {
            addrs.push(addr);
        }
        self.dial(peer);
        Ok(())
    }

    fn dial(&mut self, peer: PeerId) {
        if self.swarm.is_connected(&peer) {
            self.dial_wanted.remove(&peer);
            return;
        }
        // Two nodes that know each other (mDNS answers reach both at once; static peers start
        // together) would dial each other at the same moment and end up with two connections,
        // whose MPC streams can land on different connections. Only the node with the smaller
        // peer ID dials at once; the other waits a grace period, in case the first never does
        // (it may not know our address).
        let wanted = *self.dial_wanted.entry(peer).or_insert_with(Instant::now);
        if *self.swarm.local_peer_id() > peer && wanted.elapsed() < 2 * self.redial_interval {
            return;
        }
        let addrs = self.static_peers.get(&peer).cloned().unwrap_or_default();
        // A fresh source port, not the listen port: when two nodes dial each other at the same
        // moment (mDNS answers reach both at once; static peers start together) from their
        // listen ports, the two SYNs cross, TCP merges them into one simultaneous-open
        // connection, both ends start Noise as initiator and the handshake fails.
        let opts = DialOpts::peer_id(peer)
            .addresses(addrs)
            .condition(PeerCondition::DisconnectedAndNotDialing)
            // Also the addresses the swarm learnt (mDNS answers, identify).
            .extend_addresses_through_behaviour()
            .allocate_new_port()
            .build();
        match self.swarm.dial(opts) {
            Ok(()) | Err(DialError::DialPeerConditionFalse(_)) => {}
            Err(e) => debug!(%peer, error = %e, "could not dial"),
        }
    }

    fn redial(&mut self) {
        let peers: Vec<PeerId> = self
            .static_peers
            .keys()
            .chain(&self.discovered)
            .copied()
            .collect();
        for peer in peers {
            self.dial(peer);
        }
    }

    fn send_control(&mut self, peer: PeerId, body: Vec<u8>, reply: Reply) {
        if !self.swarm.is_connected(&peer) {
            let _ = reply.send(Err(NetError::Control {
                peer,
                reason: "not connected".to_owned(),
            }));
            return;
        }
        let id = self.swarm.behaviour_mut().control.send_request(&peer, body);
        self.control_replies.insert(id, reply);
    }

    fn respond_control(&mut self, id: u64, body: Vec<u8>) {
        if let Some((peer, channel)) = self.pending_control.remove(&id)
            && self
                .swarm
                .behaviour_mut()
                .control
                .send_response(channel, body)
                .is_err()
        {
            debug!(%peer, "control response not sent: connection gone");
        }
    }

    fn bind_client(&mut self, session: SessionId, peer: PeerId) -> Result<(), NetError> {
        match self.session_clients.get(&session) {
            Some(owner) if *owner != peer => Err(NetError::SessionTaken { session }),
            _ => {
                self.session_clients.insert(session, peer);
                Ok(())
            }
        }
    }

    fn on_command(&mut self, command: Command) {
        match command {
            Command::Listen { addr, reply } => match self.swarm.listen_on(addr.clone()) {
                Ok(id) => {
                    self.pending_listens.insert(id, (addr, reply));
                }
                Err(e) => {
                    let _ = reply.send(Err(NetError::Listen {
                        addr,
                        reason: e.to_string(),
                    }));
                }
            },
            Command::AddStaticPeer { addr, reply } => {
                let _ = reply.send(self.add_static_peer(addr));
            }
            Command::Send { to, frame } => self.send_frame(to, frame),
            Command::Recv {
                from,
                session,
                round,
                deadline,
                reply,
            } => self.recv_frame((from, session, round), deadline, reply),
            Command::EndSession { session } => {
                self.inbox.end_session(session);
                self.session_clients.remove(&session);
            }
            Command::Quorum { reply } => {
                let _ = reply.send(self.quorum.view());
            }
            Command::Control { peer, body, reply } => self.send_control(peer, body, reply),
            Command::ControlRespond { id, body } => self.respond_control(id, body),
            Command::BindClient {
                session,
                peer,
                reply,
            } => {
                let _ = reply.send(self.bind_client(session, peer));
            }
            Command::AdoptSummary { summary, reply } => {
                let _ = reply.send(self.adopt_summary(summary));
            }
            Command::Announcements { reply } => {
                let mut all: Vec<(PeerId, Announcement)> =
                    self.announced.iter().map(|(p, a)| (*p, *a)).collect();
                all.sort_by_key(|(p, a)| (a.party, *p));
                let _ = reply.send(all);
            }
            Command::Rtts { reply } => {
                let _ = reply.send(self.rtts.clone());
            }
            // Handled by `run`.
            Command::Shutdown => {}
        }
    }

    /// The one place link emulation enters the send path.
    fn send_frame(&mut self, to: u8, frame: MpcFrame) {
        let peer = if to == CLIENT {
            self.session_clients.get(&frame.session).copied()
        } else {
            self.quorum.peer_of(to)
        };
        let Some(peer) = peer else {
            warn!(party = to, session = %frame.session, round = frame.round, "cannot send: party not connected");
            self.emit(NetEvent::SendFailed {
                party: Some(to),
                peer: None,
                reason: "party not connected".to_owned(),
            });
            return;
        };
        if !self.link.is_shaped() {
            self.transmit(peer, frame);
            return;
        }
        let bytes = match frame.encoded_len() {
            Ok(len) => len + LENGTH_PREFIX_BYTES,
            Err(e) => {
                warn!(party = to, error = %e, "cannot send frame");
                return;
            }
        };
        if !self.links.contains_key(&peer) {
            match PeerLink::spawn(peer, self.link, self.transmit_tx.clone()) {
                Ok(link) => {
                    self.links.insert(peer, link);
                }
                Err(e) => {
                    // Better an unshaped frame than a lost one.
                    warn!(%peer, error = %e, "could not start link emulation thread; sending unshaped");
                    self.transmit(peer, frame);
                    return;
                }
            }
        }
        let now = std::time::Instant::now();
        let rejected = match self.links.get_mut(&peer) {
            Some(link) => link.submit(now, bytes, frame).err(),
            None => Some(frame),
        };
        if let Some(frame) = rejected {
            warn!(%peer, "link emulation thread gone; sending unshaped");
            self.links.remove(&peer);
            self.transmit(peer, frame);
        }
    }

    /// Hands a frame to the peer's stream writer (after link emulation, if any).
    fn transmit(&mut self, peer: PeerId, frame: MpcFrame) {
        let frame = match self.writers.get(&peer) {
            Some(writer) => match writer.send(frame) {
                Ok(()) => return,
                Err(frame) => frame,
            },
            None => frame,
        };
        let writer = PeerWriter::spawn(
            peer,
            self.stream_control.clone(),
            self.max_frame_bytes,
            self.stream_events_tx.clone(),
        );
        if writer.send(frame).is_err() {
            warn!(%peer, "MPC stream writer gone at once");
        }
        self.writers.insert(peer, writer);
    }

    fn on_stream_event(&mut self, event: StreamEvent) {
        match event {
            StreamEvent::Frame {
                peer,
                frame,
                notices,
            } => {
                if let Ack::Rejected(rejection) = self.accept_frame(peer, frame) {
                    // The reader is gone when the stream is: nobody left to tell.
                    let _ = notices.send(rejection);
                }
            }
            StreamEvent::InboundRejected { peer, reason } => {
                self.emit(NetEvent::InboundRejected { peer, reason });
            }
            StreamEvent::RejectedByPeer { peer, rejection } => {
                warn!(%peer, reason = %rejection, "peer rejected our MPC frame");
                self.emit(NetEvent::SendFailed {
                    party: self.quorum.party_of(&peer),
                    peer: Some(peer),
                    reason: rejection.to_string(),
                });
            }
            StreamEvent::SendFailed { peer, reason } => {
                warn!(%peer, %reason, "MPC frame not delivered");
                self.emit(NetEvent::SendFailed {
                    party: self.quorum.party_of(&peer),
                    peer: Some(peer),
                    reason,
                });
            }
        }
    }

    fn recv_frame(&mut self, key: Key, deadline: std::time::Instant, reply: Reply) {
        let (from, session, round) = key;
        if let Some(payload) = self.inbox.take(&key) {
            let _ = reply.send(Ok(payload));
            return;
        }
        // A client's first message of a session may well come after the party starts
        // waiting for it, so only parties can be known to be absent.
        let error = if from != CLIENT && self.quorum.peer_of(from).is_none() {
            NetError::PartyNotConnected { party: from }
        } else if deadline <= std::time::Instant::now() {
            NetError::Timeout {
                from,
                session,
                round,
            }
        } else {
            match self.waiters.entry(key) {
                Entry::Occupied(_) => NetError::AlreadyWaiting {
                    from,
                    session,
                    round,
                },
                Entry::Vacant(slot) => {
                    let deadline = Instant::from_std(deadline);
                    slot.insert(Waiter { deadline, reply });
                    return;
                }
            }
        };
        let _ = reply.send(Err(error));
    }

    fn expire_waiters(&mut self) {
        let now = Instant::now();
        let expired: Vec<Key> = self
            .waiters
            .iter()
            .filter(|(_, w)| w.deadline <= now)
            .map(|(k, _)| *k)
            .collect();
        for key in expired {
            if let Some(waiter) = self.waiters.remove(&key) {
                let (from, session, round) = key;
                debug!(party = from, %session, round, "receive timed out");
                let _ = waiter.reply.send(Err(NetError::Timeout {
                    from,
                    session,
                    round,
                }));
            }
        }
    }

    /// Decides what happens to an incoming frame; never trusts the frame's claimed sender.
    fn accept_frame(&mut self, peer: PeerId, frame: MpcFrame) -> Ack {
        let party = if let Some(party) = self.quorum.party_of(&peer) {
            party
        } else if self.observers.contains(&peer) {
            match self.session_clients.get(&frame.session) {
                Some(owner) if *owner != peer => {
                    return self.reject(peer, Rejection::ForeignSession);
                }
                Some(_) => {}
                None => {
                    self.session_clients.insert(frame.session, peer);
                }
            }
            CLIENT
        } else {
            return self.reject(peer, Rejection::NotAnnounced);
        };
        if frame.sender != party {
            return self.reject(peer, Rejection::SenderMismatch);
        }
        let key = (party, frame.session, frame.round);
        let mut payload = frame.payload;
        if let Some(waiter) = self.waiters.remove(&key) {
            match waiter.reply.send(Ok(payload)) {
                Ok(()) => return Ack::Accepted,
                // The receiving thread gave up; keep the frame for a retry.
                Err(Ok(back)) => payload = back,
                Err(Err(_)) => return Ack::Accepted,
            }
        }
        match self.inbox.insert(key, payload) {
            Ok(()) => Ack::Accepted,
            Err(rejection) => self.reject(peer, rejection),
        }
    }

    fn reject(&self, peer: PeerId, rejection: Rejection) -> Ack {
        warn!(%peer, reason = %rejection, "rejected incoming MPC frame");
        self.emit(NetEvent::InboundRejected {
            peer,
            reason: rejection.to_string(),
        });
        Ack::Rejected(rejection)
    }

    /// An observer switches to another share summary and counts the connected peers that
    /// announced it.
    fn adopt_summary(&mut self, summary: ShareSummary) -> Result<QuorumView, NetError> {
        if self.quorum.local_announcement().is_some() {
            return Err(NetError::NotAnObserver);
        }
        if summary == self.quorum.summary() {
            return Ok(self.quorum.view());
        }
        let was_formed = self.quorum.is_formed();
        self.quorum = Quorum::new(summary, None).map_err(ConfigError::from)?;
        self.learning = false;
        let mut known: Vec<(PeerId, Announcement)> =
            self.announced.iter().map(|(p, a)| (*p, *a)).collect();
        known.sort_by_key(|(p, a)| (a.party, *p));
        for (peer, ann) in known {
            if let Err(conflict) = self.quorum.observe(peer, ann) {
                debug!(%conflict, "announcement not counted under the adopted summary");
            }
        }
        let view = self.quorum.view();
        info!(%summary, parties = ?view.parties(), "adopted share summary");
        if view.formed && !was_formed {
            self.emit(NetEvent::QuorumFormed(view.clone()));
        }
        Ok(view)
    }

    fn on_control_request(
        &mut self,
        peer: PeerId,
        body: Vec<u8>,
        channel: ResponseChannel<Vec<u8>>,
    ) {
        if !self.control_taken.load(Ordering::SeqCst) {
            // Dropping the channel fails the request at the peer at once.
            debug!(%peer, "control request refused: this node does not serve control messages");
            return;
        }
        let id = self.next_control_id;
        self.next_control_id += 1;
        let request = ControlRequest {
            peer,
            party: self.quorum.party_of(&peer),
            body,
            id,
            commands: self.self_commands.clone(),
        };
        match self.control_tx.try_send(request) {
            Ok(()) => {
                self.pending_control.insert(id, (peer, channel));
            }
            // Nobody handles control messages, or the handler is behind: dropping the channel
            // fails the request at the peer at once.
            Err(e) => debug!(%peer, error = %e, "control request not handled"),
        }
    }

    fn record_announcement(&mut self, peer: PeerId, announcement: Option<Announcement>) {
        if !self.swarm.is_connected(&peer) {
            return;
        }
        let Some(announcement) = announcement else {
            if self.observers.insert(peer) {
                debug!(%peer, "peer is an observer (a client)");
            }
            return;
        };
        self.announced.insert(peer, announcement);
        let was_formed = self.quorum.is_formed();
        match self.quorum.observe(peer, announcement) {
            Ok(true) => {
                info!(%peer, party = announcement.party, "peer joined the quorum view");
                self.emit(NetEvent::Announced { peer, announcement });
                if !was_formed && self.quorum.is_formed() {
                    let view = self.quorum.view();
                    info!(parties = ?view.parties(), "quorum formed");
                    self.emit(NetEvent::QuorumFormed(view));
                }
            }
            Ok(false) => {}
            // An observer that has not adopted the quorum's summary yet expects these.
            Err(conflict @ QuorumConflict::OtherProvisioning { .. }) if self.learning => {
                debug!(%conflict, "announcement not counted (summary not adopted yet)");
                self.emit(NetEvent::Conflict(conflict));
            }
            Err(conflict) => {
                warn!(%conflict, "announcement not accepted");
                self.emit(NetEvent::Conflict(conflict));
            }
        }
    }

    fn peer_gone(&mut self, peer: PeerId) {
        self.emit(NetEvent::PeerDisconnected(peer));
        self.links.remove(&peer);
        self.writers.remove(&peer);
        self.announced.remove(&peer);
        self.rtts.remove(&peer);
        self.pending_control.retain(|_, (p, _)| *p != peer);
        if self.observers.remove(&peer) {
            self.client_gone(peer);
        }
        let was_formed = self.quorum.is_formed();
        let Some(party) = self.quorum.remove(&peer) else {
            return;
        };
        info!(%peer, party, "party left the quorum view");
        let orphaned: Vec<Key> = self
            .waiters
            .keys()
            .filter(|k| k.0 == party)
            .copied()
            .collect();
        for key in orphaned {
            if let Some(waiter) = self.waiters.remove(&key) {
                let _ = waiter.reply.send(Err(NetError::PartyDisconnected {
                    party,
                    session: key.1,
                    round: key.2,
                }));
            }
        }
        if was_formed && !self.quorum.is_formed() {
            let view = self.quorum.view();
            warn!(parties = ?view.parties(), "quorum lost");
            self.emit(NetEvent::QuorumLost(view));
        }
    }

    /// Fails receives from a client that left and forgets its sessions.
    fn client_gone(&mut self, peer: PeerId) {
        let sessions: HashSet<SessionId> = self
            .session_clients
            .iter()
            .filter(|(_, owner)| **owner == peer)
            .map(|(s, _)| *s)
            .collect();
        self.session_clients.retain(|s, _| !sessions.contains(s));
        let orphaned: Vec<Key> = self
            .waiters
            .keys()
            .filter(|k| k.0 == CLIENT && sessions.contains(&k.1))
            .copied()
            .collect();
        for key in orphaned {
            if let Some(waiter) = self.waiters.remove(&key) {
                let _ = waiter.reply.send(Err(NetError::PartyDisconnected {
                    party: CLIENT,
                    session: key.1,
                    round: key.2,
                }));
            }
        }
    }

    fn on_swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::NewListenAddr {
                listener_id,
                address,
            } => {
                info!(%address, "listening");
                if let Some((_, reply)) = self.pending_listens.remove(&listener_id) {
                    let _ = reply.send(Ok(address.clone()));
                }
                self.emit(NetEvent::Listening(address));
            }
            SwarmEvent::ListenerClosed {
                listener_id,
                reason,
                ..
            } => {
                if let Some((addr, reply)) = self.pending_listens.remove(&listener_id) {
                    let reason = match reason {
                        Ok(()) => "listener closed".to_owned(),
                        Err(e) => e.to_string(),
                    };
                    let _ = reply.send(Err(NetError::Listen { addr, reason }));
                }
            }
            SwarmEvent::ConnectionEstablished {
                peer_id,
                num_established,
                endpoint,
                ..
            } => {
                debug!(peer = %peer_id, addr = %endpoint.get_remote_address(), "connection established");
                self.dial_wanted.remove(&peer_id);
                if num_established.get() == 1 {
                    self.emit(NetEvent::PeerConnected(peer_id));
                }
                // On every new connection, not just the first: after a reconnect the remote
                // may have forgotten us.
                let ours = self.quorum.local_announcement();
                self.swarm
                    .behaviour_mut()
                    .announce
                    .send_request(&peer_id, ours);
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established,
                cause,
                ..
            } => {
                debug!(peer = %peer_id, cause = ?cause, "connection closed");
                if num_established == 0 {
                    self.peer_gone(peer_id);
                }
            }
            SwarmEvent::IncomingConnectionError {
                send_back_addr,
                error,
                peer_id,
                ..
            } => {
                // Wrong PSK, failed Noise, not on the allow-list, or garbage: worth a warning,
                // never fatal.
                warn!(from = %send_back_addr, peer = ?peer_id, error = %error, "refused inbound connection");
                self.emit(NetEvent::Refused {
                    peer: peer_id,
                    addr: send_back_addr,
                    reason: error.to_string(),
                });
            }
            SwarmEvent::OutgoingConnectionError { peer_id, error, .. } => {
                // Static peers that are down are routine; a denial is not.
                if matches!(error, DialError::Denied { .. }) {
                    warn!(peer = ?peer_id, error = %error, "outgoing connection denied");
                } else {
                    debug!(peer = ?peer_id, error = %error, "dial failed");
                }
            }
            SwarmEvent::Behaviour(event) => self.on_behaviour_event(event),
            other => trace!(event = ?other, "swarm event"),
        }
    }

    fn on_behaviour_event(&mut self, event: BehaviourEvent) {
        match event {
            BehaviourEvent::Announce(event) => self.on_announce_event(event),
            BehaviourEvent::Mdns(mdns::Event::Discovered(found)) => {
                for (peer, addr) in found {
                    if !self.allowed.contains(&peer) {
                        debug!(%peer, %addr, "mDNS: ignoring peer not on the allow-list");
                        continue;
                    }
                    debug!(%peer, %addr, "mDNS: discovered");
                    self.swarm.add_peer_address(peer, addr);
                    self.discovered.insert(peer);
                    self.dial(peer);
                }
            }
            BehaviourEvent::Mdns(mdns::Event::Expired(gone)) => {
                for (peer, _) in gone {
                    self.discovered.remove(&peer);
                }
            }
            BehaviourEvent::Identify(identify::Event::Received { peer_id, info, .. }) => {
                debug!(peer = %peer_id, agent = %info.agent_version, "identified");
            }
            BehaviourEvent::Control(event) => self.on_control_event(event),
            BehaviourEvent::Ping(ping::Event { peer, result, .. }) => match result {
                Ok(rtt) => {
                    trace!(%peer, ?rtt, "ping");
                    if self.swarm.is_connected(&peer) {
                        self.rtts.insert(peer, rtt);
                    }
                }
                Err(e) => debug!(%peer, error = %e, "ping failed"),
            },
            _ => {}
        }
    }

    fn on_announce_event(
        &mut self,
        event: request_response::Event<Option<Announcement>, Option<Announcement>>,
    ) {
        match event {
            request_response::Event::Message { peer, message, .. } => match message {
                Message::Request {
                    request, channel, ..
                } => {
                    self.record_announcement(peer, request);
                    let ours = self.quorum.local_announcement();
                    if self
                        .swarm
                        .behaviour_mut()
                        .announce
                        .send_response(channel, ours)
                        .is_err()
                    {
                        debug!(%peer, "announcement response not sent: connection gone");
                    }
                }
                Message::Response { response, .. } => self.record_announcement(peer, response),
            },
            request_response::Event::OutboundFailure { peer, error, .. } => {
                debug!(%peer, %error, "announcement not delivered");
            }
            request_response::Event::InboundFailure { peer, error, .. } => {
                warn!(%peer, %error, "bad announcement");
            }
            request_response::Event::ResponseSent { .. } => {}
        }
    }

    fn on_control_event(&mut self, event: request_response::Event<Vec<u8>, Vec<u8>>) {
        match event {
            request_response::Event::Message { peer, message, .. } => match message {
                Message::Request {
                    request, channel, ..
                } => self.on_control_request(peer, request, channel),
                Message::Response {
                    request_id,
                    response,
                } => {
                    if let Some(reply) = self.control_replies.remove(&request_id) {
                        let _ = reply.send(Ok(response));
                    }
                }
            },
            request_response::Event::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            } => {
                debug!(%peer, %error, "control request failed");
                if let Some(reply) = self.control_replies.remove(&request_id) {
                    let _ = reply.send(Err(NetError::Control {
                        peer,
                        reason: error.to_string(),
                    }));
                }
            }
            request_response::Event::InboundFailure { peer, error, .. } => {
                debug!(%peer, %error, "incoming control request failed");
            }
            request_response::Event::ResponseSent { .. } => {}
        }
    }
}
