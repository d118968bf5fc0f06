//! MPC microbenchmarks: (3,1), in-memory transport, one thread per party, batches of 1024.
//!
//! Online time is measured with the preprocessing pool already filled; preprocessing is
//! measured on its own. Before the timings, the exact rounds / elements / bytes per operation
//! are printed (party 0; they are machine-independent).
//!
//! `cargo bench -p mesh --bench mpc`

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use mesh::memory::{MemTransport, run_parties};
use mesh::{Demand, Fp, Party, Share, fx};
use std::time::{Duration, Instant};

const N: usize = 3;
const T: usize = 1;
const B: usize = 1024;

type Op = fn(&mut Party<MemTransport>, &Input) -> Vec<Share>;

struct Input {
    x: Vec<Share>,
    y: Vec<Share>,
    positive: Vec<Share>,
    matrix: Vec<Share>,
}

fn input(cols: usize) -> Input {
    let v = |i: usize| ((i as i128 * 7919) % 40_000) - 20_000;
    Input {
        x: (0..B).map(|i| Share::public(v(i) * 16)).collect(),
        y: (0..B).map(|i| Share::public(v(i + 1) * 8)).collect(),
        positive: (0..B)
            .map(|i| Share::public(1 << 12 | (v(i).abs() * 64)))
            .collect(),
        matrix: (0..cols * cols).map(|i| Share::public(v(i))).collect(),
    }
}

struct Case {
    name: &'static str,
    elements: usize,
    cols: usize,
    demand: Demand,
    op: Op,
}

fn cases() -> Vec<Case> {
    let b = B;
    vec![
        Case {
            name: "open",
            elements: b,
            cols: 0,
            demand: Demand::default(),
            op: |p, i| {
                p.open(&i.x).unwrap();
                Vec::new()
            },
        },
        Case {
            name: "mul",
            elements: b,
            cols: 0,
            demand: Demand::default(),
            op: |p, i| p.mul(&i.x, &i.y).unwrap(),
        },
        Case {
            name: "mul_trunc",
            elements: b,
            cols: 0,
            demand: Demand::trunc(16, b),
            op: |p, i| p.mul_trunc(&i.x, &i.y, 16).unwrap(),
        },
        Case {
            name: "trunc",
            elements: b,
            cols: 0,
            demand: Demand::trunc(16, b),
            op: |p, i| p.trunc(&i.x, 16).unwrap(),
        },
        Case {
            name: "dot_trunc_64",
            elements: 64,
            cols: 64,
            demand: Demand::trunc(16, 64),
            op: |p, i| p.dot_trunc(&i.matrix, &i.x[..64], 16).unwrap(),
        },
        Case {
            name: "dot_trunc_768",
            elements: 768,
            cols: 768,
            demand: Demand::trunc(16, 768),
            op: |p, i| p.dot_trunc(&i.matrix, &i.x[..768], 16).unwrap(),
        },
        Case {
            name: "ltz",
            elements: b,
            cols: 0,
            demand: Demand::ltz(b),
            op: |p, i| p.ltz(&i.x).unwrap(),
        },
        Case {
            name: "exp",
            elements: b,
            cols: 0,
            demand: Demand::exp(b),
            op: |p, i| {
                let neg: Vec<Share> = i.positive.iter().map(Share::neg).collect();
                p.exp(&neg).unwrap()
            },
        },
        Case {
            name: "reciprocal",
            elements: b,
            cols: 0,
            demand: Demand::reciprocal(b),
            op: |p, i| p.reciprocal(&i.positive).unwrap(),
        },
        Case {
            name: "rsqrt",
            elements: b,
            cols: 0,
            demand: Demand::rsqrt(b),
            op: |p, i| p.rsqrt(&i.positive).unwrap(),
        },
    ]
}

/// Time `iters` runs of the online part (pool pre-filled) or of the preprocessing alone.
fn timed(case: &Case, iters: u64, online: bool) -> Duration {
    let inp = input(case.cols);
    let times = run_parties(N, T, 5, |p| {
        let demand = case.demand.times(iters as usize);
        if online {
            p.preprocess(&demand).unwrap();
            // Line the parties up before starting the clock.
            p.open(&[Share::public(0)]).unwrap();
            let start = Instant::now();
            for _ in 0..iters {
                std::hint::black_box((case.op)(p, &inp));
            }
            start.elapsed()
        } else {
            p.open(&[Share::public(0)]).unwrap();
            let start = Instant::now();
            p.preprocess(&demand).unwrap();
            start.elapsed()
        }
    })
    .unwrap();
    times.into_iter().max().unwrap_or_default()
}

fn print_counters() {
    println!(
        "\nper-operation traffic, (n,t) = ({N},{T}), party 0 (online after preprocessing; offline = its preprocessing):"
    );
    println!(
        "| op | batch | online rounds | online elements sent | online bytes sent | offline rounds | offline elements sent | offline bytes sent |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for case in cases() {
        let inp = input(case.cols);
        let r = run_parties(N, T, 5, |p| {
            let c0 = p.counters();
            p.preprocess(&case.demand).unwrap();
            let c1 = p.counters();
            (case.op)(p, &inp);
            (c1.since(&c0).offline, p.counters().since(&c1).online)
        })
        .unwrap();
        let (off, on) = r[0];
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            case.name,
            case.elements,
            on.rounds,
            on.elements,
            on.bytes,
            off.rounds,
            off.elements,
            off.bytes
        );
    }
    let _ = fx::FRAC_BITS;
}

/// Local field arithmetic: one product, and one multiply-accumulate with lazy reduction.
fn bench_field(c: &mut Criterion) {
    let mut g = c.benchmark_group("field");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1));
    let a: Vec<Fp> = (1..=B as u64)
        .map(|i| Fp::from(i).pow(1u128 << 100))
        .collect();
    let b: Vec<Fp> = a.iter().map(|x| *x * *x).collect();
    g.throughput(Throughput::Elements(B as u64));
    g.bench_function("mul", |bch| {
        bch.iter(|| {
            let v: Vec<Fp> = a.iter().zip(&b).map(|(x, y)| *x * *y).collect();
            std::hint::black_box(v)
        })
    });
    let wa: Vec<Share> = a.iter().map(|x| Share::public(x.to_i128())).collect();
    let wb: Vec<Share> = b.iter().map(|x| Share::public(x.to_i128())).collect();
    let th = mesh::Threshold::new(N, T).unwrap();
    let (mut trs, _link) = mesh::memory::mesh(N);
    let p = Party::new(th, 0, trs.remove(0), [0; 32]).unwrap();
    g.bench_function("dot_local", |bch| {
        bch.iter(|| std::hint::black_box(p.dot_local(&wa, &wb).unwrap()))
    });
    g.finish();
}

fn bench(c: &mut Criterion) {
    bench_field(c);
    print_counters();
    for (group, online) in [("online", true), ("preprocessing", false)] {
        let mut g = c.benchmark_group(group);
        g.sample_size(10)
            .warm_up_time(Duration::from_millis(300))
            .measurement_time(Duration::from_secs(2));
        for case in cases() {
            if !online && case.demand.is_empty() {
                continue;
            }
            g.throughput(Throughput::Elements(case.elements as u64));
            g.bench_function(BenchmarkId::from_parameter(case.name), |b| {
                b.iter_custom(|iters| timed(&case, iters, online))
            });
        }
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
