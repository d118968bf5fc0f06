//! `sotto generate` end to end: the built binary against the greedy ids recorded in
//! `shared/models/stories260K/PROVENANCE.md`, model discovery and flag validation.

use std::path::PathBuf;
use std::process::{Command, Output};

use models::Model;

/// PROVENANCE.md: "Once upon a time" encodes to these ids...
const PROMPT_IDS: [u32; 5] = [1, 403, 407, 261, 378];
/// ...and greedy generation continues with these (the first 16 of the recorded 64).
const CONTINUATION_IDS: [u32; 16] = [
    432, 383, 286, 261, 376, 298, 315, 421, 395, 317, 426, 338, 401, 396, 267, 337,
];
/// PROVENANCE.md: the start of the recorded text for that prompt.
const PROVENANCE_TEXT: &str =
    "Once upon a time, there was a little girl named Lily. She loved to play outside in the park.";

fn model_dir() -> PathBuf {
    let dir = std::env::var_os("SOTTO_MODEL_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models/stories260K"));
    let (ck, tok) = Model::files(&dir);
    assert!(
        ck.is_file() && tok.is_file(),
        "model files missing in {}: run scripts/fetch-model.sh (or set SOTTO_MODEL_DIR)",
        dir.display()
    );
    dir
}

fn sotto(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sotto"));
    cmd.args(args)
        .env_remove("SOTTO_MODEL_DIR")
        .env_remove("RUST_LOG");
    cmd
}

fn text(out: &[u8]) -> String {
    String::from_utf8(out.to_vec()).expect("output is UTF-8")
}

fn assert_ok(out: &Output) {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
}

#[test]
fn generate_matches_provenance_with_both_engines() {
    let dir = model_dir();
    let tokenizer = Model::load_dir(&dir).unwrap().tokenizer;
    // 20 positions: 4 forced prompt tokens, then 16 greedy ones.
    let expected = tokenizer
        .decode(&[&PROMPT_IDS[..], &CONTINUATION_IDS].concat())
        .unwrap();
    assert!(PROVENANCE_TEXT.starts_with(&expected), "{expected:?}");
    for engine in ["f32", "fixed"] {
        let out = sotto(&[
            "generate",
            "--prompt",
            "Once upon a time",
            "--steps",
            "20",
            "--engine",
            engine,
            "--print-ids",
        ])
        .arg("--model")
        .arg(&dir)
        .output()
        .unwrap();
        assert_ok(&out);
        let stdout = text(&out.stdout);
        assert!(
            stdout.starts_with(&expected),
            "{engine}: {stdout:?} vs {expected:?}"
        );
        assert_eq!(stdout.trim_end(), expected, "{engine}");
        let stderr = text(&out.stderr);
        assert!(
            stderr.contains("tok/s") && stderr.contains(engine),
            "{engine}: {stderr}"
        );
        // --print-ids: the sampled ids only, in `sotto ask --print-ids`'s format.
        let ids: Vec<String> = CONTINUATION_IDS.iter().map(u32::to_string).collect();
        let want = format!("token ids: {}\n", ids.join(" "));
        assert!(stderr.contains(&want), "{engine}: {stderr}");
    }
}

#[test]
fn model_dir_from_env_and_from_the_executables_workspace() {
    let dir = model_dir();
    let tmp = tempfile::tempdir().unwrap();
    // SOTTO_MODEL_DIR, from a directory without a model.
    let out = sotto(&["generate", "--steps", "5"])
        .env("SOTTO_MODEL_DIR", &dir)
        .current_dir(tmp.path())
        .output()
        .unwrap();
    assert_ok(&out);
    assert!(text(&out.stdout).starts_with("Once upon"));
    // Nothing given: the workspace the binary was built in (target/<profile>/../../models).
    if dir.canonicalize().ok()
        == PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../models/stories260K")
            .canonicalize()
            .ok()
    {
        let out = sotto(&["generate", "--steps", "5"])
            .current_dir(tmp.path())
            .output()
            .unwrap();
        assert_ok(&out);
    }
}

#[test]
fn missing_model_says_how_to_get_it() {
    let tmp = tempfile::tempdir().unwrap();
    let out = sotto(&["generate", "--steps", "5", "--model"])
        .arg(tmp.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    for needle in [
        "scripts/fetch-model.sh",
        "SOTTO_MODEL_DIR",
        "--model",
        "stories260K.bin",
    ] {
        assert!(stderr.contains(needle), "missing {needle:?} in: {stderr}");
    }
    assert!(
        stderr.contains(&tmp.path().display().to_string()),
        "{stderr}"
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn invalid_flags_are_rejected_with_a_reason() {
    for (args, needle) in [
        (&["--temperature", "-0.5"][..], ">= 0"),
        (&["--top-p", "0"][..], "(0, 1]"),
        (&["--top-p", "1.5"][..], "(0, 1]"),
        (&["--steps", "0"][..], ">= 1"),
        (&["--engine", "gpu"][..], "f32"),
    ] {
        let out = sotto(&["generate"]).args(args).output().unwrap();
        assert!(!out.status.success(), "{args:?} accepted");
        let stderr = text(&out.stderr);
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
    }
}

#[test]
fn sampling_is_reproducible_with_a_seed() {
    let dir = model_dir();
    let run = |seed: &str| {
        let out = sotto(&[
            "generate",
            "--steps",
            "40",
            "--temperature",
            "1.0",
            "--top-p",
            "0.9",
            "--seed",
            seed,
        ])
        .arg("--model")
        .arg(&dir)
        .output()
        .unwrap();
        assert_ok(&out);
        text(&out.stdout)
    };
    assert_eq!(run("7"), run("7"));
}
