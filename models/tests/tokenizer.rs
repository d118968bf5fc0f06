//! The real tok512 tokenizer: run.c encode (dummy prefix, byte fallback, greedy merges),
//! decode rules and streaming of byte-fallback UTF-8.

mod common;

use common::*;
use models::{BOS, EOS, TokenError, Utf8Stream};
use proptest::prelude::*;

#[test]
fn encodes_the_provenance_prompt() {
    let tok = load_model().tokenizer;
    assert_eq!(tok.encode(PROMPT, true, false), PROMPT_IDS);
    assert_eq!(
        tok.encode(PROMPT, false, true),
        [&PROMPT_IDS[1..], &[EOS]].concat()
    );
}

#[test]
fn empty_string_is_just_the_specials() {
    let tok = load_model().tokenizer;
    assert_eq!(tok.encode("", true, false), [BOS]);
    assert_eq!(tok.encode("", true, true), [BOS, EOS]);
    assert!(tok.encode("", false, false).is_empty());
    assert_eq!(tok.decode(&[BOS]).unwrap(), "");
}

#[test]
fn non_ascii_falls_back_to_bytes() {
    let tok = load_model().tokenizer;
    // tok512 has no piece for "è" or "🙂": their UTF-8 bytes become byte tokens (id = byte + 3).
    let ids = tok.encode("è", true, false);
    assert!(ids.ends_with(&[3 + 0xC3, 3 + 0xA8]), "{ids:?}");
    let ids = tok.encode("🙂", true, false);
    assert!(
        ids.ends_with(&[3 + 0xF0, 3 + 0x9F, 3 + 0x99, 3 + 0x82]),
        "{ids:?}"
    );
    for id in [3 + 0xC3, 3 + 0xF0] {
        assert!(tok.piece(id).unwrap().starts_with("<0x"));
    }
    // "é" is one of tok512's few non-ASCII pieces: no fallback, one token.
    let e = tok.id_of("é").unwrap();
    assert_eq!(
        tok.encode("é", true, false),
        [1, tok.id_of(" ").unwrap(), e]
    );
    assert_eq!(tok.decode(&tok.encode("éè", true, false)).unwrap(), "éè");
}

#[test]
fn round_trips() {
    let tok = load_model().tokenizer;
    for text in [
        "Once upon a time",
        "é",
        "è",
        "naïve café",
        "🙂 smile 🙂",
        "日本語",
        "a\tb\nc",
        " leading space",
        "trailing space ",
        "Lily's mom said, \"Hi!\"",
        "",
    ] {
        let ids = tok.encode(text, true, false);
        assert_eq!(tok.decode(&ids).unwrap(), text, "ids {ids:?}");
    }
}

#[test]
fn decode_follows_run_c() {
    let tok = load_model().tokenizer;
    let once = tok.id_of(" Once").unwrap();
    assert_eq!(once, 403);
    // After BOS the leading space goes; elsewhere it stays.
    assert_eq!(tok.decode_piece(BOS, once).unwrap(), b"Once");
    assert_eq!(tok.decode_piece(once, once).unwrap(), b" Once");
    // <0x0A> is a newline; a non-printing control byte prints nothing (run.c safe_printf).
    assert_eq!(tok.decode_piece(once, 3 + 0x0A).unwrap(), b"\n");
    assert_eq!(tok.decode_piece(once, 3 + 0x07).unwrap(), b"");
    // Bytes >= 0x80 are returned raw for the UTF-8 stream.
    assert_eq!(tok.decode_piece(once, 3 + 0xC3).unwrap(), &[0xC3]);
    let size = tok.vocab_size();
    assert_eq!(
        tok.decode_piece(BOS, size as u32),
        Err(TokenError::UnknownId {
            id: size as u32,
            vocab_size: size
        })
    );
}

#[test]
fn streaming_emits_a_split_character_only_when_complete() {
    let tok = load_model().tokenizer;
    let ids = tok.encode("🙂", false, false);
    let mut stream = Utf8Stream::new();
    let mut out = String::new();
    let mut prev = BOS;
    for (i, &id) in ids.iter().enumerate() {
        stream.push(tok.decode_piece(prev, id).unwrap(), &mut out);
        prev = id;
        if i + 1 < ids.len() {
            assert!(!out.contains('🙂'), "emitted early: {out:?}");
        }
    }
    assert!(!stream.has_pending());
    assert_eq!(out, "🙂");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    /// Printable text (run.c drops non-printing control bytes, so they cannot round-trip).
    #[test]
    fn printable_text_round_trips(text in "[\\PC\t\n]{0,24}") {
        let tok = load_model().tokenizer;
        let ids = tok.encode(&text, true, false);
        prop_assert_eq!(tok.decode(&ids).unwrap(), text);
    }
}
