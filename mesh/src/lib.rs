//! Sotto's MPC mesh: a threshold (Shamir, honest-majority, semi-honest) engine that computes
//! the fixed-point functions of [`fx`] on secret shares.
//!
//! A tour, bottom up:
//!
//! - [`fx`]: the fixed-point number format and the plaintext definition of every approximation
//!   (exp, reciprocal, inverse square root, SiLU, max/argmax). The secure protocols compute the
//!   same functions on shares; `models`' fixed-point twin calls these directly.
//! - [`field`]: F_p with p = 2^127 - 1; lazy reduction for sums of products.
//! - [`shamir`]: the `(n, t)` [`Threshold`], the share types [`Share`] (degree t) and [`Wide`]
//!   (degree 2t, a local product), dealing and reconstruction.
//! - [`transport`]: the [`Transport`] trait (one call = one communication round), the client's
//!   [`ClientLink`], the wire frame, and the [`Counters`] (rounds, messages, elements, bytes).
//! - [`memory`]: an in-memory transport (one thread per party) and the test harness
//!   [`memory::run_parties`] / [`memory::run_with_client`].
//! - [`Party`] (module `party`): one party's context (transport, preprocessing pool,
//!   counters) and the basic protocols: [`Party::mul`], [`Party::mul_trunc`],
//!   [`Party::dot_trunc`], [`Party::trunc`], [`Party::reduce`], [`Party::reduce_trunc`],
//!   [`Party::open`], [`Party::input_from_client`], [`Party::open_to_client`].
//! - `protocols`: the multi-round protocols as jobs that can share rounds: degree reduction,
//!   fused truncation, the LTZ comparison, SiLU's powers.
//! - `nonlinear`: [`Party::ltz`], [`Party::max`], [`Party::argmax`], [`Party::exp`],
//!   [`Party::reciprocal`], [`Party::rsqrt`], [`Party::silu`], [`Party::softmax`],
//!   [`Party::rms_inv`], [`Party::rmsnorm`] — each exactly the `fx` function, step for step.
//! - [`prep`]: the preprocessing pool and its dealer-free generation (random bits, truncation
//!   masks, comparison material), with a [`Demand`] per protocol to fill it ahead of time.
//! - [`Client`] (module `client`): the data owner's endpoint: `share_input`, `reconstruct`.
//!
//! The engine opens no socket and runs no async runtime: the libp2p mesh (how devices find and
//! admit each other, and the networked `Transport` / `ClientLink` that carry the same rounds) is
//! the `mesh-net` crate (`mesh/net/`), which implements [`Transport`] and [`ClientLink`].
//!
//! `docs/protocol.md` describes the protocols, their rounds and error bounds, and the threat
//! model.
//!
//! ```
//! use mesh::memory::run_with_client;
//! // Three parties, threshold one; the client shares 3.0 and -2.0 (16 fractional bits).
//! let (out, _) = run_with_client(
//!     3,
//!     1,
//!     7,
//!     |client| {
//!         client.share_input(&[3 << 16, -2 << 16]).unwrap();
//!         client.reconstruct(1).unwrap()
//!     },
//!     |party| {
//!         let x = party.input_from_client(2)?;
//!         let y = party.mul_fx(&x[..1], &x[1..])?;
//!         party.open_to_client(&y)
//!     },
//! )
//! .unwrap();
//! assert!((out[0] - (-6 << 16)).abs() <= 1);
//! ```

pub mod client;
pub mod error;
pub mod field;
pub mod fx;
mod ids;
pub mod memory;
mod nonlinear;
mod party;
pub mod prep;
mod protocols;
pub mod shamir;
pub mod transport;

#[cfg(test)]
mod privacy_tests;

pub use client::Client;
pub use error::{Endpoint, MeshError, MessageError};
pub use field::Fp;
pub use ids::{PartyId, Round};
pub use party::{KAPPA, Party};
pub use prep::Demand;
pub use shamir::{Share, Threshold, Wide};
pub use transport::{ClientLink, Counters, PhaseCounters, Transport};
