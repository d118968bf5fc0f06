//! Property tests: every protocol's opened result equals the plaintext `fx` function exactly
//! (linear operations, products without truncation, comparisons, max, argmax) or within the
//! error bound derived in docs/protocol.md, for (n, t) in {(3,1), (4,1), (5,2), (7,3)}.

mod common;
use common::{CONFIGS, secure};
use mesh::Share;
use mesh::fx::{self, FRAC_BITS, HI_FRAC_BITS};
use proptest::prelude::*;

fn config() -> impl Strategy<Value = (usize, usize)> {
    prop::sample::select(CONFIGS.to_vec())
}

/// `got` is `fx::trunc` or one more.
fn within_one_up(got: i64, floor: i64) -> bool {
    got == floor || got == floor + 1
}

fn exp_bound(got: i64, want: i64) -> bool {
    (0..=2).contains(&(got - want))
}

fn recip_bound(got: i64, want: i64) -> bool {
    (got - want).abs() <= 4 + (want >> 30)
}

/// `8 + y^2 + 1/y` in units of the result plus a relative `2^-30` (y = fx::rsqrt(x) in
/// HI_FRAC_BITS): the truncation errors of `a = y^2` and `b = x y` enter the last step
/// multiplied by `b / 2^33` and `a / 2^33`.
fn rsqrt_bound_raw(y: i128) -> i128 {
    8 + ((y * y) >> 64) + (1i128 << 32) / y.max(1) + (y >> 30)
}

fn rsqrt_bound(got: i64, want: i64) -> bool {
    i128::from((got - want).abs()) <= rsqrt_bound_raw(i128::from(want))
}

