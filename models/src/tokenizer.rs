//! llama2.c tokenizer files (`tok512.bin`, `tokenizer.bin`) and the run.c encode/decode rules.
//!
//! File layout: i32 `max_token_length`, then for each of the `vocab_size` tokens (the size
//! comes from the checkpoint header, not from this file): f32 score, i32 byte length, the
//! piece's bytes. Pieces must be UTF-8; ids 3..=258 must be the byte-fallback pieces
//! `<0x00>`..`<0xFF>` because [`Tokenizer::encode`] maps an unknown byte `b` to id `b + 3`.

use std::collections::HashMap;
use std::path::Path;

use crate::error::{LoadError, TokenError};

/// Beginning-of-sequence token id.
pub const BOS: u32 = 1;
/// End-of-sequence token id.
pub const EOS: u32 = 2;
/// Id of the byte-fallback piece `<0x00>`; byte `b` is id `BYTE_FALLBACK_OFFSET + b`.
pub const BYTE_FALLBACK_OFFSET: u32 = 3;
/// Largest accepted `max_token_length`.
pub const MAX_TOKEN_LENGTH: usize = 1024;
/// Largest accepted tokenizer file (64 MiB).
pub const MAX_TOKENIZER_BYTES: u64 = 1 << 26;

/// A loaded tokenizer (see the module doc).
#[derive(Clone)]
pub struct Tokenizer {
    pieces: Vec<String>,
    scores: Vec<f32>,
    max_token_length: usize,
    /// Piece -> id; on duplicate pieces the lowest id wins.
    ids: HashMap<String, u32>,
    /// The 256 single bytes, so decode can return `&[u8]` for byte-fallback pieces.
    bytes: [u8; 256],
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("vocab_size", &self.pieces.len())
            .field("max_token_length", &self.max_token_length)
            .finish_non_exhaustive()
    }
}

