//! Streams a private answer to stdout as tokens arrive: the prompt as the user typed it, then
//! each token's text, stopping at BOS (as run.c does).

use std::io::{StdoutLock, Write};

use models::{BOS, Tokenizer, Utf8Stream};
use node::session::ClientToken;

pub(crate) struct TextOut<'a> {
    out: StdoutLock<'static>,
    tokenizer: &'a Tokenizer,
    text: Utf8Stream,
    buf: String,
    prev: u32,
    stopped: bool,
    /// Every step's logits, when the session reveals them.
    pub(crate) logits: Vec<Vec<f32>>,
}

impl<'a> TextOut<'a> {
    /// Starts the answer with `prompt` (whose last token is `prompt_ids`' last).
    pub(crate) fn start(
        tokenizer: &'a Tokenizer,
        prompt: &str,
        prompt_ids: &[u32],
    ) -> std::io::Result<Self> {
        let mut out = std::io::stdout().lock();
        write!(out, "{prompt}")?;
        out.flush()?;
        Ok(TextOut {
            out,
            tokenizer,
            text: Utf8Stream::new(),
            buf: String::new(),
            prev: *prompt_ids.last().unwrap_or(&BOS),
            stopped: false,
            logits: Vec::new(),
        })
    }

    pub(crate) fn token(&mut self, tok: &ClientToken) {
        if let Some(l) = &tok.logits {
            self.logits.push(l.clone());
        }
        if self.stopped || tok.id == BOS {
            self.stopped = true;
            return;
        }
        if let Ok(bytes) = self.tokenizer.decode_piece(self.prev, tok.id) {
            self.buf.clear();
            self.text.push(bytes, &mut self.buf);
            // A reader that went away (`| head`) is not the generation's problem.
            let _ = write!(self.out, "{}", self.buf);
            let _ = self.out.flush();
        }
        self.prev = tok.id;
    }

    /// Ends the line.
    pub(crate) fn finish(mut self) -> std::io::Result<Vec<Vec<f32>>> {
        self.buf.clear();
        self.text.finish(&mut self.buf);
        writeln!(self.out, "{}", self.buf)?;
        Ok(self.logits)
    }
}
