//! The arithmetic approximations of [`crate::fx`] on shares: exp, reciprocal, inverse square
//! root, SiLU, softmax, RMS normalization, and the batched truncated products they are built
//! from.

use crate::Party;
use crate::error::{MeshError, check_len};
use crate::field::{Acc, Fp};
use crate::fx::{self, FRAC_BITS, HI_FRAC_BITS, StepGuess};
use crate::nonlinear::rows::rows_of;
use crate::prep::demand::Demand;
use crate::protocols::ltz::LtzJob;
use crate::protocols::powers::PowersJob;
use crate::protocols::trunc::TruncJob;
use crate::round::Job;
use crate::secret::{Secret, raw, secret, shares};
use crate::shamir::{Share, Wide};
use crate::transport::Transport;

impl<T: Transport> Party<T> {
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
            jobs.push(TruncJob::new(&mut self.pool, self.fault, w, *m)?);
        }
        let mut refs: Vec<&mut dyn Job> = jobs.iter_mut().map(|j| j as &mut dyn Job).collect();
        self.drive(&mut refs)?;
        Ok(jobs.iter().map(|j| shares(&j.out)).collect())
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
        self.ensure(&Demand::reciprocal_with_guess(d.len(), &guess))?;
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
        let mut ltz = LtzJob::new(&mut self.pool, cmp)?;
        let count = fx::SILU_COEFFS.len() - 1;
        let mut pw = PowersJob::new(&mut self.pool, raw(x), 2 * fx::SILU_CUT_LOG2, count)?;
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
