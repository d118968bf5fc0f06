//! Preprocessing: the pool of input-independent random material the online protocols consume,
//! and the dealer-free protocol that fills it.
//!
//! Material (all dealer-free; every item is dealt by `t + 1` parties of the active set, in
//! rotation, so no coalition of `t` knows it):
//! - random bits (degree t): each dealer shares a random bit; the `t + 1` bits are XORed
//!   (`a xor b = a + b - 2ab`) in a tree of degree reductions;
//! - comparison material: `fx::CMP_BITS - 1` random bits and a bounded random `r''` per
//!   comparison;
//! - truncation masks per shift `m`: `r2t` (a degree-2t sharing of `2^m r'' + r'` plus a
//!   random degree-2t sharing of zero) and `r_hi = r''` (degree t). `r'` is built from `m`
//!   random bits whose last XOR level is left at degree 2t: it is only ever opened inside a
//!   degree-2t mask, so it needs no reduction (for t = 1 the truncation masks cost no
//!   multiplication at all).
//!
//! Items are taken from the pool by moving them out; the pool never hands out an item twice.

use crate::error::Endpoint;
use crate::error::MeshError;
use crate::field::Fp;
use crate::party::{RoundBuilder, Secret, secret};
use crate::protocols::{CMP_K, LTZ_BITS, TRUNC_K};
use crate::shamir::{MAX_PARTIES, eval_points};
use crate::transport::{Reader, Transport, push};
use crate::{Party, party::KAPPA};
use rand::RngCore;
use std::collections::BTreeMap;
use zeroize::{Zeroize, Zeroizing};

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

#[derive(Default)]
struct TruncMasks {
    r2t: Secret,
    rhi: Secret,
}

