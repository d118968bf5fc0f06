//! `sotto ask` and `sotto status`: the client side of the mesh.
//!
//! The client is an observer node (no party index) admitted by the mesh key and the parties'
//! allow-lists. It finds the parties (static `--peer` addresses or mDNS), learns the quorum's
//! share summary from their announcements (the summary most parties agree on), and then:
//!
//! - `ask`: opens a session with every party it sees ([`crate::session`]), shares the prompt's
//!   tokens as one-hot rows, and reconstructs each output from the shares of the live parties,
//!   streaming the text. When a party is lost it coordinates the recovery (pause, collect
//!   reports, resume the survivors from the earliest unit any of them is in); below `2t + 1`
//!   survivors it stops with an error at once.
//! - `status`: asks every party what it sees: its quorum, (n, t), model hash, links and RTTs.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use clap::Args;
use mesh::{Fp, Share, Threshold, fx};
use mesh_net::{
    self as net, Keypair, Multiaddr, NetConfig, NetError, NetEvent, NetHandle, PeerId,
    PreSharedKey, Protocol, QuorumView, ShareSummary,
};
use models::secure::ClientToken;
use models::{BOS, Sampler, Tokenizer, Utf8Stream};
use rand::RngCore;
use tokio::sync::{broadcast, mpsc};
use tracing::{debug, info, warn};

use crate::private::SamplingArgs;
use crate::session::{
    Control, ModelInfo, NodeStatus, Reply, Report, SessionKey, SessionRequest, SessionStats,
    Stream, WireSelection, decode, decode_shares, encode, encode_shares, frame_session, key_hex,
};

/// How the client reaches the mesh (shared by `ask` and `status`).
#[derive(Debug, Args, Clone)]
pub(crate) struct ClientArgs {
    /// A party's address ending in /p2p/<peer id>; repeat for each device.
    #[arg(long = "peer", value_name = "MULTIADDR")]
    pub(crate) peers: Vec<String>,
    /// Also find parties by mDNS on the local network (only peers given with --allow or
    /// --peer are dialed).
    #[arg(long)]
    pub(crate) mdns: bool,
    /// A party's peer ID to admit when found by mDNS; repeat for each device.
    #[arg(long = "allow", value_name = "PEER_ID")]
    pub(crate) allow: Vec<String>,
    /// The mesh pre-shared key file (the same as the devices').
    #[arg(long)]
    pub(crate) psk: PathBuf,
    /// The client's identity file (created 0600 on first use); its peer ID must be on every
    /// device's allow-list. Default: $HOME/.config/sotto/client.key.
    #[arg(long)]
    pub(crate) identity: Option<PathBuf>,
    /// Seconds to wait for 2t+1 parties to be connected.
    #[arg(long, default_value_t = 30)]
    pub(crate) connect_timeout: u64,
    /// Milliseconds to wait, once 2t+1 parties are there, for the rest of the n (more
    /// parties = a generation that survives losing some).
    #[arg(long, default_value_t = 2000)]
    pub(crate) gather_ms: u64,
}

/// `sotto ask`.
#[derive(Debug, Args)]
pub(crate) struct AskArgs {
    /// The prompt (tokenized here; the devices never see it).
    #[arg(long)]
    pub(crate) prompt: String,
    /// Tokens to generate.
    #[arg(long, default_value_t = 64)]
    pub(crate) steps: usize,
    #[command(flatten)]
    pub(crate) client: ClientArgs,
    /// Model folder whose tokenizer to use (the weights are not needed); defaults as for
    /// `generate`.
    #[arg(long, env = "SOTTO_MODEL_DIR")]
    pub(crate) model: Option<PathBuf>,
    /// Tokenizer file; default: the model folder's tok512.bin.
    #[arg(long)]
    pub(crate) tokenizer: Option<PathBuf>,
    #[command(flatten)]
    pub(crate) sampling: SamplingArgs,
    /// Seconds without progress on a token before the client pauses the quorum and recovers.
    #[arg(long, default_value_t = 60)]
    pub(crate) stall_timeout: u64,
    /// Also print the generated token ids on stderr (`token ids: ...`).
    #[arg(long)]
    pub(crate) print_ids: bool,
}

/// `sotto status`.
#[derive(Debug, Args)]
pub(crate) struct StatusArgs {
    #[command(flatten)]
    pub(crate) client: ClientArgs,
}

