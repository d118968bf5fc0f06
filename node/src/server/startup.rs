//! `sotto run`: one device of the mesh, from its config to serving.
//!
//! At start the node checks what it can before opening a socket: the config
//! ([`crate::config`]), the share file (its header against itself, its size plus the KV cache
//! against the device profile's memory budget; owner-only, like the key files), the key files
//! (owner-only), and that its identity is the device the share file's roster names for its
//! party. It then joins the mesh (static peers, optional mDNS, PSK + Noise, allow-list = the
//! other devices of the roster + the clients), announces its party index, share summary and
//! roster, and serves until SIGINT or SIGTERM.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use mesh::{PartyId, Threshold};
use mesh_net::{self as net, Keypair, PreSharedKey};
use models::secure::PartyModel;
use models::sharefile::ShareFile;
use tracing::info;

use super::net::{NetHost, serve, summary_of};
use super::{Server, ServerSettings};
use crate::config::NodeConfig;

/// Bytes of the KV cache of one session at full context (keys and values, every layer, one
/// 16-byte share per element).
pub fn kv_cache_bytes(c: &models::Config) -> u64 {
    (c.n_layers * c.seq_len * c.kv_dim() * 2 * 16) as u64
}

/// The peer ID of the identity file at `path` (created 0600 if missing).
pub fn peer_id_of(path: &Path) -> Result<net::PeerId> {
    let key = net::load_or_generate_identity(path)
        .with_context(|| format!("identity file {}", path.display()))?;
    Ok(key.public().to_peer_id())
}

/// A node that passed its start-up checks.
struct Checked {
    model: Arc<PartyModel>,
    th: Threshold,
    /// Memory the node needs at most.
    need: u64,
    psk: PreSharedKey,
    key: Keypair,
}

/// Runs the node of `config` until it is told to stop.
pub fn run(config: NodeConfig) -> Result<()> {
    let checked = check(&config)?;
    let workers = config.profile.worker_threads().max(2);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(serve_until_stopped(config, checked, workers))
}

fn check(config: &NodeConfig) -> Result<Checked> {
    let (model, need) = load_model(config)?;
    let th = model_threshold(&model)?;
    let psk = net::load_psk(&config.psk_file).with_context(|| {
        format!(
            "the mesh key named by `psk_file` in {}",
            config.path.display()
        )
    })?;
    let key = net::load_or_generate_identity(&config.identity).with_context(|| {
        format!(
            "the identity named by `identity` in {}",
            config.path.display()
        )
    })?;
    Ok(Checked {
        model,
        th,
        need,
        psk,
        key,
    })
}

fn model_threshold(model: &PartyModel) -> Result<Threshold> {
    let h = model.header();
    Ok(Threshold::new(usize::from(h.n), usize::from(h.t))?)
}

/// Reads and arranges the share file, checking the profile's budget before and after.
fn load_model(config: &NodeConfig) -> Result<(Arc<PartyModel>, u64)> {
    // Before reading it: a share file that alone overflows the budget would only be refused
    // after filling the device's memory (reading and arranging it holds it twice).
    let file_len = std::fs::metadata(&config.share_file)
        .with_context(|| {
            format!(
                "the share file named by `share_file` in {}",
                config.path.display()
            )
        })?
        .len();
    config
        .profile
        .check_fits(
            file_len.saturating_mul(2),
            &format!("loading share file {}", config.share_file.display()),
        )
        .context("the node does not fit this device profile")?;
    let file = ShareFile::read(&config.share_file).with_context(|| {
        format!(
            "reading the share file named by `share_file` in {}",
            config.path.display()
        )
    })?;
    let h = &file.header;
    let th = Threshold::new(usize::from(h.n), usize::from(h.t))
        .with_context(|| format!("{}: its (n, t) cannot work", config.share_file.display()))?;
    let index = usize::from(h.party).saturating_sub(1);
    let model = Arc::new(
        PartyModel::from_share_file(&file, th, index)
            .with_context(|| format!("{}", config.share_file.display()))?,
    );
    // The file is read, then arranged into the model: both live at once while loading.
    let share_bytes = 16 * file.elements().len() as u64;
    drop(file);
    let need = 2 * share_bytes + config.max_sessions as u64 * kv_cache_bytes(model.config());
    config
        .profile
        .check_fits(
            need,
            &format!(
                "share file + KV cache of {} session(s) (set max_sessions lower to need less)",
                config.max_sessions
            ),
        )
        .context("the node does not fit this device profile")?;
    Ok((model, need))
}

async fn serve_until_stopped(config: NodeConfig, c: Checked, workers: usize) -> Result<()> {
    let (summary, roster) = summary_of(&c.model)
        .with_context(|| format!("the roster of {}", config.share_file.display()))?;
    let party =
        PartyId::from_number(c.model.header().party).context("the share file's party number")?;
    let local = c.key.public().to_peer_id();
    let net_config = config.net_config(c.psk, summary, party, roster, local)?;
    let (handle, event_loop) = net::new(net_config, c.key).context("starting the mesh node")?;
    let events = handle.subscribe();
    let loop_task = tokio::spawn(event_loop.run());
    let settings = ServerSettings {
        round_timeout: config.round_timeout,
        recovery_timeout: config.recovery_timeout,
        max_sessions: config.max_sessions,
        profile: config.profile.name().to_owned(),
    };
    let server = Server::new(NetHost::current(handle.clone()), c.model, c.th, settings)?;
    eprintln!(
        "sotto node: party {party} of (n={}, t={}), {summary}, profile {} ({workers} worker threads, {} of {} MiB budget, {} network, link emulation {}), peer {}",
        c.th.n(),
        c.th.t(),
        config.profile.name(),
        c.need.div_ceil(1 << 20),
        config.profile.memory_budget_mib(),
        config.profile.network(),
        config.link,
        handle.local_peer_id()
    );
    serve(Arc::clone(&server), events)?;
    shutdown_signal().await;
    info!("shutting down");
    server.abort_all("the node is shutting down");
    handle.shutdown().await;
    let _ = tokio::time::timeout(Duration::from_secs(5), loop_task).await;
    Ok(())
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(all(test, unix))]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn a_share_file_others_can_read_is_refused_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let share = dir.path().join("party-1.share");
        // The permission check comes before the content is read: any bytes will do.
        std::fs::write(&share, b"SOTTOSHR not a real share file").unwrap();
        std::fs::set_permissions(&share, std::fs::Permissions::from_mode(0o644)).unwrap();
        let config = NodeConfig::parse(
            "identity = \"node.key\"\nshare_file = \"party-1.share\"\npsk_file = \"mesh.psk\"\n",
            &dir.path().join("node.toml"),
        )
        .unwrap();
        let Err(err) = load_model(&config) else {
            panic!("a 0644 share file was accepted");
        };
        let err = format!("{err:#}");
        assert!(
            err.contains("chmod 600") && err.contains("party-1.share"),
            "{err}"
        );
    }
}
