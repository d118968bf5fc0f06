//! `sotto`: the Sotto command line.
//!
//! - `generate` ([`generate`]): run a model in the clear with one of the plaintext engines and
//!   stream the text to stdout.
//! - `provision` and `demo` ([`private`]): split a model into per-party share files, and run a
//!   private generation on a local mesh.
//! - `run` ([`daemon`]), `ask` and `status` ([`ask`]): the node daemon and the client of a mesh
//!   of devices over libp2p; [`session`] runs one private inference on a node, [`config`] reads
//!   `node.toml`.
//! - `profiles` ([`profiles`]): the device classes a node can run as.
//! - [`model_dir`]: where the model files are looked for.
//!
//! Errors are `anyhow` at this edge, with messages that say what to do; logs go to stderr via
//! `tracing` (`RUST_LOG=info` for more).

mod ask;
mod config;
mod daemon;
mod generate;
mod local_mesh;
mod model_dir;
mod private;
mod profiles;
mod session;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

/// Sotto runs a small language model privately on a mesh of edge devices.
#[derive(Debug, Parser)]
#[command(name = "sotto", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Generate text in the clear with a plaintext engine (f32 reference or fixed-point twin).
    Generate(generate::GenerateArgs),
    /// Split a model into one secret share file per party (device).
    Provision(private::ProvisionArgs),
    /// Run a private generation on a local mesh: provisions it if needed, streams the answer,
    /// then prints speed, rounds, traffic and whether the tokens match the plaintext engine.
    Demo(private::DemoArgs),
    /// Run a node daemon: load this device's share file, join the mesh, serve private sessions.
    Run(daemon::RunArgs),
    /// Ask the mesh a private question: find the quorum, stream the answer.
    Ask(ask::AskArgs),
    /// Show the quorum the mesh currently forms: parties, (n, t), model hash, link RTTs.
    Status(ask::StatusArgs),
    /// List the device profiles (firmware profiles), or show and check one.
    Profiles(profiles::ProfilesArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn")),
        )
        .init();
    let result = match &cli.command {
        Command::Generate(args) => generate::run(args),
        Command::Provision(args) => model_dir::resolve(args.model.as_deref())
            .and_then(|dir| private::run_provision(args, &dir)),
        Command::Demo(args) => {
            model_dir::resolve(args.model.as_deref()).and_then(|dir| private::run_demo(args, &dir))
        }
        Command::Run(args) => daemon::run_node(args),
        // With --tokenizer the client needs no model folder at all.
        Command::Ask(args) => match &args.tokenizer {
            Some(tok) => ask::run_ask(args, tok),
            None => model_dir::resolve(args.model.as_deref())
                .and_then(|dir| ask::run_ask(args, &models::Model::files(&dir).1)),
        },
        Command::Status(args) => ask::run_status(args),
        Command::Profiles(args) => profiles::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // Output piped into `head` and the like: the reader has what it wanted.
        Err(e)
            if e.downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe) =>
        {
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("sotto: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
