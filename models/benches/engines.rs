//! Plaintext engine throughput: greedy generation of 64 tokens from BOS per iteration, so
//! criterion's "elements/s" is tokens per second. Needs the model (scripts/fetch-model.sh or
//! SOTTO_MODEL_DIR).

use std::hint::black_box;
use std::path::PathBuf;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use models::{BOS, EngineError, EngineKind, Model, Sampler, generate};

const TOKENS: usize = 64;

fn model() -> Model {
    let dir = std::env::var_os("SOTTO_MODEL_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models/stories260K"));
    Model::load_dir(&dir)
        .unwrap_or_else(|e| panic!("{e}: run scripts/fetch-model.sh (or set SOTTO_MODEL_DIR)"))
}

fn engines(c: &mut Criterion) {
    let model = model();
    let mut group = c.benchmark_group("generate_64_greedy_from_bos");
    group.throughput(Throughput::Elements(TOKENS as u64));
    for kind in EngineKind::ALL {
        let mut engine = kind.build(&model.checkpoint).unwrap();
        let mut sampler = Sampler::greedy();
        group.bench_function(kind.name(), |b| {
            b.iter(|| {
                let summary = generate::<EngineError, _>(
                    engine.as_mut(),
                    &mut sampler,
                    &[BOS],
                    TOKENS,
                    |ev| {
                        black_box(ev.token);
                        Ok(())
                    },
                )
                .unwrap();
                assert_eq!(summary.positions, TOKENS);
            })
        });
    }
    group.finish();
}

criterion_group!(benches, engines);
criterion_main!(benches);
