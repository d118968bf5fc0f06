//! The session protocol: how a client asks the quorum for one private generation, and how the
//! parties keep going when one of them is lost.
//!
//! **Messages.** Control messages ([`Control`], answered with a [`Reply`]) travel on the mesh's
//! `/sotto/control/1` protocol; shares travel as MPC frames on sessions derived from the
//! request's random 128-bit [`SessionKey`] ([`frame_session`]): one for the client's inputs,
//! and per *epoch* one for the parties' rounds and one for their outputs to the client. Only
//! public values ever appear in control messages (lengths, party indices, token positions);
//! the client sends nothing but its session request, its input shares and these public
//! decisions, and receives only output shares.
//!
//! **Units.** A generation is a sequence of *units*, one forward pass each ([`Plan`]): unit
//! `i` runs the model at position `i`; the prompt's last unit and every later one end with
//! the token's output to the client (its shared index after the argmax inside MPC, or the
//! logits' shares for sampling at the client). Each party keeps, per recent unit, the shares
//! that unit starts from (a client input or the previous unit's one-hot row), so it can redo
//! a unit after rolling its KV cache back ([`models::secure::SecureEngine::truncate`]).
//!
//! **Recovery (token-granular, client-coordinated).** Every round has a deadline. A party whose
//! round fails (a peer timed out or disconnected) stops, tells the client (`Stalled`) and waits.
//! The client then pauses every live party ([`Control::Pause`]); each answers with a [`Report`]
//! of the unit it is in. Survivors are the parties that answered; if at least `2t + 1`
//! remain, the client picks the earliest unit any survivor is in, opens epoch `e + 1` with the
//! survivors as the live set ([`Control::Resume`]), and every survivor rolls back to that unit
//! and continues with the active set = the `2t + 1` lowest live indices (a fresh `mesh::Party`
//! per epoch: round counters and the preprocessing pool start empty on every survivor alike;
//! preprocessing material is dealt to all parties, so any `2t + 1` can use it). Outputs of
//! earlier units stay valid: every survivor completed them. Below `2t + 1` the client aborts
//! the session with a clear error and every party ends it and keeps serving.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use mesh::{Counters, Endpoint, MeshError, Party, Share, Threshold, Transport};
use mesh_net::{NetError, NetHandle, PeerId, SessionId};
use models::secure::{
    PartyModel, SecureEngine, SecureError, Selection, SessionParams, argmax_onehot,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tracing::{debug, info, warn};

/// Random identifier of one generation request.
pub(crate) type SessionKey = [u8; 16];

/// Version byte of input and output payloads.
const PAYLOAD_VERSION: u8 = 1;
/// Units whose starting shares a party keeps for a redo.
const CHECKPOINTS: u32 = 16;
/// Longest single wait inside a round; between slices the party checks for a pause.
const RECV_SLICE: Duration = Duration::from_millis(100);

/// Short hex form of a session key for logs and messages.
pub(crate) fn key_hex(key: &SessionKey) -> String {
    key.iter().take(6).map(|b| format!("{b:02x}")).collect()
}

/// Which stream of a session a frame belongs to.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Stream {
    /// Client -> parties: input shares (stable across epochs).
    Input,
    /// Parties <-> parties: MPC rounds of one epoch.
    Rounds(u32),
    /// Parties -> client: output shares of one epoch.
    Output(u32),
}

/// The mesh session id of one stream of a generation.
pub(crate) fn frame_session(key: &SessionKey, stream: Stream) -> SessionId {
    let (kind, epoch) = match stream {
        Stream::Input => (1u8, 0u32),
        Stream::Rounds(e) => (2, e),
        Stream::Output(e) => (3, e),
    };
    let mut h = Sha256::new();
    h.update(b"sotto/session/1");
    h.update(key);
    h.update([kind]);
    h.update(epoch.to_le_bytes());
    let d = h.finalize();
    let mut b = [0u8; 8];
    b.copy_from_slice(&d[..8]);
    SessionId(u64::from_le_bytes(b))
}

/// How the next token is chosen, on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum WireSelection {
    /// Argmax inside MPC; only the index goes to the client.
    Argmax,
    /// The logits' shares go to the client, which samples and shares the token back.
    SampleAtClient,
}

