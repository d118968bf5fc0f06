//! The party's server: admission of session requests and dispatch of control messages,
//! written once over a [`Host`] (what the node's network, or the in-memory router, provides).
//! Each admitted session runs [`PartySession::run`] on its own OS thread; a failed session
//! never stops the server.
//!
//! - [`net`]: the libp2p host and the tasks that feed control requests to [`Server::handle`].
//! - [`startup`]: `sotto run`'s start-up checks (config, share file, budget, keys), then serve.

pub mod net;
pub mod startup;

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use mesh::{PartyId, Threshold};
use mesh_net::SessionId;
use models::secure::PartyModel;
use tracing::{info, warn};

use crate::session::wire::{
    Control, GenerationError, LinkStatus, ModelInfo, NodeStatus, Reply, SessionKey, SessionRequest,
    Stream, frame_session, key_hex,
};
use crate::session::{Order, Outcome, PartyIo, PartySession, SessionControl};

/// How long a party waits for the other participants of a request to be connected.
const PARTICIPANTS_WAIT: Duration = Duration::from_secs(5);
/// How long a paused session may take to stop before the party answers anyway.
const PAUSE_WAIT: Duration = Duration::from_secs(5);

/// What this node sees of the mesh, for a status answer.
#[derive(Clone, Debug, Default)]
pub struct MeshView {
    /// This node's peer ID.
    pub peer: String,
    /// The parties it sees.
    pub quorum: Vec<PartyId>,
    /// Whether they form a quorum.
    pub formed: bool,
    /// Its links.
    pub links: Vec<LinkStatus>,
}

/// What a server needs from whatever connects it to clients and other parties.
pub trait Host: Send + Sync + 'static {
    /// Who a client is (its peer ID on the network).
    type Client: Clone + PartialEq + fmt::Display + fmt::Debug + Send + Sync + 'static;
    /// The I/O of one session.
    type Io: PartyIo + 'static;
    /// What its calls fail with.
    type Error: std::error::Error + Send + Sync + 'static;
    /// The I/O for a new session of `client`.
    fn session_io(&self, client: &Self::Client) -> Arc<Self::Io>;
    /// The parties of `wanted` not connected to this node, after waiting up to `wait`.
    fn missing(&self, wanted: &[PartyId], wait: Duration) -> Result<Vec<PartyId>, Self::Error>;
    /// Admits `client`'s frames on `session`.
    fn bind_client(&self, session: SessionId, client: &Self::Client) -> Result<(), Self::Error>;
    /// Forgets a stream.
    fn end(&self, session: SessionId);
    /// What this node sees of the mesh.
    fn view(&self) -> MeshView;
}

/// How a server serves sessions.
#[derive(Clone, Debug)]
pub struct ServerSettings {
    /// Longest wait for one round's message.
    pub round_timeout: Duration,
    /// Longest wait for the client's input or decision.
    pub recovery_timeout: Duration,
    /// Sessions at once.
    pub max_sessions: usize,
    /// The device profile's name (for status answers).
    pub profile: String,
}

/// A session the server runs.
struct Running<C> {
    client: C,
    control: Arc<SessionControl>,
}

/// One party's serving state.
pub struct Server<H: Host> {
    host: H,
    model: Arc<PartyModel>,
    th: Threshold,
    party: PartyId,
    info: ModelInfo,
    sessions: Mutex<HashMap<SessionKey, Running<H::Client>>>,
    settings: ServerSettings,
    started: Instant,
}

impl<H: Host> fmt::Debug for Server<H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("party", &self.party)
            .field("th", &self.th)
            .finish_non_exhaustive()
    }
}

/// The public facts of the model `model` serves.
pub fn model_info(model: &PartyModel) -> Result<ModelInfo, mesh::MeshError> {
    let h = model.header();
    let c = model.config();
    Ok(ModelInfo {
        party: PartyId::from_number(h.party)?,
        n: h.n,
        t: h.t,
        model_sha256: h.model_sha256,
        provisioning_id: h.provisioning_id,
        vocab_size: c.vocab_size as u32,
        seq_len: c.seq_len as u32,
        dim: c.dim as u32,
        n_layers: c.n_layers as u32,
    })
}

impl<H: Host> Server<H> {
    /// A server of `model` (party `model.header().party`) over `host`.
    pub fn new(
        host: H,
        model: Arc<PartyModel>,
        th: Threshold,
        settings: ServerSettings,
    ) -> Result<Arc<Self>, mesh::MeshError> {
        let info = model_info(&model)?;
        Ok(Arc::new(Server {
            host,
            party: info.party,
            info,
            model,
            th,
            sessions: Mutex::new(HashMap::new()),
            settings,
            started: Instant::now(),
        }))
    }

    /// The host the server runs on.
    pub fn host(&self) -> &H {
        &self.host
    }

