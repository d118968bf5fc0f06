//! The client of a mesh of devices (`sotto ask`, `sotto status`, the demo's client).
//!
//! The client is an observer node (no party index) admitted by the mesh key and the parties'
//! allow-lists. [`connect`] finds the parties (static `--peer` addresses or mDNS) and learns
//! the quorum's share summary from their announcements (the summary most parties agree on);
//! [`Connected::io`] is then the [`ClientIo`] that [`crate::session::generate`] runs over, and
//! [`Connected::status`] asks every party what it sees.

use std::collections::{BTreeMap, BTreeSet};
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
use tracing::info;

use crate::net_io::NetFrames;
use crate::session::wire::{Control, ModelInfo, NodeStatus, Reply, SessionKey, decode, encode};
use crate::session::{ClientIo, Failure, FrameError, QuorumInfo};

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

fn load_client_key(identity: Option<&PathBuf>) -> Result<Keypair> {
    let identity = identity.cloned().unwrap_or_else(default_identity);
    if let Some(dir) = identity.parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating {} for the client identity", dir.display()))?;
    }
    net::load_or_generate_identity(&identity).context("--identity")
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
        let psk = net::load_psk(&spec.psk).context("--psk")?;
        let key = load_client_key(spec.identity.as_ref())?;
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
        Ok(Reach {
            psk,
            key,
            peers,
            allowed,
            mdns: spec.mdns,
            connect_timeout: spec.connect_timeout,
            gather: spec.gather,
        })
    }
}

/// The client's node, connected and counting the quorum's summary.
pub struct Connected {
    net: NetHandle,
    view: QuorumView,
    task: tokio::task::JoinHandle<()>,
    /// Stall reports from the parties (taken once: a node has one control inbox).
    requests: Mutex<mpsc::Receiver<ControlRequest>>,
}

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

/// Waits until 2t+1 parties agree on a summary, then a moment for the rest of the n.
async fn find_summary(handle: &NetHandle, reach: &Reach) -> Result<ShareSummary> {
    let start = Instant::now();
    let (summary, mut count) = loop {
        let anns = handle.announcements().await?;
        if let Some(found) = choose_summary(&anns) {
            break found;
        }
        if start.elapsed() >= reach.connect_timeout {
            let parties: Vec<PartyId> = anns.iter().map(|(_, a)| a.party).collect();
            bail!(
                "no quorum within {} s: parties {parties:?} answered, and fewer than 2t+1 of them share a model; check that the devices run (`sotto run`), that --psk is the mesh key, and that this client's peer ID is on their allow-lists",
                reach.connect_timeout.as_secs()
            );
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

/// Starts the client's node and waits for a quorum (call inside the runtime).
pub async fn connect(reach: Reach) -> Result<Connected> {
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
        let mut out = Vec::new();
        if let Ok(mut requests) = self.conn.requests.lock() {
            while let Ok(req) = requests.try_recv() {
                let reply = match decode::<Control>(&req.body) {
                    Ok(Control::Stalled {
                        key: k,
                        party,
                        epoch,
                        reason,
                    }) if k == *key => {
                        out.push(Failure::Stalled {
                            party,
                            epoch,
                            reason,
                        });
                        Reply::Ok
                    }
                    _ => Reply::Rejected("unexpected message".into()),
                };
                let _ = self.frames.rt.block_on(req.respond(encode(&reply)));
            }
        }
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