/// A client's request for one generation (public parameters only).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SessionRequest {
    pub(crate) key: SessionKey,
    pub(crate) prompt_len: u32,
    pub(crate) steps: u32,
    pub(crate) selection: WireSelection,
    pub(crate) reveal_logits: bool,
    /// The parties taking part (1-based, sorted); the first `2t + 1` are active.
    pub(crate) participants: Vec<u8>,
    /// The share summary the client expects (the party refuses another).
    pub(crate) model_sha256: [u8; 32],
    pub(crate) provisioning_id: [u8; 16],
}

impl SessionRequest {
    pub(crate) fn params(&self) -> SessionParams {
        SessionParams {
            prompt_len: self.prompt_len as usize,
            steps: self.steps as usize,
            selection: match self.selection {
                WireSelection::Argmax => Selection::ArgmaxInMpc,
                WireSelection::SampleAtClient => Selection::SampleAtClient,
            },
            reveal_logits: self.reveal_logits,
        }
    }

    pub(crate) fn plan(&self) -> Plan {
        Plan {
            prompt_len: self.prompt_len,
            steps: self.steps,
            selection: self.selection,
            reveal_logits: self.reveal_logits,
        }
    }
}

/// A control message (client <-> party).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) enum Control {
    /// Client -> party: the public facts of the model this party serves.
    Info,
    /// Client -> party: start a generation.
    Open(SessionRequest),
    /// Client -> party: stop where you are and report (answered with [`Reply::Report`]).
    Pause { key: SessionKey, epoch: u32 },
    /// Client -> party: continue in `epoch` with `live`, from unit `redo`.
    Resume {
        key: SessionKey,
        epoch: u32,
        live: Vec<u8>,
        redo: u32,
    },
    /// Client -> party: the generation is over (answered with [`Reply::Closed`]).
    Close { key: SessionKey },
    /// Client -> party: give up the generation.
    Abort { key: SessionKey, reason: String },
    /// Party -> client: a round of this party failed; please recover.
    Stalled {
        key: SessionKey,
        party: u8,
        epoch: u32,
        reason: String,
    },
    /// Anyone -> party: who is connected, with which link quality.
    Status,
}

/// A party's position in a session, for recovery.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Report {
    pub(crate) party: u8,
    pub(crate) epoch: u32,
    /// The unit the party is in (every earlier unit is complete and its output sent).
    pub(crate) at: u32,
    /// The earliest unit the party can redo.
    pub(crate) oldest: u32,
    /// Whether the party has stopped (false: it did not stop in time).
    pub(crate) stopped: bool,
    /// Set when the party cannot continue at all.
    pub(crate) fatal: Option<String>,
}

/// Public facts about the model a party serves.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ModelInfo {
    pub(crate) party: u8,
    pub(crate) n: u8,
    pub(crate) t: u8,
    pub(crate) model_sha256: [u8; 32],
    pub(crate) provisioning_id: [u8; 16],
    pub(crate) vocab_size: u32,
    pub(crate) seq_len: u32,
    pub(crate) dim: u32,
    pub(crate) n_layers: u32,
}

/// One link as a node sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct LinkStatus {
    pub(crate) party: Option<u8>,
    pub(crate) peer: String,
    pub(crate) rtt_us: Option<u64>,
}

/// A node's answer to [`Control::Status`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct NodeStatus {
    pub(crate) info: ModelInfo,
    pub(crate) peer: String,
    pub(crate) quorum: Vec<u8>,
    pub(crate) formed: bool,
    pub(crate) links: Vec<LinkStatus>,
    pub(crate) sessions: u32,
    pub(crate) profile: String,
    pub(crate) uptime_s: u64,
}

/// Traffic of one party over a whole session (all epochs).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SessionStats {
    pub(crate) online_rounds: u64,
    pub(crate) online_bytes: u64,
    pub(crate) offline_rounds: u64,
    pub(crate) offline_bytes: u64,
    pub(crate) epochs: u32,
}

