//! mDNS discovery on a network the test builds itself: a network namespace with one bridge
//! (10.77.0.1/24), three `sotto run` nodes with no static peers and `mdns = true`, and a client
//! that finds them with `sotto ask --mdns`. Nothing outside the namespace is touched, and the
//! namespace is deleted when the test ends (pass or fail).
//!
//! Needs root and iproute2's `ip`. Without them the test FAILS and says so: it is never
//! skipped silently.

mod net_common;

use std::process::Command;
use std::time::Duration;

use net_common::{Mesh, PROMPT, ask_args, plaintext, start_client_in};

/// Deletes the namespace (and with it the bridge) when dropped.
struct Netns(String);

impl Netns {
    fn create(name: &str) -> Netns {
        // A namespace left over by a killed run of this test.
        let _ = Command::new("ip")
            .args(["netns", "del", name])
            .stderr(std::process::Stdio::null())
            .status();
        ip(&["netns", "add", name]);
        let ns = Netns(name.to_owned());
        for args in [
            &["link", "set", "lo", "up"][..],
            &["link", "add", "sbr0", "type", "bridge"],
            &["addr", "add", "10.77.0.1/24", "dev", "sbr0"],
            &["link", "set", "sbr0", "up"],
            &["route", "add", "224.0.0.0/4", "dev", "sbr0"],
        ] {
            let mut a = vec!["-n", name];
            a.extend_from_slice(args);
            ip(&a);
        }
        ns
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn ip(args: &[&str]) {
    let st = Command::new("ip")
        .args(args)
        .status()
        .unwrap_or_else(|e| panic!("`ip {}`: {e}", args.join(" ")));
    assert!(st.success(), "`ip {}` failed", args.join(" "));
}

fn require_root_and_ip() {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false);
    let has_ip = Command::new("ip")
        .arg("-V")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        root && has_ip,
        "the mDNS test builds its own network namespace, so it needs root and iproute2's `ip` \
         (root: {root}, ip: {has_ip}); run `cargo test -p node --test net_mdns` as root (CI does), \
         or install iproute2"
    );
}

#[test]
fn nodes_and_client_find_each_other_by_mdns_in_a_private_namespace() {
    require_root_and_ip();
    let name = format!("sotto-mdns-{}", std::process::id());
    let ns = Netns::create(&name);
    let mut mesh = Mesh::new(3, 1);
    mesh.netns = Some(ns.0.clone());
    for i in 1..=3 {
        let port = 4100 + i;
        mesh.start_with(i, |c| {
            let mut out = String::new();
            for line in c.lines() {
                if line.starts_with("listen") {
                    out.push_str(&format!("listen = [\"/ip4/10.77.0.1/tcp/{port}\"]\n"));
                } else if line.starts_with("static_peers") {
                    out.push_str("static_peers = []\nmdns = true\n");
                } else {
                    out.push_str(line);
                    out.push('\n');
                }
            }
            out
        });
    }
    let mut args = ask_args(&mesh, &[], 4);
    args.push("--mdns".into());
    for p in &mesh.peers {
        args.push("--allow".into());
        args.push(p.to_string());
    }
    let out = start_client_in(mesh.netns.as_deref(), mesh.dir.path(), "ask", &args)
        .finish(Duration::from_secs(60));
    assert!(
        out.status.success(),
        "ask over mDNS failed: {}\n{}",
        out.stderr,
        mesh.logs()
    );
    let (ids, _) = plaintext(PROMPT, 4);
    assert_eq!(out.ids(), ids, "{}", out.stderr);
    for i in 1..=3 {
        assert!(
            mesh.node(i).log_text().contains("quorum formed"),
            "node {i} found no peers by mDNS\n{}",
            mesh.logs()
        );
    }
    // Processes first, then the namespace.
    drop(mesh);
    drop(ns);
}
