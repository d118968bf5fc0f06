//! The generation loop of llama2.c run.c's `generate`, shared by the CLI, tests and benches:
//! feed the prompt one position at a time (forcing the next prompt token), then sample; stop
//! after `steps` positions or when BOS is produced.

use crate::engine::Engine;
use crate::error::EngineError;
use crate::sampler::Sampler;
use crate::tokenizer::BOS;

/// One token chosen for position `pos + 1`, reported as soon as it is known.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct TokenEvent {
    /// The position whose forward pass produced (or was followed by) this token.
    pub pos: usize,
    /// The token before it (decode needs it: a piece right after BOS loses its leading space).
    pub prev: u32,
    /// The token.
    pub token: u32,
    /// Whether it was forced from the prompt rather than sampled.
    pub from_prompt: bool,
}

/// What a [`generate`] call did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct GenerationSummary {
    /// Forward passes run.
    pub positions: usize,
    /// Tokens sampled (not forced from the prompt).
    pub sampled: usize,
    /// Whether generation stopped because BOS was produced.
    pub stopped_on_bos: bool,
}

/// Run `steps` positions (capped at the model's `seq_len`) from `prompt` (which must hold at
/// least one token, normally BOS), calling `on_token` for every token after the first. Greedy
/// samplers use the engine's own [`Engine::argmax`]; others sample the f32 logits.
///
/// As in run.c, `steps` counts positions including the prompt's, and a prompt longer than
/// `steps` is cut.
pub fn generate<E, F>(
    engine: &mut dyn Engine,
    sampler: &mut Sampler,
    prompt: &[u32],
    steps: usize,
    mut on_token: F,
) -> Result<GenerationSummary, E>
where
    E: From<EngineError>,
    F: FnMut(TokenEvent) -> Result<(), E>,
{
    let Some(&first) = prompt.first() else {
        return Err(EngineError::EmptyPrompt.into());
    };
    let steps = steps.min(engine.config().seq_len);
    engine.reset();
    let mut summary = GenerationSummary {
        positions: 0,
        sampled: 0,
        stopped_on_bos: false,
    };
    let mut token = first;
    let mut pos = 0;
    while pos < steps {
        engine.forward(token, pos)?;
        summary.positions += 1;
        let from_prompt = pos + 1 < prompt.len();
        let next = if from_prompt {
            prompt[pos + 1]
        } else if sampler.is_greedy() {
            engine.argmax()
        } else {
            sampler.sample(engine.logits())
        };
        if !from_prompt {
            summary.sampled += 1;
        }
        if next == BOS {
            summary.stopped_on_bos = true;
            break;
        }
        on_token(TokenEvent {
            pos,
            prev: token,
            token: next,
            from_prompt,
        })?;
        token = next;
        pos += 1;
    }
    Ok(summary)
}
