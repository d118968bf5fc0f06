//! `sotto profiles`: the device classes a node can run as (firmware profiles), or one of them
//! (built-in name or profile file) in full, validated.

use std::io::Write;

use anyhow::{Context, Result};
use clap::Args;
use firmware_profiles::{DEFAULT_PROFILE, Profile};

/// `sotto profiles`.
#[derive(Debug, Args)]
pub(crate) struct ProfilesArgs {
    /// Show one profile in full: a built-in name (e.g. rpi4) or a path to a profile .toml
    /// (checked as `sotto run --profile` would).
    pub(crate) profile: Option<String>,
}

pub(crate) fn run(args: &ProfilesArgs) -> Result<()> {
    let mut out = std::io::stdout().lock();
    match &args.profile {
        None => {
            writeln!(
                out,
                "{:<18} {:<28} {:>5} {:>9} {:>10} {:>7}  {:<9} qemu (-cpu, -m, -smp)",
                "name", "cpu", "cores", "RAM MiB", "budget MiB", "workers", "network"
            )?;
            for p in Profile::all_builtin() {
                let qemu = p
                    .qemu()
                    .map(|q| format!("{}, {} MiB, {}", q.cpu(), q.memory_mib(), q.smp()))
                    .unwrap_or_else(|| "-".to_owned());
                writeln!(
                    out,
                    "{:<18} {:<28} {:>5} {:>9} {:>10} {:>7}  {:<9} {}",
                    p.name(),
                    format!(
                        "{} ({})",
                        p.cpu(),
                        p.target().split('-').next().unwrap_or("")
                    ),
                    p.cores(),
                    p.ram_mib(),
                    p.memory_budget_mib(),
                    p.worker_threads(),
                    p.network().as_str(),
                    qemu
                )?;
            }
            writeln!(out)?;
            writeln!(
                out,
                "A node uses `profile` from its node.toml (default {DEFAULT_PROFILE}) or `sotto run --profile NAME|FILE.toml`; `sotto profiles NAME` shows one in full."
            )?;
        }
        Some(spec) => {
            let p = Profile::find(spec).with_context(|| format!("profile `{spec}`"))?;
            writeln!(out, "{p}")?;
            writeln!(out)?;
            // The profile as a file: a starting point for a custom device class.
            let text = toml::to_string(&p).context("printing the profile as TOML")?;
            writeln!(out, "{}", text.trim_end())?;
        }
    }
    Ok(())
}
