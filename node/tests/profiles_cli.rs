//! Device profiles as an operator meets them: `sotto profiles`, and `sotto run` obeying (or
//! refusing) a profile: an unknown name, a malformed profile file, and a node whose share file
//! or KV cache does not fit the profile's memory budget each give a clear error and exit.

mod net_common;

use std::time::Duration;

use net_common::{Mesh, run_client};

const LIMIT: Duration = Duration::from_secs(60);

/// A profile file like a real board's, with this memory budget (MiB).
fn profile_with_budget(budget_mib: u64) -> String {
    format!(
        r#"name = "tiny-board"
board = "A board with very little memory"
target = "aarch64-unknown-linux-gnu"
cpu = "cortex-a53"
cores = 4
ram_mib = 1024
memory_budget_mib = {budget_mib}
worker_threads = 2
network = "wifi"
target_cpu = "cortex-a53"
"#
    )
}

fn sotto(mesh: &Mesh, args: &[&str]) -> net_common::Output {
    let args: Vec<String> = args.iter().map(|s| (*s).to_owned()).collect();
    run_client(mesh.dir.path(), "sotto", &args, LIMIT)
}

#[test]
fn profiles_lists_every_device_class_and_shows_one() {
    let mesh = Mesh::new(3, 1);
    let out = sotto(&mesh, &["profiles"]);
    assert!(out.status.success(), "{}", out.stderr);
    for name in [
        "rpi4",
        "rpi5",
        "jetson-nano",
        "jetson-orin-nano",
        "qemu-virt",
        "x86_64-dev",
    ] {
        assert!(
            out.stdout.lines().any(|l| l.starts_with(name)),
            "{name} missing:\n{}",
            out.stdout
        );
    }
    let out = sotto(&mesh, &["profiles", "rpi4"]);
    assert!(out.status.success(), "{}", out.stderr);
    assert!(
        out.stdout.contains("memory_budget_mib = 2560"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("cpu = \"cortex-a72\""),
        "{}",
        out.stdout
    );
}

#[test]
fn an_unknown_profile_name_lists_the_known_ones() {
    let mut mesh = Mesh::new(3, 1);
    let out = sotto(&mesh, &["profiles", "rpi9"]);
    assert!(!out.status.success());
    assert!(
        out.stderr.contains("unknown profile `rpi9`") && out.stderr.contains("jetson-nano"),
        "{}",
        out.stderr
    );
    // The same from `sotto run --profile`: the node exits with the message, it never starts.
    std::fs::write(mesh.path("node-1.toml"), mesh.config(1)).unwrap();
    let cfg = mesh.path("node-1.toml");
    let out = sotto(
        &mesh,
        &[
            "run",
            "--config",
            cfg.to_str().unwrap(),
            "--profile",
            "rpi9",
        ],
    );
    assert!(!out.status.success());
    assert!(out.stderr.contains("--profile rpi9"), "{}", out.stderr);
    assert!(
        out.stderr.contains("known profiles: rpi4"),
        "{}",
        out.stderr
    );
    // And from node.toml: the error names the field.
    mesh.start_with(1, |c| format!("{c}profile = \"rpi9\"\n"));
    let node = mesh.node(1);
    assert!(
        node.wait_for_log("sotto: error", LIMIT),
        "{}",
        node.log_text()
    );
    let log = node.log_text();
    assert!(log.contains("`profile`") && log.contains("rpi4"), "{log}");
}

#[test]
fn a_malformed_profile_file_names_the_file_and_the_problem() {
    let mesh = Mesh::new(3, 1);
    let bad = mesh.path("bad.toml");
    std::fs::write(
        &bad,
        profile_with_budget(512).replace("cores = 4", "cores = \"four\""),
    )
    .unwrap();
    let out = sotto(&mesh, &["profiles", bad.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        out.stderr.contains("bad.toml is not a valid profile") && out.stderr.contains("cores"),
        "{}",
        out.stderr
    );
    let over = mesh.path("over.toml");
    std::fs::write(
        &over,
        profile_with_budget(512).replace("ram_mib = 1024", "ram_mib = 256"),
    )
    .unwrap();
    let out = sotto(&mesh, &["profiles", over.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(out.stderr.contains("memory_budget_mib"), "{}", out.stderr);
    std::fs::write(mesh.path("node-1.toml"), mesh.config(1)).unwrap();
    let cfg = mesh.path("node-1.toml");
    let out = sotto(
        &mesh,
        &[
            "run",
            "--config",
            cfg.to_str().unwrap(),
            "--profile",
            bad.to_str().unwrap(),
        ],
    );
    assert!(!out.status.success());
    assert!(out.stderr.contains("bad.toml"), "{}", out.stderr);
}

#[test]
fn a_node_that_does_not_fit_its_profile_is_refused_with_the_sizes() {
    let mesh = Mesh::new(3, 1);
    std::fs::write(mesh.path("node-1.toml"), mesh.config(1)).unwrap();
    let cfg = mesh.path("node-1.toml");
    let cfg = cfg.to_str().unwrap();

    // 4 MiB: stories260K's share file alone (~4 MiB, held twice while loading) does not fit;
    // refused before the file is read.
    let tiny = mesh.path("tiny.toml");
    std::fs::write(&tiny, profile_with_budget(4)).unwrap();
    let out = sotto(
        &mesh,
        &["run", "--config", cfg, "--profile", tiny.to_str().unwrap()],
    );
    assert!(!out.status.success());
    assert!(
        out.stderr.contains("does not fit") && out.stderr.contains("loading share file"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("tiny-board"), "{}", out.stderr);

    // 40 MiB holds the shares, but not the KV caches of 64 concurrent sessions: the message says
    // which knob to turn.
    let small = mesh.path("small.toml");
    std::fs::write(&small, profile_with_budget(40)).unwrap();
    std::fs::write(
        mesh.path("node-1.toml"),
        format!("{}max_sessions = 64\n", mesh.config(1)),
    )
    .unwrap();
    let out = sotto(
        &mesh,
        &["run", "--config", cfg, "--profile", small.to_str().unwrap()],
    );
    assert!(!out.status.success());
    assert!(
        out.stderr.contains("does not fit") && out.stderr.contains("max_sessions"),
        "{}",
        out.stderr
    );

    // The same node with the default 2 sessions fits, starts, and says what it applied (a
    // profile file in node.toml is relative to node.toml).
    let mut m = mesh;
    m.start_with(1, |c| {
        format!("{c}profile = \"small.toml\"\nlink = \"profile\"\n")
    });
    let node = m.node(1);
    assert!(
        node.wait_for_log("listening on", LIMIT),
        "{}",
        node.log_text()
    );
    let log = node.log_text();
    assert!(
        log.contains("profile tiny-board (2 worker threads")
            && log.contains("of 40 MiB budget, wifi network, link emulation wifi"),
        "{log}"
    );
}