impl SessionStats {
    fn add(&mut self, c: &Counters) {
        self.online_rounds += c.online.rounds;
        self.online_bytes += c.online.bytes;
        self.offline_rounds += c.offline.rounds;
        self.offline_bytes += c.offline.bytes;
    }
}

/// A party's answer to a control message.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) enum Reply {
    Info(ModelInfo),
    Accepted,
    Rejected(String),
    Ok,
    Report(Report),
    Closed(SessionStats),
    Status(Box<NodeStatus>),
}

/// A control message that could not be decoded.
#[derive(Debug, thiserror::Error)]
#[error("malformed control message: {0}")]
pub(crate) struct DecodeError(String);

pub(crate) fn encode<T: Serialize>(msg: &T) -> Vec<u8> {
    // Encoding our own enums into a Vec cannot fail; an empty body would be refused by the
    // receiver's decoder anyway.
    mesh_net::frame::encode_control(msg)
        .map(|mut b| b.split_off(1))
        .unwrap_or_default()
}

pub(crate) fn decode<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, DecodeError> {
    let mut framed = Vec::with_capacity(body.len() + 1);
    framed.push(mesh_net::frame::WIRE_VERSION);
    framed.extend_from_slice(body);
    mesh_net::frame::decode_control(&framed).map_err(|e| DecodeError(e.to_string()))
}

/// Input and output payloads: `[version][count u32 LE][count x 16-byte shares]`.
pub(crate) fn encode_shares(xs: &[Share]) -> Vec<u8> {
    let mut v = Vec::with_capacity(5 + 16 * xs.len());
    v.push(PAYLOAD_VERSION);
    v.extend_from_slice(&(xs.len() as u32).to_le_bytes());
    for x in xs {
        v.extend_from_slice(&x.to_le_bytes());
    }
    v
}

/// Parses a payload of exactly `count` shares; anything else is an error naming `from`.
pub(crate) fn decode_shares(bytes: &[u8], count: usize, from: &str) -> Result<Vec<Share>, String> {
    let bad = |why: String| format!("malformed shares from {from}: {why}");
    let (&version, rest) = bytes.split_first().ok_or_else(|| bad("empty".into()))?;
    if version != PAYLOAD_VERSION {
        return Err(bad(format!("version {version}")));
    }
    let (head, body) = rest
        .split_at_checked(4)
        .ok_or_else(|| bad("short header".into()))?;
    let mut h = [0u8; 4];
    h.copy_from_slice(head);
    let got = u32::from_le_bytes(h) as usize;
    if got != count || body.len() != 16 * count {
        return Err(bad(format!(
            "{got} shares in {} bytes, expected {count}",
            body.len()
        )));
    }
    body.chunks_exact(16)
        .enumerate()
        .map(|(i, c)| {
            let mut b = [0u8; 16];
            b.copy_from_slice(c);
            Share::from_le_bytes(b).ok_or_else(|| bad(format!("element {i} is not canonical")))
        })
        .collect()
}

/// The units of one generation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Plan {
    pub(crate) prompt_len: u32,
    pub(crate) steps: u32,
    pub(crate) selection: WireSelection,
    pub(crate) reveal_logits: bool,
}

impl Plan {
    /// Forward passes in all: the prompt, then one per generated token but the last.
    pub(crate) fn units(&self) -> u32 {
        self.prompt_len + self.steps - 1
    }

    /// Whether unit `u` starts from shares the client sends.
    pub(crate) fn client_input(&self, u: u32) -> bool {
        u < self.prompt_len || self.selection == WireSelection::SampleAtClient
    }

    /// The first unit that ends with an output to the client.
    pub(crate) fn first_output(&self) -> u32 {
        self.prompt_len - 1
    }

    /// Shares in one unit's output.
    pub(crate) fn output_len(&self, vocab: usize) -> usize {
        let logits = self.reveal_logits || self.selection == WireSelection::SampleAtClient;
        (if logits { vocab } else { 0 }) + usize::from(self.selection == WireSelection::Argmax)
    }
}

/// What the client decided after a stall.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Directive {
    Resume {
        epoch: u32,
        live: Vec<u8>,
        redo: u32,
    },
    Close,
    Abort(String),
}

