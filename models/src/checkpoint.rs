//! llama2.c legacy ("version 0") checkpoints: the header ([`Config`]) and the f32 tensors
//! ([`Checkpoint`]).
//!
//! Layout: 7 little-endian i32 (`dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size,
//! seq_len`), then f32 tensors in this order, each row-major `[out, in]` and applied as
//! `y = W x`: `token_embedding[vocab, dim]`, `rms_att[layers, dim]`, `wq[layers, dim, dim]`,
//! `wk[layers, kv_dim, dim]`, `wv[layers, kv_dim, dim]`, `wo[layers, dim, dim]`,
//! `rms_ffn[layers, dim]`, `w1[layers, hidden, dim]`, `w2[layers, dim, hidden]`,
//! `w3[layers, hidden, dim]`, `rms_final[dim]`, the unused `freq_cis_real/imag[seq_len,
//! head_size/2]`, and — only when `vocab_size` is negative — an unshared classifier
//! `wcls[vocab, dim]`. A positive `vocab_size` means the classifier is the token embedding.
//!
//! Everything the header implies is checked (with overflow-checked arithmetic and the caps
//! below) against the file size before any tensor memory is allocated.

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::error::LoadError;

/// Bytes in the header.
pub const HEADER_BYTES: usize = 28;
/// Largest accepted value of any header field.
pub const MAX_HEADER_VALUE: usize = 1 << 20;
/// Largest accepted checkpoint file (16 GiB).
pub const MAX_CHECKPOINT_BYTES: u64 = 1 << 34;
/// Largest accepted KV cache, in entries per cache (`n_layers * seq_len * kv_dim`); the
/// engines allocate two of these (keys and values) at up to 8 bytes per entry.
pub const MAX_KV_CACHE_ENTRIES: u64 = 1 << 28;

/// The model hyper-parameters from the checkpoint header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Config {
    /// Width of the residual stream.
    pub dim: usize,
    /// Width of the FFN's hidden layer.
    pub hidden_dim: usize,
    /// Number of transformer layers.
    pub n_layers: usize,
    /// Number of query heads.
    pub n_heads: usize,
    /// Number of key/value heads (GQA: each serves `n_heads / n_kv_heads` query heads).
    pub n_kv_heads: usize,
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Context length.
    pub seq_len: usize,
    /// Whether the classifier is the token embedding (header `vocab_size > 0`).
    pub shared_classifier: bool,
}

/// The header's seven values as magnitudes, each positive and at most 2^20 (`vocab_size`'s
/// sign only says whether the classifier is shared).
fn header_magnitudes(
    raw: [i32; 7],
    bad: impl Fn(&'static str, i64, &'static str) -> LoadError,
) -> Result<[usize; 7], LoadError> {
    let names = [
        "dim",
        "hidden_dim",
        "n_layers",
        "n_heads",
        "n_kv_heads",
        "vocab_size",
        "seq_len",
    ];
    let mut v = [0usize; 7];
    for (i, (&r, name)) in raw.iter().zip(names).enumerate() {
        // vocab_size's sign only says whether the classifier is shared.
        let magnitude = if i == 5 {
            i64::from(r).abs()
        } else {
            i64::from(r)
        };
        if magnitude <= 0 {
            return Err(bad(name, r.into(), "must be positive"));
        }
        if magnitude > MAX_HEADER_VALUE as i64 {
            return Err(bad(name, r.into(), "exceeds the limit of 2^20"));
        }
        v[i] = magnitude as usize;
    }
    Ok(v)
}

/// Refuse head counts that do not split `dim` into even-sized heads grouped evenly.
fn check_heads(
    dim: usize,
    n_heads: usize,
    n_kv_heads: usize,
    bad: impl Fn(&'static str, i64, &'static str) -> LoadError,
) -> Result<(), LoadError> {
    if dim % n_heads != 0 {
        return Err(bad("dim", dim as i64, "not divisible by n_heads"));
    }
    if (dim / n_heads) % 2 != 0 {
        return Err(bad(
            "dim",
            dim as i64,
            "head size (dim / n_heads) must be even for RoPE",
        ));
    }
    if n_kv_heads > n_heads || n_heads % n_kv_heads != 0 {
        return Err(bad(
            "n_kv_heads",
            n_kv_heads as i64,
            "n_heads is not a multiple of n_kv_heads",
        ));
    }
    Ok(())
}

impl Config {
    /// Width of one attention head.
    pub fn head_size(&self) -> usize {
        self.dim / self.n_heads
    }

    /// Width of the key and value vectors (`n_kv_heads * head_size`).
    pub fn kv_dim(&self) -> usize {
        self.n_kv_heads * self.head_size()
    }

    /// Query heads per key/value head.
    pub fn kv_mul(&self) -> usize {
        self.n_heads / self.n_kv_heads
    }

