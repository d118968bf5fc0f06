//! Bad input for both loaders: every failure is a typed error that names the file, never a
//! panic, and nothing is allocated from unchecked sizes.

mod common;

use std::path::{Path, PathBuf};

use models::{Checkpoint, LoadError, Model, Tokenizer};
use proptest::prelude::*;

/// A tiny valid checkpoint header: dim 4, hidden 6, 1 layer, 2 heads, 1 KV head, vocab 8,
/// seq_len 4 (negative vocab: unshared classifier).
const TINY: [i32; 7] = [4, 6, 1, 2, 1, 8, 4];

fn header_bytes(header: [i32; 7]) -> Vec<u8> {
    header.iter().flat_map(|v| v.to_le_bytes()).collect()
}

fn checkpoint_bytes(header: [i32; 7]) -> Vec<u8> {
    let [dim, hidden, layers, heads, kv_heads, vocab, seq] =
        header.map(|v| v.unsigned_abs() as usize);
    let kv = dim / heads * kv_heads;
    let hs = dim / heads;
    let mut floats = vocab * dim
        + layers * (2 * dim + 2 * dim * dim + 2 * kv * dim + 3 * dim * hidden)
        + dim
        + seq * hs;
    if header[5] < 0 {
        floats += vocab * dim;
    }
    let mut out: Vec<u8> = header.iter().flat_map(|v| v.to_le_bytes()).collect();
    for i in 0..floats {
        out.extend_from_slice(&(((i % 17) as f32 - 8.0) / 16.0).to_le_bytes());
    }
    out
}

/// A valid tokenizer: specials, the 256 byte pieces, then `extra` pieces.
fn tokenizer_bytes(extra: &[&str], max_len: i32) -> Vec<u8> {
    let mut pieces: Vec<Vec<u8>> =
        vec![b"<unk>".to_vec(), b"\n<s>\n".to_vec(), b"\n</s>\n".to_vec()];
    pieces.extend((0..=255u8).map(|b| format!("<0x{b:02X}>").into_bytes()));
    pieces.extend(extra.iter().map(|p| p.as_bytes().to_vec()));
    let mut out = max_len.to_le_bytes().to_vec();
    for (i, p) in pieces.iter().enumerate() {
        out.extend_from_slice(&(-(i as f32)).to_le_bytes());
        out.extend_from_slice(&(p.len() as i32).to_le_bytes());
        out.extend_from_slice(p);
    }
    out
}

const EXTRA: [&str; 3] = [" ", "a", " a"];
const TOK_VOCAB: usize = 259 + EXTRA.len();

fn write(dir: &tempfile::TempDir, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

fn load_ck(bytes: &[u8]) -> (PathBuf, LoadError, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = write(&dir, "model.bin", bytes);
    let err = Checkpoint::load(&path).expect_err("should be rejected");
    (path, err, dir)
}

fn load_tok(bytes: &[u8], vocab: usize) -> (PathBuf, LoadError, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = write(&dir, "tok.bin", bytes);
    let err = Tokenizer::load(&path, vocab).expect_err("should be rejected");
    (path, err, dir)
}

fn names(err: &LoadError, path: &Path) {
    let msg = err.to_string();
    assert!(
        msg.contains(&path.display().to_string()),
        "message does not name the file: {msg}"
    );
}

#[test]
fn tiny_files_load() {
    let dir = tempfile::tempdir().unwrap();
    for vocab in [8, -8] {
        let mut h = TINY;
        h[5] = vocab;
        let ck = Checkpoint::load(&write(&dir, "m.bin", &checkpoint_bytes(h))).unwrap();
        assert_eq!(ck.config().shared_classifier, vocab > 0);
        assert_eq!(ck.config().kv_dim(), 2);
        assert_eq!(ck.classifier().len(), 8 * 4);
    }
    let tok = Tokenizer::load(
        &write(&dir, "t.bin", &tokenizer_bytes(&EXTRA, 7)),
        TOK_VOCAB,
    )
    .unwrap();
    assert_eq!(tok.encode("aa", true, false), [1, 261, 260]);
}

#[test]
fn missing_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nope.bin");
    let err = Checkpoint::load(&path).unwrap_err();
    assert!(matches!(err, LoadError::MissingFile { .. }), "{err:?}");
    names(&err, &path);
    let err = Tokenizer::load(&path, 512).unwrap_err();
    assert!(matches!(err, LoadError::MissingFile { .. }), "{err:?}");
    let err = Model::load_dir(dir.path()).unwrap_err();
    assert!(matches!(err, LoadError::MissingFile { .. }), "{err:?}");
    assert!(err.to_string().contains("stories260K.bin"));
}

