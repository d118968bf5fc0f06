//! Starting and reaching nodes on 127.0.0.1: a taken port is refused (libp2p would share it),
//! a listen failure says why, and each way of failing to reach a device is told apart
//! (refused, handshake failed, not admitted, no answer, wrong peer ID).
//!
//! Every node listens on 127.0.0.1 only, mDNS is off, every wait is bounded and every node is
//! shut down.

use std::future::Future;
use std::time::Duration;

use mesh_net::{
    DialFailure, Keypair, Multiaddr, NetConfig, NetError, NetHandle, PeerId, PreSharedKey, Roster,
    ShareSummary,
};

/// Upper bound on any one test.
const TEST_LIMIT: Duration = Duration::from_secs(30);

fn one_party() -> ShareSummary {
    ShareSummary {
        model_sha256: [0x3c; 32],
        provisioning_id: [0x42; 16],
        n: 1,
        t: 0,
        roster_sha256: [0; 32],
    }
}

/// A party's config made the one device of a one-party roster: `key`'s.
fn as_device(mut config: NetConfig, key: &Keypair) -> NetConfig {
    if config.party.is_some() {
        let roster = Roster::new(vec![key.public().to_peer_id()]).expect("a roster");
        config.summary.roster_sha256 = roster.sha256();
        config.roster = Some(roster);
    }
    config
}

fn config(psk: PreSharedKey, mut allowed: Vec<PeerId>, party: Option<u8>) -> NetConfig {
    // An empty allow-list is refused; a stranger nobody uses keeps it non-empty.
    allowed.push(PeerId::random());
    let party = party.map(|n| mesh::PartyId::from_number(n).expect("a party number"));
    let mut config = NetConfig::new(psk, allowed, one_party(), party);
    config.mdns = false;
    config.redial_interval = Duration::from_millis(200);
    config.handshake_timeout = Duration::from_secs(2);
    config
}

/// A started node; the caller shuts it down.
fn start(config: NetConfig, key: Keypair) -> Result<NetHandle, NetError> {
    let (handle, event_loop) = mesh_net::new(as_device(config, &key), key)?;
    tokio::spawn(event_loop.run());
    Ok(handle)
}

async fn bounded(test: impl Future<Output = ()>) {
    tokio::time::timeout(TEST_LIMIT, test)
        .await
        .expect("test finished in time");
}

fn loopback(port: u16) -> Multiaddr {
    format!("/ip4/127.0.0.1/tcp/{port}").parse().unwrap()
}

