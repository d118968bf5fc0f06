//! The round-by-round protocols as jobs: each job says what it needs in the next round
//! (values to reshare, values to open) and takes the results, so a driver can run several
//! independent jobs in the same rounds.
//!
//! - [`MulJob`]: degree reduction by resharing (1 round).
//! - [`TruncJob`]: fused degree reduction + probabilistic truncation (1 round).
//! - [`LtzJob`]: less-than-zero, Catrina–de Hoogh with a log-depth prefix-OR
//!   (1 + ceil(log2(CMP_BITS - 1)) rounds).
//! - [`PowersJob`]: `s = trunc(x*x, shift)` then `s^1..s^N` by [`fx::powers`]'s schedule.

use crate::Party;
use crate::error::MeshError;
use crate::field::Fp;
use crate::fx;
use crate::party::{Fault, RoundBuilder, RoundResult, Secret, secret};
use crate::transport::Transport;
use core::ops::Range;

/// Bit length `k` of truncation inputs: `|v| < 2^(k-1)`.
pub(crate) const TRUNC_K: u32 = fx::TRUNC_BITS;
/// Bit length `k` of comparison inputs.
pub(crate) const CMP_K: u32 = fx::CMP_BITS;
/// Random bits per comparison (`k - 1`).
pub(crate) const LTZ_BITS: usize = (fx::CMP_BITS - 1) as usize;

/// A protocol in progress.
pub(crate) trait Job {
    fn done(&self) -> bool;
    /// Add this job's work for the next round.
    fn emit(&mut self, rb: &mut RoundBuilder);
    /// Take this job's results of the round.
    fn absorb(&mut self, rr: &RoundResult) -> Result<(), MeshError>;
}

/// Degree reduction of a batch.
pub(crate) struct MulJob {
    input: Secret,
    range: Range<usize>,
    pub(crate) out: Secret,
    done: bool,
}

impl MulJob {
    pub(crate) fn new(input: Secret) -> MulJob {
        let done = input.is_empty();
        MulJob {
            input,
            range: 0..0,
            out: secret(Vec::new()),
            done,
        }
    }
}

impl Job for MulJob {
    fn done(&self) -> bool {
        self.done
    }
    fn emit(&mut self, rb: &mut RoundBuilder) {
        self.range = rb.reshare(self.input.iter().copied());
    }
    fn absorb(&mut self, rr: &RoundResult) -> Result<(), MeshError> {
        self.out = secret(rr.reduced[self.range.clone()].to_vec());
        self.done = true;
        Ok(())
    }
}

/// `v + r + 2^(k-1)`: the value to open for a truncation with degree-2t mask `r2t`.
#[inline(always)]
fn masked(v: Fp, r2t: Fp) -> Fp {
    v + r2t + Fp::pow2(TRUNC_K - 1)
}

/// The truncated share from the opened `c`: `floor(c / 2^m) - r_hi - 2^(k-1-m)`.
#[inline(always)]
fn unmask(c: Fp, rhi: Fp, m: u32) -> Fp {
    Fp::new(c.value() >> m) - rhi - Fp::pow2(TRUNC_K - 1 - m)
}

/// Fused reduction + probabilistic truncation of a batch of degree-<=2t values by `m` bits.
pub(crate) struct TruncJob {
    m: u32,
    opening: Secret,
    rhi: Secret,
    range: Range<usize>,
    pub(crate) out: Secret,
    done: bool,
}

impl TruncJob {
    pub(crate) fn check_shift(m: u32) -> Result<(), MeshError> {
        if (1..TRUNC_K).contains(&m) {
            Ok(())
        } else {
            Err(MeshError::InvalidArgument(
                "truncation shift must be in 1..TRUNC_BITS",
            ))
        }
    }

    /// Takes the masks from the pool (the caller ensured it holds enough).
    pub(crate) fn new<T: Transport>(
        p: &mut Party<T>,
        mut v: Secret,
        m: u32,
    ) -> Result<TruncJob, MeshError> {
        Self::check_shift(m)?;
        #[cfg_attr(not(test), allow(unused_mut))]
        let (mut r2t, mut rhi) = p.pool.take_trunc(m, v.len())?;
        match p.fault {
            Fault::None => {}
            #[cfg(test)]
            Fault::ReuseTruncMask => {
                if v.len() >= 2 {
                    r2t[1] = r2t[0];
                    rhi[1] = rhi[0];
                }
            }
            #[cfg(test)]
            Fault::UnmaskedOpen => {
                r2t.iter_mut().for_each(|x| *x = Fp::ZERO);
                rhi.iter_mut().for_each(|x| *x = Fp::ZERO);
            }
        }
        for (x, &r) in v.iter_mut().zip(r2t.iter()) {
            *x = masked(*x, r);
        }
        let done = v.is_empty();
        Ok(TruncJob {
            m,
            opening: v,
            rhi,
            range: 0..0,
            out: secret(Vec::new()),
            done,
        })
    }
}

