//! Measures the error of every `mesh::fx` approximation against f64 by dense sweeps over its
//! documented domain, and prints a Markdown table (the one in `docs/numerics.md`).
//!
//! ```text
//! cargo run --release -p models --example fx_errors
//! ```
//!
//! Inputs are raw fixed-point values, and the reference is the f64 function of the value the
//! raw integer stands for, so only the approximation (and its internal truncations) is
//! measured, not the rounding of the input.

use mesh::fx;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;

const F: u32 = fx::FRAC_BITS;
const HI: u32 = fx::HI_FRAC_BITS;

fn val(raw: i64) -> f64 {
    fx::to_f64(raw, F)
}

/// Relative errors are reported only where `|f(x)| >= 0.01` (see [`Worst::add`]).
/// Raw inputs covering `[2^lo, 2^hi)`: every raw value of an octave with at most `per_octave`
/// of them, else `per_octave` evenly spaced ones (both ends of each octave included).
fn octave_sweep(lo: i32, hi: i32, per_octave: i64) -> impl Iterator<Item = i64> {
    (lo..hi).flat_map(move |k| {
        let start = 1i64 << (F as i32 + k);
        let len = start; // the octave [2^k, 2^(k+1)) holds 2^(16+k) raw values
        let step = (len / per_octave).max(1);
        (0..len / step)
            .map(move |i| start + i * step)
            .chain(std::iter::once(2 * start - 1))
    })
}

#[derive(Default)]
struct Worst {
    abs: f64,
    abs_at: f64,
    rel: f64,
    rel_at: f64,
    n: u64,
}

impl Worst {
    fn add(&mut self, x: f64, got: f64, want: f64) {
        let abs = (got - want).abs();
        if abs > self.abs {
            self.abs = abs;
            self.abs_at = x;
        }
        // Relative error only where the result is at least 0.01: below that one output ulp
        // (1.5e-5) alone is a large fraction of the value.
        if want.abs() >= 0.01 {
            let rel = abs / want.abs();
            if rel > self.rel {
                self.rel = rel;
                self.rel_at = x;
            }
        }
        self.n += 1;
    }
}

fn row(name: &str, domain: &str, points: &str, w: &Worst) {
    println!(
        "| {name} | {domain} | {points} ({}) | {:.3e} (x = {:.5}) | {:.3e} (x = {:.5}) |",
        w.n, w.abs, w.abs_at, w.rel, w.rel_at
    );
}

fn main() {
    println!(
        "| function | inputs | points (count) | max abs error | max rel error (where \\|f\\| >= 0.01) |"
    );
    println!("|---|---|---|---|---|");

    exp_rows();
    reciprocal_row();
    rsqrt_row();
    // One generator for the random sweeps, in this order, so the table is reproducible.
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    rms_inv_rows(&mut rng);
    silu_rows();
    max_row(&mut rng);
}

fn exp_rows() {
    // exp on [-2^EXP_SQUARINGS, 1]: every raw value, split where softmax uses it (<= 0).
    let lo = -(1i64 << (fx::EXP_SQUARINGS + F));
    let mut neg = Worst::default();
    let mut near = Worst::default();
    let mut pos = Worst::default();
    for raw in lo..=(1i64 << F) {
        let x = val(raw);
        let got = val(fx::exp(raw));
        if raw <= 0 {
            neg.add(x, got, x.exp());
            if x >= -4.0 {
                near.add(x, got, x.exp());
            }
        } else {
            pos.add(x, got, x.exp());
        }
    }
    row("exp", "[-1024, 0] (softmax)", "every raw value", &neg);
    row("exp", "[-4, 0]", "every raw value", &near);
    row("exp", "(0, 1]", "every raw value", &pos);
}

fn reciprocal_row() {
    // reciprocal on [2^RECIP_MIN_LOG2, 2^RECIP_MAX_LOG2), result in HI.
    let mut w = Worst::default();
    for raw in octave_sweep(fx::RECIP_MIN_LOG2, fx::RECIP_MAX_LOG2, 1 << 16) {
        let d = val(raw);
        w.add(d, fx::to_f64(fx::reciprocal(raw), HI), 1.0 / d);
    }
    row("reciprocal", "[2^-4, 2^14)", "<= 2^16 per octave", &w);
}

