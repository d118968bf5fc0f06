//! Shared by node's session tests: the model, a fresh provisioning, and the f32 engine's
//! greedy tokens and logits to compare with.

// Each test binary uses a different subset.
#![allow(dead_code)]

use std::sync::Arc;

use mesh::Threshold;
use models::secure::{PartyModel, provision};
use models::{Engine, F32Engine, FixedWeights, Model};
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;

#[path = "../../../models/tests/common/mod.rs"]
mod reference;

#[allow(unused_imports)] // each test binary uses a subset
pub(crate) use reference::{BOS_ONLY_IDS, PROMPT_CONTINUATION_IDS, PROMPT_IDS, load_model};

/// The logit bound of docs/numerics.md, which covers the secure engine's probabilistic
/// truncation as well as the twin's approximations.
pub(crate) const LOGIT_BOUND: f32 = 0.01;

/// The node identity of party `i + 1` at `i`: the devices of [`party_models`]' roster.
pub(crate) fn device_keys(n: usize) -> Vec<mesh_net::Keypair> {
    (1..=n)
        .map(|i| mesh_net::Keypair::ed25519_from_bytes([i as u8; 32]).expect("ed25519 key"))
        .collect()
}

/// Every party's model of a fresh `(n, t)` provisioning of the real model (seeded), party
/// `i + 1` bound to `device_keys(n)[i]`.
pub(crate) fn party_models(model: &Model, n: usize, t: usize, seed: u64) -> Vec<Arc<PartyModel>> {
    let fw = FixedWeights::from_checkpoint(&model.checkpoint).expect("fixed weights");
    let th = Threshold::new(n, t).expect("threshold");
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let roster: Vec<Vec<u8>> = device_keys(n)
        .iter()
        .map(|k| k.public().to_peer_id().to_bytes())
        .collect();
    let files = provision(&fw, [0xAB; 32], th, &roster, &mut rng, |_, _| {}).expect("provision");
    files
        .iter()
        .enumerate()
        .map(|(i, f)| Arc::new(PartyModel::from_share_file(f, th, i).expect("party model")))
        .collect()
}

/// The f32 engine's greedy tokens after `prompt`, and its logits at each step.
pub(crate) fn plaintext(model: &Model, prompt: &[u32], steps: usize) -> (Vec<u32>, Vec<Vec<f32>>) {
    let mut e = F32Engine::new(Arc::clone(&model.checkpoint));
    for (pos, &t) in prompt.iter().enumerate() {
        e.forward(t, pos).expect("f32");
    }
    let (mut ids, mut logits) = (Vec::new(), Vec::new());
    for step in 0..steps {
        ids.push(e.argmax());
        logits.push(e.logits().to_vec());
        e.forward(ids[step], prompt.len() + step).expect("f32");
    }
    (ids, logits)
}

/// The largest |private - f32| over the logits the client saw.
pub(crate) fn max_logit_error(private: &[Vec<f32>], plain: &[Vec<f32>]) -> f32 {
    assert_eq!(private.len(), plain.len(), "one logit row per step");
    private
        .iter()
        .zip(plain)
        .flat_map(|(a, b)| a.iter().zip(b).map(|(x, y)| (x - y).abs()))
        .fold(0f32, f32::max)
}
