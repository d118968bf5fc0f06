//! How much preprocessing material a computation needs: the [`Demand`] type and one
//! constructor per protocol (every protocol's demand is written here, once), so a caller can
//! fill the pool ahead of time with `Party::preprocess`.

use crate::fx::{self, FRAC_BITS, HI_FRAC_BITS, StepGuess};
use std::collections::BTreeMap;

/// An amount of preprocessing material: comparisons and truncations per shift amount.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Demand {
    /// Comparisons (`ltz`), each `fx::CMP_BITS - 1` random bits plus a bounded random value.
    pub ltz: usize,
    /// Random degree-2t sharings of zero, for comparisons of degree-2t values (the max tree
    /// compares the unreduced winners of the previous level).
    pub zeros: usize,
    /// Truncation masks by shift amount.
    pub trunc: BTreeMap<u32, usize>,
}

impl Demand {
    /// `count` comparisons.
    pub fn ltz(count: usize) -> Demand {
        Demand {
            ltz: count,
            ..Demand::default()
        }
    }

    /// `count` truncations by `m` bits.
    pub fn trunc(m: u32, count: usize) -> Demand {
        let mut d = Demand::default();
        d.add_trunc(m, count);
        d
    }

    /// Add `count` truncations by `m` bits.
    pub fn add_trunc(&mut self, m: u32, count: usize) -> &mut Demand {
        if count > 0 {
            *self.trunc.entry(m).or_insert(0) += count;
        }
        self
    }

    /// Add another demand.
    pub fn add(&mut self, o: &Demand) -> &mut Demand {
        self.ltz += o.ltz;
        self.zeros += o.zeros;
        for (&m, &c) in &o.trunc {
            self.add_trunc(m, c);
        }
        self
    }

    /// `k` times this demand.
    pub fn times(&self, k: usize) -> Demand {
        Demand {
            ltz: self.ltz * k,
            zeros: self.zeros * k,
            trunc: self.trunc.iter().map(|(&m, &c)| (m, c * k)).collect(),
        }
    }

    /// Split into pieces of at most `max` items of each kind (at least one piece).
    pub fn split(&self, max: usize) -> Vec<Demand> {
        let max = max.max(1);
        let most = self
            .trunc
            .values()
            .copied()
            .chain([self.ltz, self.zeros])
            .max()
            .unwrap_or(0);
        let pieces = most.div_ceil(max).max(1);
        (0..pieces)
            .map(|k| {
                let part = |c: usize| c.saturating_sub(k * max).min(max);
                let mut d = Demand::ltz(part(self.ltz));
                d.zeros = part(self.zeros);
                for (&m, &c) in &self.trunc {
                    d.add_trunc(m, part(c));
                }
                d
            })
            .collect()
    }

    /// Nothing demanded.
    pub fn is_empty(&self) -> bool {
        self.ltz == 0 && self.zeros == 0 && self.trunc.values().all(|&c| c == 0)
    }
}

/// Preprocessing needed by the non-linear functions (`Party::exp`, ...), per call size.
impl Demand {
    /// `fx::exp` on `b` elements.
    pub fn exp(b: usize) -> Demand {
        let mut d = Demand::trunc(HI_FRAC_BITS, b * (fx::EXP_SQUARINGS as usize - 1));
        d.add_trunc(2 * HI_FRAC_BITS - FRAC_BITS, b)
            .add_trunc(HI_FRAC_BITS + 1, b);
        d
    }

    /// A step-function guess with `steps` thresholds on `b` elements.
    pub fn step_guess(b: usize, steps: usize) -> Demand {
        Demand::ltz(b * steps)
    }

    /// `fx::reciprocal` on `b` elements.
    pub fn reciprocal(b: usize) -> Demand {
        Demand::reciprocal_with_guess(b, &fx::reciprocal_guess())
    }

    /// `fx::reciprocal` on `b` elements starting from the step function `guess` (the full
    /// guess, or one restricted to a known input range).
    pub fn reciprocal_with_guess(b: usize, guess: &StepGuess) -> Demand {
        let mut d = Demand::step_guess(b, guess.steps.len());
        let it = fx::RECIP_ITERS as usize;
        d.add_trunc(FRAC_BITS, b * it)
            .add_trunc(HI_FRAC_BITS, b * it);
        d
    }

    /// `fx::rsqrt` on `b` elements.
    pub fn rsqrt(b: usize) -> Demand {
        let mut d = Demand::step_guess(b, fx::rsqrt_guess().steps.len());
        let it = fx::RSQRT_ITERS as usize;
        d.add_trunc(HI_FRAC_BITS, b * it)
            .add_trunc(FRAC_BITS, b * it)
            .add_trunc(HI_FRAC_BITS + 1, b * it);
        d
    }

    /// `fx::silu` on `b` elements.
    pub fn silu(b: usize) -> Demand {
        let mut d = Demand::ltz(2 * b);
        d.add_trunc(2 * fx::SILU_CUT_LOG2, b)
            .add_trunc(HI_FRAC_BITS, b * (fx::SILU_COEFFS.len() - 2))
            .add_trunc(HI_FRAC_BITS + fx::SILU_COEFF_FRAC - FRAC_BITS, b);
        d
    }

    /// `fx::max` / `fx::argmax` over `rows` rows of `row_len` elements: `row_len - 1`
    /// comparisons per row, those after the first level on degree-2t values.
    pub fn max(rows: usize, row_len: usize) -> Demand {
        let mut d = Demand::ltz(rows * row_len.saturating_sub(1));
        d.zeros = rows * row_len.saturating_sub(1 + row_len / 2);
        d
    }

    /// `fx::softmax` over `rows` rows of `row_len` elements.
    pub fn softmax(rows: usize, row_len: usize) -> Demand {
        let mut d = Demand::max(rows, row_len);
        d.add(&Demand::exp(rows * row_len))
            .add(&Demand::reciprocal(rows))
            .add_trunc(HI_FRAC_BITS, rows * row_len);
        d
    }

    /// `fx::rms_inv` over `rows` rows.
    pub fn rms_inv(rows: usize) -> Demand {
        let mut d = Demand::trunc(FRAC_BITS + 16, rows);
        d.add(&Demand::rsqrt(rows));
        d
    }

    /// `fx::rmsnorm` over `rows` rows of `row_len` elements.
    pub fn rmsnorm(rows: usize, row_len: usize) -> Demand {
        let mut d = Demand::rms_inv(rows);
        d.add_trunc(HI_FRAC_BITS, rows * row_len)
            .add_trunc(FRAC_BITS, rows * row_len);
        d
    }
}
