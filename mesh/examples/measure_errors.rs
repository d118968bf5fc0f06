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

fn report(name: &str, got: &[i64], want: &[i64]) {
    let d: Vec<i64> = got.iter().zip(want).map(|(g, w)| g - w).collect();
    let (lo, hi) = (d.iter().min().unwrap(), d.iter().max().unwrap());
    println!(
        "{name}: {} samples, deviation mpc - fx in [{lo}, {hi}]",
        d.len()
    );
}

fn main() {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let n = 4000;
    let xs: Vec<i64> = (0..n)
        .map(|_| rng.gen_range(-(1i64 << 26)..=(1 << 16)))
        .collect();
    let got = secure(3, 1, 1, &[&xs], n, |p, v| p.exp(&v[0]));
    report(
        "exp",
        &got,
        &xs.iter().map(|&x| fx::exp(x)).collect::<Vec<_>>(),
    );

    let ds: Vec<i64> = (0..n)
        .map(|_| {
            let e: f64 = rng.gen_range(-4.0..14.0);
            fx::from_f64(2f64.powf(e), fx::FRAC_BITS)
        })
        .collect();
    let got = secure(3, 1, 2, &[&ds], n, |p, v| p.reciprocal(&v[0]));
    report(
        "reciprocal",
        &got,
        &ds.iter().map(|&x| fx::reciprocal(x)).collect::<Vec<_>>(),
    );
    let rel: Vec<i64> = got
        .iter()
        .zip(&ds)
        .map(|(g, &d)| (g - fx::reciprocal(d)) * (1 << 20) / fx::reciprocal(d).max(1))
        .collect();
    println!(
        "reciprocal relative deviation x 2^20: [{}, {}]",
        rel.iter().min().unwrap(),
        rel.iter().max().unwrap()
    );

    let xs: Vec<i64> = (0..n)
        .map(|_| {
            let e: f64 = rng.gen_range(-10.0..10.0);
            fx::from_f64(2f64.powf(e), fx::FRAC_BITS).max(1 << 6)
        })
        .collect();
    let got = secure(3, 1, 3, &[&xs], n, |p, v| p.rsqrt(&v[0]));
    report(
        "rsqrt",
        &got,
        &xs.iter().map(|&x| fx::rsqrt(x)).collect::<Vec<_>>(),
    );
    let rel: Vec<i64> = got
        .iter()
        .zip(&xs)
        .map(|(g, &d)| (g - fx::rsqrt(d)) * (1 << 20) / fx::rsqrt(d).max(1))
        .collect();
    println!(
        "rsqrt relative deviation x 2^20: [{}, {}]",
        rel.iter().min().unwrap(),
        rel.iter().max().unwrap()
    );

    let xs: Vec<i64> = (0..n)
        .map(|_| rng.gen_range(-(12i64 << 16)..(12 << 16)))
        .collect();
    let got = secure(3, 1, 4, &[&xs], n, |p, v| p.silu(&v[0]));
    report(
        "silu",
        &got,
        &xs.iter().map(|&x| fx::silu(x)).collect::<Vec<_>>(),
    );

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
    for (k, (g, w)) in got.iter().zip(&want).enumerate() {
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
