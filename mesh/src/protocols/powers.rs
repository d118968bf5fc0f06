//! Powers of a shared value: `s = trunc(x*x, shift)` then `s^1..s^N` by [`fx::powers`]'s
//! schedule, every round opening the masked products of all powers it can form.

use crate::error::MeshError;
use crate::field::Fp;
use crate::fx;
use crate::prep::pool::Pool;
use crate::protocols::trunc::{masked, unmask};
use crate::round::{Job, RoundBuilder, RoundResult};
use crate::secret::{Secret, secret};
use core::ops::Range;

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
    pub(crate) fn new(
        pool: &mut Pool,
        x: Secret,
        shift: u32,
        count: usize,
    ) -> Result<PowersJob, MeshError> {
        let b = x.len();
        let masks_s = pool.take_trunc(shift, b)?;
        let masks_p = pool.take_trunc(fx::HI_FRAC_BITS, b * count.saturating_sub(1))?;
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
