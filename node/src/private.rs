//! `sotto provision` and `sotto demo`: secret-share a model into per-party share files, and run a
//! private generation on a local mesh: by default every party is a real libp2p node on
//! 127.0.0.1 ([`crate::local_mesh`]); `--in-memory` runs the parties as threads over the
//! in-memory transport instead (same protocol code, no network).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use mesh::memory::mesh as memory_mesh;
use mesh::{Client, Counters, Party, Threshold};
use mesh_net::LinkProfile;
use models::secure::{
    ClientToken, PartyModel, Selection, SessionParams, check_quorum, client_session, file_sha256,
    party_session, provision,
};
use models::sharefile::ShareFile;
use models::{BOS, Engine, F32Engine, FixedWeights, Model, Sampler, Utf8Stream};

/// `sotto provision`.
#[derive(Debug, Args)]
pub(crate) struct ProvisionArgs {
    /// Model folder (stories260K.bin + tok512.bin); defaults as for `generate`.
    #[arg(long, env = "SOTTO_MODEL_DIR")]
    pub(crate) model: Option<PathBuf>,
    /// Number of parties (devices), n >= 2t + 1.
    #[arg(long, default_value_t = 3)]
    pub(crate) parties: usize,
    /// Threshold t: how many colluding devices the sharing withstands.
    #[arg(long, default_value_t = 1)]
    pub(crate) threshold: usize,
    /// Output folder; receives party-1.share .. party-N.share.
    #[arg(long)]
    pub(crate) out: PathBuf,
    /// Replace an existing provisioning in the output folder.
    #[arg(long)]
    pub(crate) force: bool,
}

/// `sotto demo`.
#[derive(Debug, Args)]
pub(crate) struct DemoArgs {
    /// Model folder; defaults as for `generate`.
    #[arg(long, env = "SOTTO_MODEL_DIR")]
    pub(crate) model: Option<PathBuf>,
    /// The prompt (tokenized by the client; the parties never see it).
    #[arg(long, default_value = "Once upon a time")]
    pub(crate) prompt: String,
    /// Tokens to generate.
    #[arg(long, default_value_t = 64)]
    pub(crate) steps: usize,
    /// Parties of the local mesh.
    #[arg(long, default_value_t = 3)]
    pub(crate) parties: usize,
    /// Threshold t (n >= 2t + 1).
    #[arg(long, default_value_t = 1)]
    pub(crate) threshold: usize,
    /// Where the share files live (provisioned there if missing or stale); default
    /// `<model>/shares-n<N>-t<T>/`.
    #[arg(long)]
    pub(crate) shares: Option<PathBuf>,
    /// Also open every step's logits to the client and report max |logit_private - logit_f32|.
    #[arg(long)]
    pub(crate) verify: bool,
    #[command(flatten)]
    pub(crate) sampling: SamplingArgs,
    /// Run the parties as threads over the in-memory transport instead of libp2p nodes on
    /// loopback (isolates the MPC cost from the network's).
    #[arg(long)]
    pub(crate) in_memory: bool,
    /// Link emulation between the libp2p nodes: loopback (none), lan or wifi (delay and
    /// bandwidth added in the transport; see docs/benchmarks.md).
    #[arg(long, default_value = "loopback", value_parser = parse_link)]
    pub(crate) link: LinkProfile,
}

/// Where and how the next token is chosen; shared by `demo` and `ask`.
#[derive(Debug, Args)]
pub(crate) struct SamplingArgs {
    /// Send the logits' shares to the client, which samples (temperature/top-p) itself,
    /// instead of the argmax inside MPC.
    #[arg(long)]
    pub(crate) sample_at_client: bool,
    /// Sampling temperature (with --sample-at-client); 0 = greedy.
    #[arg(long, default_value_t = 0.0)]
    pub(crate) temperature: f32,
    /// Top-p nucleus (with --sample-at-client).
    #[arg(long, default_value_t = 0.9)]
    pub(crate) top_p: f32,
    /// Sampling seed (with --sample-at-client).
    #[arg(long, default_value_t = 42)]
    pub(crate) seed: u64,
}

