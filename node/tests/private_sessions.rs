//! Private generations end to end in one process: the in-memory mesh runs the same party,
//! client and server code as the daemons over libp2p (`sotto demo --in-memory`). Token
//! identity with the f32 engine and PROVENANCE.md, and the logit error against f32.

mod common;

use common::{
    BOS_ONLY_IDS, LOGIT_BOUND, PROMPT_CONTINUATION_IDS, PROMPT_IDS, load_model, max_logit_error,
    party_models, plaintext,
};
use mesh::Threshold;
use models::Sampler;
use node::memory::MemMesh;
use node::server::ServerSettings;
use node::session::{Generation, Selection};

fn settings() -> ServerSettings {
    ServerSettings {
        round_timeout: std::time::Duration::from_secs(30),
        recovery_timeout: std::time::Duration::from_secs(30),
        max_sessions: 1,
        profile: "test".into(),
    }
}

/// One private generation; the tokens and, with `verify`, the max |logit_private - logit_f32|.
fn private_run(
    n: usize,
    t: usize,
    prompt: &[u32],
    steps: usize,
    verify: bool,
    selection: Selection,
) -> (Vec<u32>, f32) {
    let model = load_model();
    let parties = party_models(&model, n, t, 42 + n as u64);
    let th = Threshold::new(n, t).unwrap();
    let mesh = MemMesh::new(&parties, th, &settings()).expect("mesh");
    let generation = Generation {
        prompt_len: prompt.len() as u32,
        steps: steps as u32,
        selection,
        reveal_logits: verify,
    };
    let mut seen = Vec::new();
    let g = mesh
        .generate(generation, prompt, &mut Sampler::greedy(), |tok| {
            if let Some(l) = &tok.logits {
                seen.push(l.clone());
            }
        })
        .expect("generation");
    assert_eq!(g.stats.len(), n, "every party closed the session");
    assert!(g.stats.iter().all(|(_, s)| s.online_rounds > 0));
    let err = if verify {
        max_logit_error(&seen, &plaintext(&model, prompt, steps).1)
    } else {
        0.0
    };
    (g.ids, err)
}

#[test]
fn private_greedy_from_bos_matches_f32_and_provenance_3_1() {
    let (tokens, err) = private_run(3, 1, &[1], 64, true, Selection::ArgmaxInMpc);
    assert_eq!(tokens, BOS_ONLY_IDS);
    println!("(3,1) BOS-only: max |logit_private - logit_f32| = {err:.5}");
    assert!(err < LOGIT_BOUND, "logit error {err} above {LOGIT_BOUND}");
}

#[test]
fn private_greedy_from_prompt_matches_f32_and_provenance_3_1() {
    let (tokens, err) = private_run(3, 1, &PROMPT_IDS, 64, true, Selection::ArgmaxInMpc);
    assert_eq!(tokens, PROMPT_CONTINUATION_IDS);
    println!("(3,1) prompt: max |logit_private - logit_f32| = {err:.5}");
    assert!(err < LOGIT_BOUND, "logit error {err} above {LOGIT_BOUND}");
}

#[test]
fn sampling_at_the_client_from_opened_logits_gives_the_same_greedy_tokens() {
    // The logits' shares go to the client, which picks the token and shares it back.
    let (tokens, _) = private_run(3, 1, &PROMPT_IDS, 12, false, Selection::SampleAtClient);
    assert_eq!(tokens, PROMPT_CONTINUATION_IDS[..12]);
}

#[test]
fn private_greedy_from_bos_matches_provenance_5_2() {
    let (tokens, err) = private_run(5, 2, &[1], 64, true, Selection::ArgmaxInMpc);
    assert_eq!(tokens, BOS_ONLY_IDS);
    println!("(5,2) BOS-only: max |logit_private - logit_f32| = {err:.5}");
    assert!(err < LOGIT_BOUND, "logit error {err} above {LOGIT_BOUND}");
}

#[test]
fn private_greedy_from_prompt_matches_provenance_5_2() {
    let (tokens, err) = private_run(5, 2, &PROMPT_IDS, 64, true, Selection::ArgmaxInMpc);
    assert_eq!(tokens, PROMPT_CONTINUATION_IDS);
    println!("(5,2) prompt: max |logit_private - logit_f32| = {err:.5}");
    assert!(err < LOGIT_BOUND, "logit error {err} above {LOGIT_BOUND}");
}

#[test]
fn a_request_that_does_not_fit_the_context_is_refused_by_every_party() {
    let model = load_model();
    let parties = party_models(&model, 3, 1, 1);
    let mesh = MemMesh::new(&parties, Threshold::new(3, 1).unwrap(), &settings()).unwrap();
    let generation = Generation {
        prompt_len: 1,
        steps: 10_000,
        selection: Selection::ArgmaxInMpc,
        reveal_logits: false,
    };
    let err = mesh
        .generate(generation, &[1], &mut Sampler::greedy(), |_| {})
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("refused") && err.contains("positions"),
        "{err}"
    );
}
