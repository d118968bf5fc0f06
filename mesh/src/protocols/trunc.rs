//! Fused degree reduction and probabilistic truncation (1 round): open `v + r` with a
//! degree-2t mask `r = 2^m r'' + r'`, take `floor(c / 2^m) - r''`.

use crate::error::MeshError;
use crate::field::Fp;
use crate::params::TRUNC_K;
use crate::prep::pool::Pool;
use crate::round::{Job, RoundBuilder, RoundResult};
use crate::secret::{Secret, secret};
use core::ops::Range;

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

/// `v + r + 2^(k-1)`: the value to open for a truncation with degree-2t mask `r2t`.
#[inline(always)]
pub(crate) fn masked(v: Fp, r2t: Fp) -> Fp {
    v + r2t + Fp::pow2(TRUNC_K - 1)
}

/// The truncated share from the opened `c`: `floor(c / 2^m) - r_hi - 2^(k-1-m)`.
#[inline(always)]
pub(crate) fn unmask(c: Fp, rhi: Fp, m: u32) -> Fp {
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
    pub(crate) fn new(
        pool: &mut Pool,
        fault: Fault,
        mut v: Secret,
        m: u32,
    ) -> Result<TruncJob, MeshError> {
        Self::check_shift(m)?;
        #[cfg_attr(not(test), allow(unused_mut))]
        let (mut r2t, mut rhi) = pool.take_trunc(m, v.len())?;
        match fault {
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
