//! A small streaming UTF-8 decoder: generated tokens arrive as byte pieces, and a multi-byte
//! character may be split across byte-fallback tokens. [`Utf8Stream`] buffers an incomplete
//! sequence until it completes and replaces invalid bytes with U+FFFD, so what it emits is
//! always valid UTF-8.

/// Incremental bytes-to-text decoder (see the module doc).
#[derive(Debug, Default, Clone)]
pub struct Utf8Stream {
    /// Bytes not yet emitted: an incomplete sequence (at most 3 bytes) between calls.
    pending: Vec<u8>,
}

impl Utf8Stream {
    /// A decoder with nothing pending.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feed `bytes`; append every character they complete to `out`.
    pub fn push(&mut self, bytes: &[u8], out: &mut String) {
        self.pending.extend_from_slice(bytes);
        let mut start = 0;
        loop {
            let rest = &self.pending[start..];
            match std::str::from_utf8(rest) {
                Ok(s) => {
                    out.push_str(s);
                    start = self.pending.len();
                    break;
                }
                Err(e) => {
                    let valid = e.valid_up_to();
                    // `rest[..valid]` is valid UTF-8 by the error's own report.
                    if let Ok(s) = std::str::from_utf8(&rest[..valid]) {
                        out.push_str(s);
                    }
                    match e.error_len() {
                        Some(bad) => {
                            out.push(char::REPLACEMENT_CHARACTER);
                            start += valid + bad;
                        }
                        None => {
                            // An incomplete sequence at the end: keep it for the next call.
                            start += valid;
                            break;
                        }
                    }
                }
            }
        }
        self.pending.drain(..start);
    }

    /// End of stream: an incomplete sequence left over becomes U+FFFD.
    pub fn finish(&mut self, out: &mut String) {
        if !self.pending.is_empty() {
            out.push(char::REPLACEMENT_CHARACTER);
            self.pending.clear();
        }
    }

    /// Whether an incomplete sequence is buffered.
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(chunks: &[&[u8]]) -> String {
        let mut s = Utf8Stream::new();
        let mut out = String::new();
        for c in chunks {
            s.push(c, &mut out);
        }
        s.finish(&mut out);
        out
    }

    #[test]
    fn split_multibyte_characters_are_joined() {
        let e = "é".as_bytes();
        let emoji = "🙂".as_bytes();
        assert_eq!(feed(&[b"a", &e[..1], &e[1..], b"b"]), "aéb");
        assert_eq!(
            feed(&[&emoji[..1], &emoji[1..2], &emoji[2..3], &emoji[3..]]),
            "🙂"
        );
    }

    #[test]
    fn nothing_is_emitted_for_an_incomplete_sequence() {
        let mut s = Utf8Stream::new();
        let mut out = String::new();
        s.push(&"€".as_bytes()[..2], &mut out);
        assert_eq!(out, "");
        assert!(s.has_pending());
        s.push(&"€".as_bytes()[2..], &mut out);
        assert_eq!(out, "€");
        assert!(!s.has_pending());
    }

    #[test]
    fn invalid_bytes_become_replacement_characters() {
        assert_eq!(feed(&[b"a\xffb"]), "a\u{FFFD}b");
        // A lead byte followed by a non-continuation byte.
        assert_eq!(feed(&[b"\xc3", b"x"]), "\u{FFFD}x");
        // Truncated at the end of the stream.
        assert_eq!(feed(&[b"ok\xe2\x82"]), "ok\u{FFFD}");
    }
}
