//! The fixed-point number format and the plaintext definition of every approximation.
//!
//! This module is the contract between the plaintext fixed-point twin (in `models`) and the
//! secure protocols (in this crate): both compute *these* functions, step for step, with the
//! same constants and iteration counts. The only difference allowed is truncation: here a
//! truncation is an exact floor; the secure engine's probabilistic truncation returns the floor
//! or the floor plus one (one unit in the last place, "ulp").
//!
//! Numbers are signed integers `raw` standing for `raw / 2^frac`. Activations and weights use
//! [`FRAC_BITS`] = 16; the inner loops of exp, reciprocal, inverse square root and SiLU run with
//! [`HI_FRAC_BITS`] = 32 so their truncation errors stay far below an activation ulp.
//!
//! Every step below is one of: a local linear operation (add, subtract, multiply by a public
//! integer, add a public constant), a product of two secret values followed by exactly one
//! truncation (the secure engine fuses the two into one round), or a comparison with zero
//! ([`ltz`]). `docs/numerics.md` gives the measured error of each function against f64.

/// Fractional bits of activations and weights.
pub const FRAC_BITS: u32 = 16;
/// `1.0` in the activation format.
pub const ONE: i64 = 1 << FRAC_BITS;
/// Fractional bits of the inner loops of exp, reciprocal, rsqrt and SiLU's powers.
pub const HI_FRAC_BITS: u32 = 32;

/// Comparisons ([`ltz`] and everything built on it) are exact for `|x| < 2^(CMP_BITS - 1)` raw,
/// i.e. activation values of magnitude below 2^15.
pub const CMP_BITS: u32 = 32;
/// Every value entering a truncation has `|v| < 2^(TRUNC_BITS - 1)`. With statistical security
/// kappa = 40 the secure engine needs a field of at least `TRUNC_BITS + 40 + 1` bits
/// (it uses 2^127 - 1). The functions below are designed to stay inside this bound on their
/// documented domains.
pub const TRUNC_BITS: u32 = 80;

/// exp(x) is computed as `(1 + u + u^2/2)^(2^EXP_SQUARINGS)` with `u = x / 2^EXP_SQUARINGS`: the
/// second-order base costs one product more than `1 + u` and cuts the relative error from
/// `x^2 / 2^(m+1)` to about `|x|^3 / (6 * 4^m)`, which took the fixed-point engine's logit error
/// over a 64-token generation from 0.0169 to below 0.01 (see `docs/numerics.md`).
///
/// Domain: `-2^EXP_SQUARINGS <= x <= 1` (so `u >= -1`, the base stays in `[1/2, e]`, is
/// monotone, and nothing overflows); softmax feeds it `score - row max`, which is `<= 0` and,
/// for stories260K over 256 positions, `>= -226`.
pub const EXP_SQUARINGS: u32 = 10;

/// Reciprocal: initial guess `2^-(k+1)` for `d` in `[2^k, 2^(k+1))`, found by comparing `d` with
/// the powers of two `2^j` for `j` in `RECIP_MIN_LOG2 < j < RECIP_MAX_LOG2`; then
/// [`RECIP_ITERS`] Newton steps. Domain: `2^RECIP_MIN_LOG2 <= d < 2^RECIP_MAX_LOG2`.
pub const RECIP_MIN_LOG2: i32 = -4;
/// Upper end of the reciprocal's domain (exclusive), as a power of two.
pub const RECIP_MAX_LOG2: i32 = 14;
/// Newton steps of the reciprocal: `d * y0` is in `[1/2, 1)`, so the relative error is at most
/// 1/2 and squares each step: 2^-16 after four.
pub const RECIP_ITERS: u32 = 4;

