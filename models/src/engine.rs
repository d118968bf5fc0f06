//! The [`Engine`] trait both plaintext engines implement, so the CLI, the tests and the
//! benches drive them the same way, and [`EngineKind`] to pick one by name (built by
//! `EngineKind::build`, in the `select` module, so this module depends on no engine).

use crate::checkpoint::Config;
use crate::error::EngineError;

/// A transformer forward pass with its own KV cache.
pub trait Engine {
    /// The model's hyper-parameters.
    fn config(&self) -> &Config;

    /// Run `token` at position `pos` (0-based) and return the logits over the vocabulary.
    ///
    /// Positions must be fed in order: `pos` may be at most one past the last position run
    /// since [`Engine::reset`] (re-running an earlier position overwrites the cache from there).
    fn forward(&mut self, token: u32, pos: usize) -> Result<&[f32], EngineError>;

    /// The logits of the last forward pass (zeros before the first).
    fn logits(&self) -> &[f32];

    /// The greedy choice on the last logits, computed in the engine's own number format:
    /// the first index of the maximum.
    fn argmax(&self) -> u32;

    /// Forget the KV cache: the next forward pass must be at position 0.
    fn reset(&mut self);

    /// Which engine this is.
    fn kind(&self) -> EngineKind;
}

/// The available plaintext engines.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EngineKind {
    /// The f32 reference, bit-for-bit llama2.c run.c arithmetic.
    F32,
    /// The fixed-point twin of the secure engine (`mesh::fx` arithmetic only).
    Fixed,
}

impl EngineKind {
    /// All kinds, for listing.
    pub const ALL: [EngineKind; 2] = [EngineKind::F32, EngineKind::Fixed];

    /// The name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            EngineKind::F32 => "f32",
            EngineKind::Fixed => "fixed",
        }
    }
}

impl std::fmt::Display for EngineKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// run.c's RoPE rotation for the pair starting at element `i` (even) at position `pos`:
/// `(cos, sin)` of `pos * 1/10000^((i mod head_size)/head_size)`, in f32 exactly as run.c
/// computes them (libm `powf`, `cosf`, `sinf`).
pub(crate) fn rope_cos_sin(pos: usize, i: usize, head_size: usize) -> (f32, f32) {
    let head_dim = (i % head_size) as f32;
    let freq = 1.0f32 / 10000.0f32.powf(head_dim / head_size as f32);
    let val = pos as f32 * freq;
    (val.cos(), val.sin())
}

/// Check `token` and `pos` against the model and the cache fill level.
pub(crate) fn check_step(
    config: &Config,
    token: u32,
    pos: usize,
    filled: usize,
) -> Result<(), EngineError> {
    if token as usize >= config.vocab_size {
        return Err(EngineError::TokenOutOfRange {
            token,
            vocab_size: config.vocab_size,
        });
    }
    if pos >= config.seq_len {
        return Err(EngineError::PositionOutOfRange {
            pos,
            seq_len: config.seq_len,
        });
    }
    if pos > filled {
        return Err(EngineError::PositionSkipped { pos, filled });
    }
    Ok(())
}
