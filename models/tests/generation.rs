//! Both engines against the greedy outputs recorded in PROVENANCE.md, and the fixed-point
//! engine's logit error against the f32 reference.

mod common;

use common::*;
use models::{
    Engine, EngineKind, F32Engine, FixedEngine, FixedWeights, Sampler, TokenEvent, generate,
};
use std::sync::Arc;

/// The bound on max |logit_fixed - logit_f32| over the two 64-token generations, justified in
/// docs/numerics.md (measured: 0.00702).
const LOGIT_ERROR_BOUND: f32 = 0.01;
/// The same over the 256-position published run (measured: 0.00812), docs/numerics.md.
const LOGIT_ERROR_BOUND_256: f32 = 0.01;

/// Greedy generation of `n` sampled tokens after `prompt`; returns the sampled ids and the
/// printed text (prompt included).
fn greedy(
    engine: &mut dyn Engine,
    model: &models::Model,
    prompt: &[u32],
    n: usize,
) -> (Vec<u32>, String) {
    let mut ids = Vec::new();
    let mut text = String::new();
    let mut stream = models::Utf8Stream::new();
    let steps = prompt.len() - 1 + n;
    let summary = generate::<models::EngineError, _>(
        engine,
        &mut Sampler::greedy(),
        prompt,
        steps,
        |ev: TokenEvent| {
            if !ev.from_prompt {
                ids.push(ev.token);
            }
            let bytes = model.tokenizer.decode_piece(ev.prev, ev.token).unwrap();
            stream.push(bytes, &mut text);
            Ok(())
        },
    )
    .unwrap();
    stream.finish(&mut text);
    assert!(!summary.stopped_on_bos);
    (ids, text)
}

#[test]
fn prompt_encodes_as_provenance() {
    let model = load_model();
    assert_eq!(model.tokenizer.encode(PROMPT, true, false), PROMPT_IDS);
}

#[test]
fn engines_reproduce_provenance_from_bos() {
    let model = load_model();
    for kind in EngineKind::ALL {
        let mut engine = kind.build(&model.checkpoint).unwrap();
        let (ids, text) = greedy(engine.as_mut(), &model, &[models::BOS], 64);
        assert_eq!(ids, BOS_ONLY_IDS, "{kind} engine ids");
        assert_eq!(text, BOS_ONLY_TEXT, "{kind} engine text");
        assert_eq!(
            model
                .tokenizer
                .decode(&[&[models::BOS][..], &ids].concat())
                .unwrap(),
            BOS_ONLY_TEXT
        );
    }
}

#[test]
fn engines_reproduce_provenance_from_prompt() {
    let model = load_model();
    let prompt = model.tokenizer.encode(PROMPT, true, false);
    for kind in EngineKind::ALL {
        let mut engine = kind.build(&model.checkpoint).unwrap();
        let (ids, text) = greedy(engine.as_mut(), &model, &prompt, 64);
        assert_eq!(ids, PROMPT_CONTINUATION_IDS, "{kind} engine ids");
        assert_eq!(text, PROMPT_TEXT, "{kind} engine text");
    }
}

#[test]
fn engines_reproduce_the_published_256_step_text() {
    let model = load_model();
    for kind in EngineKind::ALL {
        let mut engine = kind.build(&model.checkpoint).unwrap();
        let (ids, text) = greedy(engine.as_mut(), &model, &[models::BOS], 256);
        assert_eq!(ids.len(), 256);
        assert_eq!(text, PUBLISHED_256_TEXT, "{kind} engine");
    }
}

/// What a lockstep run measured.
#[derive(Debug)]
struct Lockstep {
    max_err: f32,
    /// Position and logit value where `max_err` occurred.
    at: (usize, f32),
    /// Smallest gap between the best and second-best f32 logit at a sampled position.
    min_gap: f32,
    stats: models::FixedStats,
}

/// Run both engines in lockstep along the f32 greedy sequence; check the fixed engine picks the
/// same token at every sampled position and measure the largest logit difference.
fn lockstep(prompt: &[u32], n: usize) -> Lockstep {
    let model = load_model();
    let mut f = F32Engine::new(Arc::clone(&model.checkpoint));
    let weights = FixedWeights::from_checkpoint(&model.checkpoint).unwrap();
    let mut x = FixedEngine::new(Arc::new(weights)).unwrap();
    let mut token = prompt[0];
    let mut out = Lockstep {
        max_err: 0.0,
        at: (0, 0.0),
        min_gap: f32::INFINITY,
        stats: x.stats(),
    };
    for pos in 0..prompt.len() - 1 + n {
        let lf = f.forward(token, pos).unwrap().to_vec();
        let lx = x.forward(token, pos).unwrap();
        for (a, b) in lf.iter().zip(lx) {
            if (a - b).abs() > out.max_err {
                out.max_err = (a - b).abs();
                out.at = (pos, *a);
            }
        }
        token = if pos + 1 < prompt.len() {
            prompt[pos + 1]
        } else {
            let best = f.argmax();
            assert_eq!(x.argmax(), best, "fixed engine diverges at position {pos}");
            let second = lf
                .iter()
                .enumerate()
                .filter(|&(i, _)| i != best as usize)
                .map(|(_, &v)| v)
                .fold(f32::NEG_INFINITY, f32::max);
            out.min_gap = out.min_gap.min(lf[best as usize] - second);
            best
        };
    }
    out.stats = x.stats();
    out
}

fn report(name: &str, run: &Lockstep) {
    println!(
        "{name}: max |logit_fixed - logit_f32| = {:.6} (position {}, f32 logit {:.3}); \
         smallest top-1/top-2 f32 gap {:.4}",
        run.max_err, run.at.0, run.at.1, run.min_gap
    );
    println!("{name}: fixed-point ranges: {}", run.stats);
    assert!(run.stats.max_trunc_input_log2 < f64::from(mesh::fx::TRUNC_BITS - 1));
}

#[test]
fn fixed_logits_stay_close_to_f32() {
    let model = load_model();
    let prompt = model.tokenizer.encode(PROMPT, true, false);
    let mut worst = 0.0f32;
    for (name, run) in [
        ("BOS-only", lockstep(&[models::BOS], 64)),
        ("prompt", lockstep(&prompt, 64)),
    ] {
        report(name, &run);
        worst = worst.max(run.max_err);
    }
    println!("max |logit_fixed - logit_f32| over both 64-token generations: {worst:.6}");
    assert!(
        worst < LOGIT_ERROR_BOUND,
        "max logit error {worst} >= {LOGIT_ERROR_BOUND} (docs/numerics.md)"
    );
}

#[test]
fn fixed_logits_stay_close_to_f32_over_256_positions() {
    let run = lockstep(&[models::BOS], 256);
    report("BOS-only, 256 positions", &run);
    assert!(
        run.max_err < LOGIT_ERROR_BOUND_256,
        "max logit error {} >= {LOGIT_ERROR_BOUND_256} (docs/numerics.md)",
        run.max_err
    );
}
