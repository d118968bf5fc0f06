//! The share files of a private generation: their privacy (any t of them are independent of the
//! weights) and validation. The private generations themselves run in `node`'s session tests
//! (`node/tests/private_sessions.rs`), over the same session code as the daemons.

mod common;

use common::load_model;
use mesh::Threshold;
use models::FixedWeights;
use models::secure::{PartyModel, SecureError, check_quorum, provision};
use models::sharefile::ShareFile;
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;

/// Provision the real model for `(n, t)` with a seeded generator.
fn shares(n: usize, t: usize, seed: u64) -> (Vec<ShareFile>, FixedWeights) {
    let model = load_model();
    let fw = FixedWeights::from_checkpoint(&model.checkpoint).expect("fixed weights");
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let th = Threshold::new(n, t).expect("threshold");
    let roster: Vec<Vec<u8>> = (1..=n).map(|i| vec![i as u8; 38]).collect();
    let files = provision(&fw, [0xAB; 32], th, &roster, &mut rng, |_, _| {}).expect("provision");
    (files, fw)
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