#[test]
fn truncated_checkpoints() {
    let full = checkpoint_bytes(TINY);
    for len in [0, 3, 27, 28, 29, full.len() - 1] {
        let (path, err, _d) = load_ck(&full[..len]);
        assert!(
            matches!(err, LoadError::Truncated { .. }),
            "len {len}: {err:?}"
        );
        names(&err, &path);
    }
}

#[test]
fn checkpoint_with_extra_bytes() {
    let mut bytes = checkpoint_bytes(TINY);
    bytes.extend_from_slice(&[0, 0, 0, 0]);
    let (path, err, _d) = load_ck(&bytes);
    assert!(
        matches!(err, LoadError::ExtraBytes { expected, actual, .. } if actual == expected + 4),
        "{err:?}"
    );
    names(&err, &path);
}

#[test]
fn bad_header_values() {
    let cases: [(usize, i32, &str); 9] = [
        (0, 0, "dim"),
        (0, -64, "dim"),
        (1, -1, "hidden_dim"),
        (2, 0, "n_layers"),
        (4, 0, "n_kv_heads"),
        (5, 0, "vocab_size"),
        (6, -5, "seq_len"),
        (0, 1 << 21, "dim"),
        (5, i32::MIN, "vocab_size"),
    ];
    for (field, value, name) in cases {
        let mut h = TINY;
        h[field] = value;
        // Header errors are found before the size check: the header alone is enough.
        let (path, err, _d) = load_ck(&header_bytes(h));
        assert!(
            matches!(&err, LoadError::BadHeader { field: f, .. } if *f == name),
            "{name} = {value}: {err:?}"
        );
        names(&err, &path);
    }
}

#[test]
fn inconsistent_heads() {
    // dim 6 with 4 heads: not divisible.
    let (path, err, _d) = load_ck(&header_bytes([6, 6, 1, 4, 1, 8, 4]));
    assert!(
        matches!(&err, LoadError::BadHeader { field: "dim", .. }),
        "{err:?}"
    );
    names(&err, &path);
    // 4 heads, 3 KV heads: not a multiple.
    let (_, err, _d) = load_ck(&header_bytes([8, 6, 1, 4, 3, 8, 4]));
    assert!(
        matches!(
            &err,
            LoadError::BadHeader {
                field: "n_kv_heads",
                ..
            }
        ),
        "{err:?}"
    );
    // Odd head size: RoPE rotates pairs.
    let (_, err, _d) = load_ck(&header_bytes([6, 6, 1, 2, 1, 8, 4]));
    assert!(
        matches!(&err, LoadError::BadHeader { field: "dim", .. }),
        "{err:?}"
    );
}

#[test]
fn sizes_beyond_the_caps_are_rejected_before_allocating() {
    // Every field within 2^20, but the implied file is ~2^44 bytes: rejected from the header
    // alone (the file is 28 bytes; nothing is allocated).
    let (path, err, _d) = load_ck(&header_bytes([
        1 << 20,
        1 << 20,
        1 << 20,
        1 << 10,
        1 << 10,
        1 << 20,
        1 << 20,
    ]));
    assert!(matches!(err, LoadError::TooLarge { .. }), "{err:?}");
    names(&err, &path);
    // A KV cache beyond the cap with small weights: seq_len 2^20 * 2^10 layers * kv_dim 2^10.
    let (_, err, _d) = load_ck(&header_bytes([
        1 << 10,
        4,
        1 << 10,
        1 << 8,
        1 << 8,
        8,
        1 << 20,
    ]));
    assert!(matches!(err, LoadError::TooLarge { .. }), "{err:?}");
}

#[test]
fn non_finite_weights() {
    let mut bytes = checkpoint_bytes(TINY);
    let at = 28 + 4 * 5;
    bytes[at..at + 4].copy_from_slice(&f32::NAN.to_le_bytes());
    let (path, err, _d) = load_ck(&bytes);
    assert!(
        matches!(
            err,
            LoadError::NonFinite {
                tensor: "token_embedding",
                index: 5,
                ..
            }
        ),
        "{err:?}"
    );
    names(&err, &path);
}

