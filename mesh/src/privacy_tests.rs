//! Statistical privacy tests that can fail.
//!
//! (a) The shares held by any `t` parties are uniform and independent of the secret; the same
//!     statistic does see the dependence in the shares of `t + 1` parties.
//! (b) Everything a coalition of `t` parties receives during softmax-then-argmax (opened values
//!     and every message) has the same distribution for two different inputs, while two
//!     deliberately broken variants of the engine (a truncation mask reused within a batch; a
//!     truncation opened without its mask) are told apart by the same statistic.
//!
//! The statistic: per feature (for every recorded opening and every received message, in
//! protocol order: the low 4 bits of its elements; for openings also the low 4 bits of the
//! differences of consecutive elements), a chi-square test of two samples (2 x 16 contingency
//! table). A test fails if any p-value is below `1e-6 / features` (Bonferroni), so a correct
//! engine fails with probability below 1e-6 over the randomness; the runs use fixed seeds, so
//! the outcome is reproducible.

use crate::field::Fp;
use crate::memory::run_with_client;
use crate::protocols::trunc::Fault;
use crate::round::View;
use crate::shamir::{Share, Threshold, deal};
use rand::SeedableRng;
use rand_chacha::ChaCha12Rng;

/// `ln Gamma(x)` (Lanczos, g = 7).
fn ln_gamma(x: f64) -> f64 {
    const C: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    let x = x - 1.0;
    let mut a = C[0];
    let t = x + 7.5;
    for (i, c) in C.iter().enumerate().skip(1) {
        a += c / (x + i as f64);
    }
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + a.ln()
}

/// Upper tail `P(X >= x)` of a chi-square distribution with `k` degrees of freedom
/// (regularized upper incomplete gamma `Q(k/2, x/2)`).
fn chi2_sf(x: f64, k: f64) -> f64 {
    let (a, x) = (k / 2.0, x / 2.0);
    if x <= 0.0 {
        return 1.0;
    }
    let lead = (-x + a * x.ln() - ln_gamma(a)).exp();
    if x < a + 1.0 {
        // Series for P.
        let (mut sum, mut term, mut ap) = (1.0 / a, 1.0 / a, a);
        for _ in 0..1000 {
            ap += 1.0;
            term *= x / ap;
            sum += term;
            if term < sum * 1e-15 {
                break;
            }
        }
        1.0 - sum * lead
    } else {
        // Continued fraction for Q (modified Lentz).
        let tiny = 1e-300;
        let mut b = x + 1.0 - a;
        let mut c = 1.0 / tiny;
        let mut d = 1.0 / b;
        let mut h = d;
        for i in 1..1000 {
            let an = -(i as f64) * (i as f64 - a);
            b += 2.0;
            d = an * d + b;
            if d.abs() < tiny {
                d = tiny;
            }
            c = b + an / c;
            if c.abs() < tiny {
                c = tiny;
            }
            d = 1.0 / d;
            let del = d * c;
            h *= del;
            if (del - 1.0).abs() < 1e-15 {
                break;
            }
        }
        lead * h
    }
}

/// p-value of the chi-square test that two histograms come from the same distribution.
fn two_sample_p(a: &[u64], b: &[u64]) -> f64 {
    let (na, nb) = (a.iter().sum::<u64>() as f64, b.iter().sum::<u64>() as f64);
    if na == 0.0 || nb == 0.0 {
        return if na == nb { 1.0 } else { 0.0 };
    }
    let mut stat = 0.0;
    let mut bins = 0;
    for (&x, &y) in a.iter().zip(b) {
        let tot = (x + y) as f64;
        if tot == 0.0 {
            continue;
        }
        bins += 1;
        let ea = tot * na / (na + nb);
        let eb = tot * nb / (na + nb);
        stat += (x as f64 - ea).powi(2) / ea + (y as f64 - eb).powi(2) / eb;
    }
    if bins < 2 {
        return 1.0;
    }
    chi2_sf(stat, f64::from(bins - 1))
}

