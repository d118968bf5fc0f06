//! Share files: one party's Shamir shares of every model weight, on disk.
//!
//! Layout (all integers little-endian):
//!
//! | bytes | what |
//! |---|---|
//! | 8 | magic `SOTTOSHR` |
//! | 2 | format version ([`FORMAT_VERSION`]) |
//! | 4 | header length `h` (at most [`MAX_HEADER_BYTES`]) |
//! | h | [`ShareHeader`], postcard |
//! | 16 x elements | the tensors' shares in header order, each a canonical field element |
//! | 32 | sha256 of everything above |
//!
//! Decoding checks the magic, the version and the header length before allocating anything,
//! derives the payload size from the header and checks it against the file's size, then the
//! checksum, then the header's fields (quorum, party index, roster), then that every element is
//! canonical (`< p`).
//!
//! The roster binds each party index to its device: entry `i` is the peer ID (its bytes) of
//! party `i + 1`'s device, so a node admits an announcement for an index only from the device
//! its own file names, and a client can never hold an index.
//!
//! A share file is a secret (t+1 of them rebuild the weights): it is written owner-only (0600),
//! created exclusively (`O_EXCL`, never through a symlink) under an unpredictable temporary
//! name in the same folder, fsynced and renamed into place, so a crash never leaves half a file
//! under the final name; and [`ShareFile::read`] refuses a file its group or others can read,
//! like the node's key files.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// First bytes of every share file.
pub const MAGIC: [u8; 8] = *b"SOTTOSHR";
/// Version of the layout above; bumped on any incompatible change.
// 2: the header carries the roster (party index -> device peer ID).
pub const FORMAT_VERSION: u16 = 2;
/// Upper bound on the encoded header, checked before it is read.
pub const MAX_HEADER_BYTES: u32 = 64 * 1024;
/// Upper bound on the number of field elements in one file (2^32 x 16 bytes = 64 GiB): far above
/// any model a Sotto device can hold, low enough that a corrupted header cannot ask for more.
pub const MAX_ELEMENTS: u64 = 1 << 32;
/// Upper bound on one roster entry (a peer ID's bytes; an ed25519 peer ID is 38).
pub const MAX_PEER_ID_BYTES: usize = 64;
/// Identifies the prime field of the elements: 1 = 2^127 - 1.
pub const FIELD_MERSENNE127: u8 = 1;
const P127: u128 = (1u128 << 127) - 1;

/// Everything a party must agree on with the rest of the quorum before it computes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShareHeader {
    /// sha256 of the plaintext checkpoint the shares were made from.
    pub model_sha256: [u8; 32],
    /// Random id of one provisioning run: shares of two runs of the same model must never be
    /// combined (they would reconstruct garbage), so parties compare this too.
    pub provisioning_id: [u8; 16],
    /// The device of every party, in party order: entry `i` is the peer ID bytes of party
    /// `i + 1`'s device (`models` does not depend on libp2p; the node decodes them). Exactly
    /// `n` distinct entries of at most [`MAX_PEER_ID_BYTES`] bytes.
    pub roster: Vec<Vec<u8>>,
    /// Number of parties.
    pub n: u8,
    /// Threshold (degree of the sharing polynomials).
    pub t: u8,
    /// This file's party, 1-based (its Shamir evaluation point).
    pub party: u8,
    /// Field of the elements ([`FIELD_MERSENNE127`]).
    pub field: u8,
    /// Fractional bits of the fixed-point weights.
    pub frac_bits: u8,
    /// The model's shape, as read from the checkpoint header (public).
    pub shape: ModelShape,
    /// The tensors, in payload order.
    pub tensors: Vec<TensorInfo>,
}

/// The public shape of a llama2.c model.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelShape {
    /// Embedding width.
    pub dim: u32,
    /// FFN hidden width.
    pub hidden_dim: u32,
    /// Transformer layers.
    pub n_layers: u32,
    /// Query heads.
    pub n_heads: u32,
    /// Key/value heads.
    pub n_kv_heads: u32,
    /// Vocabulary size.
    pub vocab_size: u32,
    /// Maximum sequence length.
    pub seq_len: u32,
}

/// Name and element count of one tensor in the payload.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TensorInfo {
    /// e.g. `layers.0.wq`.
    pub name: String,
    /// Number of field elements.
    pub len: u64,
}

/// One party's share file in memory. The shares are secret: they are wiped on drop and never
/// printed.
pub struct ShareFile {
    /// The public header.
    pub header: ShareHeader,
    /// Canonical field elements, tensor after tensor.
    elements: Vec<u128>,
}

