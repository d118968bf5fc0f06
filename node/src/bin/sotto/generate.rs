//! `sotto generate`: encode the prompt, run run.c's generation loop on a plaintext engine and
//! stream the decoded text to stdout, one flush per token; a stats line goes to stderr.

use std::io::Write;
use std::path::PathBuf;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use models::{EngineKind, Model, Sampler, Utf8Stream, generate};

/// The plaintext engines.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum EngineArg {
    /// f32 reference (llama2.c run.c arithmetic).
    F32,
    /// Fixed-point twin of the secure engine (mesh::fx arithmetic).
    Fixed,
}

impl From<EngineArg> for EngineKind {
    fn from(e: EngineArg) -> Self {
        match e {
            EngineArg::F32 => EngineKind::F32,
            EngineArg::Fixed => EngineKind::Fixed,
        }
    }
}

/// Arguments of `sotto generate`.
#[derive(Debug, Args)]
pub(crate) struct GenerateArgs {
    /// Model folder holding stories260K.bin and tok512.bin [default: ./models/stories260K,
    /// else models/stories260K two folders above the sotto executable]
    #[arg(long, env = "SOTTO_MODEL_DIR", value_name = "DIR")]
    model: Option<PathBuf>,
    /// Prompt text; empty starts from BOS alone (as llama2.c)
    #[arg(long, short, default_value = "")]
    prompt: String,
    /// Positions to run, prompt tokens included (as llama2.c); capped at the model's context
    /// length
    #[arg(long, short = 'n', default_value_t = 256, value_parser = parse_steps)]
    steps: usize,
    /// Sampling temperature, >= 0. The default 0 is greedy (llama2.c defaults to 1.0; Sotto
    /// defaults to greedy because its correctness checks are greedy)
    #[arg(long, short, default_value_t = 0.0, value_parser = parse_temperature, allow_negative_numbers = true)]
    temperature: f32,
    /// Top-p (nucleus) threshold in (0, 1]; only used when temperature > 0
    #[arg(long, default_value_t = 0.9, value_parser = parse_top_p, allow_negative_numbers = true)]
    top_p: f32,
    /// Seed of the sampler [default: from the clock, logged at info level]
    #[arg(long)]
    seed: Option<u64>,
    /// Which plaintext engine runs the model
    #[arg(long, value_enum, default_value_t = EngineArg::F32)]
    engine: EngineArg,
    /// Also print the sampled token ids (not the prompt's) on stderr as `token ids: ...`, the
    /// format of `sotto ask --print-ids`, so a private run can be compared id by id
    #[arg(long)]
    print_ids: bool,
}

fn parse_steps(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(format!("must be a whole number >= 1 (got {s:?})")),
    }
}

fn parse_temperature(s: &str) -> Result<f32, String> {
    match s.parse::<f32>() {
        Ok(t) if t.is_finite() && t >= 0.0 => Ok(t),
        _ => Err(format!(
            "must be a number >= 0, 0 meaning greedy (got {s:?})"
        )),
    }
}

fn parse_top_p(s: &str) -> Result<f32, String> {
    match s.parse::<f32>() {
        Ok(p) if p > 0.0 && p <= 1.0 => Ok(p),
        _ => Err(format!("must be a number in (0, 1] (got {s:?})")),
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.downcast_ref::<std::io::Error>()
        .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
}

/// Run `sotto generate`.
pub(crate) fn run(args: &GenerateArgs) -> Result<()> {
    let dir = node::model_dir::resolve(args.model.as_deref())?;
    let model = Model::load_dir(&dir)
        .with_context(|| format!("loading the model from {}", dir.display()))?;
    let config = *model.checkpoint.config();
    tracing::info!(dir = %dir.display(), ?config, "model loaded");

    let steps = args.steps.min(config.seq_len);
    if steps < args.steps {
        tracing::warn!(
            "--steps {} capped at the context length {}",
            args.steps,
            config.seq_len
        );
    }
    let seed = args.seed.unwrap_or_else(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
    });
    tracing::info!(seed, "sampler seed");
    let mut sampler = Sampler::new(args.temperature, args.top_p, seed)?;
    let kind = EngineKind::from(args.engine);
    let mut engine = kind
        .build(&model.checkpoint)
        .with_context(|| format!("building the {kind} engine"))?;
    let prompt = model.tokenizer.encode(&args.prompt, true, false);
    tracing::info!(tokens = prompt.len(), "prompt encoded");

    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut stream = Utf8Stream::new();
    let mut text = String::new();
    let start = Instant::now();
    let mut sampled_ids: Vec<u32> = Vec::new();
    let result =
        generate::<anyhow::Error, _>(engine.as_mut(), &mut sampler, &prompt, steps, |ev| {
            if !ev.from_prompt {
                sampled_ids.push(ev.token);
            }
            text.clear();
            stream.push(model.tokenizer.decode_piece(ev.prev, ev.token)?, &mut text);
            if !text.is_empty() {
                out.write_all(text.as_bytes())?;
                out.flush()?;
            }
            Ok(())
        });
    let elapsed = start.elapsed().as_secs_f64();
    let summary = match result {
        Ok(s) => s,
        // The reader went away (`| head`): not an error.
        Err(e) if is_broken_pipe(&e) => return Ok(()),
        Err(e) => return Err(e.context("generation failed")),
    };
    text.clear();
    stream.finish(&mut text);
    text.push('\n');
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
        r => r.context("writing to stdout")?,
    }
    if args.print_ids {
        let ids: Vec<String> = sampled_ids.iter().map(u32::to_string).collect();
        eprintln!("token ids: {}", ids.join(" "));
    }
    eprintln!(
        "sotto: {} positions ({} from the prompt, {} sampled{}) in {:.3} s: {:.1} tok/s ({} engine)",
        summary.positions,
        summary.positions - summary.sampled,
        summary.sampled,
        if summary.stopped_on_bos {
            ", stopped at BOS"
        } else {
            ""
        },
        elapsed,
        summary.positions as f64 / elapsed.max(1e-9),
        kind
    );
    Ok(())
}
