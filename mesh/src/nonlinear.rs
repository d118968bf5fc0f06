//! The non-linear functions of [`crate::fx`], on shares, step for step: same constants, same
//! schedules, same truncation amounts. The only difference from `fx` is that each truncation
//! may round up by one unit (probabilistic truncation); comparisons are exact.
//!
//! Batched: every function takes a vector (or rows of equal length, row-major) and costs the
//! same number of rounds for any batch size.

use crate::Party;
use crate::error::MeshError;
use crate::field::{Acc, Fp};
use crate::fx::{self, FRAC_BITS, HI_FRAC_BITS, StepGuess};
use crate::party::{Secret, check_len, raw, secret, shares};
use crate::prep::Demand;
use crate::protocols::{Job, LtzJob, MulJob, PowersJob, TruncJob};
use crate::shamir::{Share, Wide};
use crate::transport::Transport;

fn rows_of(len: usize, row_len: usize) -> Result<usize, MeshError> {
    if row_len == 0 || len == 0 || len % row_len != 0 {
        return Err(MeshError::InvalidArgument(
            "input must be a non-empty whole number of rows of a non-zero length",
        ));
    }
    Ok(len / row_len)
}

/// Preprocessing needed by the functions of this module, per call size.
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
        let mut d = Demand::step_guess(b, fx::reciprocal_guess().steps.len());
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

impl<T: Transport> Party<T> {
    /// `[x < 0]` (0 or 1) for every `|x| < 2^(fx::CMP_BITS - 1)`: exactly [`fx::ltz`].
    /// `1 + ceil(log2(CMP_BITS - 1))` = 6 rounds.
    pub fn ltz(&mut self, x: &[Share]) -> Result<Vec<Share>, MeshError> {
        self.ensure(&Demand::ltz(x.len()))?;
        let mut job = LtzJob::new(self, raw(x))?;
        self.drive(&mut [&mut job])?;
        Ok(shares(&job.out))
    }

    /// Several independent truncated products in one round: for each `(x, y, m)`,
    /// `trunc(x * y, m)` element-wise.
    pub fn mul_trunc_many(
        &mut self,
        ops: &[(&[Share], &[Share], u32)],
    ) -> Result<Vec<Vec<Share>>, MeshError> {
        let mut d = Demand::default();
        for (x, y, m) in ops {
            check_len("mul_trunc_many operands", x.len(), y.len())?;
            TruncJob::check_shift(*m)?;
            d.add_trunc(*m, x.len());
        }
        self.ensure(&d)?;
        let mut jobs = Vec::with_capacity(ops.len());
        for (x, y, m) in ops {
            let w = secret(x.iter().zip(y.iter()).map(|(a, b)| a.0 * b.0).collect());
            jobs.push(TruncJob::new(self, w, *m)?);
        }
        let mut refs: Vec<&mut dyn Job> = jobs.iter_mut().map(|j| j as &mut dyn Job).collect();
        self.drive(&mut refs)?;
        Ok(jobs.iter().map(|j| shares(&j.out)).collect())
    }

    /// Evaluate a step function ([`fx::StepGuess`]) exactly: every `[x >= t_j]` is
    /// `1 - ltz(x - t_j)`, all in one batch of comparisons, then a local sum.
    pub fn step_guess(&mut self, x: &[Share], g: &StepGuess) -> Result<Vec<Share>, MeshError> {
        let s = g.steps.len();
        if s == 0 {
            return Ok(x
                .iter()
                .map(|_| Share::public(i128::from(g.base)))
                .collect());
        }
        let diffs: Vec<Share> = x
            .iter()
            .flat_map(|xi| {
                g.steps
                    .iter()
                    .map(move |&(t, _)| xi.add_public(-i128::from(t)))
            })
            .collect();
        let l = self.ltz(&diffs)?;
        let total: i128 = g.steps.iter().map(|&(_, inc)| i128::from(inc)).sum();
        Ok(l.chunks_exact(s)
            .map(|li| {
                let mut acc = Fp::from_i128(i128::from(g.base) + total);
                for (lij, &(_, inc)) in li.iter().zip(&g.steps) {
                    acc -= lij.0 * Fp::from_i64(inc);
                }
                Share(acc)
            })
            .collect())
    }

