//! Private generation end to end on the in-memory transport: provisioning, party sessions, the
//! client's session; token identity with the f32 engine and PROVENANCE.md, logit error against
//! f32, and the share files' privacy and validation.

mod common;

use std::sync::Arc;

use common::{BOS_ONLY_IDS, PROMPT_CONTINUATION_IDS, PROMPT_IDS, load_model};
use mesh::Threshold;
use mesh::memory::run_with_client;
use models::secure::{
    PartyModel, SecureError, Selection, SessionParams, check_quorum, client_session, party_session,
    provision,
};
use models::sharefile::ShareFile;
use models::{Engine, F32Engine, FixedWeights, Sampler};
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;

/// Provision the real model for `(n, t)` with a seeded generator.
fn shares(n: usize, t: usize, seed: u64) -> (Vec<ShareFile>, FixedWeights) {
    let model = load_model();
    let fw = FixedWeights::from_checkpoint(&model.checkpoint).expect("fixed weights");
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let th = Threshold::new(n, t).expect("threshold");
    let files = provision(&fw, [0xAB; 32], th, &mut rng, |_, _| {}).expect("provision");
    (files, fw)
}

/// Run one private greedy generation; returns the tokens and, with `verify`, the max
/// |logit_private - logit_f32| over the run.
fn private_run(n: usize, t: usize, prompt: &[u32], steps: usize, verify: bool) -> (Vec<u32>, f32) {
    private_run_with(n, t, prompt, steps, verify, Selection::ArgmaxInMpc)
}

fn private_run_with(
    n: usize,
    t: usize,
    prompt: &[u32],
    steps: usize,
    verify: bool,
    selection: Selection,
) -> (Vec<u32>, f32) {
    let (files, _) = shares(n, t, 42 + n as u64);
    let th = Threshold::new(n, t).expect("threshold");
    let parties: Vec<Arc<PartyModel>> = files
        .iter()
        .enumerate()
        .map(|(i, f)| Arc::new(PartyModel::from_share_file(f, th, i).expect("party model")))
        .collect();
    drop(files);
    let params = SessionParams {
        prompt_len: prompt.len(),
        steps,
        selection,
        reveal_logits: verify,
    };
    let model = load_model();
    let vocab = model.checkpoint.config().vocab_size;
    let mut logits_seen: Vec<Vec<f32>> = Vec::new();
    let (tokens, results) = run_with_client(
        n,
        t,
        7,
        |c| {
            client_session(c, prompt, vocab, params, &mut Sampler::greedy(), |tok| {
                if let Some(l) = &tok.logits {
                    logits_seen.push(l.clone());
                }
            })
        },
        |p| party_session(p, &parties[p.index()], params),
    )
    .expect("mesh");
    for r in results {
        r.expect("party session");
    }
    let tokens = tokens.expect("client session");
    let mut max_err = 0f32;
    if verify {
        // The f32 engine on the same token sequence.
        let mut f32e = F32Engine::new(Arc::clone(&model.checkpoint));
        let seq: Vec<u32> = prompt.iter().chain(&tokens).copied().collect();
        for (step, private) in logits_seen.iter().enumerate() {
            let upto = prompt.len() + step;
            let mut l = Vec::new();
            if step == 0 {
                for (pos, &tok) in seq[..upto].iter().enumerate() {
                    l = f32e.forward(tok, pos).expect("f32").to_vec();
                }
            } else {
                l = f32e.forward(seq[upto - 1], upto - 1).expect("f32").to_vec();
            }
            for (a, b) in private.iter().zip(&l) {
                max_err = max_err.max((a - b).abs());
            }
        }
    }
    (tokens, max_err)
}

/// The logit bound of docs/numerics.md, which covers the secure engine's probabilistic
/// truncation as well as the twin's approximations.
const LOGIT_BOUND: f32 = 0.01;

#[test]
fn private_greedy_from_bos_matches_f32_and_provenance_3_1() {
    let (tokens, err) = private_run(3, 1, &[1], 64, true);
    assert_eq!(tokens, BOS_ONLY_IDS);
    println!("(3,1) BOS-only: max |logit_private - logit_f32| = {err:.5}");
    assert!(err < LOGIT_BOUND, "logit error {err} above {LOGIT_BOUND}");
}

#[test]
fn private_greedy_from_prompt_matches_f32_and_provenance_3_1() {
    let (tokens, err) = private_run(3, 1, &PROMPT_IDS, 64, true);
    assert_eq!(tokens, PROMPT_CONTINUATION_IDS);
    println!("(3,1) prompt: max |logit_private - logit_f32| = {err:.5}");
    assert!(err < LOGIT_BOUND, "logit error {err} above {LOGIT_BOUND}");
}

#[test]
fn sampling_at_the_client_from_opened_logits_gives_the_same_greedy_tokens() {
    // The logits' shares go to the client, which picks the token and shares it back.
    let (tokens, _) = private_run_with(3, 1, &PROMPT_IDS, 12, false, Selection::SampleAtClient);
    assert_eq!(tokens, PROMPT_CONTINUATION_IDS[..12]);
}