    /// This server's party.
    pub fn party(&self) -> PartyId {
        self.party
    }

    fn table(&self) -> MutexGuard<'_, HashMap<SessionKey, Running<H::Client>>> {
        // The table holds plain data; a panicking holder leaves it usable.
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How many sessions are running.
    pub fn running(&self) -> usize {
        self.table().len()
    }

    /// Ends every running session.
    pub fn abort_all(&self, reason: &str) {
        for r in self.table().values() {
            r.control.order(Order::Abort(reason.to_owned()));
        }
    }

    /// Fault injection (tests, rehearsals): every running session stops answering while the
    /// node stays connected (see [`SessionControl::freeze`]).
    pub fn freeze(&self) {
        for r in self.table().values() {
            r.control.freeze();
        }
    }

    /// Ends the sessions of a client that left.
    pub fn client_gone(&self, client: &H::Client) {
        for r in self.table().values().filter(|r| r.client == *client) {
            warn!(session = %key_hex(r.control.key()), "the client disconnected; ending its session");
            r.control
                .order(Order::Abort("the client disconnected".into()));
        }
    }

    /// Only the client that opened a session may steer it.
    fn session(&self, key: &SessionKey, client: &H::Client) -> Option<Arc<SessionControl>> {
        let t = self.table();
        let r = t.get(key)?;
        (r.client == *client).then(|| Arc::clone(&r.control))
    }

    /// Answers one control message from `client` (`from_party` when the sender announced a
    /// party index). Blocks while a paused session stops (at most a few seconds).
    pub fn handle(
        self: &Arc<Self>,
        client: H::Client,
        from_party: Option<PartyId>,
        msg: Control,
    ) -> Reply {
        match msg {
            Control::Info => Reply::Info(self.info.clone()),
            Control::Status => Reply::Status(Box::new(self.status())),
            Control::Open(req) => self.open(client, from_party, req),
            Control::Pause { key, epoch } => self.steer(&key, &client, |s| {
                s.pause(epoch);
                Reply::Report(s.report(self.party, PAUSE_WAIT))
            }),
            Control::Resume {
                key,
                epoch,
                live,
                redo,
            } => self.steer(&key, &client, |s| {
                if let Err(e) = s.check_live(&live) {
                    warn!(session = %key_hex(&key), %client, "refused a resume order: {e}");
                    return Reply::Rejected(e.to_string());
                }
                let out = frame_session(&key, Stream::Output(epoch));
                if let Err(e) = self.host.bind_client(out, &client) {
                    return Reply::Rejected(e.to_string());
                }
                if live.contains(&self.party) {
                    s.order(Order::Resume { epoch, live, redo });
                } else {
                    s.order(Order::Abort("left out of the live set".into()));
                }
                Reply::Ok
            }),
            Control::Close { key } => self.steer(&key, &client, |s| {
                let stats = s.final_stats(PAUSE_WAIT);
                s.order(Order::Close);
                Reply::Closed(stats)
            }),
            Control::Abort { key, reason } => {
                if let Some(s) = self.session(&key, &client) {
                    s.order(Order::Abort(reason));
                }
                Reply::Ok
            }
            Control::Stalled { .. } => Reply::Rejected("parties do not coordinate recovery".into()),
        }
    }

    fn steer(
        &self,
        key: &SessionKey,
        client: &H::Client,
        f: impl FnOnce(&SessionControl) -> Reply,
    ) -> Reply {
        match self.session(key, client) {
            Some(s) => f(&s),
            None => Reply::Rejected("no such session".into()),
        }
    }

    fn status(&self) -> NodeStatus {
        let view = self.host.view();
        NodeStatus {
            info: self.info.clone(),
            peer: view.peer,
            quorum: view.quorum,
            formed: view.formed,
            links: view.links,
            sessions: self.table().len() as u32,
            profile: self.settings.profile.clone(),
            uptime_s: self.started.elapsed().as_secs(),
        }
    }

    /// Checks a request; on success starts its thread.
    fn open(
        self: &Arc<Self>,
        client: H::Client,
        from_party: Option<PartyId>,
        req: SessionRequest,
    ) -> Reply {
        match self.admit(&client, from_party, &req) {
            Ok(control) => {
                info!(session = %key_hex(&req.key), %client, participants = ?req.participants, prompt = req.generation.prompt_len, steps = req.generation.steps, "session accepted");
                self.start(client, control, req);
                Reply::Accepted
            }
            Err(why @ Refusal::Busy { .. }) => {
                info!(%client, "{why}");
                Reply::Busy(why.to_string())
            }
            Err(why) => {
                warn!(%client, "refused a session request: {why}");
                Reply::Rejected(why.to_string())
            }
        }
    }

