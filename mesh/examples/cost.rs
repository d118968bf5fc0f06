//! CPU cost of the hot protocols, for profiling (`perf record`) and for CPU-time comparisons on
//! a busy machine: `cargo run --release -p mesh --example cost -- <op> <iterations>`, op one of
//! `ltz`, `mul_trunc`, `prep_ltz`, `prep_trunc`; (3,1), batches of 1024, in-memory transport.

use mesh::memory::run_parties;
use mesh::{Demand, Share};
use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let op = args.get(1).map_or("ltz", String::as_str).to_owned();
    let iters: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(20);
    let b = 1024;
    let start = Instant::now();
    run_parties(3, 1, 1, |p| {
        let x: Vec<Share> = (0..b as i128)
            .map(|i| Share::public(i * 977 - 500_000))
            .collect();
        match op.as_str() {
            "ltz" => {
                let t0 = Instant::now();
                p.preprocess(&Demand::ltz(b * iters)).unwrap();
                let t1 = Instant::now();
                for _ in 0..iters {
                    p.ltz(&x).unwrap();
                }
                if p.index() == 0 {
                    println!("preprocessing {:?}, online {:?}", t1 - t0, t1.elapsed());
                }
            }
            "mul_trunc" => {
                p.preprocess(&Demand::trunc(16, b * iters)).unwrap();
                for _ in 0..iters {
                    p.mul_trunc(&x, &x, 16).unwrap();
                }
            }
            "prep_ltz" => {
                for _ in 0..iters {
                    p.preprocess(&Demand::ltz(b)).unwrap();
                    p.ltz(&x).unwrap();
                }
            }
            _ => {
                for _ in 0..iters {
                    p.preprocess(&Demand::trunc(16, b)).unwrap();
                    p.mul_trunc(&x, &x, 16).unwrap();
                }
            }
        }
    })
    .unwrap();
    println!("{op}: {iters} x {b} in {:?}", start.elapsed());
}
