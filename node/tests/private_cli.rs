//! `sotto provision` and `sotto demo` as a user runs them.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn model_dir() -> PathBuf {
    let dir = std::env::var_os("SOTTO_MODEL_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/stories260K"));
    assert!(
        dir.join("stories260K.bin").is_file() && dir.join("tok512.bin").is_file(),
        "model files missing in {}: run scripts/fetch-model.sh (or set SOTTO_MODEL_DIR)",
        dir.display()
    );
    dir
}

fn sotto(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sotto"))
        .args(args)
        .env("SOTTO_MODEL_DIR", model_dir())
        .output()
        .expect("run sotto")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// `--device <peer id>` for `n` fresh device identities.
fn device_args(n: usize) -> Vec<String> {
    (0..n)
        .flat_map(|_| {
            let peer = mesh_net::Keypair::generate_ed25519().public().to_peer_id();
            ["--device".to_owned(), peer.to_string()]
        })
        .collect()
}

/// `sotto provision` of `n` fresh devices with threshold `t` into `out`, then `extra`.
fn provision(n: usize, t: usize, out: &str, extra: &[&str]) -> Output {
    let mut args: Vec<String> = vec!["provision".into()];
    args.extend(device_args(n));
    args.extend([
        "--threshold".into(),
        t.to_string(),
        "--out".into(),
        out.into(),
    ]);
    args.extend(extra.iter().map(|a| (*a).to_owned()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    sotto(&args)
}

#[test]
fn provision_writes_one_file_per_party_and_never_overwrites_without_force() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("mesh");
    let out_s = out.to_str().expect("utf-8 path");
    let first = provision(5, 2, out_s, &[]);
    assert!(first.status.success(), "{}", text(&first.stderr));
    for i in 1..=5 {
        assert!(
            out.join(format!("party-{i}.share")).is_file(),
            "party {i} missing"
        );
    }
    let before = std::fs::read(out.join("party-1.share")).expect("read");

    let again = provision(5, 2, out_s, &[]);
    assert!(!again.status.success(), "second provisioning must refuse");
    let err = text(&again.stderr);
    assert!(err.contains("--force") && err.contains("already"), "{err}");
    assert_eq!(
        std::fs::read(out.join("party-1.share")).expect("read"),
        before,
        "file untouched"
    );

    let forced = provision(5, 2, out_s, &["--force"]);
    assert!(forced.status.success(), "{}", text(&forced.stderr));
    assert_ne!(
        std::fs::read(out.join("party-1.share")).expect("read"),
        before,
        "fresh shares"
    );
}

#[test]
fn provision_rejects_an_impossible_threshold() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("mesh");
    let r = provision(4, 2, out.to_str().expect("utf-8"), &[]);
    assert!(!r.status.success());
    assert!(text(&r.stderr).contains("n >= 2t+1"), "{}", text(&r.stderr));
    assert!(!out.exists(), "nothing written for a refused request");
}

#[test]
fn provision_needs_one_distinct_device_per_party() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("mesh");
    let out_s = out.to_str().expect("utf-8");
    let r = provision(3, 1, out_s, &["--parties", "5"]);
    assert!(!r.status.success());
    assert!(
        text(&r.stderr).contains("one --device"),
        "{}",
        text(&r.stderr)
    );
    let peer = mesh_net::Keypair::generate_ed25519()
        .public()
        .to_peer_id()
        .to_string();
    let mut args = vec!["provision", "--out", out_s];
    for _ in 0..3 {
        args.extend(["--device", &peer]);
    }
    let r = sotto(&args);
    assert!(!r.status.success());
    assert!(
        text(&r.stderr).contains("parties 1 and 2"),
        "{}",
        text(&r.stderr)
    );
    assert!(!out.exists(), "nothing written for a refused request");
}

#[test]
fn demo_streams_a_private_generation_identical_to_plaintext() {
    let dir = tempfile::tempdir().expect("tempdir");
    let shares = dir.path().join("shares");
    let r = sotto(&[
        "demo",
        "--steps",
        "12",
        "--verify",
        "--shares",
        shares.to_str().expect("utf-8"),
    ]);
    let (out, err) = (text(&r.stdout), text(&r.stderr));
    assert!(r.status.success(), "{err}");
    assert!(
        out.starts_with("Once upon a time, there was a little girl named Lily. She"),
        "{out}"
    );
    assert!(err.contains("tokens vs plaintext  match (12/12"), "{err}");
    assert!(err.contains("rounds/token"), "{err}");
    assert!(err.contains("max |logit_private - logit_f32|"), "{err}");
    assert!(err.contains("libp2p on 127.0.0.1"), "{err}");

    // The same mesh as threads over the in-memory transport: same tokens, and the
    // preprocessing/online split that only the in-memory run measures.
    let r = sotto(&[
        "demo",
        "--in-memory",
        "--steps",
        "12",
        "--shares",
        shares.to_str().expect("utf-8"),
    ]);
    let (out_mem, err) = (text(&r.stdout), text(&r.stderr));
    assert!(r.status.success(), "{err}");
    assert_eq!(out_mem, out);
    assert!(err.contains("in-memory transport"), "{err}");
    assert!(err.contains("tokens vs plaintext  match (12/12"), "{err}");
    assert!(err.contains("s preprocessing +"), "{err}");

    // A damaged share file is refused with a message naming it.
    let p1 = shares.join("party-1.share");
    let mut bytes = std::fs::read(&p1).expect("read");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x10;
    std::fs::write(&p1, &bytes).expect("tamper");
    let r = sotto(&[
        "demo",
        "--steps",
        "2",
        "--shares",
        shares.to_str().expect("utf-8"),
    ]);
    assert!(
        !r.status.success(),
        "a tampered share file must not be used"
    );
    let err = text(&r.stderr);
    assert!(
        err.contains("checksum") && err.contains("party-1.share"),
        "{err}"
    );
}
