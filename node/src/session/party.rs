//! One party's side of a private generation, written once over [`PartyIo`]: the node daemon,
//! `sotto demo` (over libp2p or in memory) and the tests all run [`PartySession::run`].
//!
//! The party runs the units of the [`Generation`] in order: a unit's input is a client input
//! (prompt tokens; sampled tokens) or the previous unit's one-hot row (argmax inside MPC); its
//! forward pass runs on the party's weight shares; from the prompt's last unit on, its output
//! goes to the client. It keeps the starting shares of recent units (checkpoints) to redo them
//! after a recovery. When a round fails it stops, tells the client, and waits for an order.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mesh::{Endpoint, MeshError, Party, PartyId, Share, Threshold};
use models::secure::{PartyModel, SecureEngine, SecureError};
use tracing::{debug, info, warn};

use super::SessionError;
use super::control::{Order, SessionControl};
use super::io::{FrameError, PartyIo, Peer};
use super::recovery::check_live;
use super::rounds::{EpochTransport, RECV_SLICE};
use super::wire::{
    Control, Selection, SessionRequest, SessionStats, Stream, decode_shares, encode_shares,
    frame_session, key_hex,
};

/// Units whose starting shares a party keeps for a redo.
const CHECKPOINTS: u32 = 16;

/// Everything a party's session thread needs.
pub struct PartySession<F: PartyIo> {
    /// What carries the session's frames.
    pub io: Arc<F>,
    /// Shared with the node's control handler.
    pub control: Arc<SessionControl>,
    /// This party's weight shares.
    pub model: Arc<PartyModel>,
    /// The quorum's `(n, t)`.
    pub th: Threshold,
    /// This party.
    pub party: PartyId,
    /// The client's request.
    pub request: SessionRequest,
    /// Longest wait for one round's message.
    pub round_timeout: Duration,
    /// Longest wait for the client's input or decision.
    pub recovery_timeout: Duration,
}

impl<F: PartyIo> std::fmt::Debug for PartySession<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartySession")
            .field("party", &self.party)
            .field("session", &key_hex(&self.request.key))
            .finish_non_exhaustive()
    }
}

/// How a party's session ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The client closed it after receiving every output.
    Closed,
    /// The client (or this party) gave it up.
    Aborted(String),
}

/// Why a unit did not complete.
enum UnitError {
    /// A round stopped (a peer failed, or the client paused): recoverable.
    Stalled(MeshError),
    /// Anything else.
    Fatal(SessionError),
}

fn engine_error(e: SecureError) -> UnitError {
    match e {
        SecureError::Mesh(m) => UnitError::Stalled(m),
        other => UnitError::Fatal(SessionError::Engine(other.to_string())),
    }
}

/// The mutable state of one running session.
struct Run<F: PartyIo> {
    engine: SecureEngine,
    checkpoints: BTreeMap<u32, Vec<Share>>,
    epoch: u32,
    party: Party<EpochTransport<F>>,
    unit: u32,
    stats: SessionStats,
    /// Preprocessing time of the epochs before the current one.
    prep_done: Duration,
    started: Instant,
}

impl<F: PartyIo> Run<F> {
    fn oldest(&self) -> u32 {
        self.checkpoints
            .keys()
            .next()
            .copied()
            .unwrap_or(self.unit)
            .min(self.unit)
    }
}

impl<F: PartyIo> PartySession<F> {
    /// Runs the generation to its end; never panics on network input.
    pub fn run(self) -> Outcome {
        let key = key_hex(&self.request.key);
        match self.run_units() {
            Ok(o) => {
                info!(session = %key, outcome = ?o, "session ended");
                o
            }
            Err(e) => {
                let reason = e.to_string();
                warn!(session = %key, %reason, "session failed");
                self.control.update(|p| {
                    p.fatal = Some(reason.clone());
                    p.stopped = true;
                });
                Outcome::Aborted(reason)
            }
        }
    }