/// Inverse square root: initial guess `2^-(k + 1/2)/2` for `x` in `[2^k, 2^(k+1))` (a table,
/// [`RSQRT_GUESS`]), then [`RSQRT_ITERS`] Newton steps. Domain:
/// `2^RSQRT_MIN_LOG2 <= x < 2^RSQRT_MAX_LOG2`.
pub const RSQRT_MIN_LOG2: i32 = -10;
/// Upper end of the inverse square root's domain (exclusive), as a power of two.
pub const RSQRT_MAX_LOG2: i32 = 10;
/// Newton steps of the inverse square root: the guess is within 2^(1/4) of the answer, so the
/// error `1 - x y^2` starts below 0.42 and falls to ~1e-2, ~1e-4, ~1e-8.
pub const RSQRT_ITERS: u32 = 4;
/// `round(2^32 * 2^(-(k + 0.5) / 2))` for `k = RSQRT_MIN_LOG2 .. RSQRT_MAX_LOG2`: the initial
/// guess for `x` in `[2^k, 2^(k+1))`, in [`HI_FRAC_BITS`]. Generated once (see
/// `docs/numerics.md`) and fixed here so every platform computes the same bits.
pub const RSQRT_GUESS: [i64; 20] = [
    115571923291,
    81721690674,
    57785961645,
    40860845337,
    28892980823,
    20430422668,
    14446490411,
    10215211334,
    7223245206,
    5107605667,
    3611622603,
    2553802834,
    1805811301,
    1276901417,
    902905651,
    638450708,
    451452825,
    319225354,
    225726413,
    159612677,
];

/// SiLU is `x` for `x >= 8`, `0` for `x < -8`, and `x/2 + g(s)` in between, where
/// `s = x^2 / 64` in `[0, 1]` and `g(s) = sum SILU_COEFFS[k] s^k / 2^SILU_COEFF_FRAC` is a
/// least-squares fit of `(x/2) tanh(x/2)` (max error 1.3e-4 on `[-8, 8]`; at the cut-offs
/// SiLU itself differs from `x` or `0` by at most 2.7e-3).
pub const SILU_CUT_LOG2: u32 = 3;
/// Fractional bits of [`SILU_COEFFS`].
pub const SILU_COEFF_FRAC: u32 = 24;
/// Coefficients of `g(s)`, lowest degree first (degree 12: the powers `s^1..s^12` take five
/// rounds, fewer than the comparisons that run beside them).
pub const SILU_COEFFS: [i64; 13] = [
    2155,
    267599390,
    -1375707538,
    7602605201,
    -34684625763,
    120864910582,
    -309992744727,
    573299397858,
    -750106156723,
    674628936521,
    -395815310458,
    136211856770,
    -20833700202,
];

/// `x` (in the given fractional bits) to the nearest raw integer.
pub fn from_f64(x: f64, frac: u32) -> i64 {
    (x * (1u64 << frac) as f64).round() as i64
}

/// An f32 to the activation format ([`FRAC_BITS`]), rounding to nearest.
pub fn from_f32(x: f32) -> i64 {
    from_f64(f64::from(x), FRAC_BITS)
}

/// A raw value with `frac` fractional bits back to f64.
pub fn to_f64(raw: i64, frac: u32) -> f64 {
    raw as f64 / (1u64 << frac) as f64
}

/// An activation-format value back to f32.
pub fn to_f32(raw: i64) -> f32 {
    to_f64(raw, FRAC_BITS) as f32
}

/// `floor(x / 2^bits)`: the plaintext truncation. The secure engine returns this or this + 1.
pub fn trunc(x: i128, bits: u32) -> i64 {
    (x >> bits) as i64
}

/// Product of two activation-format values.
pub fn mul(a: i64, b: i64) -> i64 {
    trunc(i128::from(a) * i128::from(b), FRAC_BITS)
}

/// The exact (untruncated) dot product; the secure engine sums the local products and reduces
/// the degree once per output, so the sum is exact and only the final truncation rounds.
pub fn dot_wide(a: &[i64], b: &[i64]) -> i128 {
    debug_assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(&x, &y)| i128::from(x) * i128::from(y))
        .sum()
}

/// Dot product of two activation-format vectors, truncated once.
pub fn dot(a: &[i64], b: &[i64]) -> i64 {
    trunc(dot_wide(a, b), FRAC_BITS)
}

/// 1 if `x < 0`, else 0 (exact for `|x| < 2^(CMP_BITS-1)`).
pub fn ltz(x: i64) -> i64 {
    i64::from(x < 0)
}

/// The comparison tree shared by [`max`] and [`argmax`]: level by level, pair `(2i, 2i+1)` is
/// replaced by the right element if it is strictly greater than the left (so ties keep the
/// lower index, as llama2.c's argmax does); an odd last element is carried up unchanged.
/// Returns (max value, its index). `xs` must not be empty.
pub fn max_argmax(xs: &[i64]) -> (i64, usize) {
    assert!(!xs.is_empty(), "max over an empty vector");
    let mut level: Vec<(i64, usize)> = xs.iter().copied().zip(0..).collect();
    while level.len() > 1 {
        let mut next = Vec::with_capacity(level.len().div_ceil(2));
        for pair in level.chunks(2) {
            match pair {
                [a, b] => {
                    // c = [a < b] = ltz(a - b); winner = a + c (b - a)
                    let c = ltz(a.0 - b.0);
                    next.push((a.0 + c * (b.0 - a.0), if c == 1 { b.1 } else { a.1 }));
                }
                [a] => next.push(*a),
                _ => unreachable!("chunks(2) yields one or two elements"),
            }
        }
        level = next;
    }
    level[0]
}

