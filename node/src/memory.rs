//! The whole mesh in one process, without a network: a router of numbered frames between
//! threads, the [`Host`] a [`Server`] runs on, and the [`ClientIo`] whose control messages
//! call the servers directly. `sotto demo --in-memory` and the session tests run the same
//! party, client and server code over it as the daemons run over libp2p.

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::fmt;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use mesh::{PartyId, Threshold};
use mesh_net::SessionId;
use models::Sampler;
use models::secure::PartyModel;

use crate::server::{Host, MeshView, Server, ServerSettings};
use crate::session::wire::{Control, Reply, SessionKey};
use crate::session::{
    ClientIo, ClientToken, Failure, FrameError, Frames, Generated, Generation, PartyIo, Peer,
    QuorumInfo, SessionError,
};

/// (sender, stream, round): one frame per sender per round.
type Key = (Peer, SessionId, u64);

/// The frames waiting for one receiver.
#[derive(Default)]
struct Mailbox {
    frames: Mutex<HashMap<Key, Vec<u8>>>,
    arrived: Condvar,
}

impl Mailbox {
    fn lock(&self) -> MutexGuard<'_, HashMap<Key, Vec<u8>>> {
        self.frames.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Numbered frames between the threads of one process.
#[derive(Default)]
pub struct Router {
    boxes: HashMap<Peer, Mailbox>,
    ended: Mutex<HashSet<SessionId>>,
}

impl fmt::Debug for Router {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Router")
            .field("endpoints", &self.boxes.len())
            .finish_non_exhaustive()
    }
}

impl Router {
    /// A router between `n` parties and one client.
    pub fn new(n: usize) -> Arc<Router> {
        let boxes = PartyId::all(n)
            .map(Peer::Party)
            .chain([Peer::Client])
            .map(|p| (p, Mailbox::default()))
            .collect();
        Arc::new(Router {
            boxes,
            ended: Mutex::new(HashSet::new()),
        })
    }

    fn mailbox(&self, of: Peer) -> Result<&Mailbox, FrameError> {
        self.boxes
            .get(&of)
            .ok_or_else(|| FrameError::Gone(format!("{of} is not part of this mesh")))
    }

    fn send(
        &self,
        from: Peer,
        to: Peer,
        key: (SessionId, u64),
        payload: Vec<u8>,
    ) -> Result<(), FrameError> {
        if self
            .ended
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&key.0)
        {
            return Ok(());
        }
        let mb = self.mailbox(to)?;
        mb.lock().insert((from, key.0, key.1), payload);
        mb.arrived.notify_all();
        Ok(())
    }

    fn recv(&self, me: Peer, key: Key, deadline: Instant) -> Result<Vec<u8>, FrameError> {
        let mb = self.mailbox(me)?;
        let mut frames = mb.lock();
        loop {
            if let Some(m) = frames.remove(&key) {
                return Ok(m);
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(FrameError::Timeout);
            }
            frames = match mb.arrived.wait_timeout(frames, deadline - now) {
                Ok((g, _)) => g,
                Err(p) => p.into_inner().0,
            };
        }
    }

    fn end(&self, session: SessionId) {
        self.ended
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(session);
        for mb in self.boxes.values() {
            mb.lock().retain(|k, _| k.1 != session);
        }
    }
}

/// The stall reports parties send the client.
type Notices = Arc<Mutex<Vec<Failure>>>;

/// One endpoint's view of the router.
#[derive(Clone, Debug)]
pub struct MemFrames {
    router: Arc<Router>,
    me: Peer,
    notices: Notices,
}

impl Frames for MemFrames {
    fn send(
        &self,
        to: Peer,
        session: SessionId,
        round: u64,
        payload: Vec<u8>,
    ) -> Result<(), FrameError> {
        self.router.send(self.me, to, (session, round), payload)
    }

    fn recv(
        &self,
        from: Peer,
        session: SessionId,
        round: u64,
        deadline: Instant,
    ) -> Result<Vec<u8>, FrameError> {
        self.router.recv(self.me, (from, session, round), deadline)
    }

    fn end(&self, session: SessionId) {
        self.router.end(session)
    }
}

