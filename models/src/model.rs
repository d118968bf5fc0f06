//! A model directory: the checkpoint and its tokenizer, loaded and checked against each other.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::checkpoint::Checkpoint;
use crate::error::LoadError;
use crate::tokenizer::Tokenizer;

/// Checkpoint file name inside a model directory.
pub const CHECKPOINT_FILE: &str = "stories260K.bin";
/// Tokenizer file name inside a model directory.
pub const TOKENIZER_FILE: &str = "tok512.bin";

/// A checkpoint and the tokenizer that goes with it.
#[derive(Debug, Clone)]
pub struct Model {
    /// The weights, shared by every engine built from them.
    pub checkpoint: Arc<Checkpoint>,
    /// The tokenizer.
    pub tokenizer: Tokenizer,
}

impl Model {
    /// The two file paths a model directory must hold.
    pub fn files(dir: &Path) -> (PathBuf, PathBuf) {
        (dir.join(CHECKPOINT_FILE), dir.join(TOKENIZER_FILE))
    }

    /// Load [`CHECKPOINT_FILE`] and [`TOKENIZER_FILE`] from `dir`.
    pub fn load_dir(dir: &Path) -> Result<Self, LoadError> {
        let (ck, tok) = Self::files(dir);
        Self::load(&ck, &tok)
    }

    /// Load a checkpoint and a tokenizer with the checkpoint's vocabulary size.
    pub fn load(checkpoint: &Path, tokenizer: &Path) -> Result<Self, LoadError> {
        let checkpoint = Checkpoint::load(checkpoint)?;
        let tokenizer = Tokenizer::load(tokenizer, checkpoint.config().vocab_size)?;
        Ok(Model {
            checkpoint: Arc::new(checkpoint),
            tokenizer,
        })
    }
}