/// Maximum by the comparison tree of [`max_argmax`].
pub fn max(xs: &[i64]) -> i64 {
    max_argmax(xs).0
}

/// Index of the first maximum, by the comparison tree of [`max_argmax`].
pub fn argmax(xs: &[i64]) -> usize {
    max_argmax(xs).1
}

/// `exp(x)` for `x` in the activation format (domain `[-2^EXP_SQUARINGS, 1]`), result in the
/// activation format.
pub fn exp(x: i64) -> i64 {
    // u = x / 2^m, exactly, in HI_FRAC_BITS: a local shift of x, no truncation.
    let u = x << (HI_FRAC_BITS - FRAC_BITS - EXP_SQUARINGS);
    // u^2 / 2 in HI_FRAC_BITS: one product, the halving folded into its truncation.
    let half_u2 = trunc(i128::from(u) * i128::from(u), HI_FRAC_BITS + 1);
    let mut y = (1i64 << HI_FRAC_BITS) + u + half_u2;
    for i in 0..EXP_SQUARINGS {
        // The last squaring truncates straight down to the activation format.
        let bits = if i + 1 == EXP_SQUARINGS {
            2 * HI_FRAC_BITS - FRAC_BITS
        } else {
            HI_FRAC_BITS
        };
        y = trunc(i128::from(y) * i128::from(y), bits);
    }
    y
}

/// A step function `base + sum_j [x >= threshold_j] * increment_j`: the form of the initial
/// guesses of [`reciprocal`] and [`rsqrt`]. The secure engine computes each `[x >= t]` as
/// `1 - ltz(x - t)` (all in one batch) and the sum locally.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StepGuess {
    /// Value below the first threshold.
    pub base: i64,
    /// `(threshold in the activation format, increment)` pairs.
    pub steps: Vec<(i64, i64)>,
}

impl StepGuess {
    /// The same function on `lo <= x <= hi`, without the comparisons whose outcome that range
    /// decides (thresholds `<= lo` always pass, thresholds `> hi` never do). Callers that know
    /// such a public range (a softmax denominator lies in `[1, L]`) save those comparisons and
    /// still get exactly [`StepGuess::eval`]'s value.
    pub fn restrict(&self, lo: i64, hi: i64) -> StepGuess {
        let mut base = self.base;
        let mut steps = Vec::with_capacity(self.steps.len());
        for &(t, inc) in &self.steps {
            if t <= lo {
                base += inc;
            } else if t <= hi {
                steps.push((t, inc));
            }
        }
        StepGuess { base, steps }
    }

    /// Evaluate in the clear.
    pub fn eval(&self, x: i64) -> i64 {
        self.steps
            .iter()
            .map(|&(t, inc)| (1 - ltz(x - t)) * inc)
            .sum::<i64>()
            + self.base
    }
}

/// Raw activation-format value of `2^j` (for `j >= -16`).
fn pow2_raw(j: i32) -> i64 {
    let e = j + FRAC_BITS as i32;
    debug_assert!((0..62).contains(&e));
    1i64 << e
}

/// The reciprocal's initial guess: `2^-(k+1)` in [`HI_FRAC_BITS`] for `d` in `[2^k, 2^(k+1))`.
pub fn reciprocal_guess() -> StepGuess {
    let hi = HI_FRAC_BITS as i32;
    // Below 2^(MIN+1) the guess is 2^-(MIN+1); each threshold 2^j crossed halves it.
    StepGuess {
        base: 1i64 << (hi - RECIP_MIN_LOG2 - 1),
        steps: (RECIP_MIN_LOG2 + 1..RECIP_MAX_LOG2)
            .map(|j| (pow2_raw(j), -(1i64 << (hi - j - 1))))
            .collect(),
    }
}

/// `1/d` for `d` in the activation format (domain `[2^RECIP_MIN_LOG2, 2^RECIP_MAX_LOG2)`),
/// result in [`HI_FRAC_BITS`].
pub fn reciprocal(d: i64) -> i64 {
    reciprocal_from_guess(d, reciprocal_guess().eval(d))
}

