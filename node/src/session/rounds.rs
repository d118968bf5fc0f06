//! A party's [`mesh::Transport`] for one epoch of a session, over any [`Frames`]: it sends
//! only to live parties, bounds every wait by the round deadline, and gives up at once when
//! the client pauses the session. A failed round says why in its [`MeshError`]
//! (`Link` with the peer and the transport's reason, or `Interrupted`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use mesh::{Endpoint, MeshError, PartyId, Transport};
use mesh_net::SessionId;

use super::control::SessionControl;
use super::io::{FrameError, Frames, Peer};

/// Longest single wait inside a round; between slices the party checks for a pause.
pub(crate) const RECV_SLICE: Duration = Duration::from_millis(100);

/// One epoch's round transport.
pub(crate) struct EpochTransport<F: Frames> {
    pub(crate) frames: Arc<F>,
    pub(crate) session: SessionId,
    pub(crate) n: usize,
    pub(crate) me: PartyId,
    pub(crate) live: Vec<bool>,
    pub(crate) epoch: u32,
    pub(crate) round: u64,
    pub(crate) round_timeout: Duration,
    pub(crate) control: Arc<SessionControl>,
}

fn link_error(to: PartyId, e: &FrameError) -> MeshError {
    MeshError::Link {
        peer: Endpoint::Party(to),
        reason: e.to_string(),
    }
}

impl<F: Frames> EpochTransport<F> {
    fn recv(&self, from: PartyId, round: u64, deadline: Instant) -> Result<Vec<u8>, MeshError> {
        loop {
            if self.control.interrupted(self.epoch) {
                return Err(MeshError::Interrupted);
            }
            let slice = (Instant::now() + RECV_SLICE).min(deadline);
            match self
                .frames
                .recv(Peer::Party(from), self.session, round, slice)
            {
                Ok(m) => return Ok(m),
                Err(FrameError::Timeout) if Instant::now() < deadline => {}
                Err(e) => return Err(link_error(from, &e)),
            }
        }
    }

    fn send_all(&self, round: u64, outgoing: Vec<Option<Vec<u8>>>) -> Result<(), MeshError> {
        for (j, msg) in outgoing.into_iter().enumerate() {
            // A party outside the live set is gone: nothing to send it.
            let Some(msg) = msg.filter(|_| self.live[j]) else {
                continue;
            };
            let to = PartyId::from_index(j)?;
            self.frames
                .send(Peer::Party(to), self.session, round, msg)
                .map_err(|e| link_error(to, &e))?;
        }
        Ok(())
    }
}

impl<F: Frames> Transport for EpochTransport<F> {
    fn parties(&self) -> usize {
        self.n
    }

    fn index(&self) -> usize {
        self.me.index()
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
        self.control.hang_if_frozen();
        if self.control.interrupted(self.epoch) {
            return Err(MeshError::Interrupted);
        }
        let round = self.round;
        self.round += 1;
        self.send_all(round, outgoing)?;
        let deadline = Instant::now() + self.round_timeout;
        let mut incoming = Vec::with_capacity(self.n);
        for (j, &want) in expect.iter().enumerate() {
            incoming.push(if want {
                Some(self.recv(PartyId::from_index(j)?, round, deadline)?)
            } else {
                None
            });
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
