//! The round engine every protocol runs on: one party's link, its place in the quorum (the
//! active set and its Lagrange coefficients), the round numbers, the traffic counters, and the
//! one communication round that reshares (degree 2t -> t) and opens values at once.
//!
//! Protocols never touch messages: they describe a round's work in a [`RoundBuilder`] and read
//! a [`RoundResult`]; multi-round protocols are [`Job`]s, and [`Engine::drive`] runs several
//! independent jobs in the same rounds.

use crate::error::{MeshError, Origin};
use crate::field::{Acc, Fp};
use crate::frame::{Reader, check_frame, frame, frame_in, push};
use crate::secret::{Secret, secret};
use crate::shamir::{MAX_PARTIES, Share, Threshold, eval_points};
use crate::transport::{Counters, PhaseCounters, Transport};
use core::ops::Range;
use rand::SeedableRng;
use rand_chacha::ChaCha12Rng;
use zeroize::{Zeroize, Zeroizing};

/// Largest message buffer kept for reuse.
const MAX_SPARE_BYTES: usize = 1 << 20;

/// Work for one communication round, collected from one or more jobs.
#[derive(Default)]
pub(crate) struct RoundBuilder {
    /// Degree-2t values to reduce to degree t (resharing).
    pub(crate) reshare: Secret,
    /// This party's shares (degree <= 2t) of values to open to all parties.
    pub(crate) open: Secret,
}

impl RoundBuilder {
    pub(crate) fn reshare(&mut self, it: impl IntoIterator<Item = Fp>) -> Range<usize> {
        let start = self.reshare.len();
        self.reshare.extend(it);
        start..self.reshare.len()
    }

    pub(crate) fn open(&mut self, it: impl IntoIterator<Item = Fp>) -> Range<usize> {
        let start = self.open.len();
        self.open.extend(it);
        start..self.open.len()
    }
}

/// What a round returned: reduced shares (degree t) and opened public values.
#[derive(Default)]
pub(crate) struct RoundResult {
    pub(crate) reduced: Secret,
    pub(crate) opened: Vec<Fp>,
}

/// A protocol in progress.
pub(crate) trait Job {
    fn done(&self) -> bool;
    /// Add this job's work for the next round.
    fn emit(&mut self, rb: &mut RoundBuilder);
    /// Take this job's results of the round.
    fn absorb(&mut self, rr: &RoundResult) -> Result<(), MeshError>;
}

/// Everything a party receives, recorded for the privacy tests.
#[cfg(test)]
#[derive(Clone, Debug, Default)]
pub(crate) struct View {
    /// `(round, opened values)`.
    pub(crate) opened: Vec<(u32, Vec<Fp>)>,
    /// `(round, sender, elements)`.
    pub(crate) received: Vec<(u32, usize, Vec<Fp>)>,
}

/// One party's side of the rounds.
pub(crate) struct Engine<T: Transport> {
    th: Threshold,
    me: usize,
    transport: T,
    pub(crate) rng: ChaCha12Rng,
    /// The 2t+1 parties that reduce degrees, open values and deal preprocessing material.
    pub(crate) active: Vec<usize>,
    lambda: Vec<Fp>,
    pub(crate) counters: Counters,
    /// Whether rounds are charged to the offline (preprocessing) counters.
    pub(crate) offline: bool,
    round: u32,
    client_round: u32,
    /// Message buffers kept for reuse (large fresh allocations cost page faults every round).
    spare: Vec<Vec<u8>>,
    #[cfg(test)]
    pub(crate) view: Option<View>,
}

impl<T: Transport> Engine<T> {
    /// An engine for party `index` (already checked against `th` and `transport`), with the
    /// first `2t + 1` parties active.
    pub(crate) fn new(
        th: Threshold,
        index: usize,
        transport: T,
        seed: [u8; 32],
    ) -> Result<Self, MeshError> {
        let active: Vec<usize> = (0..2 * th.t() + 1).collect();
        let lambda = th.lagrange(&active)?;
        Ok(Engine {
            th,
            me: index,
            transport,
            rng: ChaCha12Rng::from_seed(seed),
            active,
            lambda,
            counters: Counters::default(),
            offline: false,
            round: 0,
            client_round: 0,
            spare: Vec::new(),
            #[cfg(test)]
            view: None,
        })
    }

    pub(crate) fn threshold(&self) -> Threshold {
        self.th
    }

    pub(crate) fn t(&self) -> usize {
        self.th.t()
    }

    pub(crate) fn n(&self) -> usize {
        self.th.n()
    }

    pub(crate) fn me(&self) -> usize {
        self.me
    }

    pub(crate) fn is_active(&self, p: usize) -> bool {
        self.active.binary_search(&p).is_ok()
    }