impl std::fmt::Debug for ShareFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShareFile")
            .field("header", &self.header)
            .field(
                "elements",
                &format_args!("<{} secret shares>", self.elements.len()),
            )
            .finish()
    }
}

impl Drop for ShareFile {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.elements);
    }
}

/// Why a share file could not be read or written. Every variant names the file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ShareFileError {
    /// The file could not be opened, read or written.
    // The OS error is in the message, not a `#[source]`: a chain printer would say it twice.
    #[error("{path}: {error}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        error: std::io::Error,
    },
    /// Not a Sotto share file at all.
    #[error("{path}: not a Sotto share file (bad magic bytes)")]
    BadMagic {
        /// The file.
        path: PathBuf,
    },
    /// Written by another version of Sotto.
    #[error(
        "{path}: share file format version {found}, this sotto reads version {FORMAT_VERSION}; re-provision with this version"
    )]
    Version {
        /// The file.
        path: PathBuf,
        /// Version found in the file.
        found: u16,
    },
    /// Shorter or longer than its header says, or with an impossible header.
    #[error("{path}: corrupted share file: {what}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        what: String,
    },
    /// The checksum does not match: the file was modified or damaged.
    #[error(
        "{path}: checksum mismatch: the share file was modified or damaged; restore it from the provisioning output"
    )]
    Checksum {
        /// The file.
        path: PathBuf,
    },
    /// Readable by the group or by others: t+1 such files rebuild the weights.
    #[error(
        "{path} is accessible by users other than its owner (mode {mode:o}); a share file is a secret: run `chmod 600 {path}`"
    )]
    InsecurePermissions {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The destination exists and overwriting was not asked for.
    #[error("{path} already exists; pass --force to overwrite an existing provisioning")]
    Exists {
        /// The file.
        path: PathBuf,
    },
}

/// The header's field id, quorum and party index must be possible; the error says which is not.
fn check_header_fields(header: &ShareHeader) -> Result<(), String> {
    if header.field != FIELD_MERSENNE127 {
        return Err(format!("unknown field id {}", header.field));
    }
    if header.t == 0 || usize::from(header.n) < 2 * usize::from(header.t) + 1 {
        return Err(format!(
            "impossible quorum n={} t={} (need t >= 1 and n >= 2t+1)",
            header.n, header.t
        ));
    }
    if header.party == 0 || header.party > header.n {
        return Err(format!(
            "party index {} outside 1..={}",
            header.party, header.n
        ));
    }
    check_roster(&header.roster, header.n)
}

/// A roster must list `n` distinct, non-empty peer IDs of bounded size.
pub fn check_roster(roster: &[Vec<u8>], n: u8) -> Result<(), String> {
    if roster.len() != usize::from(n) {
        return Err(format!(
            "the roster lists {} devices for n={n} parties",
            roster.len()
        ));
    }
    for (i, entry) in roster.iter().enumerate() {
        if entry.is_empty() || entry.len() > MAX_PEER_ID_BYTES {
            return Err(format!(
                "roster entry of party {} is {} bytes (a peer ID is 1..={MAX_PEER_ID_BYTES})",
                i + 1,
                entry.len()
            ));
        }
        if let Some(j) = roster[..i].iter().position(|e| e == entry) {
            return Err(format!(
                "parties {} and {} are provisioned to the same device",
                j + 1,
                i + 1
            ));
        }
    }
    Ok(())
}

/// The `count` little-endian field elements of a payload, each canonical (below 2^127 - 1).
fn read_elements(payload: &[u8], count: u64) -> Result<Vec<u128>, String> {
    let mut elements = Vec::with_capacity(count as usize);
    for (i, chunk) in payload.chunks_exact(16).enumerate() {
        let mut le = [0u8; 16];
        le.copy_from_slice(chunk);
        let e = u128::from_le_bytes(le);
        if e >= P127 {
            return Err(format!("element {i} is not a canonical field element"));
        }
        elements.push(e);
    }
    Ok(elements)
}

impl ShareFile {
    /// A share file from its header and elements; the element count must match the header.
    pub fn new(header: ShareHeader, elements: Vec<u128>) -> Result<Self, String> {
        let want: u64 = header.tensors.iter().map(|t| t.len).sum();
        if want != elements.len() as u64 {
            return Err(format!(
                "header lists {want} elements, {} given",
                elements.len()
            ));
        }
        if let Some(bad) = elements.iter().position(|&e| e >= P127) {
            return Err(format!("element {bad} is not a canonical field element"));
        }
        Ok(Self { header, elements })
    }