fn rsqrt_row() {
    // rsqrt on [2^RSQRT_MIN_LOG2, 2^RSQRT_MAX_LOG2), result in HI.
    let mut w = Worst::default();
    for raw in octave_sweep(fx::RSQRT_MIN_LOG2, fx::RSQRT_MAX_LOG2, 1 << 16) {
        let x = val(raw);
        w.add(x, fx::to_f64(fx::rsqrt(raw), HI), 1.0 / x.sqrt());
    }
    row("rsqrt", "[2^-10, 2^10)", "<= 2^16 per octave", &w);
}

fn rms_inv_rows(rng: &mut ChaCha20Rng) {
    // rms_inv on random length-64 vectors whose mean square spans rsqrt's domain.
    let mut bands = [
        (2f64.powi(-10), 2f64.powi(-5), Worst::default()),
        (2f64.powi(-5), 1.0, Worst::default()),
        (1.0, 2f64.powi(10), Worst::default()),
    ];
    let mut x = vec![0i64; 64];
    for _ in 0..300_000 {
        // Target RMS log-uniform in [2^-4.9, 2^4.9] (mean square inside [2^-10, 2^10)).
        let rms = 2f64.powf(rng.gen_range(-4.9..4.9));
        for v in x.iter_mut() {
            *v = fx::from_f64(rng.gen_range(-1.7..1.7) * rms, F);
        }
        let ms = x.iter().map(|&r| val(r) * val(r)).sum::<f64>() / 64.0 + 1e-5;
        let Some((_, _, w)) = bands
            .iter_mut()
            .find(|(lo, hi, _)| (*lo..*hi).contains(&ms))
        else {
            continue;
        };
        let got = fx::to_f64(fx::rms_inv(&x, 1e-5), HI);
        w.add(ms, got, 1.0 / ms.sqrt());
    }
    for (name, (_, _, w)) in [
        "mean(x^2)+eps in [2^-10, 2^-5)",
        "mean(x^2)+eps in [2^-5, 1)",
        "mean(x^2)+eps in [1, 2^10)",
    ]
    .iter()
    .zip(&bands)
    {
        row(
            "rms_inv (len 64)",
            name,
            "random vectors; x = mean(x^2)+eps",
            w,
        );
    }
}

fn silu_rows() {
    // silu: every raw value on [-40, 40]; the inner region separately.
    let sig = |x: f64| x / (1.0 + (-x).exp());
    let mut all = Worst::default();
    let mut inner = Worst::default();
    let mut six = Worst::default();
    for raw in -(40i64 << F)..=(40i64 << F) {
        let x = val(raw);
        let got = val(fx::silu(raw));
        all.add(x, got, sig(x));
        if x.abs() < 8.0 {
            inner.add(x, got, sig(x));
        }
        if x.abs() < 6.0 {
            six.add(x, got, sig(x));
        }
    }
    row("silu", "[-40, 40] (all reals)", "every raw value", &all);
    row("silu", "(-8, 8) (polynomial)", "every raw value", &inner);
    row("silu", "(-6, 6)", "every raw value", &six);
}

fn max_row(rng: &mut ChaCha20Rng) {
    // max / argmax: exact comparisons; count disagreements with the iterator maximum.
    let mut wrong = 0u64;
    let mut n = 0u64;
    for len in 1..=600usize {
        for _ in 0..20 {
            let xs: Vec<i64> = (0..len)
                .map(|_| rng.gen_range(-(1i64 << 30)..(1i64 << 30)) >> rng.gen_range(0..30))
                .collect();
            let (m, i) = fx::max_argmax(&xs);
            let want = *xs.iter().max().unwrap_or(&0);
            let want_i = xs.iter().position(|&v| v == want).unwrap_or(0);
            if m != want || i != want_i {
                wrong += 1;
            }
            n += 1;
        }
    }
    println!(
        "| max_argmax | \\|x_i - x_j\\| < 2^31 raw | random vectors, len 1..=600 ({n}) | {wrong} wrong | exact |"
    );
}