/// How long the client waits for a party's answer to a pause (the party's own limit plus
/// slack for the network).
const PAUSE_ANSWER: Duration = Duration::from_secs(12);
/// Recoveries one generation may go through.
const MAX_RECOVERIES: u32 = 8;
/// Longest single receive; between slices the client looks for failures.
const RECV_SLICE: Duration = Duration::from_millis(100);

fn default_identity() -> PathBuf {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
        .unwrap_or_else(|| PathBuf::from("."));
    base.join("sotto").join("client.key")
}

/// How a client node reaches the mesh, resolved from [`ClientArgs`] (or built directly by a
/// local mesh).
pub(crate) struct Reach {
    pub(crate) psk: PreSharedKey,
    pub(crate) key: Keypair,
    pub(crate) peers: Vec<Multiaddr>,
    pub(crate) allowed: Vec<PeerId>,
    pub(crate) mdns: bool,
    pub(crate) connect_timeout: Duration,
    pub(crate) gather: Duration,
}

impl Reach {
    fn from_args(args: &ClientArgs) -> Result<Reach> {
        let psk = net::load_psk(&args.psk).context("--psk")?;
        let identity = args.identity.clone().unwrap_or_else(default_identity);
        if let Some(dir) = identity.parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("creating {} for the client identity", dir.display()))?;
        }
        let key: Keypair = net::load_or_generate_identity(&identity).context("--identity")?;
        let mut allowed: Vec<PeerId> = Vec::new();
        let mut peers: Vec<Multiaddr> = Vec::new();
        for (i, p) in args.peers.iter().enumerate() {
            let addr: Multiaddr = p.parse().with_context(|| {
                format!(
                    "--peer #{}: {p:?} is not a multiaddr (e.g. /ip4/10.0.0.2/tcp/4100/p2p/12D3KooW...)",
                    i + 1
                )
            })?;
            match addr.iter().last() {
                Some(Protocol::P2p(peer)) => allowed.push(peer),
                _ => bail!(
                    "--peer {p}: append /p2p/<peer id> of that device (`sotto run` prints it)"
                ),
            }
            peers.push(addr);
        }
        for a in &args.allow {
            allowed.push(
                a.parse()
                    .with_context(|| format!("--allow {a}: not a peer ID"))?,
            );
        }
        if peers.is_empty() && !args.mdns {
            bail!(
                "no way to find the mesh: give --peer <multiaddr> for each device, or --mdns with --allow <peer id>"
            );
        }
        if allowed.is_empty() {
            bail!(
                "--mdns needs --allow <peer id> for each device: the client dials only admitted peers"
            );
        }
        Ok(Reach {
            psk,
            key,
            peers,
            allowed,
            mdns: args.mdns,
            connect_timeout: Duration::from_secs(args.connect_timeout),
            gather: Duration::from_millis(args.gather_ms),
        })
    }
}

/// The client's node, connected and counting the quorum's summary.
pub(crate) struct Connected {
    net: NetHandle,
    view: QuorumView,
    task: tokio::task::JoinHandle<()>,
}

impl Connected {
    /// The public facts of the model, from the lowest party.
    pub(crate) async fn model_info(&self) -> Result<ModelInfo> {
        let first = *self
            .view
            .parties()
            .first()
            .ok_or_else(|| anyhow!("no party connected"))?;
        match ask_control(&self.net, self.peer_of(first)?, &Control::Info).await? {
            Reply::Info(i) => Ok(i),
            other => bail!("party {first} answered {other:?} to an info request"),
        }
    }

    pub(crate) async fn shutdown(self) {
        self.net.shutdown().await;
        let _ = tokio::time::timeout(Duration::from_secs(3), self.task).await;
    }

    fn peer_of(&self, party: u8) -> Result<PeerId> {
        self.view
            .peers
            .get(&party)
            .copied()
            .ok_or_else(|| anyhow!("party {party} is not connected"))
    }
}