    fn run_units(&self) -> Result<Outcome, SessionError> {
        let live = self.request.participants.clone();
        let mut run = Run {
            engine: SecureEngine::new(Arc::clone(&self.model)),
            checkpoints: BTreeMap::new(),
            epoch: 0,
            party: self.new_party(0, &live)?,
            unit: 0,
            stats: SessionStats::default(),
            prep_done: Duration::ZERO,
            started: Instant::now(),
        };
        let units = self.request.generation.units();
        loop {
            let stop = if run.unit < units {
                let (at, oldest) = (run.unit, run.oldest());
                self.control.update(|p| {
                    p.at = at;
                    p.oldest = oldest;
                });
                match self.run_unit(&mut run) {
                    Ok(()) => {
                        self.advance(&mut run);
                        continue;
                    }
                    Err(UnitError::Fatal(e)) => return Err(e),
                    Err(UnitError::Stalled(cause)) => Some(cause),
                }
            } else {
                None
            };
            if let Some(outcome) = self.stop(&mut run, stop)? {
                return Ok(outcome);
            }
        }
    }

    /// Moves past a completed unit and drops checkpoints too old to be redone.
    fn advance(&self, run: &mut Run<F>) {
        run.unit += 1;
        if run.unit == self.request.generation.units() {
            run.stats.busy_us = run.started.elapsed().as_micros() as u64;
        }
        while run
            .checkpoints
            .keys()
            .next()
            .is_some_and(|&k| k + CHECKPOINTS <= run.unit)
        {
            run.checkpoints.pop_first();
        }
    }

    fn new_party(
        &self,
        epoch: u32,
        live: &[PartyId],
    ) -> Result<Party<EpochTransport<F>>, SessionError> {
        let n = self.th.n();
        let mut mask = vec![false; n];
        for p in live {
            if let Some(m) = mask.get_mut(p.index()) {
                *m = true;
            }
        }
        let transport = EpochTransport {
            frames: Arc::clone(&self.io),
            session: frame_session(&self.request.key, Stream::Rounds(epoch)),
            n,
            me: self.party,
            live: mask,
            epoch,
            round: 0,
            round_timeout: self.round_timeout,
            control: Arc::clone(&self.control),
        };
        let mut p = Party::with_os_rng(self.th, self.party.index(), transport)?;
        let active: Vec<usize> = live
            .iter()
            .take(2 * self.th.t() + 1)
            .map(|p| p.index())
            .collect();
        p.set_active(&active)?;
        Ok(p)
    }

    /// The session stopped (`cause` is the failed round; `None` once every unit is done):
    /// report, warn the client when a peer failed, and carry out the client's order.
    /// `Some(outcome)` ends the session.
    fn stop(
        &self,
        run: &mut Run<F>,
        cause: Option<MeshError>,
    ) -> Result<Option<Outcome>, SessionError> {
        let units = self.request.generation.units();
        if let Some(c) = &cause {
            debug!(unit = run.unit, cause = %c, "unit stopped");
        }
        run.stats.add(&run.party.counters());
        let prep = run.prep_done + run.party.preprocessing_time();
        let (at, oldest, epoch) = (run.unit, run.oldest(), run.epoch);
        let mut stats = run.stats;
        stats.epochs = epoch + 1;
        stats.prep_us = prep.as_micros() as u64;
        self.control.update(|p| {
            p.at = at;
            p.oldest = oldest;
            p.stopped = true;
            p.stats = stats;
        });
        if let Some(MeshError::Link { peer, reason }) = &cause {
            self.warn_client(run, *peer, reason);
        }
        match self.control.next_order(self.recovery_timeout) {
            // Finished, and the client did not close: it has what it needs.
            None if run.unit >= units => Ok(Some(Outcome::Closed)),
            None => Err(SessionError::NoDecision {
                limit: self.recovery_timeout,
                unit: run.unit,
            }),
            Some(Order::Close) => Ok(Some(Outcome::Closed)),
            Some(Order::Abort(reason)) => Ok(Some(Outcome::Aborted(reason))),
            Some(Order::Resume { epoch, live, redo }) => {
                self.resume(run, epoch, &live, redo)?;
                Ok(None)
            }
        }
    }

    /// A failure this party saw itself: ask the client to recover.
    fn warn_client(&self, run: &Run<F>, peer: Endpoint, reason: &str) {
        let lost = peer.to_string();
        warn!(session = %key_hex(&self.request.key), epoch = run.epoch, unit = run.unit, %lost, %reason, "round failed; asking the client to recover");
        self.io.tell_client(Control::Stalled {
            key: self.request.key,
            party: self.party,
            epoch: run.epoch,
            reason: format!("{lost}: {reason}"),
        });
    }

