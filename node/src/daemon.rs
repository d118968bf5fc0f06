//! `sotto run --config node.toml`: one device of the mesh.
//!
//! At start the node checks what it can before opening a socket: the config
//! ([`crate::config`]), the share file (its header against itself, its size plus the KV cache
//! against the device profile's memory budget), the key files (owner-only). It then joins the
//! mesh (static peers, optional mDNS, PSK + Noise, allow-list), announces its party index and
//! share summary, and serves control messages: [`Control::Info`], [`Control::Status`], and
//! generation sessions ([`crate::session`]), each on its own OS thread. A failed session never
//! stops the node; a client that disconnects ends its sessions.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;
use mesh::Threshold;
use mesh_net::{self as net, ControlRequest, NetEvent, NetHandle, PeerId, ShareSummary};
use models::secure::PartyModel;
use models::sharefile::ShareFile;
use tokio::sync::broadcast;
use tracing::{error, info, warn};

use crate::config::NodeConfig;
use crate::session::{
    Control, Directive, LinkStatus, ModelInfo, NodeStatus, PartySession, Reply, SessionControl,
    SessionKey, SessionRequest, Stream, decode, encode, frame_session, key_hex,
};

/// `sotto run`.
#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    /// The node's config file (see docs/deployment.md).
    #[arg(long, default_value = "node.toml")]
    pub(crate) config: PathBuf,
    /// Use this device profile instead of the config's `profile`: a built-in name (e.g. rpi4,
    /// see `sotto profiles`) or a path to a profile .toml.
    #[arg(long)]
    pub(crate) profile: Option<String>,
    /// Print the peer ID of the identity file (creating it, 0600, if missing) and exit: what
    /// goes into the other devices' `allowed_peers`. Uses --identity, else the config's.
    #[arg(long)]
    pub(crate) print_peer_id: bool,
    /// The identity file for --print-peer-id.
    #[arg(long, requires = "print_peer_id")]
    pub(crate) identity: Option<PathBuf>,
}

/// How long a party waits for the other participants of a request to be connected.
const PARTICIPANTS_WAIT: Duration = Duration::from_secs(5);
/// How long a paused session may take to stop before the party answers anyway.
const PAUSE_WAIT: Duration = Duration::from_secs(5);

/// How a node serves sessions.
#[derive(Clone, Debug)]
pub(crate) struct NodeSettings {
    pub(crate) round_timeout: Duration,
    pub(crate) recovery_timeout: Duration,
    pub(crate) max_sessions: usize,
    pub(crate) profile: String,
}

/// One party's serving state: what the control handler needs.
pub(crate) struct Node {
    net: NetHandle,
    model: Arc<PartyModel>,
    th: Threshold,
    party: u8,
    summary: ShareSummary,
    info: ModelInfo,
    sessions: Mutex<HashMap<SessionKey, Arc<SessionControl>>>,
    round_timeout: Duration,
    recovery_timeout: Duration,
    max_sessions: usize,
    profile: String,
    started: Instant,
    rt: tokio::runtime::Handle,
}

/// Bytes of the KV cache of one session at full context (keys and values, every layer, one
/// 16-byte share per element).
fn kv_cache_bytes(c: &models::Config) -> u64 {
    (c.n_layers * c.seq_len * c.kv_dim() * 2 * 16) as u64
}

