//! Losing devices mid-generation, with separate `sotto run` processes on 127.0.0.1:
//! - (4,1), one active party killed in the middle of a 64-token generation: the survivors
//!   roll back to the current token and finish; the answer is still the plaintext one.
//! - (3,1), two of three killed: the client gets a clear error within a bounded time and the
//!   remaining node stays up and answers `sotto status`.

mod net_common;

use std::time::{Duration, Instant};

use net_common::{Mesh, PROMPT, ask_args, plaintext, run_client, start_client};

fn steps() -> usize {
    std::env::var("SOTTO_TEST_STEPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(64)
}

/// Waits until the client has printed `chars` characters beyond the prompt.
fn wait_for_tokens(out: impl Fn() -> String, chars: usize, limit: Duration) {
    let until = Instant::now() + limit;
    while out().len() < PROMPT.len() + chars {
        assert!(
            Instant::now() < until,
            "no tokens within {limit:?}: {}",
            out()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn losing_one_of_four_mid_generation_still_answers_like_plaintext() {
    let steps = steps();
    let mut mesh = Mesh::new(4, 1);
    mesh.start_all();
    let ask = start_client(
        mesh.dir.path(),
        "ask",
        &ask_args(&mesh, &[1, 2, 3, 4], steps),
    );
    // About a third of the answer is out: kill an active party (1..=3 are active, 4 stands
    // by).
    wait_for_tokens(
        || ask.stdout_text(),
        steps * 3 / 2,
        Duration::from_secs(200),
    );
    let killed_at = Instant::now();
    mesh.node(2).kill();
    let out = ask.finish(Duration::from_secs(400));
    let (ids, text) = plaintext(PROMPT, steps);
    assert!(
        out.status.success(),
        "ask failed: {}\n{}",
        out.stderr,
        mesh.logs()
    );
    assert!(
        out.stderr.contains("recovering"),
        "no recovery happened: {}",
        out.stderr
    );
    assert!(
        out.stderr.contains("continuing with parties [1, 3, 4]"),
        "{}",
        out.stderr
    );
    assert_eq!(
        out.ids(),
        ids,
        "tokens differ from plaintext\n{}",
        out.stderr
    );
    assert_eq!(out.stdout.trim_end(), text.trim_end());
    for i in [1, 3, 4] {
        assert!(mesh.node(i).alive(), "node {i} exited\n{}", mesh.logs());
    }
    eprintln!("{}", out.stderr);
    eprintln!(
        "finished {:.1} s after the kill, ask took {:.1} s",
        killed_at.elapsed().as_secs_f64(),
        out.elapsed.as_secs_f64()
    );
}

#[test]
fn losing_two_of_three_fails_fast_and_the_survivor_stays_healthy() {
    let mut mesh = Mesh::new(3, 1);
    mesh.start_all();
    let ask = start_client(mesh.dir.path(), "ask", &ask_args(&mesh, &[1, 2, 3], 64));
    wait_for_tokens(|| ask.stdout_text(), 10, Duration::from_secs(120));
    let killed_at = Instant::now();
    mesh.node(2).kill();
    mesh.node(3).kill();
    let out = ask.finish(Duration::from_secs(60));
    let took = killed_at.elapsed();
    assert!(
        !out.status.success(),
        "ask succeeded without a quorum: {}",
        out.stdout
    );
    assert!(
        out.stderr.contains("the quorum was lost") && out.stderr.contains("needs 3"),
        "unclear error: {}",
        out.stderr
    );
    assert!(took < Duration::from_secs(30), "the error took {took:?}");
    // The survivor gives up the session and keeps serving.
    assert!(mesh.node(1).alive(), "node 1 exited\n{}", mesh.logs());
    let mut status_args = vec!["status".to_owned(), "--connect-timeout".into(), "5".into()];
    status_args.extend(mesh.client_args(&[1]));
    let st = run_client(
        mesh.dir.path(),
        "status",
        &status_args,
        Duration::from_secs(30),
    );
    // One party cannot form a (3,1) quorum: status says so and fails.
    assert!(
        st.stderr.contains("no quorum within 5 s") && st.stderr.contains("[1]"),
        "status: {}\n{}",
        st.stderr,
        st.stdout
    );
    assert!(mesh.node(1).alive(), "node 1 exited\n{}", mesh.logs());
    let log = mesh.node(1).log_text();
    assert!(!log.contains("panicked"), "{log}");
    eprintln!("{}\nerror after {took:?}", out.stderr);
}
