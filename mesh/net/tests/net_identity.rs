//! The node identity on disk: created owner-only, stable across restarts, refused when others
//! can read it.

#![cfg(unix)]

use std::fs;
use std::os::unix::fs::PermissionsExt;

use mesh_net::{IdentityError, load_identity, load_or_generate_identity};

fn mode(path: &std::path::Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn identity_is_created_0600_and_reloaded_with_the_same_peer_id() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.key");
    let first = load_or_generate_identity(&path).unwrap();
    assert_eq!(mode(&path), 0o600);
    let again = load_or_generate_identity(&path).unwrap();
    assert_eq!(again.public().to_peer_id(), first.public().to_peer_id());
    let loaded = load_identity(&path).unwrap();
    assert_eq!(loaded.public().to_peer_id(), first.public().to_peer_id());
    // No temporary file is left behind.
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
}

#[test]
fn identity_readable_by_others_is_refused_not_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.key");
    let original = load_or_generate_identity(&path).unwrap();
    let before = fs::read(&path).unwrap();

    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
    let err = load_identity(&path).unwrap_err();
    assert!(
        matches!(err, IdentityError::InsecurePermissions { mode: 0o644, .. }),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(message.contains("chmod 600"), "{message}");
    assert!(message.contains("node.key"), "{message}");
    // Generating must not paper over it with a fresh key either.
    assert!(load_or_generate_identity(&path).is_err());
    assert_eq!(fs::read(&path).unwrap(), before);

    // Group-readable is just as bad.
    fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
    assert!(load_identity(&path).is_err());

    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
    let fixed = load_identity(&path).unwrap();
    assert_eq!(fixed.public().to_peer_id(), original.public().to_peer_id());
}

#[test]
fn missing_directory_is_a_clear_io_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("no-such-dir").join("node.key");
    let err = load_or_generate_identity(&path).unwrap_err();
    assert!(matches!(err, IdentityError::Io { .. }), "{err:?}");
    assert!(err.to_string().contains("no-such-dir"), "{err}");
}
