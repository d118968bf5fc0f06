//! The libp2p mesh on 127.0.0.1: admission (PSK, allow-list), quorum formation, round traffic,
//! client traffic, a secure multiplication end to end, and hostile input.
//!
//! Every node listens on 127.0.0.1 only, mDNS is off, and every test bounds itself with a
//! timeout and shuts its nodes down.

mod common;

use std::future::Future;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{device_key, numbers, p, party, roster};
use mesh::{ClientLink, Endpoint, Threshold, Transport};
use mesh_net::{
    Keypair, Multiaddr, NetClientLink, NetConfig, NetError, NetEvent, NetHandle, NetTransport,
    PeerId, PreSharedKey, QuorumConflict, SessionId, ShareSummary,
};
use tokio::sync::broadcast;
use tokio::task::JoinHandle;

/// Upper bound on any one test.
const TEST_LIMIT: Duration = Duration::from_secs(20);
/// Upper bound on waiting for one expected event.
const WAIT: Duration = Duration::from_secs(8);

fn summary(n: u8, t: u8) -> ShareSummary {
    ShareSummary {
        model_sha256: [0x5a; 32],
        provisioning_id: [0x17; 16],
        n,
        t,
        roster_sha256: roster(n).sha256(),
    }
}

struct Node {
    handle: NetHandle,
    task: JoinHandle<()>,
    addr: Multiaddr,
}

impl Node {
    fn peer(&self) -> PeerId {
        self.handle.local_peer_id()
    }

    /// The address other nodes use as a static peer.
    fn dial_addr(&self) -> Multiaddr {
        format!("{}/p2p/{}", self.addr, self.peer())
            .parse()
            .unwrap()
    }

    async fn shutdown(self) {
        self.handle.shutdown().await;
        tokio::time::timeout(Duration::from_secs(5), self.task)
            .await
            .expect("event loop stops after shutdown")
            .expect("event loop did not panic");
    }
}

fn test_config(
    psk: PreSharedKey,
    allowed: Vec<PeerId>,
    summary: ShareSummary,
    party: Option<u8>,
) -> NetConfig {
    let mut config = NetConfig::new(psk, allowed, summary, party.map(p));
    if party.is_some() {
        config.roster = Some(roster(summary.n));
    }
    // Loopback tests: no multicast (already the default, stated to be sure), fast redial,
    // short handshakes.
    config.mdns = false;
    config.redial_interval = Duration::from_millis(250);
    config.handshake_timeout = Duration::from_secs(2);
    config
}

async fn start(config: NetConfig, key: Keypair) -> Node {
    let (handle, event_loop) = mesh_net::new(config, key).expect("valid config");
    let task = tokio::spawn(event_loop.run());
    let addr = handle
        .listen("/ip4/127.0.0.1/tcp/0".parse().unwrap())
        .await
        .expect("listen on loopback");
    Node { handle, task, addr }
}

/// Starts `parties` party nodes (1..=parties) that share a PSK and allow each other, each
/// statically dialing the nodes started before it.
async fn start_mesh(
    parties: u8,
    summary: ShareSummary,
    extra_allowed: &[PeerId],
) -> (Vec<Node>, PreSharedKey) {
    let psk = mesh_net::generate_psk();
    let keys: Vec<Keypair> = (1..=parties).map(device_key).collect();
    let mut allowed: Vec<PeerId> = keys.iter().map(|k| k.public().to_peer_id()).collect();
    allowed.extend_from_slice(extra_allowed);
    let mut nodes: Vec<Node> = Vec::new();
    for (i, key) in keys.into_iter().enumerate() {
        let node = start(
            test_config(psk, allowed.clone(), summary, Some(i as u8 + 1)),
            key,
        )
        .await;
        for earlier in &nodes {
            node.handle
                .add_static_peer(earlier.dial_addr())
                .await
                .unwrap();
        }
        nodes.push(node);
    }
    (nodes, psk)
}