/// [`reciprocal`]'s Newton steps from a given initial guess (HI format).
pub fn reciprocal_from_guess(d: i64, guess: i64) -> i64 {
    let mut y = guess;
    for _ in 0..RECIP_ITERS {
        // e = d*y in HI_FRAC_BITS (about 1); y <- y (2 - e)
        let e = trunc(i128::from(d) * i128::from(y), FRAC_BITS);
        let two = 2i64 << HI_FRAC_BITS;
        y = trunc(i128::from(y) * i128::from(two - e), HI_FRAC_BITS);
    }
    y
}

/// The inverse square root's initial guess ([`RSQRT_GUESS`] as a step function).
pub fn rsqrt_guess() -> StepGuess {
    StepGuess {
        base: RSQRT_GUESS[0],
        steps: (RSQRT_MIN_LOG2 + 1..RSQRT_MAX_LOG2)
            .zip(RSQRT_GUESS.windows(2))
            .map(|(j, w)| (pow2_raw(j), w[1] - w[0]))
            .collect(),
    }
}

/// `1/sqrt(x)` for `x` in the activation format (domain `[2^RSQRT_MIN_LOG2, 2^RSQRT_MAX_LOG2)`),
/// result in [`HI_FRAC_BITS`].
pub fn rsqrt(x: i64) -> i64 {
    let mut y = rsqrt_guess().eval(x);
    for _ in 0..RSQRT_ITERS {
        // One round: a = y^2, b = x y (both HI_FRAC_BITS). Next round:
        // y <- (3 y - a b) / 2, with the halving folded into the one truncation.
        let a = trunc(i128::from(y) * i128::from(y), HI_FRAC_BITS);
        let b = trunc(i128::from(x) * i128::from(y), FRAC_BITS);
        let three_y = (3 * i128::from(y)) << HI_FRAC_BITS;
        y = trunc(three_y - i128::from(a) * i128::from(b), HI_FRAC_BITS + 1);
    }
    y
}

/// The powers `s^1 ..= s^n` (HI_FRAC_BITS) computed by the fixed schedule the secure engine
/// uses: `s^k = s^h * s^(k-h)` with `h` the highest power of two below `k` (depth
/// `ceil(log2 n)` rounds). Index 0 of the result is `s^1`.
pub fn powers(s: i64, n: usize) -> Vec<i64> {
    let mut p = vec![s];
    for k in 2..=n {
        let h = 1usize << (usize::BITS - 1 - (k - 1).leading_zeros());
        let v = trunc(
            i128::from(p[h - 1]) * i128::from(p[k - h - 1]),
            HI_FRAC_BITS,
        );
        p.push(v);
    }
    p
}

/// The unnormalised polynomial part of SiLU: `x/2 + g(x^2/64)` scaled by
/// `2^(HI_FRAC_BITS + SILU_COEFF_FRAC)`, exact from the powers.
pub fn silu_poly_wide(x: i64, powers_of_s: &[i64]) -> i128 {
    let scale_x = HI_FRAC_BITS + SILU_COEFF_FRAC - FRAC_BITS - 1; // x/2 at the wide scale
    let mut acc = i128::from(x) << scale_x;
    acc += i128::from(SILU_COEFFS[0]) << HI_FRAC_BITS;
    for (c, p) in SILU_COEFFS[1..].iter().zip(powers_of_s) {
        acc += i128::from(*c) * i128::from(*p);
    }
    acc
}

/// SiLU `x * sigmoid(x)` in the activation format.
///
/// Domain for the secure engine: `|x| < 12`. The result is right for any `x` (outside
/// `[-8, 8)` the polynomial is multiplied by 0), but beyond `|x| ~ 12.3` the powers `s^k`
/// exceed [`TRUNC_BITS`], so their masked openings would no longer hide them statistically.
/// stories260K's SwiGLU inputs stay below 6; the twin rejects inputs outside the domain.
pub fn silu(x: i64) -> i64 {
    let cut = pow2_raw(SILU_CUT_LOG2 as i32);
    // s = x^2 / 2^(2 cut) in HI_FRAC_BITS: x*x is at scale 2^(2 FRAC_BITS) = 2^HI_FRAC_BITS.
    let s = trunc(i128::from(x) * i128::from(x), 2 * SILU_CUT_LOG2);
    let p = powers(s, SILU_COEFFS.len() - 1);
    let below = ltz(x + cut); // x < -8
    let below_hi = ltz(x - cut); // x < 8
    let inside = below_hi - below;
    let above = 1 - below_hi;
    let wide_bits = HI_FRAC_BITS + SILU_COEFF_FRAC - FRAC_BITS;
    // One fused product-and-truncate: inside * poly + above * x, both at the wide scale.
    let v = i128::from(inside) * silu_poly_wide(x, &p)
        + i128::from(above) * (i128::from(x) << wide_bits);
    trunc(v, wide_bits)
}