    /// [`fx::exp`]: `(1 + u + u^2/2)^(2^10)` with `u = x/2^10`: one fused product for `u^2/2`,
    /// then ten fused squarings (11 rounds); the last one truncates straight to the activation
    /// format.
    pub fn exp(&mut self, x: &[Share]) -> Result<Vec<Share>, MeshError> {
        self.ensure(&Demand::exp(x.len()))?;
        let shift = HI_FRAC_BITS - FRAC_BITS - fx::EXP_SQUARINGS;
        let u: Vec<Share> = x.iter().map(|xi| xi.scale(1 << shift)).collect();
        let half_u2 = self.mul_trunc(&u, &u, HI_FRAC_BITS + 1)?;
        let mut y: Vec<Share> = u
            .iter()
            .zip(&half_u2)
            .map(|(ui, h)| ui.add(h).add_public(1 << HI_FRAC_BITS))
            .collect();
        for i in 0..fx::EXP_SQUARINGS {
            let bits = if i + 1 == fx::EXP_SQUARINGS {
                2 * HI_FRAC_BITS - FRAC_BITS
            } else {
                HI_FRAC_BITS
            };
            y = self.mul_trunc(&y, &y, bits)?;
        }
        Ok(y)
    }

    /// [`fx::reciprocal`] (result in `HI_FRAC_BITS`): step guess (6 rounds) and four Newton
    /// steps of two fused products each: 14 rounds.
    pub fn reciprocal(&mut self, d: &[Share]) -> Result<Vec<Share>, MeshError> {
        self.ensure(&Demand::reciprocal(d.len()))?;
        self.reciprocal_with_guess(d, &fx::reciprocal_guess())
    }

    /// [`fx::reciprocal`] for inputs known (publicly) to lie in `[lo, hi]` (raw activation
    /// format): the comparisons that range decides are skipped
    /// ([`fx::StepGuess::restrict`]), the result is the same. A softmax denominator, for
    /// example, lies in `[1, L]`.
    pub fn reciprocal_in(
        &mut self,
        d: &[Share],
        lo: i64,
        hi: i64,
    ) -> Result<Vec<Share>, MeshError> {
        let guess = fx::reciprocal_guess().restrict(lo, hi);
        let mut demand = Demand::step_guess(d.len(), guess.steps.len());
        let it = fx::RECIP_ITERS as usize;
        demand
            .add_trunc(FRAC_BITS, d.len() * it)
            .add_trunc(HI_FRAC_BITS, d.len() * it);
        self.ensure(&demand)?;
        self.reciprocal_with_guess(d, &guess)
    }

    fn reciprocal_with_guess(
        &mut self,
        d: &[Share],
        guess: &StepGuess,
    ) -> Result<Vec<Share>, MeshError> {
        let mut y = self.step_guess(d, guess)?;
        for _ in 0..fx::RECIP_ITERS {
            let e = self.mul_trunc(d, &y, FRAC_BITS)?;
            let two_minus_e: Vec<Share> = e
                .iter()
                .map(|ei| ei.neg().add_public(2i128 << HI_FRAC_BITS))
                .collect();
            y = self.mul_trunc(&y, &two_minus_e, HI_FRAC_BITS)?;
        }
        Ok(y)
    }

