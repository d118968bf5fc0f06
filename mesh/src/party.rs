//! One party of the quorum: its transport, its preprocessing pool, its counters and the
//! protocols it runs on its own shares.
//!
//! Every protocol is a batch operation: one call handles a whole vector and costs the same
//! number of rounds as for one element. Multi-round protocols are written as jobs
//! ([`crate::protocols`]) so that independent ones can share rounds (`drive`).

use crate::error::{Endpoint, MeshError};
use crate::field::{Acc, Fp};
use crate::fx;
use crate::prep::{Demand, Pool};
use crate::protocols::{Job, MulJob, TruncJob};
use crate::shamir::{MAX_PARTIES, Share, Threshold, Wide, eval_points};
use crate::transport::{Counters, PhaseCounters, Reader, Transport, check_frame, frame, push};
use core::ops::Range;
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha12Rng;
use zeroize::{Zeroize, Zeroizing};

/// Statistical security parameter: masks carry this many random bits beyond the value.
pub const KAPPA: u32 = 40;

/// Most items of one kind generated per preprocessing batch.
const PREP_CHUNK: usize = 2048;

/// Largest message buffer kept for reuse.
const MAX_SPARE_BYTES: usize = 1 << 20;

/// A vector of secret field elements that is wiped when dropped.
pub(crate) type Secret = Zeroizing<Vec<Fp>>;

pub(crate) fn secret(v: Vec<Fp>) -> Secret {
    Zeroizing::new(v)
}

pub(crate) fn raw(xs: &[Share]) -> Secret {
    secret(xs.iter().map(|s| s.0).collect())
}

pub(crate) fn raw_wide(xs: &[Wide]) -> Secret {
    secret(xs.iter().map(|s| s.0).collect())
}

pub(crate) fn shares(v: &[Fp]) -> Vec<Share> {
    v.iter().map(|&x| Share(x)).collect()
}

pub(crate) fn check_len(what: &'static str, expected: usize, got: usize) -> Result<(), MeshError> {
    if expected == got {
        Ok(())
    } else {
        Err(MeshError::LengthMismatch {
            what,
            expected,
            got,
        })
    }
}

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

/// A test-only deliberate protocol fault, used to show that the privacy tests can fail.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub(crate) enum Fault {
    #[default]
    None,
    /// Every truncation reuses the mask of the first element of its batch for the second.
    #[cfg(test)]
    ReuseTruncMask,
    /// Truncations open the masked value without its mask.
    #[cfg(test)]
    UnmaskedOpen,
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

/// One party of an `(n, t)` quorum.
///
/// Holds only its own shares. Values are opened only where the protocol does so on purpose:
/// masked values (`x + r` in truncations and comparisons), results explicitly passed to
/// [`Party::open`], and outputs sent to the client with [`Party::open_to_client`].
pub struct Party<T: Transport> {
    th: Threshold,
    me: usize,
    transport: T,
    pub(crate) rng: ChaCha12Rng,
    /// The 2t+1 parties that reduce degrees, open values and deal preprocessing material.
    pub(crate) active: Vec<usize>,
    lambda: Vec<Fp>,
    pub(crate) pool: Pool,
    counters: Counters,
    offline: bool,
    round: u32,
    client_round: u32,
    prep_batch: usize,
    /// Wall time spent generating preprocessing material (offline phase).
    prep_time: std::time::Duration,
    /// Message buffers kept for reuse (large fresh allocations cost page faults every round).
    spare: Vec<Vec<u8>>,
    pub(crate) fault: Fault,
    #[cfg(test)]
    pub(crate) view: Option<View>,
}

impl<T: Transport> core::fmt::Debug for Party<T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Party")
            .field("index", &self.me)
            .field("threshold", &self.th)
            .field("active", &self.active)
            .field("counters", &self.counters)
            .finish_non_exhaustive()
    }
}