/// Where a party's session thread is, as seen by the control handler.
#[derive(Clone, Debug, Default)]
struct Progress {
    epoch: u32,
    at: u32,
    oldest: u32,
    stopped: bool,
    fatal: Option<String>,
    stats: SessionStats,
}

/// Shared between a session's thread and the node's control handler.
#[derive(Debug)]
pub(crate) struct SessionControl {
    pub(crate) key: SessionKey,
    pub(crate) client: PeerId,
    /// The thread stops at its next round once this reaches its epoch.
    pause_epoch: AtomicI64,
    aborted: AtomicBool,
    progress: Mutex<(Progress, VecDeque<Directive>)>,
    wake: Condvar,
}

impl SessionControl {
    pub(crate) fn new(key: SessionKey, client: PeerId) -> Self {
        SessionControl {
            key,
            client,
            pause_epoch: AtomicI64::new(-1),
            aborted: AtomicBool::new(false),
            progress: Mutex::new((Progress::default(), VecDeque::new())),
            wake: Condvar::new(),
        }
    }

    fn interrupted(&self, epoch: u32) -> bool {
        self.aborted.load(Ordering::SeqCst)
            || self.pause_epoch.load(Ordering::SeqCst) >= i64::from(epoch)
    }

    /// Asks the thread to stop at its next round of `epoch` (or an earlier one).
    pub(crate) fn pause(&self, epoch: u32) {
        self.pause_epoch
            .fetch_max(i64::from(epoch), Ordering::SeqCst);
        self.wake.notify_all();
    }

    /// Hands the thread a decision.
    pub(crate) fn direct(&self, d: Directive) {
        if matches!(d, Directive::Abort(_)) {
            self.aborted.store(true, Ordering::SeqCst);
        }
        if let Ok(mut g) = self.progress.lock() {
            g.1.push_back(d);
        }
        self.wake.notify_all();
    }

    /// The thread's position once it has stopped, waiting at most `limit`.
    pub(crate) fn report(&self, party: u8, limit: Duration) -> Report {
        let until = Instant::now() + limit;
        let mut g = match self.progress.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        while !g.0.stopped {
            let now = Instant::now();
            if now >= until {
                break;
            }
            g = match self.wake.wait_timeout(g, until - now) {
                Ok((g, _)) => g,
                Err(p) => p.into_inner().0,
            };
        }
        let p = &g.0;
        Report {
            party,
            epoch: p.epoch,
            at: p.at,
            oldest: p.oldest,
            stopped: p.stopped,
            fatal: p.fatal.clone(),
        }
    }

    /// The epoch the session is in.
    pub(crate) fn epoch(&self) -> u32 {
        self.progress.lock().map(|g| g.0.epoch).unwrap_or(0)
    }

    /// The traffic so far.
    pub(crate) fn stats(&self) -> SessionStats {
        self.progress.lock().map(|g| g.0.stats).unwrap_or_default()
    }

    fn update(&self, f: impl FnOnce(&mut Progress)) {
        if let Ok(mut g) = self.progress.lock() {
            f(&mut g.0);
        }
        self.wake.notify_all();
    }

    /// Waits for the client's next decision, at most `limit`.
    fn next_directive(&self, limit: Duration) -> Option<Directive> {
        let until = Instant::now() + limit;
        let mut g = match self.progress.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        loop {
            if let Some(d) = g.1.pop_front() {
                return Some(d);
            }
            let now = Instant::now();
            if now >= until {
                return None;
            }
            g = match self.wake.wait_timeout(g, until - now) {
                Ok((g, _)) => g,
                Err(p) => p.into_inner().0,
            };
        }
    }
}

/// Why a round failed, recorded by the transport (the engine's error carries no details).
#[derive(Clone, Debug)]
enum Stall {
    Paused,
    Peer { party: u8, reason: String },
}

/// A party's [`Transport`] for one epoch: sends only to live parties, bounds every wait, and
/// gives up at once when the client pauses the session.
struct EpochTransport {
    rt: tokio::runtime::Handle,
    net: NetHandle,
    session: SessionId,
    n: usize,
    me: usize,
    live: Vec<bool>,
    epoch: u32,
    round: u64,
    round_timeout: Duration,
    control: Arc<SessionControl>,
    stall: Arc<Mutex<Option<Stall>>>,
}