fn bits_range(bits: u32) -> std::ops::Range<i64> {
    -(1i64 << bits)..(1i64 << bits)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]

    #[test]
    fn linear_ops_and_products_are_exact(
        (n, t) in config(),
        seed in any::<u64>(),
        xy in prop::collection::vec((bits_range(20), bits_range(20)), 1..8),
        k in -1000i64..1000,
    ) {
        let (x, y): (Vec<i64>, Vec<i64>) = xy.into_iter().unzip();
        let l = x.len();
        let got = secure(n, t, seed, &[&x, &y], 5 * l + 1, |p, v| {
            let (a, b) = (&v[0], &v[1]);
            let mut out: Vec<Share> = a.iter().zip(b).map(|(a, b)| a.add(b)).collect();
            out.extend(a.iter().zip(b).map(|(a, b)| a.sub(b)));
            out.extend(a.iter().map(|a| a.scale(i128::from(k)).add_public(7)));
            let ab = p.mul(a, b)?;
            out.extend(p.mul(&ab, b)?); // a product of a product: two reductions
            out.extend(ab);
            out.extend(p.dot(a, b)?);
            Ok(out)
        });
        for i in 0..l {
            prop_assert_eq!(got[i], x[i] + y[i]);
            prop_assert_eq!(got[l + i], x[i] - y[i]);
            prop_assert_eq!(got[2 * l + i], x[i] * k + 7);
            prop_assert_eq!(got[3 * l + i], x[i] * y[i] * y[i]);
            prop_assert_eq!(got[4 * l + i], x[i] * y[i]);
        }
        prop_assert_eq!(i128::from(got[5 * l]), fx::dot_wide(&x, &y));
    }

    #[test]
    fn truncations_are_floor_or_floor_plus_one(
        (n, t) in config(),
        seed in any::<u64>(),
        xy in prop::collection::vec((bits_range(39), bits_range(39)), 1..8),
        m in 1u32..64,
    ) {
        // Results must fit i64 for the client: small shifts get smaller inputs.
        let shrink = if m < 16 { 9 } else { 0 };
        let (x, y): (Vec<i64>, Vec<i64>) = xy.into_iter().map(|(a, b)| (a >> shrink, b >> shrink)).unzip();
        let l = x.len();
        let got = secure(n, t, seed, &[&x, &y], 3 * l + 1, |p, v| {
            let mut out = p.mul_trunc(&v[0], &v[1], m)?;
            out.extend(p.trunc(&v[0], m)?);
            out.extend(p.mul_fx(&v[0], &v[1])?);
            out.extend(p.dot_trunc(&v[0], &v[1], m)?);
            Ok(out)
        });
        for i in 0..l {
            let prod = i128::from(x[i]) * i128::from(y[i]);
            prop_assert!(within_one_up(got[i], fx::trunc(prod, m)), "mul_trunc {} {}", got[i], fx::trunc(prod, m));
            prop_assert!(within_one_up(got[l + i], fx::trunc(i128::from(x[i]), m)));
            prop_assert!(within_one_up(got[2 * l + i], fx::trunc(prod, FRAC_BITS)));
        }
        prop_assert!(within_one_up(got[3 * l], fx::trunc(fx::dot_wide(&x, &y), m)));
    }

    #[test]
    fn dot_trunc_matches_fx_dot(
        (n, t) in config(),
        seed in any::<u64>(),
        cols in prop::sample::select(vec![1usize, 7, 64]),
        rows in 1usize..4,
        vals in prop::collection::vec(-(2i64 << 16)..(2 << 16), 64 * 4 + 64),
    ) {
        let w: Vec<i64> = vals[..rows * cols].to_vec();
        let x: Vec<i64> = vals[256..256 + cols].to_vec();
        let got = secure(n, t, seed, &[&w, &x], rows, |p, v| p.dot_trunc(&v[0], &v[1], FRAC_BITS));
        for r in 0..rows {
            prop_assert!(within_one_up(got[r], fx::dot(&w[r * cols..(r + 1) * cols], &x)));
        }
    }

    #[test]
    fn ltz_is_exact(
        (n, t) in config(),
        seed in any::<u64>(),
        mut x in prop::collection::vec(-(1i64 << 31) + 1..(1i64 << 31), 1..10),
    ) {
        x.extend([0, -1, 1, (1 << 31) - 1, -(1 << 31) + 1]);
        let got = secure(n, t, seed, &[&x], x.len(), |p, v| p.ltz(&v[0]));
        for (g, xi) in got.iter().zip(&x) {
            prop_assert_eq!(*g, fx::ltz(*xi), "x = {}", xi);
        }
    }

    #[test]
    fn max_and_argmax_are_exact(
        (n, t) in config(),
        seed in any::<u64>(),
        row_len in 1usize..10,
        rows in 1usize..3,
        vals in prop::collection::vec(-4i64..4, 30),
        scale in prop::sample::select(vec![1i64, 1 << 16, 1 << 26]),
    ) {
        // Few distinct values so ties are common.
        let x: Vec<i64> = vals[..rows * row_len].iter().map(|v| v * scale).collect();
        let got = secure(n, t, seed, &[&x], 3 * rows, |p, v| {
            let mut out = p.max(&v[0], row_len)?;
            out.extend(p.argmax(&v[0], row_len)?);
            let (_, i) = p.max_argmax(&v[0], row_len)?;
            out.extend(i);
            Ok(out)
        });
        for r in 0..rows {
            let (m, i) = fx::max_argmax(&x[r * row_len..(r + 1) * row_len]);
            prop_assert_eq!(got[r], m);
            prop_assert_eq!(got[rows + r], i as i64);
            prop_assert_eq!(got[2 * rows + r], i as i64);
        }
    }

    #[test]
    fn argmax_onehot_is_fx_argmax(
        (n, t) in config(),
        seed in any::<u64>(),
        vals in prop::collection::vec(-6i64..6, 1..20),
        scale in prop::sample::select(vec![1i64, 1 << 16, 1 << 26]),
    ) {
        // Few distinct values so ties are common (the lower index must win, as in fx).
        let x: Vec<i64> = vals.iter().map(|v| v * scale).collect();
        let l = x.len();
        let got = secure(n, t, seed, &[&x], l + 1, |p, v| {
            let (mut row, index) = p.argmax_onehot(&v[0])?;
            row.push(index);
            Ok(row)
        });
        let want = fx::argmax(&x);
        for (j, &g) in got[..l].iter().enumerate() {
            prop_assert_eq!(g, i64::from(j == want), "row entry {}", j);
        }
        prop_assert_eq!(got[l], want as i64);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(8))]

    #[test]
    fn exp_within_two_ulps_above(
        (n, t) in config(),
        seed in any::<u64>(),
        mut x in prop::collection::vec(-(1i64 << 26)..=(1 << 16), 1..12),
    ) {
        x.extend([0, 1 << 16, -(1 << 26), -(14 << 16)]);
        let got = secure(n, t, seed, &[&x], x.len(), |p, v| p.exp(&v[0]));
        for (g, xi) in got.iter().zip(&x) {
            prop_assert!(exp_bound(*g, fx::exp(*xi)), "x={} got={} fx={}", xi, g, fx::exp(*xi));
        }
    }

    #[test]
    fn reciprocal_within_bound(
        (n, t) in config(),
        seed in any::<u64>(),
        e in prop::collection::vec(-4.0f64..14.0, 1..10),
    ) {
        let mut d: Vec<i64> = e.iter().map(|&e| fx::from_f64(2f64.powf(e), FRAC_BITS)).collect();
        d.extend([1 << 12, (1 << 30) - 1, 3 << 16]);
        let got = secure(n, t, seed, &[&d], d.len(), |p, v| p.reciprocal(&v[0]));
        for (g, di) in got.iter().zip(&d) {
            let w = fx::reciprocal(*di);
            prop_assert!(recip_bound(*g, w), "d={} got={} fx={}", di, g, w);
        }
    }

    #[test]
    fn reciprocal_in_a_public_range_equals_the_full_guess(
        (n, t) in config(),
        seed in any::<u64>(),
        len in 1usize..200,
        e in prop::collection::vec(0.0f64..1.0, 1..10),
    ) {
        // Softmax denominators: 1 <= d <= len; the range decides the other comparisons.
        let hi = fx::from_f64(len as f64, FRAC_BITS);
        let mut d: Vec<i64> = e.iter().map(|&e| fx::ONE + ((hi - fx::ONE) as f64 * e) as i64).collect();
        d.extend([fx::ONE, hi]);
        let got = secure(n, t, seed, &[&d], d.len(), |p, v| p.reciprocal_in(&v[0], fx::ONE, hi));
        for (g, di) in got.iter().zip(&d) {
            let w = fx::reciprocal(*di);
            prop_assert!(recip_bound(*g, w), "d={} got={} fx={}", di, g, w);
        }
    }

    #[test]
    fn rsqrt_within_bound(
        (n, t) in config(),
        seed in any::<u64>(),
        e in prop::collection::vec(-10.0f64..10.0, 1..10),
    ) {
        let mut x: Vec<i64> = e.iter().map(|&e| fx::from_f64(2f64.powf(e), FRAC_BITS).max(64)).collect();
        x.extend([64, (1 << 26) - 1, 1 << 16]);
        let got = secure(n, t, seed, &[&x], x.len(), |p, v| p.rsqrt(&v[0]));
        for (g, xi) in got.iter().zip(&x) {
            let w = fx::rsqrt(*xi);
            prop_assert!(rsqrt_bound(*g, w), "x={} got={} fx={}", xi, g, w);
        }
    }

    #[test]
    fn silu_within_bound(
        (n, t) in config(),
        seed in any::<u64>(),
        mut x in prop::collection::vec(-(12i64 << 16)..(12 << 16), 1..12),
    ) {
        x.extend([0, 8 << 16, -(8 << 16), (8 << 16) - 1, -(8 << 16) - 1, 1]);
        let got = secure(n, t, seed, &[&x], x.len(), |p, v| p.silu(&v[0]));
        for (g, xi) in got.iter().zip(&x) {
            let w = fx::silu(*xi);
            prop_assert!((g - w).abs() <= 23, "x={} got={} fx={}", xi, g, w);
            if *xi < -(8 << 16) || *xi >= 8 << 16 {
                prop_assert_eq!(*g, w, "outside [-8, 8) silu is exact");
            }
        }
    }

    #[test]
    fn softmax_within_bound(
        (n, t) in config(),
        seed in any::<u64>(),
        row_len in 1usize..12,
        vals in prop::collection::vec(-(150i64 << 16)..(150 << 16), 24),
        small in any::<bool>(),
    ) {
        let x: Vec<i64> = vals[..2 * row_len].iter().map(|&v| if small { v / 40 } else { v }).collect();
        let got = secure(n, t, seed, &[&x], x.len(), |p, v| p.softmax(&v[0], row_len));
        for r in 0..2 {
            let want = fx::softmax(&x[r * row_len..(r + 1) * row_len]);
            for (g, w) in got[r * row_len..].iter().zip(&want) {
                let bound = 5 + 2 * row_len as i64 * w / (1 << 16);
                prop_assert!((g - w).abs() <= bound, "got={} fx={} bound={}", g, w, bound);
            }
        }
    }

    #[test]
    fn rmsnorm_within_bound(
        (n, t) in config(),
        seed in any::<u64>(),
        vals in prop::collection::vec(-(12i64 << 16)..(12 << 16), 2 * 16),
        gain in prop::collection::vec(-(4i64 << 16)..(4 << 16), 16),
    ) {
        let len = 16;
        let got = secure(n, t, seed, &[&vals, &gain], 2 * len + 2, |p, v| {
            let mut out = p.rmsnorm(&v[0], &v[1], len, 1e-5)?;
            out.extend(p.rms_inv(&v[0], len, 1e-5)?);
            Ok(out)
        });
        for r in 0..2 {
            let row = &vals[r * len..(r + 1) * len];
            let ms = fx::trunc(fx::dot_wide(row, row) * i128::from(fx::rms_inv_len(len)), FRAC_BITS + 16)
                + fx::rms_eps_raw(1e-5);
            let inv = fx::rms_inv(row, 1e-5);
            let y = i128::from(inv);
            let inv_bound = rsqrt_bound_raw(y) + (y >> 24) + y / i128::from(ms);
            prop_assert!(i128::from((got[2 * len + r] - inv).abs()) <= inv_bound,
                "rms_inv got={} fx={} bound={}", got[2 * len + r], inv, inv_bound);
            let want = fx::rmsnorm(row, &gain, 1e-5);
            for i in 0..len {
                let (xr, g) = (i128::from(row[i]), i128::from(gain[i]));
                let bound = 3 + ((g.abs() * (1 + xr.abs() * inv_bound / (1i128 << HI_FRAC_BITS))) >> FRAC_BITS);
                let d = i128::from((got[r * len + i] - want[i]).abs());
                prop_assert!(d <= bound, "rmsnorm got={} fx={} bound={}", got[r * len + i], want[i], bound);
            }
        }
    }
}