impl PartyIo for MemFrames {
    fn tell_client(&self, msg: Control) {
        if let (
            Control::Stalled {
                party,
                epoch,
                reason,
                ..
            },
            Ok(mut n),
        ) = (msg, self.notices.lock())
        {
            n.push(Failure::Stalled {
                party,
                epoch,
                reason,
            });
        }
    }
}

/// The one client of an in-memory mesh.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemClient;

impl fmt::Display for MemClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the in-memory client")
    }
}

/// A party's host in an in-memory mesh: every other party is always connected.
#[derive(Clone, Debug)]
pub struct MemHost {
    frames: MemFrames,
}

impl Host for MemHost {
    type Client = MemClient;
    type Io = MemFrames;
    // The router delivers to every party and binds nothing: nothing can fail.
    type Error = Infallible;

    fn session_io(&self, _client: &MemClient) -> Arc<MemFrames> {
        Arc::new(self.frames.clone())
    }

    fn missing(&self, _wanted: &[PartyId], _wait: Duration) -> Result<Vec<PartyId>, Infallible> {
        Ok(Vec::new())
    }

    fn bind_client(&self, _session: SessionId, _client: &MemClient) -> Result<(), Infallible> {
        Ok(())
    }

    fn end(&self, session: SessionId) {
        self.frames.router.end(session)
    }

    fn view(&self) -> MeshView {
        MeshView {
            peer: format!("in-memory {}", describe(self.frames.me)),
            ..MeshView::default()
        }
    }
}

fn describe(p: Peer) -> String {
    p.to_string()
}

/// The client of an in-memory mesh: its control messages call the servers directly.
#[derive(Debug)]
pub struct MemClientIo {
    frames: MemFrames,
    servers: Vec<Arc<Server<MemHost>>>,
}

crate::frames_via!(MemClientIo, frames);

impl ClientIo for MemClientIo {
    fn control(&self, party: PartyId, msg: &Control) -> Result<Reply, FrameError> {
        let server = self
            .servers
            .get(party.index())
            .ok_or_else(|| FrameError::Gone(format!("party {party} is not part of this mesh")))?;
        Ok(server.handle(MemClient, None, msg.clone()))
    }

    fn failures(&self, _key: &SessionKey) -> Vec<Failure> {
        self.frames
            .notices
            .lock()
            .map(|mut n| std::mem::take(&mut *n))
            .unwrap_or_default()
    }
}

/// An in-memory mesh: one server per party model, and the client's I/O.
#[derive(Debug)]
pub struct MemMesh {
    /// The client's I/O.
    pub client: MemClientIo,
    /// What the client knows of the quorum.
    pub quorum: QuorumInfo,
}

impl MemMesh {
    /// A mesh serving `parties` (party `i + 1`'s model at `i`) with `settings`.
    pub fn new(
        parties: &[Arc<PartyModel>],
        th: Threshold,
        settings: &ServerSettings,
    ) -> Result<MemMesh, SessionError> {
        let first = parties
            .first()
            .ok_or_else(|| SessionError::Request("no party models".into()))?;
        let router = Router::new(th.n());
        let notices = Notices::default();
        let servers = parties
            .iter()
            .enumerate()
            .map(|(i, model)| {
                let frames = MemFrames {
                    router: Arc::clone(&router),
                    me: Peer::Party(PartyId::from_index(i)?),
                    notices: Arc::clone(&notices),
                };
                Server::new(MemHost { frames }, Arc::clone(model), th, settings.clone())
            })
            .collect::<Result<Vec<_>, _>>()?;
        let h = first.header();
        let quorum = QuorumInfo {
            th,
            parties: PartyId::all(parties.len()).collect(),
            model_sha256: h.model_sha256,
            provisioning_id: h.provisioning_id,
            vocab_size: first.config().vocab_size,
        };
        let client = MemClientIo {
            frames: MemFrames {
                router,
                me: Peer::Client,
                notices,
            },
            servers,
        };
        Ok(MemMesh { client, quorum })
    }

    /// One private generation on this mesh (see [`crate::session::generate`]).
    pub fn generate(
        &self,
        generation: Generation,
        prompt: &[u32],
        sampler: &mut Sampler,
        on_token: impl FnMut(&ClientToken),
    ) -> Result<Generated, SessionError> {
        crate::session::generate(
            &self.client,
            &self.quorum,
            generation,
            prompt,
            Duration::from_secs(60),
            sampler,
            on_token,
        )
    }
}
