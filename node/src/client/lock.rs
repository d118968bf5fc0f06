//! One client process per identity on this machine.
//!
//! The parties send a client's shares to its peer ID, and libp2p opens a stream to "the peer"
//! on any one of its connections: two processes of one identity connected at once receive each
//! other's shares, and both generations stall until the client gives up ("the quorum was lost
//! ... only parties [] can continue", with every party up). So a client holds an exclusive
//! lock named after its peer ID while it is connected, and a second one waits for it. A gateway
//! serves many requests at once through one process (one [`super::Connected`]); two machines
//! must not share a client identity (give each its own, on the devices' allow-lists).

use std::fs::{File, OpenOptions, TryLockError};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use mesh_net::PeerId;
use tracing::warn;

/// How long a client waits for another one of its identity to finish.
const LOCK_PATIENCE: Duration = Duration::from_secs(30 * 60);
/// How often it looks.
const LOCK_POLL: Duration = Duration::from_millis(200);

/// Why the client could not take its identity's lock.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LockError {
    /// The lock file could not be opened or locked.
    #[error(
        "cannot use {path} to keep two clients of one identity apart: {error}; set XDG_RUNTIME_DIR to a directory of your own"
    )]
    Open {
        /// The lock file.
        path: PathBuf,
        /// Why.
        error: std::io::Error,
    },
    /// Another client of this identity kept running.
    #[error(
        "another client with peer ID {peer} has been running on this machine for over {} s; let it finish, or give this client its own identity (--identity) and add that peer ID to every device's `clients` in node.toml",
        .waited.as_secs()
    )]
    StillRunning {
        /// The identity.
        peer: PeerId,
        /// How long this one waited.
        waited: Duration,
    },
}

/// The lock of one client identity, released when dropped (or when the process ends, however
/// it ends: the operating system drops the lock with the file).
#[derive(Debug)]
pub struct IdentityLock {
    _file: File,
}

/// `$XDG_RUNTIME_DIR` (per user, private), else the temporary directory.
fn lock_dir() -> PathBuf {
    std::env::var_os("XDG_RUNTIME_DIR")
        .map(PathBuf::from)
        .filter(|d| d.is_dir())
        .unwrap_or_else(std::env::temp_dir)
}

fn open(path: &PathBuf) -> Result<File, LockError> {
    let mut options = OpenOptions::new();
    options.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path).map_err(|error| LockError::Open {
        path: path.clone(),
        error,
    })
}

impl IdentityLock {
    /// Takes the lock of `peer`, waiting (at most [`LOCK_PATIENCE`]) while another client of
    /// that identity holds it.
    pub async fn acquire(peer: PeerId) -> Result<IdentityLock, LockError> {
        let path = lock_dir().join(format!("sotto-client-{peer}.lock"));
        let file = open(&path)?;
        let started = Instant::now();
        let mut told = false;
        loop {
            // `File::try_lock` (flock) is std since 1.89; the workspace already builds only
            // on newer toolchains (let chains need 1.88), so the declared 1.85 is stale here.
            #[allow(clippy::incompatible_msrv)]
            let locked = file.try_lock();
            match locked {
                Ok(()) => return Ok(IdentityLock { _file: file }),
                Err(TryLockError::WouldBlock) => {}
                Err(TryLockError::Error(error)) => return Err(LockError::Open { path, error }),
            }
            if !told {
                warn!(
                    "another sotto client with peer ID {peer} is connected from this machine; waiting for it to finish (the mesh sends a client's answers to its peer ID, so two processes of one identity would get each other's)"
                );
                told = true;
            }
            let waited = started.elapsed();
            if waited >= LOCK_PATIENCE {
                return Err(LockError::StillRunning { peer, waited });
            }
            tokio::time::sleep(LOCK_POLL).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_second_client_of_one_identity_waits_for_the_first() {
        let peer = PeerId::random();
        let first = IdentityLock::acquire(peer).await.unwrap();
        let second = tokio::spawn(IdentityLock::acquire(peer));
        // Let the second one try a few times: it must still be waiting.
        tokio::time::sleep(LOCK_POLL * 3).await;
        assert!(!second.is_finished(), "two clients of one identity at once");
        drop(first);
        let second = tokio::time::timeout(Duration::from_secs(10), second)
            .await
            .expect("the second client gets the lock once the first is gone")
            .unwrap();
        assert!(second.is_ok());
        // Another identity never waits.
        IdentityLock::acquire(PeerId::random()).await.unwrap();
    }
}