/// Waits for the first event matching `pick`.
async fn wait_for<T>(
    events: &mut broadcast::Receiver<NetEvent>,
    mut pick: impl FnMut(&NetEvent) -> Option<T>,
) -> Option<T> {
    tokio::time::timeout(WAIT, async {
        loop {
            match events.recv().await {
                Ok(event) => {
                    if let Some(found) = pick(&event) {
                        return Some(found);
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    })
    .await
    .ok()
    .flatten()
}

/// Waits until `handle` has accepted `party`'s announcement.
async fn wait_for_party(handle: &NetHandle, party: u8) {
    let deadline = Instant::now() + WAIT;
    while !handle.quorum().await.unwrap().peers.contains_key(&p(party)) {
        assert!(
            Instant::now() < deadline,
            "party {party} never announced itself"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Collects every event for `window`.
async fn collect_for(
    events: &mut broadcast::Receiver<NetEvent>,
    window: Duration,
) -> Vec<NetEvent> {
    let mut seen = Vec::new();
    let _ = tokio::time::timeout(window, async {
        while let Ok(event) = events.recv().await {
            seen.push(event);
        }
    })
    .await;
    seen
}

/// Runs a blocking protocol body on its own OS thread, as the MPC engine does. The thread
/// starts at once (not when the result is awaited), so several parties run concurrently.
fn on_thread<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> impl Future<Output = R> {
    let thread = std::thread::spawn(f);
    async move {
        tokio::task::spawn_blocking(move || thread.join().expect("protocol thread panicked"))
            .await
            .unwrap()
    }
}

/// Whether the remote closes `socket` before `limit` (reading and discarding what it sends).
fn closed_within(mut socket: TcpStream, limit: Duration) -> bool {
    let until = Instant::now() + limit;
    let mut sink = [0u8; 4096];
    while Instant::now() < until {
        let _ = socket.set_read_timeout(Some(Duration::from_millis(100)));
        match socket.read(&mut sink) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return true,
        }
    }
    false
}

fn bounded(test: impl Future<Output = ()>) -> impl Future<Output = ()> {
    // RUST_LOG=mesh=debug shows the nodes' side of a failure.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    async move {
        tokio::time::timeout(TEST_LIMIT, test)
            .await
            .expect("test exceeded its time limit");
    }
}

/// What party `from` sends party `to` in `round`: distinct per triple, long enough to span
/// several reads.
fn message(from: usize, to: usize, round: usize, len: usize) -> Vec<u8> {
    (0..len)
        .map(|k| (from * 31 + to * 7 + round * 3 + k) as u8)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_form_a_quorum_and_exchange_rounds() {
    bounded(async {
        let (nodes, _) = start_mesh(3, summary(3, 1), &[]).await;
        for node in &nodes {
            let view = node.handle.wait_for_quorum(WAIT).await.unwrap();
            assert!(view.formed);
            assert_eq!(numbers(&view), vec![1, 2, 3]);
            assert_eq!(view.peers.len(), 2);
        }
        // Party indices map to the right peers everywhere.
        let view = nodes[0].handle.quorum().await.unwrap();
        assert_eq!(view.peers[&p(2)], nodes[1].peer());
        assert_eq!(view.peers[&p(3)], nodes[2].peer());

        let mut threads = Vec::new();
        for node in &nodes {
            let mut transport = NetTransport::new(node.handle.clone(), SessionId(7)).unwrap();
            threads.push(on_thread(move || {
                let me = transport.index();
                // A small round, then a 1 MiB one (many Yamux frames, several reads).
                for (round, len) in [(0usize, 48usize), (1, 1 << 20)] {
                    let outgoing = (0..3)
                        .map(|j| (j != me).then(|| message(me, j, round, len)))
                        .collect();
                    let expect: Vec<bool> = (0..3).map(|j| j != me).collect();
                    let incoming = transport.exchange(outgoing, &expect).unwrap();
                    for (j, msg) in incoming.into_iter().enumerate() {
                        if j == me {
                            assert!(msg.is_none());
                        } else {
                            assert_eq!(
                                msg.unwrap(),
                                message(j, me, round, len),
                                "from {j} to {me}"
                            );
                        }
                    }
                }
                transport.stats()
            }));
        }
        for thread in threads {
            let stats = thread.await;
            assert_eq!(stats.frames_sent, 4);
            assert_eq!(stats.frames_received, 4);
            assert_eq!(stats.payload_bytes_received, 2 * (48 + (1 << 20)));
        }
        for node in nodes {
            node.shutdown().await;
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secure_multiplication_runs_over_the_mesh() {
    bounded(async {
        // The client is an observer: on the parties' allow-lists, no party index.
        let client_key = Keypair::generate_ed25519();
        let client_peer = client_key.public().to_peer_id();
        let (parties, psk) = start_mesh(3, summary(3, 1), &[client_peer]).await;
        let mut allowed: Vec<PeerId> = parties.iter().map(Node::peer).collect();
        allowed.push(client_peer);
        let client = start(test_config(psk, allowed, summary(3, 1), None), client_key).await;
        for party in &parties {
            client
                .handle
                .add_static_peer(party.dial_addr())
                .await
                .unwrap();
        }
        client.handle.wait_for_quorum(WAIT).await.unwrap();
        for party in &parties {
            party.handle.wait_for_quorum(WAIT).await.unwrap();
        }

        let th = Threshold::new(3, 1).unwrap();
        let session = SessionId(42);
        let mut threads = Vec::new();
        for (i, party) in parties.iter().enumerate() {
            // The session a party admitted for this client.
            party
                .handle
                .bind_client(session, client.peer())
                .await
                .unwrap();
            let transport = NetTransport::new(party.handle.clone(), session).unwrap();
            threads.push(on_thread(move || {
                let mut p = mesh::Party::with_os_rng(th, i, transport).unwrap();
                let x = p.input_from_client(2)?;
                let y = p.mul_fx(&x[..1], &x[1..])?;
                p.open_to_client(&y)
            }));
        }
        let link = NetClientLink::new(client.handle.clone(), session);
        let out = on_thread(move || {
            let mut c = mesh::Client::with_os_rng(th, link).unwrap();
            c.share_input(&[3 << 16, -2 << 16]).unwrap();
            c.reconstruct(1).unwrap()
        })
        .await;
        for thread in threads {
            thread.await.unwrap();
        }
        assert!(
            (out[0] - (-6 << 16)).abs() <= 1,
            "3 x -2 = {}",
            out[0] as f64 / 65536.0
        );
        client.shutdown().await;
        for party in parties {
            party.shutdown().await;
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_traffic_is_routed_per_session() {
    bounded(async {
        let client_key = Keypair::generate_ed25519();
        let client_peer = client_key.public().to_peer_id();
        let (parties, psk) = start_mesh(3, summary(3, 1), &[client_peer]).await;
        let mut allowed: Vec<PeerId> = parties.iter().map(Node::peer).collect();
        allowed.push(client_peer);
        let client = start(test_config(psk, allowed, summary(3, 1), None), client_key).await;
        for party in &parties {
            client
                .handle
                .add_static_peer(party.dial_addr())
                .await
                .unwrap();
        }
        let view = client.handle.wait_for_quorum(WAIT).await.unwrap();
        assert_eq!(view.local_party, None);
        assert_eq!(numbers(&view), vec![1, 2, 3]);

        let session = SessionId(9);
        let mut threads = Vec::new();
        for party in &parties {
            // As a party admitting the request does; other client sessions are refused.
            let bind = party.handle.bind_client(session, client_peer);
            bind.await.unwrap();
            let mut transport = NetTransport::new(party.handle.clone(), session).unwrap();
            threads.push(on_thread(move || {
                // Echo two client messages back reversed.
                for _ in 0..2 {
                    let mut msg = transport.recv_from_client().unwrap();
                    msg.reverse();
                    transport.send_to_client(msg).unwrap();
                }
            }));
        }
        let mut link = NetClientLink::new(client.handle.clone(), session);
        let replies = on_thread(move || {
            let mut replies = Vec::new();
            for round in 0..2u8 {
                for j in 0..link.parties() {
                    link.send_to_party(j, vec![round, j as u8, 0xee]).unwrap();
                }
                for j in 0..link.parties() {
                    replies.push(link.recv_from_party(j).unwrap());
                }
            }
            replies
        })
        .await;
        for thread in threads {
            thread.await;
        }
        let expected: Vec<Vec<u8>> = (0..2u8)
            .flat_map(|round| (0..3u8).map(move |j| vec![0xee, j, round]))
            .collect();
        assert_eq!(replies, expected);
        // A party cannot receive "from the client" of a session no client started.
        let err = parties[0]
            .handle
            .recv_round(
                Endpoint::Client,
                SessionId(10),
                0,
                Instant::now() + Duration::from_millis(200),
            )
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                NetError::Timeout {
                    from: Endpoint::Client,
                    ..
                }
            ),
            "{err}"
        );
        client.shutdown().await;
        for party in parties {
            party.shutdown().await;
        }
    })
    .await;
}

/// Node 1 (`a_seen`) never admitted the stranger `peer_c`, and the stranger (`c_seen`) never
/// got in anywhere. (Node 1 may still hear from the legitimate node 2.)
fn assert_stranger_kept_out(a_seen: &[NetEvent], c_seen: &[NetEvent], peer_c: PeerId) {
    for event in a_seen {
        match event {
            NetEvent::PeerConnected(p) => assert_ne!(*p, peer_c, "stranger connected"),
            NetEvent::Announced { peer, .. } => assert_ne!(*peer, peer_c),
            _ => {}
        }
    }
    for event in c_seen {
        assert!(
            !matches!(
                event,
                NetEvent::PeerConnected(_) | NetEvent::Announced { .. }
            ),
            "stranger saw {event:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_with_the_wrong_psk_never_connects() {
    bounded(async {
        let key_c = Keypair::generate_ed25519();
        let peer_c = key_c.public().to_peer_id();
        let (nodes, _) = start_mesh(2, summary(3, 1), &[peer_c]).await;
        let mut a_events = nodes[0].handle.subscribe();
        let mut allowed: Vec<PeerId> = nodes.iter().map(Node::peer).collect();
        allowed.push(peer_c);
        // Same allow-list, same share summary, its own party index: only the key differs.
        let stranger = start(
            test_config(mesh_net::generate_psk(), allowed, summary(3, 1), Some(3)),
            key_c,
        )
        .await;
        let mut c_events = stranger.handle.subscribe();
        for node in &nodes {
            stranger
                .handle
                .add_static_peer(node.dial_addr())
                .await
                .unwrap();
        }
        // And the other way round.
        nodes[0]
            .handle
            .add_static_peer(stranger.dial_addr())
            .await
            .unwrap();

        let refused = wait_for(&mut a_events, |e| match e {
            NetEvent::Refused { reason, .. } => Some(reason.clone()),
            _ => None,
        })
        .await;
        assert!(
            refused.is_some(),
            "the wrong-key node's attempt is reported"
        );

        // Several redial rounds later, still nothing got through, either way.
        let a_seen = collect_for(&mut a_events, Duration::from_millis(1500)).await;
        let c_seen = collect_for(&mut c_events, Duration::from_millis(10)).await;
        assert_stranger_kept_out(&a_seen, &c_seen, peer_c);
        assert!(stranger.handle.quorum().await.unwrap().peers.is_empty());
        assert!(
            !nodes[0]
                .handle
                .quorum()
                .await
                .unwrap()
                .peers
                .contains_key(&p(3))
        );

        // No message can be delivered in either direction.
        stranger
            .handle
            .send_round(party(1), SessionId(1), 0, vec![1, 2, 3])
            .await
            .unwrap();
        let err = nodes[0]
            .handle
            .recv_round(
                party(3),
                SessionId(1),
                0,
                Instant::now() + Duration::from_millis(300),
            )
            .await
            .unwrap_err();
        assert!(
            matches!(err, NetError::PartyNotConnected { party } if party == p(3)),
            "{err}"
        );
        stranger.shutdown().await;
        for node in nodes {
            node.shutdown().await;
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_not_on_the_allow_list_is_refused_and_gets_nothing() {
    bounded(async {
        let (nodes, psk) = start_mesh(3, summary(3, 1), &[]).await;
        for node in &nodes {
            node.handle.wait_for_quorum(WAIT).await.unwrap();
        }
        let mut a_events = nodes[0].handle.subscribe();
        // The intruder has the PSK and allows everyone, and claims party 3; nobody allows it.
        let key_d = Keypair::generate_ed25519();
        let peer_d = key_d.public().to_peer_id();
        let mut allowed: Vec<PeerId> = nodes.iter().map(Node::peer).collect();
        allowed.push(peer_d);
        let intruder = start(test_config(psk, allowed, summary(3, 1), Some(3)), key_d).await;
        intruder
            .handle
            .add_static_peer(nodes[0].dial_addr())
            .await
            .unwrap();

        let refused = wait_for(&mut a_events, |e| match e {
            NetEvent::Refused { peer, .. } => *peer,
            _ => None,
        })
        .await;
        assert_eq!(refused, Some(peer_d), "the denial names the intruder");

        // Party 1 sends a round to parties 2 and 3: it reaches the real party 3 only.
        let mut transport = NetTransport::new(nodes[0].handle.clone(), SessionId(5)).unwrap();
        on_thread(move || {
            let outgoing = vec![None, Some(b"to two".to_vec()), Some(b"to three".to_vec())];
            transport.exchange(outgoing, &[false; 3]).unwrap();
        })
        .await;
        let deadline = Instant::now() + Duration::from_secs(5);
        let got = nodes[2]
            .handle
            .recv_round(party(1), SessionId(5), 0, deadline)
            .await
            .unwrap();
        assert_eq!(got, b"to three");
        let err = intruder
            .handle
            .recv_round(
                party(1),
                SessionId(5),
                0,
                Instant::now() + Duration::from_millis(300),
            )
            .await
            .unwrap_err();
        assert!(
            matches!(err, NetError::PartyNotConnected { party } if party == p(1)),
            "{err}"
        );

        let a_seen = collect_for(&mut a_events, Duration::from_millis(800)).await;
        for event in &a_seen {
            match event {
                NetEvent::PeerConnected(p) | NetEvent::PeerDisconnected(p) => {
                    assert_ne!(*p, peer_d, "intruder got a connection")
                }
                NetEvent::Announced { peer, .. } => assert_ne!(*peer, peer_d),
                _ => {}
            }
        }
        let view = nodes[0].handle.quorum().await.unwrap();
        assert_eq!(view.peers[&p(3)], nodes[2].peer());
        assert!(view.formed);
        intruder.shutdown().await;
        for node in nodes {
            node.shutdown().await;
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_tcp_garbage_never_reaches_the_protocol() {
    bounded(async {
        let (nodes, _) = start_mesh(3, summary(3, 1), &[]).await;
        let mut a_events = nodes[0].handle.subscribe();
        let port = port_of(&nodes[0].addr);

        // Garbage: pseudo-random bytes, then what looks like a 4 GiB length prefix. Then a
        // socket that says nothing, which the handshake timeout (2 s here) must drop.
        let (garbage_closed, silent_closed) = on_thread(move || {
            let mut junk: Vec<u8> = (0..65_536u32)
                .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
                .collect();
            junk.extend_from_slice(&u32::MAX.to_le_bytes());
            let mut garbage = TcpStream::connect(("127.0.0.1", port)).unwrap();
            let _ = garbage.write_all(&junk);
            let silent = TcpStream::connect(("127.0.0.1", port)).unwrap();
            (
                closed_within(garbage, Duration::from_secs(5)),
                closed_within(silent, Duration::from_secs(5)),
            )
        })
        .await;
        assert!(garbage_closed, "the node closes a garbage connection");
        assert!(silent_closed, "the node drops a silent connection");

        // The node is unharmed: the quorum still works end to end.
        for node in &nodes {
            node.handle.wait_for_quorum(WAIT).await.unwrap();
        }
        nodes[1]
            .handle
            .send_round(party(1), SessionId(3), 0, b"still here".to_vec())
            .await
            .unwrap();
        let got = nodes[0]
            .handle
            .recv_round(
                party(2),
                SessionId(3),
                0,
                Instant::now() + Duration::from_secs(5),
            )
            .await
            .unwrap();
        assert_eq!(got, b"still here");
        let seen = collect_for(&mut a_events, Duration::from_millis(50)).await;
        assert!(seen.iter().any(|e| matches!(e, NetEvent::Refused { .. })));
        assert!(
            !seen
                .iter()
                .any(|e| matches!(e, NetEvent::InboundRejected { .. })),
            "garbage reached the MPC protocol: {seen:?}"
        );
        for node in nodes {
            node.shutdown().await;
        }
    })
    .await;
}

/// Parties 1, 2 and 3 in a formed quorum, party 1 accepting frames of at most
/// `max_frame_bytes`.
async fn three_with_small_first(max_frame_bytes: usize) -> (Node, Node, Node) {
    let psk = mesh_net::generate_psk();
    let (key_a, key_b, key_c) = (device_key(1), device_key(2), device_key(3));
    let allowed = vec![
        key_a.public().to_peer_id(),
        key_b.public().to_peer_id(),
        key_c.public().to_peer_id(),
    ];
    let mut small = test_config(psk, allowed.clone(), summary(3, 1), Some(1));
    small.max_frame_bytes = max_frame_bytes;
    let a = start(small, key_a).await;
    let b = start(
        test_config(psk, allowed.clone(), summary(3, 1), Some(2)),
        key_b,
    )
    .await;
    let c = start(test_config(psk, allowed, summary(3, 1), Some(3)), key_c).await;
    b.handle.add_static_peer(a.dial_addr()).await.unwrap();
    c.handle.add_static_peer(a.dial_addr()).await.unwrap();
    c.handle.add_static_peer(b.dial_addr()).await.unwrap();
    a.handle.wait_for_quorum(WAIT).await.unwrap();
    b.handle.wait_for_quorum(WAIT).await.unwrap();
    (a, b, c)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_frame_from_an_admitted_peer_is_dropped_without_harm() {
    bounded(async {
        let (a, b, c) = three_with_small_first(4096).await;
        let mut a_events = a.handle.subscribe();
        let mut b_events = b.handle.subscribe();

        // 64 KiB against a 4 KiB limit: refused on the length prefix (the receiver's codec
        // logs it; request-response gives the receiver no event for an unread request).
        b.handle
            .send_round(party(1), SessionId(1), 0, vec![7; 65_536])
            .await
            .unwrap();
        let failed = wait_for(&mut b_events, |e| match e {
            NetEvent::SendFailed { to, .. } => *to,
            _ => None,
        })
        .await;
        assert_eq!(
            failed,
            Some(party(1)),
            "sender learns its frame did not arrive"
        );
        let err = a
            .handle
            .recv_round(
                party(2),
                SessionId(1),
                0,
                Instant::now() + Duration::from_millis(300),
            )
            .await
            .unwrap_err();
        assert!(
            matches!(err, NetError::Timeout { from, .. } if from == party(2)),
            "{err}"
        );

        // The same peer's next, reasonable frame arrives intact.
        b.handle
            .send_round(party(1), SessionId(1), 1, vec![9; 1000])
            .await
            .unwrap();
        let got = a
            .handle
            .recv_round(
                party(2),
                SessionId(1),
                1,
                Instant::now() + Duration::from_secs(5),
            )
            .await
            .unwrap();
        assert_eq!(got, vec![9; 1000]);
        // The connection survived: no disconnect was seen.
        let seen = collect_for(&mut a_events, Duration::from_millis(10)).await;
        assert!(
            !seen
                .iter()
                .any(|e| matches!(e, NetEvent::PeerDisconnected(_))),
            "{seen:?}"
        );
        // And the sending side refuses to build a frame above its own limit.
        let err = a
            .handle
            .send_round(party(2), SessionId(1), 0, vec![0; 8192])
            .await
            .unwrap_err();
        assert!(
            matches!(err, NetError::Frame(mesh_net::FrameError::TooLarge { .. })),
            "{err}"
        );
        for node in [a, b, c] {
            node.shutdown().await;
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rounds_are_buffered_until_asked_for_and_bounded() {
    bounded(async {
        let psk = mesh_net::generate_psk();
        let keys: Vec<Keypair> = (1..=3).map(device_key).collect();
        let allowed: Vec<PeerId> = keys.iter().map(|k| k.public().to_peer_id()).collect();
        let mut nodes = Vec::new();
        for (i, key) in keys.into_iter().enumerate() {
            let mut config = test_config(psk, allowed.clone(), summary(3, 1), Some(i as u8 + 1));
            // Two other peers may connect: three frames each.
            config.max_buffered_frames = 6;
            nodes.push(start(config, key).await);
        }
        nodes[1]
            .handle
            .add_static_peer(nodes[0].dial_addr())
            .await
            .unwrap();
        nodes[2]
            .handle
            .add_static_peer(nodes[0].dial_addr())
            .await
            .unwrap();
        nodes[0].handle.wait_for_quorum(WAIT).await.unwrap();
        // The sender must know party 1 too, or its frames never leave.
        wait_for_party(&nodes[1].handle, 1).await;
        let mut a_events = nodes[0].handle.subscribe();

        // Rounds 0..5 arrive before anyone asks; only three fit.
        for round in 0..5u64 {
            nodes[1]
                .handle
                .send_round(party(1), SessionId(2), round, vec![round as u8; 10])
                .await
                .unwrap();
        }
        // Both overflowing frames must have been turned away before anything is taken out,
        // or a late one would find room.
        for _ in 0..2 {
            let full = wait_for(&mut a_events, |e| match e {
                NetEvent::InboundRejected { reason, .. } if reason.contains("full") => Some(()),
                _ => None,
            })
            .await;
            assert!(full.is_some(), "overflow is rejected, not grown");
        }
        let mut delivered = 0;
        for round in 0..5u64 {
            let deadline = Instant::now() + Duration::from_millis(200);
            if let Ok(msg) = nodes[0]
                .handle
                .recv_round(party(2), SessionId(2), round, deadline)
                .await
            {
                assert_eq!(msg, vec![round as u8; 10]);
                delivered += 1;
            }
        }
        assert_eq!(delivered, 3);
        // Party 2 filled only its own share: party 3's frame still finds room.
        wait_for_party(&nodes[2].handle, 1).await;
        nodes[2]
            .handle
            .send_round(party(1), SessionId(2), 9, vec![3; 10])
            .await
            .unwrap();
        probe(&nodes[0].handle, party(3), &nodes[2].handle, party(1)).await;
        let deadline = Instant::now() + Duration::from_millis(200);
        let msg = nodes[0]
            .handle
            .recv_round(party(3), SessionId(2), 9, deadline)
            .await;
        assert_eq!(msg.unwrap(), vec![3; 10]);
        for node in nodes {
            node.shutdown().await;
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflicting_announcements_are_reported() {
    bounded(async {
        // Two admitted but misprovisioned devices: one with another model, one with a copy of
        // party 2's share file (so not the device the roster names for party 2).
        let (key_x, key_y) = (Keypair::generate_ed25519(), Keypair::generate_ed25519());
        let (peer_x, peer_y) = (key_x.public().to_peer_id(), key_y.public().to_peer_id());
        let (nodes, psk) = start_mesh(2, summary(3, 1), &[peer_x, peer_y]).await;
        let mut events = nodes[0].handle.subscribe();
        let mut allowed: Vec<PeerId> = nodes.iter().map(Node::peer).collect();
        allowed.extend([peer_x, peer_y]);
        let mut other_model = summary(3, 1);
        other_model.model_sha256 = [0; 32];
        let x = start(
            test_config(psk, allowed.clone(), other_model, Some(3)),
            key_x,
        )
        .await;
        let y = start(test_config(psk, allowed, summary(3, 1), Some(2)), key_y).await;
        // Node 2 must hold index 2 first, so the copy is the one reported.
        wait_for_party(&nodes[0].handle, 2).await;
        let view = nodes[0].handle.quorum().await.unwrap();
        assert_eq!(view.peers.get(&p(2)), Some(&nodes[1].peer()));
        x.handle
            .add_static_peer(nodes[0].dial_addr())
            .await
            .unwrap();
        y.handle
            .add_static_peer(nodes[0].dial_addr())
            .await
            .unwrap();

        let mut other_provisioning = None;
        let mut duplicate = None;
        let _ = tokio::time::timeout(WAIT, async {
            while other_provisioning.is_none() || duplicate.is_none() {
                match events.recv().await {
                    Ok(NetEvent::Conflict(c)) => match c {
                        QuorumConflict::OtherProvisioning { peer, .. } => {
                            other_provisioning = Some((peer, c.to_string()))
                        }
                        QuorumConflict::NotRosterPeer {
                            party,
                            device,
                            peer,
                        } => duplicate = Some((party, device, peer)),
                        _ => {}
                    },
                    Ok(_) => {}
                    Err(_) => return,
                }
            }
        })
        .await;
        let (peer, message) = other_provisioning.expect("other model reported");
        assert_eq!(peer, peer_x);
        assert!(message.contains("re-provision"), "{message}");
        assert_eq!(duplicate, Some((p(2), nodes[1].peer(), peer_y)));
        // Neither is counted.
        let view = nodes[0].handle.quorum().await.unwrap();
        assert_eq!(view.peers.len(), 1);
        assert!(!view.formed);
        for node in [x, y] {
            node.shutdown().await;
        }
        for node in nodes {
            node.shutdown().await;
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admitted_client_claiming_a_free_party_index_is_refused() {
    bounded(async {
        // Party 3 is down (rebooting); the client's key is on every allow-list and it
        // announces party 3 with the right summary and roster.
        let client_key = Keypair::generate_ed25519();
        let client_peer = client_key.public().to_peer_id();
        let device = device_key(3).public().to_peer_id();
        let (nodes, psk) = start_mesh(2, summary(3, 1), &[client_peer, device]).await;
        let mut events = nodes[0].handle.subscribe();
        let allowed: Vec<PeerId> = nodes.iter().map(Node::peer).collect();
        let impostor = start(
            test_config(psk, allowed.clone(), summary(3, 1), Some(3)),
            client_key,
        )
        .await;
        for node in &nodes {
            impostor
                .handle
                .add_static_peer(node.dial_addr())
                .await
                .unwrap();
        }
        let refused = wait_for(&mut events, |e| match e {
            NetEvent::Conflict(c @ QuorumConflict::NotRosterPeer { .. }) => Some(c.clone()),
            _ => None,
        })
        .await;
        assert_eq!(
            refused,
            Some(QuorumConflict::NotRosterPeer {
                peer: client_peer,
                party: p(3),
                device,
            })
        );
        for node in &nodes {
            let view = node.handle.quorum().await.unwrap();
            assert_eq!(view.peers.get(&p(3)).copied(), None, "index 3 stays free");
            assert!(!view.formed, "the impostor is not counted");
        }
        // The real party 3 comes back and takes its index.
        let real = start(
            test_config(psk, allowed, summary(3, 1), Some(3)),
            device_key(3),
        )
        .await;
        for node in &nodes {
            real.handle.add_static_peer(node.dial_addr()).await.unwrap();
        }
        for node in &nodes {
            node.handle.wait_for_quorum(WAIT).await.unwrap();
            let view = node.handle.quorum().await.unwrap();
            assert_eq!(view.peers.get(&p(3)).copied(), Some(device));
        }
        for node in [impostor, real] {
            node.shutdown().await;
        }
        for node in nodes {
            node.shutdown().await;
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wifi_link_emulation_is_applied_on_the_send_path() {
    bounded(async {
        let psk = mesh_net::generate_psk();
        let keys: Vec<Keypair> = (1..=3).map(device_key).collect();
        let allowed: Vec<PeerId> = keys.iter().map(|k| k.public().to_peer_id()).collect();
        let mut nodes: Vec<Node> = Vec::new();
        for (i, key) in keys.into_iter().enumerate() {
            let mut config = test_config(psk, allowed.clone(), summary(3, 1), Some(i as u8 + 1));
            config.link = mesh_net::LinkProfile::Wifi;
            let node = start(config, key).await;
            for earlier in &nodes {
                node.handle
                    .add_static_peer(earlier.dial_addr())
                    .await
                    .unwrap();
            }
            nodes.push(node);
        }
        for node in &nodes {
            node.handle.wait_for_quorum(WAIT).await.unwrap();
        }
        let (a, b) = (nodes[0].handle.clone(), nodes[1].handle.clone());
        let session = SessionId(11);
        let far = || Instant::now() + Duration::from_secs(5);

        // Ping-pong: every round trip pays at least the profile's 3 ms. Only lower bounds are
        // asserted; the emulator's precision is checked in tests/net_link.rs.
        let rtt_floor = mesh_net::LinkProfile::Wifi.round_trip(0);
        for round in 0..5u64 {
            let start = Instant::now();
            a.send_round(party(2), session, 2 * round, vec![1; 64])
                .await
                .unwrap();
            let ping = b
                .recv_round(party(1), session, 2 * round, far())
                .await
                .unwrap();
            b.send_round(party(1), session, 2 * round + 1, ping)
                .await
                .unwrap();
            a.recv_round(party(2), session, 2 * round + 1, far())
                .await
                .unwrap();
            let rtt = start.elapsed();
            assert!(
                rtt >= rtt_floor,
                "round trip {rtt:?} below the wifi profile's {rtt_floor:?}"
            );
        }
        // A 125 kB frame also pays its serialization (10 ms at 100 Mbit/s).
        let start = Instant::now();
        a.send_round(party(2), session, 100, vec![2; 125_000])
            .await
            .unwrap();
        b.recv_round(party(1), session, 100, far()).await.unwrap();
        let one_way = start.elapsed();
        let floor = mesh_net::LinkProfile::Wifi.one_way_delay()
            + mesh_net::LinkProfile::Wifi.serialization_time(125_000);
        assert!(one_way >= floor, "one way {one_way:?} below {floor:?}");
        for node in nodes {
            node.shutdown().await;
        }
    })
    .await;
}

/// Round 0 of this session carries probes only.
const PROBE: SessionId = SessionId(0xFEED);

/// Sends a probe from `sender` (as `from`, to `to`) that `receiver` is already waiting for.
/// Frames of one peer travel in order on one stream, so once it arrives every frame the sender
/// sent before it has been handled: accepted into the inbox, or refused.
async fn probe(receiver: &NetHandle, from: Endpoint, sender: &NetHandle, to: Endpoint) {
    let waiting = receiver.recv_round(from, PROBE, 0, Instant::now() + WAIT);
    tokio::pin!(waiting);
    // One poll queues the receive; the next command's answer means it is parked (commands are
    // handled in order), so the probe meets a waiting receive and never needs the inbox.
    assert!(futures::poll!(&mut waiting).is_pending());
    receiver.quorum().await.unwrap();
    sender
        .send_round(to, PROBE, 0, b"probe".to_vec())
        .await
        .unwrap();
    assert_eq!(waiting.await.unwrap(), b"probe");
}

/// The TCP port of a listen address.
fn port_of(addr: &Multiaddr) -> u16 {
    addr.iter()
        .find_map(|p| match p {
            libp2p::multiaddr::Protocol::Tcp(port) => Some(port),
            _ => None,
        })
        .expect("a TCP listen address")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_pending_limit_are_refused_before_any_handshake() {
    bounded(async {
        let key = Keypair::generate_ed25519();
        let allowed = vec![key.public().to_peer_id()];
        let mut config = test_config(mesh_net::generate_psk(), allowed, summary(3, 1), Some(1));
        config.max_pending_incoming = 2;
        // Silent sockets stay pending for the whole test.
        config.handshake_timeout = TEST_LIMIT;
        let node = start(config, key).await;
        let mut events = node.handle.subscribe();
        let port = port_of(&node.addr);
        // Two silent sockets fill the handshake slots; the third is refused at once.
        let sockets: Vec<TcpStream> = (0..3)
            .map(|_| TcpStream::connect(("127.0.0.1", port)).unwrap())
            .collect();
        let refused = wait_for(&mut events, |e| match e {
            NetEvent::Refused { reason, .. } if reason.contains("pending incoming") => {
                Some(reason.clone())
            }
            _ => None,
        })
        .await;
        let reason = refused.expect("a connection over the limit is refused");
        assert!(reason.contains("at most 2"), "{reason}");
        drop(sockets);
        node.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_frames_on_random_sessions_leaves_real_sessions_working() {
    bounded(async {
        let client_key = Keypair::generate_ed25519();
        let client_peer = client_key.public().to_peer_id();
        let (parties, psk) = start_mesh(3, summary(3, 1), &[client_peer]).await;
        let mut allowed: Vec<PeerId> = parties.iter().map(Node::peer).collect();
        allowed.push(client_peer);
        let client = start(test_config(psk, allowed, summary(3, 1), None), client_key).await;
        client
            .handle
            .add_static_peer(parties[0].dial_addr())
            .await
            .unwrap();
        wait_for_party(&client.handle, 1).await;
        // As many tiny frames as the whole inbox holds, each on a session nobody admitted:
        // before, each bound its session to the client and took a place in the inbox, and
        // every later frame was refused with "buffer full". Now each is refused, and the
        // 4,096 refusals flowing back must not stall the client's writer on that stream.
        for i in 0..4096u64 {
            client
                .handle
                .send_round(party(1), SessionId(1_000_000 + i), 0, vec![0xab])
                .await
                .unwrap();
        }
        // A session party 1 admits for the client afterwards still gets its frames...
        let session = SessionId(9);
        parties[0]
            .handle
            .bind_client(session, client_peer)
            .await
            .unwrap();
        client
            .handle
            .send_round(party(1), session, 0, b"real".to_vec())
            .await
            .unwrap();
        let got = parties[0]
            .handle
            .recv_round(Endpoint::Client, session, 0, Instant::now() + WAIT)
            .await;
        assert_eq!(got.unwrap(), b"real");
        // ... and so do the other parties' rounds, buffered before anyone asks.
        wait_for_party(&parties[1].handle, 1).await;
        parties[1]
            .handle
            .send_round(party(1), session, 1, b"party 2".to_vec())
            .await
            .unwrap();
        let got = parties[0]
            .handle
            .recv_round(party(2), session, 1, Instant::now() + WAIT)
            .await;
        assert_eq!(got.unwrap(), b"party 2");
        client.shutdown().await;
        for party in parties {
            party.shutdown().await;
        }
    })
    .await;
}