#[test]
fn garbage_is_rejected() {
    let garbage: Vec<u8> = (0..5000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    // Its first i32 is 863484672: an absurd dim, and an absurd max_token_length.
    let (path, err, _d) = load_ck(&garbage);
    assert!(
        matches!(err, LoadError::BadHeader { field: "dim", .. }),
        "{err:?}"
    );
    names(&err, &path);
    let (path, err, _d) = load_tok(&garbage, 512);
    assert!(
        matches!(
            err,
            LoadError::BadHeader {
                field: "max_token_length",
                ..
            }
        ),
        "{err:?}"
    );
    names(&err, &path);
    // A plausible tokenizer header followed by garbage: the first piece length is absurd.
    let mut tok = 7i32.to_le_bytes().to_vec();
    tok.extend_from_slice(&garbage);
    let (path, err, _d) = load_tok(&tok, 300);
    assert!(
        matches!(err, LoadError::BadPieceLength { id: 0, .. }),
        "{err:?}"
    );
    names(&err, &path);
}

#[test]
fn real_files_reject_extra_and_missing_bytes() {
    let dir = common::model_dir();
    let (ck, tok) = Model::files(&dir);
    let ck_bytes = std::fs::read(&ck).unwrap();
    let tok_bytes = std::fs::read(&tok).unwrap();
    let mut longer = ck_bytes.clone();
    longer.push(0);
    assert!(matches!(load_ck(&longer).1, LoadError::ExtraBytes { .. }));
    assert!(matches!(
        load_ck(&ck_bytes[..ck_bytes.len() - 4]).1,
        LoadError::Truncated { .. }
    ));
    let mut longer = tok_bytes.clone();
    longer.push(b'x');
    assert!(matches!(
        load_tok(&longer, 512).1,
        LoadError::ExtraBytes { .. }
    ));
    assert!(matches!(
        load_tok(&tok_bytes[..tok_bytes.len() - 1], 512).1,
        LoadError::Truncated { .. }
    ));
    // The checkpoint's vocabulary is 512; asking for fewer tokens leaves extra bytes.
    assert!(matches!(
        load_tok(&tok_bytes, 511).1,
        LoadError::ExtraBytes { .. }
    ));
}

#[test]
fn truncated_tokenizers() {
    let full = tokenizer_bytes(&EXTRA, 7);
    for len in [0, 3, 4, 11, full.len() - 1] {
        let (path, err, _d) = load_tok(&full[..len], TOK_VOCAB);
        assert!(
            matches!(err, LoadError::Truncated { .. }),
            "len {len}: {err:?}"
        );
        names(&err, &path);
    }
}

#[test]
fn tokenizer_with_extra_bytes() {
    let mut bytes = tokenizer_bytes(&EXTRA, 7);
    bytes.push(0);
    let (path, err, _d) = load_tok(&bytes, TOK_VOCAB);
    assert!(matches!(err, LoadError::ExtraBytes { .. }), "{err:?}");
    names(&err, &path);
}

#[test]
fn non_utf8_piece() {
    let mut bytes = tokenizer_bytes(&EXTRA, 7);
    // The last piece is " a": make its last byte invalid UTF-8.
    let n = bytes.len();
    bytes[n - 1] = 0xFF;
    let (path, err, _d) = load_tok(&bytes, TOK_VOCAB);
    assert!(
        matches!(err, LoadError::NonUtf8Piece { id, .. } if id == TOK_VOCAB - 1),
        "{err:?}"
    );
    names(&err, &path);
}

#[test]
fn piece_lengths() {
    // "\n</s>\n" (id 2) is 6 bytes: a max_token_length of 5 rejects it.
    let (path, err, _d) = load_tok(&tokenizer_bytes(&EXTRA, 5), TOK_VOCAB);
    assert!(
        matches!(err, LoadError::BadPieceLength { id: 2, len: 6, .. }),
        "{err:?}"
    );
    names(&err, &path);
    // A negative length.
    let mut bytes = tokenizer_bytes(&EXTRA, 7);
    bytes[8..12].copy_from_slice(&(-1i32).to_le_bytes());
    let (_, err, _d) = load_tok(&bytes, TOK_VOCAB);
    assert!(
        matches!(err, LoadError::BadPieceLength { id: 0, len: -1, .. }),
        "{err:?}"
    );
    // A length that runs past the end of the file.
    let mut bytes = tokenizer_bytes(&[" "], 7);
    let n = bytes.len();
    bytes[n - 5..n - 1].copy_from_slice(&7i32.to_le_bytes());
    let (_, err, _d) = load_tok(&bytes, 260);
    assert!(matches!(err, LoadError::Truncated { .. }), "{err:?}");
}

#[test]
fn bad_tokenizer_headers() {
    for max in [0, -3, 1 << 20] {
        let (path, err, _d) = load_tok(&tokenizer_bytes(&EXTRA, max), TOK_VOCAB);
        assert!(
            matches!(
                err,
                LoadError::BadHeader {
                    field: "max_token_length",
                    ..
                }
            ),
            "{err:?}"
        );
        names(&err, &path);
    }
    // Too small a vocabulary for the byte fallback.
    let (_, err, _d) = load_tok(&tokenizer_bytes(&[], 7)[..100], 100);
    assert!(
        matches!(
            err,
            LoadError::BadHeader {
                field: "vocab_size",
                ..
            }
        ),
        "{err:?}"
    );
    // A vocabulary far larger than the file can hold is rejected before allocating.
    let (_, err, _d) = load_tok(&tokenizer_bytes(&EXTRA, 7), usize::MAX / 2);
    assert!(matches!(err, LoadError::Truncated { .. }), "{err:?}");
}

#[test]
fn byte_fallback_pieces_are_required() {
    let mut bytes = tokenizer_bytes(&EXTRA, 7);
    // Token 3 is "<0x00>" at offset 4 + 3 tokens; rename it "<0x0G>".
    let start = 4 + (8 + 5) + (8 + 5) + (8 + 6) + 8;
    assert_eq!(&bytes[start..start + 6], b"<0x00>");
    bytes[start + 4] = b'G';
    let (path, err, _d) = load_tok(&bytes, TOK_VOCAB);
    assert!(
        matches!(err, LoadError::ByteFallback { id: 3, .. }),
        "{err:?}"
    );
    names(&err, &path);
}

#[test]
fn vocab_mismatch_between_files() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = TINY;
    h[5] = 300;
    let ck = write(&dir, "m.bin", &checkpoint_bytes(h));
    let tok = write(&dir, "t.bin", &tokenizer_bytes(&EXTRA, 7));
    // The tokenizer holds 262 tokens; read as 300 it runs out of bytes.
    let err = Model::load(&ck, &tok).unwrap_err();
    assert!(matches!(err, LoadError::Truncated { .. }), "{err:?}");
    names(&err, &tok);
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let p = Path::new("fuzz.bin");
        let _ = Checkpoint::from_bytes(&bytes, p);
        let _ = Tokenizer::from_bytes(&bytes, 259, p);
        let _ = Tokenizer::from_bytes(&bytes, 512, p);
    }

    #[test]
    fn valid_header_with_arbitrary_body_never_panics(
        header in proptest::array::uniform7(-4i32..70),
        body in proptest::collection::vec(any::<u8>(), 0..4096),
    ) {
        let mut bytes: Vec<u8> = header.iter().flat_map(|v| v.to_le_bytes()).collect();
        bytes.extend_from_slice(&body);
        let _ = Checkpoint::from_bytes(&bytes, Path::new("fuzz.bin"));
    }

    #[test]
    fn mutated_tokenizer_never_panics(at in 0usize..2600, byte in any::<u8>(), cut in 0usize..2600) {
        let mut bytes = tokenizer_bytes(&EXTRA, 7);
        let at = at % bytes.len();
        bytes[at] = byte;
        bytes.truncate(bytes.len() - cut % bytes.len());
        let _ = Tokenizer::from_bytes(&bytes, TOK_VOCAB, Path::new("fuzz.bin"));
    }

    #[test]
    fn files_on_disk_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let dir = tempfile::tempdir().unwrap();
        let path = write(&dir, "f.bin", &bytes);
        let _ = Checkpoint::load(&path);
        let _ = Tokenizer::load(&path, 300);
    }
}
