//! The task that owns the swarm: a select-and-dispatch loop. Everything else talks to it
//! through [`Command`]s.
//!
//! The decisions live in plain, unit-tested parts it drives: whom to dial ([`DialPolicy`]),
//! who is in the quorum ([`Membership`]), which control requests are in flight
//! ([`ControlBook`]) and where MPC frames go ([`Routing`]). This file only connects them to
//! the swarm: it exchanges announcements on every new connection, routes outgoing frames
//! through link emulation, and passes control messages (`/sotto/control/1`) to whoever took
//! [`crate::NetHandle::take_control_requests`], answered through [`ControlRequest::respond`].

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::StreamExt;
use libp2p::core::transport::ListenerId;
use libp2p::request_response::{self, Message, OutboundRequestId, ResponseChannel};
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::swarm::{ConnectionId, DialError, ListenError, SwarmEvent};
use libp2p::{Multiaddr, PeerId, Swarm, connection_limits, identify, mdns, ping};
use mesh::Endpoint;
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::time::Instant;
use tracing::{debug, info, trace, warn};

use crate::api::{Command, ControlRequest, NetEvent, Reply};
use crate::behaviour::{Behaviour, BehaviourEvent, check_port_free};
use crate::control::ControlBook;
use crate::dial::DialPolicy;
use crate::error::{NetError, describe};
use crate::frame::{Ack, LENGTH_PREFIX_BYTES, MPC_PROTOCOL, MpcFrame, Rejection, wire_number};
use crate::link::LinkProfile;
use crate::membership::Membership;
use crate::quorum::{Announcement, Quorum, QuorumView, ShareSummary};
use crate::routing::{InboxLimits, Routing};
use crate::shaper::PeerLink;
use crate::streams::{
    INBOUND_QUEUE, InboundBudget, PeerWriter, ReaderLimits, StreamEvent, spawn_acceptor,
};
use crate::throttle::{Throttle, WARN_WINDOW};

/// How often buffered frames are checked against their time-to-live (a frame may so outlive
/// it by up to this much).
const SWEEP_INTERVAL: Duration = Duration::from_secs(1);

/// Limits and settings the loop needs after construction.
pub(crate) struct LoopSettings {
    pub(crate) static_peers: Vec<Multiaddr>,
    pub(crate) allowed: HashSet<PeerId>,
    pub(crate) link: LinkProfile,
    pub(crate) redial_interval: Duration,
    pub(crate) max_buffered_frames: usize,
    pub(crate) max_buffered_bytes: usize,
    pub(crate) buffered_frame_ttl: Duration,
    pub(crate) control_tx: mpsc::Sender<ControlRequest>,
    pub(crate) control_taken: Arc<AtomicBool>,
    pub(crate) self_commands: mpsc::Sender<Command>,
    pub(crate) learning: bool,
    pub(crate) max_frame_bytes: usize,
    pub(crate) max_inbound_bytes: usize,
}

/// The warnings a peer could repeat without end, each rate-limited on its own per peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Warning {
    Rejected(Rejection),
    RejectedByPeer(Rejection),
    NotDelivered,
    CannotSend,
    RefusedInbound,
    Denied,
}