    /// Continue with another set of exactly `2t + 1` distinct parties.
    pub(crate) fn set_active(&mut self, parties: &[usize]) -> Result<(), MeshError> {
        let set = self.th.check_set(parties, 2 * self.th.t() + 1)?;
        self.lambda = self.th.lagrange(&set)?;
        self.active = set;
        Ok(())
    }

    fn phase(&mut self) -> &mut PhaseCounters {
        if self.offline {
            &mut self.counters.offline
        } else {
            &mut self.counters.online
        }
    }

    /// One round of framed messages; every received message is header-checked against `round`
    /// and the expected element count. Returns the checked messages (frames, header included).
    pub(crate) fn exchange_frames(
        &mut self,
        out: Vec<Option<Vec<u8>>>,
        expect_counts: &[usize],
        sent_elements: usize,
        round: u32,
    ) -> Result<Vec<Option<Vec<u8>>>, MeshError> {
        let expect: Vec<bool> = expect_counts.iter().map(|&c| c > 0).collect();
        {
            let sent: Vec<usize> = out.iter().flatten().map(Vec::len).collect();
            let c = self.phase();
            c.rounds += 1;
            c.messages += sent.len() as u64;
            c.elements += (sent.len() * sent_elements) as u64;
            c.bytes += sent.iter().sum::<usize>() as u64;
        }
        let incoming = self.transport.exchange(out, &expect)?;
        if incoming.len() != self.n() {
            return Err(MeshError::LengthMismatch {
                what: "messages returned by transport",
                expected: self.n(),
                got: incoming.len(),
            });
        }
        for (j, msg) in incoming.iter().enumerate() {
            match (msg, expect[j]) {
                (Some(m), true) => {
                    check_frame(m, round, expect_counts[j], Origin::Party(j))?;
                }
                (None, true) => return Err(Origin::Party(j).error(MeshError::Disconnected)),
                _ => {}
            }
        }
        #[cfg(test)]
        self.record_received(&incoming, expect_counts, round)?;
        Ok(incoming)
    }

    #[cfg(test)]
    fn record_received(
        &mut self,
        incoming: &[Option<Vec<u8>>],
        expect_counts: &[usize],
        round: u32,
    ) -> Result<(), MeshError> {
        if let Some(view) = self.view.as_mut() {
            for (j, msg) in incoming.iter().enumerate() {
                if let Some(m) = msg {
                    let mut rd = Reader::of_checked_frame(m, Origin::Party(j));
                    let v: Vec<Fp> = (0..expect_counts[j])
                        .map(|_| rd.next())
                        .collect::<Result<_, _>>()?;
                    view.received.push((round, j, v));
                }
            }
        }
        Ok(())
    }

    /// An empty frame for `count` elements, reusing a spare buffer when there is one.
    pub(crate) fn frame_buf(&mut self, round: u32, count: usize) -> Vec<u8> {
        match self.spare.pop() {
            Some(b) => frame_in(b, round, count),
            None => frame(round, count),
        }
    }

    /// Wipe received messages and keep their buffers for reuse.
    pub(crate) fn recycle(&mut self, msgs: Vec<Option<Vec<u8>>>) {
        for mut m in msgs.into_iter().flatten() {
            // Only the used length ever holds data: the rest of the capacity was wiped when
            // the buffer was last recycled (`Vec::zeroize` would wipe all of the capacity).
            m.as_mut_slice().zeroize();
            m.clear();
            if self.spare.len() < 2 * self.n() && m.capacity() <= MAX_SPARE_BYTES {
                self.spare.push(m);
            }
        }
    }

    pub(crate) fn next_round(&mut self) -> u32 {
        let r = self.round;
        self.round = self.round.wrapping_add(1);
        r
    }

    /// Run one round: reshare `rb.reshare` (degree 2t -> t) and open `rb.open` (degree <= 2t).
    pub(crate) fn run_round(&mut self, rb: &RoundBuilder) -> Result<RoundResult, MeshError> {
        let (r, o) = (rb.reshare.len(), rb.open.len());
        let count = r + o;
        if count == 0 {
            return Ok(RoundResult::default());
        }
        let round = self.next_round();
        let (out, own) = self.reshare_messages(rb, round, count);
        let (n, me) = (self.n(), self.me);
        let expect: Vec<usize> = (0..n)
            .map(|j| {
                if j != me && self.is_active(j) {
                    count
                } else {
                    0
                }
            })
            .collect();
        let incoming = self.exchange_frames(out, &expect, count, round)?;
        {
            let c = self.phase();
            c.reductions += r as u64;
            c.openings += o as u64;
        }
        let res = self.combine(rb, &own, &incoming, round);
        self.recycle(incoming);
        let res = res?;
        #[cfg(test)]
        if let Some(view) = self.view.as_mut() {
            if o > 0 {
                view.opened.push((round, res.opened.clone()));
            }
        }
        Ok(res)
    }

