//! One party of the quorum: its round engine, its preprocessing pool, and the basic protocols
//! it runs on its own shares (client I/O, opening, multiplication, truncation, products).
//!
//! Every protocol is a batch operation: one call handles a whole vector and costs the same
//! number of rounds as for one element. Multi-round protocols are jobs
//! ([`crate::protocols`]) so that independent ones can share rounds ([`Engine::drive`]).

use crate::error::{MeshError, check_len};
use crate::field::{Acc, Fp};
use crate::fx;
use crate::prep::demand::Demand;
use crate::prep::generate::generate;
use crate::prep::pool::Pool;
use crate::protocols::mul::MulJob;
use crate::protocols::trunc::{Fault, TruncJob};
use crate::round::{Engine, Job, RoundBuilder};
use crate::secret::{raw_wide, secret, shares};
use crate::shamir::{Share, Threshold, Wide};
use crate::transport::{Counters, Transport};
use rand::RngCore;
use zeroize::Zeroize;

/// Most items of one kind generated per preprocessing batch.
const PREP_CHUNK: usize = 2048;

/// One party of an `(n, t)` quorum.
///
/// Holds only its own shares. Values are opened only where the protocol does so on purpose:
/// masked values (`x + r` in truncations and comparisons), results explicitly passed to
/// [`Party::open`], and outputs sent to the client with [`Party::open_to_client`].
pub struct Party<T: Transport> {
    pub(crate) engine: Engine<T>,
    pub(crate) pool: Pool,
    prep_batch: usize,
    /// Wall time spent generating preprocessing material (offline phase).
    prep_time: std::time::Duration,
    pub(crate) fault: Fault,
}

impl<T: Transport> core::fmt::Debug for Party<T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Party")
            .field("index", &self.engine.me())
            .field("threshold", &self.engine.threshold())
            .field("active", &self.engine.active)
            .field("counters", &self.engine.counters)
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
        Ok(Party {
            engine: Engine::new(th, index, transport, seed)?,
            pool: Pool::default(),
            prep_batch: 256,
            prep_time: std::time::Duration::ZERO,
            fault: Fault::None,
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
        self.engine.me()
    }

    /// The quorum's configuration.
    pub fn threshold(&self) -> Threshold {
        self.engine.threshold()
    }

    /// Traffic counters so far.
    pub fn counters(&self) -> Counters {
        self.engine.counters
    }

    /// The parties (2t+1 of them) that currently reduce degrees, open values and deal.
    pub fn active(&self) -> &[usize] {
        &self.engine.active
    }

    /// Continue with another set of exactly `2t + 1` distinct parties (e.g. the survivors after
    /// a party is lost). Every party must make the same call at the same point of the protocol.
    pub fn set_active(&mut self, parties: &[usize]) -> Result<(), MeshError> {
        self.engine.set_active(parties)
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
        let was = self.engine.offline;
        self.engine.offline = true;
        // Large batches are split: multi-megabyte rounds are slower per item (cache, page
        // faults) than a few more rounds.
        let started = std::time::Instant::now();
        let r = missing
            .split(PREP_CHUNK)
            .iter()
            .try_for_each(|d| generate(&mut self.engine, &mut self.pool, d));
        self.prep_time += started.elapsed();
        self.engine.offline = was;
        r
    }

    /// Run jobs until all are done (see [`Engine::drive`]).
    pub(crate) fn drive(&mut self, jobs: &mut [&mut dyn Job]) -> Result<(), MeshError> {
        self.engine.drive(jobs)
    }

    // ---- client I/O ----------------------------------------------------------------------

    /// Receive `count` input shares from the client (one message).
    pub fn input_from_client(&mut self, count: usize) -> Result<Vec<Share>, MeshError> {
        self.engine.input_from_client(count)
    }

    /// Send this party's shares of outputs to the client, which alone reconstructs them.
    pub fn open_to_client(&mut self, xs: &[Share]) -> Result<(), MeshError> {
        self.engine.open_to_client(xs)
    }

    // ---- opening and multiplication -------------------------------------------------------

    /// Open shared values to all parties (one round). Use only for values meant to be public.
    pub fn open(&mut self, xs: &[Share]) -> Result<Vec<Fp>, MeshError> {
        let mut rb = RoundBuilder::default();
        rb.open(xs.iter().map(|s| s.0));
        Ok(self.engine.run_round(&rb)?.opened)
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
        let mut job = TruncJob::new(&mut self.pool, self.fault, raw_wide(xs), m)?;
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
