//! Everything a node needs to join the mesh, with defaults and validation.
//!
//! Built by `node` from its config file; kept free of serde so that secrets (the PSK) have
//! exactly one loading path ([`crate::identity::load_psk`]) with its permission check.

use std::fmt;
use std::time::Duration;

use libp2p::multiaddr::Protocol;
use libp2p::pnet::PreSharedKey;
use libp2p::{Multiaddr, PeerId};
use mesh::PartyId;

use crate::frame::DEFAULT_MAX_FRAME_BYTES;
use crate::link::LinkProfile;
use crate::quorum::{QuorumConfigError, ShareSummary};
use crate::roster::Roster;

/// Configuration of one mesh node.
#[derive(Clone)]
pub struct NetConfig {
    /// Addresses to listen on at start (e.g. `/ip4/0.0.0.0/tcp/4100`); more can be added with
    /// [`super::NetHandle::listen`].
    pub listen: Vec<Multiaddr>,
    /// Peers to dial and keep dialing while disconnected, each ending in `/p2p/<peer id>`
    /// (mDNS is not available on every clinic network).
    pub static_peers: Vec<Multiaddr>,
    /// The mesh pre-shared key: connections without it fail before Noise starts.
    pub psk: PreSharedKey,
    /// Peer IDs admitted to the mesh; connections from anyone else are closed and logged.
    pub allowed_peers: Vec<PeerId>,
    /// Discover peers by mDNS on the local link (allowed peers only are dialed). Off by
    /// default: it multicasts on every interface, which tests and sandboxes must not do, so
    /// the node enables it from its own config.
    pub mdns: bool,
    /// This node's share-file summary; peers must announce the same one.
    pub summary: ShareSummary,
    /// This node's party index, or `None` for an observer (a client).
    pub party: Option<PartyId>,
    /// Which device holds which party index (its share file's roster). Required for a party;
    /// an observer leaves it `None` and learns it from the announcements of the summary it
    /// adopts.
    pub roster: Option<Roster>,
    /// A connection with no open stream for this long is closed (an MPC stream, once opened,
    /// stays open while both nodes run).
    pub idle_connection_timeout: Duration,
    /// Limit on connection setup (TCP + PSK + Noise + Yamux), so a silent or garbage-speaking
    /// socket is dropped.
    pub handshake_timeout: Duration,
    /// Limit on one announcement or control request-response exchange (MPC frames travel on
    /// long-lived streams and have no per-frame exchange).
    pub request_timeout: Duration,
    /// How often disconnected static and mDNS-discovered peers are dialed again.
    pub redial_interval: Duration,
    /// Largest MPC frame body accepted or sent, in bytes; must be equal on every node.
    pub max_frame_bytes: usize,
    /// Most frames buffered for rounds nobody has asked for yet.
    pub max_buffered_frames: usize,
    /// Most payload bytes buffered for rounds nobody has asked for yet.
    pub max_buffered_bytes: usize,
    /// Link emulation applied to every outgoing MPC frame.
    pub link: LinkProfile,
    /// Observer only: `summary` is a placeholder; the node will adopt the quorum's summary
    /// ([`super::NetHandle::adopt_summary`]) once it has seen the announcements, so other
    /// summaries are expected until then and logged quietly.
    pub learn_summary: bool,
}

impl NetConfig {
    /// A configuration with the defaults: no roster (a party sets [`NetConfig::roster`]), no
    /// listen address, no static peer, mDNS off, 60 s
    /// idle timeout, 10 s handshake and request timeouts, 64 MiB frames, unshaped link.
    pub fn new(
        psk: PreSharedKey,
        allowed_peers: Vec<PeerId>,
        summary: ShareSummary,
        party: Option<PartyId>,
    ) -> Self {
        NetConfig {
            listen: Vec::new(),
            static_peers: Vec::new(),
            psk,
            allowed_peers,
            mdns: false,
            summary,
            party,
            roster: None,
            idle_connection_timeout: Duration::from_secs(60),
            handshake_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(10),
            redial_interval: Duration::from_secs(2),
            max_frame_bytes: DEFAULT_MAX_FRAME_BYTES,
            max_buffered_frames: 4096,
            max_buffered_bytes: 256 * 1024 * 1024,
            link: LinkProfile::Loopback,
            learn_summary: false,
        }
    }