/// `1 / sqrt(mean(x^2) + eps)` in [`HI_FRAC_BITS`] for an activation-format vector.
///
/// `mean(x^2)` is `sum(x^2) * round(2^16 / len)` truncated once (exact for power-of-two lengths);
/// `eps` is added as a raw constant.
pub fn rms_inv(x: &[i64], eps: f32) -> i64 {
    let inv_len = rms_inv_len(x.len());
    let ms = trunc(dot_wide(x, x) * i128::from(inv_len), FRAC_BITS + 16);
    rsqrt(ms + rms_eps_raw(eps))
}

/// `round(2^16 / len)`: the public multiplier that turns a sum of squares into a mean.
pub fn rms_inv_len(len: usize) -> i64 {
    ((1u64 << 16) as f64 / len as f64).round() as i64
}

/// RMSNorm's epsilon in the activation format, at least one ulp so the input stays positive.
pub fn rms_eps_raw(eps: f32) -> i64 {
    from_f32(eps).max(1)
}

/// Scale an activation-format value by a [`HI_FRAC_BITS`] factor (one product, one truncation).
pub fn scale_hi(x: i64, factor_hi: i64) -> i64 {
    trunc(i128::from(x) * i128::from(factor_hi), HI_FRAC_BITS)
}

/// RMSNorm `x * rms_inv(x) * gain`, all in the activation format.
pub fn rmsnorm(x: &[i64], gain: &[i64], eps: f32) -> Vec<i64> {
    let inv = rms_inv(x, eps);
    x.iter()
        .zip(gain)
        .map(|(&xi, &g)| mul(scale_hi(xi, inv), g))
        .collect()
}

