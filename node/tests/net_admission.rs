//! Admission, with separate `sotto run` processes on 127.0.0.1: a device with the wrong mesh
//! key, one that is not on the allow-list, and one holding shares of another model never join
//! the quorum, never accept a session (so never receive a share), and the operator is told why.

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
fn a_node_not_on_the_allow_list_never_joins_and_gets_no_share() {
    let mut mesh = Mesh::new(3, 1);
    mesh.excluded = vec![3];
    mesh.start(1);
    mesh.start(2);
    mesh.start(3);
    // The client admits it (it is one of its --peer addresses) and even counts it, but the
    // quorum refuses the request before any share is sent.
    let err = ask_fails(&mesh);
    assert!(
        err.contains("party 3 is not connected to parties [1, 2]"),
        "{err}"
    );
    never_served(&mut mesh);
    assert!(
        mesh.node(1)
            .wait_for_log("refused", Duration::from_secs(10)),
        "node 1 did not report the refused connection\n{}",
        mesh.logs()
    );
}

#[test]
fn a_node_with_shares_of_another_model_is_refused_with_a_clear_message() {
    let mut mesh = Mesh::new(3, 1);
    provision_as(
        mesh.dir.path(),
        Threshold::new(3, 1).unwrap(),
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
