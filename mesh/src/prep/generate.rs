//! The dealer-free generation of preprocessing material: one dealing round (every item dealt
//! by `t + 1` active parties, in rotation), then a tree of degree reductions that XORs the
//! dealers' random bits, then the combination into the pool's items.

use crate::error::{MeshError, Origin};
use crate::field::Fp;
use crate::frame::{Reader, push};
use crate::params::{LTZ_BITS, LTZ_HI_BITS, trunc_hi_bits};
use crate::prep::demand::Demand;
use crate::prep::pool::Pool;
use crate::round::{Engine, RoundBuilder};
use crate::secret::{Secret, secret};
use crate::shamir::{MAX_PARTIES, eval_points};
use crate::transport::Transport;
use rand::RngCore;
use zeroize::Zeroizing;

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

/// Who deals what in one dealing round: item `j` (numbered across all specs) is dealt by the
/// `t + 1` active parties starting at rank `j mod (2t+1)`.
struct Dealers<'a> {
    active: &'a [usize],
    ranks: usize,
}

impl Dealers<'_> {
    /// The party dealing rank `d` of item `j`.
    fn of(&self, j: usize, d: usize) -> usize {
        self.active[(j + d) % self.active.len()]
    }

    /// Calls `f(spec index, spec, item within the spec, dealer rank, dealer)` for every dealt
    /// item, in wire order.
    fn each(&self, specs: &[Spec], mut f: impl FnMut(usize, &Spec, usize, usize, usize)) {
        let mut j0 = 0;
        for (k, s) in specs.iter().enumerate() {
            for j in 0..s.items {
                for d in 0..self.ranks {
                    f(k, s, j, d, self.of(j0 + j, d));
                }
            }
            j0 += s.items;
        }
    }

    /// Elements each party sends (to every peer).
    fn sends(&self, specs: &[Spec], n: usize) -> Vec<usize> {
        let mut sends = vec![0usize; n];
        self.each(specs, |_, s, _, _, dealer| sends[dealer] += s.comps());
        sends
    }
}

/// One dealing round. Returns per spec the shares laid out `[item][dealer rank][component]`.
fn deal<T: Transport>(e: &mut Engine<T>, specs: &[Spec]) -> Result<Vec<Secret>, MeshError> {
    let (n, me) = (e.n(), e.me());
    let active = e.active.clone();
    let dealers = Dealers {
        active: &active,
        ranks: e.t() + 1,
    };
    let sends = dealers.sends(specs, n);
    let round = e.next_round();
    let mut outs: Vec<Secret> = specs
        .iter()
        .map(|s| secret(vec![Fp::ZERO; s.items * dealers.ranks * s.comps()]))
        .collect();
    let my_count = sends[me];
    let bufs = deal_own(e, &dealers, specs, &mut outs, round, my_count);
    let out_msgs: Vec<Option<Vec<u8>>> = bufs
        .into_iter()
        .enumerate()
        .map(|(k, b)| (k != me && my_count > 0).then_some(b))
        .collect();
    let expect: Vec<usize> = (0..n).map(|k| if k == me { 0 } else { sends[k] }).collect();
    let incoming = e.exchange_frames(out_msgs, &expect, my_count, round)?;
    let read = read_dealt(&incoming, &dealers, specs, &mut outs, me);
    e.recycle(incoming);
    read?;
    Ok(outs)
}

/// Deal this party's items: fill `outs` with its own points and return the peers' messages.
fn deal_own<T: Transport>(
    e: &mut Engine<T>,
    dealers: &Dealers<'_>,
    specs: &[Spec],
    outs: &mut [Secret],
    round: u32,
    my_count: usize,
) -> Vec<Vec<u8>> {
    let (n, t, me) = (e.n(), e.t(), e.me());
    let mut bufs: Vec<Vec<u8>> = (0..n)
        .map(|k| {
            if k == me || my_count == 0 {
                Vec::new()
            } else {
                e.frame_buf(round, my_count)
            }
        })
        .collect();
    let mut pts = Zeroizing::new([Fp::ZERO; MAX_PARTIES]);
    let mut coeffs = Zeroizing::new(vec![Fp::ZERO; 2 * t]);
    let ranks = dealers.ranks;
    dealers.each(specs, |k, s, j, d, dealer| {
        if dealer != me {
            return;
        }
        let c = s.comps();
        for comp in 0..c {
            let (value, degree) = if comp < s.bits {
                (Fp::from(e.rng.next_u32() as u64 & 1), t)
            } else if comp == s.bits && s.bounded.is_some() {
                (Fp::random_bits(&mut e.rng, s.bounded.unwrap_or(0)), t)
            } else {
                (Fp::ZERO, 2 * t)
            };
            for x in coeffs[..degree].iter_mut() {
                *x = Fp::random(&mut e.rng);
            }
            eval_points(value, &coeffs[..degree], &mut pts[..n]);
            for (p, buf) in bufs.iter_mut().enumerate() {
                if p != me {
                    push(buf, pts[p]);
                }
            }
            outs[k][(j * ranks + d) * c + comp] = pts[me];
        }
    });
    bufs
}

