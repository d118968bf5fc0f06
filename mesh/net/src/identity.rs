//! The node's long-term secrets on disk: its ed25519 identity and the mesh pre-shared key.
//!
//! Both are created once, written owner-only (0600) to a temporary file that is then linked
//! into place (so a crash never leaves half a key under the final name, and two processes
//! racing to create the key cannot overwrite each other), and refused on load when group or
//! others may read or write them: a key anyone on the device can read is not a secret, and
//! silently using it would hide that.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use libp2p::identity::Keypair;
use libp2p::pnet::PreSharedKey;
use rand::RngCore;
use zeroize::Zeroizing;

/// A problem with a key file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityError {
    /// Reading or writing failed.
    // The I/O error is in the message, not a `#[source]`: a chain printer would say it twice.
    #[error("{path}: {error}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The failure.
        error: std::io::Error,
    },
    /// The file may be read or written by group or others.
    #[error(
        "{path} has mode {mode:03o}, so other users of this device can read or change a secret key; run `chmod 600 {path}` (and consider the key leaked if others could read it)"
    )]
    InsecurePermissions {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The file is not a regular file.
    #[error("{path} is not a regular file")]
    NotAFile {
        /// The path.
        path: PathBuf,
    },
    /// The file does not hold a valid key.
    #[error("{path} does not hold a valid {what}: {reason}; {remedy}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// "node identity" or "mesh pre-shared key".
        what: &'static str,
        /// Decoder message.
        reason: String,
        /// What the user can do about it (true for what the code does: an identity is
        /// created when missing, a mesh key never is).
        remedy: &'static str,
    },
    /// The mesh key file does not exist. Nothing creates it on its own: every device and
    /// client must share the same key, so a key made up on one device would lock it out.
    #[error("{path} does not exist; {}", PSK_REMEDY)]
    PskMissing {
        /// The file.
        path: PathBuf,
    },
}

/// How to get a mesh key file: one key, made once, copied to every device and client.
const PSK_REMEDY: &str = "the mesh key is made once and copied to every device and client: copy \
     the mesh's key file from another device, or for a new mesh create one with \
     `printf '/key/swarm/psk/1.0.0/\\n/base16/\\n%s\\n' \"$(od -An -tx1 -N32 /dev/urandom | tr -d ' \\n')\" > mesh.psk && chmod 600 mesh.psk` \
     (docs/deployment.md)";

/// What to do about a corrupt identity file: sotto creates one when the file is missing.
const IDENTITY_REMEDY: &str = "move it away to have a new identity created at the next start \
     (the device then gets a new peer ID, which must replace the old one in the other devices' \
     allow-lists), or restore the file from a backup";

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> IdentityError + '_ {
    move |error| IdentityError::Io {
        path: path.to_owned(),
        error,
    }
}

/// Reads a secret file after checking it is a regular file only its owner can access.
fn read_secret(path: &Path) -> Result<Zeroizing<Vec<u8>>, IdentityError> {
    let mut file = File::open(path).map_err(io_err(path))?;
    let meta = file.metadata().map_err(io_err(path))?;
    if !meta.is_file() {
        return Err(IdentityError::NotAFile {
            path: path.to_owned(),
        });
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(IdentityError::InsecurePermissions {
                path: path.to_owned(),
                mode,
            });
        }
    }
    let mut bytes = Zeroizing::new(Vec::new());
    file.read_to_end(&mut bytes).map_err(io_err(path))?;
    Ok(bytes)
}

/// Writes a new secret file with mode 0600; fails if `path` already exists.
fn create_secret(path: &Path, bytes: &[u8]) -> Result<(), IdentityError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{file_name}.{}.tmp", std::process::id()));
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let result = (|| {
        let mut file = options.open(&tmp).map_err(io_err(&tmp))?;
        file.write_all(bytes).map_err(io_err(&tmp))?;
        file.sync_all().map_err(io_err(&tmp))?;
        // A hard link, unlike rename, refuses to replace an existing key.
        fs::hard_link(&tmp, path).map_err(io_err(path))
    })();
    let _ = fs::remove_file(&tmp);
    result
}

/// Loads the node identity from `path`.
pub fn load_identity(path: &Path) -> Result<Keypair, IdentityError> {
    let bytes = read_secret(path)?;
    Keypair::from_protobuf_encoding(&bytes).map_err(|e| IdentityError::Invalid {
        path: path.to_owned(),
        what: "node identity",
        reason: e.to_string(),
        remedy: IDENTITY_REMEDY,
    })
}

