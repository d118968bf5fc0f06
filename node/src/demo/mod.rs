//! `sotto provision` and `sotto demo`: secret-share a model into per-party share files, and
//! run a private generation on a local mesh — by default every party a real libp2p node on
//! 127.0.0.1 ([`local::LocalMesh`]), with `--in-memory` the parties as threads over the
//! in-memory router ([`crate::memory::MemMesh`]). Both run the same session code; the
//! plaintext f32 engine then follows the private tokens to check them.

pub mod local;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use indicatif::{ProgressBar, ProgressStyle};
use mesh::Threshold;
use mesh_net::{Keypair, LinkProfile, Roster};
use models::secure::{PartyModel, check_quorum, file_sha256, provision};
use models::sharefile::ShareFile;
use models::{Engine, F32Engine, FixedWeights, Model, Sampler};

use crate::memory::MemMesh;
use crate::server::ServerSettings;
use crate::session::{ClientToken, Generated, Generation};
use local::{Deadlines, LocalMesh};

/// The share file of party `party` (1-based) in `dir`.
pub fn share_path(dir: &Path, party: usize) -> PathBuf {
    dir.join(format!("party-{party}.share"))
}

/// The identity file of party `party`'s node in a demo's share folder.
pub fn key_path(dir: &Path, party: usize) -> PathBuf {
    dir.join(format!("party-{party}.key"))
}

/// Where `demo` keeps the share files of a `(n, t)` mesh by default.
pub fn default_share_dir(model_dir: &Path, th: Threshold) -> PathBuf {
    model_dir.join(format!("shares-n{}-t{}", th.n(), th.t()))
}

fn progress_bar(total: u64, quiet: bool) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new(total);
    pb.set_style(
        ProgressStyle::with_template("{msg} [{bar:30}] {percent:>3}% ({eta} left)")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    pb.set_message("sharing weights");
    pb
}

/// Splits the model in `model_dir` into share files in `out`, party `i + 1` bound to the device
/// `roster` lists at `i`. Refuses to touch an existing provisioning unless `force`; checks
/// every destination before writing any.
pub fn provision_into(
    model_dir: &Path,
    th: Threshold,
    roster: &Roster,
    out: &Path,
    force: bool,
    quiet: bool,
) -> Result<()> {
    if roster.len() != th.n() {
        bail!(
            "{} device peer IDs for {} parties: give one --device per party, in party order",
            roster.len(),
            th.n()
        );
    }
    let model = Model::load_dir(model_dir)?;
    let (ck_path, _) = Model::files(model_dir);
    let sha = file_sha256(&ck_path).with_context(|| format!("hashing {}", ck_path.display()))?;
    if !force {
        for i in 1..=th.n() {
            let p = share_path(out, i);
            if p.exists() {
                bail!(
                    "{} already exists: {} already holds a provisioning; pass --force to replace it",
                    p.display(),
                    out.display()
                );
            }
        }
    }
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let fw = FixedWeights::from_checkpoint(&model.checkpoint)?;
    let total: u64 = fw.tensors().iter().map(|(_, v)| v.len() as u64).sum();
    let pb = progress_bar(total, quiet);
    let files = provision(
        &fw,
        sha,
        th,
        &roster.to_bytes(),
        &mut rand::rngs::OsRng,
        |done, _| pb.set_position(done),
    )?;
    pb.finish_and_clear();
    for (i, f) in files.iter().enumerate() {
        f.write(&share_path(out, i + 1), force)?;
    }
    Ok(())
}

/// Loads a folder's share files, or `None` if any is missing or made from another model,
/// `(n, t)` or roster (the demo then provisions afresh).
fn load_shares(
    dir: &Path,
    th: Threshold,
    sha: [u8; 32],
    roster: &Roster,
) -> Result<Option<Vec<ShareFile>>> {
    let roster = roster.to_bytes();
    let mut files = Vec::with_capacity(th.n());
    for i in 1..=th.n() {
        let p = share_path(dir, i);
        if !p.exists() {
            return Ok(None);
        }
        let f = ShareFile::read(&p)?;
        let h = &f.header;
        if h.model_sha256 != sha
            || usize::from(h.n) != th.n()
            || usize::from(h.t) != th.t()
            || h.roster != roster
        {
            return Ok(None);
        }
        files.push(f);
    }
    let headers: Vec<_> = files.iter().map(|f| &f.header).collect();
    if check_quorum(&headers).is_err() {
        return Ok(None);
    }
    Ok(Some(files))
}