impl Tokenizer {
    /// Read and validate a tokenizer file with `vocab_size` tokens.
    pub fn load(path: &Path, vocab_size: usize) -> Result<Self, LoadError> {
        let meta = std::fs::metadata(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => LoadError::MissingFile {
                path: path.to_path_buf(),
            },
            _ => LoadError::Io {
                path: path.to_path_buf(),
                error: e,
            },
        })?;
        if meta.len() > MAX_TOKENIZER_BYTES {
            return Err(LoadError::TooLarge {
                path: path.to_path_buf(),
                what: "the tokenizer file",
                limit: MAX_TOKENIZER_BYTES,
            });
        }
        let bytes = std::fs::read(path).map_err(|error| LoadError::Io {
            path: path.to_path_buf(),
            error,
        })?;
        Self::from_bytes(&bytes, vocab_size, path)
    }

    /// Validate and parse a tokenizer held in memory. `path` is only used in errors.
    pub fn from_bytes(bytes: &[u8], vocab_size: usize, path: &Path) -> Result<Self, LoadError> {
        let p = || path.to_path_buf();
        let actual = bytes.len() as u64;
        if actual > MAX_TOKENIZER_BYTES {
            return Err(LoadError::TooLarge {
                path: p(),
                what: "the tokenizer file",
                limit: MAX_TOKENIZER_BYTES,
            });
        }
        let mut r = Cursor { bytes, pos: 0 };
        let max_token_length = read_max_token_length(&mut r, vocab_size, path, actual)?;
        let mut pieces = Vec::with_capacity(vocab_size);
        let mut scores = Vec::with_capacity(vocab_size);
        for id in 0..vocab_size {
            let (piece, score) = read_token(&mut r, id, max_token_length, path, actual)?;
            pieces.push(piece);
            scores.push(score);
        }
        if r.pos < bytes.len() {
            return Err(LoadError::ExtraBytes {
                path: p(),
                expected: r.pos as u64,
                actual,
            });
        }
        check_byte_fallback(&pieces, path)?;
        let mut ids = HashMap::with_capacity(vocab_size);
        for (id, piece) in pieces.iter().enumerate() {
            // vocab_size <= MAX_HEADER_VALUE-sized inputs in practice; ids fit in u32 because
            // the loop above read at least 8 bytes per id from a file under 2^26 bytes.
            ids.entry(piece.clone()).or_insert(id as u32);
        }
        let mut all_bytes = [0u8; 256];
        for (i, b) in all_bytes.iter_mut().enumerate() {
            *b = i as u8;
        }
        Ok(Tokenizer {
            pieces,
            scores,
            max_token_length,
            ids,
            bytes: all_bytes,
        })
    }

    /// Number of tokens.
    pub fn vocab_size(&self) -> usize {
        self.pieces.len()
    }

    /// The file's declared maximum piece length in bytes.
    pub fn max_token_length(&self) -> usize {
        self.max_token_length
    }

    /// The piece of `id` as stored (before decode rules).
    pub fn piece(&self, id: u32) -> Result<&str, TokenError> {
        self.pieces
            .get(id as usize)
            .map(String::as_str)
            .ok_or(TokenError::UnknownId {
                id,
                vocab_size: self.pieces.len(),
            })
    }

    /// The merge score of `id`.
    pub fn score(&self, id: u32) -> Result<f32, TokenError> {
        self.scores
            .get(id as usize)
            .copied()
            .ok_or(TokenError::UnknownId {
                id,
                vocab_size: self.pieces.len(),
            })
    }

    /// The id of an exact piece, if the vocabulary has it.
    pub fn id_of(&self, piece: &str) -> Option<u32> {
        self.ids.get(piece).copied()
    }

    /// llama2.c `encode(text, bos, eos)`: optional BOS; a dummy-prefix `" "` token when `text`
    /// is not empty; one token per UTF-8 character, or its bytes as byte-fallback tokens
    /// (`byte + 3`) when the character is not a piece; then, while any adjacent pair
    /// concatenates to a piece, merge the pair whose piece has the highest score (the first
    /// such pair on ties, scores must beat -1e10); optional EOS.
    ///
    /// Unlike run.c (which would push id -1), a vocabulary without a `" "` piece gets the
    /// byte-fallback token for the space.
    pub fn encode(&self, text: &str, bos: bool, eos: bool) -> Vec<u32> {
        let mut tokens = Vec::with_capacity(text.len() + 3);
        if bos {
            tokens.push(BOS);
        }
        if !text.is_empty() {
            self.push_piece_or_bytes(" ", &mut tokens);
        }
        let mut utf8 = [0u8; 4];
        for c in text.chars() {
            self.push_piece_or_bytes(c.encode_utf8(&mut utf8), &mut tokens);
        }
        let mut pair = String::with_capacity(2 * self.max_token_length);
        loop {
            let mut best: Option<(f32, u32, usize)> = None;
            // Every id in `tokens` indexes `pieces`: BOS/EOS and the byte-fallback ids are
            // below 259 <= vocab_size (checked at load), the others come from `ids`.
            for (i, w) in tokens.windows(2).enumerate() {
                pair.clear();
                pair.push_str(&self.pieces[w[0] as usize]);
                pair.push_str(&self.pieces[w[1] as usize]);
                if let Some(&id) = self.ids.get(pair.as_str()) {
                    let score = self.scores[id as usize];
                    if score > best.map_or(-1e10, |b| b.0) {
                        best = Some((score, id, i));
                    }
                }
            }
            let Some((_, id, i)) = best else { break };
            tokens[i] = id;
            tokens.remove(i + 1);
        }
        if eos {
            tokens.push(EOS);
        }
        tokens
    }

    fn push_piece_or_bytes(&self, s: &str, tokens: &mut Vec<u32>) {
        match self.ids.get(s) {
            Some(&id) => tokens.push(id),
            None => tokens.extend(s.bytes().map(|b| BYTE_FALLBACK_OFFSET + u32::from(b))),
        }
    }

    /// The bytes to print for `token` following `prev`, by run.c's `decode` + `safe_printf`:
    /// after BOS, one leading space is dropped; a `<0xXX>` piece is the raw byte; a single
    /// ASCII byte that is neither printable nor whitespace prints nothing. Bytes >= 0x80 are
    /// returned as they are: feed them to a [`crate::Utf8Stream`] (run.c drops them instead).
    pub fn decode_piece(&self, prev: u32, token: u32) -> Result<&[u8], TokenError> {
        let mut piece = self.piece(token)?.as_bytes();
        if prev == BOS && piece.first() == Some(&b' ') {
            piece = &piece[1..];
        }
        if let Some(b) = parse_byte_piece(piece) {
            piece = std::slice::from_ref(&self.bytes[usize::from(b)]);
        }
        if let [b] = piece {
            let printable = (0x20..0x7f).contains(b);
            let space = matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r');
            if b.is_ascii() && !printable && !space {
                return Ok(&[]);
            }
        }
        Ok(piece)
    }

    /// Decode a whole token sequence the way `sotto generate` prints it: BOS tokens print
    /// nothing, every other token prints [`Tokenizer::decode_piece`] with the token before it
    /// as `prev`, and byte-fallback sequences are joined into UTF-8 (invalid bytes become
    /// U+FFFD).
    pub fn decode(&self, ids: &[u32]) -> Result<String, TokenError> {
        let mut out = String::new();
        let mut stream = crate::Utf8Stream::new();
        let mut prev = None;
        for &id in ids {
            if id != BOS {
                let bytes = self.decode_piece(prev.unwrap_or(u32::MAX), id)?;
                stream.push(bytes, &mut out);
            }
            prev = Some(id);
        }
        stream.finish(&mut out);
        Ok(out)
    }
}

