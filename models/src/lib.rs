//! Sotto's models: file formats, tokenizer, plaintext engines and samplers.
//!
//! - [`checkpoint`]: llama2.c legacy checkpoints ([`Checkpoint`], [`Config`]), validated
//!   before anything is allocated.
//! - [`tokenizer`]: llama2.c tokenizer files and run.c's encode/decode rules ([`Tokenizer`]);
//!   [`utf8`] joins byte-fallback tokens back into text while streaming ([`Utf8Stream`]).
//! - [`model`]: a model directory (checkpoint + tokenizer) ([`Model`]).
//! - [`engine`]: the [`Engine`] trait both plaintext engines implement, and [`EngineKind`]
//!   (its `build` lives in the private `select` module, which depends on both engines).
//! - [`reference`](mod@reference): the f32 reference engine, run.c arithmetic bit for bit
//!   ([`F32Engine`]).
//! - [`forward`](mod@forward): the fixed-point forward pass, written once over an
//!   [`forward::FxBackend`]; its two backends are the twin and the secure engine.
//! - [`fixed`]: the fixed-point twin of the secure engine, the plaintext backend built only
//!   from `mesh::fx` ([`FixedEngine`], [`FixedWeights`]); `docs/numerics.md` explains its
//!   structure and error.
//! - [`sampler`]: greedy and temperature/top-p sampling with a seeded RNG ([`Sampler`]).
//! - [`generate`](mod@generate): run.c's generation loop over any engine ([`generate()`]).
//! - [`secure`]: the secure transformer, the same forward pass on Shamir shares;
//!   [`sharefile`]: the per-party share-file format it provisions and loads.
//! - [`error`]: the typed errors of the formats, engines and sampler.
//!
//! This crate never opens a socket: it uses `mesh::fx` for the numerics and, in [`secure`],
//! `mesh`'s share API over whatever `Transport` the caller hands it.

pub mod checkpoint;
pub mod engine;
pub mod error;
pub mod fixed;
pub mod forward;
pub mod generate;
pub mod model;
pub mod reference;
pub mod sampler;
pub mod secure;
mod select;
pub mod sharefile;
pub mod tokenizer;
pub mod utf8;

pub use checkpoint::{Checkpoint, Config};
pub use engine::{Engine, EngineKind};
pub use error::{EngineError, LoadError, SamplerError, TokenError};
pub use fixed::{FixedEngine, FixedStats, FixedWeights};
pub use generate::{GenerationSummary, TokenEvent, generate};
pub use model::Model;
pub use reference::F32Engine;
pub use sampler::Sampler;
pub use tokenizer::{BOS, EOS, Tokenizer};
pub use utf8::Utf8Stream;