    /// Every check a request must pass, then its slot in the session table.
    fn admit(
        &self,
        client: &H::Client,
        from_party: Option<PartyId>,
        req: &SessionRequest,
    ) -> Result<Arc<SessionControl>, Refusal> {
        if from_party.is_some() {
            return Err(Refusal::FromParty);
        }
        self.check_request(req)?;
        self.check_capacity(&req.key)?;
        let missing = self
            .host
            .missing(&req.participants, PARTICIPANTS_WAIT)
            .map_err(Refusal::host)?;
        if !missing.is_empty() {
            return Err(Refusal::NotConnected {
                party: self.party,
                missing,
            });
        }
        for stream in [Stream::Input, Stream::Output(0)] {
            self.host
                .bind_client(frame_session(&req.key, stream), client)
                .map_err(Refusal::host)?;
        }
        let control = Arc::new(SessionControl::new(
            req.key,
            req.participants.clone(),
            self.th,
        ));
        let mut table = self.table();
        if table.len() >= self.settings.max_sessions {
            return Err(Refusal::Busy {
                party: self.party,
                running: table.len(),
            });
        }
        table.insert(
            req.key,
            Running {
                client: client.clone(),
                control: Arc::clone(&control),
            },
        );
        Ok(control)
    }

    fn check_request(&self, req: &SessionRequest) -> Result<(), Refusal> {
        let h = self.model.header();
        if req.model_sha256 != h.model_sha256 || req.provisioning_id != h.provisioning_id {
            return Err(Refusal::OtherModel(self.party));
        }
        req.generation.check(self.model.config().seq_len)?;
        let (n, t) = (self.th.n(), self.th.t());
        let p = &req.participants;
        let sorted = p.windows(2).all(|w| w[0] < w[1]);
        if !sorted || p.iter().any(|i| i.index() >= n) {
            return Err(Refusal::Request(format!(
                "participants {p:?} are not distinct parties of 1..={n} in order"
            )));
        }
        if p.len() < 2 * t + 1 {
            return Err(Refusal::Request(format!(
                "{} participants, a ({n}, {t}) quorum needs {}",
                p.len(),
                2 * t + 1
            )));
        }
        if !p.contains(&self.party) {
            return Err(Refusal::Request(format!(
                "party {} is not among the participants {p:?}",
                self.party
            )));
        }
        Ok(())
    }

    fn check_capacity(&self, key: &SessionKey) -> Result<(), Refusal> {
        let table = self.table();
        if table.contains_key(key) {
            return Err(Refusal::Request(
                "a session with this key already exists".into(),
            ));
        }
        if table.len() >= self.settings.max_sessions {
            return Err(Refusal::Busy {
                party: self.party,
                running: table.len(),
            });
        }
        Ok(())
    }

    /// Runs an admitted session on its own thread; its streams end with it.
    fn start(
        self: &Arc<Self>,
        client: H::Client,
        control: Arc<SessionControl>,
        req: SessionRequest,
    ) {
        let key = req.key;
        let session = PartySession {
            io: self.host.session_io(&client),
            control: Arc::clone(&control),
            model: Arc::clone(&self.model),
            th: self.th,
            party: self.party,
            request: req,
            round_timeout: self.settings.round_timeout,
            recovery_timeout: self.settings.recovery_timeout,
        };
        let server = Arc::clone(self);
        let spawned = std::thread::Builder::new()
            .name(format!("session-{}", key_hex(&key)))
            .spawn(move || {
                if let Outcome::Aborted(why) = session.run() {
                    info!(session = %key_hex(&key), %why, "session aborted");
                }
                server.table().remove(&key);
                server.host.end(frame_session(&key, Stream::Input));
                for e in 0..=control.epoch() {
                    server.host.end(frame_session(&key, Stream::Rounds(e)));
                    server.host.end(frame_session(&key, Stream::Output(e)));
                }
            });
        if let Err(e) = spawned {
            warn!(session = %key_hex(&key), error = %e, "cannot start the session thread");
            self.table().remove(&key);
        }
    }
}

/// Why a party refuses a session request (sent to the client as text).
#[derive(Debug, thiserror::Error)]
enum Refusal {
    #[error("sessions are requested by clients, not by parties")]
    FromParty,
    #[error("party {0} serves another model or provisioning; check which mesh the client reaches")]
    OtherModel(PartyId),
    #[error(transparent)]
    Generation(#[from] GenerationError),
    #[error("{0}")]
    Request(String),
    #[error("party {party} is busy ({running} sessions running, its max_sessions)")]
    Busy { party: PartyId, running: usize },
    #[error("party {party} is not connected to parties {missing:?}")]
    NotConnected {
        party: PartyId,
        missing: Vec<PartyId>,
    },
    #[error("{0}")]
    Host(Box<dyn std::error::Error + Send + Sync>),
}

impl Refusal {
    fn host(e: impl std::error::Error + Send + Sync + 'static) -> Refusal {
        Refusal::Host(Box::new(e))
    }
}