impl EpochTransport {
    fn fail(&self, stall: Stall, e: MeshError) -> MeshError {
        if let Ok(mut s) = self.stall.lock() {
            s.get_or_insert(stall);
        }
        e
    }

    fn recv(&mut self, j: usize, round: u64, deadline: Instant) -> Result<Vec<u8>, MeshError> {
        let from = (j + 1) as u8;
        loop {
            if self.control.interrupted(self.epoch) {
                return Err(self.fail(Stall::Paused, MeshError::Timeout(Endpoint::Party(j))));
            }
            let now = Instant::now();
            let slice = (now + RECV_SLICE).min(deadline);
            let got = self
                .rt
                .block_on(self.net.recv_round(from, self.session, round, slice));
            match got {
                Ok(m) => return Ok(m),
                Err(NetError::Timeout { .. }) if Instant::now() < deadline => {}
                Err(e) => {
                    let reason = e.to_string();
                    return Err(self.fail(
                        Stall::Peer {
                            party: from,
                            reason,
                        },
                        MeshError::Disconnected(Endpoint::Party(j)),
                    ));
                }
            }
        }
    }
}

impl Transport for EpochTransport {
    fn parties(&self) -> usize {
        self.n
    }

    fn index(&self) -> usize {
        self.me
    }

    fn exchange(
        &mut self,
        outgoing: Vec<Option<Vec<u8>>>,
        expect: &[bool],
    ) -> Result<Vec<Option<Vec<u8>>>, MeshError> {
        if outgoing.len() != self.n || expect.len() != self.n {
            return Err(MeshError::LengthMismatch {
                what: "exchange arguments (one entry per party)",
                expected: self.n,
                got: outgoing.len().min(expect.len()),
            });
        }
        if self.control.interrupted(self.epoch) {
            return Err(self.fail(Stall::Paused, MeshError::Timeout(Endpoint::Party(self.me))));
        }
        let round = self.round;
        self.round += 1;
        for (j, msg) in outgoing.into_iter().enumerate() {
            if let Some(msg) = msg {
                // A party outside the live set is gone: nothing to send it.
                if !self.live[j] {
                    continue;
                }
                let sent =
                    self.rt
                        .block_on(self.net.send_round((j + 1) as u8, self.session, round, msg));
                if let Err(e) = sent {
                    return Err(self.fail(
                        Stall::Peer {
                            party: (j + 1) as u8,
                            reason: e.to_string(),
                        },
                        MeshError::Disconnected(Endpoint::Party(j)),
                    ));
                }
            }
        }
        let deadline = Instant::now() + self.round_timeout;
        let mut incoming = Vec::with_capacity(self.n);
        for (j, &want) in expect.iter().enumerate() {
            if want {
                incoming.push(Some(self.recv(j, round, deadline)?));
            } else {
                incoming.push(None);
            }
        }
        Ok(incoming)
    }

    fn send_to_client(&mut self, _msg: Vec<u8>) -> Result<(), MeshError> {
        // Client traffic goes through the session's own streams, never through the engine.
        Err(MeshError::InvalidArgument(
            "client traffic does not use the round transport",
        ))
    }

    fn recv_from_client(&mut self) -> Result<Vec<u8>, MeshError> {
        Err(MeshError::InvalidArgument(
            "client traffic does not use the round transport",
        ))
    }
}

/// Everything a party's session thread needs.
pub(crate) struct PartySession {
    pub(crate) rt: tokio::runtime::Handle,
    pub(crate) net: NetHandle,
    pub(crate) control: Arc<SessionControl>,
    pub(crate) model: Arc<PartyModel>,
    pub(crate) th: Threshold,
    /// This party, 1-based.
    pub(crate) party: u8,
    pub(crate) request: SessionRequest,
    pub(crate) round_timeout: Duration,
    pub(crate) recovery_timeout: Duration,
}

/// How a party's session ended.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// The client closed it after receiving every output.
    Closed,
    /// The client (or this party) gave it up.
    Aborted(String),
}

