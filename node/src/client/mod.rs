//! The client of a mesh of devices (`sotto ask`, `sotto status`, the demo's client).
//!
//! The client is an observer node (no party index) admitted by the mesh key and the parties'
//! allow-lists. [`connect`] finds the parties (static `--peer` addresses or mDNS) and learns
//! the quorum's share summary from their announcements (the summary most parties agree on);
//! [`Connected::io`] is then the [`ClientIo`] that [`crate::session::generate`] runs over, and
//! [`Connected::status`] asks every party what it sees.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use mesh::{PartyId, Threshold};
use mesh_net::{
    self as net, ControlRequest, Keypair, Multiaddr, NetConfig, NetEvent, NetHandle, PeerId,
    PreSharedKey, Protocol, QuorumView, ShareSummary,
};
use tokio::runtime::Handle;
use tokio::sync::{broadcast, mpsc};
use tracing::{info, warn};

use crate::net_io::NetFrames;
use crate::session::wire::{Control, ModelInfo, NodeStatus, Reply, SessionKey, decode, encode};
use crate::session::{ClientIo, Failure, FrameError, QuorumInfo};

mod lock;
pub use lock::{IdentityLock, LockError};

/// How the client reaches the mesh, as the user gave it.
#[derive(Clone, Debug, Default)]
pub struct ReachSpec {
    /// Parties' addresses ending in /p2p/<peer id>.
    pub peers: Vec<String>,
    /// Also find parties by mDNS.
    pub mdns: bool,
    /// Parties' peer IDs to admit when found by mDNS.
    pub allow: Vec<String>,
    /// The mesh pre-shared key file.
    pub psk: PathBuf,
    /// The client's identity file (default: [`default_identity`]).
    pub identity: Option<PathBuf>,
    /// How long to wait for 2t+1 parties.
    pub connect_timeout: Duration,
    /// How long to wait, once 2t+1 are there, for the rest of the n.
    pub gather: Duration,
}

/// `$XDG_CONFIG_HOME/sotto/client.key`, else `$HOME/.config/sotto/client.key`.
pub fn default_identity() -> PathBuf {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
        .unwrap_or_else(|| PathBuf::from("."));
    base.join("sotto").join("client.key")
}

/// How a client node reaches the mesh, resolved (or built directly by a local mesh).
pub struct Reach {
    /// The mesh key.
    pub psk: PreSharedKey,
    /// The client's identity.
    pub key: Keypair,
    /// Parties to dial.
    pub peers: Vec<Multiaddr>,
    /// Peers admitted.
    pub allowed: Vec<PeerId>,
    /// Whether to use mDNS.
    pub mdns: bool,
    /// How long to wait for 2t+1 parties.
    pub connect_timeout: Duration,
    /// How long to wait for the rest.
    pub gather: Duration,
}

fn parse_peer(i: usize, p: &str) -> Result<(Multiaddr, PeerId)> {
    let addr: Multiaddr = p.parse().with_context(|| {
        format!(
            "--peer #{}: {p:?} is not a multiaddr (e.g. /ip4/10.0.0.2/tcp/4100/p2p/12D3KooW...)",
            i + 1
        )
    })?;
    match addr.iter().last() {
        Some(Protocol::P2p(peer)) => Ok((addr, peer)),
        _ => bail!("--peer {p}: append /p2p/<peer id> of that device (`sotto run` prints it)"),
    }
}

/// The client's identity as `sotto ask` and `sotto status` report it: the user needs the
/// peer ID on every device's allow-list, and must hear when a new one was just made.
#[derive(Clone, Debug)]
pub struct ClientIdentity {
    /// The identity file.
    pub path: PathBuf,
    /// Its peer ID.
    pub peer: PeerId,
    /// Whether the file was created just now (so no device can know this peer ID yet).
    pub created: bool,
}

impl std::fmt::Display for ClientIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "client peer ID {} ({})", self.peer, self.path.display())?;
        if self.created {
            write!(
                f,
                "; this identity was just created: add the peer ID to `clients` in every device's node.toml before it can be admitted"
            )?;
        }
        Ok(())
    }
}

