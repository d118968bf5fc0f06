//! The client's side of a private generation, written once over [`ClientIo`]: `sotto ask`,
//! `sotto demo` (over libp2p or in memory) and the tests all run [`generate`].
//!
//! The client opens the session with every party it reaches, shares the prompt's tokens as
//! one-hot rows, and reconstructs each output from the shares of the live parties (checking
//! that all of them lie on one polynomial). When something fails it follows the
//! [`recovery`](super::recovery) planner: pause, collect reports, resume the survivors.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use mesh::{Fp, PartyId, Share, Threshold, fx};
use models::Sampler;
use rand::RngCore;
use tracing::{debug, info, warn};

use super::SessionError;
use super::io::{ClientIo, FrameError, Peer};
use super::recovery::{Directive, PauseAnswer, SessionState, after_failure, after_pause};
use super::rounds::RECV_SLICE;
use super::wire::{
    Control, Generation, Reply, SessionKey, SessionRequest, SessionStats, Stream, decode_shares,
    encode_shares, frame_session, key_hex,
};

/// What the client knows of the quorum before it asks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuorumInfo {
    /// `(n, t)`.
    pub th: Threshold,
    /// The parties it reaches (sorted).
    pub parties: Vec<PartyId>,
    /// sha256 of the model file.
    pub model_sha256: [u8; 32],
    /// The provisioning run.
    pub provisioning_id: [u8; 16],
    /// The model's vocabulary size.
    pub vocab_size: usize,
}

/// What the client learns of one generated token.
#[derive(Clone, Debug, PartialEq)]
pub struct ClientToken {
    /// The token id.
    pub id: u32,
    /// The step's logits in real units, when the session reveals them.
    pub logits: Option<Vec<f32>>,
}

/// What a finished generation reports.
#[derive(Clone, Debug)]
pub struct Generated {
    /// The generated tokens.
    pub ids: Vec<u32>,
    /// From the session's start to the last token.
    pub wall: Duration,
    /// From the session's start to the first token.
    pub first_token: Duration,
    /// Each party's traffic, from those that closed the session.
    pub stats: Vec<(PartyId, SessionStats)>,
    /// Epochs the session went through.
    pub epochs: u32,
    /// The parties that started.
    pub participants: Vec<PartyId>,
    /// The parties live at the end.
    pub final_live: Vec<PartyId>,
}

/// The client's side of one session.
struct ClientSession<'a, C: ClientIo> {
    io: &'a C,
    key: SessionKey,
    th: Threshold,
    vocab: usize,
    live: Vec<PartyId>,
    /// (epoch, first unit it computes).
    epochs: Vec<(u32, u32)>,
    stall_timeout: Duration,
    recoveries: u32,
}

/// One private generation: opens the session with `quorum.parties`, shares `prompt`, and
/// calls `on_token` as each token is reconstructed. `sampler` chooses tokens when the
/// generation samples at the client. A party that stays silent for `stall_timeout` (or fails)
/// starts a recovery.
pub fn generate<C: ClientIo>(
    io: &C,
    quorum: &QuorumInfo,
    generation: Generation,
    prompt: &[u32],
    stall_timeout: Duration,
    sampler: &mut Sampler,
    mut on_token: impl FnMut(&ClientToken),
) -> Result<Generated, SessionError> {
    check_prompt(quorum, generation, prompt)?;
    let mut session = ClientSession {
        io,
        key: fresh_key(),
        th: quorum.th,
        vocab: quorum.vocab_size,
        live: quorum.parties.clone(),
        epochs: vec![(0, 0)],
        stall_timeout,
        recoveries: 0,
    };
    session.open_when_free(quorum, generation)?;
    let started = Instant::now();
    for (i, &tok) in prompt.iter().enumerate() {
        session.send_input(i as u32, tok);
    }
    let mut ids = Vec::with_capacity(generation.steps as usize);
    let mut first_token = None;
    for unit in generation.first_output()..generation.units() {
        let tok = session.token(generation, unit, sampler)?;
        first_token.get_or_insert_with(|| started.elapsed());
        ids.push(tok.id);
        on_token(&tok);
    }
    let wall = started.elapsed();
    let stats = session.close();
    Ok(Generated {
        ids,
        wall,
        first_token: first_token.unwrap_or(wall),
        stats,
        epochs: session.current_epoch() + 1,
        participants: quorum.parties.clone(),
        final_live: session.live.clone(),
    })
}