/// p-value of the chi-square goodness-of-fit test against the uniform distribution.
fn uniform_p(a: &[u64]) -> f64 {
    let n = a.iter().sum::<u64>() as f64;
    let e = n / a.len() as f64;
    let stat: f64 = a.iter().map(|&x| (x as f64 - e).powi(2) / e).sum();
    chi2_sf(stat, (a.len() - 1) as f64)
}

const BINS: usize = 16;

fn low4(x: Fp) -> usize {
    (x.value() & 15) as usize
}

/// Histograms of a coalition's views, one per feature, in protocol order.
#[derive(Default)]
struct Features {
    hists: Vec<[u64; BINS]>,
}

impl Features {
    fn slot(&mut self, k: usize) -> &mut [u64; BINS] {
        if self.hists.len() <= k {
            self.hists.resize(k + 1, [0; BINS]);
        }
        &mut self.hists[k]
    }

    /// Add one run's views of the coalition's parties.
    fn add(&mut self, views: &[View]) {
        let mut k = 0;
        for v in views {
            for (_, vals) in &v.opened {
                let h = self.slot(k);
                for &x in vals {
                    h[low4(x)] += 1;
                }
                let h = self.slot(k + 1);
                for w in vals.windows(2) {
                    h[low4(w[1] - w[0])] += 1;
                }
                k += 2;
            }
            for (_, _, vals) in &v.received {
                let h = self.slot(k);
                for &x in vals {
                    h[low4(x)] += 1;
                }
                k += 1;
            }
        }
    }

    /// Smallest two-sample p-value over all features, and the number of features.
    fn min_p(&self, other: &Features) -> (f64, usize) {
        assert_eq!(self.hists.len(), other.hists.len(), "views differ in shape");
        let p = self
            .hists
            .iter()
            .zip(&other.hists)
            .map(|(a, b)| two_sample_p(a, b))
            .fold(1.0, f64::min);
        (p, self.hists.len())
    }
}

const ROW: usize = 4;

/// `runs` runs of softmax-then-argmax of `input` on an `(n, t)` mesh; collects the views of
/// parties `0..t`.
fn collect(n: usize, t: usize, seed: u64, runs: u64, input: &[i64], fault: Fault) -> Features {
    let mut f = Features::default();
    for run in 0..runs {
        let (index, views) = run_with_client(
            n,
            t,
            seed.wrapping_mul(1_000_003).wrapping_add(run),
            |c| {
                c.share_input(input).expect("share");
                c.reconstruct(1).expect("reconstruct")
            },
            |p| {
                if p.index() < t {
                    p.engine.view = Some(View::default());
                }
                p.fault = fault;
                p.set_preprocessing_batch(1);
                let x = p.input_from_client(ROW).expect("input");
                let s = p.softmax(&x, ROW).expect("softmax");
                let a = p.argmax(&s, ROW).expect("argmax");
                p.open_to_client(&a).expect("output");
                p.engine.view.take()
            },
        )
        .expect("mesh");
        if fault == Fault::None {
            assert_eq!(index[0] as usize, crate::fx::argmax(input));
        }
        let views: Vec<View> = views.into_iter().flatten().collect();
        f.add(&views);
    }
    f
}

const ALPHA: f64 = 1e-6;

/// Two inputs with different maxima and spreads (raw activation values).
fn inputs() -> (Vec<i64>, Vec<i64>) {
    (
        vec![3 << 16, -(2 << 16), 1 << 15, 7 << 16],
        vec![-(40 << 16), 5 << 16, 9 << 15, -(1 << 14)],
    )
}