fn load_client_key(identity: Option<&PathBuf>) -> Result<(Keypair, ClientIdentity)> {
    let identity = identity.cloned().unwrap_or_else(default_identity);
    if let Some(dir) = identity.parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating {} for the client identity", dir.display()))?;
    }
    let existed = identity.exists();
    let key = net::load_or_generate_identity(&identity).context("--identity")?;
    let about = ClientIdentity {
        peer: key.public().to_peer_id(),
        path: identity,
        created: !existed,
    };
    Ok((key, about))
}

impl std::fmt::Debug for Reach {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The mesh key and the identity are secrets: never printed.
        f.debug_struct("Reach")
            .field("peers", &self.peers)
            .field("allowed", &self.allowed)
            .field("mdns", &self.mdns)
            .finish_non_exhaustive()
    }
}

impl Reach {
    /// Checks and loads what `spec` names.
    pub fn resolve(spec: &ReachSpec) -> Result<Reach> {
        Ok(Reach::resolve_with_identity(spec)?.0)
    }

    /// [`Reach::resolve`], also saying which client identity it loaded (or created).
    pub fn resolve_with_identity(spec: &ReachSpec) -> Result<(Reach, ClientIdentity)> {
        let psk = net::load_psk(&spec.psk).context("--psk")?;
        let (key, about) = load_client_key(spec.identity.as_ref())?;
        let mut allowed: Vec<PeerId> = Vec::new();
        let mut peers: Vec<Multiaddr> = Vec::new();
        for (i, p) in spec.peers.iter().enumerate() {
            let (addr, peer) = parse_peer(i, p)?;
            allowed.push(peer);
            peers.push(addr);
        }
        for a in &spec.allow {
            allowed.push(
                a.parse()
                    .with_context(|| format!("--allow {a}: not a peer ID"))?,
            );
        }
        if peers.is_empty() && !spec.mdns {
            bail!(
                "no way to find the mesh: give --peer <multiaddr> for each device, or --mdns with --allow <peer id>"
            );
        }
        if allowed.is_empty() {
            bail!(
                "--mdns needs --allow <peer id> for each device: the client dials only admitted peers"
            );
        }
        let reach = Reach {
            psk,
            key,
            peers,
            allowed,
            mdns: spec.mdns,
            connect_timeout: spec.connect_timeout,
            gather: spec.gather,
        };
        Ok((reach, about))
    }
}

/// A device the client could not reach, and why.
#[derive(Clone, Debug)]
pub struct Unreachable {
    /// The address the client dialed (its `--peer`), or the peer ID alone for one found by
    /// mDNS or allowed with `--allow`.
    pub addr: String,
    /// Why, when a dial failed; `None`: no attempt has finished yet.
    pub failure: Option<net::DialFailure>,
}

impl std::fmt::Display for Unreachable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.failure {
            Some(why) => write!(f, "{}: {why}", self.addr),
            None => write!(f, "{}: no answer yet", self.addr),
        }
    }
}

fn list(unreachable: &[Unreachable]) -> String {
    if unreachable.is_empty() {
        return "none".to_owned();
    }
    unreachable
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// Why the client found no quorum.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// Every device refused the TCP connection: nothing listens at any address given.
    #[error(
        "every device refused the connection ({}); nothing listens at those addresses: check that `sotto run` runs on each device and that the --peer addresses and ports are right",
        list(.unreachable)
    )]
    AllRefused {
        /// The devices and why.
        unreachable: Vec<Unreachable>,
    },
    /// The time ran out before 2t+1 parties agreed on a model.
    #[error(
        "no quorum within {secs} s: parties {answered:?} answered, and fewer than 2t+1 of them share a model; unreachable: {}; {hint}",
        list(.unreachable)
    )]
    NoQuorum {
        /// The time waited.
        secs: u64,
        /// Parties that announced themselves.
        answered: Vec<PartyId>,
        /// The devices that did not, and why.
        unreachable: Vec<Unreachable>,
        /// What to check.
        hint: &'static str,
    },
}