/// How long a client keeps asking while parties answer busy (a party refuses at once beyond
/// its `max_sessions` rather than queueing; see docs/session.md).
const BUSY_PATIENCE: Duration = Duration::from_secs(120);
/// The first wait after a busy answer; it doubles up to [`BUSY_MAX_WAIT`].
const BUSY_FIRST_WAIT: Duration = Duration::from_millis(200);
/// The longest wait between two attempts.
const BUSY_MAX_WAIT: Duration = Duration::from_secs(5);

fn fresh_key() -> SessionKey {
    let mut key: SessionKey = [0; 16];
    rand::rngs::OsRng.fill_bytes(&mut key);
    key
}

/// A wait of 0.5 to 1.5 times `base`: two clients refused at the same moment must not come
/// back at the same moment again.
fn jittered(base: Duration) -> Duration {
    base.mul_f64(0.5 + rand::random::<f64>())
}

fn check_prompt(q: &QuorumInfo, g: Generation, prompt: &[u32]) -> Result<(), SessionError> {
    if prompt.len() != g.prompt_len as usize {
        return Err(SessionError::Request(format!(
            "the prompt has {} tokens, the request says {}",
            prompt.len(),
            g.prompt_len
        )));
    }
    if let Some(bad) = prompt.iter().find(|&&t| t as usize >= q.vocab_size) {
        return Err(SessionError::Request(format!(
            "token {bad} is outside the vocabulary of {}",
            q.vocab_size
        )));
    }
    if q.parties.len() < 2 * q.th.t() + 1 {
        return Err(SessionError::Request(format!(
            "{} parties reached, a (n={}, t={}) quorum needs {}",
            q.parties.len(),
            q.th.n(),
            q.th.t(),
            2 * q.th.t() + 1
        )));
    }
    Ok(())
}

