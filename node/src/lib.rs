//! Sotto's node: everything the `sotto` binary does, as a library that tests call directly.
//!
//! A tour, from the protocol out:
//!
//! - [`session`]: the session protocol of one private generation — the request
//!   ([`session::Generation`]), control messages and the share codec ([`session::wire`]), the
//!   party's side ([`session::PartySession`]), the client's side ([`session::generate`]), and
//!   the recovery decision as pure functions ([`session::recovery`]). Written once against
//!   small I/O traits ([`session::io`]).
//! - [`server`]: a party's server — admission of requests and dispatch of control messages
//!   ([`server::Server`]) over a [`server::Host`]; [`server::net`] puts it on the libp2p mesh
//!   and [`server::startup`] is `sotto run` (start-up checks, then serve).
//! - [`client`]: the client of a mesh of devices: reach it, find the quorum, ask, status.
//! - [`memory`]: the mesh in one process without a network (`demo --in-memory`, tests).
//! - [`demo`]: provisioning and the local demo mesh (libp2p on 127.0.0.1, or in memory).
//! - [`net_io`]: the session I/O traits over a `mesh_net::NetHandle`.
//! - [`config`]: `node.toml`; [`model_dir`]: where model files are looked for.
//!
//! `docs/architecture.md` follows one token through these modules; `docs/session.md`
//! describes the session and recovery protocol.

pub mod client;
pub mod config;
pub mod demo;
pub mod memory;
pub mod model_dir;
pub mod net_io;
pub mod server;
pub mod session;

pub use session::SessionError;

/// Errors of the node's own set-up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    /// `serve` was called twice for one node.
    #[error("this node's control requests are already being served")]
    AlreadyServing,
}