    /// All elements, tensor after tensor.
    pub fn elements(&self) -> &[u128] {
        &self.elements
    }

    /// The elements of the named tensor.
    pub fn tensor(&self, name: &str) -> Option<&[u128]> {
        let mut start = 0usize;
        for t in &self.header.tensors {
            let end = start + t.len as usize;
            if t.name == name {
                return Some(&self.elements[start..end]);
            }
            start = end;
        }
        None
    }

    /// Encode to bytes (layout in the module docs).
    pub fn to_bytes(&self) -> Vec<u8> {
        let header = postcard::to_allocvec(&self.header)
            .expect("serialising a header to memory cannot fail");
        let mut out = Vec::with_capacity(14 + header.len() + 16 * self.elements.len() + 32);
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        out.extend_from_slice(&(header.len() as u32).to_le_bytes());
        out.extend_from_slice(&header);
        for e in &self.elements {
            out.extend_from_slice(&e.to_le_bytes());
        }
        let sum = Sha256::digest(&out);
        out.extend_from_slice(&sum);
        out
    }

    /// Decode from bytes; `path` only names the file in errors.
    pub fn from_bytes(bytes: &[u8], path: &Path) -> Result<Self, ShareFileError> {
        let corrupt = |what: String| ShareFileError::Corrupt {
            path: path.to_owned(),
            what,
        };
        if bytes.len() < 8 || bytes[..8] != MAGIC {
            return Err(ShareFileError::BadMagic {
                path: path.to_owned(),
            });
        }
        if bytes.len() < 14 {
            return Err(corrupt(format!("only {} bytes", bytes.len())));
        }
        let version = u16::from_le_bytes([bytes[8], bytes[9]]);
        if version != FORMAT_VERSION {
            return Err(ShareFileError::Version {
                path: path.to_owned(),
                found: version,
            });
        }
        let hlen = u32::from_le_bytes([bytes[10], bytes[11], bytes[12], bytes[13]]);
        if hlen > MAX_HEADER_BYTES {
            return Err(corrupt(format!(
                "header length {hlen} exceeds the limit of {MAX_HEADER_BYTES} bytes"
            )));
        }
        let body = 14 + hlen as usize;
        if bytes.len() < body + 32 {
            return Err(corrupt(format!(
                "file ends inside the header ({} bytes, header needs {})",
                bytes.len(),
                body + 32
            )));
        }
        let header: ShareHeader = postcard::from_bytes(&bytes[14..body])
            .map_err(|e| corrupt(format!("unreadable header: {e}")))?;
        let count = header
            .tensors
            .iter()
            .try_fold(0u64, |acc, t| acc.checked_add(t.len))
            .filter(|&c| c <= MAX_ELEMENTS)
            .ok_or_else(|| corrupt("header lists an impossible number of elements".into()))?;
        let expected = body as u64 + 16 * count + 32;
        if bytes.len() as u64 != expected {
            return Err(corrupt(format!(
                "file is {} bytes, its header implies {expected} (truncated or padded)",
                bytes.len()
            )));
        }
        let (content, sum) = bytes.split_at(bytes.len() - 32);
        if Sha256::digest(content).as_slice() != sum {
            return Err(ShareFileError::Checksum {
                path: path.to_owned(),
            });
        }
        check_header_fields(&header).map_err(corrupt)?;
        let elements = read_elements(&content[body..], count).map_err(corrupt)?;
        Ok(Self { header, elements })
    }