/// Why a unit did not complete.
enum UnitError {
    /// A peer or the client stopped the round; recoverable.
    Stalled(String),
    /// Anything else.
    Fatal(String),
}

impl PartySession {
    fn active_set(&self, live: &[u8]) -> Vec<usize> {
        live.iter()
            .take(2 * self.th.t() + 1)
            .map(|&p| usize::from(p) - 1)
            .collect()
    }

    fn new_party(
        &self,
        epoch: u32,
        live: &[u8],
        stall: &Arc<Mutex<Option<Stall>>>,
    ) -> Result<Party<EpochTransport>, MeshError> {
        let n = self.th.n();
        let mut mask = vec![false; n];
        for &p in live {
            if let Some(m) = mask.get_mut(usize::from(p).wrapping_sub(1)) {
                *m = true;
            }
        }
        let transport = EpochTransport {
            rt: self.rt.clone(),
            net: self.net.clone(),
            session: frame_session(&self.request.key, Stream::Rounds(epoch)),
            n,
            me: usize::from(self.party) - 1,
            live: mask,
            epoch,
            round: 0,
            round_timeout: self.round_timeout,
            control: Arc::clone(&self.control),
            stall: Arc::clone(stall),
        };
        let mut p = Party::with_os_rng(self.th, usize::from(self.party) - 1, transport)?;
        p.set_active(&self.active_set(live))?;
        Ok(p)
    }

    /// Receives the client's input for unit `u`.
    fn client_input(&self, u: u32, vocab: usize) -> Result<Vec<Share>, UnitError> {
        let session = frame_session(&self.request.key, Stream::Input);
        // The client sends every prompt input at once and each sampled token right after
        // its output, so a long wait means the client is gone or the session is paused.
        let deadline = Instant::now() + self.recovery_timeout;
        loop {
            if self.control.interrupted(self.progress_epoch()) {
                return Err(UnitError::Stalled("paused by the client".into()));
            }
            let slice = (Instant::now() + RECV_SLICE).min(deadline);
            match self.rt.block_on(self.net.recv_round(
                mesh_net::CLIENT,
                session,
                u64::from(u),
                slice,
            )) {
                Ok(bytes) => {
                    // Wiped once parsed: they are shares of the prompt.
                    let bytes = zeroize::Zeroizing::new(bytes);
                    return decode_shares(&bytes, vocab, "the client").map_err(UnitError::Fatal);
                }
                Err(NetError::Timeout { .. }) if Instant::now() < deadline => {}
                Err(e) => return Err(UnitError::Fatal(format!("no input from the client: {e}"))),
            }
        }
    }

    fn progress_epoch(&self) -> u32 {
        self.control.progress.lock().map(|g| g.0.epoch).unwrap_or(0)
    }

    /// Runs the generation to its end; never panics on network input.
    pub(crate) fn run(self) -> Outcome {
        let key = key_hex(&self.request.key);
        match self.run_inner() {
            Ok(o) => {
                info!(session = %key, outcome = ?o, "session ended");
                o
            }
            Err(reason) => {
                warn!(session = %key, %reason, "session failed");
                self.control.update(|p| {
                    p.fatal = Some(reason.clone());
                    p.stopped = true;
                });
                Outcome::Aborted(reason)
            }
        }
    }

