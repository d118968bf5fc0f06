//! The session I/O traits over the libp2p mesh: blocking calls for protocol threads, each
//! carried out on the node's async runtime through its [`NetHandle`].

use std::time::Instant;

use mesh::Endpoint;
use mesh_net::{NetError, NetHandle, PeerId, SessionId};
use tokio::runtime::Handle;

use crate::session::wire::{Control, encode};
use crate::session::{FrameError, Frames, PartyIo, Peer};

/// Frames over a mesh node.
#[derive(Clone, Debug)]
pub struct NetFrames {
    /// The runtime the node's event loop runs on.
    pub rt: Handle,
    /// The node.
    pub net: NetHandle,
}

impl From<NetError> for FrameError {
    fn from(e: NetError) -> Self {
        match e {
            NetError::Timeout { .. } => FrameError::Timeout,
            NetError::AlreadyWaiting { .. } => FrameError::Busy,
            NetError::PartyNotConnected { .. } | NetError::PartyDisconnected { .. } => {
                FrameError::Gone(e.to_string())
            }
            other => FrameError::Failed(other.to_string()),
        }
    }
}

fn endpoint(peer: Peer) -> Endpoint {
    match peer {
        Peer::Party(p) => Endpoint::Party(p),
        Peer::Client => Endpoint::Client,
    }
}

impl Frames for NetFrames {
    fn send(
        &self,
        to: Peer,
        session: SessionId,
        round: u64,
        payload: Vec<u8>,
    ) -> Result<(), FrameError> {
        self.rt
            .block_on(self.net.send_round(endpoint(to), session, round, payload))
            .map(|_| ())
            .map_err(FrameError::from)
    }

    fn recv(
        &self,
        from: Peer,
        session: SessionId,
        round: u64,
        deadline: Instant,
    ) -> Result<Vec<u8>, FrameError> {
        self.rt
            .block_on(
                self.net
                    .recv_round(endpoint(from), session, round, deadline),
            )
            .map_err(FrameError::from)
    }

    fn end(&self, session: SessionId) {
        let _ = self.rt.block_on(self.net.end_session(session));
    }
}

/// A party's session I/O over the mesh: frames plus stall reports to the session's client.
#[derive(Clone, Debug)]
pub struct NetPartyIo {
    /// The frames.
    pub frames: NetFrames,
    /// The session's client.
    pub client: PeerId,
}

crate::frames_via!(NetPartyIo, frames);

impl PartyIo for NetPartyIo {
    fn tell_client(&self, msg: Control) {
        let net = self.frames.net.clone();
        let client = self.client;
        let body = encode(&msg);
        self.frames.rt.spawn(async move {
            let _ = net.control(client, body).await;
        });
    }
}