    /// [`fx::rsqrt`] (result in `HI_FRAC_BITS`): step guess (6 rounds), then per Newton step one
    /// round for `y^2` and `x y` together and one fused `(3y << HI) - a b` truncation: 14 rounds.
    pub fn rsqrt(&mut self, x: &[Share]) -> Result<Vec<Share>, MeshError> {
        self.ensure(&Demand::rsqrt(x.len()))?;
        let mut y = self.step_guess(x, &fx::rsqrt_guess())?;
        for _ in 0..fx::RSQRT_ITERS {
            let ab = self.mul_trunc_many(&[(&y, &y, HI_FRAC_BITS), (x, &y, FRAC_BITS)])?;
            let wide: Vec<Wide> = y
                .iter()
                .zip(ab[0].iter().zip(&ab[1]))
                .map(|(yi, (a, b))| {
                    let three_y = Wide::from(&yi.scale(3i128 << HI_FRAC_BITS));
                    three_y.sub(&a.mul_local(b))
                })
                .collect();
            y = self.reduce_trunc(&wide, HI_FRAC_BITS + 1)?;
        }
        Ok(y)
    }

    /// [`fx::silu`]: the two comparisons (6 rounds) run beside `s = x^2/64` and its powers
    /// `s^1..s^12` (5 rounds), then one fused select-and-truncate round: 7 rounds.
    ///
    /// Private for `|x| < 12.3` only: beyond that `s^12` exceeds the truncation bound
    /// `2^(TRUNC_BITS-1)` (the value is still correct, because it is multiplied by the
    /// comparison result 0, but its masked opening is no longer statistically hiding).
    pub fn silu(&mut self, x: &[Share]) -> Result<Vec<Share>, MeshError> {
        let b = x.len();
        if b == 0 {
            return Ok(Vec::new());
        }
        self.ensure(&Demand::silu(b))?;
        let cut = 1i128 << (FRAC_BITS + fx::SILU_CUT_LOG2);
        let cmp: Secret = secret(
            x.iter()
                .map(|xi| xi.add_public(cut).0)
                .chain(x.iter().map(|xi| xi.add_public(-cut).0))
                .collect(),
        );
        let mut ltz = LtzJob::new(self, cmp)?;
        let count = fx::SILU_COEFFS.len() - 1;
        let mut pw = PowersJob::new(self, raw(x), 2 * fx::SILU_CUT_LOG2, count)?;
        self.drive(&mut [&mut ltz, &mut pw])?;
        let (below, below_hi) = ltz.out.split_at(b);
        let scale_x = HI_FRAC_BITS + fx::SILU_COEFF_FRAC - FRAC_BITS - 1;
        let wide_bits = HI_FRAC_BITS + fx::SILU_COEFF_FRAC - FRAC_BITS;
        let c0 = Fp::from_i64(fx::SILU_COEFFS[0]) * Fp::pow2(HI_FRAC_BITS);
        let coeffs: Vec<Fp> = fx::SILU_COEFFS[1..]
            .iter()
            .map(|&c| Fp::from_i64(c))
            .collect();
        let powers: Vec<&Secret> = pw.powers.iter().flatten().collect();
        let wide: Vec<Wide> = (0..b)
            .map(|i| {
                let xi = x[i].0;
                let mut acc = Acc::default();
                acc.add(xi * Fp::pow2(scale_x));
                acc.add(c0);
                for (c, p) in coeffs.iter().zip(&powers) {
                    acc.add_product(*c, p[i]);
                }
                let poly = acc.finish();
                let inside = below_hi[i] - below[i];
                let above = Fp::ONE - below_hi[i];
                Wide(inside * poly + above * (xi * Fp::pow2(wide_bits)))
            })
            .collect();
        self.reduce_trunc(&wide, wide_bits)
    }