    fn run_inner(&self) -> Result<Outcome, String> {
        let plan = self.request.plan();
        let c = *self.model.config();
        let vocab = c.vocab_size;
        let units = plan.units();
        let mut engine = SecureEngine::new(Arc::clone(&self.model));
        let mut checkpoints: BTreeMap<u32, Vec<Share>> = BTreeMap::new();
        let mut epoch = 0u32;
        let mut live = self.request.participants.clone();
        let stall = Arc::new(Mutex::new(None::<Stall>));
        let mut party = self
            .new_party(epoch, &live, &stall)
            .map_err(|e| e.to_string())?;
        let mut stats = SessionStats::default();
        let mut unit = 0u32;
        let out_len = plan.output_len(vocab);
        loop {
            let result = if unit < units {
                self.control.update(|p| {
                    p.at = unit;
                    p.oldest = checkpoints.keys().next().copied().unwrap_or(unit).min(unit);
                });
                self.run_unit(
                    &plan,
                    unit,
                    &mut party,
                    &mut engine,
                    &mut checkpoints,
                    epoch,
                    out_len,
                )
            } else {
                Err(UnitError::Stalled("finished".into()))
            };
            match result {
                Ok(()) => {
                    unit += 1;
                    while checkpoints
                        .keys()
                        .next()
                        .is_some_and(|&k| k + CHECKPOINTS <= unit)
                    {
                        checkpoints.pop_first();
                    }
                    continue;
                }
                Err(UnitError::Fatal(reason)) => return Err(reason),
                Err(UnitError::Stalled(reason)) => {
                    let cause = stall.lock().ok().and_then(|mut s| s.take());
                    if unit < units {
                        debug!(unit, %reason, ?cause, "unit stopped");
                    }
                    stats.add(&party.counters());
                    let oldest = checkpoints.keys().next().copied().unwrap_or(unit).min(unit);
                    self.control.update(|p| {
                        p.at = unit;
                        p.oldest = oldest;
                        p.stopped = true;
                        p.stats = stats;
                        p.stats.epochs = epoch + 1;
                    });
                    // A failure this party saw itself: ask the client to recover.
                    if let Some(Stall::Peer {
                        party: lost,
                        reason,
                    }) = &cause
                    {
                        warn!(session = %key_hex(&self.request.key), epoch, unit, party = lost, %reason, "round failed; asking the client to recover");
                        let msg = encode(&Control::Stalled {
                            key: self.request.key,
                            party: self.party,
                            epoch,
                            reason: format!("party {lost}: {reason}"),
                        });
                        let net = self.net.clone();
                        let client = self.control.client;
                        self.rt.spawn(async move {
                            let _ = net.control(client, msg).await;
                        });
                    }
                    match self.control.next_directive(self.recovery_timeout) {
                        None => {
                            if unit >= units {
                                // Finished, and the client did not close: it has what it needs.
                                return Ok(Outcome::Closed);
                            }
                            return Err(format!(
                                "no decision from the client within {:?} after the session stopped at unit {unit}",
                                self.recovery_timeout
                            ));
                        }
                        Some(Directive::Close) => return Ok(Outcome::Closed),
                        Some(Directive::Abort(reason)) => return Ok(Outcome::Aborted(reason)),
                        Some(Directive::Resume {
                            epoch: next,
                            live: next_live,
                            redo,
                        }) => {
                            if !checkpoints.contains_key(&redo) && !plan.client_input(redo) {
                                return Err(format!("cannot redo unit {redo}: no checkpoint"));
                            }
                            if redo > unit {
                                return Err(format!(
                                    "cannot skip ahead to unit {redo} from {unit}"
                                ));
                            }
                            info!(session = %key_hex(&self.request.key), epoch = next, redo, live = ?next_live, "resuming");
                            engine.truncate(redo as usize);
                            // Later rows are recomputed; client inputs were received once and
                            // stay valid.
                            checkpoints.retain(|&k, _| k <= redo || plan.client_input(k));
                            let old = frame_session(&self.request.key, Stream::Rounds(epoch));
                            let _ = self.rt.block_on(self.net.end_session(old));
                            epoch = next;
                            live = next_live;
                            party = self
                                .new_party(epoch, &live, &stall)
                                .map_err(|e| e.to_string())?;
                            unit = redo;
                            self.control.update(|p| {
                                p.epoch = epoch;
                                p.at = unit;
                                p.stopped = false;
                            });
                        }
                    }
                }
            }
        }
    }

