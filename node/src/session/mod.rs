//! The session protocol: how a client asks the quorum for one private generation, and how the
//! parties keep going when one of them is lost. `docs/session.md` tells the whole story.
//!
//! - [`wire`]: the request ([`Generation`], [`SessionRequest`]), control messages and replies,
//!   the share codec, and the per-stream session ids of a generation.
//! - [`io`]: the small traits the two sides are written against ([`Frames`], [`PartyIo`],
//!   [`ClientIo`]); the network and the in-memory router implement them.
//! - [`party`]: one party's side ([`PartySession::run`]); [`control`] is the state it shares
//!   with the node's control handler; `rounds` is its per-epoch `mesh::Transport`.
//! - [`client`]: the client's side ([`client::generate`]).
//! - [`recovery`]: the recovery decision as pure functions (reports in, a directive out).
//!
//! Only public values appear in control messages (lengths, party numbers, token positions);
//! the client sends nothing but its request, its input shares and these public decisions, and
//! receives only output shares.

pub mod client;
pub mod control;
pub mod io;
pub mod party;
pub mod recovery;
mod rounds;
pub mod wire;

use std::time::Duration;

pub use client::{ClientToken, Generated, QuorumInfo, generate};
pub use control::{Order, SessionControl};
pub use io::{ClientIo, Failure, FrameError, Frames, PartyIo, Peer};
pub use party::{Outcome, PartySession};
pub use wire::{Generation, GenerationError, Selection, SessionKey, SessionRequest, SessionStats};

/// Why a session could not run or complete.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// A message or payload was malformed.
    #[error(transparent)]
    Wire(#[from] wire::WireError),
    /// The MPC engine refused an argument or a peer's message.
    #[error(transparent)]
    Mesh(#[from] mesh::MeshError),
    /// The secure forward pass failed for a reason other than the network.
    #[error("{0}")]
    Engine(String),
    /// The client's input did not arrive.
    #[error("no input from the client: {0}")]
    NoInput(FrameError),
    /// The output could not be sent to the client.
    #[error("cannot send the output: {0}")]
    Output(FrameError),
    /// A unit to redo has no checkpoint left on this party.
    #[error("cannot redo unit {0}: no checkpoint")]
    NoCheckpoint(u32),
    /// The client asked to resume at a unit this party has not reached.
    #[error("cannot skip ahead to unit {redo} from {at}")]
    SkipAhead {
        /// The unit asked for.
        redo: u32,
        /// Where this party is.
        at: u32,
    },
    /// The client's resume order named a live set the session cannot go on with.
    #[error("refused the resume order: {0}")]
    Live(#[from] recovery::LiveError),
    /// The client did not decide after a stall.
    #[error(
        "no decision from the client within {limit:?} after the session stopped at unit {unit}"
    )]
    NoDecision {
        /// How long the party waited.
        limit: Duration,
        /// Where it stopped.
        unit: u32,
    },
    /// The request does not fit the model or the quorum.
    #[error("{0}")]
    Request(String),
    /// Parties refused the request.
    #[error("the quorum refused the request: {0}")]
    Refused(String),
    /// Parties run as many sessions as they may, still after retrying for `waited`.
    #[error(
        "the quorum is busy ({why}); still busy after retrying for {} s: try again later, or raise max_sessions on the devices if their memory allows",
        .waited.as_secs()
    )]
    Busy {
        /// The parties' answers.
        why: String,
        /// How long the client retried.
        waited: Duration,
    },
    /// The quorum returned a token outside the vocabulary.
    #[error("the quorum returned token {0}, outside the vocabulary")]
    BadToken(i128),
    /// A frame could not be exchanged.
    #[error(transparent)]
    Frame(FrameError),
    /// The generation could not be recovered.
    #[error("{0}")]
    Failed(String),
}