fn check_views(n: usize, t: usize, runs: u64) {
    let (x0, x1) = inputs();
    let a = collect(n, t, 1, runs, &x0, Fault::None);
    let b = collect(n, t, 2, runs, &x1, Fault::None);
    let (p, features) = a.min_p(&b);
    eprintln!("({n},{t}) correct engine: min p = {p:e} over {features} features");
    assert!(
        p >= ALPHA / features as f64,
        "({n},{t}): views of two inputs differ: p = {p:e} over {features} features"
    );
    // The same statistic catches broken engines.
    for fault in [Fault::ReuseTruncMask, Fault::UnmaskedOpen] {
        let a = collect(n, t, 3, runs, &x0, fault);
        let b = collect(n, t, 4, runs, &x1, fault);
        let (p, features) = a.min_p(&b);
        eprintln!("({n},{t}) {fault:?}: min p = {p:e} over {features} features");
        assert!(
            p < ALPHA / features as f64,
            "({n},{t}): {fault:?} not detected: p = {p:e} over {features} features"
        );
    }
}

#[test]
fn views_of_t_parties_do_not_depend_on_the_input_3_1() {
    check_views(3, 1, 160);
}

#[test]
fn views_of_t_parties_do_not_depend_on_the_input_5_2() {
    check_views(5, 2, 80);
}

#[test]
fn shares_of_t_parties_are_uniform_and_independent_of_the_secret() {
    let samples = 20_000;
    for (n, t) in [(3, 1), (4, 1), (5, 2), (7, 3)] {
        let mut rng = ChaCha12Rng::seed_from_u64(n as u64 * 31 + t as u64);
        let secrets = [Fp::ZERO, Fp::from_i64(-123_456_789 << 16)];
        for coalition in [(0..t).collect::<Vec<_>>(), (n - t..n).collect()] {
            // Joint low bits of the coalition's shares: 4 bits in all.
            let bits = (4 / t).max(1);
            let bins = 1usize << (bits * t);
            let hists: Vec<Vec<u64>> = secrets
                .iter()
                .map(|&s| {
                    let mut h = vec![0u64; bins];
                    for _ in 0..samples {
                        let sh: Vec<Share> = deal(s, t, n, &mut rng);
                        let mut key = 0usize;
                        for &i in &coalition {
                            key = (key << bits) | (sh[i].0.value() as usize & ((1 << bits) - 1));
                        }
                        h[key] += 1;
                    }
                    h
                })
                .collect();
            for h in &hists {
                let p = uniform_p(h);
                assert!(
                    p >= ALPHA / 6.0,
                    "({n},{t}) {coalition:?}: not uniform, p = {p:e}"
                );
            }
            let p = two_sample_p(&hists[0], &hists[1]);
            assert!(
                p >= ALPHA / 6.0,
                "({n},{t}) {coalition:?}: depends on secret, p = {p:e}"
            );
        }
    }
    // Control: the shares of t + 1 = 2 parties of (3, 1) determine the secret, and the
    // statistic sees it.
    let th = Threshold::new(3, 1).expect("config");
    let mut rng = ChaCha12Rng::seed_from_u64(99);
    let hists: Vec<Vec<u64>> = [Fp::ZERO, Fp::ONE]
        .iter()
        .map(|&s| {
            let mut h = vec![0u64; 16];
            for _ in 0..samples {
                let sh = deal(s, th.t(), th.n(), &mut rng);
                h[((sh[0].0.value() & 3) << 2 | (sh[1].0.value() & 3)) as usize] += 1;
            }
            h
        })
        .collect();
    assert!(two_sample_p(&hists[0], &hists[1]) < ALPHA);
}

#[test]
fn chi_square_tail_is_right() {
    // Known quantiles: chi2(15) upper 5% at 24.996, chi2(1) upper 5% at 3.841.
    assert!((chi2_sf(24.996, 15.0) - 0.05).abs() < 1e-4);
    assert!((chi2_sf(3.841, 1.0) - 0.05).abs() < 1e-3);
    assert!((chi2_sf(5.0, 10.0) - 0.891_178).abs() < 1e-5);
}
