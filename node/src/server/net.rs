//! The server on the libp2p mesh: [`NetHost`] gives [`Server`] the node's links, and
//! [`serve`] starts the two tasks of a node: one answers control requests (each on a blocking
//! thread, since a pause waits for the session to stop), one watches the mesh, logs what an
//! operator must see, and ends the sessions of clients that left.

use std::sync::Arc;
use std::time::{Duration, Instant};

use mesh::PartyId;
use mesh_net::{
    ControlRequest, NetError, NetEvent, NetHandle, PeerId, QuorumView, Roster, RosterError,
    SessionId, ShareSummary,
};
use models::secure::PartyModel;
use tokio::sync::{broadcast, mpsc};
use tracing::{error, warn};

use super::{Host, MeshView, Server};
use crate::net_io::{NetFrames, NetPartyIo};
use crate::session::wire::{Control, LinkStatus, Reply, decode, encode};

/// A node's links, for its [`Server`].
#[derive(Clone, Debug)]
pub struct NetHost {
    /// The node's frames (runtime + mesh handle).
    pub frames: NetFrames,
}

impl NetHost {
    /// The host of a node whose event loop runs on the current runtime.
    pub fn current(net: NetHandle) -> NetHost {
        NetHost {
            frames: NetFrames {
                rt: tokio::runtime::Handle::current(),
                net,
            },
        }
    }

    /// The node's mesh handle.
    pub fn net(&self) -> &NetHandle {
        &self.frames.net
    }

    fn block_on<T>(&self, f: impl std::future::Future<Output = T>) -> T {
        self.frames.rt.block_on(f)
    }
}

impl Host for NetHost {
    type Client = PeerId;
    type Io = NetPartyIo;
    type Error = NetError;

    fn session_io(&self, client: &PeerId) -> Arc<NetPartyIo> {
        Arc::new(NetPartyIo {
            frames: self.frames.clone(),
            client: *client,
        })
    }

    fn missing(&self, wanted: &[PartyId], wait: Duration) -> Result<Vec<PartyId>, NetError> {
        // Every participant must be reachable from here too, or the first round would stall.
        let until = Instant::now() + wait;
        loop {
            let view = self.block_on(self.net().quorum())?;
            let missing: Vec<PartyId> = wanted
                .iter()
                .copied()
                .filter(|p| Some(*p) != view.local_party && !view.peers.contains_key(p))
                .collect();
            if missing.is_empty() || Instant::now() >= until {
                return Ok(missing);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn bind_client(&self, session: SessionId, client: &PeerId) -> Result<(), NetError> {
        self.block_on(self.net().bind_client(session, *client))
    }

    fn end(&self, session: SessionId) {
        let net = self.net().clone();
        self.frames.rt.spawn(async move {
            let _ = net.end_session(session).await;
        });
    }

    fn view(&self) -> MeshView {
        self.block_on(mesh_view(self.net()))
    }
}

async fn mesh_view(net: &NetHandle) -> MeshView {
    let view = net.quorum().await.ok();
    let rtts = net.rtts().await.unwrap_or_default();
    let mut links: Vec<LinkStatus> = Vec::new();
    if let Some(v) = &view {
        for (&party, peer) in &v.peers {
            links.push(LinkStatus {
                party: Some(party),
                peer: peer.to_string(),
                rtt_us: rtts.get(peer).map(|d| d.as_micros() as u64),
            });
        }
    }
    for (peer, rtt) in &rtts {
        if !links.iter().any(|l| l.peer == peer.to_string()) {
            links.push(LinkStatus {
                party: None,
                peer: peer.to_string(),
                rtt_us: Some(rtt.as_micros() as u64),
            });
        }
    }
    let quorum = view.as_ref().map(QuorumView::parties).unwrap_or_default();
    MeshView {
        peer: net.local_peer_id().to_string(),
        quorum,
        formed: view.as_ref().is_some_and(|v| v.formed),
        links,
    }
}

/// The share summary every party of this provisioning announces, and the roster (party index
/// -> device) its share file binds, which the summary covers by hash.
pub fn summary_of(model: &PartyModel) -> Result<(ShareSummary, Roster), RosterError> {
    let h = model.header();
    let roster = Roster::from_bytes(&h.roster)?;
    let summary = ShareSummary {
        model_sha256: h.model_sha256,
        provisioning_id: h.provisioning_id,
        n: h.n,
        t: h.t,
        roster_sha256: roster.sha256(),
    };
    Ok((summary, roster))
}

/// Starts answering control messages and watching the mesh (call once per node, inside its
/// runtime).
pub fn serve(
    server: Arc<Server<NetHost>>,
    events: broadcast::Receiver<NetEvent>,
) -> Result<(), crate::NodeError> {
    let requests = server
        .host()
        .net()
        .take_control_requests()
        .ok_or(crate::NodeError::AlreadyServing)?;
    tokio::spawn(serve_control(Arc::clone(&server), requests));
    tokio::spawn(watch(server, events));
    Ok(())
}

async fn serve_control(server: Arc<Server<NetHost>>, mut requests: mpsc::Receiver<ControlRequest>) {
    while let Some(req) = requests.recv().await {
        let server = Arc::clone(&server);
        tokio::spawn(async move {
            let reply = match decode::<Control>(&req.body) {
                Ok(msg) => {
                    let (peer, party) = (req.peer, req.party);
                    tokio::task::spawn_blocking(move || server.handle(peer, party, msg))
                        .await
                        .unwrap_or_else(|e| Reply::Rejected(e.to_string()))
                }
                Err(e) => Reply::Rejected(e.to_string()),
            };
            let _ = req.respond(encode(&reply)).await;
        });
    }
}

/// Logs what an operator must see and ends the sessions of clients that left.
async fn watch(server: Arc<Server<NetHost>>, mut events: broadcast::Receiver<NetEvent>) {
    let me = server.host().net().local_peer_id();
    loop {
        match events.recv().await {
            Ok(NetEvent::Listening(addr)) => {
                eprintln!("sotto node: listening on {addr}/p2p/{me}");
            }
            Ok(NetEvent::Conflict(conflict)) => error!("refusing a peer: {conflict}"),
            Ok(NetEvent::Refused { peer, addr, reason }) => {
                warn!(?peer, %addr, %reason, "refused a connection (wrong mesh key, not on the allow-list, or not a Sotto node)");
            }
            Ok(NetEvent::QuorumFormed(view)) => {
                eprintln!(
                    "sotto node: quorum formed with parties {:?}",
                    view.parties()
                );
            }
            Ok(NetEvent::QuorumLost(view)) => {
                eprintln!(
                    "sotto node: quorum lost, parties present {:?}",
                    view.parties()
                );
            }
            Ok(NetEvent::PeerDisconnected(peer)) => {
                let server = Arc::clone(&server);
                // The session table's lock is a std mutex: take it off the async threads.
                let _ = tokio::task::spawn_blocking(move || server.client_gone(&peer)).await;
            }
            Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}