/// The material one party holds. Wiped on drop.
#[derive(Default)]
pub(crate) struct Pool {
    ltz_bits: Secret,
    ltz_hi: Secret,
    zeros: Secret,
    trunc: BTreeMap<u32, TruncMasks>,
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

/// What each dealer deals per item: `bits` random bits (degree t), optionally a random value in
/// `[0, 2^bounded)` (degree t), optionally a random sharing of zero (degree 2t).
#[derive(Clone, Copy)]
struct Spec {
    items: usize,
    bits: usize,
    bounded: Option<u32>,
    zero: bool,
}

impl Spec {
    fn comps(&self) -> usize {
        self.bits + usize::from(self.bounded.is_some()) + usize::from(self.zero)
    }
}

/// One dealing round. Item `j` (numbered across all specs) is dealt by the `t + 1` active
/// parties starting at rank `j mod (2t+1)`. Returns per spec the shares laid out
/// `[item][dealer rank][component]`.
fn deal<T: Transport>(p: &mut Party<T>, specs: &[Spec]) -> Result<Vec<Secret>, MeshError> {
    let (n, t, me) = (p.n(), p.t(), p.me());
    let a = p.active.len();
    let ranks = t + 1;
    let dealer = |j: usize, d: usize, active: &[usize]| active[(j + d) % a];
    // Elements each party sends (to every peer).
    let mut sends = vec![0usize; n];
    let mut j0 = 0;
    for s in specs {
        for j in 0..s.items {
            for d in 0..ranks {
                sends[dealer(j0 + j, d, &p.active)] += s.comps();
            }
        }
        j0 += s.items;
    }
    let round = p.next_round();
    let mut outs: Vec<Secret> = specs
        .iter()
        .map(|s| secret(vec![Fp::ZERO; s.items * ranks * s.comps()]))
        .collect();
    let my_count = sends[me];
    let mut bufs: Vec<Vec<u8>> = (0..n)
        .map(|k| {
            if k == me || my_count == 0 {
                Vec::new()
            } else {
                p.frame_buf(round, my_count)
            }
        })
        .collect();
    let mut pts = Zeroizing::new([Fp::ZERO; MAX_PARTIES]);
    let mut coeffs = Zeroizing::new(vec![Fp::ZERO; 2 * t]);
    let mut j0 = 0;
    for (s, out) in specs.iter().zip(outs.iter_mut()) {
        let c = s.comps();
        for j in 0..s.items {
            for d in 0..ranks {
                if dealer(j0 + j, d, &p.active) != me {
                    continue;
                }
                for comp in 0..c {
                    let (value, degree) = if comp < s.bits {
                        (Fp::from(p.rng.next_u32() as u64 & 1), t)
                    } else if comp == s.bits && s.bounded.is_some() {
                        (Fp::random_bits(&mut p.rng, s.bounded.unwrap_or(0)), t)
                    } else {
                        (Fp::ZERO, 2 * t)
                    };
                    for x in coeffs[..degree].iter_mut() {
                        *x = Fp::random(&mut p.rng);
                    }
                    eval_points(value, &coeffs[..degree], &mut pts[..n]);
                    for (k, buf) in bufs.iter_mut().enumerate() {
                        if k != me {
                            push(buf, pts[k]);
                        }
                    }
                    out[(j * ranks + d) * c + comp] = pts[me];
                }
            }
        }
        j0 += s.items;
    }
    let out_msgs: Vec<Option<Vec<u8>>> = bufs
        .into_iter()
        .enumerate()
        .map(|(k, b)| (k != me && my_count > 0).then_some(b))
        .collect();
    let expect: Vec<usize> = (0..n).map(|k| if k == me { 0 } else { sends[k] }).collect();
    let incoming = p.exchange_frames(out_msgs, &expect, my_count, round)?;
    let mut readers: Vec<Option<Reader<'_>>> = incoming
        .iter()
        .enumerate()
        .map(|(k, m)| {
            m.as_deref()
                .map(|m| Reader::new(&m[crate::transport::HEADER_BYTES..], Endpoint::Party(k)))
        })
        .collect();
    let mut j0 = 0;
    for (s, out) in specs.iter().zip(outs.iter_mut()) {
        let c = s.comps();
        for j in 0..s.items {
            for d in 0..ranks {
                let from = dealer(j0 + j, d, &p.active);
                if from == me {
                    continue;
                }
                let rd = readers[from]
                    .as_mut()
                    .ok_or(MeshError::Disconnected(Endpoint::Party(from)))?;
                for comp in 0..c {
                    out[(j * ranks + d) * c + comp] = rd.next()?;
                }
            }
        }
        j0 += s.items;
    }
    drop(readers);
    p.recycle(incoming);
    Ok(outs)
}

/// XOR `ranks.len()` vectors of bit sharings element-wise in a tree of degree reductions
/// (one round per level). The elements before `reduced_prefix` come out as degree-t sharings;
/// the rest skip the reduction of the last level and come out as degree-2t sharings.
fn xor_tree<T: Transport>(
    p: &mut Party<T>,
    mut ranks: Vec<Secret>,
    reduced_prefix: usize,
) -> Result<Secret, MeshError> {
    while ranks.len() > 1 {
        let last = ranks.len() == 2;
        let len = ranks[0].len();
        let reduce_len = if last { reduced_prefix } else { len };
        let mut rb = RoundBuilder::default();
        for pair in ranks.chunks(2) {
            if let [x, y] = pair {
                rb.reshare((0..reduce_len).map(|i| x[i] * y[i]));
            }
        }
        let rr = p.run_round(&rb)?;
        let mut next = Vec::with_capacity(ranks.len().div_ceil(2));
        let mut k = 0;
        for pair in ranks.chunks(2) {
            match pair {
                [x, y] => {
                    let v: Vec<Fp> = (0..len)
                        .map(|i| {
                            let prod = if i < reduce_len {
                                k += 1;
                                rr.reduced[k - 1]
                            } else {
                                x[i] * y[i]
                            };
                            x[i] + y[i] - prod - prod
                        })
                        .collect();
                    next.push(secret(v));
                }
                [x] => next.push(secret(x.to_vec())),
                _ => {}
            }
        }
        ranks = next;
    }
    Ok(ranks.pop().unwrap_or_else(|| secret(Vec::new())))
}

/// Generate `d` and add it to the pool.
pub(crate) fn generate<T: Transport>(p: &mut Party<T>, d: &Demand) -> Result<(), MeshError> {
    let ranks = p.t() + 1;
    let trunc: Vec<(u32, usize)> = d
        .trunc
        .iter()
        .map(|(&m, &c)| (m, c))
        .filter(|&(_, c)| c > 0)
        .collect();
    let mut specs = vec![Spec {
        items: d.ltz,
        bits: LTZ_BITS,
        bounded: Some(CMP_K - LTZ_BITS as u32 + KAPPA),
        zero: false,
    }];
    for &(m, c) in &trunc {
        specs.push(Spec {
            items: c,
            bits: m as usize,
            bounded: Some(TRUNC_K + KAPPA - m),
            zero: true,
        });
    }
    specs.push(Spec {
        items: d.zeros,
        bits: 0,
        bounded: None,
        zero: true,
    });
    let dealt = deal(p, &specs)?;
    // Zero sharings: the sum of the dealers' (one component per item).
    if let Some(z) = dealt.last() {
        for j in 0..d.zeros {
            let zero = (0..ranks).fold(Fp::ZERO, |acc, r| acc + z[j * ranks + r]);
            p.pool.zeros.push(zero);
        }
    }
    // Gather the bits by dealer rank: comparison bits first (reduced), then truncation bits.
    let mut by_rank: Vec<Secret> = (0..ranks).map(|_| secret(Vec::new())).collect();
    for (s, out) in specs.iter().zip(&dealt) {
        let c = s.comps();
        for j in 0..s.items {
            for (r, v) in by_rank.iter_mut().enumerate() {
                let base = (j * ranks + r) * c;
                v.extend_from_slice(&out[base..base + s.bits]);
            }
        }
    }
    let ltz_bit_count = d.ltz * LTZ_BITS;
    let bits = xor_tree(p, by_rank, ltz_bit_count)?;
    // Comparison material.
    let s0 = &specs[0];
    let c0 = s0.comps();
    p.pool.ltz_bits.extend_from_slice(&bits[..ltz_bit_count]);
    for j in 0..d.ltz {
        let mut hi = Fp::ZERO;
        for r in 0..ranks {
            hi += dealt[0][(j * ranks + r) * c0 + s0.bits];
        }
        p.pool.ltz_hi.push(hi);
    }
    // Truncation masks.
    let mut at = ltz_bit_count;
    for (k, &(m, count)) in trunc.iter().enumerate() {
        let s = &specs[k + 1];
        let out = &dealt[k + 1];
        let c = s.comps();
        let entry = p.pool.trunc.entry(m).or_default();
        for j in 0..count {
            let mut rlo = Fp::ZERO;
            for i in (0..m as usize).rev() {
                rlo = rlo + rlo + bits[at + i];
            }
            at += m as usize;
            let (mut hi, mut zero) = (Fp::ZERO, Fp::ZERO);
            for r in 0..ranks {
                let base = (j * ranks + r) * c + s.bits;
                hi += out[base];
                zero += out[base + 1];
            }
            entry.r2t.push(hi * Fp::pow2(m) + rlo + zero);
            entry.rhi.push(hi);
        }
    }
    Ok(())
}
