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
//! - `params`: the security parameter [`KAPPA`] and every bit width (truncation and comparison
//!   inputs, comparison bits, mask widths).
//! - `frame`: the wire framing of MPC messages (build, check, read), sealed off from the
//!   protocols.
//! - [`transport`]: the [`Transport`] trait (one call = one communication round), the client's
//!   [`ClientLink`], and the [`Counters`] (rounds, messages, elements, bytes).
//! - [`memory`]: an in-memory transport (one thread per party) and the test harness
//!   [`memory::run_parties`] / [`memory::run_with_client`].
//! - `round`: the round engine: one round resharing and opening at once, the jobs that share
//!   rounds, the round numbers and the counters' bookkeeping.
//! - `protocols/`: the multi-round protocols as jobs: degree reduction (`mul`), fused
//!   truncation (`trunc`), the LTZ comparison (`ltz`), SiLU's powers (`powers`).
//! - [`prep`] (`prep/`): the [`Demand`] of every protocol (`demand`), the preprocessing pool
//!   (`pool`) and its dealer-free generation (`generate`).
//! - [`Party`] (module `party`): one party: its round engine, its pool, and the basic
//!   protocols: [`Party::mul`], [`Party::mul_trunc`], [`Party::dot_trunc`], [`Party::trunc`],
//!   [`Party::reduce`], [`Party::reduce_trunc`], [`Party::open`], [`Party::input_from_client`],
//!   [`Party::open_to_client`].
//! - `nonlinear/`: comparisons (`compare`: [`Party::ltz`], [`Party::max`], [`Party::argmax`],
//!   [`Party::max_argmax`], [`Party::argmax_onehot`]) and approximations (`approx`:
//!   [`Party::exp`], [`Party::reciprocal`], [`Party::rsqrt`], [`Party::silu`],
//!   [`Party::softmax`], [`Party::rms_inv`], [`Party::rmsnorm`]) — each exactly the `fx`
//!   function, step for step.
//! - [`reconstruct_all`] (module `reconstruct`): the one reconstruction routine; it checks that
//!   every received share lies on one degree-t polynomial.
//! - [`Client`] (module `client`): the data owner's endpoint: `share_input`, `reconstruct`
//!   (through [`reconstruct_all`]).
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
mod frame;
pub mod fx;
mod ids;
pub mod memory;
mod nonlinear;
mod params;
mod party;
pub mod prep;
mod protocols;
mod reconstruct;
mod round;
mod secret;
pub mod shamir;
pub mod transport;

#[cfg(test)]
mod privacy_tests;

pub use client::Client;
pub use error::{Endpoint, MeshError, MessageError};
pub use field::Fp;
pub use ids::{PartyId, PartyIdError, Round};
pub use params::KAPPA;
pub use party::Party;
pub use prep::Demand;
pub use reconstruct::reconstruct_all;
pub use shamir::{Share, Threshold, Wide};
pub use transport::{ClientLink, Counters, PhaseCounters, Transport};