/// The task that owns the swarm; run it with `tokio::spawn(event_loop.run())`.
pub struct EventLoop {
    swarm: Swarm<Behaviour>,
    commands: mpsc::Receiver<Command>,
    events: broadcast::Sender<NetEvent>,
    transmit_tx: mpsc::UnboundedSender<(PeerId, MpcFrame)>,
    transmit_rx: mpsc::UnboundedReceiver<(PeerId, MpcFrame)>,
    members: Membership,
    dials: DialPolicy,
    /// Peers that may connect (the stack enforces it; the MPC stream acceptor checks again).
    allowed: HashSet<PeerId>,
    pending_listens: HashMap<ListenerId, (Multiaddr, oneshot::Sender<Result<Multiaddr, NetError>>)>,
    routing: Routing,
    link: LinkProfile,
    links: HashMap<PeerId, PeerLink>,
    redial_interval: Duration,
    /// Last measured ping round trip per connected peer.
    rtts: HashMap<PeerId, Duration>,
    /// The listen addresses each connection's peer reported (identify). One peer ID whose
    /// connections report different ones runs twice: see [`crate::NetHandle::instances`].
    listen_addrs: HashMap<(PeerId, ConnectionId), Vec<Multiaddr>>,
    control_tx: mpsc::Sender<ControlRequest>,
    /// Whether anyone took the control requests (until then they are refused at once).
    control_taken: Arc<AtomicBool>,
    /// Handed to every [`ControlRequest`] so its answer comes back here.
    self_commands: mpsc::Sender<Command>,
    control: ControlBook<ResponseChannel<Vec<u8>>, OutboundRequestId, Reply>,
    /// Opens MPC streams (`crate::streams`).
    stream_control: libp2p_stream::Control,
    /// MPC streams peers opened to this node, until `run` hands them to the acceptor task.
    incoming: Option<libp2p_stream::IncomingStreams>,
    /// The sending side of the MPC stream to each peer frames were sent to.
    writers: HashMap<PeerId, PeerWriter>,
    stream_events_tx: mpsc::Sender<StreamEvent>,
    stream_events_rx: mpsc::Receiver<StreamEvent>,
    max_frame_bytes: usize,
    /// What bounds the MPC stream readers (frame size, memory, rejection queues).
    reader_limits: ReaderLimits,
    /// Repeated warnings, logged at most once per window per peer and kind.
    warnings: Throttle<(Option<PeerId>, Warning)>,
}