/// The summary held by the most distinct parties, if 2t+1 of them agree.
fn choose_summary(anns: &[(PeerId, net::Announcement)]) -> Option<(ShareSummary, usize)> {
    let mut by: BTreeMap<Vec<u8>, (ShareSummary, Vec<u8>)> = BTreeMap::new();
    for (_, a) in anns {
        let s = a.summary;
        let mut k = s.model_sha256.to_vec();
        k.extend_from_slice(&s.provisioning_id);
        k.extend_from_slice(&[s.n, s.t]);
        let e = by.entry(k).or_insert((s, Vec::new()));
        if !e.1.contains(&a.party) {
            e.1.push(a.party);
        }
    }
    by.into_values()
        .filter(|(s, parties)| s.validate().is_ok() && parties.len() >= s.required())
        .map(|(s, parties)| (s, parties.len()))
        .max_by_key(|&(_, count)| count)
}

pub(crate) async fn connect(reach: Reach) -> Result<Connected> {
    let Reach {
        psk,
        key,
        peers,
        allowed,
        mdns,
        connect_timeout,
        gather,
    } = reach;
    // Until the parties have announced themselves the client cannot know the quorum's summary;
    // it counts nobody under this placeholder and adopts the real one below.
    let placeholder = ShareSummary {
        model_sha256: [0; 32],
        provisioning_id: [0; 16],
        n: 1,
        t: 0,
    };
    let mut config = NetConfig::new(psk, allowed, placeholder, None);
    config.static_peers = peers;
    config.mdns = mdns;
    config.learn_summary = true;
    config.redial_interval = Duration::from_millis(500);
    config.handshake_timeout = Duration::from_secs(5);
    // A token can take longer than the default idle timeout on slow (or emulated) boards; the
    // client lives only as long as its question, so keep its links open until it is done.
    config.idle_connection_timeout = Duration::from_secs(3600);
    if mdns {
        // mDNS answers carry listen addresses; a client that listens can also be dialed back.
        config.listen = vec!["/ip4/0.0.0.0/tcp/0".parse()?];
    }
    let (handle, event_loop) = net::new(config, key).context("starting the client's mesh node")?;
    let task = tokio::spawn(event_loop.run());
    info!(peer = %handle.local_peer_id(), "client node started");

    let start = Instant::now();
    let (summary, mut count) = loop {
        let anns = handle.announcements().await?;
        if let Some(found) = choose_summary(&anns) {
            break found;
        }
        if start.elapsed() >= connect_timeout {
            let parties: Vec<u8> = anns.iter().map(|(_, a)| a.party).collect();
            handle.shutdown().await;
            bail!(
                "no quorum within {} s: parties {parties:?} answered, and fewer than 2t+1 of them share a model; check that the devices run (`sotto run`), that --psk is the mesh key, and that this client's peer ID is on their allow-lists",
                connect_timeout.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // More parties than 2t+1 make the generation survive losing some: give them a moment.
    let gather_until = Instant::now() + gather;
    while count < usize::from(summary.n) && Instant::now() < gather_until {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let anns = handle.announcements().await?;
        count = anns
            .iter()
            .filter(|(_, a)| a.summary == summary)
            .map(|(_, a)| a.party)
            .collect::<std::collections::BTreeSet<_>>()
            .len();
    }
    let view = handle.adopt_summary(summary).await?;
    info!(%summary, parties = ?view.parties(), "quorum found");
    Ok(Connected {
        net: handle,
        view,
        task,
    })
}

async fn ask_control(net: &NetHandle, peer: PeerId, msg: &Control) -> Result<Reply> {
    let body = net.control(peer, encode(msg)).await?;
    Ok(decode::<Reply>(&body)?)
}

/// The public parameters of a generation, as the client chooses them.
#[derive(Clone, Copy, Debug)]
pub(crate) struct GenOptions {
    pub(crate) steps: usize,
    pub(crate) sample_at_client: bool,
    pub(crate) reveal_logits: bool,
    pub(crate) stall_timeout: Duration,
}

/// What a finished generation reports.
pub(crate) struct Generated {
    pub(crate) ids: Vec<u32>,
    pub(crate) wall: Duration,
    pub(crate) first_token: Duration,
    pub(crate) stats: Vec<(u8, SessionStats)>,
    pub(crate) epochs: u32,
    pub(crate) participants: Vec<u8>,
    pub(crate) final_live: Vec<u8>,
}

/// The client's side of one session.
struct ClientSession<'a> {
    conn: &'a Connected,
    key: SessionKey,
    th: Threshold,
    vocab: usize,
    live: Vec<u8>,
    /// (epoch, first unit it computes).
    epochs: Vec<(u32, u32)>,
    control: mpsc::Receiver<net::ControlRequest>,
    events: broadcast::Receiver<NetEvent>,
    stall_timeout: Duration,
    recoveries: u32,
}

impl ClientSession<'_> {
    fn epoch_for(&self, unit: u32) -> u32 {
        self.epochs
            .iter()
            .rev()
            .find(|(_, start)| *start <= unit)
            .map(|(e, _)| *e)
            .unwrap_or(0)
    }

    fn current_epoch(&self) -> u32 {
        self.epochs.last().map(|(e, _)| *e).unwrap_or(0)
    }

    /// Shares a one-hot row of `token` for unit `unit` with every live party.
    async fn send_input(&self, unit: u32, token: u32) -> Result<()> {
        let n = self.th.n();
        let mut per_party: Vec<Vec<Share>> = vec![Vec::with_capacity(self.vocab); n];
        let mut rng = rand::rngs::OsRng;
        for v in 0..self.vocab {
            let value = Fp::from_i64(i64::from(v as u32 == token));
            for (j, s) in mesh::shamir::deal(value, self.th.t(), n, &mut rng)
                .into_iter()
                .enumerate()
            {
                per_party[j].push(s);
            }
        }
        let session = frame_session(&self.key, Stream::Input);
        for &p in &self.live {
            let payload = encode_shares(&per_party[usize::from(p) - 1]);
            if let Err(e) = self
                .conn
                .net
                .send_round(p, session, u64::from(unit), payload)
                .await
            {
                debug!(party = p, error = %e, "input not sent");
            }
        }
        Ok(())
    }

    /// A failure noticed since the last look: a party's stall report or a lost connection.
    async fn pending_failure(&mut self) -> Option<String> {
        let mut why = None;
        while let Ok(req) = self.control.try_recv() {
            let reply = match decode::<Control>(&req.body) {
                Ok(Control::Stalled {
                    key,
                    party,
                    epoch,
                    reason,
                }) if key == self.key => {
                    if epoch == self.current_epoch() && why.is_none() {
                        why = Some(format!("party {party} reports a failed round ({reason})"));
                    }
                    Reply::Ok
                }
                _ => Reply::Rejected("unexpected message".into()),
            };
            let _ = req.respond(encode(&reply)).await;
        }
        loop {
            match self.events.try_recv() {
                Ok(NetEvent::PeerDisconnected(peer)) => {
                    let lost = self
                        .conn
                        .view
                        .peers
                        .iter()
                        .find(|(p, id)| **id == peer && self.live.contains(p))
                        .map(|(p, _)| *p);
                    if let (Some(p), None) = (lost, &why) {
                        why = Some(format!("party {p} disconnected"));
                    }
                }
                Ok(_) | Err(broadcast::error::TryRecvError::Lagged(_)) => {}
                Err(_) => break,
            }
        }
        why
    }

    async fn abort_all(&self, parties: &[u8], reason: &str) {
        let msg = Control::Abort {
            key: self.key,
            reason: reason.to_owned(),
        };
        let mut tasks = tokio::task::JoinSet::new();
        for &p in parties {
            if let Ok(peer) = self.conn.peer_of(p) {
                let net = self.conn.net.clone();
                let body = encode(&msg);
                tasks.spawn(async move { net.control(peer, body).await });
            }
        }
        let _ = tokio::time::timeout(Duration::from_secs(3), tasks.join_all()).await;
    }

    /// Pauses the live parties, keeps those that answer and resumes them together.
    async fn recover(&mut self, why: String, unit: u32) -> Result<()> {
        self.recoveries += 1;
        let needed = 2 * self.th.t() + 1;
        eprintln!("\n[sotto] {why}; recovering at token position {unit} ...");
        loop {
            if self.recoveries > MAX_RECOVERIES {
                self.abort_all(&self.live.clone(), "too many recoveries")
                    .await;
                bail!(
                    "the generation stalled {MAX_RECOVERIES} times; giving up (last problem: {why})"
                );
            }
            let epoch = self.current_epoch();
            let mut tasks = tokio::task::JoinSet::new();
            for &p in &self.live {
                let Ok(peer) = self.conn.peer_of(p) else {
                    continue;
                };
                let net = self.conn.net.clone();
                let body = encode(&Control::Pause {
                    key: self.key,
                    epoch,
                });
                tasks.spawn(async move {
                    let r = tokio::time::timeout(PAUSE_ANSWER, net.control(peer, body)).await;
                    (p, r)
                });
            }
            let mut reports: Vec<Report> = Vec::new();
            let mut fatal: Vec<String> = Vec::new();
            for (p, r) in tasks.join_all().await {
                match r {
                    Ok(Ok(body)) => match decode::<Reply>(&body) {
                        Ok(Reply::Report(rep)) if rep.stopped && rep.fatal.is_none() => {
                            reports.push(rep)
                        }
                        Ok(Reply::Report(rep)) => {
                            if let Some(f) = rep.fatal {
                                fatal.push(format!("party {p}: {f}"));
                            } else {
                                warn!(party = p, "party did not stop in time; leaving it out");
                            }
                        }
                        Ok(other) => debug!(party = p, ?other, "unexpected answer to a pause"),
                        Err(e) => debug!(party = p, error = %e, "bad answer to a pause"),
                    },
                    Ok(Err(e)) => debug!(party = p, error = %e, "no answer to the pause"),
                    Err(_) => debug!(party = p, "pause timed out"),
                }
            }
            let redo = reports.iter().map(|r| r.at).min().unwrap_or(unit);
            let mut next_live: Vec<u8> = reports
                .iter()
                .filter(|r| r.oldest <= redo)
                .map(|r| r.party)
                .collect();
            next_live.sort_unstable();
            if next_live.len() < needed {
                let answered: Vec<u8> = reports.iter().map(|r| r.party).collect();
                self.abort_all(&answered, "the quorum was lost").await;
                let mut msg = format!(
                    "the quorum was lost at token position {unit}: only parties {next_live:?} can continue, a (n={}, t={}) mesh needs {needed} ({why})",
                    self.th.n(),
                    self.th.t()
                );
                if !fatal.is_empty() {
                    msg.push_str(&format!("; {}", fatal.join("; ")));
                }
                bail!(msg);
            }
            let next = epoch + 1;
            self.epochs.push((next, redo));
            self.live = next_live.clone();
            let mut tasks = tokio::task::JoinSet::new();
            for &p in &next_live {
                let Ok(peer) = self.conn.peer_of(p) else {
                    continue;
                };
                let net = self.conn.net.clone();
                let body = encode(&Control::Resume {
                    key: self.key,
                    epoch: next,
                    live: next_live.clone(),
                    redo,
                });
                tasks.spawn(async move { (p, net.control(peer, body).await) });
            }
            let mut all_ok = true;
            for (p, r) in tasks.join_all().await {
                match r
                    .map_err(anyhow::Error::from)
                    .and_then(|b| Ok(decode::<Reply>(&b)?))
                {
                    Ok(Reply::Ok) => {}
                    other => {
                        debug!(party = p, ?other, "resume not accepted");
                        all_ok = false;
                    }
                }
            }
            eprintln!(
                "[sotto] continuing with parties {next_live:?} (epoch {next}) from token position {redo}"
            );
            if all_ok {
                return Ok(());
            }
            self.recoveries += 1;
        }
    }

    /// Waits for unit `unit`'s output from every live party and reconstructs it.
    async fn collect(&mut self, unit: u32, count: usize) -> Result<Vec<i128>> {
        let mut got: BTreeMap<u8, Vec<Share>> = BTreeMap::new();
        let mut got_epoch = self.epoch_for(unit);
        let mut progress = Instant::now();
        loop {
            if let Some(why) = self.pending_failure().await {
                self.recover(why, unit).await?;
                progress = Instant::now();
            }
            let epoch = self.epoch_for(unit);
            if epoch != got_epoch {
                got.clear();
                got_epoch = epoch;
            }
            got.retain(|p, _| self.live.contains(p));
            let Some(&p) = self.live.iter().find(|p| !got.contains_key(p)) else {
                return self.reconstruct(&got, count);
            };
            let session = frame_session(&self.key, Stream::Output(epoch));
            let deadline = std::time::Instant::now() + RECV_SLICE;
            match self
                .conn
                .net
                .recv_round(p, session, u64::from(unit), deadline)
                .await
            {
                Ok(bytes) => {
                    let bytes = zeroize::Zeroizing::new(bytes);
                    let shares = decode_shares(&bytes, count, &format!("party {p}"))
                        .map_err(|e| anyhow!(e))?;
                    got.insert(p, shares);
                    progress = Instant::now();
                }
                Err(NetError::Timeout { .. }) => {
                    if progress.elapsed() >= self.stall_timeout {
                        let why = format!(
                            "no output from party {p} for {} s",
                            self.stall_timeout.as_secs()
                        );
                        self.recover(why, unit).await?;
                        progress = Instant::now();
                    }
                }
                Err(NetError::AlreadyWaiting { .. }) => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(NetError::PartyNotConnected { .. } | NetError::PartyDisconnected { .. }) => {
                    self.recover(format!("party {p} disconnected"), unit)
                        .await?;
                    progress = Instant::now();
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    fn reconstruct(&self, got: &BTreeMap<u8, Vec<Share>>, count: usize) -> Result<Vec<i128>> {
        let t = self.th.t();
        let parties: Vec<(&u8, &Vec<Share>)> = got.iter().collect();
        let first = &parties[..t + 1];
        let last = &parties[parties.len() - (t + 1)..];
        let mut out = Vec::with_capacity(count);
        for e in 0..count {
            let pick = |set: &[(&u8, &Vec<Share>)]| {
                let pts: Vec<(usize, &Share)> = set
                    .iter()
                    .map(|(p, v)| (usize::from(**p) - 1, &v[e]))
                    .collect();
                mesh::shamir::reconstruct(&self.th, &pts)
            };
            let a = pick(first)?;
            if parties.len() > t + 1 && pick(last)? != a {
                bail!(
                    "the parties' output shares are inconsistent (element {e}); this is a bug, please report it"
                );
            }
            out.push(a.to_i128());
        }
        Ok(out)
    }
}

/// One private generation with the connected quorum; `on_token` sees each token (and its
/// logits when they are revealed) as it is reconstructed.
pub(crate) async fn generate(
    conn: &Connected,
    opts: &GenOptions,
    info: &ModelInfo,
    prompt: &[u32],
    sampler: &mut Sampler,
    mut on_token: impl FnMut(&ClientToken),
) -> Result<Generated> {
    let summary = conn.view.summary;
    let th = Threshold::new(usize::from(summary.n), usize::from(summary.t))?;
    let mut key: SessionKey = [0; 16];
    rand::rngs::OsRng.fill_bytes(&mut key);
    let participants = conn.view.parties();
    let req = SessionRequest {
        key,
        prompt_len: prompt.len() as u32,
        steps: opts.steps as u32,
        selection: if opts.sample_at_client {
            WireSelection::SampleAtClient
        } else {
            WireSelection::Argmax
        },
        reveal_logits: opts.reveal_logits,
        participants: participants.clone(),
        model_sha256: summary.model_sha256,
        provisioning_id: summary.provisioning_id,
    };
    let plan = req.plan();
    let control = conn
        .net
        .take_control_requests()
        .context("control requests already taken")?;
    let events = conn.net.subscribe();
    let mut session = ClientSession {
        conn,
        key,
        th,
        vocab: info.vocab_size as usize,
        live: participants.clone(),
        epochs: vec![(0, 0)],
        control,
        events,
        stall_timeout: opts.stall_timeout,
        recoveries: 0,
    };
    let mut tasks = tokio::task::JoinSet::new();
    for &p in &participants {
        let peer = conn.peer_of(p)?;
        let net = conn.net.clone();
        let body = encode(&Control::Open(req.clone()));
        tasks.spawn(async move { (p, net.control(peer, body).await) });
    }
    let mut refused = Vec::new();
    for (p, r) in tasks.join_all().await {
        match r
            .map_err(anyhow::Error::from)
            .and_then(|b| Ok(decode::<Reply>(&b)?))
        {
            Ok(Reply::Accepted) => {}
            Ok(Reply::Rejected(why)) => refused.push(format!("party {p}: {why}")),
            Ok(other) => refused.push(format!("party {p}: unexpected answer {other:?}")),
            Err(e) => refused.push(format!("party {p}: {e}")),
        }
    }
    if !refused.is_empty() {
        session
            .abort_all(&participants, "another party refused")
            .await;
        bail!("the quorum refused the request: {}", refused.join("; "));
    }
    info!(session = %key_hex(&key), ?participants, "session open");
    let started = Instant::now();
    for (i, &tok) in prompt.iter().enumerate() {
        session.send_input(i as u32, tok).await?;
    }
    let vocab = session.vocab;
    let out_len = plan.output_len(vocab);
    let mut ids = Vec::with_capacity(opts.steps);
    let mut first_token = None;
    for unit in plan.first_output()..plan.units() {
        let values = session.collect(unit, out_len).await?;
        let logits: Option<Vec<f32>> =
            (plan.reveal_logits || plan.selection == WireSelection::SampleAtClient).then(|| {
                values[..vocab]
                    .iter()
                    .map(|&v| fx::to_f32(i64::try_from(v).unwrap_or(0)))
                    .collect()
            });
        let id = match plan.selection {
            WireSelection::Argmax => {
                let v = values[values.len() - 1];
                u32::try_from(v)
                    .ok()
                    .filter(|&i| (i as usize) < vocab)
                    .ok_or_else(|| {
                        anyhow!("the quorum returned token {v}, outside the vocabulary")
                    })?
            }
            WireSelection::SampleAtClient => {
                let l = logits.as_deref().unwrap_or_default();
                let id = sampler.sample(l);
                if unit + 1 < plan.units() {
                    session.send_input(unit + 1, id).await?;
                }
                id
            }
        };
        first_token.get_or_insert_with(|| started.elapsed());
        ids.push(id);
        on_token(&ClientToken { id, logits });
    }
    let wall = started.elapsed();
    // Close: every live party gets its stats back to us and ends the session.
    let mut tasks = tokio::task::JoinSet::new();
    for &p in &session.live {
        let Ok(peer) = conn.peer_of(p) else { continue };
        let net = conn.net.clone();
        let body = encode(&Control::Close { key });
        tasks.spawn(async move { (p, net.control(peer, body).await) });
    }
    let mut stats = Vec::new();
    for (p, r) in tasks.join_all().await {
        if let Ok(Ok(Reply::Closed(s))) = r.map(|b| decode::<Reply>(&b)) {
            stats.push((p, s));
        }
    }
    stats.sort_by_key(|(p, _)| *p);
    Ok(Generated {
        ids,
        wall,
        first_token: first_token.unwrap_or(wall),
        stats,
        epochs: session.current_epoch() + 1,
        participants,
        final_live: session.live.clone(),
    })
}

/// `sotto ask`; `tokenizer` is the tokenizer file (the client never needs the weights).
pub(crate) fn run_ask(args: &AskArgs, tokenizer: &Path) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(ask(args, tokenizer))
}

async fn ask(args: &AskArgs, tok_path: &Path) -> Result<()> {
    if args.steps == 0 {
        bail!("--steps must be at least 1");
    }
    let conn = connect(Reach::from_args(&args.client)?).await?;
    let result = ask_connected(&conn, args, tok_path).await;
    conn.shutdown().await;
    result
}

async fn ask_connected(conn: &Connected, args: &AskArgs, tok_path: &Path) -> Result<()> {
    let info = conn.model_info().await?;
    let tokenizer = Tokenizer::load(tok_path, info.vocab_size as usize).with_context(|| {
        format!(
            "loading the tokenizer {} (the mesh's model has a vocabulary of {}); pass --tokenizer",
            tok_path.display(),
            info.vocab_size
        )
    })?;
    let prompt = tokenizer.encode(&args.prompt, true, false);
    let positions = prompt.len() + args.steps - 1;
    if positions > info.seq_len as usize {
        bail!(
            "prompt ({} tokens) + steps ({}) needs {positions} positions, the model has {}; use fewer --steps",
            prompt.len(),
            args.steps,
            info.seq_len
        );
    }
    let mut sampler = args.sampling.sampler()?;
    let mut stdout = std::io::stdout().lock();
    write!(stdout, "{}", args.prompt)?;
    stdout.flush()?;
    let mut text = Utf8Stream::new();
    let mut buf = String::new();
    let mut prev = *prompt.last().unwrap_or(&BOS);
    let mut stopped = false;
    let opts = GenOptions {
        steps: args.steps,
        sample_at_client: args.sampling.sample_at_client,
        reveal_logits: false,
        stall_timeout: Duration::from_secs(args.stall_timeout.max(1)),
    };
    let g = generate(conn, &opts, &info, &prompt, &mut sampler, |tok| {
        let id = tok.id;
        if stopped || id == BOS {
            stopped = true;
            return;
        }
        if let Ok(bytes) = tokenizer.decode_piece(prev, id) {
            buf.clear();
            text.push(bytes, &mut buf);
            let _ = write!(stdout, "{buf}");
            let _ = stdout.flush();
        }
        prev = id;
    })
    .await;
    buf.clear();
    text.finish(&mut buf);
    writeln!(stdout, "{buf}")?;
    let g = g?;
    if args.print_ids {
        let ids: Vec<String> = g.ids.iter().map(u32::to_string).collect();
        eprintln!("token ids: {}", ids.join(" "));
    }
    let steps = g.ids.len() as f64;
    let (_, s) = g.stats.first().copied().unwrap_or_default();
    let (n, t) = (conn.view.summary.n, conn.view.summary.t);
    eprintln!(
        "summary (n={n}, t={t}, parties {:?}, {} at the end, {} epoch(s)):",
        g.participants,
        g.final_live.len(),
        g.epochs
    );
    eprintln!(
        "  tokens/s             {:.2} ({} tokens in {:.2} s, first after {:.2} s)",
        steps / g.wall.as_secs_f64().max(1e-9),
        g.ids.len(),
        g.wall.as_secs_f64(),
        g.first_token.as_secs_f64()
    );
    eprintln!(
        "  rounds/token         {:.1} online + {:.1} preprocessing",
        s.online_rounds as f64 / steps,
        s.offline_rounds as f64 / steps
    );
    eprintln!(
        "  bytes/party/token    {:.3} MB online + {:.3} MB preprocessing",
        s.online_bytes as f64 / steps / 1e6,
        s.offline_bytes as f64 / steps / 1e6
    );
    Ok(())
}

pub(crate) fn run_status(args: &StatusArgs) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async {
        let conn = connect(Reach::from_args(&args.client)?).await?;
        let result = status(&conn).await;
        conn.shutdown().await;
        result
    })
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

async fn status(conn: &Connected) -> Result<()> {
    let s = conn.view.summary;
    println!(
        "quorum: (n={}, t={}) model sha256 {} provisioning {}",
        s.n,
        s.t,
        hex(&s.model_sha256),
        hex(&s.provisioning_id)
    );
    println!(
        "parties connected to this client: {:?} ({} needed: {})",
        conn.view.parties(),
        s.required(),
        if conn.view.formed {
            "formed"
        } else {
            "NOT formed"
        }
    );
    let rtts = conn.net.rtts().await.unwrap_or_default();
    for p in conn.view.parties() {
        let peer = conn.peer_of(p)?;
        let rtt = rtts
            .get(&peer)
            .map(|d| format!("{:.2} ms", d.as_secs_f64() * 1e3))
            .unwrap_or_else(|| "-".into());
        match ask_control(&conn.net, peer, &Control::Status).await {
            Ok(Reply::Status(st)) => print_status(p, &st, &rtt),
            Ok(other) => println!("party {p}: unexpected answer {other:?}"),
            Err(e) => println!("party {p}: no status ({e})"),
        }
    }
    Ok(())
}

fn print_status(p: u8, st: &NodeStatus, rtt: &str) {
    println!(
        "party {p}: peer {} profile {} up {} s, {} session(s), rtt from client {rtt}",
        st.peer, st.profile, st.uptime_s, st.sessions
    );
    println!(
        "  sees parties {:?} ({}), model {}.. {} layers, dim {}, vocab {}",
        st.quorum,
        if st.formed {
            "quorum formed"
        } else {
            "no quorum"
        },
        &hex(&st.info.model_sha256)[..12],
        st.info.n_layers,
        st.info.dim,
        st.info.vocab_size
    );
    for l in &st.links {
        let who = l
            .party
            .map(|p| format!("party {p}"))
            .unwrap_or_else(|| "client".into());
        let rtt = l
            .rtt_us
            .map(|us| format!("{:.2} ms", us as f64 / 1e3))
            .unwrap_or_else(|| "-".into());
        println!("  link to {who} ({}): rtt {rtt}", l.peer);
    }
}
