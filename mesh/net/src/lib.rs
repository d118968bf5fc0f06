//! `mesh-net`, the libp2p mesh of Sotto: how devices find each other, admit each other and carry
//! the MPC rounds of the `mesh` engine (this crate implements [`mesh::Transport`] and
//! [`mesh::ClientLink`] over the network; `mesh` itself opens no socket).
//!
//! - [`config`]: [`NetConfig`], everything a node needs to join, and its validation.
//! - [`identity`]: the node's ed25519 identity and the mesh pre-shared key on disk (0600,
//!   refused when others can read them).
//! - [`quorum`]: announcements (party index + share-file summary + roster) and the [`Quorum`]
//!   view that forms at 2t+1 distinct, consistent parties, each on the index the roster gives it.
//! - [`roster`]: the [`Roster`], party index -> device peer ID, fixed at provisioning.
//! - [`frame`]: wire formats of `/sotto/mpc/2` and `/sotto/announce/2` (version byte, postcard,
//!   length limit checked before allocation), the announce and control codecs and the MPC
//!   stream reader.
//! - [`link`]: link emulation ([`LinkProfile`], [`LinkEmulator`]), plain `std`, shared with the
//!   in-memory transport.
//! - `behaviour`, `event_loop`, `shaper`, `streams`: the swarm (TCP + PSK + Noise + Yamux,
//!   allow-list, identify, ping, optional mDNS), the [`EventLoop`] task that alone owns it, the
//!   per-peer sender queues that apply link emulation, and the long-lived per-peer MPC streams
//!   frames travel on (written back to back, no per-frame ack).
//! - `dial`, `membership`, `control`, `routing`: the event loop's decisions as plain,
//!   unit-tested bookkeeping (whom to dial and when; announcements and the quorum view; control
//!   requests in flight; where an MPC frame goes), and `api`, what the loop and its handles
//!   exchange ([`NetEvent`], [`ControlRequest`], the internal commands).
//! - Control messages (`/sotto/control/1`): opaque request-response bodies between admitted
//!   peers ([`NetHandle::control`], [`NetHandle::take_control_requests`], [`ControlRequest`]);
//!   the node gives them meaning (session requests, recovery, status).
//! - [`NetHandle`]: the cloneable async handle to the event loop; [`NetTransport`] and
//!   [`NetClientLink`]: the blocking [`mesh::Transport`] / [`mesh::ClientLink`] for protocol
//!   threads.
//!
//! ```no_run
//! # async fn example(config: mesh_net::NetConfig, key: mesh_net::Keypair) -> Result<(), mesh_net::NetError> {
//! use mesh_net::SessionId;
//! let (handle, event_loop) = mesh_net::new(config, key)?;
//! tokio::spawn(event_loop.run());
//! handle.wait_for_quorum(std::time::Duration::from_secs(30)).await?;
//! let transport = mesh_net::NetTransport::new(handle.clone(), SessionId(1))?; // a `mesh::Transport`
//! std::thread::spawn(move || {
//!     // protocol code on a plain OS thread, e.g. `mesh::Party::with_os_rng(th, index, transport)`
//!     drop(transport);
//! });
//! # Ok(()) }
//! ```

mod api;
mod behaviour;
pub mod config;
mod control;
mod dial;
mod error;
mod event_loop;
pub mod frame;
mod handle;
pub mod identity;
pub mod link;
mod membership;
pub mod quorum;
pub mod roster;
mod routing;
mod shaper;
mod streams;
mod transport;

pub use api::{ControlRequest, NetEvent};
pub use config::{ConfigError, NetConfig};
pub use error::NetError;
pub use event_loop::EventLoop;
pub use frame::{Ack, CLIENT, FrameError, MpcFrame, Rejection, SessionId};
pub use handle::{NetHandle, new};
pub use identity::{
    IdentityError, generate_psk, load_identity, load_or_generate_identity, load_psk, write_psk,
};
pub use link::{LinkEmulator, LinkProfile, hold_until};
pub use quorum::{Announcement, Quorum, QuorumConflict, QuorumView, ShareSummary};
pub use roster::{Roster, RosterError};
pub use transport::{DEFAULT_RECV_TIMEOUT, NetClientLink, NetStats, NetTransport};

/// Re-exported so callers build configs without depending on libp2p directly.
pub use libp2p::{Multiaddr, PeerId, identity::Keypair, multiaddr::Protocol, pnet::PreSharedKey};