/// Softmax of an activation-format vector: `e_i = exp(x_i - max)`, `r = 1 / sum e`,
/// `p_i = e_i * r` (one truncation from the wide product).
pub fn softmax(xs: &[i64]) -> Vec<i64> {
    let m = max(xs);
    let e: Vec<i64> = xs.iter().map(|&x| exp(x - m)).collect();
    let r = reciprocal(e.iter().sum());
    e.iter().map(|&ei| scale_hi(ei, r)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn f(raw: i64) -> f64 {
        to_f64(raw, FRAC_BITS)
    }
    fn hi(raw: i64) -> f64 {
        to_f64(raw, HI_FRAC_BITS)
    }

    #[test]
    fn rsqrt_table_matches_its_definition() {
        for (i, &g) in RSQRT_GUESS.iter().enumerate() {
            let k = RSQRT_MIN_LOG2 + i as i32;
            let want = 2f64.powf(32.0 - (f64::from(k) + 0.5) / 2.0);
            assert!((g as f64 - want).abs() <= 1.0, "k={k}: {g} vs {want}");
        }
    }

    #[test]
    fn guesses_are_powers_of_two_at_bucket_edges() {
        let rg = reciprocal_guess();
        for k in RECIP_MIN_LOG2..RECIP_MAX_LOG2 {
            let d = pow2_raw(k);
            assert_eq!(rg.eval(d), 1i64 << (32 - k - 1), "k={k}");
            assert_eq!(
                rsqrt_guess().eval(pow2_raw(k.clamp(-10, 9))),
                RSQRT_GUESS[(k.clamp(-10, 9) + 10) as usize]
            );
        }
    }

    proptest! {
        #[test]
        fn restricted_guesses_agree_on_their_range(a in -(1i64 << 31)..(1i64 << 31), b in -(1i64 << 31)..(1i64 << 31), x in -(1i64 << 31)..(1i64 << 31)) {
            let (lo, hi) = (a.min(b), a.max(b));
            let x = x.clamp(lo, hi);
            for g in [reciprocal_guess(), rsqrt_guess()] {
                prop_assert_eq!(g.restrict(lo, hi).eval(x), g.eval(x));
            }
        }
    }

    #[test]
    fn argmax_keeps_the_first_of_equal_maxima() {
        assert_eq!(max_argmax(&[3, 7, 7, 1, 7]), (7, 1));
        assert_eq!(max_argmax(&[5]), (5, 0));
        assert_eq!(max_argmax(&[-2, -9, -1]), (-1, 2));
    }

    proptest! {
        #[test]
        fn mul_is_within_one_ulp(a in -1e3f64..1e3, b in -1e3f64..1e3) {
            let (ra, rb) = (from_f64(a, FRAC_BITS), from_f64(b, FRAC_BITS));
            let exact = f(ra) * f(rb);
            prop_assert!((f(mul(ra, rb)) - exact).abs() <= 1.0 / ONE as f64);
        }

        #[test]
        fn max_argmax_match_iterators(xs in proptest::collection::vec(-1_000_000i64..1_000_000, 1..70)) {
            let (m, i) = max_argmax(&xs);
            prop_assert_eq!(m, *xs.iter().max().unwrap());
            prop_assert_eq!(i, xs.iter().position(|&x| x == m).unwrap());
        }

        #[test]
        fn exp_error_on_its_domain(x in -1024.0f64..=1.0) {
            let xq = f(from_f64(x, FRAC_BITS));
            let got = f(exp(from_f64(x, FRAC_BITS)));
            // Base error: relative |x|^3 / (6 * 4^m) (< 1e-7 at |x| = 1, 1e-5 at |x| = 4); the
            // ten truncations by 2^-32 grow by at most 2^10 through the squarings; the result is
            // rounded down to 2^-16.
            let bound = xq.exp() * (xq.abs().powi(3) / 6.0 / 4f64.powi(10) + 1e-6) + 2.0 / ONE as f64;
            prop_assert!((got - xq.exp()).abs() <= bound, "x={x} got={got} want={} bound={bound}", xq.exp());
        }

        #[test]
        fn reciprocal_error_on_its_domain(d in 0.0625f64..16384.0) {
            let raw = from_f64(d, FRAC_BITS);
            let got = hi(reciprocal(raw));
            let want = 1.0 / f(raw);
            prop_assert!((got - want).abs() <= want * 4e-5 + 4.0 / (1u64 << 32) as f64,
                "d={d} got={got} want={want}");
        }

        #[test]
        fn rsqrt_error_on_its_domain(x in 0.0009765625f64..1024.0) {
            let raw = from_f64(x, FRAC_BITS);
            let got = hi(rsqrt(raw));
            let want = 1.0 / f(raw).sqrt();
            prop_assert!((got - want).abs() <= want * 1e-6 + 8.0 / (1u64 << 32) as f64,
                "x={x} got={got} want={want}");
        }

        #[test]
        fn silu_error(x in -40.0f64..40.0) {
            let raw = from_f64(x, FRAC_BITS);
            let xq = f(raw);
            let want = xq / (1.0 + (-xq).exp());
            let got = f(silu(raw));
            prop_assert!((got - want).abs() <= 2.8e-3, "x={x} got={got} want={want}");
            if xq.abs() < 6.0 {
                prop_assert!((got - want).abs() <= 2.0e-4, "x={x} got={got} want={want}");
            }
        }

        #[test]
        fn softmax_sums_to_one(xs in proptest::collection::vec(-150.0f64..150.0, 1..80)) {
            let raw: Vec<i64> = xs.iter().map(|&x| from_f64(x, FRAC_BITS)).collect();
            let p = softmax(&raw);
            let m = xs.iter().cloned().fold(f64::MIN, f64::max);
            let z: f64 = xs.iter().map(|x| (x - m).exp()).sum();
            for (pi, x) in p.iter().zip(&xs) {
                prop_assert!((f(*pi) - (x - m).exp() / z).abs() <= 1e-3);
            }
        }

        #[test]
        fn rmsnorm_error(xs in proptest::collection::vec(-12.0f64..12.0, 64)) {
            let raw: Vec<i64> = xs.iter().map(|&x| from_f64(x, FRAC_BITS)).collect();
            let ms: f64 = raw.iter().map(|&r| f(r) * f(r)).sum::<f64>() / 64.0;
            prop_assume!(ms > 2e-3);
            let gain = vec![ONE; 64];
            let y = rmsnorm(&raw, &gain, 1e-5);
            let inv = 1.0 / (ms + 1e-5).sqrt();
            for (yi, &r) in y.iter().zip(&raw) {
                prop_assert!((f(*yi) - f(r) * inv).abs() <= 1e-4 * (1.0 + (f(r) * inv).abs()));
            }
        }
    }
}