/// Loads the node identity from `path`, generating and storing a new ed25519 one (mode 0600)
/// if the file does not exist yet.
pub fn load_or_generate_identity(path: &Path) -> Result<Keypair, IdentityError> {
    if path.exists() {
        return load_identity(path);
    }
    let keypair = Keypair::generate_ed25519();
    let encoded =
        Zeroizing::new(
            keypair
                .to_protobuf_encoding()
                .map_err(|e| IdentityError::Invalid {
                    path: path.to_owned(),
                    what: "node identity",
                    reason: e.to_string(),
                    remedy: IDENTITY_REMEDY,
                })?,
        );
    match create_secret(path, &encoded) {
        Ok(()) => {
            tracing::info!(path = %path.display(), peer = %keypair.public().to_peer_id(), "generated node identity");
            Ok(keypair)
        }
        // Another process created it first: use theirs, so both agree on one identity.
        Err(IdentityError::Io { error, .. })
            if error.kind() == std::io::ErrorKind::AlreadyExists =>
        {
            load_identity(path)
        }
        Err(e) => Err(e),
    }
}

/// A fresh random mesh pre-shared key.
pub fn generate_psk() -> PreSharedKey {
    let mut key = Zeroizing::new([0u8; 32]);
    rand::rngs::OsRng.fill_bytes(&mut key[..]);
    PreSharedKey::new(*key)
}

/// Stores a mesh pre-shared key (mode 0600, standard `/key/swarm/psk/1.0.0/` text format);
/// fails if `path` exists.
pub fn write_psk(path: &Path, psk: &PreSharedKey) -> Result<(), IdentityError> {
    let text = Zeroizing::new(psk.to_string());
    create_secret(path, text.as_bytes())
}

/// Loads a mesh pre-shared key written by [`write_psk`] (or any libp2p `swarm.key`).
pub fn load_psk(path: &Path) -> Result<PreSharedKey, IdentityError> {
    let bytes = read_secret(path).map_err(|e| match e {
        IdentityError::Io { error, .. } if error.kind() == std::io::ErrorKind::NotFound => {
            IdentityError::PskMissing {
                path: path.to_owned(),
            }
        }
        other => other,
    })?;
    let invalid = |reason: String| IdentityError::Invalid {
        path: path.to_owned(),
        what: "mesh pre-shared key",
        reason,
        remedy: PSK_REMEDY,
    };
    let text = std::str::from_utf8(&bytes).map_err(|e| invalid(e.to_string()))?;
    text.parse::<PreSharedKey>()
        .map_err(|e| invalid(e.to_string()))
}

#[cfg(all(test, unix))]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn psk_round_trips_and_is_owner_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mesh.psk");
        let psk = generate_psk();
        write_psk(&path, &psk).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(load_psk(&path).unwrap(), psk);
        // Never overwrite an existing key.
        assert!(write_psk(&path, &generate_psk()).is_err());
        assert_eq!(load_psk(&path).unwrap(), psk);
        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
        assert!(matches!(
            load_psk(&path),
            Err(IdentityError::InsecurePermissions { mode: 0o640, .. })
        ));
    }

    #[test]
    fn garbage_key_file_is_a_typed_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.key");
        create_secret(&path, b"not a key").unwrap();
        let err = load_identity(&path).unwrap_err();
        assert!(matches!(err, IdentityError::Invalid { .. }));
        // What the code does: a missing identity is created at the next start.
        assert!(err.to_string().contains("new identity created"), "{err}");
        assert!(!err.to_string().contains("delete it"), "{err}");
    }

    #[test]
    fn a_bad_or_missing_mesh_key_says_how_to_get_one_and_nothing_creates_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mesh.psk");
        create_secret(&path, b"/key/swarm/psk/1.0.0/\n/base16/\nnot hex\n").unwrap();
        let err = load_psk(&path).unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, IdentityError::Invalid { .. }), "{text}");
        // Never "delete it to generate a new one": nothing generates a mesh key.
        assert!(!text.contains("delete it"), "{text}");
        assert!(text.contains("copy the mesh's key file"), "{text}");
        assert!(text.contains("/dev/urandom"), "{text}");

        let missing = dir.path().join("absent.psk");
        let err = load_psk(&missing).unwrap_err();
        assert!(matches!(err, IdentityError::PskMissing { .. }), "{err}");
        assert!(err.to_string().contains("/dev/urandom"), "{err}");
        assert!(!missing.exists(), "loading never creates a mesh key");
    }
}