/// The largest configuration the design targets, (9, 4): the bit XOR tree has three levels.
#[test]
fn nine_parties_threshold_four() {
    let x: Vec<i64> = vec![3 << 16, -(5 << 16), 123_456, -1, 0, 7 << 16];
    let y: Vec<i64> = vec![-(2 << 16), 1 << 15, -99, 5, 1 << 16, 3];
    let l = x.len();
    let got = secure(9, 4, 11, &[&x, &y], 3 * l + 1, |p, v| {
        let mut out = p.mul_trunc(&v[0], &v[1], FRAC_BITS)?;
        out.extend(p.ltz(&v[0])?);
        out.extend(p.mul(&v[0], &v[1])?);
        out.extend(p.argmax(&v[0], l)?);
        Ok(out)
    });
    for i in 0..l {
        let prod = i128::from(x[i]) * i128::from(y[i]);
        assert!(within_one_up(got[i], fx::trunc(prod, FRAC_BITS)));
        assert_eq!(got[l + i], fx::ltz(x[i]));
        assert_eq!(i128::from(got[2 * l + i]), prod);
    }
    assert_eq!(got[3 * l], fx::argmax(&x) as i64);
}

/// Every party switches to another active set of 2t+1 parties (as after losing one): the
/// protocols give the same results, and the inactive party only receives.
#[test]
fn any_active_set_of_2t_plus_1_works() {
    let x: Vec<i64> = vec![3 << 16, -(5 << 16), 77, -1];
    let l = x.len();
    for active in [[1usize, 2, 3], [0, 2, 3], [0, 1, 3]] {
        let got = secure(4, 1, 5, &[&x], 2 * l, |p, v| {
            p.set_active(&active)?;
            let c0 = p.counters();
            let mut out = p.mul_trunc(&v[0], &v[0], FRAC_BITS)?;
            out.extend(p.ltz(&v[0])?);
            let d = p.counters().since(&c0);
            if !active.contains(&p.index()) {
                assert_eq!(
                    d.online.messages + d.offline.messages,
                    0,
                    "inactive party sent"
                );
            }
            Ok(out)
        });
        for i in 0..l {
            let sq = i128::from(x[i]) * i128::from(x[i]);
            assert!(
                within_one_up(got[i], fx::trunc(sq, FRAC_BITS)),
                "active {active:?}"
            );
            assert_eq!(got[l + i], fx::ltz(x[i]));
        }
    }
}
