//! How a client reports a mesh it cannot reach (in one process, on 127.0.0.1): every device
//! refusing fails at once, one device down is named with its reason, and the client's
//! identity is reported (and whether it was just created).

use std::time::Duration;

use mesh::PartyId;
use mesh_net::{self as net, DialFailure, Keypair, Multiaddr, NetConfig, NetHandle, PeerId};
use node::client::{ConnectError, Reach, ReachSpec, connect};

/// A free port on 127.0.0.1: bound and let go, so nothing listens there.
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

fn addr(port: u16, peer: PeerId) -> Multiaddr {
    format!("/ip4/127.0.0.1/tcp/{port}/p2p/{peer}")
        .parse()
        .unwrap()
}

fn reach(psk: net::PreSharedKey, key: Keypair, peers: Vec<Multiaddr>, wait: Duration) -> Reach {
    let allowed = peers
        .iter()
        .filter_map(|a| match a.iter().last() {
            Some(net::Protocol::P2p(p)) => Some(p),
            _ => None,
        })
        .collect();
    Reach {
        psk,
        key,
        peers,
        allowed,
        mdns: false,
        connect_timeout: wait,
        gather: Duration::ZERO,
    }
}

fn connect_error(reach: Reach) -> ConnectError {
    let rt = tokio::runtime::Runtime::new().unwrap();
    match rt.block_on(connect(reach)) {
        Ok(_) => panic!("connected to a mesh that is not there"),
        Err(e) => match e.downcast::<ConnectError>() {
            Ok(e) => e,
            Err(other) => panic!("not a ConnectError: {other:#}"),
        },
    }
}

#[test]
fn nothing_listening_fails_at_once_with_every_address_refused() {
    let peers: Vec<Multiaddr> = (0..3)
        .map(|_| addr(closed_port(), PeerId::random()))
        .collect();
    // A minute to wait: only failing fast gives AllRefused rather than NoQuorum.
    let err = connect_error(reach(
        net::generate_psk(),
        Keypair::generate_ed25519(),
        peers.clone(),
        Duration::from_secs(60),
    ));
    let text = err.to_string();
    match err {
        ConnectError::AllRefused { unreachable } => {
            assert_eq!(unreachable.len(), 3, "{text}");
            assert!(
                unreachable
                    .iter()
                    .all(|u| u.failure == Some(DialFailure::Refused))
            );
        }
        other => panic!("expected AllRefused, got {other}"),
    }
    assert!(text.contains("connection refused"), "{text}");
    for a in &peers {
        assert!(text.contains(&a.to_string()), "{a} not named: {text}");
    }
}

/// A (3, 1) party node on 127.0.0.1 admitting `allowed`.
async fn party_node(
    psk: net::PreSharedKey,
    number: u8,
    allowed: Vec<PeerId>,
) -> (NetHandle, Multiaddr) {
    // The devices' identities are fixed so that every party holds the same roster.
    let device = |i: u8| Keypair::ed25519_from_bytes([i; 32]).unwrap();
    let roster =
        net::Roster::new((1..=3).map(|i| device(i).public().to_peer_id()).collect()).unwrap();
    let summary = net::ShareSummary {
        model_sha256: [7; 32],
        provisioning_id: [9; 16],
        n: 3,
        t: 1,
        roster_sha256: roster.sha256(),
    };
    let key = device(number);
    let peer = key.public().to_peer_id();
    let mut config = NetConfig::new(psk, allowed, summary, PartyId::from_number(number).ok());
    config.roster = Some(roster);
    config.redial_interval = Duration::from_millis(200);
    let (handle, event_loop) = net::new(config, key).unwrap();
    tokio::spawn(event_loop.run());
    let at = handle
        .listen("/ip4/127.0.0.1/tcp/0".parse().unwrap())
        .await
        .unwrap();
    (handle, format!("{at}/p2p/{peer}").parse().unwrap())
}

#[test]
fn a_device_that_is_down_is_named_with_its_reason() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let psk = net::generate_psk();
    let client = Keypair::generate_ed25519();
    let me = client.public().to_peer_id();
    let (a, a_addr) = rt.block_on(party_node(psk, 1, vec![me]));
    let (b, b_addr) = rt.block_on(party_node(psk, 2, vec![me]));
    let down = addr(closed_port(), PeerId::random());
    let err = rt
        .block_on(connect(reach(
            psk,
            client,
            vec![a_addr, b_addr, down.clone()],
            Duration::from_secs(3),
        )))
        .expect_err("two of three parties are no (3, 1) quorum")
        .downcast::<ConnectError>()
        .expect("a ConnectError");
    let text = err.to_string();
    match err {
        ConnectError::NoQuorum {
            answered,
            unreachable,
            ..
        } => {
            assert_eq!(answered.len(), 2, "{text}");
            assert_eq!(unreachable.len(), 1, "{text}");
            assert_eq!(unreachable[0].addr, down.to_string());
            assert_eq!(unreachable[0].failure, Some(DialFailure::Refused));
        }
        other => panic!("expected NoQuorum, got {other}"),
    }
    assert!(text.contains("no quorum within 3 s"), "{text}");
    assert!(
        text.contains(&format!("{down}: connection refused")),
        "{text}"
    );
    rt.block_on(async {
        a.shutdown().await;
        b.shutdown().await;
    });
}

#[test]
fn the_client_says_which_identity_it_is_and_when_it_was_just_created() {
    let dir = tempfile::tempdir().unwrap();
    let psk = dir.path().join("mesh.psk");
    net::write_psk(&psk, &net::generate_psk()).unwrap();
    let spec = ReachSpec {
        peers: vec![addr(4100, PeerId::random()).to_string()],
        psk,
        identity: Some(dir.path().join("client.key")),
        ..ReachSpec::default()
    };
    let (_, first) = Reach::resolve_with_identity(&spec).unwrap();
    assert!(first.created);
    let text = first.to_string();
    assert!(text.contains(&first.peer.to_string()), "{text}");
    assert!(
        text.contains("just created") && text.contains("`clients`"),
        "{text}"
    );
    let (_, again) = Reach::resolve_with_identity(&spec).unwrap();
    assert!(!again.created);
    assert_eq!(again.peer, first.peer);
    assert!(!again.to_string().contains("just created"));
}