pub(crate) fn run_node(args: &RunArgs) -> Result<()> {
    if args.print_peer_id {
        let path = match &args.identity {
            Some(p) => p.clone(),
            None => NodeConfig::load(&args.config)?.identity,
        };
        let key = net::load_or_generate_identity(&path)
            .with_context(|| format!("identity file {}", path.display()))?;
        println!("{}", key.public().to_peer_id());
        return Ok(());
    }
    let mut config = NodeConfig::load(&args.config)?;
    if let Some(spec) = &args.profile {
        config.profile =
            firmware_profiles::Profile::find(spec).with_context(|| format!("--profile {spec}"))?;
    }
    // Before reading it: a share file that alone overflows the budget would only be refused
    // after filling the device's memory (reading and arranging it holds it twice).
    let file_len = std::fs::metadata(&config.share_file)
        .with_context(|| {
            format!(
                "the share file named by `share_file` in {}",
                config.path.display()
            )
        })?
        .len();
    config
        .profile
        .check_fits(
            file_len.saturating_mul(2),
            &format!("loading share file {}", config.share_file.display()),
        )
        .context("the node does not fit this device profile")?;
    let file = ShareFile::read(&config.share_file).with_context(|| {
        format!(
            "reading the share file named by `share_file` in {}",
            config.path.display()
        )
    })?;
    let h = file.header.clone();
    let th = Threshold::new(usize::from(h.n), usize::from(h.t))
        .with_context(|| format!("{}: its (n, t) cannot work", config.share_file.display()))?;
    let model = Arc::new(
        PartyModel::from_share_file(&file, th, usize::from(h.party) - 1)
            .with_context(|| format!("{}", config.share_file.display()))?,
    );
    let c = *model.config();
    // The file is read, then arranged into the model: both live at once while loading.
    let share_bytes = 16 * file.elements().len() as u64;
    drop(file);
    let need = 2 * share_bytes + config.max_sessions as u64 * kv_cache_bytes(&c);
    config
        .profile
        .check_fits(
            need,
            &format!(
                "share file + KV cache of {} session(s) (set max_sessions lower to need less)",
                config.max_sessions
            ),
        )
        .context("the node does not fit this device profile")?;
    let psk = net::load_psk(&config.psk_file).with_context(|| {
        format!(
            "the mesh key named by `psk_file` in {}",
            config.path.display()
        )
    })?;
    let key = net::load_or_generate_identity(&config.identity).with_context(|| {
        format!(
            "the identity named by `identity` in {}",
            config.path.display()
        )
    })?;
    let summary = summary_of(&model);
    let net_config = config.net_config(psk, summary, h.party);
    let workers = config.profile.worker_threads().max(2);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async move {
        let (handle, event_loop) = net::new(net_config, key).context("starting the mesh node")?;
        let events = handle.subscribe();
        let loop_task = tokio::spawn(event_loop.run());
        let settings = NodeSettings {
            round_timeout: config.round_timeout,
            recovery_timeout: config.recovery_timeout,
            max_sessions: config.max_sessions,
            profile: config.profile.name().to_owned(),
        };
        let node = Node::new(handle.clone(), model, th, settings);
        eprintln!(
            "sotto node: party {} of (n={}, t={}), {}, profile {} ({} worker threads, {} of {} MiB budget, {} network, link emulation {}), peer {}",
            h.party,
            h.n,
            h.t,
            summary,
            config.profile.name(),
            workers,
            need.div_ceil(1 << 20),
            config.profile.memory_budget_mib(),
            config.profile.network(),
            config.link,
            node.net().local_peer_id()
        );
        serve(Arc::clone(&node), events)?;
        shutdown_signal().await;
        info!("shutting down");
        node.abort_all("the node is shutting down");
        handle.shutdown().await;
        let _ = tokio::time::timeout(Duration::from_secs(5), loop_task).await;
        Ok(())
    })
}

/// The share summary every party of this provisioning announces.
pub(crate) fn summary_of(model: &PartyModel) -> ShareSummary {
    let h = model.header();
    ShareSummary {
        model_sha256: h.model_sha256,
        provisioning_id: h.provisioning_id,
        n: h.n,
        t: h.t,
    }
}

