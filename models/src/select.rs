//! Building the plaintext engine a caller picked by [`EngineKind`]. It lives apart from
//! [`crate::engine`] because the engines depend on that module's trait, and the trait's module
//! must not depend on them in turn.

use std::sync::Arc;

use crate::checkpoint::Checkpoint;
use crate::engine::{Engine, EngineKind};
use crate::error::EngineError;
use crate::fixed::{FixedEngine, FixedWeights};
use crate::reference::F32Engine;

impl EngineKind {
    /// Build an engine of this kind for `checkpoint`.
    pub fn build(self, checkpoint: &Arc<Checkpoint>) -> Result<Box<dyn Engine>, EngineError> {
        Ok(match self {
            EngineKind::F32 => Box::new(F32Engine::new(Arc::clone(checkpoint))),
            EngineKind::Fixed => Box::new(FixedEngine::new(Arc::new(
                FixedWeights::from_checkpoint(checkpoint)?,
            ))?),
        })
    }
}