/// `<0xXX>` (two hex digits, either case) -> the byte.
fn parse_byte_piece(piece: &[u8]) -> Option<u8> {
    let hex = piece.strip_prefix(b"<0x")?.strip_suffix(b">")?;
    if hex.len() != 2 || !hex.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    let s = std::str::from_utf8(hex).ok()?;
    u8::from_str_radix(s, 16).ok()
}

struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Cursor<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        let end = self.pos.checked_add(n)?;
        let s = self.bytes.get(self.pos..end)?;
        self.pos = end;
        Some(s)
    }

    fn i32(&mut self) -> Option<i32> {
        let b = self.take(4)?;
        Some(i32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn f32(&mut self) -> Option<f32> {
        let b = self.take(4)?;
        Some(f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
}

/// Read and check `max_token_length`, and check that `vocab_size` tokens can fit in the file
/// (before anything is allocated per token).
fn read_max_token_length(
    r: &mut Cursor<'_>,
    vocab_size: usize,
    path: &Path,
    actual: u64,
) -> Result<usize, LoadError> {
    let p = || path.to_path_buf();
    let max_len = r.i32().ok_or_else(|| LoadError::Truncated {
        path: p(),
        what: "max_token_length".into(),
        needed: 4,
        actual,
    })?;
    if max_len <= 0 || max_len as usize > MAX_TOKEN_LENGTH {
        return Err(LoadError::BadHeader {
            path: p(),
            field: "max_token_length",
            value: max_len.into(),
            reason: "must be in 1..=1024",
        });
    }
    let min_vocab = BYTE_FALLBACK_OFFSET as usize + 256;
    if vocab_size < min_vocab {
        return Err(LoadError::BadHeader {
            path: p(),
            field: "vocab_size",
            value: vocab_size as i64,
            reason: "must be at least 259 (3 special tokens + 256 byte-fallback tokens)",
        });
    }
    // Each token takes at least 8 bytes: check before allocating per-token storage.
    let min_bytes = (vocab_size as u64).saturating_mul(8).saturating_add(4);
    if min_bytes > actual {
        return Err(LoadError::Truncated {
            path: p(),
            what: format!("{vocab_size} tokens"),
            needed: min_bytes,
            actual,
        });
    }
    Ok(max_len as usize)
}

/// Read token `id`: its score (finite) and its piece (UTF-8, at most `max_token_length`).
fn read_token(
    r: &mut Cursor<'_>,
    id: usize,
    max_token_length: usize,
    path: &Path,
    actual: u64,
) -> Result<(String, f32), LoadError> {
    let p = || path.to_path_buf();
    let truncated = |needed: u64| LoadError::Truncated {
        path: p(),
        what: format!("token {id}"),
        needed,
        actual,
    };
    let score = r.f32().ok_or_else(|| truncated(r.pos as u64 + 4))?;
    if !score.is_finite() {
        return Err(LoadError::NonFinite {
            path: p(),
            tensor: "score",
            index: id,
        });
    }
    let len = r.i32().ok_or_else(|| truncated(r.pos as u64 + 4))?;
    if len < 0 || len as usize > max_token_length {
        return Err(LoadError::BadPieceLength {
            path: p(),
            id,
            len: len.into(),
            max_token_length,
        });
    }
    let needed = r.pos as u64 + len as u64;
    let raw = r.take(len as usize).ok_or_else(|| truncated(needed))?;
    let piece = std::str::from_utf8(raw).map_err(|_| LoadError::NonUtf8Piece { path: p(), id })?;
    Ok((piece.to_owned(), score))
}

/// The byte-fallback tokens must be `<0x00>` ... `<0xFF>` at their fixed ids.
fn check_byte_fallback(pieces: &[String], path: &Path) -> Result<(), LoadError> {
    for b in 0..=255u8 {
        let id = BYTE_FALLBACK_OFFSET as usize + usize::from(b);
        let expected = format!("<0x{b:02X}>");
        if pieces[id] != expected {
            return Err(LoadError::ByteFallback {
                path: path.to_path_buf(),
                id,
                expected,
                found: pieces[id].clone(),
            });
        }
    }
    Ok(())
}