/// Starts answering control messages and watching the mesh (call once per node).
pub(crate) fn serve(node: Arc<Node>, events: broadcast::Receiver<NetEvent>) -> Result<()> {
    let Some(requests) = node.net.take_control_requests() else {
        bail!("this node's control requests are already being served");
    };
    tokio::spawn(serve_control(Arc::clone(&node), requests));
    tokio::spawn(watch(node, events));
    Ok(())
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Logs what an operator must see and ends the sessions of clients that left.
async fn watch(node: Arc<Node>, mut events: broadcast::Receiver<NetEvent>) {
    loop {
        match events.recv().await {
            Ok(NetEvent::Listening(addr)) => {
                eprintln!(
                    "sotto node: listening on {addr}/p2p/{}",
                    node.net.local_peer_id()
                );
            }
            Ok(NetEvent::Conflict(conflict)) => {
                error!("refusing a peer: {conflict}");
            }
            Ok(NetEvent::Refused { peer, addr, reason }) => {
                warn!(?peer, %addr, %reason, "refused a connection (wrong mesh key, not on the allow-list, or not a Sotto node)");
            }
            Ok(NetEvent::QuorumFormed(view)) => {
                eprintln!(
                    "sotto node: quorum formed with parties {:?}",
                    view.parties()
                );
            }
            Ok(NetEvent::QuorumLost(view)) => {
                eprintln!(
                    "sotto node: quorum lost, parties present {:?}",
                    view.parties()
                );
            }
            Ok(NetEvent::PeerDisconnected(peer)) => {
                let gone: Vec<Arc<SessionControl>> = node
                    .sessions
                    .lock()
                    .map(|s| s.values().filter(|c| c.client == peer).cloned().collect())
                    .unwrap_or_default();
                for s in gone {
                    warn!(session = %key_hex(&s.key), "the client disconnected; ending its session");
                    s.direct(Directive::Abort("the client disconnected".into()));
                }
            }
            Ok(_) => {}
            Err(broadcast::error::RecvError::Lagged(_)) => {}
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

async fn serve_control(node: Arc<Node>, mut requests: tokio::sync::mpsc::Receiver<ControlRequest>) {
    while let Some(req) = requests.recv().await {
        let node = Arc::clone(&node);
        tokio::spawn(async move {
            let reply = match decode::<Control>(&req.body) {
                Ok(msg) => node.handle(req.peer, req.party, msg).await,
                Err(e) => Reply::Rejected(e.to_string()),
            };
            let _ = req.respond(encode(&reply)).await;
        });
    }
}

impl Node {
    /// A node serving `model` as its party over `net`. Call inside the runtime.
    pub(crate) fn new(
        net: NetHandle,
        model: Arc<PartyModel>,
        th: Threshold,
        settings: NodeSettings,
    ) -> Arc<Node> {
        let h = model.header().clone();
        let c = *model.config();
        let info = ModelInfo {
            party: h.party,
            n: h.n,
            t: h.t,
            model_sha256: h.model_sha256,
            provisioning_id: h.provisioning_id,
            vocab_size: c.vocab_size as u32,
            seq_len: c.seq_len as u32,
            dim: c.dim as u32,
            n_layers: c.n_layers as u32,
        };
        Arc::new(Node {
            net,
            summary: summary_of(&model),
            model,
            th,
            party: h.party,
            info,
            sessions: Mutex::new(HashMap::new()),
            round_timeout: settings.round_timeout,
            recovery_timeout: settings.recovery_timeout,
            max_sessions: settings.max_sessions,
            profile: settings.profile,
            started: Instant::now(),
            rt: tokio::runtime::Handle::current(),
        })
    }

    /// The node's mesh handle.
    pub(crate) fn net(&self) -> &NetHandle {
        &self.net
    }

    /// Ends every running session.
    pub(crate) fn abort_all(&self, reason: &str) {
        let all: Vec<Arc<SessionControl>> = self
            .sessions
            .lock()
            .map(|s| s.values().cloned().collect())
            .unwrap_or_default();
        for s in all {
            s.direct(Directive::Abort(reason.to_owned()));
        }
    }

    fn session(&self, key: &SessionKey, peer: PeerId) -> Option<Arc<SessionControl>> {
        let s = self.sessions.lock().ok()?.get(key).cloned()?;
        // Only the client that opened a session may steer it.
        (s.client == peer).then_some(s)
    }

    async fn handle(self: &Arc<Self>, peer: PeerId, party: Option<u8>, msg: Control) -> Reply {
        match msg {
            Control::Info => Reply::Info(self.info.clone()),
            Control::Status => Reply::Status(Box::new(self.status().await)),
            Control::Open(req) => self.open(peer, party, req).await,
            Control::Pause { key, epoch } => match self.session(&key, peer) {
                Some(s) => {
                    s.pause(epoch);
                    let party = self.party;
                    let report =
                        tokio::task::spawn_blocking(move || s.report(party, PAUSE_WAIT)).await;
                    match report {
                        Ok(r) => Reply::Report(r),
                        Err(e) => Reply::Rejected(e.to_string()),
                    }
                }
                None => Reply::Rejected("no such session".into()),
            },
            Control::Resume {
                key,
                epoch,
                live,
                redo,
            } => match self.session(&key, peer) {
                Some(s) => {
                    let out = frame_session(&key, Stream::Output(epoch));
                    if let Err(e) = self.net.bind_client(out, peer).await {
                        return Reply::Rejected(e.to_string());
                    }
                    if !live.contains(&self.party) {
                        s.direct(Directive::Abort("left out of the live set".into()));
                        return Reply::Ok;
                    }
                    s.direct(Directive::Resume { epoch, live, redo });
                    Reply::Ok
                }
                None => Reply::Rejected("no such session".into()),
            },
            Control::Close { key } => match self.session(&key, peer) {
                Some(s) => {
                    let stats = s.stats();
                    s.direct(Directive::Close);
                    Reply::Closed(stats)
                }
                None => Reply::Rejected("no such session".into()),
            },
            Control::Abort { key, reason } => {
                if let Some(s) = self.session(&key, peer) {
                    s.direct(Directive::Abort(reason));
                }
                Reply::Ok
            }
            Control::Stalled { .. } => Reply::Rejected("parties do not coordinate recovery".into()),
        }
    }

    async fn status(&self) -> NodeStatus {
        let view = self.net.quorum().await.ok();
        let rtts = self.net.rtts().await.unwrap_or_default();
        let mut links: Vec<LinkStatus> = Vec::new();
        if let Some(v) = &view {
            for (&party, peer) in &v.peers {
                links.push(LinkStatus {
                    party: Some(party),
                    peer: peer.to_string(),
                    rtt_us: rtts.get(peer).map(|d| d.as_micros() as u64),
                });
            }
        }
        for (peer, rtt) in &rtts {
            if !links.iter().any(|l| l.peer == peer.to_string()) {
                links.push(LinkStatus {
                    party: None,
                    peer: peer.to_string(),
                    rtt_us: Some(rtt.as_micros() as u64),
                });
            }
        }
        NodeStatus {
            info: self.info.clone(),
            peer: self.net.local_peer_id().to_string(),
            quorum: view.as_ref().map(|v| v.parties()).unwrap_or_default(),
            formed: view.as_ref().is_some_and(|v| v.formed),
            links,
            sessions: self.sessions.lock().map(|s| s.len() as u32).unwrap_or(0),
            profile: self.profile.clone(),
            uptime_s: self.started.elapsed().as_secs(),
        }
    }

    /// Checks a request; on success starts its thread.
    async fn open(
        self: &Arc<Self>,
        client: PeerId,
        party: Option<u8>,
        req: SessionRequest,
    ) -> Reply {
        match self.try_open(client, party, req).await {
            Ok(()) => Reply::Accepted,
            Err(why) => {
                warn!(%client, "refused a session request: {why}");
                Reply::Rejected(why)
            }
        }
    }

    async fn try_open(
        self: &Arc<Self>,
        client: PeerId,
        party: Option<u8>,
        req: SessionRequest,
    ) -> Result<(), String> {
        if party.is_some() {
            return Err("sessions are requested by clients, not by parties".into());
        }
        if req.model_sha256 != self.summary.model_sha256
            || req.provisioning_id != self.summary.provisioning_id
        {
            return Err(format!(
                "party {} serves another model or provisioning ({}); check which mesh the client reaches",
                self.party, self.summary
            ));
        }
        req.params()
            .check(self.model.config())
            .map_err(|e| e.to_string())?;
        let (n, t) = (self.th.n(), self.th.t());
        let p = &req.participants;
        let sorted = p.windows(2).all(|w| w[0] < w[1]);
        if !sorted || p.iter().any(|&i| i == 0 || usize::from(i) > n) {
            return Err(format!(
                "participants {p:?} are not distinct indices in 1..={n} in order"
            ));
        }
        if p.len() < 2 * t + 1 {
            return Err(format!(
                "{} participants, a ({n}, {t}) quorum needs {}",
                p.len(),
                2 * t + 1
            ));
        }
        if !p.contains(&self.party) {
            return Err(format!(
                "party {} is not among the participants {p:?}",
                self.party
            ));
        }
        {
            let sessions = self
                .sessions
                .lock()
                .map_err(|_| "session table poisoned".to_string())?;
            if sessions.contains_key(&req.key) {
                return Err("a session with this key already exists".into());
            }
            if sessions.len() >= self.max_sessions {
                return Err(format!(
                    "party {} is busy ({} sessions running); try again shortly",
                    self.party,
                    sessions.len()
                ));
            }
        }
        // Every participant must be reachable from here too, or the first round would stall.
        let until = Instant::now() + PARTICIPANTS_WAIT;
        loop {
            let view = self.net.quorum().await.map_err(|e| e.to_string())?;
            let missing: Vec<u8> = p
                .iter()
                .copied()
                .filter(|&i| i != self.party && !view.peers.contains_key(&i))
                .collect();
            if missing.is_empty() {
                break;
            }
            if Instant::now() >= until {
                return Err(format!(
                    "party {} is not connected to parties {missing:?}",
                    self.party
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        for stream in [Stream::Input, Stream::Output(0)] {
            self.net
                .bind_client(frame_session(&req.key, stream), client)
                .await
                .map_err(|e| e.to_string())?;
        }
        let control = Arc::new(SessionControl::new(req.key, client));
        {
            let mut sessions = self
                .sessions
                .lock()
                .map_err(|_| "session table poisoned".to_string())?;
            if sessions.len() >= self.max_sessions {
                return Err(format!("party {} is busy; try again shortly", self.party));
            }
            sessions.insert(req.key, Arc::clone(&control));
        }
        info!(session = %key_hex(&req.key), %client, participants = ?req.participants, prompt = req.prompt_len, steps = req.steps, "session accepted");
        let session = PartySession {
            rt: self.rt.clone(),
            net: self.net.clone(),
            control,
            model: Arc::clone(&self.model),
            th: self.th,
            party: self.party,
            request: req.clone(),
            round_timeout: self.round_timeout,
            recovery_timeout: self.recovery_timeout,
        };
        let node = Arc::clone(self);
        let key = req.key;
        let steer = Arc::clone(&session.control);
        std::thread::Builder::new()
            .name(format!("session-{}", key_hex(&key)))
            .spawn(move || {
                if let crate::session::Outcome::Aborted(why) = session.run() {
                    info!(session = %key_hex(&key), %why, "session aborted");
                }
                if let Ok(mut s) = node.sessions.lock() {
                    s.remove(&key);
                }
                let net = node.net.clone();
                node.rt.spawn(async move {
                    let _ = net.end_session(frame_session(&key, Stream::Input)).await;
                    for e in 0..=steer.epoch() {
                        let _ = net
                            .end_session(frame_session(&key, Stream::Rounds(e)))
                            .await;
                        let _ = net
                            .end_session(frame_session(&key, Stream::Output(e)))
                            .await;
                    }
                });
            })
            .map_err(|e| {
                if let Ok(mut s) = self.sessions.lock() {
                    s.remove(&key);
                }
                format!("cannot start the session thread: {e}")
            })?;
        Ok(())
    }
}
