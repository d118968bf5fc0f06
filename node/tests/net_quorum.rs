//! Separate `sotto run` processes on 127.0.0.1 form a quorum, and `sotto ask` over libp2p is
//! token-identical to the plaintext engine: (3,1) and (5,2).
//!
//! Tokens per test: 16 at (3,1), 8 at (5,2), to keep each test within about a minute on a
//! 2-core machine (the mesh costs ~1.8 s and ~5 s per token there, see docs/benchmarks.md);
//! `SOTTO_TEST_STEPS=64` runs the full benchmark length.

mod net_common;

use std::time::{Duration, Instant};

use net_common::{Mesh, PROMPT, ask_args, plaintext, run_client};

fn steps(default: usize) -> usize {
    std::env::var("SOTTO_TEST_STEPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

fn quorum_answers_like_plaintext(n: usize, t: usize, steps: usize) {
    let started = Instant::now();
    let mut mesh = Mesh::new(n, t);
    mesh.start_all();
    let parties: Vec<usize> = (1..=n).collect();
    let out = run_client(
        mesh.dir.path(),
        "ask",
        &ask_args(&mesh, &parties, steps),
        Duration::from_secs(240),
    );
    let (ids, text) = plaintext(PROMPT, steps);
    assert!(
        out.status.success(),
        "ask failed: {}\n{}\n{}",
        out.stderr,
        out.stdout,
        mesh.logs()
    );
    assert_eq!(
        out.ids(),
        ids,
        "tokens differ from plaintext\n{}",
        out.stderr
    );
    assert_eq!(out.stdout.trim_end(), text.trim_end());
    assert!(out.stderr.contains("tokens/s"), "{}", out.stderr);
    // The nodes keep running after the session.
    for i in 1..=n {
        assert!(mesh.node(i).alive(), "node {i} exited\n{}", mesh.logs());
    }
    // `sotto status`: who is in the quorum, (n, t), the model hash, and every link's RTT.
    let mut status_args = vec!["status".to_owned()];
    status_args.extend(mesh.client_args(&parties));
    let st = run_client(
        mesh.dir.path(),
        "status",
        &status_args,
        Duration::from_secs(60),
    );
    assert!(st.status.success(), "status failed: {}", st.stderr);
    let want = format!("(n={n}, t={t}) model sha256 ");
    assert!(st.stdout.contains(&want), "{}", st.stdout);
    let all = format!("sees parties {parties:?} (quorum formed)");
    assert_eq!(st.stdout.matches(&all).count(), n, "{}", st.stdout);
    assert!(
        st.stdout.contains("link to party") && st.stdout.contains(" ms"),
        "{}",
        st.stdout
    );
    eprintln!("{}", st.stdout);
    eprintln!("{}", out.stderr);
    eprintln!(
        "({n},{t}): ask took {:.1} s, whole test {:.1} s",
        out.elapsed.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
}

#[test]
fn three_nodes_answer_like_plaintext() {
    quorum_answers_like_plaintext(3, 1, steps(16));
}

#[test]
fn five_nodes_answer_like_plaintext() {
    quorum_answers_like_plaintext(5, 2, steps(8));
}