#[test]
fn private_greedy_from_bos_matches_provenance_5_2() {
    let (tokens, err) = private_run(5, 2, &[1], 64, true);
    assert_eq!(tokens, BOS_ONLY_IDS);
    println!("(5,2) BOS-only: max |logit_private - logit_f32| = {err:.5}");
    assert!(err < LOGIT_BOUND, "logit error {err} above {LOGIT_BOUND}");
}

#[test]
fn private_greedy_from_prompt_matches_provenance_5_2() {
    let (tokens, err) = private_run(5, 2, &PROMPT_IDS, 64, true);
    assert_eq!(tokens, PROMPT_CONTINUATION_IDS);
    println!("(5,2) prompt: max |logit_private - logit_f32| = {err:.5}");
    assert!(err < LOGIT_BOUND, "logit error {err} above {LOGIT_BOUND}");
}

/// Chi-square statistic of counts against the uniform distribution.
fn chi_square(counts: &[u64]) -> f64 {
    let total: u64 = counts.iter().sum();
    let expect = total as f64 / counts.len() as f64;
    counts
        .iter()
        .map(|&c| (c as f64 - expect).powi(2) / expect)
        .sum()
}

/// The top three bits (124..126) of a canonical element of F_(2^127 - 1). A uniform element
/// has them uniform (up to 2^-124); the fixed-point weights, small integers around 0 (negative
/// ones near p), only ever show 000 or 111.
fn top3(e: u128) -> usize {
    (e >> 124) as usize & 7
}

/// Joint top bits of the given parties' shares of every weight: `8^k` cells for `k` parties.
fn joint_cells(files: &[ShareFile], parties: &[usize]) -> Vec<u64> {
    let mut counts = vec![0u64; 1 << (3 * parties.len())];
    for i in 0..files[0].elements().len() {
        let cell = parties
            .iter()
            .fold(0usize, |c, &p| (c << 3) | top3(files[p].elements()[i]));
        counts[cell] += 1;
    }
    counts
}

#[test]
fn any_t_share_files_are_independent_of_the_weights() {
    for (n, t) in [(3usize, 1usize), (5, 2)] {
        let (files, fw) = shares(n, t, 9);
        // The same statistic on the plaintext must fail, or the test is blind.
        let mut plain = vec![0u64; 8];
        for (_, v) in fw.tensors() {
            for &x in v {
                plain[top3(mesh::Fp::from_i64(x).value())] += 1;
            }
        }
        // Chi-square with 7 degrees of freedom: P(X > 50) ~ 1e-8; with 63: P(X > 150) ~ 1e-8.
        assert!(
            chi_square(&plain) > 50.0,
            "plaintext top bits look uniform: test is blind"
        );
        let sets: Vec<Vec<usize>> = if t == 1 {
            (0..n).map(|p| vec![p]).collect()
        } else {
            vec![vec![0, 1], vec![1, 4], vec![2, 3]]
        };
        for set in sets {
            let x2 = chi_square(&joint_cells(&files, &set));
            let limit = if t == 1 { 50.0 } else { 150.0 };
            assert!(
                x2 < limit,
                "({n},{t}) parties {set:?}: chi2 {x2}: shares depend on the weights"
            );
        }
        if t == 1 {
            // Two files of a (3,1) sharing are bound together (s2 = 2 s1 - w): the same
            // statistic sees it, so it does detect dependence where there is some.
            let x2 = chi_square(&joint_cells(&files, &[0, 1]));
            assert!(
                x2 > 1000.0,
                "t + 1 = 2 shares look independent (chi2 {x2}): test is blind"
            );
        }
    }
}

#[test]
fn share_files_of_another_quorum_or_party_are_refused() {
    let (files, _) = shares(3, 1, 5);
    let th = Threshold::new(3, 1).expect("th");
    let err = PartyModel::from_share_file(&files[1], th, 0).unwrap_err();
    assert!(err.to_string().contains("belongs to party 2"), "{err}");
    let th52 = Threshold::new(5, 2).expect("th");
    let err = PartyModel::from_share_file(&files[0], th52, 0).unwrap_err();
    assert!(matches!(err, SecureError::Mismatch(_)), "{err}");
    // Mixing two provisionings of the same model is refused before any computation.
    let (other, _) = shares(3, 1, 6);
    let headers = [&files[0].header, &other[1].header, &files[2].header];
    let err = check_quorum(&headers).unwrap_err();
    assert!(err.to_string().contains("provisioning"), "{err}");
    let headers = [&files[0].header, &files[1].header, &files[2].header];
    check_quorum(&headers).expect("one provisioning is accepted");
    let dup = [&files[0].header, &files[0].header, &files[2].header];
    assert!(check_quorum(&dup).is_err());
}

#[test]
fn a_tampered_or_truncated_share_file_is_rejected() {
    let (files, _) = shares(3, 1, 3);
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("party-1.share");
    files[0].write(&path, false).expect("write");
    let mut bytes = std::fs::read(&path).expect("read");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 1;
    std::fs::write(&path, &bytes).expect("tamper");
    let err = ShareFile::read(&path).unwrap_err();
    assert!(err.to_string().contains("checksum"), "{err}");
    bytes[mid] ^= 1;
    std::fs::write(&path, &bytes[..bytes.len() - 100]).expect("truncate");
    let err = ShareFile::read(&path).unwrap_err();
    assert!(err.to_string().contains("truncated"), "{err}");
    assert!(err.to_string().contains("party-1.share"), "{err}");
}