fn port_of(addr: &Multiaddr) -> u16 {
    addr.iter()
        .find_map(|proto| match proto {
            mesh_net::Protocol::Tcp(port) => Some(port),
            _ => None,
        })
        .expect("a TCP address")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_node_on_a_taken_port_refuses_to_start() {
    bounded(async {
        let psk = mesh_net::generate_psk();
        let first = start(config(psk, vec![], Some(1)), Keypair::generate_ed25519()).unwrap();
        let taken = first.listen(loopback(0)).await.unwrap();
        let addr = loopback(port_of(&taken));

        // At start-up, as `sotto run` does.
        let mut second_config = config(psk, vec![], Some(1));
        second_config.listen = vec![addr.clone()];
        let second_key = Keypair::generate_ed25519();
        match mesh_net::new(as_device(second_config, &second_key), second_key) {
            Err(e @ NetError::AddressInUse { .. }) => {
                let text = e.to_string();
                assert!(text.contains("address already in use"), "{text}");
                assert!(text.contains(&addr.to_string()), "{text}");
            }
            Err(other) => panic!("wrong error: {other}"),
            Ok(_) => panic!("a second node started on the taken port {addr}"),
        }
        // And on a running node.
        let other = start(config(psk, vec![], Some(1)), Keypair::generate_ed25519()).unwrap();
        assert!(matches!(
            other.listen(addr).await,
            Err(NetError::AddressInUse { .. })
        ));
        other.shutdown().await;
        first.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listen_failure_says_why() {
    // 192.0.2.1 (TEST-NET-1) is no address of this machine: the bind fails.
    let mut bad = config(mesh_net::generate_psk(), vec![], Some(1));
    bad.listen = vec!["/ip4/192.0.2.1/tcp/0".parse().unwrap()];
    let key = Keypair::generate_ed25519();
    match mesh_net::new(as_device(bad, &key), key) {
        Err(NetError::Listen { reason, .. }) => {
            assert!(!reason.trim().is_empty(), "empty reason");
            assert!(reason.to_lowercase().contains("address"), "{reason}");
        }
        Err(other) => panic!("wrong error: {other}"),
        Ok(_) => panic!("listened on an address this machine does not have"),
    }
}

/// A client node dialing `target`, and the failure it records for `peer`, if any within the
/// test's limit.
async fn failure_reaching(
    psk: PreSharedKey,
    target: Multiaddr,
    peer: PeerId,
) -> (NetHandle, DialFailure) {
    let mut client = config(psk, vec![peer], None);
    client.static_peers = vec![target];
    let handle = start(client, Keypair::generate_ed25519()).unwrap();
    loop {
        let failures = handle.dial_failures().await.unwrap();
        if let Some((_, failure)) = failures.into_iter().find(|(p, _)| *p == peer) {
            return (handle, failure);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn with_peer(addr: &Multiaddr, peer: PeerId) -> Multiaddr {
    addr.clone().with(mesh_net::Protocol::P2p(peer))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_listening_is_refused_and_a_wrong_peer_id_is_named() {
    bounded(async {
        let psk = mesh_net::generate_psk();
        // A port nobody listens on: take one and let it go.
        let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = free.local_addr().unwrap().port();
        drop(free);
        let nobody = PeerId::random();
        let (client, failure) =
            failure_reaching(psk, with_peer(&loopback(port), nobody), nobody).await;
        assert_eq!(failure, DialFailure::Refused);
        assert!(failure.to_string().contains("connection refused"));
        client.shutdown().await;

        let key = Keypair::generate_ed25519();
        let real = key.public().to_peer_id();
        let node = start(config(psk, vec![], Some(1)), key).unwrap();
        let addr = node.listen(loopback(0)).await.unwrap();
        let claimed = PeerId::random();
        let (client, failure) = failure_reaching(psk, with_peer(&addr, claimed), claimed).await;
        assert_eq!(failure, DialFailure::WrongPeer { obtained: real });
        client.shutdown().await;
        node.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_mesh_key_and_a_missing_admission_are_told_apart() {
    bounded(async {
        let psk = mesh_net::generate_psk();
        let client_key = Keypair::generate_ed25519();
        let key = Keypair::generate_ed25519();
        let party = key.public().to_peer_id();
        // The party admits the client, but the client has another mesh key.
        let node = start(
            config(psk, vec![client_key.public().to_peer_id()], Some(1)),
            key,
        )
        .unwrap();
        let addr = with_peer(&node.listen(loopback(0)).await.unwrap(), party);
        let (client, failure) =
            failure_reaching(mesh_net::generate_psk(), addr.clone(), party).await;
        // Depending on where the noise stops the handshake: a failure or a timeout.
        assert!(
            matches!(
                failure,
                DialFailure::HandshakeFailed { .. } | DialFailure::NoAnswer
            ),
            "{failure}"
        );
        assert!(failure.to_string().contains("mesh key"), "{failure}");
        client.shutdown().await;
        node.shutdown().await;

        // The right key, but the party does not have this client on its allow-list.
        let key = Keypair::generate_ed25519();
        let party = key.public().to_peer_id();
        let node = start(config(psk, vec![], Some(1)), key).unwrap();
        let addr = with_peer(&node.listen(loopback(0)).await.unwrap(), party);
        let (client, failure) = failure_reaching(psk, addr, party).await;
        assert_eq!(failure, DialFailure::NotAdmitted);
        assert!(failure.to_string().contains("clients"), "{failure}");
        client.shutdown().await;
        node.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_that_never_answers_is_no_answer() {
    bounded(async {
        // Accepts TCP connections and never says a word.
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = silent.local_addr().unwrap().port();
        let held = tokio::spawn(async move {
            let mut open = Vec::new();
            while let Ok((socket, _)) = silent.accept().await {
                open.push(socket);
            }
        });
        let peer = PeerId::random();
        let (client, failure) = failure_reaching(
            mesh_net::generate_psk(),
            with_peer(&loopback(port), peer),
            peer,
        )
        .await;
        assert_eq!(failure, DialFailure::NoAnswer);
        client.shutdown().await;
        held.abort();
    })
    .await;
}