    /// Validate a raw header. `path` is only used in errors.
    pub fn from_header(raw: [i32; 7], path: &Path) -> Result<Self, LoadError> {
        let bad = |field: &'static str, value: i64, reason: &'static str| LoadError::BadHeader {
            path: path.to_path_buf(),
            field,
            value,
            reason,
        };
        let [
            dim,
            hidden_dim,
            n_layers,
            n_heads,
            n_kv_heads,
            vocab_size,
            seq_len,
        ] = header_magnitudes(raw, bad)?;
        check_heads(dim, n_heads, n_kv_heads, bad)?;
        let config = Config {
            dim,
            hidden_dim,
            n_layers,
            n_heads,
            n_kv_heads,
            vocab_size,
            seq_len,
            shared_classifier: raw[5] > 0,
        };
        config.check_sizes(path)?;
        Ok(config)
    }

    /// Refuse a header whose KV cache or checkpoint would exceed the size limits.
    fn check_sizes(&self, path: &Path) -> Result<(), LoadError> {
        let too_large = |what: &'static str, limit: u64| LoadError::TooLarge {
            path: path.to_path_buf(),
            what,
            limit,
        };
        let kv = (self.n_layers as u64)
            .checked_mul(self.seq_len as u64)
            .and_then(|x| x.checked_mul(self.kv_dim() as u64))
            .filter(|&x| x <= MAX_KV_CACHE_ENTRIES);
        if kv.is_none() {
            return Err(too_large(
                "the KV cache (n_layers * seq_len * kv_dim)",
                MAX_KV_CACHE_ENTRIES,
            ));
        }
        if self.file_bytes().is_none() {
            return Err(too_large(
                "the checkpoint size implied by the header",
                MAX_CHECKPOINT_BYTES,
            ));
        }
        Ok(())
    }

    /// Element counts of the tensors in file order (`None` on overflow).
    fn tensor_sizes(&self) -> Option<[(&'static str, u64); 13]> {
        let (d, h, l) = (
            self.dim as u64,
            self.hidden_dim as u64,
            self.n_layers as u64,
        );
        let kv = self.kv_dim() as u64;
        let vocab = self.vocab_size as u64;
        let m = |a: u64, b: u64, c: u64| a.checked_mul(b)?.checked_mul(c);
        Some([
            ("token_embedding", vocab.checked_mul(d)?),
            ("rms_att", l.checked_mul(d)?),
            ("wq", m(l, d, d)?),
            ("wk", m(l, kv, d)?),
            ("wv", m(l, kv, d)?),
            ("wo", m(l, d, d)?),
            ("rms_ffn", l.checked_mul(d)?),
            ("w1", m(l, h, d)?),
            ("w2", m(l, d, h)?),
            ("w3", m(l, h, d)?),
            ("rms_final", d),
            // freq_cis_real and freq_cis_imag: seq_len * head_size / 2 each.
            (
                "freq_cis",
                (self.seq_len as u64).checked_mul(self.head_size() as u64)?,
            ),
            (
                "wcls",
                if self.shared_classifier {
                    0
                } else {
                    vocab.checked_mul(d)?
                },
            ),
        ])
    }

    /// The exact file size the header implies, or `None` if it overflows or exceeds
    /// [`MAX_CHECKPOINT_BYTES`].
    pub fn file_bytes(&self) -> Option<u64> {
        let mut floats = 0u64;
        for (_, n) in self.tensor_sizes()? {
            floats = floats.checked_add(n)?;
        }
        floats
            .checked_mul(4)?
            .checked_add(HEADER_BYTES as u64)
            .filter(|&b| b <= MAX_CHECKPOINT_BYTES)
    }
}

/// A loaded llama2.c checkpoint: the [`Config`] and every f32 tensor (layout in the module doc).
#[derive(Clone)]
pub struct Checkpoint {
    config: Config,
    pub(crate) token_embedding: Vec<f32>,
    pub(crate) rms_att: Vec<f32>,
    pub(crate) wq: Vec<f32>,
    pub(crate) wk: Vec<f32>,
    pub(crate) wv: Vec<f32>,
    pub(crate) wo: Vec<f32>,
    pub(crate) rms_ffn: Vec<f32>,
    pub(crate) w1: Vec<f32>,
    pub(crate) w2: Vec<f32>,
    pub(crate) w3: Vec<f32>,
    pub(crate) rms_final: Vec<f32>,
    wcls: Option<Vec<f32>>,
}