impl SamplingArgs {
    /// Whether tokens are drawn at random (so they are not compared with greedy plaintext).
    pub(crate) fn sampled(&self) -> bool {
        self.sample_at_client && self.temperature > 0.0
    }

    /// The client's sampler: greedy unless sampling at the client with a temperature.
    pub(crate) fn sampler(&self) -> Result<Sampler> {
        Ok(if self.sampled() {
            Sampler::new(self.temperature, self.top_p, self.seed)?
        } else {
            Sampler::greedy()
        })
    }
}

fn parse_link(s: &str) -> Result<LinkProfile, String> {
    s.parse()
        .map_err(|_| format!("unknown link profile `{s}`: use loopback, lan or wifi"))
}

fn share_path(dir: &Path, party: usize) -> PathBuf {
    dir.join(format!("party-{party}.share"))
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

/// Split the model into share files in `out`. Refuses to touch an existing provisioning unless
/// `force`; checks every destination before writing any.
fn provision_into(
    model_dir: &Path,
    th: Threshold,
    out: &Path,
    force: bool,
    quiet: bool,
) -> Result<()> {
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
    let files = provision(&fw, sha, th, &mut rand::rngs::OsRng, |done, _| {
        pb.set_position(done)
    })?;
    pb.finish_and_clear();
    for (i, f) in files.iter().enumerate() {
        f.write(&share_path(out, i + 1), force)?;
    }
    Ok(())
}

pub(crate) fn run_provision(args: &ProvisionArgs, model_dir: &Path) -> Result<()> {
    let th = Threshold::new(args.parties, args.threshold)?;
    let started = Instant::now();
    provision_into(model_dir, th, &args.out, args.force, false)?;
    eprintln!(
        "provisioned ({}, {}) in {:.1} s: {}/party-1.share .. party-{}.share — give each device only its own file",
        th.n(),
        th.t(),
        started.elapsed().as_secs_f64(),
        args.out.display(),
        th.n()
    );
    Ok(())
}

/// Load a folder's share files, or `None` if any is missing or made from another model or
/// `(n, t)` (the demo then provisions afresh).
fn load_shares(dir: &Path, th: Threshold, sha: [u8; 32]) -> Result<Option<Vec<ShareFile>>> {
    let mut files = Vec::with_capacity(th.n());
    for i in 1..=th.n() {
        let p = share_path(dir, i);
        if !p.exists() {
            return Ok(None);
        }
        let f = ShareFile::read(&p)?;
        let h = &f.header;
        if h.model_sha256 != sha || usize::from(h.n) != th.n() || usize::from(h.t) != th.t() {
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

/// What each party reports back.
struct PartyReport {
    counters: Counters,
    /// Session time and the part of it spent preprocessing; only measured in memory (the
    /// libp2p nodes report traffic, not timings).
    timing: Option<(Duration, Duration)>,
}

pub(crate) fn run_demo(args: &DemoArgs, model_dir: &Path) -> Result<()> {
    let th = Threshold::new(args.parties, args.threshold)?;
    let model = Model::load_dir(model_dir)?;
    let c = *model.checkpoint.config();
    let (ck_path, _) = Model::files(model_dir);
    let sha = file_sha256(&ck_path).with_context(|| format!("hashing {}", ck_path.display()))?;
    let dir = args
        .shares
        .clone()
        .unwrap_or_else(|| model_dir.join(format!("shares-n{}-t{}", th.n(), th.t())));
    let files = match load_shares(&dir, th, sha)? {
        Some(f) => f,
        None => {
            eprintln!(
                "provisioning a local ({}, {}) mesh in {} ...",
                th.n(),
                th.t(),
                dir.display()
            );
            provision_into(model_dir, th, &dir, true, false)?;
            load_shares(&dir, th, sha)?.context("the fresh provisioning did not load back")?
        }
    };
    let parties: Vec<Arc<PartyModel>> = files
        .iter()
        .enumerate()
        .map(|(i, f)| PartyModel::from_share_file(f, th, i).map(Arc::new))
        .collect::<Result<_, _>>()?;
    drop(files);

    let prompt = model.tokenizer.encode(&args.prompt, true, false);
    let params = SessionParams {
        prompt_len: prompt.len(),
        steps: args.steps,
        selection: if args.sampling.sample_at_client {
            Selection::SampleAtClient
        } else {
            Selection::ArgmaxInMpc
        },
        reveal_logits: args.verify,
    };
    params.check(&c)?;
    let mut sampler = args.sampling.sampler()?;

    eprintln!(
        "private generation on a local ({}, {}) mesh ({}): {} prompt tokens, {} steps",
        th.n(),
        th.t(),
        if args.in_memory {
            "in-memory transport".to_string()
        } else {
            format!("libp2p nodes on 127.0.0.1, link {}", args.link)
        },
        prompt.len(),
        args.steps
    );
    let started = Instant::now();
    let mut stdout = std::io::stdout().lock();
    let mut text = Utf8Stream::new();
    let mut buf = String::new();
    let mut prev = *prompt.last().unwrap_or(&BOS);
    let mut stopped = false;
    let mut seen_logits: Vec<Vec<f32>> = Vec::new();
    // The prompt as the client typed it, then each token as it arrives.
    write!(stdout, "{}", args.prompt)?;
    stdout.flush()?;
    let on_token = |tok: &ClientToken| {
        if let Some(l) = &tok.logits {
            seen_logits.push(l.clone());
        }
        if stopped || tok.id == BOS {
            stopped = true;
            return;
        }
        if let Ok(bytes) = model.tokenizer.decode_piece(prev, tok.id) {
            buf.clear();
            text.push(bytes, &mut buf);
            let _ = write!(stdout, "{buf}");
            let _ = stdout.flush();
        }
        prev = tok.id;
    };
    let outcome = if args.in_memory {
        run_in_memory(
            &parties,
            th,
            &prompt,
            c.vocab_size,
            params,
            &mut sampler,
            on_token,
        )
        .map(|(ids, reports)| (ids, reports, None))
    } else {
        crate::local_mesh::run_over_libp2p(
            &parties,
            th,
            &prompt,
            params,
            &mut sampler,
            args.link,
            on_token,
        )
        .map(|run| {
            let reports = run
                .counters
                .into_iter()
                .map(|counters| PartyReport {
                    counters,
                    timing: None,
                })
                .collect();
            // The session's own time, without starting the nodes and connecting them.
            (run.ids, reports, Some(run.wall))
        })
    };
    let total = started.elapsed();
    buf.clear();
    text.finish(&mut buf);
    writeln!(stdout, "{buf}")?;
    let (ids, reports, session_wall) = outcome?;
    let wall = session_wall.unwrap_or(total);

    // The plaintext f32 engine on the same prompt: the compute floor and the fidelity check.
    let mut f32e = F32Engine::new(Arc::clone(&model.checkpoint));
    let t0 = Instant::now();
    let mut plain_ids = Vec::with_capacity(args.steps);
    let mut plain_logits: Vec<Vec<f32>> = Vec::with_capacity(args.steps);
    let mut logits = Vec::new();
    for (pos, &tok) in prompt.iter().enumerate() {
        logits = f32e.forward(tok, pos)?.to_vec();
    }
    for (step, &private_id) in ids.iter().enumerate() {
        plain_logits.push(logits.clone());
        plain_ids.push(f32e.argmax());
        if step + 1 < ids.len() {
            // Follow the private run's tokens so the logits compare position by position.
            logits = f32e.forward(private_id, prompt.len() + step)?.to_vec();
        }
    }
    let plain_wall = t0.elapsed();

    let steps = args.steps as f64;
    let r = &reports[0];
    let online = r.counters.online;
    let offline = r.counters.offline;
    let tps = steps / wall.as_secs_f64();
    let plain_tps = steps / plain_wall.as_secs_f64().max(1e-9);
    eprintln!();
    eprintln!("summary ({} parties, threshold {}):", th.n(), th.t());
    eprintln!(
        "  tokens/s             {tps:.2} private ({} tokens in {:.2} s), {plain_tps:.0} plaintext f32 — overhead {:.0}x",
        args.steps,
        wall.as_secs_f64(),
        plain_tps / tps
    );
    eprintln!(
        "  rounds/token         {:.1} online + {:.1} preprocessing (prompt positions included)",
        online.rounds as f64 / steps,
        offline.rounds as f64 / steps
    );
    eprintln!(
        "  bytes/party/token    {:.2} MB online + {:.2} MB preprocessing",
        online.bytes as f64 / steps / 1e6,
        offline.bytes as f64 / steps / 1e6
    );
    let timings: Vec<(Duration, Duration)> = reports.iter().filter_map(|r| r.timing).collect();
    if timings.len() == reports.len() {
        let busy = timings.iter().map(|t| t.0).max().unwrap_or_default();
        let prep = timings.iter().map(|t| t.1).max().unwrap_or_default();
        eprintln!(
            "  time                 {:.2} s preprocessing + {:.2} s online (slowest party; preprocessing runs on demand, in batches)",
            prep.as_secs_f64(),
            busy.saturating_sub(prep).as_secs_f64()
        );
    } else {
        eprintln!(
            "  network              libp2p on 127.0.0.1 (TCP + PSK + Noise + Yamux), link {}; --in-memory splits preprocessing from online time",
            args.link
        );
    }
    if args.sampling.sampled() {
        eprintln!(
            "  tokens vs plaintext  not compared (sampled at the client with temperature {})",
            args.sampling.temperature
        );
    } else {
        let same = ids
            .iter()
            .zip(&plain_ids)
            .take_while(|(a, b)| a == b)
            .count();
        eprintln!(
            "  tokens vs plaintext  {} ({same}/{} identical to the f32 engine's greedy tokens)",
            if same == ids.len() { "match" } else { "DIFFER" },
            ids.len()
        );
    }
    if args.verify {
        let err = seen_logits
            .iter()
            .zip(&plain_logits)
            .flat_map(|(a, b)| a.iter().zip(b).map(|(x, y)| (x - y).abs()))
            .fold(0f32, f32::max);
        eprintln!(
            "  max |logit_private - logit_f32| = {err:.5} over {} steps",
            seen_logits.len()
        );
    }
    Ok(())
}

/// The parties as threads over the in-memory transport, the client on this thread.
fn run_in_memory(
    parties: &[Arc<PartyModel>],
    th: Threshold,
    prompt: &[u32],
    vocab_size: usize,
    params: SessionParams,
    sampler: &mut Sampler,
    on_token: impl FnMut(&ClientToken),
) -> Result<(Vec<u32>, Vec<PartyReport>)> {
    let (transports, link) = memory_mesh(th.n());
    let (client_result, reports) = std::thread::scope(|s| {
        let handles: Vec<_> = transports
            .into_iter()
            .enumerate()
            .map(|(i, tr)| {
                let model = Arc::clone(&parties[i]);
                s.spawn(move || -> Result<PartyReport> {
                    let mut p = Party::with_os_rng(th, i, tr)?;
                    let t0 = Instant::now();
                    party_session(&mut p, &model, params)?;
                    Ok(PartyReport {
                        counters: p.counters(),
                        timing: Some((t0.elapsed(), p.preprocessing_time())),
                    })
                })
            })
            .collect();
        let client_result = (|| -> Result<Vec<u32>> {
            let mut client = Client::with_os_rng(th, link)?;
            Ok(client_session(
                &mut client,
                prompt,
                vocab_size,
                params,
                sampler,
                on_token,
            )?)
        })();
        let reports: Vec<Result<PartyReport>> = handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("a party thread panicked")))
            })
            .collect();
        (client_result, reports)
    });
    let ids = client_result?;
    let reports = reports.into_iter().collect::<Result<_>>()?;
    Ok((ids, reports))
}