    /// The outgoing messages of a round (none unless this party is active): for every peer,
    /// its point of a fresh degree-t sharing of every value to reshare, then this party's
    /// shares of the values to open. Also returns this party's own points of the resharings.
    fn reshare_messages(
        &mut self,
        rb: &RoundBuilder,
        round: u32,
        count: usize,
    ) -> (Vec<Option<Vec<u8>>>, Secret) {
        let (n, t, me) = (self.n(), self.t(), self.me);
        let mut out: Vec<Option<Vec<u8>>> = (0..n).map(|_| None).collect();
        let mut own = secret(Vec::with_capacity(rb.reshare.len()));
        if !self.is_active(me) {
            return (out, own);
        }
        let mut bufs: Vec<Vec<u8>> = (0..n)
            .map(|j| {
                if j == me {
                    Vec::new()
                } else {
                    self.frame_buf(round, count)
                }
            })
            .collect();
        let mut coeffs = Zeroizing::new(vec![Fp::ZERO; t]);
        let mut pts = Zeroizing::new([Fp::ZERO; MAX_PARTIES]);
        for &v in rb.reshare.iter() {
            for c in coeffs.iter_mut() {
                *c = Fp::random(&mut self.rng);
            }
            eval_points(v, &coeffs, &mut pts[..n]);
            for (j, buf) in bufs.iter_mut().enumerate() {
                if j != me {
                    push(buf, pts[j]);
                }
            }
            own.push(pts[me]);
        }
        for (j, mut buf) in bufs.into_iter().enumerate() {
            if j != me {
                for &v in rb.open.iter() {
                    push(&mut buf, v);
                }
                out[j] = Some(buf);
            }
        }
        (out, own)
    }

    /// Combine the active parties' contributions with the Lagrange coefficients at zero.
    fn combine(
        &self,
        rb: &RoundBuilder,
        own: &[Fp],
        incoming: &[Option<Vec<u8>>],
        round: u32,
    ) -> Result<RoundResult, MeshError> {
        let (r, o, me) = (rb.reshare.len(), rb.open.len(), self.me);
        let mut red = vec![Acc::default(); r];
        let mut opn = vec![Acc::default(); o];
        for (rank, &a) in self.active.iter().enumerate() {
            let l = self.lambda[rank];
            if a == me {
                for (acc, &s) in red.iter_mut().zip(own.iter()) {
                    acc.add_product(l, s);
                }
                for (acc, &s) in opn.iter_mut().zip(rb.open.iter()) {
                    acc.add_product(l, s);
                }
            } else {
                let msg = incoming[a]
                    .as_deref()
                    .ok_or_else(|| Origin::Party(a).error(MeshError::Disconnected))?;
                let payload = check_frame(msg, round, r + o, Origin::Party(a))?;
                let mut rd = Reader::new(payload, Origin::Party(a));
                for acc in red.iter_mut().chain(opn.iter_mut()) {
                    acc.add_product(l, rd.next()?);
                }
            }
        }
        Ok(RoundResult {
            reduced: secret(red.into_iter().map(Acc::finish).collect()),
            opened: opn.into_iter().map(Acc::finish).collect(),
        })
    }

    /// Run jobs until all are done; jobs that are still running share each round.
    pub(crate) fn drive(&mut self, jobs: &mut [&mut dyn Job]) -> Result<(), MeshError> {
        loop {
            let mut rb = RoundBuilder::default();
            let mut running = Vec::new();
            for (i, j) in jobs.iter_mut().enumerate() {
                if !j.done() {
                    j.emit(&mut rb);
                    running.push(i);
                }
            }
            if running.is_empty() {
                return Ok(());
            }
            let rr = self.run_round(&rb)?;
            for i in running {
                jobs[i].absorb(&rr)?;
            }
        }
    }

    /// Receive `count` input shares from the client (one message).
    pub(crate) fn input_from_client(&mut self, count: usize) -> Result<Vec<Share>, MeshError> {
        let mut msg = self.transport.recv_from_client()?;
        let round = self.client_round;
        self.client_round = self.client_round.wrapping_add(1);
        let payload = check_frame(&msg, round, count, Origin::Client)?;
        let mut rd = Reader::new(payload, Origin::Client);
        let out = (0..count)
            .map(|_| rd.next().map(Share))
            .collect::<Result<Vec<_>, _>>();
        msg.zeroize();
        out
    }

    /// Send this party's shares of outputs to the client.
    pub(crate) fn open_to_client(&mut self, xs: &[Share]) -> Result<(), MeshError> {
        let round = self.client_round;
        self.client_round = self.client_round.wrapping_add(1);
        let mut f = frame(round, xs.len());
        for x in xs {
            push(&mut f, x.0);
        }
        self.counters.client.messages += 1;
        self.counters.client.elements += xs.len() as u64;
        self.counters.client.bytes += f.len() as u64;
        self.transport.send_to_client(f)
    }
}
