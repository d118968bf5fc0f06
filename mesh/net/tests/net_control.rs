//! The mesh's additions for the node's session protocol, on 127.0.0.1: control messages
//! (`/sotto/control/1`) in both directions, binding a session to a client before it sends,
//! an observer adopting the summary the parties announce, and per-peer RTTs.

mod common;

use std::time::{Duration, Instant};

use common::{device_key, numbers, p, party, roster};
use mesh::Endpoint;
use mesh_net::{
    Keypair, Multiaddr, NetConfig, NetError, NetHandle, PeerId, PreSharedKey, SessionId,
    ShareSummary,
};

const WAIT: Duration = Duration::from_secs(8);

fn summary() -> ShareSummary {
    ShareSummary {
        model_sha256: [0x5a; 32],
        provisioning_id: [0x17; 16],
        n: 3,
        t: 1,
        roster_sha256: roster(3).sha256(),
    }
}

struct Node {
    handle: NetHandle,
    addr: Multiaddr,
}

async fn start(
    psk: PreSharedKey,
    allowed: Vec<PeerId>,
    summary: ShareSummary,
    party: Option<u8>,
    key: Keypair,
    learn: bool,
) -> Node {
    let mut config = NetConfig::new(psk, allowed, summary, party.map(p));
    if party.is_some() {
        config.roster = Some(roster(summary.n));
    }
    config.redial_interval = Duration::from_millis(250);
    config.learn_summary = learn;
    let (handle, event_loop) = mesh_net::new(config, key).expect("valid config");
    tokio::spawn(event_loop.run());
    let addr = handle
        .listen("/ip4/127.0.0.1/tcp/0".parse().unwrap())
        .await
        .expect("listen on loopback");
    let addr = format!("{addr}/p2p/{}", handle.local_peer_id())
        .parse()
        .unwrap();
    Node { handle, addr }
}

/// Three parties and a learning client that dials them all.
async fn mesh() -> (Vec<Node>, Node) {
    let psk = mesh_net::generate_psk();
    let keys: Vec<Keypair> = (1..=3)
        .map(device_key)
        .chain([Keypair::generate_ed25519()])
        .collect();
    let allowed: Vec<PeerId> = keys.iter().map(|k| k.public().to_peer_id()).collect();
    let mut parties: Vec<Node> = Vec::new();
    for (i, key) in keys[..3].iter().enumerate() {
        let node = start(
            psk,
            allowed.clone(),
            summary(),
            Some(i as u8 + 1),
            key.clone(),
            false,
        )
        .await;
        for earlier in &parties {
            node.handle
                .add_static_peer(earlier.addr.clone())
                .await
                .unwrap();
        }
        parties.push(node);
    }
    let placeholder = ShareSummary {
        model_sha256: [0; 32],
        provisioning_id: [0; 16],
        n: 1,
        t: 0,
        roster_sha256: [0; 32],
    };
    let client = start(psk, allowed, placeholder, None, keys[3].clone(), true).await;
    for p in &parties {
        client.handle.add_static_peer(p.addr.clone()).await.unwrap();
    }
    (parties, client)
}

async fn bounded(test: impl std::future::Future<Output = ()>) {
    tokio::time::timeout(Duration::from_secs(20), test)
        .await
        .expect("test exceeded its time limit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_observer_adopts_the_announced_summary_and_exchanges_control_messages() {
    bounded(async {
        let (parties, client) = mesh().await;
        // Under the placeholder nobody counts; every announcement is still visible.
        let until = Instant::now() + WAIT;
        let anns = loop {
            let anns = client.handle.announcements().await.unwrap();
            if anns.len() == 3 {
                break anns;
            }
            assert!(Instant::now() < until, "announcements: {anns:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert!(anns.iter().all(|(_, a)| a.summary == summary()));
        assert!(!client.handle.quorum().await.unwrap().formed);
        let view = client.handle.adopt_summary(summary()).await.unwrap();
        assert!(view.formed);
        assert_eq!(numbers(&view), vec![1, 2, 3]);
        // A party cannot adopt another summary.
        assert!(matches!(
            parties[0].handle.adopt_summary(summary()).await,
            Err(NetError::NotAnObserver)
        ));

        // Party 1 answers control requests by echoing them reversed.
        let mut requests = parties[0].handle.take_control_requests().unwrap();
        assert!(parties[0].handle.take_control_requests().is_none());
        let client_peer = client.handle.local_peer_id();
        tokio::spawn(async move {
            while let Some(req) = requests.recv().await {
                assert_eq!(req.peer, client_peer);
                assert_eq!(req.party, None);
                let mut body = req.body.clone();
                body.reverse();
                req.respond(body).await.unwrap();
            }
        });
        let p1 = view.peers[&p(1)];
        let answer = client.handle.control(p1, vec![1, 2, 3]).await.unwrap();
        assert_eq!(answer, vec![3, 2, 1]);
        // Nobody took party 2's requests: the request fails at once instead of hanging.
        let p2 = view.peers[&p(2)];
        assert!(client.handle.control(p2, vec![0]).await.is_err());

        // A party routes a session's client frames to the peer it was bound to, before the
        // client has sent anything on that session.
        let session = SessionId(77);
        parties[2]
            .handle
            .bind_client(session, client_peer)
            .await
            .unwrap();
        assert!(matches!(
            parties[2]
                .handle
                .bind_client(session, parties[0].handle.local_peer_id())
                .await,
            Err(NetError::SessionTaken { .. })
        ));
        parties[2]
            .handle
            .send_round(Endpoint::Client, session, 0, vec![9; 32])
            .await
            .unwrap();
        let got = client
            .handle
            .recv_round(party(3), session, 0, std::time::Instant::now() + WAIT)
            .await
            .unwrap();
        assert_eq!(got, vec![9; 32]);

        // Pings measure every link.
        let until = Instant::now() + WAIT;
        loop {
            let rtts = client.handle.rtts().await.unwrap();
            if view.peers.values().all(|p| rtts.contains_key(p)) {
                break;
            }
            assert!(Instant::now() < until, "no RTTs: {rtts:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        client.handle.shutdown().await;
        for p in parties {
            p.handle.shutdown().await;
        }
    })
    .await;
}