    /// Read and validate a share file.
    pub fn read(path: &Path) -> Result<Self, ShareFileError> {
        let io = |error| ShareFileError::Io {
            path: path.to_owned(),
            error,
        };
        let mut file = File::open(path).map_err(io)?;
        let meta = file.metadata().map_err(io)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(ShareFileError::InsecurePermissions {
                    path: path.to_owned(),
                    mode,
                });
            }
        }
        let len = meta.len();
        // A header-implied size is only known after reading; bound the read by the largest
        // file we could ever accept so a wrong path (a device, a huge file) cannot exhaust memory.
        let max = 14 + u64::from(MAX_HEADER_BYTES) + 16 * MAX_ELEMENTS + 32;
        if len > max {
            return Err(ShareFileError::Corrupt {
                path: path.to_owned(),
                what: format!("{len} bytes is larger than any share file"),
            });
        }
        let mut bytes = Vec::with_capacity(len as usize);
        file.read_to_end(&mut bytes).map_err(io)?;
        let parsed = Self::from_bytes(&bytes, path);
        zeroize::Zeroize::zeroize(&mut bytes);
        parsed
    }

    /// Write atomically and owner-only: a new 0600 temporary file in the same folder, created
    /// exclusively under a random name (so a planted file or symlink is never written
    /// through), fsync, rename, fsync the folder. Refuses to replace an existing file unless
    /// `force`.
    pub fn write(&self, path: &Path, force: bool) -> Result<(), ShareFileError> {
        let io = |error| ShareFileError::Io {
            path: path.to_owned(),
            error,
        };
        let exists = || ShareFileError::Exists {
            path: path.to_owned(),
        };
        // symlink_metadata: a dangling symlink is "existing" too.
        if !force && path.symlink_metadata().is_ok() {
            return Err(exists());
        }
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let file_name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        // `tempfile` opens with O_CREAT | O_EXCL and mode 0600, retrying random names.
        let mut tmp = tempfile::Builder::new()
            .prefix(&format!(".{file_name}."))
            .suffix(".tmp")
            .tempfile_in(dir)
            .map_err(io)?;
        let mut bytes = self.to_bytes();
        let written = tmp
            .write_all(&bytes)
            .and_then(|()| tmp.as_file().sync_all());
        zeroize::Zeroize::zeroize(&mut bytes);
        written.map_err(io)?;
        // Dropping a temporary file that was not persisted removes it.
        let persisted = if force {
            tmp.persist(path).map(drop)
        } else {
            // A hard link: refuses to replace a file created since the check above.
            tmp.persist_noclobber(path).map(drop)
        };
        match persisted {
            Ok(()) => File::open(dir).and_then(|d| d.sync_all()).map_err(io),
            Err(e) if e.error.kind() == std::io::ErrorKind::AlreadyExists => Err(exists()),
            Err(e) => Err(io(e.error)),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;

    fn sample() -> ShareFile {
        let header = ShareHeader {
            model_sha256: [7; 32],
            provisioning_id: [9; 16],
            roster: vec![vec![1; 38], vec![2; 38], vec![3; 38]],
            n: 3,
            t: 1,
            party: 2,
            field: FIELD_MERSENNE127,
            frac_bits: 16,
            shape: ModelShape {
                dim: 4,
                hidden_dim: 8,
                n_layers: 1,
                n_heads: 2,
                n_kv_heads: 1,
                vocab_size: 16,
                seq_len: 32,
            },
            tensors: vec![
                TensorInfo {
                    name: "a".into(),
                    len: 3,
                },
                TensorInfo {
                    name: "b".into(),
                    len: 2,
                },
            ],
        };
        ShareFile::new(header, vec![1, 2, 3, P127 - 1, 0]).expect("valid sample")
    }

    #[test]
    fn round_trip() {
        let s = sample();
        let back = ShareFile::from_bytes(&s.to_bytes(), Path::new("x")).expect("decodes");
        assert_eq!(back.header, s.header);
        assert_eq!(back.elements(), s.elements());
        assert_eq!(back.tensor("b"), Some(&[P127 - 1, 0][..]));
        assert_eq!(back.tensor("c"), None);
    }

    #[test]
    fn debug_does_not_print_shares() {
        let text = format!("{:?}", sample());
        assert!(text.contains("<5 secret shares>"));
        assert!(!text.contains("170141183460469231731687303715884105726"));
    }

    #[test]
    fn every_truncation_and_every_flipped_byte_is_rejected() {
        let bytes = sample().to_bytes();
        for cut in 0..bytes.len() {
            assert!(
                ShareFile::from_bytes(&bytes[..cut], Path::new("x")).is_err(),
                "cut {cut}"
            );
        }
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x40;
            assert!(
                ShareFile::from_bytes(&b, Path::new("x")).is_err(),
                "flip {i}"
            );
        }
        let mut padded = bytes.clone();
        padded.push(0);
        assert!(matches!(
            ShareFile::from_bytes(&padded, Path::new("x")),
            Err(ShareFileError::Corrupt { .. })
        ));
    }

    #[test]
    fn huge_header_length_is_refused_before_allocating() {
        let mut b = sample().to_bytes();
        b[10..14].copy_from_slice(&u32::MAX.to_le_bytes());
        let err = ShareFile::from_bytes(&b, Path::new("party-1.share")).unwrap_err();
        assert!(err.to_string().contains("party-1.share"), "{err}");
        assert!(err.to_string().contains("header length"), "{err}");
    }

    #[test]
    fn wrong_version_says_to_reprovision() {
        let mut b = sample().to_bytes();
        b[8] = 99;
        let err = ShareFile::from_bytes(&b, Path::new("x")).unwrap_err();
        assert!(matches!(err, ShareFileError::Version { found: 99, .. }));
        assert!(err.to_string().contains("re-provision"));
    }

    #[test]
    fn write_is_atomic_and_refuses_to_overwrite() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("party-2.share");
        sample().write(&path, false).expect("first write");
        let err = sample().write(&path, false).unwrap_err();
        assert!(matches!(err, ShareFileError::Exists { .. }));
        assert!(err.to_string().contains("--force"));
        sample().write(&path, true).expect("forced write");
        let names: Vec<_> = fs::read_dir(dir.path())
            .expect("list")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names.len(), 1, "no temporary file left behind: {names:?}");
        assert_eq!(
            ShareFile::read(&path).expect("reads").header,
            sample().header
        );
    }

    #[test]
    fn the_roster_round_trips_and_is_covered_by_the_checksum() {
        let s = sample();
        let bytes = s.to_bytes();
        let back = ShareFile::from_bytes(&bytes, Path::new("x")).expect("decodes");
        assert_eq!(back.header.roster, s.header.roster);
        // Point party 2 at another device: the checksum catches it.
        let at = bytes
            .windows(38)
            .position(|w| w == [2u8; 38])
            .expect("party 2's entry is in the header");
        let mut tampered = bytes.clone();
        tampered[at] = 7;
        assert!(matches!(
            ShareFile::from_bytes(&tampered, Path::new("x")),
            Err(ShareFileError::Checksum { .. })
        ));
    }

    #[test]
    fn an_impossible_roster_is_refused() {
        let cases: [(Vec<Vec<u8>>, &str); 4] = [
            (vec![vec![1; 38], vec![2; 38]], "2 devices for n=3"),
            (vec![vec![1; 38], vec![2; 38], vec![1; 38]], "same device"),
            (vec![vec![1; 38], vec![], vec![3; 38]], "party 2 is 0 bytes"),
            (
                vec![vec![1; 38], vec![2; MAX_PEER_ID_BYTES + 1], vec![3; 38]],
                "party 2 is 65 bytes",
            ),
        ];
        for (roster, why) in cases {
            let mut s = sample();
            s.header.roster = roster;
            let err = ShareFile::from_bytes(&s.to_bytes(), Path::new("x")).unwrap_err();
            assert!(
                matches!(&err, ShareFileError::Corrupt { what, .. } if what.contains(why)),
                "{why}: {err}"
            );
        }
    }

    #[cfg(unix)]
    fn mode(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        fs::symlink_metadata(path)
            .expect("stat")
            .permissions()
            .mode()
            & 0o777
    }

    #[cfg(unix)]
    #[test]
    fn a_written_share_file_is_owner_only_and_others_readable_ones_are_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("party-2.share");
        sample().write(&path, false).expect("write");
        assert_eq!(mode(&path), 0o600);
        sample().write(&path, true).expect("forced write");
        assert_eq!(mode(&path), 0o600);
        for bad in [0o644, 0o640, 0o604] {
            fs::set_permissions(&path, fs::Permissions::from_mode(bad)).expect("chmod");
            let err = ShareFile::read(&path).unwrap_err();
            assert!(
                matches!(err, ShareFileError::InsecurePermissions { mode, .. } if mode == bad),
                "{err}"
            );
            assert!(err.to_string().contains("chmod 600"), "{err}");
        }
    }

    #[cfg(unix)]
    #[test]
    fn writing_never_follows_a_planted_symlink() {
        let dir = tempfile::tempdir().expect("tempdir");
        let victim = dir.path().join("victim");
        fs::write(&victim, b"precious").expect("victim");
        let path = dir.path().join("party-2.share");
        // The temporary name an attacker could predict (the process id) and the final name.
        let planted = dir
            .path()
            .join(format!(".party-2.share.tmp-{}", std::process::id()));
        std::os::unix::fs::symlink(&victim, &planted).expect("symlink");
        sample().write(&path, false).expect("write");
        assert_eq!(fs::read(&victim).expect("victim"), b"precious");
        assert!(fs::symlink_metadata(&path).expect("stat").is_file());
        assert_eq!(mode(&path), 0o600);

        let linked = dir.path().join("party-3.share");
        std::os::unix::fs::symlink(&victim, &linked).expect("symlink");
        assert!(matches!(
            sample().write(&linked, false),
            Err(ShareFileError::Exists { .. })
        ));
        sample().write(&linked, true).expect("replaces the link");
        assert_eq!(fs::read(&victim).expect("victim"), b"precious");
        assert!(fs::symlink_metadata(&linked).expect("stat").is_file());
        assert_eq!(mode(&linked), 0o600);
    }
}
