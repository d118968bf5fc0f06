//! Measures the largest deviation of every composite protocol from its `fx` definition over
//! many random inputs. Not a test of a bound (the property tests do that): run with
//! `cargo run -p mesh --release --example measure_errors` to reproduce the
//! figures of docs/protocol.md.

#[path = "../tests/common/mod.rs"]
mod common;
use common::secure;
use mesh::fx;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The deviation relative to `want`, times 2^20.
fn report_relative(name: &str, got: &[i64], want: &[i64]) {
    let rel: Vec<i64> = got
        .iter()
        .zip(want)
        .map(|(g, &w)| (g - w) * (1 << 20) / w.max(1))
        .collect();
    println!(
        "{name} relative deviation x 2^20: [{}, {}]",
        rel.iter().min().unwrap(),
        rel.iter().max().unwrap()
    );
}

fn report(name: &str, got: &[i64], want: &[i64]) {
    let d: Vec<i64> = got.iter().zip(want).map(|(g, w)| g - w).collect();
    let (lo, hi) = (d.iter().min().unwrap(), d.iter().max().unwrap());
    println!(
        "{name}: {} samples, deviation mpc - fx in [{lo}, {hi}]",
        d.len()
    );
}

const N: usize = 4000;

fn measure_exp(rng: &mut ChaCha8Rng) {
    let xs: Vec<i64> = (0..N)
        .map(|_| rng.gen_range(-(1i64 << 26)..=(1 << 16)))
        .collect();
    let got = secure(3, 1, 1, &[&xs], N, |p, v| p.exp(&v[0]));
    report(
        "exp",
        &got,
        &xs.iter().map(|&x| fx::exp(x)).collect::<Vec<_>>(),
    );
}

fn measure_reciprocal(rng: &mut ChaCha8Rng) {
    let ds: Vec<i64> = (0..N)
        .map(|_| {
            let e: f64 = rng.gen_range(-4.0..14.0);
            fx::from_f64(2f64.powf(e), fx::FRAC_BITS)
        })
        .collect();
    let got = secure(3, 1, 2, &[&ds], N, |p, v| p.reciprocal(&v[0]));
    let want: Vec<i64> = ds.iter().map(|&x| fx::reciprocal(x)).collect();
    report("reciprocal", &got, &want);
    report_relative("reciprocal", &got, &want);
}

fn measure_rsqrt(rng: &mut ChaCha8Rng) {
    let xs: Vec<i64> = (0..N)
        .map(|_| {
            let e: f64 = rng.gen_range(-10.0..10.0);
            fx::from_f64(2f64.powf(e), fx::FRAC_BITS).max(1 << 6)
        })
        .collect();
    let got = secure(3, 1, 3, &[&xs], N, |p, v| p.rsqrt(&v[0]));
    let want: Vec<i64> = xs.iter().map(|&x| fx::rsqrt(x)).collect();
    report("rsqrt", &got, &want);
    report_relative("rsqrt", &got, &want);
}

fn measure_silu(rng: &mut ChaCha8Rng) {
    let xs: Vec<i64> = (0..N)
        .map(|_| rng.gen_range(-(12i64 << 16)..(12 << 16)))
        .collect();
    let got = secure(3, 1, 4, &[&xs], N, |p, v| p.silu(&v[0]));
    report(
        "silu",
        &got,
        &xs.iter().map(|&x| fx::silu(x)).collect::<Vec<_>>(),
    );
}

fn measure_softmax(rng: &mut ChaCha8Rng) {
    let len = 16;
    let rows = 250;
    let xs: Vec<i64> = (0..rows * len)
        .map(|_| rng.gen_range(-(150i64 << 16)..(150 << 16)))
        .collect();
    let got = secure(3, 1, 5, &[&xs], rows * len, |p, v| p.softmax(&v[0], len));
    let want: Vec<i64> = xs.chunks(len).flat_map(fx::softmax).collect();
    report("softmax (len 16)", &got, &want);
    let xs: Vec<i64> = (0..rows * len)
        .map(|_| rng.gen_range(-(4i64 << 16)..(4 << 16)))
        .collect();
    let got = secure(3, 1, 6, &[&xs], rows * len, |p, v| p.softmax(&v[0], len));
    let want: Vec<i64> = xs.chunks(len).flat_map(fx::softmax).collect();
    report("softmax (len 16, |x| < 4)", &got, &want);
    report_over_softmax_bound(&xs, &got, &want, len);
}

/// The softmax outputs (inputs `|x| < 4`) beyond docs/protocol.md's bound, with their row.
fn report_over_softmax_bound(xs: &[i64], got: &[i64], want: &[i64], len: usize) {
    for (k, (g, w)) in got.iter().zip(want).enumerate() {
        let bound = 5 + 2 * len as i64 * w / (1 << 16);
        if (g - w).abs() > bound {
            let row = &xs[k / len * len..(k / len + 1) * len];
            let m = fx::max(row);
            let s: i64 = row.iter().map(|&x| fx::exp(x - m)).sum();
            println!(
                "  over the bound: got {g} fx {w} bound {bound}, row sum {s}, fx reciprocal {}",
                fx::reciprocal(s)
            );
        }
    }
}

fn measure_rmsnorm(rng: &mut ChaCha8Rng) {
    let len = 64;
    let rows = 60;
    let xs: Vec<i64> = (0..rows * len)
        .map(|_| rng.gen_range(-(12i64 << 16)..(12 << 16)))
        .collect();
    let gain: Vec<i64> = (0..len)
        .map(|_| rng.gen_range(-(4i64 << 16)..(4 << 16)))
        .collect();
    let got = secure(3, 1, 7, &[&xs, &gain], rows * len, |p, v| {
        p.rmsnorm(&v[0], &v[1], len, 1e-5)
    });
    let want: Vec<i64> = xs
        .chunks(len)
        .flat_map(|r| fx::rmsnorm(r, &gain, 1e-5))
        .collect();
    report("rmsnorm (len 64)", &got, &want);
    let got = secure(3, 1, 8, &[&xs], rows, |p, v| p.rms_inv(&v[0], len, 1e-5));
    let want: Vec<i64> = xs.chunks(len).map(|r| fx::rms_inv(r, 1e-5)).collect();
    report("rms_inv (len 64)", &got, &want);
}

fn main() {
    // One generator for all, in this order, so the figures of docs/protocol.md reproduce.
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    measure_exp(&mut rng);
    measure_reciprocal(&mut rng);
    measure_rsqrt(&mut rng);
    measure_silu(&mut rng);
    measure_softmax(&mut rng);
    measure_rmsnorm(&mut rng);
}
