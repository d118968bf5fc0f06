//! Admission, with separate `sotto run` processes on 127.0.0.1: a device with the wrong mesh
//! key and one holding shares of another model never join the quorum, never accept a session
//! (so never receive a share), and the operator is told why; a node whose identity is not the
//! device its share file is provisioned to refuses to start, and a client that is not in
//! `clients` is refused.

mod net_common;

use std::time::Duration;

use mesh::Threshold;
use net_common::{Mesh, ask_args, provision_as, run_client};

/// A client that sees parties 1, 2 and the bad device 3 must not get an answer.
fn ask_fails(mesh: &Mesh) -> String {
    let mut args = ask_args(mesh, &[1, 2, 3], 4);
    if let Some(i) = args.iter().position(|a| a == "--connect-timeout") {
        args[i + 1] = "6".into();
    }
    args.extend(["--gather-ms".into(), "0".into()]);
    let out = run_client(mesh.dir.path(), "ask", &args, Duration::from_secs(60));
    assert!(!out.status.success(), "ask succeeded: {}", out.stdout);
    out.stderr
}

/// The bad device took part in nothing.
fn never_served(mesh: &mut Mesh) {
    let log = mesh.node(3).log_text();
    assert!(!log.contains("session accepted"), "{log}");
    assert!(!log.contains("quorum formed"), "{log}");
    for i in [1, 2] {
        let log = mesh.node(i).log_text();
        assert!(!log.contains("session accepted"), "{log}");
    }
}

#[test]
fn a_node_with_the_wrong_mesh_key_never_joins() {
    let mut mesh = Mesh::new(3, 1);
    mesh.start(1);
    mesh.start(2);
    mesh_net::write_psk(&mesh.path("other.psk"), &mesh_net::generate_psk()).unwrap();
    // The right share file and identity; only the key differs.
    mesh.start_with(3, |c| {
        c.replace("psk_file = \"mesh.psk\"", "psk_file = \"other.psk\"")
    });
    let err = ask_fails(&mesh);
    assert!(err.contains("no quorum within"), "{err}");
    never_served(&mut mesh);
    assert!(
        mesh.node(1)
            .wait_for_log("refused", Duration::from_secs(10)),
        "node 1 did not report the refused connection\n{}",
        mesh.logs()
    );
}

#[test]
fn a_node_on_another_device_than_its_share_files_refuses_to_start() {
    let mut mesh = Mesh::new(3, 1);
    // Party 3's share file with the client's identity: the roster names node-3's key.
    mesh.start_with(3, |c| {
        c.replace("identity = \"node-3.key\"", "identity = \"client.key\"")
    });
    let want = format!("provisioned to device {}", mesh.peers[2]);
    assert!(
        mesh.node(3).wait_for_log(&want, Duration::from_secs(30)),
        "node 3 did not name the share file's device\n{}",
        mesh.logs()
    );
    let until = std::time::Instant::now() + Duration::from_secs(10);
    while mesh.node(3).alive() && std::time::Instant::now() < until {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!mesh.node(3).alive(), "node 3 kept running");
    assert!(
        mesh.node(3)
            .log_text()
            .contains(&mesh.client_peer.to_string())
    );
}

#[test]
fn a_client_not_in_clients_is_refused() {
    let mut mesh = Mesh::new(3, 1);
    mesh.start_all();
    let mut args = ask_args(&mesh, &[1, 2, 3], 4);
    let i = args
        .iter()
        .position(|a| a == "--identity")
        .expect("--identity");
    args[i + 1] = mesh.path("stranger.key").display().to_string();
    if let Some(i) = args.iter().position(|a| a == "--connect-timeout") {
        args[i + 1] = "6".into();
    }
    let out = run_client(mesh.dir.path(), "ask", &args, Duration::from_secs(60));
    assert!(!out.status.success(), "ask succeeded: {}", out.stdout);
    for i in 1..=3 {
        assert!(
            mesh.node(i)
                .wait_for_log("refused", Duration::from_secs(10)),
            "node {i} did not report the refused connection\n{}",
            mesh.logs()
        );
        assert!(!mesh.node(i).log_text().contains("session accepted"));
    }
}

#[test]
fn a_node_with_shares_of_another_model_is_refused_with_a_clear_message() {
    let mut mesh = Mesh::new(3, 1);
    let devices = mesh.peers.clone();
    provision_as(
        mesh.dir.path(),
        Threshold::new(3, 1).unwrap(),
        &devices,
        "other-",
        [0xab; 32],
    );
    mesh.start(1);
    mesh.start(2);
    mesh.start_with(3, |c| c.replace("party-3.share", "other-party-3.share"));
    let err = ask_fails(&mesh);
    assert!(err.contains("no quorum within"), "{err}");
    for i in [1, 3] {
        assert!(
            mesh.node(i).wait_for_log(
                "holds shares of another provisioning",
                Duration::from_secs(10)
            ),
            "node {i} did not say why\n{}",
            mesh.logs()
        );
    }
    assert!(mesh.node(3).log_text().contains("re-provision"));
    never_served(&mut mesh);
}
