//! `sotto`: the Sotto command line.
//!
//! A thin layer over the `node` library: clap arguments ([`args`]), runtimes, and what each
//! command prints.
//!
//! - `generate` ([`generate`]): run a model in the clear with one of the plaintext engines and
//!   stream the text to stdout.
//! - `provision` and `demo` ([`demo`]): split a model into per-party share files, and run a
//!   private generation on a local mesh.
//! - `run`, `ask` and `status` ([`mesh`]): the node daemon and the client of a mesh of devices.
//! - `profiles` ([`profiles`]): the device classes a node can run as.
//!
//! Errors are `anyhow` at this edge, with messages that say what to do; logs go to stderr via
//! `tracing` (`RUST_LOG=info` for more).

mod args;
mod demo;
mod generate;
mod mesh;
mod profiles;
mod text;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use node::model_dir;
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
    Provision(args::ProvisionArgs),
    /// Run a private generation on a local mesh: provisions it if needed, streams the answer,
    /// then prints speed, rounds, traffic and whether the tokens match the plaintext engine.
    Demo(args::DemoArgs),
    /// Run a node daemon: load this device's share file, join the mesh, serve private sessions.
    Run(args::RunArgs),
    /// Ask the mesh a private question: find the quorum, stream the answer.
    Ask(args::AskArgs),
    /// Show the quorum the mesh currently forms: parties, (n, t), model hash, link RTTs.
    Status(args::StatusArgs),
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
        Command::Provision(args) => {
            model_dir::resolve(args.model.as_deref()).and_then(|dir| demo::provision(args, &dir))
        }
        Command::Demo(args) => {
            model_dir::resolve(args.model.as_deref()).and_then(|dir| demo::run(args, &dir))
        }
        Command::Run(args) => mesh::run(args),
        // With --tokenizer the client needs no model folder at all.
        Command::Ask(args) => match &args.tokenizer {
            Some(tok) => mesh::ask(args, tok),
            None => model_dir::resolve(args.model.as_deref())
                .and_then(|dir| mesh::ask(args, &models::Model::files(&dir).1)),
        },
        Command::Status(args) => mesh::status(args),
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