    /// The comparison tree of [`fx::max_argmax`] over rows of `row_len`.
    ///
    /// A level's winners `a + c (b - a)` stay at degree 2t: the next level opens its
    /// comparison directly from them (with a zero sharing in the mask) and reduces them in
    /// that same round, so every level costs the 6 rounds of `ltz` and the tree one final
    /// reduction round: `6 ceil(log2 L) + 1` rounds.
    fn max_tree(
        &mut self,
        xs: &[Share],
        row_len: usize,
        want_index: bool,
    ) -> Result<(Vec<Share>, Vec<Share>), MeshError> {
        let rows = rows_of(xs.len(), row_len)?;
        self.ensure(&Demand::max(rows, row_len))?;
        let mut vals: Secret = raw(xs);
        let mut idx: Secret = secret(
            (0..rows)
                .flat_map(|_| (0..row_len).map(|j| Fp::from(j as u64)))
                .collect(),
        );
        // Whether `vals` / `idx` are degree-2t (unreduced) and whether `idx` is still public.
        let (mut vals_wide, mut idx_wide, mut idx_secret) = (false, false, false);
        let mut len = row_len;
        while len > 1 {
            let pairs = len / 2;
            let diffs: Secret = secret(
                (0..rows)
                    .flat_map(|r| {
                        let v = &vals[r * len..(r + 1) * len];
                        (0..pairs).map(move |p| v[2 * p] - v[2 * p + 1])
                    })
                    .collect(),
            );
            let mut ltz = LtzJob::with_degree(self, diffs, vals_wide)?;
            let reduce_idx = want_index && idx_wide;
            let mut pending: Vec<Fp> = Vec::new();
            if vals_wide {
                pending.extend_from_slice(&vals);
            }
            if reduce_idx {
                pending.extend_from_slice(&idx);
            }
            let mut red = MulJob::new(secret(pending));
            self.drive(&mut [&mut ltz, &mut red])?;
            let mut at = 0;
            if vals_wide {
                vals = secret(red.out[..vals.len()].to_vec());
                at = vals.len();
            }
            if reduce_idx {
                idx = secret(red.out[at..].to_vec());
            }
            let c = &ltz.out;
            let next = len.div_ceil(2);
            let mut nv = Vec::with_capacity(rows * next);
            let mut ni = Vec::with_capacity(if want_index { rows * next } else { 0 });
            for r in 0..rows {
                let (v, ix) = (&vals[r * len..(r + 1) * len], &idx[r * len..(r + 1) * len]);
                for p in 0..pairs {
                    let ci = c[r * pairs + p];
                    nv.push(v[2 * p] + ci * (v[2 * p + 1] - v[2 * p]));
                    if want_index {
                        ni.push(ix[2 * p] + ci * (ix[2 * p + 1] - ix[2 * p]));
                    }
                }
                if len % 2 == 1 {
                    nv.push(v[len - 1]);
                    if want_index {
                        ni.push(ix[len - 1]);
                    }
                }
            }
            vals = secret(nv);
            if want_index {
                idx = secret(ni);
            }
            vals_wide = true;
            // A product with a public index difference stays degree t; later ones are wide.
            idx_wide = idx_secret;
            idx_secret = true;
            len = next;
        }
        let reduce_idx = want_index && idx_wide;
        if vals_wide || reduce_idx {
            let mut pending: Vec<Fp> = Vec::new();
            if vals_wide {
                pending.extend_from_slice(&vals);
            }
            if reduce_idx {
                pending.extend_from_slice(&idx);
            }
            let mut red = MulJob::new(secret(pending));
            self.drive(&mut [&mut red])?;
            let mut at = 0;
            if vals_wide {
                vals = secret(red.out[..rows].to_vec());
                at = rows;
            }
            if reduce_idx {
                idx = secret(red.out[at..].to_vec());
            }
        }
        Ok((shares(&vals), shares(&idx)))
    }

    /// [`fx::max`] of each row (comparison tree, exact): `6 ceil(log2 len) + 1` rounds.
    pub fn max(&mut self, xs: &[Share], row_len: usize) -> Result<Vec<Share>, MeshError> {
        Ok(self.max_tree(xs, row_len, false)?.0)
    }

    /// [`fx::argmax`] of each row as a shared integer index (ties keep the lower index), exact.
    pub fn argmax(&mut self, xs: &[Share], row_len: usize) -> Result<Vec<Share>, MeshError> {
        Ok(self.max_tree(xs, row_len, true)?.1)
    }

