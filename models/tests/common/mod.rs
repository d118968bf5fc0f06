//! Shared by the integration tests: where the model is, and the reference outputs recorded in
//! `shared/models/stories260K/PROVENANCE.md` (checked there against llama2.c run.c).

// Each test binary uses a different subset.
#![allow(dead_code)]

use std::path::PathBuf;

use models::Model;

/// `$SOTTO_MODEL_DIR`, else `<workspace>/models/stories260K`. Panics (so the test fails, never
/// skips) with the fix when the files are missing.
pub(crate) fn model_dir() -> PathBuf {
    let dir = std::env::var_os("SOTTO_MODEL_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("..")
                .join("models")
                .join("stories260K")
        });
    let (ck, tok) = Model::files(&dir);
    assert!(
        ck.is_file() && tok.is_file(),
        "model files missing in {}: run scripts/fetch-model.sh (or set SOTTO_MODEL_DIR)",
        dir.display()
    );
    dir
}

pub(crate) fn load_model() -> Model {
    let dir = model_dir();
    Model::load_dir(&dir).unwrap_or_else(|e| panic!("loading {}: {e}", dir.display()))
}

/// PROVENANCE.md: greedy ids from a BOS-only start.
pub(crate) const BOS_ONLY_IDS: [u32; 64] = [
    403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421, 395, 317, 426, 338, 401, 396, 267,
    337, 410, 408, 419, 292, 411, 322, 265, 282, 295, 433, 426, 385, 328, 432, 358, 394, 261, 370,
    432, 352, 266, 268, 388, 426, 338, 391, 266, 267, 337, 335, 312, 432, 398, 312, 286, 267, 414,
    270, 333, 415, 426, 13, 438, 310,
];

/// PROVENANCE.md: text of [`BOS_ONLY_IDS`].
pub(crate) const BOS_ONLY_TEXT: &str = "Once upon a time, there was a little girl named Lily. She loved to play outside in the park. One day, she saw a big, red ball. She wanted to play with it, but it was too high.\nLily";

/// PROVENANCE.md: the prompt and its encoding.
pub(crate) const PROMPT: &str = "Once upon a time";
pub(crate) const PROMPT_IDS: [u32; 5] = [1, 403, 407, 261, 378];

/// PROVENANCE.md: greedy ids after [`PROMPT_IDS`].
pub(crate) const PROMPT_CONTINUATION_IDS: [u32; 64] = [
    432, 383, 286, 261, 376, 298, 315, 421, 395, 317, 426, 338, 401, 396, 267, 337, 410, 408, 419,
    292, 411, 322, 265, 282, 295, 433, 426, 385, 328, 432, 358, 394, 261, 370, 432, 352, 266, 268,
    388, 426, 338, 391, 266, 267, 337, 335, 312, 432, 398, 312, 286, 267, 414, 270, 333, 415, 426,
    13, 438, 310, 439, 419, 357, 336,
];

/// PROVENANCE.md: text of the prompt case, prompt included.
pub(crate) const PROMPT_TEXT: &str = "Once upon a time, there was a little girl named Lily. She loved to play outside in the park. One day, she saw a big, red ball. She wanted to play with it, but it was too high.\nLily's mom said";

/// PROVENANCE.md: the published 256-step greedy text from BOS (doc/stories260K.md of
/// llama2.c), reproduced there byte for byte by run.c.
pub(crate) const PUBLISHED_256_TEXT: &str = "Once upon a time, there was a little girl named Lily. She loved to play outside in the park. One day, she saw a big, red ball. She wanted to play with it, but it was too high.
Lily's mom said, \"Lily, let's go to the park.\" Lily was sad and didn't know what to do. She said, \"I want to play with your ball, but I can't find it.\"
Lily was sad and didn't know what to do. She said, \"I'm sorry, Lily. I didn't know what to do.\"
Lily didn't want to help her mom, so she said, \"I'm sorry, mom. I didn't know what to do.\" Her mom said, \"Don't worry, Lily. We can help you.";
