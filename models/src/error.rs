//! The crate's typed errors: [`LoadError`] for reading model files, [`TokenError`] for token
//! ids, [`EngineError`] for running a forward pass and [`SamplerError`] for sampling parameters.
//!
//! Every [`LoadError`] names the file it is about, so a message is actionable on its own.

use std::path::PathBuf;

/// A model file (checkpoint or tokenizer) could not be read or is not a valid file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// The file does not exist.
    #[error("{}: model file not found", .path.display())]
    MissingFile {
        /// The file that was looked for.
        path: PathBuf,
    },
    /// The operating system refused to open or read the file.
    // The OS error is in the message, not a `#[source]`: a chain printer would say it twice.
    #[error("{}: cannot read: {error}", .path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        error: std::io::Error,
    },
    /// The file ends before `what` is complete.
    #[error("{}: truncated: the {what} needs {needed} bytes but the file has {actual}", .path.display())]
    Truncated {
        /// The file.
        path: PathBuf,
        /// Which part of the file is incomplete.
        what: String,
        /// File size the part needs.
        needed: u64,
        /// Actual file size.
        actual: u64,
    },
    /// The file holds bytes after everything its header describes.
    #[error("{}: {} extra bytes after the end described by the header (expected {expected} bytes, file has {actual})", .path.display(), .actual - .expected)]
    ExtraBytes {
        /// The file.
        path: PathBuf,
        /// Size the header implies.
        expected: u64,
        /// Actual file size.
        actual: u64,
    },
    /// A header value is zero, negative or inconsistent with another one.
    #[error("{}: invalid header: {field} = {value}: {reason}", .path.display())]
    BadHeader {
        /// The file.
        path: PathBuf,
        /// Header field name (as in llama2.c's `Config`).
        field: &'static str,
        /// The value read.
        value: i64,
        /// Why it is rejected.
        reason: &'static str,
    },
    /// A size derived from the header overflows or exceeds this crate's sanity limit.
    #[error("{}: {what} is too large (limit {limit})", .path.display())]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// The size that is too large.
        what: &'static str,
        /// The limit it exceeds.
        limit: u64,
    },
    /// A weight or score is NaN or infinite.
    #[error("{}: {tensor}[{index}] is not a finite number", .path.display())]
    NonFinite {
        /// The file.
        path: PathBuf,
        /// The tensor (or `score` for a tokenizer).
        tensor: &'static str,
        /// Flat index of the bad value.
        index: usize,
    },
    /// A tokenizer piece has a negative length or one beyond `max_token_length`.
    #[error("{}: token {id}: piece length {len} is outside 0..={max_token_length}", .path.display())]
    BadPieceLength {
        /// The file.
        path: PathBuf,
        /// Token id.
        id: usize,
        /// Length read.
        len: i64,
        /// The file's declared maximum.
        max_token_length: usize,
    },
    /// A tokenizer piece is not valid UTF-8.
    #[error("{}: token {id}: piece is not valid UTF-8", .path.display())]
    NonUtf8Piece {
        /// The file.
        path: PathBuf,
        /// Token id.
        id: usize,
    },
    /// Ids 3..=258 must be the byte-fallback pieces `<0x00>`..`<0xFF>` (encode relies on it).
    #[error("{}: token {id} must be the byte-fallback piece {expected:?}, found {found:?}", .path.display())]
    ByteFallback {
        /// The file.
        path: PathBuf,
        /// Token id.
        id: usize,
        /// The piece expected at that id.
        expected: String,
        /// The piece found (empty if the vocabulary is too small).
        found: String,
    },
    /// The tokenizer and the checkpoint disagree on the vocabulary size.
    #[error("{}: tokenizer vocabulary ({tokenizer}) does not match the checkpoint's ({checkpoint})", .path.display())]
    VocabMismatch {
        /// The tokenizer file.
        path: PathBuf,
        /// Size the tokenizer has.
        tokenizer: usize,
        /// Size the checkpoint declares.
        checkpoint: usize,
    },
}

/// A token id outside the vocabulary.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// The id is not below the vocabulary size.
    #[error("token id {id} is outside the vocabulary (size {vocab_size})")]
    UnknownId {
        /// The id.
        id: u32,
        /// The vocabulary size.
        vocab_size: usize,
    },
}

/// A forward pass (or building an engine) failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// The token is not in the vocabulary.
    #[error("token id {token} is outside the vocabulary (size {vocab_size})")]
    TokenOutOfRange {
        /// The token.
        token: u32,
        /// The vocabulary size.
        vocab_size: usize,
    },
    /// The position is not below the model's context length.
    #[error("position {pos} is outside the context (seq_len {seq_len})")]
    PositionOutOfRange {
        /// The position.
        pos: usize,
        /// The model's context length.
        seq_len: usize,
    },
    /// Positions must be fed in order: `pos` may repeat or rewind, never skip ahead.
    #[error("position {pos} skips ahead: the KV cache is filled up to position {filled}")]
    PositionSkipped {
        /// The position asked for.
        pos: usize,
        /// How many positions the cache holds.
        filled: usize,
    },
    /// Generation needs at least one prompt token (normally BOS).
    #[error("the prompt has no tokens (it needs at least BOS)")]
    EmptyPrompt,
    /// A folded weight does not fit the fixed-point format's safe range.
    #[error("fixed-point weights: {tensor}[{index}] = {value} is outside +-{limit}")]
    WeightOutOfRange {
        /// The tensor (after folding).
        tensor: &'static str,
        /// Flat index.
        index: usize,
        /// The folded value.
        value: f64,
        /// The magnitude limit.
        limit: f64,
    },
    /// The model does not fit the fixed-point circuit's design limits (e.g. a context longer
    /// than the reciprocal's domain allows).
    #[error("the fixed-point engine cannot run this model: {reason}")]
    Unsupported {
        /// Why.
        reason: String,
    },
    /// A value left the domain an approximation of `mesh::fx` is designed for; the plaintext
    /// twin stops rather than produce numbers the secure engine would not match.
    #[error("fixed-point {what} = {value} is outside its design domain {domain}")]
    OutOfDomain {
        /// Which value.
        what: &'static str,
        /// The value (in real units).
        value: f64,
        /// The domain it should be in.
        domain: &'static str,
    },
}

/// Sampling parameters are invalid.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum SamplerError {
    /// Temperature must be a finite number `>= 0`.
    #[error("temperature must be a finite number >= 0 (got {0})")]
    Temperature(f32),
    /// Top-p must be in `(0, 1]`.
    #[error("top-p must be in (0, 1] (got {0})")]
    TopP(f32),
}
