//! Less-than-zero, Catrina–de Hoogh with a log-depth prefix-OR
//! (1 + ceil(log2(CMP_BITS - 1)) rounds).

use crate::error::MeshError;
use crate::field::Fp;
use crate::params::{CMP_K, LTZ_BITS, OR_LEVELS};
use crate::prep::pool::Pool;
use crate::round::{Job, RoundBuilder, RoundResult};
use crate::secret::{Secret, secret};
use core::ops::Range;

/// Sklansky prefix-OR pairs `(j, src)` of level `l` over `LTZ_BITS` positions indexed from the
/// most significant bit: `f[j] |= f[src]`.
fn or_pairs(l: u32) -> impl Iterator<Item = (usize, usize)> {
    (0..LTZ_BITS)
        .filter(move |j| (j >> l) & 1 == 1)
        .map(move |j| (j, ((j >> l) << l) - 1))
}

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
    pub(crate) fn new(pool: &mut Pool, x: Secret) -> Result<LtzJob, MeshError> {
        Self::with_degree(pool, x, false)
    }

    /// Comparisons of degree-t values, or (`wide`) of degree-2t values: then the opening also
    /// carries a random degree-2t sharing of zero, so the opened polynomial reveals only `c`.
    pub(crate) fn with_degree(
        pool: &mut Pool,
        mut x: Secret,
        wide: bool,
    ) -> Result<LtzJob, MeshError> {
        let b = x.len();
        if wide {
            let z = pool.take_zeros(b)?;
            for (xi, zi) in x.iter_mut().zip(z.iter()) {
                *xi += *zi;
            }
        }
        let (bits, rhi) = pool.take_ltz(b)?;
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
