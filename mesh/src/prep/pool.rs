//! The pool of input-independent random material one party holds: comparison bits, zero
//! sharings and truncation masks per shift. Items are taken by moving them out (the vacated
//! memory is wiped), so the pool never hands out an item twice; wiped on drop.

use crate::error::MeshError;
use crate::params::LTZ_BITS;
use crate::prep::demand::Demand;
use crate::secret::{Secret, secret};
use std::collections::BTreeMap;
use zeroize::Zeroize;

#[derive(Default)]
pub(crate) struct TruncMasks {
    pub(crate) r2t: Secret,
    pub(crate) rhi: Secret,
}

/// The material one party holds. Wiped on drop.
#[derive(Default)]
pub(crate) struct Pool {
    pub(crate) ltz_bits: Secret,
    pub(crate) ltz_hi: Secret,
    pub(crate) zeros: Secret,
    pub(crate) trunc: BTreeMap<u32, TruncMasks>,
}

/// Move the last `count` elements out of `v`, wiping the vacated memory.
fn take_tail(v: &mut Secret, count: usize) -> Secret {
    let start = v.len() - count;
    let out = secret(v[start..].to_vec());
    v[start..].zeroize();
    v.truncate(start);
    out
}

const SHORT: MeshError = MeshError::InvalidArgument("preprocessing pool exhausted");

impl Pool {
    pub(crate) fn level(&self) -> Demand {
        Demand {
            ltz: self.ltz_hi.len(),
            zeros: self.zeros.len(),
            trunc: self
                .trunc
                .iter()
                .map(|(&m, t)| (m, t.rhi.len()))
                .filter(|&(_, c)| c > 0)
                .collect(),
        }
    }

    /// What must be generated so the pool covers `d`; each kind that is short is topped up by at
    /// least `batch` items.
    pub(crate) fn missing(&self, d: &Demand, batch: usize) -> Demand {
        let have = self.level();
        let top = |need: usize, have: usize| {
            if need > have {
                (need - have).max(batch)
            } else {
                0
            }
        };
        let mut out = Demand::ltz(top(d.ltz, have.ltz));
        out.zeros = top(d.zeros, have.zeros);
        for (&m, &c) in &d.trunc {
            out.add_trunc(m, top(c, have.trunc.get(&m).copied().unwrap_or(0)));
        }
        out
    }

    pub(crate) fn take_trunc(
        &mut self,
        m: u32,
        count: usize,
    ) -> Result<(Secret, Secret), MeshError> {
        if count == 0 {
            return Ok((secret(Vec::new()), secret(Vec::new())));
        }
        let t = self.trunc.get_mut(&m).ok_or(SHORT)?;
        if t.rhi.len() < count {
            return Err(SHORT);
        }
        Ok((take_tail(&mut t.r2t, count), take_tail(&mut t.rhi, count)))
    }

    pub(crate) fn take_zeros(&mut self, count: usize) -> Result<Secret, MeshError> {
        if self.zeros.len() < count {
            return Err(SHORT);
        }
        Ok(take_tail(&mut self.zeros, count))
    }

    pub(crate) fn take_ltz(&mut self, count: usize) -> Result<(Secret, Secret), MeshError> {
        if self.ltz_hi.len() < count {
            return Err(SHORT);
        }
        Ok((
            take_tail(&mut self.ltz_bits, count * LTZ_BITS),
            take_tail(&mut self.ltz_hi, count),
        ))
    }
}