impl Job for TruncJob {
    fn done(&self) -> bool {
        self.done
    }
    fn emit(&mut self, rb: &mut RoundBuilder) {
        self.range = rb.open(self.opening.iter().copied());
    }
    fn absorb(&mut self, rr: &RoundResult) -> Result<(), MeshError> {
        let c = &rr.opened[self.range.clone()];
        self.out = secret(
            c.iter()
                .zip(self.rhi.iter())
                .map(|(&c, &r)| unmask(c, r, self.m))
                .collect(),
        );
        self.done = true;
        Ok(())
    }
}

/// Sklansky prefix-OR pairs `(j, src)` of level `l` over `LTZ_BITS` positions indexed from the
/// most significant bit: `f[j] |= f[src]`.
fn or_pairs(l: u32) -> impl Iterator<Item = (usize, usize)> {
    (0..LTZ_BITS)
        .filter(move |j| (j >> l) & 1 == 1)
        .map(move |j| (j, ((j >> l) << l) - 1))
}

/// Number of prefix-OR levels: `ceil(log2(LTZ_BITS))`.
pub(crate) const OR_LEVELS: u32 = usize::BITS - (LTZ_BITS - 1).leading_zeros();

/// `[x < 0]` for a batch of degree-t values with `|x| < 2^(CMP_BITS - 1)`.
///
/// Open `c = x + 2^(k-1) + 2^(k-1) r'' + r'` (r' = sum 2^i r_i from k-1 shared random bits);
/// `[r' > c mod 2^(k-1)]` by a prefix-OR from the most significant bit of `e_i = c_i xor r_i`;
/// then `ltz = 1 - floor(c / 2^(k-1)) + r'' + [r' > c']`.
pub(crate) struct LtzJob {
    b: usize,
    bits: Secret,
    rhi: Secret,
    opening: Secret,
    stage: u32,
    f: Secret,
    c_hi: Vec<Fp>,
    c_lo: Vec<u64>,
    range: Range<usize>,
    pub(crate) out: Secret,
}

impl LtzJob {
    /// Comparisons of degree-t values.
    pub(crate) fn new<T: Transport>(p: &mut Party<T>, x: Secret) -> Result<LtzJob, MeshError> {
        Self::with_degree(p, x, false)
    }

    /// Comparisons of degree-t values, or (`wide`) of degree-2t values: then the opening also
    /// carries a random degree-2t sharing of zero, so the opened polynomial reveals only `c`.
    pub(crate) fn with_degree<T: Transport>(
        p: &mut Party<T>,
        mut x: Secret,
        wide: bool,
    ) -> Result<LtzJob, MeshError> {
        let b = x.len();
        if wide {
            let z = p.pool.take_zeros(b)?;
            for (xi, zi) in x.iter_mut().zip(z.iter()) {
                *xi += *zi;
            }
        }
        let (bits, rhi) = p.pool.take_ltz(b)?;
        let m = LTZ_BITS;
        let mut opening = x;
        for (i, o) in opening.iter_mut().enumerate() {
            let mut r = Fp::ZERO;
            for j in (0..m).rev() {
                r = r + r + bits[i * m + j];
            }
            *o = *o + Fp::pow2(CMP_K - 1) + rhi[i].mul_u64(1 << m) + r;
        }
        Ok(LtzJob {
            b,
            bits,
            rhi,
            opening,
            stage: 0,
            f: secret(vec![Fp::ZERO; b * m]),
            c_hi: Vec::new(),
            c_lo: Vec::new(),
            range: 0..0,
            out: secret(Vec::new()),
        })
    }

    fn finish(&mut self) {
        let m = LTZ_BITS;
        let mut out = Vec::with_capacity(self.b);
        for i in 0..self.b {
            let f = &self.f[i * m..(i + 1) * m];
            let mut u = Fp::ZERO;
            let mut prev = Fp::ZERO;
            for (j, &fj) in f.iter().enumerate() {
                let pos = m - 1 - j;
                if (self.c_lo[i] >> pos) & 1 == 0 {
                    u += fj - prev;
                }
                prev = fj;
            }
            out.push(Fp::ONE - self.c_hi[i] + self.rhi[i] + u);
        }
        self.out = secret(out);
    }
}

