//! Finding the model folder: `--model`, else `$SOTTO_MODEL_DIR` (both arrive as one clap
//! argument), else `models/stories260K` under the current directory, else under the workspace
//! the executable was built in (`<exe dir>/../../models/stories260K`, i.e. `target/<profile>/`).

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use models::model::{CHECKPOINT_FILE, TOKENIZER_FILE};

/// The default folder, relative to a workspace root.
const DEFAULT_DIR: &str = "models/stories260K";

fn has_model(dir: &Path) -> bool {
    dir.join(CHECKPOINT_FILE).is_file() && dir.join(TOKENIZER_FILE).is_file()
}

fn how_to_get_it() -> String {
    format!(
        "get the model with scripts/fetch-model.sh (from the Sotto checkout; it puts \
         {CHECKPOINT_FILE} and {TOKENIZER_FILE} in {DEFAULT_DIR}/), or point --model or \
         SOTTO_MODEL_DIR at a folder holding both files"
    )
}

/// The model folder to use (see the module doc).
pub fn resolve(explicit: Option<&Path>) -> Result<PathBuf> {
    if let Some(dir) = explicit {
        if has_model(dir) {
            return Ok(dir.to_path_buf());
        }
        bail!(
            "no model in {} (from --model or SOTTO_MODEL_DIR): {} or {} is missing; {}",
            dir.display(),
            CHECKPOINT_FILE,
            TOKENIZER_FILE,
            how_to_get_it()
        );
    }
    let mut tried = Vec::new();
    if let Ok(cwd) = std::env::current_dir() {
        tried.push(cwd.join(DEFAULT_DIR));
    }
    if let Some(exe_dir) = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(Path::to_path_buf))
    {
        tried.push(exe_dir.join("..").join("..").join(DEFAULT_DIR));
    }
    if let Some(dir) = tried.iter().find(|d| has_model(d)) {
        return Ok(dir.clone());
    }
    let tried: Vec<String> = tried.iter().map(|d| d.display().to_string()).collect();
    bail!(
        "model files not found (looked in {}); {}",
        tried.join(", "),
        how_to_get_it()
    )
}
