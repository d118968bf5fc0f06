//! The libp2p stack of a mesh node: TCP, the pre-shared-key layer, Noise, Yamux, and the
//! combined behaviour (allow-list, identify, ping, optional mDNS, announcements, MPC frame
//! streams, control messages).
//!
//! The PSK layer wraps raw TCP *before* Noise, so a device without the mesh key cannot even
//! complete a Noise handshake, and the allow-list is the first behaviour, so a connection from
//! a peer that is not on it is closed before any protocol handler exists for it.

use std::net::{IpAddr, SocketAddr};

use libp2p::core::upgrade::Version;
use libp2p::identity::Keypair;
use libp2p::multiaddr::Protocol;
use libp2p::pnet::PnetConfig;
use libp2p::request_response::{self, ProtocolSupport};
use libp2p::swarm::NetworkBehaviour;
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::{
    Multiaddr, Swarm, SwarmBuilder, Transport, allow_block_list, connection_limits, identify, mdns,
    noise, ping, tcp, yamux,
};

use crate::config::NetConfig;
use crate::error::NetError;
use crate::frame::{ANNOUNCE_PROTOCOL, AnnounceCodec, CONTROL_PROTOCOL, ControlCodec};

/// Identify's protocol version: peers of another family are visible in logs at once.
const IDENTIFY_PROTOCOL: &str = "/sotto/id/1";

#[derive(NetworkBehaviour)]
pub(crate) struct Behaviour {
    // First: a connection over a limit is refused before anything else looks at it (pending
    // incoming ones before their PSK handshake even starts).
    pub(crate) limits: connection_limits::Behaviour,
    // Next, so that a refused peer never reaches the handlers below.
    pub(crate) allow: allow_block_list::Behaviour<allow_block_list::AllowedPeers>,
    pub(crate) identify: identify::Behaviour,
    pub(crate) ping: ping::Behaviour,
    pub(crate) mdns: Toggle<mdns::tokio::Behaviour>,
    pub(crate) announce: request_response::Behaviour<AnnounceCodec>,
    /// MPC frames: long-lived streams, see `crate::streams`.
    pub(crate) mpc: libp2p_stream::Behaviour,
    pub(crate) control: request_response::Behaviour<ControlCodec>,
}

fn setup_err(
    what: &'static str,
) -> impl FnOnce(Box<dyn std::error::Error + Send + Sync>) -> NetError {
    move |source| NetError::Setup { what, source }
}

/// Builds the swarm. Must run inside a tokio runtime (mDNS and the executor need it).
pub(crate) fn build_swarm(
    config: &NetConfig,
    keypair: Keypair,
) -> Result<Swarm<Behaviour>, NetError> {
    let local_peer_id = keypair.public().to_peer_id();
    let psk = config.psk;
    let noise_config = noise::Config::new(&keypair).map_err(|e| setup_err("noise")(e.into()))?;
    let mdns = if config.mdns {
        Some(
            mdns::tokio::Behaviour::new(mdns::Config::default(), local_peer_id)
                .map_err(|e| setup_err("mdns")(e.into()))?,
        )
    } else {
        None
    };

    let mut allow = allow_block_list::Behaviour::<allow_block_list::AllowedPeers>::default();
    for peer in &config.allowed_peers {
        allow.allow_peer(*peer);
    }
    let announce_config =
        request_response::Config::default().with_request_timeout(config.request_timeout);
    let control_config =
        request_response::Config::default().with_request_timeout(config.request_timeout);
    let idle = config.idle_connection_timeout;
    let per_peer = config.max_connections_per_peer;
    let peers = u32::try_from(config.allowed_peers.len()).unwrap_or(u32::MAX);
    let limits = connection_limits::ConnectionLimits::default()
        .with_max_pending_incoming(Some(config.max_pending_incoming))
        .with_max_established_per_peer(Some(per_peer))
        .with_max_established(Some(per_peer.saturating_mul(peers)));

    let swarm = SwarmBuilder::with_existing_identity(keypair)
        .with_tokio()
        .with_other_transport(move |_| {
            tcp::tokio::Transport::new(tcp::Config::default().nodelay(true))
                .and_then(move |socket, _| PnetConfig::new(psk).handshake(socket))
                .upgrade(Version::V1Lazy)
                .authenticate(noise_config)
                .multiplex(yamux::Config::default())
        })
        .unwrap_or_else(|never| match never {})
        .with_behaviour(|key| Behaviour {
            limits: connection_limits::Behaviour::new(limits),
            allow,
            identify: identify::Behaviour::new(
                identify::Config::new(IDENTIFY_PROTOCOL.to_owned(), key.public())
                    .with_agent_version(format!("sotto-mesh/{}", env!("CARGO_PKG_VERSION"))),
            ),
            ping: ping::Behaviour::new(ping::Config::new()),
            mdns: Toggle::from(mdns),
            announce: request_response::Behaviour::with_codec(
                AnnounceCodec,
                [(ANNOUNCE_PROTOCOL, ProtocolSupport::Full)],
                announce_config,
            ),
            mpc: libp2p_stream::Behaviour::new(),
            control: request_response::Behaviour::with_codec(
                ControlCodec,
                [(CONTROL_PROTOCOL, ProtocolSupport::Full)],
                control_config,
            ),
        })
        .unwrap_or_else(|never| match never {})
        .with_swarm_config(|c| c.with_idle_connection_timeout(idle))
        .with_connection_timeout(config.handshake_timeout)
        .build();
    Ok(swarm)
}

/// Refuses a TCP listen address whose port another socket holds.
///
/// libp2p's TCP transport binds every listen socket with `SO_REUSEPORT` (and has no option to
/// turn it off), so a second node on a taken port would bind it too, print "listening" and
/// take a share of the first one's connections. A plain bind, without `SO_REUSEPORT`, fails
/// while any other socket listens on the port: try one and let it go at once. (Two nodes
/// starting in the same instant can still both pass; the check is for the common mistake of
/// starting a node twice.) Port 0 and non-TCP addresses are left to libp2p.
pub(crate) fn check_port_free(addr: &Multiaddr) -> Result<(), NetError> {
    let mut ip = None;
    let mut port = None;
    for protocol in addr.iter() {
        match protocol {
            Protocol::Ip4(a) => ip = Some(IpAddr::V4(a)),
            Protocol::Ip6(a) => ip = Some(IpAddr::V6(a)),
            Protocol::Tcp(p) => port = Some(p),
            _ => {}
        }
    }
    let (Some(ip), Some(port)) = (ip, port) else {
        return Ok(());
    };
    if port == 0 {
        return Ok(());
    }
    match std::net::TcpListener::bind(SocketAddr::new(ip, port)) {
        Ok(probe) => {
            drop(probe);
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => Err(NetError::AddressInUse {
            addr: addr.clone(),
            reason: e.to_string(),
        }),
        // Anything else (not a local address, ...) is libp2p's to report.
        Err(_) => Ok(()),
    }
}