/// A local mesh's parties: each one's model and its node identity (the device the roster of
/// its share file names).
pub struct LocalParties {
    /// Party `i + 1`'s model at `i`.
    pub models: Vec<Arc<PartyModel>>,
    /// Party `i + 1`'s node identity at `i`.
    pub keys: Vec<Keypair>,
}

impl std::fmt::Debug for LocalParties {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalParties")
            .field("parties", &self.models.len())
            .finish_non_exhaustive()
    }
}

/// Every party's model from the share files in `dir`, provisioned there first when they are
/// missing or belong to another model, `(n, t)` or set of node identities. The identities are
/// kept next to the shares (`party-<i>.key`, 0600) so the cached roster stays valid.
pub fn load_or_provision(model_dir: &Path, th: Threshold, dir: &Path) -> Result<LocalParties> {
    let (ck_path, _) = Model::files(model_dir);
    let sha = file_sha256(&ck_path).with_context(|| format!("hashing {}", ck_path.display()))?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let keys = (1..=th.n())
        .map(|i| mesh_net::load_or_generate_identity(&key_path(dir, i)))
        .collect::<Result<Vec<_>, _>>()?;
    let roster = Roster::new(keys.iter().map(|k| k.public().to_peer_id()).collect())?;
    let files = match load_shares(dir, th, sha, &roster)? {
        Some(f) => f,
        None => {
            eprintln!(
                "provisioning a local ({}, {}) mesh in {} ...",
                th.n(),
                th.t(),
                dir.display()
            );
            provision_into(model_dir, th, &roster, dir, true, false)?;
            load_shares(dir, th, sha, &roster)?
                .context("the fresh provisioning did not load back")?
        }
    };
    let models = files
        .iter()
        .enumerate()
        .map(|(i, f)| PartyModel::from_share_file(f, th, i).map(Arc::new))
        .collect::<Result<_, _>>()?;
    Ok(LocalParties { models, keys })
}

/// Where the demo's parties run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Where {
    /// Threads over the in-memory router.
    InMemory,
    /// libp2p nodes on 127.0.0.1 with this link emulation.
    Libp2p(LinkProfile),
}

/// A private generation on a local mesh of `parties`.
pub fn run_private(
    parties: &LocalParties,
    th: Threshold,
    at: Where,
    generation: Generation,
    prompt: &[u32],
    sampler: &mut Sampler,
    on_token: impl FnMut(&ClientToken),
) -> Result<Generated> {
    match at {
        Where::InMemory => {
            let d = Deadlines::default();
            let settings = ServerSettings {
                round_timeout: d.round,
                recovery_timeout: d.recovery,
                max_sessions: 1,
                profile: firmware_profiles::DEFAULT_PROFILE.to_owned(),
            };
            let mesh = MemMesh::new(&parties.models, th, &settings)?;
            Ok(mesh.generate(generation, prompt, sampler, on_token)?)
        }
        Where::Libp2p(link) => {
            let mesh = LocalMesh::start(
                &parties.models,
                &parties.keys,
                th,
                link,
                Deadlines::default(),
            )?;
            let g = mesh.generate(generation, prompt, sampler, on_token);
            mesh.shutdown();
            g
        }
    }
}

/// The plaintext f32 engine following a private run's tokens: its greedy choice and logits at
/// every step, and how long it took.
#[derive(Debug)]
pub struct Plaintext {
    /// The f32 engine's greedy token at each step.
    pub ids: Vec<u32>,
    /// Its logits at each step.
    pub logits: Vec<Vec<f32>>,
    /// Its time.
    pub wall: Duration,
}

/// Runs the f32 engine on `prompt`, then on each of `private_ids` (so that logits compare
/// position by position).
pub fn follow_in_plaintext(
    model: &Model,
    prompt: &[u32],
    private_ids: &[u32],
) -> Result<Plaintext> {
    let mut f32e = F32Engine::new(Arc::clone(&model.checkpoint));
    let t0 = Instant::now();
    let mut ids = Vec::with_capacity(private_ids.len());
    let mut all_logits = Vec::with_capacity(private_ids.len());
    let mut logits = Vec::new();
    for (pos, &tok) in prompt.iter().enumerate() {
        logits = f32e.forward(tok, pos)?.to_vec();
    }
    for (step, &private_id) in private_ids.iter().enumerate() {
        all_logits.push(logits.clone());
        ids.push(f32e.argmax());
        if step + 1 < private_ids.len() {
            logits = f32e.forward(private_id, prompt.len() + step)?.to_vec();
        }
    }
    Ok(Plaintext {
        ids,
        logits: all_logits,
        wall: t0.elapsed(),
    })
}