impl<T: Transport> Party<T> {
    /// A party with index `index` (0-based; evaluation point `index + 1`) over `transport`,
    /// drawing its local randomness from a ChaCha12 stream seeded with `seed` (use
    /// [`Party::with_os_rng`] outside tests).
    pub fn new(
        th: Threshold,
        index: usize,
        transport: T,
        seed: [u8; 32],
    ) -> Result<Self, MeshError> {
        th.check_party(index)?;
        if transport.parties() != th.n() {
            return Err(MeshError::LengthMismatch {
                what: "transport parties",
                expected: th.n(),
                got: transport.parties(),
            });
        }
        if transport.index() != index {
            return Err(MeshError::InvalidArgument(
                "transport index differs from party index",
            ));
        }
        let active: Vec<usize> = (0..2 * th.t() + 1).collect();
        let lambda = th.lagrange(&active)?;
        Ok(Party {
            th,
            me: index,
            transport,
            rng: ChaCha12Rng::from_seed(seed),
            active,
            lambda,
            pool: Pool::default(),
            counters: Counters::default(),
            offline: false,
            round: 0,
            client_round: 0,
            prep_batch: 256,
            prep_time: std::time::Duration::ZERO,
            spare: Vec::new(),
            fault: Fault::None,
            #[cfg(test)]
            view: None,
        })
    }