    /// Rolls back to unit `redo` and continues in `epoch` with `live`.
    fn resume(
        &self,
        run: &mut Run<F>,
        epoch: u32,
        live: &[PartyId],
        redo: u32,
    ) -> Result<(), SessionError> {
        // Again here, not only in the control handler: whatever hands this thread an order,
        // an index outside the session must never reach the transport.
        check_live(live, &self.request.participants, self.th)?;
        let g = &self.request.generation;
        if !run.checkpoints.contains_key(&redo) && !g.client_input(redo) {
            return Err(SessionError::NoCheckpoint(redo));
        }
        if redo > run.unit {
            return Err(SessionError::SkipAhead { redo, at: run.unit });
        }
        info!(session = %key_hex(&self.request.key), epoch, redo, live = ?live, "resuming");
        run.engine.truncate(redo as usize);
        // Later rows are recomputed; client inputs were received once and stay valid.
        run.checkpoints
            .retain(|&k, _| k <= redo || g.client_input(k));
        let old = frame_session(&self.request.key, Stream::Rounds(run.epoch));
        self.io.end(old);
        run.prep_done += run.party.preprocessing_time();
        run.party = self.new_party(epoch, live)?;
        run.epoch = epoch;
        run.unit = redo;
        self.control.update(|p| {
            p.epoch = epoch;
            p.at = redo;
            p.stopped = false;
        });
        Ok(())
    }

    /// Receives the client's input for unit `u`.
    fn client_input(&self, u: u32, epoch: u32) -> Result<Vec<Share>, UnitError> {
        let session = frame_session(&self.request.key, Stream::Input);
        let vocab = self.model.config().vocab_size;
        // The client sends every prompt input at once and each sampled token right after
        // its output, so a long wait means the client is gone or the session is paused.
        let deadline = Instant::now() + self.recovery_timeout;
        loop {
            if self.control.interrupted(epoch) {
                return Err(UnitError::Stalled(MeshError::Interrupted));
            }
            let slice = (Instant::now() + RECV_SLICE).min(deadline);
            match self.io.recv(Peer::Client, session, u64::from(u), slice) {
                Ok(bytes) => {
                    // Wiped once parsed: they are shares of the prompt.
                    let bytes = zeroize::Zeroizing::new(bytes);
                    return decode_shares(&bytes, vocab, "the client")
                        .map_err(|e| UnitError::Fatal(e.into()));
                }
                Err(FrameError::Timeout) if Instant::now() < deadline => {}
                Err(e) => return Err(UnitError::Fatal(SessionError::NoInput(e))),
            }
        }
    }

    /// The shares unit `run.unit` starts from.
    fn unit_input(&self, run: &mut Run<F>) -> Result<Vec<Share>, UnitError> {
        let unit = run.unit;
        if let Some(x) = run.checkpoints.get(&unit) {
            return Ok(x.clone());
        }
        if !self.request.generation.client_input(unit) {
            return Err(UnitError::Fatal(SessionError::NoCheckpoint(unit)));
        }
        let x = self.client_input(unit, run.epoch)?;
        run.checkpoints.insert(unit, x.clone());
        Ok(x)
    }

    /// One unit: its forward pass and, from the prompt's last unit on, its output.
    fn run_unit(&self, run: &mut Run<F>) -> Result<(), UnitError> {
        if self.control.interrupted(run.epoch) {
            return Err(UnitError::Stalled(MeshError::Interrupted));
        }
        let g = self.request.generation;
        let unit = run.unit;
        let input = self.unit_input(run)?;
        let wants_logits = unit >= g.first_output();
        let logits = run
            .engine
            .forward(&mut run.party, &input, wants_logits)
            .map_err(engine_error)?;
        if !wants_logits {
            return Ok(());
        }
        let logits = logits.ok_or(UnitError::Fatal(SessionError::Engine(
            "forward pass returned no logits".into(),
        )))?;
        let mut out = Vec::with_capacity(g.output_len(logits.len()));
        if g.opens_logits() {
            out.extend_from_slice(&logits);
        }
        if g.selection == Selection::ArgmaxInMpc {
            let (row, index) = run
                .party
                .argmax_onehot(&logits)
                .map_err(SecureError::from)
                .map_err(engine_error)?;
            out.push(index);
            if unit + 1 < g.units() {
                run.checkpoints.insert(unit + 1, row);
            }
        }
        let session = frame_session(&self.request.key, Stream::Output(run.epoch));
        self.io
            .send(Peer::Client, session, u64::from(unit), encode_shares(&out))
            .map_err(|e| UnitError::Fatal(SessionError::Output(e)))
    }
}