    /// [`fx::max_argmax`] of each row: (maxima, indices).
    pub fn max_argmax(
        &mut self,
        xs: &[Share],
        row_len: usize,
    ) -> Result<(Vec<Share>, Vec<Share>), MeshError> {
        self.max_tree(xs, row_len, true)
    }

    /// [`fx::softmax`] of each row: max tree, `exp(x - max)`, one reciprocal per row, one
    /// fused product per element.
    pub fn softmax(&mut self, xs: &[Share], row_len: usize) -> Result<Vec<Share>, MeshError> {
        let rows = rows_of(xs.len(), row_len)?;
        self.ensure(&Demand::softmax(rows, row_len))?;
        let m = self.max(xs, row_len)?;
        let d: Vec<Share> = xs
            .chunks_exact(row_len)
            .zip(&m)
            .flat_map(|(row, mi)| row.iter().map(move |x| x.sub(mi)))
            .collect();
        let e = self.exp(&d)?;
        let sums: Vec<Share> = e
            .chunks_exact(row_len)
            .map(|row| Share(row.iter().fold(Fp::ZERO, |a, s| a + s.0)))
            .collect();
        let r = self.reciprocal(&sums)?;
        let r_rep: Vec<Share> = r
            .iter()
            .flat_map(|ri| std::iter::repeat_n(ri, row_len).cloned())
            .collect();
        self.mul_trunc(&e, &r_rep, HI_FRAC_BITS)
    }

    /// [`fx::scale_hi`]: `trunc(x * factor, HI_FRAC_BITS)` element-wise (one round).
    pub fn scale_hi(&mut self, x: &[Share], factor: &[Share]) -> Result<Vec<Share>, MeshError> {
        self.mul_trunc(x, factor, HI_FRAC_BITS)
    }

    /// [`fx::rms_inv`] of each row (`HI_FRAC_BITS`): one fused round for the mean of squares,
    /// then [`Party::rsqrt`]: 15 rounds.
    pub fn rms_inv(
        &mut self,
        x: &[Share],
        row_len: usize,
        eps: f32,
    ) -> Result<Vec<Share>, MeshError> {
        let rows = rows_of(x.len(), row_len)?;
        self.ensure(&Demand::rms_inv(rows))?;
        let inv_len = Fp::from_i64(fx::rms_inv_len(row_len));
        let wide: Vec<Wide> = x
            .chunks_exact(row_len)
            .map(|row| {
                let mut acc = Acc::default();
                for v in row {
                    acc.add_product(v.0, v.0);
                }
                Wide(acc.finish() * inv_len)
            })
            .collect();
        let ms = self.reduce_trunc(&wide, FRAC_BITS + 16)?;
        let eps = i128::from(fx::rms_eps_raw(eps));
        let ms: Vec<Share> = ms.iter().map(|m| m.add_public(eps)).collect();
        self.rsqrt(&ms)
    }

    /// [`fx::rmsnorm`] of each row with a shared gain vector of `row_len` elements:
    /// [`Party::rms_inv`] then two fused products: 17 rounds.
    pub fn rmsnorm(
        &mut self,
        x: &[Share],
        gain: &[Share],
        row_len: usize,
        eps: f32,
    ) -> Result<Vec<Share>, MeshError> {
        let rows = rows_of(x.len(), row_len)?;
        check_len("rmsnorm gain", row_len, gain.len())?;
        self.ensure(&Demand::rmsnorm(rows, row_len))?;
        let inv = self.rms_inv(x, row_len, eps)?;
        let inv_rep: Vec<Share> = inv
            .iter()
            .flat_map(|v| std::iter::repeat_n(v, row_len).cloned())
            .collect();
        let scaled = self.mul_trunc(x, &inv_rep, HI_FRAC_BITS)?;
        let gains: Vec<Share> = (0..rows).flat_map(|_| gain.iter().cloned()).collect();
        self.mul_trunc(&scaled, &gains, FRAC_BITS)
    }
}