/// Read the other dealers' points into `outs`, in the order they were dealt.
fn read_dealt(
    incoming: &[Option<Vec<u8>>],
    dealers: &Dealers<'_>,
    specs: &[Spec],
    outs: &mut [Secret],
    me: usize,
) -> Result<(), MeshError> {
    let mut readers: Vec<Option<Reader<'_>>> = incoming
        .iter()
        .enumerate()
        .map(|(k, m)| {
            m.as_deref()
                .map(|m| Reader::of_checked_frame(m, Origin::Party(k)))
        })
        .collect();
    let ranks = dealers.ranks;
    let mut result = Ok(());
    dealers.each(specs, |k, s, j, d, from| {
        if from == me || result.is_err() {
            return;
        }
        let c = s.comps();
        result = (|| {
            let rd = readers[from]
                .as_mut()
                .ok_or_else(|| Origin::Party(from).error(MeshError::Disconnected))?;
            for comp in 0..c {
                outs[k][(j * ranks + d) * c + comp] = rd.next()?;
            }
            Ok(())
        })();
    });
    result
}

/// XOR `ranks.len()` vectors of bit sharings element-wise in a tree of degree reductions
/// (one round per level). The elements before `reduced_prefix` come out as degree-t sharings;
/// the rest skip the reduction of the last level and come out as degree-2t sharings.
fn xor_tree<T: Transport>(
    e: &mut Engine<T>,
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
        let rr = e.run_round(&rb)?;
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

/// The truncation shifts `d` asks for, with their counts (none empty).
fn trunc_kinds(d: &Demand) -> Vec<(u32, usize)> {
    d.trunc
        .iter()
        .map(|(&m, &c)| (m, c))
        .filter(|&(_, c)| c > 0)
        .collect()
}

/// The dealing specs of `d`: comparisons first, then one per truncation shift, then zeros.
fn specs_for(d: &Demand, trunc: &[(u32, usize)]) -> Vec<Spec> {
    let mut specs = vec![Spec {
        items: d.ltz,
        bits: LTZ_BITS,
        bounded: Some(LTZ_HI_BITS),
        zero: false,
    }];
    for &(m, c) in trunc {
        specs.push(Spec {
            items: c,
            bits: m as usize,
            bounded: Some(trunc_hi_bits(m)),
            zero: true,
        });
    }
    specs.push(Spec {
        items: d.zeros,
        bits: 0,
        bounded: None,
        zero: true,
    });
    specs
}

/// Generate `d` and add it to the pool.
pub(crate) fn generate<T: Transport>(
    e: &mut Engine<T>,
    pool: &mut Pool,
    d: &Demand,
) -> Result<(), MeshError> {
    let ranks = e.t() + 1;
    let trunc = trunc_kinds(d);
    let specs = specs_for(d, &trunc);
    let dealt = deal(e, &specs)?;
    // Zero sharings: the sum of the dealers' (one component per item).
    if let Some(z) = dealt.last() {
        for j in 0..d.zeros {
            let zero = (0..ranks).fold(Fp::ZERO, |acc, r| acc + z[j * ranks + r]);
            pool.zeros.push(zero);
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
    let bits = xor_tree(e, by_rank, ltz_bit_count)?;
    store_ltz(pool, &specs[0], &dealt[0], &bits[..ltz_bit_count], ranks);
    store_trunc(
        pool,
        &trunc,
        &specs[1..],
        &dealt[1..],
        &bits[ltz_bit_count..],
        ranks,
    );
    Ok(())
}

/// Comparison material: the XORed bits and the sum of the dealers' bounded values.
fn store_ltz(pool: &mut Pool, s: &Spec, dealt: &[Fp], bits: &[Fp], ranks: usize) {
    let c = s.comps();
    pool.ltz_bits.extend_from_slice(bits);
    for j in 0..s.items {
        let mut hi = Fp::ZERO;
        for r in 0..ranks {
            hi += dealt[(j * ranks + r) * c + s.bits];
        }
        pool.ltz_hi.push(hi);
    }
}

/// Truncation masks: `r2t = 2^m r'' + r' + zero` and `r_hi = r''` per item, per shift.
fn store_trunc(
    pool: &mut Pool,
    trunc: &[(u32, usize)],
    specs: &[Spec],
    dealt: &[Secret],
    bits: &[Fp],
    ranks: usize,
) {
    let mut at = 0;
    for ((&(m, count), s), out) in trunc.iter().zip(specs).zip(dealt) {
        let c = s.comps();
        let entry = pool.trunc.entry(m).or_default();
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
}