impl fmt::Debug for Checkpoint {
    // Megabytes of weights are no use in a debug print.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Checkpoint")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Checkpoint {
    /// Read and validate a checkpoint file.
    pub fn load(path: &Path) -> Result<Self, LoadError> {
        let io = |error: std::io::Error| LoadError::Io {
            path: path.to_path_buf(),
            error,
        };
        let mut file = std::fs::File::open(path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                LoadError::MissingFile {
                    path: path.to_path_buf(),
                }
            } else {
                io(e)
            }
        })?;
        let actual = file.metadata().map_err(io)?.len();
        let mut header = [0u8; HEADER_BYTES];
        if actual < HEADER_BYTES as u64 {
            return Err(truncated(path, "header", HEADER_BYTES as u64, actual));
        }
        file.read_exact(&mut header).map_err(io)?;
        let config = Config::from_header(parse_header(&header), path)?;
        let expected = expected_size(&config, path)?;
        check_size(path, expected, actual)?;
        // Sizes are validated; `expected` is at most MAX_CHECKPOINT_BYTES, so this cast and
        // allocation are bounded. Read one byte more than expected to notice a file that grew.
        let mut bytes = Vec::with_capacity(expected as usize);
        bytes.extend_from_slice(&header);
        file.take(expected - HEADER_BYTES as u64 + 1)
            .read_to_end(&mut bytes)
            .map_err(io)?;
        Self::from_bytes(&bytes, path)
    }

    /// Validate and parse a checkpoint held in memory. `path` is only used in errors.
    pub fn from_bytes(bytes: &[u8], path: &Path) -> Result<Self, LoadError> {
        let actual = bytes.len() as u64;
        let Some(header) = bytes.first_chunk::<HEADER_BYTES>() else {
            return Err(truncated(path, "header", HEADER_BYTES as u64, actual));
        };
        let config = Config::from_header(parse_header(header), path)?;
        let expected = expected_size(&config, path)?;
        check_size(path, expected, actual)?;
        let Some(sizes) = config.tensor_sizes() else {
            // from_header already proved the sizes fit.
            return Err(LoadError::TooLarge {
                path: path.to_path_buf(),
                what: "the checkpoint size implied by the header",
                limit: MAX_CHECKPOINT_BYTES,
            });
        };
        let mut rest = &bytes[HEADER_BYTES..];
        let mut tensors: Vec<Vec<f32>> = Vec::with_capacity(sizes.len());
        for (name, n) in sizes {
            // n * 4 bytes are present: the total size was checked above.
            let (chunk, tail) = rest.split_at(n as usize * 4);
            rest = tail;
            if name == "freq_cis" {
                // Unused by run.c (RoPE is recomputed); keep nothing.
                tensors.push(Vec::new());
                continue;
            }
            let mut t = Vec::with_capacity(n as usize);
            for (index, b) in chunk.chunks_exact(4).enumerate() {
                let v = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                if !v.is_finite() {
                    return Err(LoadError::NonFinite {
                        path: path.to_path_buf(),
                        tensor: name,
                        index,
                    });
                }
                t.push(v);
            }
            tensors.push(t);
        }
        let mut it = tensors.into_iter();
        let mut next = || it.next().unwrap_or_default();
        let token_embedding = next();
        let rms_att = next();
        let wq = next();
        let wk = next();
        let wv = next();
        let wo = next();
        let rms_ffn = next();
        let w1 = next();
        let w2 = next();
        let w3 = next();
        let rms_final = next();
        let _freq_cis = next();
        let wcls = next();
        Ok(Checkpoint {
            config,
            token_embedding,
            rms_att,
            wq,
            wk,
            wv,
            wo,
            rms_ffn,
            w1,
            w2,
            w3,
            rms_final,
            wcls: (!config.shared_classifier).then_some(wcls),
        })
    }

    /// The hyper-parameters.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The classifier `[vocab, dim]`: the token embedding when shared.
    pub fn classifier(&self) -> &[f32] {
        self.wcls.as_deref().unwrap_or(&self.token_embedding)
    }

    /// The token embedding table `[vocab, dim]`.
    pub fn token_embedding(&self) -> &[f32] {
        &self.token_embedding
    }
}

fn parse_header(h: &[u8; HEADER_BYTES]) -> [i32; 7] {
    let mut raw = [0i32; 7];
    for (r, b) in raw.iter_mut().zip(h.chunks_exact(4)) {
        *r = i32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    }
    raw
}

fn truncated(path: &Path, what: &str, needed: u64, actual: u64) -> LoadError {
    LoadError::Truncated {
        path: PathBuf::from(path),
        what: what.to_owned(),
        needed,
        actual,
    }
}

fn expected_size(config: &Config, path: &Path) -> Result<u64, LoadError> {
    config.file_bytes().ok_or_else(|| LoadError::TooLarge {
        path: path.to_path_buf(),
        what: "the checkpoint size implied by the header",
        limit: MAX_CHECKPOINT_BYTES,
    })
}

fn check_size(path: &Path, expected: u64, actual: u64) -> Result<(), LoadError> {
    if actual < expected {
        Err(truncated(
            path,
            "tensors the header describes",
            expected,
            actual,
        ))
    } else if actual > expected {
        Err(LoadError::ExtraBytes {
            path: path.to_path_buf(),
            expected,
            actual,
        })
    } else {
        Ok(())
    }
}