    /// Like [`Party::new`], seeded from the operating system.
    pub fn with_os_rng(th: Threshold, index: usize, transport: T) -> Result<Self, MeshError> {
        let mut seed = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut seed);
        let p = Party::new(th, index, transport, seed);
        seed.zeroize();
        p
    }

    /// This party's 0-based index.
    pub fn index(&self) -> usize {
        self.me
    }

    /// The quorum's configuration.
    pub fn threshold(&self) -> Threshold {
        self.th
    }

    /// Traffic counters so far.
    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// The parties (2t+1 of them) that currently reduce degrees, open values and deal.
    pub fn active(&self) -> &[usize] {
        &self.active
    }

    /// Continue with another set of exactly `2t + 1` distinct parties (e.g. the survivors after
    /// a party is lost). Every party must make the same call at the same point of the protocol.
    pub fn set_active(&mut self, parties: &[usize]) -> Result<(), MeshError> {
        let set = self.th.check_set(parties, 2 * self.th.t() + 1)?;
        self.lambda = self.th.lagrange(&set)?;
        self.active = set;
        Ok(())
    }

    /// Smallest number of items preprocessing produces of a kind it has to refill on demand
    /// (larger batches mean fewer preprocessing rounds).
    pub fn set_preprocessing_batch(&mut self, items: usize) {
        self.prep_batch = items.max(1);
    }

    /// Make sure the pool holds at least `demand` (runs the preprocessing rounds for what is
    /// missing, charged to the offline counters).
    pub fn preprocess(&mut self, demand: &Demand) -> Result<(), MeshError> {
        self.ensure_with_batch(demand, 1)
    }

    /// Wall time this party has spent in preprocessing (generating random material, rounds
    /// included) since it was created; the rest of its time is the online phase.
    pub fn preprocessing_time(&self) -> std::time::Duration {
        self.prep_time
    }

    /// What the pool holds now.
    pub fn pool_level(&self) -> Demand {
        self.pool.level()
    }

    pub(crate) fn ensure(&mut self, demand: &Demand) -> Result<(), MeshError> {
        self.ensure_with_batch(demand, self.prep_batch)
    }

    fn ensure_with_batch(&mut self, demand: &Demand, batch: usize) -> Result<(), MeshError> {
        let missing = self.pool.missing(demand, batch);
        if missing.is_empty() {
            return Ok(());
        }
        let was = self.offline;
        self.offline = true;
        // Large batches are split: multi-megabyte rounds are slower per item (cache, page
        // faults) than a few more rounds.
        let started = std::time::Instant::now();
        let r = missing
            .split(PREP_CHUNK)
            .iter()
            .try_for_each(|d| crate::prep::generate(self, d));
        self.prep_time += started.elapsed();
        self.offline = was;
        r
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
                    check_frame(m, round, expect_counts[j], Endpoint::Party(j))?;
                }
                (None, true) => return Err(MeshError::Disconnected(Endpoint::Party(j))),
                _ => {}
            }
        }
        #[cfg(test)]
        if let Some(view) = self.view.as_mut() {
            for (j, msg) in incoming.iter().enumerate() {
                if let Some(m) = msg {
                    let mut rd =
                        Reader::new(&m[crate::transport::HEADER_BYTES..], Endpoint::Party(j));
                    let v: Vec<Fp> = (0..expect_counts[j])
                        .map(|_| rd.next())
                        .collect::<Result<_, _>>()?;
                    view.received.push((round, j, v));
                }
            }
        }
        Ok(incoming)
    }

    /// An empty frame for `count` elements, reusing a spare buffer when there is one.
    pub(crate) fn frame_buf(&mut self, round: u32, count: usize) -> Vec<u8> {
        match self.spare.pop() {
            Some(mut b) => {
                b.clear();
                b.reserve(crate::transport::HEADER_BYTES + count * crate::field::ELEMENT_BYTES);
                b.extend_from_slice(&frame(round, 0)[..5]);
                b.extend_from_slice(&(count as u32).to_le_bytes());
                b
            }
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
        let (n, t, me) = (self.n(), self.t(), self.me);
        let mut out: Vec<Option<Vec<u8>>> = (0..n).map(|_| None).collect();
        let mut own = secret(Vec::with_capacity(r));
        if self.is_active(me) {
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
            for (j, buf) in bufs.into_iter().enumerate() {
                if j != me {
                    let mut buf = buf;
                    for &v in rb.open.iter() {
                        push(&mut buf, v);
                    }
                    out[j] = Some(buf);
                }
            }
        }
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
                    .ok_or(MeshError::Disconnected(Endpoint::Party(a)))?;
                let payload = check_frame(msg, round, count, Endpoint::Party(a))?;
                let mut rd = Reader::new(payload, Endpoint::Party(a));
                for acc in red.iter_mut() {
                    acc.add_product(l, rd.next()?);
                }
                for acc in opn.iter_mut() {
                    acc.add_product(l, rd.next()?);
                }
            }
        }
        let reduced: Vec<Fp> = red.into_iter().map(Acc::finish).collect();
        let opened: Vec<Fp> = opn.into_iter().map(Acc::finish).collect();
        self.recycle(incoming);
        let res = RoundResult {
            reduced: secret(reduced),
            opened,
        };
        #[cfg(test)]
        if let Some(view) = self.view.as_mut() {
            if o > 0 {
                view.opened.push((round, res.opened.clone()));
            }
        }
        Ok(res)
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

    // ---- client I/O ----------------------------------------------------------------------

    /// Receive `count` input shares from the client (one message).
    pub fn input_from_client(&mut self, count: usize) -> Result<Vec<Share>, MeshError> {
        let mut msg = self.transport.recv_from_client()?;
        let round = self.client_round;
        self.client_round = self.client_round.wrapping_add(1);
        let payload = check_frame(&msg, round, count, Endpoint::Client)?;
        let mut rd = Reader::new(payload, Endpoint::Client);
        let out = (0..count)
            .map(|_| rd.next().map(Share))
            .collect::<Result<Vec<_>, _>>();
        msg.zeroize();
        out
    }

    /// Send this party's shares of outputs to the client, which alone reconstructs them.
    pub fn open_to_client(&mut self, xs: &[Share]) -> Result<(), MeshError> {
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

    // ---- opening and multiplication -------------------------------------------------------

    /// Open shared values to all parties (one round). Use only for values meant to be public.
    pub fn open(&mut self, xs: &[Share]) -> Result<Vec<Fp>, MeshError> {
        let mut rb = RoundBuilder::default();
        rb.open(xs.iter().map(|s| s.0));
        Ok(self.run_round(&rb)?.opened)
    }

    /// Degree reduction: turn degree-2t shares into degree-t shares of the same values
    /// (one round: every active party reshares its share, everyone combines with Lagrange).
    pub fn reduce(&mut self, xs: &[Wide]) -> Result<Vec<Share>, MeshError> {
        let mut job = MulJob::new(raw_wide(xs));
        self.drive(&mut [&mut job])?;
        Ok(shares(&job.out))
    }

    /// Fused degree reduction and probabilistic truncation (one round):
    /// `floor(x / 2^m)` or `floor(x / 2^m) + 1` for every `|x| < 2^(fx::TRUNC_BITS - 1)`.
    pub fn reduce_trunc(&mut self, xs: &[Wide], m: u32) -> Result<Vec<Share>, MeshError> {
        TruncJob::check_shift(m)?;
        self.ensure(&Demand::trunc(m, xs.len()))?;
        let mut job = TruncJob::new(self, raw_wide(xs), m)?;
        self.drive(&mut [&mut job])?;
        Ok(shares(&job.out))
    }

    /// Element-wise products without truncation (one round).
    pub fn mul(&mut self, x: &[Share], y: &[Share]) -> Result<Vec<Share>, MeshError> {
        check_len("mul operands", x.len(), y.len())?;
        let w = secret(x.iter().zip(y).map(|(a, b)| a.0 * b.0).collect());
        let mut job = MulJob::new(w);
        self.drive(&mut [&mut job])?;
        Ok(shares(&job.out))
    }

    /// Element-wise products truncated by `m` bits, fused in one round (`fx::trunc(x*y, m)`
    /// or that plus one).
    pub fn mul_trunc(&mut self, x: &[Share], y: &[Share], m: u32) -> Result<Vec<Share>, MeshError> {
        check_len("mul_trunc operands", x.len(), y.len())?;
        let w: Vec<Wide> = x.iter().zip(y).map(|(a, b)| a.mul_local(b)).collect();
        self.reduce_trunc(&w, m)
    }

    /// Probabilistic truncation of degree-t values by `m` bits (one round).
    pub fn trunc(&mut self, x: &[Share], m: u32) -> Result<Vec<Share>, MeshError> {
        let w: Vec<Wide> = x.iter().map(Wide::from).collect();
        self.reduce_trunc(&w, m)
    }

    /// The local (degree-2t) matrix-vector product: `w` is row-major with `x.len()` columns.
    /// Products are summed with one modular reduction per output.
    pub fn dot_local(&self, w: &[Share], x: &[Share]) -> Result<Vec<Wide>, MeshError> {
        let cols = x.len();
        if cols == 0 || w.len() % cols != 0 {
            return Err(MeshError::LengthMismatch {
                what: "matrix elements (rows x vector length)",
                expected: (w.len() / cols.max(1)) * cols,
                got: w.len(),
            });
        }
        Ok(w.chunks_exact(cols)
            .map(|row| {
                let mut acc = Acc::default();
                for (a, b) in row.iter().zip(x) {
                    acc.add_product(a.0, b.0);
                }
                Wide(acc.finish())
            })
            .collect())
    }

    /// Matrix-vector product without truncation (one round, one reduction per output).
    pub fn dot(&mut self, w: &[Share], x: &[Share]) -> Result<Vec<Share>, MeshError> {
        let wide = self.dot_local(w, x)?;
        self.reduce(&wide)
    }

    /// Matrix-vector product truncated by `m` bits: local sum of products, then one fused
    /// reduction-and-truncation per output (one round). Equals `fx::trunc(fx::dot_wide, m)`
    /// or that plus one.
    pub fn dot_trunc(&mut self, w: &[Share], x: &[Share], m: u32) -> Result<Vec<Share>, MeshError> {
        let wide = self.dot_local(w, x)?;
        self.reduce_trunc(&wide, m)
    }

    /// The fixed-point product of [`fx::mul`] (truncation by [`fx::FRAC_BITS`]).
    pub fn mul_fx(&mut self, x: &[Share], y: &[Share]) -> Result<Vec<Share>, MeshError> {
        self.mul_trunc(x, y, fx::FRAC_BITS)
    }
}