/// The client's node, connected and counting the quorum's summary.
pub struct Connected {
    net: NetHandle,
    view: QuorumView,
    task: tokio::task::JoinHandle<()>,
    /// Stall reports from the parties (taken once: a node has one control inbox).
    requests: Mutex<mpsc::Receiver<ControlRequest>>,
    /// Reports taken from `requests` for sessions that have not asked for them yet.
    reports: Mutex<HashMap<SessionKey, Vec<Failure>>>,
    /// Held while connected: one process per client identity on this machine (see
    /// [`IdentityLock`]).
    _lock: IdentityLock,
}

/// Stall reports kept for sessions that have not asked yet (those of sessions that already
/// ended are never asked for; this bounds them).
const MAX_KEPT_REPORTS: usize = 1024;

impl std::fmt::Debug for Connected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connected")
            .field("view", &self.view)
            .finish_non_exhaustive()
    }
}

/// The summary held by the most distinct parties, if 2t+1 of them agree. Only announcements
/// from the device their own roster names for the index, with a roster matching the summary,
/// count: an impostor cannot tip the choice.
fn choose_summary(anns: &[(PeerId, net::Announcement)]) -> Option<(ShareSummary, usize)> {
    let mut by: BTreeMap<Vec<u8>, (ShareSummary, Vec<PartyId>)> = BTreeMap::new();
    for (peer, a) in anns {
        let s = a.summary;
        if a.roster.sha256() != s.roster_sha256 || a.roster.peer_of(a.party) != Some(*peer) {
            continue;
        }
        let mut k = s.model_sha256.to_vec();
        k.extend_from_slice(&s.provisioning_id);
        k.extend_from_slice(&[s.n, s.t]);
        k.extend_from_slice(&s.roster_sha256);
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

fn client_config(reach: &Reach) -> Result<NetConfig> {
    // Until the parties have announced themselves the client cannot know the quorum's summary;
    // it counts nobody under this placeholder and adopts the real one in `connect`.
    let placeholder = ShareSummary {
        model_sha256: [0; 32],
        provisioning_id: [0; 16],
        n: 1,
        t: 0,
        roster_sha256: [0; 32],
    };
    let mut config = NetConfig::new(reach.psk, reach.allowed.clone(), placeholder, None);
    config.static_peers = reach.peers.clone();
    config.mdns = reach.mdns;
    config.learn_summary = true;
    config.redial_interval = Duration::from_millis(500);
    config.handshake_timeout = Duration::from_secs(5);
    // A token can take longer than the default idle timeout on slow (or emulated) boards; the
    // client lives only as long as its question, so keep its links open until it is done.
    config.idle_connection_timeout = Duration::from_secs(3600);
    if reach.mdns {
        // mDNS answers carry listen addresses; a client that listens can also be dialed back.
        config.listen = vec!["/ip4/0.0.0.0/tcp/0".parse()?];
    }
    Ok(config)
}

/// The devices the client wants and has not heard from, with the reason of their last failed
/// dial.
async fn unreachable(
    handle: &NetHandle,
    reach: &Reach,
    anns: &[(PeerId, net::Announcement)],
) -> Result<Vec<Unreachable>> {
    let failures: BTreeMap<PeerId, net::DialFailure> =
        handle.dial_failures().await?.into_iter().collect();
    let addr_of = |peer: &PeerId| {
        reach
            .peers
            .iter()
            .find(|a| matches!(a.iter().last(), Some(Protocol::P2p(p)) if p == *peer))
            .map_or_else(|| peer.to_string(), ToString::to_string)
    };
    Ok(reach
        .allowed
        .iter()
        .filter(|peer| !anns.iter().any(|(p, _)| p == *peer))
        .map(|peer| Unreachable {
            addr: addr_of(peer),
            failure: failures.get(peer).cloned(),
        })
        .collect())
}

/// Every device given by address refused the connection (mDNS may still find others).
fn all_refused(reach: &Reach, unreachable: &[Unreachable]) -> bool {
    !reach.mdns
        && unreachable.len() == reach.peers.len()
        && unreachable
            .iter()
            .all(|u| u.failure == Some(net::DialFailure::Refused))
}

/// Waits until 2t+1 parties agree on a summary, then a moment for the rest of the n. Fails at
/// once when every device refuses the connection: waiting cannot help then.
async fn find_summary(handle: &NetHandle, reach: &Reach) -> Result<ShareSummary> {
    let start = Instant::now();
    let (summary, mut count) = loop {
        let anns = handle.announcements().await?;
        if let Some(found) = choose_summary(&anns) {
            break found;
        }
        let unreachable = unreachable(handle, reach, &anns).await?;
        if all_refused(reach, &unreachable) {
            return Err(ConnectError::AllRefused { unreachable }.into());
        }
        if start.elapsed() >= reach.connect_timeout {
            return Err(ConnectError::NoQuorum {
                secs: reach.connect_timeout.as_secs(),
                answered: anns.iter().map(|(_, a)| a.party).collect(),
                unreachable,
                hint: "check that the devices run (`sotto run`), that --psk is the mesh key, and that this client's peer ID is on their allow-lists",
            }
            .into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // More parties than 2t+1 make the generation survive losing some: give them a moment.
    let gather_until = Instant::now() + reach.gather;
    while count < usize::from(summary.n) && Instant::now() < gather_until {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let anns = handle.announcements().await?;
        count = anns
            .iter()
            .filter(|(_, a)| a.summary == summary)
            .map(|(_, a)| a.party)
            .collect::<BTreeSet<_>>()
            .len();
    }
    Ok(summary)
}

/// Starts the client's node and waits for a quorum (call inside the runtime). Waits first while
/// another client of the same identity runs on this machine (see [`IdentityLock`]).
pub async fn connect(reach: Reach) -> Result<Connected> {
    let lock = IdentityLock::acquire(reach.key.public().to_peer_id()).await?;
    let config = client_config(&reach)?;
    let (handle, event_loop) =
        net::new(config, reach.key.clone()).context("starting the client's mesh node")?;
    let task = tokio::spawn(event_loop.run());
    info!(peer = %handle.local_peer_id(), "client node started");
    let summary = match find_summary(&handle, &reach).await {
        Ok(s) => s,
        Err(e) => {
            handle.shutdown().await;
            return Err(e);
        }
    };
    let view = handle.adopt_summary(summary).await?;
    info!(%summary, parties = ?view.parties(), "quorum found");
    let requests = handle
        .take_control_requests()
        .context("control requests already taken")?;
    Ok(Connected {
        net: handle,
        view,
        task,
        requests: Mutex::new(requests),
        reports: Mutex::new(HashMap::new()),
        _lock: lock,
    })
}

/// A party's answer to a status request.
#[derive(Debug)]
pub struct PartyStatus {
    /// The party.
    pub party: PartyId,
    /// The client's round-trip time to it.
    pub rtt: Option<Duration>,
    /// Its answer.
    pub status: Result<NodeStatus, String>,
}

impl Connected {
    /// The quorum the client found.
    pub fn view(&self) -> &QuorumView {
        &self.view
    }

    fn peer_of(&self, party: PartyId) -> Result<PeerId> {
        self.view
            .peers
            .get(&party)
            .copied()
            .ok_or_else(|| anyhow!("party {party} is not connected"))
    }

    async fn ask_control(&self, party: PartyId, msg: &Control) -> Result<Reply> {
        let body = self.net.control(self.peer_of(party)?, encode(msg)).await?;
        Ok(decode::<Reply>(&body)?)
    }

    /// The parties the client reaches.
    pub fn parties(&self) -> Vec<PartyId> {
        self.view.parties()
    }

    /// The public facts of the model, from the lowest party.
    pub async fn model_info(&self) -> Result<ModelInfo> {
        let first = *self
            .parties()
            .first()
            .ok_or_else(|| anyhow!("no party connected"))?;
        match self.ask_control(first, &Control::Info).await? {
            Reply::Info(i) => Ok(i),
            other => bail!("party {first} answered {other:?} to an info request"),
        }
    }

    /// What a generation needs to know of the quorum.
    pub fn quorum_info(&self, info: &ModelInfo) -> Result<QuorumInfo> {
        let s = self.view.summary;
        Ok(QuorumInfo {
            th: Threshold::new(usize::from(s.n), usize::from(s.t))?,
            parties: self.parties(),
            model_sha256: s.model_sha256,
            provisioning_id: s.provisioning_id,
            vocab_size: info.vocab_size as usize,
        })
    }

    /// Every party's status (in party order).
    pub async fn status(&self) -> Vec<PartyStatus> {
        let rtts = self.net.rtts().await.unwrap_or_default();
        let mut out = Vec::new();
        for party in self.parties() {
            let rtt = self.peer_of(party).ok().and_then(|p| rtts.get(&p).copied());
            let status = match self.ask_control(party, &Control::Status).await {
                Ok(Reply::Status(st)) => Ok(*st),
                Ok(other) => Err(format!("unexpected answer {other:?}")),
                Err(e) => Err(format!("no status ({e})")),
            };
            out.push(PartyStatus { party, rtt, status });
        }
        out
    }

    /// The stall reports the parties sent for session `key`. Reports arrive on one inbox for
    /// every session of this client; those of other sessions (a gateway runs several at once)
    /// are kept for them instead of being dropped.
    fn take_reports(&self, key: &SessionKey, rt: &Handle) -> Vec<Failure> {
        let mut reports = self.reports.lock().unwrap_or_else(|p| p.into_inner());
        if let Ok(mut requests) = self.requests.lock() {
            while let Ok(req) = requests.try_recv() {
                let reply = match decode::<Control>(&req.body) {
                    Ok(Control::Stalled {
                        key: k,
                        party,
                        epoch,
                        reason,
                    }) => {
                        let kept: usize = reports.values().map(Vec::len).sum();
                        if kept < MAX_KEPT_REPORTS {
                            reports.entry(k).or_default().push(Failure::Stalled {
                                party,
                                epoch,
                                reason,
                            });
                        } else {
                            warn!("too many stall reports kept for other sessions; dropping one");
                        }
                        Reply::Ok
                    }
                    _ => Reply::Rejected("unexpected message".into()),
                };
                let _ = rt.block_on(req.respond(encode(&reply)));
            }
        }
        reports.remove(key).unwrap_or_default()
    }

    /// The session I/O over this connection, for a protocol thread outside the runtime `rt`.
    pub fn io(&self, rt: Handle) -> NetClientIo<'_> {
        NetClientIo {
            frames: NetFrames {
                rt,
                net: self.net.clone(),
            },
            conn: self,
            events: Mutex::new(self.net.subscribe()),
        }
    }

    /// Stops the client's node.
    pub async fn shutdown(self) {
        self.net.shutdown().await;
        let _ = tokio::time::timeout(Duration::from_secs(3), self.task).await;
    }
}

/// [`ClientIo`] over the mesh.
pub struct NetClientIo<'a> {
    frames: NetFrames,
    conn: &'a Connected,
    events: Mutex<broadcast::Receiver<NetEvent>>,
}

impl std::fmt::Debug for NetClientIo<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetClientIo").finish_non_exhaustive()
    }
}

crate::frames_via!(NetClientIo<'_>, frames);

impl ClientIo for NetClientIo<'_> {
    fn control(&self, party: PartyId, msg: &Control) -> Result<Reply, FrameError> {
        let peer = self
            .conn
            .peer_of(party)
            .map_err(|e| FrameError::Gone(e.to_string()))?;
        let body = self
            .frames
            .rt
            .block_on(self.frames.net.control(peer, encode(msg)))?;
        decode::<Reply>(&body).map_err(|e| FrameError::Failed(e.to_string()))
    }

    fn failures(&self, key: &SessionKey) -> Vec<Failure> {
        let mut out = self.conn.take_reports(key, &self.frames.rt);
        if let Ok(mut events) = self.events.lock() {
            loop {
                match events.try_recv() {
                    Ok(NetEvent::PeerDisconnected(peer)) => {
                        let lost = self.conn.view.peers.iter().find(|(_, id)| **id == peer);
                        if let Some((&p, _)) = lost {
                            out.push(Failure::Disconnected(p));
                        }
                    }
                    Ok(_) | Err(broadcast::error::TryRecvError::Lagged(_)) => {}
                    Err(_) => break,
                }
            }
        }
        out
    }
}