    /// One unit: its forward pass and, from the prompt's last unit on, its output.
    #[allow(clippy::too_many_arguments)]
    fn run_unit(
        &self,
        plan: &Plan,
        unit: u32,
        party: &mut Party<EpochTransport>,
        engine: &mut SecureEngine,
        checkpoints: &mut BTreeMap<u32, Vec<Share>>,
        epoch: u32,
        out_len: usize,
    ) -> Result<(), UnitError> {
        if self.control.interrupted(epoch) {
            return Err(UnitError::Stalled("paused by the client".into()));
        }
        let vocab = self.model.config().vocab_size;
        let input = match checkpoints.get(&unit) {
            Some(x) => x.clone(),
            None if plan.client_input(unit) => {
                let x = self.client_input(unit, vocab)?;
                checkpoints.insert(unit, x.clone());
                x
            }
            None => return Err(UnitError::Fatal(format!("no input for unit {unit}"))),
        };
        let wants_logits = unit >= plan.first_output();
        let engine_err = |e: SecureError| match e {
            SecureError::Mesh(_) => UnitError::Stalled(e.to_string()),
            other => UnitError::Fatal(other.to_string()),
        };
        let logits = engine
            .forward(party, &input, wants_logits)
            .map_err(engine_err)?;
        if !wants_logits {
            return Ok(());
        }
        let logits =
            logits.ok_or_else(|| UnitError::Fatal("forward pass returned no logits".into()))?;
        let mut out = Vec::with_capacity(out_len);
        if plan.reveal_logits || plan.selection == WireSelection::SampleAtClient {
            out.extend_from_slice(&logits);
        }
        if plan.selection == WireSelection::Argmax {
            let (row, index) = argmax_onehot(party, &logits).map_err(engine_err)?;
            out.push(index);
            if unit + 1 < plan.units() {
                checkpoints.insert(unit + 1, row);
            }
        }
        let session = frame_session(&self.request.key, Stream::Output(epoch));
        self.rt
            .block_on(self.net.send_round(
                mesh_net::CLIENT,
                session,
                u64::from(unit),
                encode_shares(&out),
            ))
            .map_err(|e| UnitError::Fatal(format!("cannot send the output: {e}")))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_sessions_differ_per_stream_and_epoch() {
        let k = [7u8; 16];
        let ids = [
            frame_session(&k, Stream::Input),
            frame_session(&k, Stream::Rounds(0)),
            frame_session(&k, Stream::Rounds(1)),
            frame_session(&k, Stream::Output(0)),
            frame_session(&k, Stream::Output(1)),
        ];
        for (i, a) in ids.iter().enumerate() {
            for b in &ids[i + 1..] {
                assert_ne!(a, b);
            }
        }
        assert_eq!(ids[0], frame_session(&k, Stream::Input));
    }

    #[test]
    fn control_messages_round_trip_and_garbage_is_an_error() {
        let req = SessionRequest {
            key: [1; 16],
            prompt_len: 5,
            steps: 64,
            selection: WireSelection::Argmax,
            reveal_logits: false,
            participants: vec![1, 2, 3, 4],
            model_sha256: [2; 32],
            provisioning_id: [3; 16],
        };
        let body = encode(&Control::Open(req.clone()));
        match decode::<Control>(&body).unwrap() {
            Control::Open(r) => assert_eq!(r, req),
            other => panic!("{other:?}"),
        }
        assert!(decode::<Control>(&[0xff, 0xff, 0xff]).is_err());
        assert!(decode::<Reply>(&[]).is_err());
    }

    #[test]
    fn share_payloads_are_checked() {
        let xs = vec![Share::public(3), Share::public(-1)];
        let b = encode_shares(&xs);
        assert_eq!(decode_shares(&b, 2, "p").unwrap(), xs);
        assert!(decode_shares(&b, 3, "p").is_err());
        assert!(decode_shares(&b[..b.len() - 1], 2, "p").is_err());
        assert!(decode_shares(&[], 0, "p").is_err());
        let mut bad = b.clone();
        bad[5..21].copy_from_slice(&[0xff; 16]);
        assert!(
            decode_shares(&bad, 2, "p")
                .unwrap_err()
                .contains("canonical")
        );
    }

    #[test]
    fn plan_counts_units_and_outputs() {
        let p = Plan {
            prompt_len: 5,
            steps: 64,
            selection: WireSelection::Argmax,
            reveal_logits: false,
        };
        assert_eq!(p.units(), 68);
        assert_eq!(p.first_output(), 4);
        assert!(p.client_input(4) && !p.client_input(5));
        assert_eq!(p.output_len(512), 1);
        let s = Plan {
            selection: WireSelection::SampleAtClient,
            ..p
        };
        assert!(s.client_input(40));
        assert_eq!(s.output_len(512), 512);
    }
}
