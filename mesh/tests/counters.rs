//! Pinned traffic of the basic protocols, so that a change in their cost shows up as a test
//! failure. Figures are per party, for a batch of 30 elements (the dealing rotation gives every
//! party the same share of the preprocessing work at this size).

use mesh::memory::run_parties;
use mesh::{Demand, PhaseCounters, Share};

const B: usize = 30;

fn pc(
    rounds: u64,
    messages: u64,
    elements: u64,
    bytes: u64,
    reductions: u64,
    openings: u64,
) -> PhaseCounters {
    PhaseCounters {
        rounds,
        messages,
        elements,
        bytes,
        reductions,
        openings,
    }
}

/// (online counters of mul, mul_trunc, trunc, ltz; offline counters of preparing B truncations
/// by 16 bits and B comparisons), the same for every party.
fn measure(n: usize, t: usize) -> Vec<[PhaseCounters; 6]> {
    run_parties(n, t, 9, |p| {
        let x: Vec<Share> = (0..B as i128).map(Share::public).collect();
        let c0 = p.counters();
        p.preprocess(&Demand::trunc(16, 2 * B)).unwrap();
        let prep_trunc = p.counters().since(&c0).offline;
        let c0 = p.counters();
        p.preprocess(&Demand::ltz(B)).unwrap();
        let prep_ltz = p.counters().since(&c0).offline;
        let mut online = Vec::new();
        for op in 0..4 {
            let c0 = p.counters();
            match op {
                0 => p.mul(&x, &x).map(drop),
                1 => p.mul_trunc(&x, &x, 16).map(drop),
                2 => p.trunc(&x, 16).map(drop),
                _ => p.ltz(&x).map(drop),
            }
            .unwrap();
            let d = p.counters().since(&c0);
            assert_eq!(
                d.offline,
                PhaseCounters::default(),
                "op {op} needed no preprocessing"
            );
            online.push(d.online);
        }
        [
            online[0], online[1], online[2], online[3], prep_trunc, prep_ltz,
        ]
    })
    .unwrap()
}

#[test]
fn counters_3_1() {
    // Every party sends to 2 peers. Frame = 9 header bytes + 16 per element.
    // prefix-OR over 31 bits (Sklansky): 5 levels x 15 products = 75 per comparison.
    let want = [
        pc(1, 2, 2 * 30, 2 * (9 + 16 * 30), 30, 0), // mul: reshare each product
        pc(1, 2, 2 * 30, 2 * (9 + 16 * 30), 0, 30), // mul_trunc: one fused opening
        pc(1, 2, 2 * 30, 2 * (9 + 16 * 30), 0, 30), // trunc
        pc(
            6,
            12,
            2 * 30 * 76,
            2 * (9 + 16 * 30) + 5 * 2 * (9 + 16 * 450),
            30 * 75,
            30,
        ), // ltz
        // 60 truncation masks (m = 16): each party deals 2/3 of the items, 16 bits + r'' + a
        // zero sharing each; for t = 1 the bit XOR stays at degree 2 (no reduction round).
        pc(1, 2, 2 * 40 * 18, 2 * (9 + 16 * 40 * 18), 0, 0),
        // 30 comparisons: deal 31 bits + r'' per item (2/3 of the items), one XOR round.
        pc(
            2,
            4,
            2 * 20 * 32 + 2 * 930,
            2 * (9 + 16 * 640) + 2 * (9 + 16 * 930),
            930,
            0,
        ),
    ];
    for got in measure(3, 1) {
        assert_eq!(got, want);
    }
}

#[test]
fn counters_5_2() {
    // Every party sends to 4 peers.
    let want = [
        pc(1, 4, 4 * 30, 4 * (9 + 16 * 30), 30, 0),
        pc(1, 4, 4 * 30, 4 * (9 + 16 * 30), 0, 30),
        pc(1, 4, 4 * 30, 4 * (9 + 16 * 30), 0, 30),
        pc(
            6,
            24,
            4 * 30 * 76,
            4 * (9 + 16 * 30) + 5 * 4 * (9 + 16 * 450),
            30 * 75,
            30,
        ),
        // 60 masks: each party deals 3/5 of the items (36 x 18 components); the 3-way XOR
        // reduces its first level (960 bits), the last level stays at degree 4.
        pc(
            2,
            8,
            4 * 36 * 18 + 4 * 960,
            4 * (9 + 16 * 36 * 18) + 4 * (9 + 16 * 960),
            960,
            0,
        ),
        // 30 comparisons: 18 items x 32 components dealt, two XOR levels of 930 reductions.
        pc(
            3,
            12,
            4 * 18 * 32 + 2 * 4 * 930,
            4 * (9 + 16 * 576) + 2 * 4 * (9 + 16 * 930),
            1860,
            0,
        ),
    ];
    for got in measure(5, 2) {
        assert_eq!(got, want);
    }
}

/// Online rounds of the composite functions (preprocessing done ahead), for a row length of 8.
#[test]
fn rounds_of_composite_functions() {
    let rounds = run_parties(3, 1, 4, |p| {
        let x: Vec<Share> = (1..=8).map(|v| Share::public(v << 14)).collect();
        let gain: Vec<Share> = (0..8).map(|_| Share::public(1 << 16)).collect();
        let mut d = Demand::exp(8);
        d.add(&Demand::reciprocal(8))
            .add(&Demand::rsqrt(8))
            .add(&Demand::silu(8))
            .add(&Demand::max(1, 8).times(2))
            .add(&Demand::softmax(1, 8))
            .add(&Demand::rmsnorm(1, 8));
        p.preprocess(&d).unwrap();
        let mut r = Vec::new();
        for op in 0..8 {
            let c0 = p.counters();
            match op {
                0 => p.exp(&x),
                1 => p.reciprocal(&x),
                2 => p.rsqrt(&x),
                3 => p.silu(&x),
                4 => p.max(&x, 8),
                5 => p.argmax(&x, 8),
                6 => p.softmax(&x, 8),
                _ => p.rmsnorm(&x, &gain, 8, 1e-5),
            }
            .unwrap();
            let d = p.counters().since(&c0);
            assert_eq!(
                d.offline,
                PhaseCounters::default(),
                "op {op} was preprocessed"
            );
            r.push(d.online.rounds);
        }
        r
    })
    .unwrap();
    // exp 1 + 10; reciprocal, rsqrt 6 + 8; silu 7; max/argmax 3 levels x 6 + 1 final reduction;
    // softmax 19 + 11 + 14 + 1; rmsnorm 1 + 14 + 2.
    for r in rounds {
        assert_eq!(r, vec![11, 14, 14, 7, 19, 19, 45, 17]);
    }
}

#[test]
fn rounds_of_argmax_onehot() {
    // Per level one comparison (6 rounds) and one degree reduction: 3 levels x 7 for 8 logits.
    let rounds = run_parties(3, 1, 4, |p| {
        let x: Vec<Share> = (1..=8).map(|v| Share::public(v << 14)).collect();
        p.preprocess(&Demand::ltz(7)).unwrap();
        let c0 = p.counters();
        p.argmax_onehot(&x).unwrap();
        let d = p.counters().since(&c0);
        assert_eq!(d.offline, PhaseCounters::default());
        d.online.rounds
    })
    .unwrap();
    assert_eq!(rounds, vec![21, 21, 21]);
}
