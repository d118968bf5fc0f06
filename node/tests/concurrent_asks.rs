//! Many requests at once. A gateway (one client identity, one process) runs two generations at
//! once on parties that take one session each: the second is answered busy, retries with
//! backoff, and both answers are the plaintext engine's. Two `sotto ask` processes of one
//! identity both answer too (the second waits for the first).

mod common;
mod net_common;

use std::time::{Duration, Instant};

use common::{PROMPT_CONTINUATION_IDS, PROMPT_IDS, device_keys, load_model, party_models};
use mesh::Threshold;
use mesh_net::LinkProfile;
use models::Sampler;
use node::demo::local::{Deadlines, LocalMesh};
use node::session::{Generation, Selection};

#[test]
fn a_gateway_beyond_max_sessions_is_answered_busy_and_retries_until_served() {
    let model = load_model();
    let th = Threshold::new(3, 1).unwrap();
    let parties = party_models(&model, 3, 1, 5);
    // Every party of a local mesh runs at most one session at a time.
    let keys = device_keys(3);
    let mesh = LocalMesh::start(
        &parties,
        &keys,
        th,
        LinkProfile::Loopback,
        Deadlines::default(),
    )
    .expect("mesh");
    let steps = 12;
    let generation = Generation {
        prompt_len: PROMPT_IDS.len() as u32,
        steps,
        selection: Selection::ArgmaxInMpc,
        reveal_logits: false,
    };
    let answers: Vec<Vec<u32>> = std::thread::scope(|s| {
        let asks: Vec<_> = (0..2)
            .map(|_| {
                s.spawn(|| {
                    mesh.generate(generation, &PROMPT_IDS, &mut Sampler::greedy(), |_| {})
                        .map(|g| g.ids)
                })
            })
            .collect();
        asks.into_iter()
            .map(|a| {
                a.join()
                    .expect("no panic")
                    .expect("both requests are served")
            })
            .collect()
    });
    mesh.shutdown();
    for ids in answers {
        assert_eq!(ids, PROMPT_CONTINUATION_IDS[..steps as usize]);
    }
}

use net_common::{Mesh, ask_args, free_port, plaintext, run_client, spawn, start_client};

#[test]
fn two_asks_from_one_identity_at_once_both_answer_like_plaintext() {
    let steps = 8;
    let (ids, _) = plaintext(net_common::PROMPT, steps);
    let mut mesh = Mesh::new(3, 1);
    mesh.start_all();
    let args = ask_args(&mesh, &[1, 2, 3], steps);
    // Both start at once, with the same --identity.
    let first = start_client(mesh.dir.path(), "ask-1", &args);
    let second = start_client(mesh.dir.path(), "ask-2", &args);
    for run in [first, second] {
        let out = run.finish(Duration::from_secs(240));
        assert!(
            out.status.success(),
            "ask failed: {}\n{}",
            out.stderr,
            mesh.logs()
        );
        assert_eq!(
            out.ids(),
            ids,
            "tokens differ from plaintext\n{}",
            out.stderr
        );
    }
}

#[test]
fn a_device_started_twice_is_refused_on_its_port_and_flagged_by_status() {
    let mut mesh = Mesh::new(3, 1);
    mesh.start_all();
    for i in 1..=3 {
        assert!(
            mesh.node(i)
                .wait_for_log("quorum formed", Duration::from_secs(60)),
            "{}",
            mesh.logs()
        );
    }
    // Party 2 again, on its own port: refused at start.
    let cfg = mesh.path("node-2-again.toml");
    std::fs::write(&cfg, mesh.config(2)).unwrap();
    let mut again = spawn(
        "node-2-again",
        net_common::sotto().arg("run").arg("--config").arg(&cfg),
        &mesh.path("node-2-again.log"),
    );
    assert!(
        again.wait_for_log("address already in use", Duration::from_secs(60)),
        "{}",
        again.log_text()
    );
    let until = Instant::now() + Duration::from_secs(30);
    while again.alive() && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!again.alive(), "the second instance is still running");
    assert!(
        !again.log_text().contains("listening on"),
        "{}",
        again.log_text()
    );

    // Party 2 again on another port (a copied identity): it joins, and status says so.
    let port = free_port();
    let moved = mesh.config(2).replace(
        &format!("/ip4/127.0.0.1/tcp/{}\"]", mesh.ports[1]),
        &format!("/ip4/127.0.0.1/tcp/{port}\"]"),
    );
    std::fs::write(&cfg, moved).unwrap();
    let twin = spawn(
        "node-2-twin",
        net_common::sotto().arg("run").arg("--config").arg(&cfg),
        &mesh.path("node-2-twin.log"),
    );
    assert!(
        twin.wait_for_log("quorum formed", Duration::from_secs(60)),
        "{}",
        twin.log_text()
    );
    let mut status_args = vec!["status".to_owned()];
    status_args.extend(mesh.client_args(&[1, 2, 3]));
    // Identify may still be under way on a connection: look a few times.
    let mut last = String::new();
    for attempt in 0..10 {
        let st = run_client(
            mesh.dir.path(),
            &format!("status-{attempt}"),
            &status_args,
            Duration::from_secs(60),
        );
        last = format!("{}\n{}", st.stdout, st.stderr);
        if st.stdout.contains("party 2") && st.stdout.contains("runs 2 times") {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(last.contains("runs 2 times"), "{last}\n{}", mesh.logs());
    assert!(last.contains(&port.to_string()), "{last}");
    drop(twin);
}
