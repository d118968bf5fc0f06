//! The blocking face of the mesh for MPC protocol code, which runs on plain OS threads:
//! [`NetTransport`] implements [`mesh::Transport`] for a party, [`NetClientLink`] implements
//! [`mesh::ClientLink`] for the client.
//!
//! The bridge is the event loop's tokio channels. A send hands the frame over with
//! `blocking_send` and returns (delivery problems are logged and surface at the receiver as a
//! timeout or a disconnect). A receive sends a request carrying a oneshot reply channel and a
//! deadline, then parks on `blocking_recv`; the event loop answers at once from its buffer,
//! when the frame arrives, or with [`NetError::Timeout`] at the deadline. The protocol thread
//! never polls and never touches the swarm.
//!
//! Never call these from an async task: tokio panics when a runtime thread blocks. Use
//! `std::thread::spawn` or `tokio::task::spawn_blocking`.
//!
//! Indexing: the [`mesh::Transport`] API counts parties from 0; this file turns each index into
//! a [`PartyId`] once, and the frame carries its 1-based number ([`crate::frame::wire_number`]).

use std::time::{Duration, Instant};

use tokio::sync::oneshot;
use tracing::warn;

use crate::api::Command;
use crate::error::NetError;
use crate::frame::{FrameError, LENGTH_PREFIX_BYTES, SessionId};
use crate::handle::NetHandle;
use mesh::{ClientLink, Transport};
use mesh::{Endpoint, MeshError, PartyId};

/// How long one receive waits by default (the in-memory transport's default too).
pub const DEFAULT_RECV_TIMEOUT: Duration = Duration::from_secs(60);

/// Traffic counters (frame bytes include the length prefix and the frame header).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetStats {
    /// Frames handed to the network.
    pub frames_sent: u64,
    /// Their bytes on the wire.
    pub bytes_sent: u64,
    /// Frames received.
    pub frames_received: u64,
    /// Payload bytes received.
    pub payload_bytes_received: u64,
}

/// The blocking round API both endpoints share.
#[derive(Debug)]
struct Rounds {
    handle: NetHandle,
    stats: NetStats,
}

impl Rounds {
    fn send(
        &mut self,
        to: Endpoint,
        session: SessionId,
        round: u64,
        payload: Vec<u8>,
    ) -> Result<(), NetError> {
        let frame = self.handle.make_frame(session, round, payload)?;
        let bytes = frame.encoded_len()? + LENGTH_PREFIX_BYTES;
        self.handle
            .commands
            .blocking_send(Command::Send { to, frame })
            .map_err(|_| NetError::Shutdown)?;
        self.stats.frames_sent += 1;
        self.stats.bytes_sent += bytes as u64;
        Ok(())
    }

    fn recv(
        &mut self,
        from: Endpoint,
        session: SessionId,
        round: u64,
        deadline: Instant,
    ) -> Result<Vec<u8>, NetError> {
        let (reply, response) = oneshot::channel();
        self.handle
            .commands
            .blocking_send(Command::Recv {
                from,
                session,
                round,
                deadline,
                reply,
            })
            .map_err(|_| NetError::Shutdown)?;
        let payload = response.blocking_recv().map_err(|_| NetError::Shutdown)??;
        self.stats.frames_received += 1;
        self.stats.payload_bytes_received += payload.len() as u64;
        Ok(payload)
    }

    fn end_session(&self, session: SessionId) -> Result<(), NetError> {
        self.handle
            .commands
            .blocking_send(Command::EndSession { session })
            .map_err(|_| NetError::Shutdown)
    }
}

/// Maps a network failure onto the engine's error. `MeshError` is `Clone + Eq` and carries no
/// source, so the details are logged here.
fn to_mesh(e: NetError, who: Endpoint) -> MeshError {
    match e {
        NetError::Timeout { .. } => MeshError::Timeout(who),
        NetError::Frame(FrameError::TooLarge { .. }) => {
            warn!(peer = %who, error = %e, "message not sent");
            MeshError::InvalidArgument("message above the mesh's max_frame_bytes")
        }
        other => {
            warn!(peer = %who, error = %other, "link failed");
            MeshError::Disconnected(who)
        }
    }
}

/// The party at 0-based index `j` of an `n`-party quorum.
fn party_at(j: usize, n: usize) -> Result<PartyId, MeshError> {
    if j >= n {
        return Err(MeshError::PartyOutOfRange { index: j, n });
    }
    Ok(PartyId::from_index(j)?)
}

/// A party's [`Transport`] over the mesh, for one session at a time.
///
/// Round numbers count [`Transport::exchange`] calls within the session; client messages
/// count separately in each direction, so both sides agree on them without negotiation.
#[derive(Debug)]
pub struct NetTransport {
    rounds: Rounds,
    party: PartyId,
    n: u8,
    session: SessionId,
    round: u64,
    client_in: u64,
    client_out: u64,
    recv_timeout: Duration,
}

impl NetTransport {
    /// A transport for this node's party in `session`; fails for an observer. `n` is taken
    /// from the node's share summary.
    pub fn new(handle: NetHandle, session: SessionId) -> Result<Self, NetError> {
        let party = handle.local_party.ok_or(NetError::NotAParty)?;
        let n = handle.n;
        Ok(NetTransport {
            rounds: Rounds {
                handle,
                stats: NetStats::default(),
            },
            party,
            n,
            session,
            round: 0,
            client_in: 0,
            client_out: 0,
            recv_timeout: DEFAULT_RECV_TIMEOUT,
        })
    }