impl Job for LtzJob {
    fn done(&self) -> bool {
        self.b == 0 || self.stage > OR_LEVELS
    }
    fn emit(&mut self, rb: &mut RoundBuilder) {
        if self.stage == 0 {
            self.range = rb.open(self.opening.iter().copied());
        } else {
            let l = self.stage - 1;
            let m = LTZ_BITS;
            let f = &self.f;
            self.range = rb.reshare(
                (0..self.b)
                    .flat_map(|i| or_pairs(l).map(move |(j, s)| f[i * m + j] * f[i * m + s])),
            );
        }
    }
    fn absorb(&mut self, rr: &RoundResult) -> Result<(), MeshError> {
        let m = LTZ_BITS;
        if self.stage == 0 {
            let c = &rr.opened[self.range.clone()];
            self.c_hi = c.iter().map(|c| Fp::new(c.value() >> m)).collect();
            self.c_lo = c
                .iter()
                .map(|c| (c.value() & ((1u128 << m) - 1)) as u64)
                .collect();
            for i in 0..self.b {
                for j in 0..m {
                    let pos = m - 1 - j;
                    let r = self.bits[i * m + pos];
                    self.f[i * m + j] = if (self.c_lo[i] >> pos) & 1 == 0 {
                        r
                    } else {
                        Fp::ONE - r
                    };
                }
            }
        } else {
            let l = self.stage - 1;
            let red = &rr.reduced[self.range.clone()];
            let mut k = 0;
            for i in 0..self.b {
                for (j, s) in or_pairs(l) {
                    let (a, c) = (self.f[i * m + j], self.f[i * m + s]);
                    self.f[i * m + j] = a + c - red[k];
                    k += 1;
                }
            }
        }
        self.stage += 1;
        if self.stage > OR_LEVELS {
            self.finish();
        }
        Ok(())
    }
}

/// `s = trunc(x * x, shift)` then the powers `s^1 ..= s^count` by the schedule of
/// [`fx::powers`] (`s^k = s^h s^(k-h)`, `h` the highest power of two below `k`), each product
/// truncated by [`fx::HI_FRAC_BITS`]: `1 + ceil(log2 count)` rounds.
pub(crate) struct PowersJob {
    b: usize,
    count: usize,
    shift: u32,
    x: Secret,
    /// `powers[k - 1]` = shares of `s^k` once known.
    pub(crate) powers: Vec<Option<Secret>>,
    masks_s: (Secret, Secret),
    masks_p: (Secret, Secret),
    used_p: usize,
    pending: Vec<usize>,
    pending_rhi: Secret,
    opening: Secret,
    range: Range<usize>,
}

/// The highest power of two `<= k - 1` (fx::powers' split point).
fn split(k: usize) -> usize {
    1usize << (usize::BITS - 1 - (k - 1).leading_zeros())
}

impl PowersJob {
    pub(crate) fn new<T: Transport>(
        p: &mut Party<T>,
        x: Secret,
        shift: u32,
        count: usize,
    ) -> Result<PowersJob, MeshError> {
        let b = x.len();
        let masks_s = p.pool.take_trunc(shift, b)?;
        let masks_p = p
            .pool
            .take_trunc(fx::HI_FRAC_BITS, b * count.saturating_sub(1))?;
        Ok(PowersJob {
            b,
            count,
            shift,
            x,
            powers: vec![None; count],
            masks_s,
            masks_p,
            used_p: 0,
            pending: Vec::new(),
            pending_rhi: secret(Vec::new()),
            opening: secret(Vec::new()),
            range: 0..0,
        })
    }
}

impl Job for PowersJob {
    fn done(&self) -> bool {
        self.b == 0 || self.powers.iter().all(Option::is_some)
    }
    fn emit(&mut self, rb: &mut RoundBuilder) {
        let mut opening = Vec::new();
        self.pending.clear();
        if self.powers[0].is_none() {
            self.pending.push(1);
            for (i, &x) in self.x.iter().enumerate() {
                opening.push(masked(x * x, self.masks_s.0[i]));
            }
            self.pending_rhi = secret(self.masks_s.1.to_vec());
        } else {
            let mut rhi = Vec::new();
            for k in 2..=self.count {
                let h = split(k);
                if self.powers[k - 1].is_none() {
                    if let (Some(a), Some(c)) = (&self.powers[h - 1], &self.powers[k - h - 1]) {
                        self.pending.push(k);
                        for i in 0..self.b {
                            let u = self.used_p;
                            self.used_p += 1;
                            opening.push(masked(a[i] * c[i], self.masks_p.0[u]));
                            rhi.push(self.masks_p.1[u]);
                        }
                    }
                }
            }
            self.pending_rhi = secret(rhi);
        }
        self.opening = secret(opening);
        self.range = rb.open(self.opening.iter().copied());
    }
    fn absorb(&mut self, rr: &RoundResult) -> Result<(), MeshError> {
        let c = &rr.opened[self.range.clone()];
        for (slot, &k) in self.pending.iter().enumerate() {
            let m = if k == 1 { self.shift } else { fx::HI_FRAC_BITS };
            let v: Vec<Fp> = (0..self.b)
                .map(|i| {
                    let at = slot * self.b + i;
                    unmask(c[at], self.pending_rhi[at], m)
                })
                .collect();
            self.powers[k - 1] = Some(secret(v));
        }
        Ok(())
    }
}