impl fmt::Debug for EventLoop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventLoop")
            .field("local_peer_id", self.swarm.local_peer_id())
            .field("quorum", &self.members.view())
            .field("buffered_frames_and_waiters", &self.routing.load())
            .field("dropped_frames", &self.routing.dropped())
            .field("inbound_bytes_free", &self.reader_limits.budget.available())
            .field(
                "dropped_rejections",
                &self.reader_limits.dropped_notices.load(Ordering::Relaxed),
            )
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
        let me = swarm.local_peer_id();
        let others = settings.allowed.iter().filter(|p| *p != me).count();
        let dials = DialPolicy::new(
            *swarm.local_peer_id(),
            settings.allowed.clone(),
            settings.redial_interval,
        );
        let mut event_loop = EventLoop {
            swarm,
            commands,
            events,
            transmit_tx,
            transmit_rx,
            members: Membership::new(quorum, settings.learning),
            dials,
            allowed: settings.allowed,
            pending_listens: HashMap::new(),
            routing: Routing::new(InboxLimits::shared(
                settings.max_buffered_frames,
                settings.max_buffered_bytes,
                // Every peer that may ever connect gets its own equal share.
                others,
                settings.buffered_frame_ttl,
            )),
            link: settings.link,
            links: HashMap::new(),
            redial_interval: settings.redial_interval,
            rtts: HashMap::new(),
            listen_addrs: HashMap::new(),
            control_tx: settings.control_tx,
            control_taken: settings.control_taken,
            self_commands: settings.self_commands,
            control: ControlBook::new(),
            stream_control,
            incoming: Some(incoming),
            writers: HashMap::new(),
            stream_events_tx,
            stream_events_rx,
            max_frame_bytes: settings.max_frame_bytes,
            reader_limits: ReaderLimits {
                max_frame_bytes: settings.max_frame_bytes,
                budget: InboundBudget::new(settings.max_inbound_bytes),
                dropped_notices: Arc::default(),
            },
            warnings: Throttle::new(WARN_WINDOW),
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
                self.reader_limits.clone(),
                self.stream_events_tx.clone(),
            )
        });
        let mut redial = tokio::time::interval(self.redial_interval);
        redial.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut sweep = tokio::time::interval(SWEEP_INTERVAL);
        sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let next_deadline = self.routing.next_deadline();
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
                _ = sweep.tick() => self.sweep_inbox(),
                () = sleep, if next_deadline.is_some() => self.routing.expire(Instant::now()),
            }
        }
        if let Some(acceptor) = acceptor {
            acceptor.abort();
        }
        info!(peer = %self.swarm.local_peer_id(), "mesh event loop stopped");
    }

    /// Drops buffered frames whose time-to-live is up.
    fn sweep_inbox(&mut self) {
        let expired = self.routing.expire_buffered(Instant::now());
        if expired > 0 {
            let total = self.routing.dropped().expired;
            debug!(
                expired,
                total, "dropped buffered MPC frames nobody asked for in time"
            );
        }
    }

    /// Whether to log this repeat of `kind` from `peer` now: `Some(n)` with the number of
    /// repeats left out since the last line.
    fn throttled(&mut self, peer: Option<PeerId>, kind: Warning) -> Option<u64> {
        self.warnings.check((peer, kind), Instant::now())
    }

    fn emit(&self, event: NetEvent) {
        // No subscriber is fine: events are also logged.
        let _ = self.events.send(event);
    }

    fn add_static_peer(&mut self, addr: Multiaddr) -> Result<(), NetError> {
        let peer = self.dials.add_static(addr.clone())?;
        self.swarm.add_peer_address(peer, addr);
        self.dial(peer);
        Ok(())
    }

    fn dial(&mut self, peer: PeerId) {
        let connected = self.swarm.is_connected(&peer);
        let Some(addrs) = self
            .dials
            .dial_now(peer, connected, std::time::Instant::now())
        else {
            return;
        };
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
        for peer in self.dials.redial_targets() {
            self.dial(peer);
        }
    }

    fn listen(&mut self, addr: Multiaddr, reply: oneshot::Sender<Result<Multiaddr, NetError>>) {
        let listening = check_port_free(&addr).and_then(|()| {
            self.swarm
                .listen_on(addr.clone())
                .map_err(|e| NetError::Listen {
                    addr: addr.clone(),
                    reason: describe(&e),
                })
        });
        match listening {
            Ok(id) => {
                self.pending_listens.insert(id, (addr, reply));
            }
            Err(e) => {
                let _ = reply.send(Err(e));
            }
        }
    }

    /// The distinct listen-address sets each connected peer's connections reported.
    fn instances(&self) -> HashMap<PeerId, Vec<Vec<Multiaddr>>> {
        let mut out: HashMap<PeerId, Vec<Vec<Multiaddr>>> = HashMap::new();
        for ((peer, _), addrs) in &self.listen_addrs {
            let sets = out.entry(*peer).or_default();
            if !sets.contains(addrs) {
                sets.push(addrs.clone());
            }
        }
        for sets in out.values_mut() {
            sets.sort();
        }
        out
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
        self.control.sent(id, reply);
    }

    fn respond_control(&mut self, id: u64, body: Vec<u8>) {
        if let Some((peer, channel)) = self.control.answer(id)
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

    fn on_command(&mut self, command: Command) {
        match command {
            Command::Listen { addr, reply } => self.listen(addr, reply),
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
            } => {
                // A client's first message of a session may well come after the party starts
                // waiting for it, so only parties can be known to be absent.
                let absent = match from {
                    Endpoint::Party(p) if self.members.peer_of(p).is_none() => Some(p),
                    _ => None,
                };
                self.routing
                    .recv((from, session, round), deadline, absent, reply);
            }
            Command::EndSession { session } => self.routing.end_session(session),
            Command::Quorum { reply } => {
                let _ = reply.send(self.members.view());
            }
            Command::Control { peer, body, reply } => self.send_control(peer, body, reply),
            Command::ControlRespond { id, body } => self.respond_control(id, body),
            Command::BindClient {
                session,
                peer,
                reply,
            } => {
                let _ = reply.send(self.routing.bind_client(session, peer));
            }
            Command::AdoptSummary { summary, reply } => {
                let _ = reply.send(self.adopt_summary(summary));
            }
            Command::Announcements { reply } => {
                let _ = reply.send(self.members.announcements());
            }
            Command::Rtts { reply } => {
                let _ = reply.send(self.rtts.clone());
            }
            Command::DialFailures { reply } => {
                let _ = reply.send(self.dials.failures());
            }
            Command::Instances { reply } => {
                let _ = reply.send(self.instances());
            }
            // Handled by `run`.
            Command::Shutdown => {}
        }
    }

    /// The one place link emulation enters the send path.
    fn send_frame(&mut self, to: Endpoint, frame: MpcFrame) {
        let peer = match to {
            Endpoint::Client => self.routing.client_of(frame.session),
            Endpoint::Party(p) => self.members.peer_of(p),
        };
        let Some(peer) = peer else {
            if let Some(suppressed) = self.throttled(None, Warning::CannotSend) {
                warn!(%to, session = %frame.session, round = frame.round, suppressed, "cannot send: not connected");
            }
            self.emit(NetEvent::SendFailed {
                to: Some(to),
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
                warn!(%to, error = %e, "cannot send frame");
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
                reserved,
            } => {
                if let Ack::Rejected(rejection) = self.accept_frame(peer, frame) {
                    notices.send(rejection);
                }
                // The frame is delivered, buffered (the inbox counts it now) or dropped.
                drop(reserved);
            }
            StreamEvent::InboundRejected { peer, reason } => {
                self.emit(NetEvent::InboundRejected { peer, reason });
            }
            StreamEvent::RejectedByPeer { peer, rejection } => {
                if let Some(suppressed) =
                    self.throttled(Some(peer), Warning::RejectedByPeer(rejection))
                {
                    warn!(%peer, reason = %rejection, suppressed, "peer rejected our MPC frame");
                }
                self.emit(NetEvent::SendFailed {
                    to: self.endpoint_of(&peer),
                    peer: Some(peer),
                    reason: rejection.to_string(),
                });
            }
            StreamEvent::SendFailed { peer, reason } => {
                if let Some(suppressed) = self.throttled(Some(peer), Warning::NotDelivered) {
                    warn!(%peer, %reason, suppressed, "MPC frame not delivered");
                }
                self.emit(NetEvent::SendFailed {
                    to: self.endpoint_of(&peer),
                    peer: Some(peer),
                    reason,
                });
            }
        }
    }

    /// Decides what happens to an incoming frame; never trusts the frame's claimed sender.
    fn accept_frame(&mut self, peer: PeerId, frame: MpcFrame) -> Ack {
        let from = if let Some(party) = self.members.party_of(&peer) {
            Endpoint::Party(party)
        } else if self.members.is_observer(&peer) {
            // Only sessions this node admitted for this client: a frame never binds one.
            if let Err(rejection) = self.routing.check_client(frame.session, peer) {
                return self.reject(peer, rejection);
            }
            Endpoint::Client
        } else {
            return self.reject(peer, Rejection::NotAnnounced);
        };
        if frame.sender != wire_number(from) {
            return self.reject(peer, Rejection::SenderMismatch);
        }
        let key = (from, frame.session, frame.round);
        match self
            .routing
            .deliver(key, peer, frame.payload, Instant::now())
        {
            Ok(()) => Ack::Accepted,
            Err(rejection) => self.reject(peer, rejection),
        }
    }

    /// Who `peer` is in the MPC: its party, or the client if it is an observer.
    fn endpoint_of(&self, peer: &PeerId) -> Option<Endpoint> {
        match self.members.party_of(peer) {
            Some(p) => Some(Endpoint::Party(p)),
            None => self.members.is_observer(peer).then_some(Endpoint::Client),
        }
    }

    fn reject(&mut self, peer: PeerId, rejection: Rejection) -> Ack {
        if let Some(suppressed) = self.throttled(Some(peer), Warning::Rejected(rejection)) {
            warn!(%peer, reason = %rejection, suppressed, "rejected incoming MPC frame");
        }
        self.emit(NetEvent::InboundRejected {
            peer,
            reason: rejection.to_string(),
        });
        Ack::Rejected(rejection)
    }

    fn adopt_summary(&mut self, summary: ShareSummary) -> Result<QuorumView, NetError> {
        let (view, formed) = self.members.adopt_summary(summary)?;
        if let Some(event) = formed {
            self.emit(event);
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
        let id = self.control.hold(peer, channel);
        let request = ControlRequest {
            peer,
            party: self.members.party_of(&peer),
            body,
            id,
            commands: self.self_commands.clone(),
        };
        if let Err(e) = self.control_tx.try_send(request) {
            // Nobody handles control messages, or the handler is behind: dropping the channel
            // fails the request at the peer at once.
            debug!(%peer, error = %e, "control request not handled");
            self.control.answer(id);
        }
    }

    fn record_announcement(&mut self, peer: PeerId, announcement: Option<Announcement>) {
        if !self.swarm.is_connected(&peer) {
            return;
        }
        self.dials.reached(peer);
        for event in self.members.record(peer, announcement) {
            self.emit(event);
        }
    }

    fn peer_gone(&mut self, peer: PeerId) {
        self.emit(NetEvent::PeerDisconnected(peer));
        self.links.remove(&peer);
        self.writers.remove(&peer);
        self.rtts.remove(&peer);
        self.control.peer_gone(peer);
        let purged = self.routing.purge_peer(peer);
        if purged > 0 {
            debug!(%peer, purged, "dropped the buffered MPC frames of a disconnected peer");
        }
        let departure = self.members.gone(peer);
        if departure.observer {
            self.routing.client_gone(peer);
        }
        if let Some(party) = departure.party {
            self.routing.party_gone(party);
        }
        if let Some(view) = departure.quorum_lost {
            self.emit(NetEvent::QuorumLost(view));
        }
    }

    fn connection_closed(&mut self, peer: PeerId, connection: ConnectionId, left: u32) {
        self.listen_addrs.remove(&(peer, connection));
        if left == 0 {
            if !self.members.heard_from(&peer) {
                // Every node announces itself (or that it is a client) at once: a peer that
                // hung up first did not admit us.
                self.dials.closed_unannounced(peer);
            }
            self.peer_gone(peer);
        }
    }

    fn connection_established(&mut self, peer: PeerId, established: u32) {
        self.dials.connected(peer);
        if established == 1 {
            self.emit(NetEvent::PeerConnected(peer));
        }
        // On every new connection, not just the first: after a reconnect the remote may have
        // forgotten us.
        let ours = self.members.local_announcement();
        self.swarm
            .behaviour_mut()
            .announce
            .send_request(&peer, ours);
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
                        Err(e) => describe(&e),
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
                self.connection_established(peer_id, num_established.get());
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                connection_id,
                num_established,
                cause,
                ..
            } => {
                debug!(peer = %peer_id, cause = ?cause, "connection closed");
                self.connection_closed(peer_id, connection_id, num_established);
            }
            SwarmEvent::IncomingConnectionError {
                send_back_addr,
                error,
                peer_id,
                ..
            } => {
                // Wrong PSK, failed Noise, not on the allow-list, over a connection limit, or
                // garbage: worth a warning (one per window), never fatal.
                let reason = refusal_reason(&error);
                if let Some(suppressed) = self.throttled(peer_id, Warning::RefusedInbound) {
                    warn!(from = %send_back_addr, peer = ?peer_id, error = %reason, suppressed, "refused inbound connection");
                }
                self.emit(NetEvent::Refused {
                    peer: peer_id,
                    addr: send_back_addr,
                    reason,
                });
            }
            SwarmEvent::OutgoingConnectionError { peer_id, error, .. } => {
                if let (Some(peer), Some(failure)) = (peer_id, crate::dial::classify(&error)) {
                    self.dials.failed(peer, failure);
                }
                // Static peers that are down are routine; a denial is not.
                if matches!(error, DialError::Denied { .. }) {
                    if let Some(suppressed) = self.throttled(peer_id, Warning::Denied) {
                        warn!(peer = ?peer_id, error = %error, suppressed, "outgoing connection denied");
                    }
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
                    if !self.dials.discovered(peer) {
                        debug!(%peer, %addr, "mDNS: ignoring peer not on the allow-list");
                        continue;
                    }
                    debug!(%peer, %addr, "mDNS: discovered");
                    self.swarm.add_peer_address(peer, addr);
                    self.dial(peer);
                }
            }
            BehaviourEvent::Mdns(mdns::Event::Expired(gone)) => {
                for (peer, _) in gone {
                    self.dials.expired(peer);
                }
            }
            BehaviourEvent::Identify(identify::Event::Received {
                peer_id,
                connection_id,
                info,
            }) => {
                debug!(peer = %peer_id, agent = %info.agent_version, "identified");
                let mut addrs = info.listen_addrs;
                addrs.sort();
                addrs.dedup();
                self.listen_addrs.insert((peer_id, connection_id), addrs);
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
                    let ours = self.members.local_announcement();
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
                    if let Some(reply) = self.control.settled(&request_id) {
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
                if let Some(reply) = self.control.settled(&request_id) {
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

/// Why an inbound connection was refused; a denial names the limit it hit (the swarm's own
/// text says only "connection denied").
fn refusal_reason(error: &ListenError) -> String {
    if let ListenError::Denied { cause } = error
        && let Some(exceeded) = cause.downcast_ref::<connection_limits::Exceeded>()
    {
        return format!("refused: {exceeded}");
    }
    error.to_string()
}