    /// How long each receive waits (default [`DEFAULT_RECV_TIMEOUT`]).
    pub fn set_recv_timeout(&mut self, timeout: Duration) {
        self.recv_timeout = timeout;
    }

    /// Ends the current session (its unclaimed frames are dropped) and starts `session` at
    /// round 0.
    pub fn begin_session(&mut self, session: SessionId) -> Result<(), NetError> {
        self.rounds.end_session(self.session)?;
        self.session = session;
        self.round = 0;
        self.client_in = 0;
        self.client_out = 0;
        Ok(())
    }

    /// The current session.
    pub fn session(&self) -> SessionId {
        self.session
    }

    /// This node's party.
    pub fn party(&self) -> PartyId {
        self.party
    }

    /// Sends one round's message to `to`. Returns once the event loop has it.
    pub fn send_round(
        &mut self,
        to: Endpoint,
        round: u64,
        payload: Vec<u8>,
    ) -> Result<(), NetError> {
        self.rounds.send(to, self.session, round, payload)
    }

    /// Receives `from`'s message of `round`, waiting until `deadline`.
    pub fn recv_round(
        &mut self,
        from: Endpoint,
        round: u64,
        deadline: Instant,
    ) -> Result<Vec<u8>, NetError> {
        self.rounds.recv(from, self.session, round, deadline)
    }

    /// Traffic so far.
    pub fn stats(&self) -> NetStats {
        self.rounds.stats
    }
}

impl Transport for NetTransport {
    fn parties(&self) -> usize {
        usize::from(self.n)
    }

    fn index(&self) -> usize {
        self.party.index()
    }

    fn exchange(
        &mut self,
        outgoing: Vec<Option<Vec<u8>>>,
        expect: &[bool],
    ) -> Result<Vec<Option<Vec<u8>>>, MeshError> {
        let n = self.parties();
        if outgoing.len() != n || expect.len() != n {
            return Err(MeshError::LengthMismatch {
                what: "exchange arguments (one entry per party)",
                expected: n,
                got: outgoing.len().min(expect.len()),
            });
        }
        let round = self.round;
        self.round += 1;
        // All sends first: peers wait on each other, and the frames travel concurrently.
        for (j, msg) in outgoing.into_iter().enumerate() {
            if let Some(msg) = msg {
                let to = Endpoint::Party(party_at(j, n)?);
                self.send_round(to, round, msg)
                    .map_err(|e| to_mesh(e, to))?;
            }
        }
        let mut incoming = Vec::with_capacity(n);
        for (j, &expected) in expect.iter().enumerate() {
            if expected {
                let from = Endpoint::Party(party_at(j, n)?);
                let deadline = Instant::now() + self.recv_timeout;
                let msg = self
                    .recv_round(from, round, deadline)
                    .map_err(|e| to_mesh(e, from))?;
                incoming.push(Some(msg));
            } else {
                incoming.push(None);
            }
        }
        Ok(incoming)
    }

    fn send_to_client(&mut self, msg: Vec<u8>) -> Result<(), MeshError> {
        let round = self.client_out;
        self.client_out += 1;
        self.rounds
            .send(Endpoint::Client, self.session, round, msg)
            .map_err(|e| to_mesh(e, Endpoint::Client))
    }

    fn recv_from_client(&mut self) -> Result<Vec<u8>, MeshError> {
        let round = self.client_in;
        self.client_in += 1;
        let deadline = Instant::now() + self.recv_timeout;
        self.rounds
            .recv(Endpoint::Client, self.session, round, deadline)
            .map_err(|e| to_mesh(e, Endpoint::Client))
    }
}

/// The client's [`ClientLink`] to the parties over the mesh, for one session.
///
/// The client is an observer node (no party index); the first frame it sends in a session
/// makes each party route that session's replies back to it.
#[derive(Debug)]
pub struct NetClientLink {
    rounds: Rounds,
    session: SessionId,
    sent: Vec<u64>,
    received: Vec<u64>,
    recv_timeout: Duration,
}

impl NetClientLink {
    /// A link for `session` to the `n` parties of this node's share summary.
    pub fn new(handle: NetHandle, session: SessionId) -> Self {
        let n = usize::from(handle.n);
        NetClientLink {
            rounds: Rounds {
                handle,
                stats: NetStats::default(),
            },
            session,
            sent: vec![0; n],
            received: vec![0; n],
            recv_timeout: DEFAULT_RECV_TIMEOUT,
        }
    }

    /// How long each receive waits (default [`DEFAULT_RECV_TIMEOUT`]).
    pub fn set_recv_timeout(&mut self, timeout: Duration) {
        self.recv_timeout = timeout;
    }

    /// Traffic so far.
    pub fn stats(&self) -> NetStats {
        self.rounds.stats
    }
}

impl ClientLink for NetClientLink {
    fn parties(&self) -> usize {
        self.sent.len()
    }

    fn send_to_party(&mut self, party: usize, msg: Vec<u8>) -> Result<(), MeshError> {
        let n = self.parties();
        let to = Endpoint::Party(party_at(party, n)?);
        let round = self.sent[party];
        self.sent[party] += 1;
        self.rounds
            .send(to, self.session, round, msg)
            .map_err(|e| to_mesh(e, to))
    }

    fn recv_from_party(&mut self, party: usize) -> Result<Vec<u8>, MeshError> {
        let n = self.parties();
        let from = Endpoint::Party(party_at(party, n)?);
        let round = self.received[party];
        self.received[party] += 1;
        let deadline = Instant::now() + self.recv_timeout;
        self.rounds
            .recv(from, self.session, round, deadline)
            .map_err(|e| to_mesh(e, from))
    }
}