impl<C: ClientIo> ClientSession<'_, C> {
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

    /// Sends `msg` to every party of `parties` at once; their replies in party order.
    fn broadcast(
        &self,
        parties: &[PartyId],
        msg: &Control,
    ) -> Vec<(PartyId, Result<Reply, FrameError>)> {
        std::thread::scope(|s| {
            let asks: Vec<_> = parties
                .iter()
                .map(|&p| (p, s.spawn(move || self.io.control(p, msg))))
                .collect();
            asks.into_iter()
                .map(|(p, h)| {
                    let r = h.join().unwrap_or_else(|_| {
                        Err(FrameError::Failed("control thread panicked".into()))
                    });
                    (p, r)
                })
                .collect()
        })
    }

    /// Opens the session, trying again with backoff (and a fresh key) while parties answer
    /// busy, for at most [`BUSY_PATIENCE`].
    fn open_when_free(
        &mut self,
        q: &QuorumInfo,
        generation: Generation,
    ) -> Result<(), SessionError> {
        let started = Instant::now();
        let mut wait = BUSY_FIRST_WAIT;
        loop {
            match self.open(q, generation) {
                Err(SessionError::Busy { why, .. }) => {
                    let pause = jittered(wait);
                    if started.elapsed() + pause > BUSY_PATIENCE {
                        return Err(SessionError::Busy {
                            why,
                            waited: started.elapsed(),
                        });
                    }
                    info!(retry_in = ?pause, "{why}; trying again");
                    std::thread::sleep(pause);
                    wait = (wait * 2).min(BUSY_MAX_WAIT);
                    // The parties that accepted the last attempt may still be ending it.
                    self.key = fresh_key();
                }
                other => return other,
            }
        }
    }

    fn open(&self, q: &QuorumInfo, generation: Generation) -> Result<(), SessionError> {
        let req = SessionRequest {
            key: self.key,
            generation,
            participants: q.parties.clone(),
            model_sha256: q.model_sha256,
            provisioning_id: q.provisioning_id,
        };
        let mut busy = 0;
        let refused: Vec<String> = self
            .broadcast(&q.parties, &Control::Open(req))
            .into_iter()
            .filter_map(|(p, r)| match r {
                Ok(Reply::Accepted) => None,
                Ok(Reply::Busy(why)) => {
                    busy += 1;
                    Some(format!("party {p}: {why}"))
                }
                Ok(Reply::Rejected(why)) => Some(format!("party {p}: {why}")),
                Ok(other) => Some(format!("party {p}: unexpected answer {other:?}")),
                Err(e) => Some(format!("party {p}: {e}")),
            })
            .collect();
        if !refused.is_empty() {
            self.abort_all(&q.parties, "another party refused");
            let why = refused.join("; ");
            // Busy passes; any other refusal would come back on every attempt.
            return Err(if busy == refused.len() {
                SessionError::Busy {
                    why,
                    waited: Duration::ZERO,
                }
            } else {
                SessionError::Refused(why)
            });
        }
        info!(session = %key_hex(&self.key), parties = ?q.parties, "session open");
        Ok(())
    }

    /// Shares a one-hot row of `token` for unit `unit` with every live party.
    fn send_input(&self, unit: u32, token: u32) {
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
            let payload = encode_shares(&per_party[p.index()]);
            // A party that did not get its input stalls, and the recovery deals with it.
            if let Err(e) = self
                .io
                .send(Peer::Party(p), session, u64::from(unit), payload)
            {
                debug!(party = %p, error = %e, "input not sent");
            }
        }
    }

    /// The token of unit `unit` (and, for sampling at the client, the next unit's input).
    fn token(
        &mut self,
        g: Generation,
        unit: u32,
        sampler: &mut Sampler,
    ) -> Result<ClientToken, SessionError> {
        let vocab = self.vocab;
        let values = self.collect(unit, g.output_len(vocab))?;
        let logits: Option<Vec<f32>> = g.opens_logits().then(|| {
            values[..vocab]
                .iter()
                .map(|&v| fx::to_f32(i64::try_from(v).unwrap_or(0)))
                .collect()
        });
        let id = match g.selection {
            super::wire::Selection::ArgmaxInMpc => {
                let v = values[values.len() - 1];
                u32::try_from(v)
                    .ok()
                    .filter(|&i| (i as usize) < vocab)
                    .ok_or(SessionError::BadToken(v))?
            }
            super::wire::Selection::SampleAtClient => {
                let id = sampler.sample(logits.as_deref().unwrap_or_default());
                if unit + 1 < g.units() {
                    self.send_input(unit + 1, id);
                }
                id
            }
        };
        Ok(ClientToken { id, logits })
    }

    fn state(&self, unit: u32) -> SessionState {
        SessionState {
            th: self.th,
            epoch: self.current_epoch(),
            unit,
            live: self.live.clone(),
            recoveries: self.recoveries,
        }
    }

    /// Recovers if a failure was noticed; true if it did.
    fn check_failures(&mut self, unit: u32) -> Result<bool, SessionError> {
        for f in self.io.failures(&self.key) {
            match after_failure(&self.state(unit), &f) {
                Directive::Continue => {}
                Directive::Fail(why) => return Err(self.give_up(why)),
                _ => {
                    self.recover(&describe(&f), unit)?;
                    return Ok(true);
                }
            }
        }
        Ok(false)
    }

    /// Waits for unit `unit`'s output from every live party and reconstructs it.
    fn collect(&mut self, unit: u32, count: usize) -> Result<Vec<i128>, SessionError> {
        let mut got: BTreeMap<PartyId, Vec<Share>> = BTreeMap::new();
        let mut got_epoch = self.epoch_for(unit);
        let mut progress = Instant::now();
        loop {
            if self.check_failures(unit)? {
                progress = Instant::now();
            }
            let epoch = self.epoch_for(unit);
            if epoch != got_epoch {
                got.clear();
                got_epoch = epoch;
            }
            got.retain(|p, _| self.live.contains(p));
            let Some(&p) = self.live.iter().find(|p| !got.contains_key(p)) else {
                return reconstruct(self.th, &got);
            };
            let session = frame_session(&self.key, Stream::Output(epoch));
            let slice = Instant::now() + RECV_SLICE;
            match self
                .io
                .recv(Peer::Party(p), session, u64::from(unit), slice)
            {
                Ok(bytes) => {
                    let bytes = zeroize::Zeroizing::new(bytes);
                    got.insert(p, decode_shares(&bytes, count, &format!("party {p}"))?);
                    progress = Instant::now();
                }
                Err(FrameError::Timeout) if progress.elapsed() < self.stall_timeout => {}
                Err(FrameError::Timeout) => {
                    let why = format!(
                        "no output from party {p} for {} s",
                        self.stall_timeout.as_secs()
                    );
                    self.recover_or_fail(&why, unit)?;
                    progress = Instant::now();
                }
                Err(FrameError::Busy) => std::thread::sleep(Duration::from_millis(20)),
                Err(FrameError::Gone(_)) => {
                    self.recover_or_fail(&format!("party {p} disconnected"), unit)?;
                    progress = Instant::now();
                }
                Err(e) => return Err(SessionError::Frame(e)),
            }
        }
    }

    fn recover_or_fail(&mut self, why: &str, unit: u32) -> Result<(), SessionError> {
        if self.recoveries >= super::recovery::MAX_RECOVERIES {
            return Err(self.give_up(format!(
                "the generation stalled {} times; giving up (last problem: {why})",
                super::recovery::MAX_RECOVERIES
            )));
        }
        self.recover(why, unit)
    }

    fn give_up(&self, why: String) -> SessionError {
        self.abort_all(&self.live, "too many recoveries");
        SessionError::Failed(why)
    }

    /// Pauses the live parties, keeps those that answer and resumes them together.
    fn recover(&mut self, why: &str, unit: u32) -> Result<(), SessionError> {
        self.recoveries += 1;
        eprintln!("\n[sotto] {why}; recovering at token position {unit} ...");
        loop {
            let answers = self.pause_all();
            match after_pause(&self.state(unit), &answers) {
                Directive::Resume { epoch, live, redo } => {
                    if self.resume(epoch, live, redo) {
                        return Ok(());
                    }
                    self.recoveries += 1;
                    if self.recoveries > super::recovery::MAX_RECOVERIES {
                        return Err(self.give_up(format!(
                            "the generation stalled {} times; giving up (last problem: {why})",
                            super::recovery::MAX_RECOVERIES
                        )));
                    }
                }
                Directive::Fail(msg) => {
                    let answered: Vec<PartyId> = answers
                        .iter()
                        .filter(|(_, a)| matches!(a, PauseAnswer::Report(_)))
                        .map(|(p, _)| *p)
                        .collect();
                    self.abort_all(&answered, "the quorum was lost");
                    return Err(SessionError::Failed(format!("{msg} ({why})")));
                }
                Directive::Continue | Directive::Pause => return Ok(()),
            }
        }
    }

    fn pause_all(&self) -> Vec<(PartyId, PauseAnswer)> {
        let msg = Control::Pause {
            key: self.key,
            epoch: self.current_epoch(),
        };
        self.broadcast(&self.live, &msg)
            .into_iter()
            .map(|(p, r)| {
                let answer = match r {
                    Ok(Reply::Report(rep)) => {
                        if !rep.stopped && rep.fatal.is_none() {
                            warn!(party = %p, "party did not stop in time; leaving it out");
                        }
                        PauseAnswer::Report(rep)
                    }
                    Ok(other) => PauseAnswer::Silent(format!("unexpected answer {other:?}")),
                    Err(e) => PauseAnswer::Silent(e.to_string()),
                };
                (p, answer)
            })
            .collect()
    }

    /// Opens epoch `epoch` with `live` from unit `redo`; false if a survivor did not accept.
    fn resume(&mut self, epoch: u32, live: Vec<PartyId>, redo: u32) -> bool {
        self.epochs.push((epoch, redo));
        self.live = live.clone();
        let msg = Control::Resume {
            key: self.key,
            epoch,
            live: live.clone(),
            redo,
        };
        let mut all_ok = true;
        for (p, r) in self.broadcast(&live, &msg) {
            if !matches!(r, Ok(Reply::Ok)) {
                debug!(party = %p, ?r, "resume not accepted");
                all_ok = false;
            }
        }
        eprintln!(
            "[sotto] continuing with parties {live:?} (epoch {epoch}) from token position {redo}"
        );
        all_ok
    }

    fn abort_all(&self, parties: &[PartyId], reason: &str) {
        let msg = Control::Abort {
            key: self.key,
            reason: reason.to_owned(),
        };
        let _ = self.broadcast(parties, &msg);
    }

    /// Closes the session: every live party sends its stats and ends it.
    fn close(&self) -> Vec<(PartyId, SessionStats)> {
        let mut stats: Vec<(PartyId, SessionStats)> = self
            .broadcast(&self.live, &Control::Close { key: self.key })
            .into_iter()
            .filter_map(|(p, r)| match r {
                Ok(Reply::Closed(s)) => Some((p, s)),
                _ => None,
            })
            .collect();
        stats.sort_by_key(|(p, _)| *p);
        stats
    }
}

fn describe(f: &super::io::Failure) -> String {
    match f {
        super::io::Failure::Stalled { party, reason, .. } => {
            format!("party {party} reports a failed round ({reason})")
        }
        super::io::Failure::Disconnected(p) => format!("party {p} disconnected"),
    }
}

/// Reconstructs every output element from the live parties' shares, checking that all of
/// them lie on one degree-t polynomial.
fn reconstruct(
    th: Threshold,
    got: &BTreeMap<PartyId, Vec<Share>>,
) -> Result<Vec<i128>, SessionError> {
    let parties: Vec<(PartyId, &[Share])> = got.iter().map(|(p, v)| (*p, v.as_slice())).collect();
    let values = mesh::reconstruct_all(&th, &parties)?;
    Ok(values.iter().map(|v| v.to_i128()).collect())
}