    /// Checks what can be checked before any socket is opened.
    pub fn validate(&self) -> Result<(), ConfigError> {
        crate::quorum::Quorum::new(self.summary, self.party, self.roster.clone())?;
        if self.allowed_peers.is_empty() {
            return Err(ConfigError::EmptyAllowList);
        }
        for addr in &self.static_peers {
            let peer = static_peer_id(addr)?;
            if !self.allowed_peers.contains(&peer) {
                return Err(ConfigError::StaticPeerNotAllowed {
                    addr: addr.clone(),
                    peer,
                });
            }
        }
        for (what, value) in [
            ("max_frame_bytes", self.max_frame_bytes),
            ("max_buffered_frames", self.max_buffered_frames),
            ("max_buffered_bytes", self.max_buffered_bytes),
        ] {
            if value == 0 {
                return Err(ConfigError::Zero { what });
            }
        }
        if self.max_frame_bytes > u32::MAX as usize {
            return Err(ConfigError::FrameLimitTooLarge {
                max_frame_bytes: self.max_frame_bytes,
            });
        }
        Ok(())
    }
}

impl fmt::Debug for NetConfig {
    // By hand: `PreSharedKey`'s own Debug prints the key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NetConfig")
            .field("listen", &self.listen)
            .field("static_peers", &self.static_peers)
            .field("psk_fingerprint", &self.psk.fingerprint().to_string())
            .field("allowed_peers", &self.allowed_peers)
            .field("mdns", &self.mdns)
            .field("summary", &self.summary)
            .field("party", &self.party)
            .field("roster", &self.roster)
            .field("idle_connection_timeout", &self.idle_connection_timeout)
            .field("handshake_timeout", &self.handshake_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("redial_interval", &self.redial_interval)
            .field("max_frame_bytes", &self.max_frame_bytes)
            .field("max_buffered_frames", &self.max_buffered_frames)
            .field("max_buffered_bytes", &self.max_buffered_bytes)
            .field("link", &self.link)
            .field("learn_summary", &self.learn_summary)
            .finish()
    }
}

/// The peer ID at the end of a static peer address.
pub(crate) fn static_peer_id(addr: &Multiaddr) -> Result<PeerId, ConfigError> {
    match addr.iter().last() {
        Some(Protocol::P2p(peer)) => Ok(peer),
        _ => Err(ConfigError::StaticPeerWithoutId(addr.clone())),
    }
}

/// A configuration that cannot work.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// Invalid n, t or party index.
    #[error(transparent)]
    Quorum(#[from] QuorumConfigError),
    /// Nobody could ever join.
    #[error("the allow-list of peer IDs is empty: no device could join this node's mesh")]
    EmptyAllowList,
    /// A static peer without `/p2p/<peer id>`.
    #[error(
        "static peer {0} has no /p2p/<peer id> suffix: append the device's peer ID (`sotto status` prints it)"
    )]
    StaticPeerWithoutId(Multiaddr),
    /// A static peer that the allow-list would refuse.
    #[error("static peer {addr} ({peer}) is not on the allow-list: add it or remove the address")]
    StaticPeerNotAllowed {
        /// The address.
        addr: Multiaddr,
        /// Its peer ID.
        peer: PeerId,
    },
    /// A limit set to zero.
    #[error("{what} must be greater than zero")]
    Zero {
        /// The setting.
        what: &'static str,
    },
    /// Frame limit beyond what the u32 length prefix can carry.
    #[error("max_frame_bytes {max_frame_bytes} is above the 4 GiB the length prefix can carry")]
    FrameLimitTooLarge {
        /// The setting.
        max_frame_bytes: usize,
    },
}
