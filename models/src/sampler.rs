//! Choosing the next token from logits, as llama2.c run.c's `sample`: greedy (first maximum)
//! at temperature 0; otherwise softmax of `logits / temperature`, then top-p (nucleus)
//! sampling when `0 < top_p < 1`, or plain multinomial sampling when `top_p == 1`. The coin is
//! drawn from a seeded ChaCha20 generator, so a seed fixes the whole sequence.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;

use crate::error::SamplerError;
use crate::reference::{argmax_f32, softmax};

/// A seeded sampler with preallocated scratch space.
#[derive(Debug, Clone)]
pub struct Sampler {
    temperature: f32,
    top_p: f32,
    rng: ChaCha20Rng,
    probs: Vec<f32>,
    /// (probability, index) candidates for top-p.
    candidates: Vec<(f32, u32)>,
}

impl Sampler {
    /// `temperature` must be finite and `>= 0` (0 means greedy); `top_p` must be in `(0, 1]`.
    pub fn new(temperature: f32, top_p: f32, seed: u64) -> Result<Self, SamplerError> {
        if !(temperature.is_finite() && temperature >= 0.0) {
            return Err(SamplerError::Temperature(temperature));
        }
        if !(top_p > 0.0 && top_p <= 1.0) {
            return Err(SamplerError::TopP(top_p));
        }
        Ok(Sampler {
            temperature,
            top_p,
            rng: ChaCha20Rng::seed_from_u64(seed),
            probs: Vec::new(),
            candidates: Vec::new(),
        })
    }

    /// The greedy sampler (temperature 0).
    pub fn greedy() -> Self {
        Sampler {
            temperature: 0.0,
            top_p: 1.0,
            rng: ChaCha20Rng::seed_from_u64(0),
            probs: Vec::new(),
            candidates: Vec::new(),
        }
    }

    /// Whether this sampler always takes the first maximum.
    pub fn is_greedy(&self) -> bool {
        self.temperature == 0.0
    }

    /// The temperature.
    pub fn temperature(&self) -> f32 {
        self.temperature
    }

    /// The top-p threshold.
    pub fn top_p(&self) -> f32 {
        self.top_p
    }

    /// Pick the next token from `logits` (must not be empty).
    pub fn sample(&mut self, logits: &[f32]) -> u32 {
        // Indices fit in u32: vocabularies are at most 2^20 (checkpoint validation).
        if self.is_greedy() || logits.is_empty() {
            return argmax_f32(logits) as u32;
        }
        self.probs.clear();
        self.probs
            .extend(logits.iter().map(|&l| l / self.temperature));
        softmax(&mut self.probs);
        let coin: f32 = self.rng.r#gen();
        if self.top_p >= 1.0 {
            sample_mult(&self.probs, coin)
        } else {
            sample_top_p(&self.probs, self.top_p, coin, &mut self.candidates)
        }
    }
}

/// Inverse-CDF sampling: the first index whose cumulative probability exceeds `coin`.
pub(crate) fn sample_mult(probs: &[f32], coin: f32) -> u32 {
    let mut cdf = 0.0f32;
    for (i, &p) in probs.iter().enumerate() {
        cdf += p;
        if coin < cdf {
            return i as u32;
        }
    }
    probs.len().saturating_sub(1) as u32
}

/// run.c `sample_topp`: drop tokens below `(1 - top_p) / (n - 1)` (they cannot be in the
/// nucleus), sort the rest by descending probability (ties by index), keep the shortest
/// prefix whose mass exceeds `top_p`, and sample within it with `coin` scaled to its mass.
pub(crate) fn sample_top_p(
    probs: &[f32],
    top_p: f32,
    coin: f32,
    candidates: &mut Vec<(f32, u32)>,
) -> u32 {
    let n = probs.len();
    let cutoff = (1.0 - top_p) / (n.max(2) - 1) as f32;
    candidates.clear();
    candidates.extend(
        probs
            .iter()
            .enumerate()
            .filter(|&(_, &p)| p >= cutoff)
            .map(|(i, &p)| (p, i as u32)),
    );
    if candidates.is_empty() {
        return argmax_f32(probs) as u32;
    }
    candidates.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    let mut cumulative = 0.0f32;
    let mut last = candidates.len() - 1;
    for (i, &(p, _)) in candidates.iter().enumerate() {
        cumulative += p;
        if cumulative > top_p {
            last = i;
            break;
        }
    }
    let r = coin * cumulative;
    let mut cdf = 0.0f32;
    for &(p, id) in &candidates[..=last] {
        cdf += p;
        if r < cdf {
            return id;
        }
    }
    candidates[last].1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn logits_for(probs: &[f32]) -> Vec<f32> {
        probs.iter().map(|p| p.ln()).collect()
    }

    #[test]
    fn rejects_bad_parameters() {
        assert_eq!(
            Sampler::new(-0.1, 0.9, 1).unwrap_err(),
            SamplerError::Temperature(-0.1)
        );
        assert!(matches!(
            Sampler::new(f32::NAN, 0.9, 1),
            Err(SamplerError::Temperature(_))
        ));
        assert_eq!(
            Sampler::new(1.0, 0.0, 1).unwrap_err(),
            SamplerError::TopP(0.0)
        );
        assert_eq!(
            Sampler::new(1.0, 1.5, 1).unwrap_err(),
            SamplerError::TopP(1.5)
        );
        assert!(Sampler::new(0.0, 1.0, 1).is_ok());
    }

    #[test]
    fn temperature_zero_is_greedy_first_maximum() {
        let logits = [0.5, 3.0, -1.0, 3.0, 2.9];
        for seed in 0..20 {
            let mut s = Sampler::new(0.0, 0.9, seed).unwrap();
            assert!(s.is_greedy());
            assert_eq!(s.sample(&logits), 1);
        }
        assert_eq!(Sampler::greedy().sample(&logits), 1);
    }

    #[test]
    fn same_seed_same_sequence_different_seed_differs() {
        let logits: Vec<f32> = (0..64).map(|i| ((i * 37) % 11) as f32 * 0.3).collect();
        let run = |seed| {
            let mut s = Sampler::new(1.0, 0.95, seed).unwrap();
            (0..200).map(|_| s.sample(&logits)).collect::<Vec<_>>()
        };
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(8));
    }

    #[test]
    fn top_p_keeps_the_smallest_prefix_exceeding_p() {
        // Sorted mass: 0.5, 0.8, 0.95, 1.0. With p = 0.7 the nucleus is {0, 3} (0.5 + 0.3).
        let probs = [0.5f32, 0.05, 0.15, 0.3];
        let mut cand = Vec::new();
        let mut seen = [0usize; 4];
        for k in 0..1000 {
            let coin = k as f32 / 1000.0;
            seen[sample_top_p(&probs, 0.7, coin, &mut cand) as usize] += 1;
        }
        assert_eq!(seen[1] + seen[2], 0, "{seen:?}");
        // Within the nucleus the split follows the renormalised mass 0.5 : 0.3.
        assert!((seen[0] as f64 / 1000.0 - 0.625).abs() < 0.01, "{seen:?}");
        // With p = 0.9 the third token joins.
        let picked: std::collections::BTreeSet<u32> = (0..1000)
            .map(|k| sample_top_p(&probs, 0.9, k as f32 / 1000.0, &mut cand))
            .collect();
        assert_eq!(picked, [0, 2, 3].into_iter().collect());
    }

    #[test]
    fn top_p_through_the_sampler_never_picks_outside_the_nucleus() {
        let logits = logits_for(&[0.5, 0.05, 0.15, 0.3]);
        let mut s = Sampler::new(1.0, 0.7, 42).unwrap();
        for _ in 0..2000 {
            let t = s.sample(&logits);
            assert!(t == 0 || t == 3, "picked {t}");
        }
    }

    #[test]
    fn plain_multinomial_follows_the_distribution() {
        let logits = logits_for(&[0.25, 0.75]);
        let mut s = Sampler::new(1.0, 1.0, 3).unwrap();
        let ones = (0..10_000).filter(|_| s.sample(&logits) == 1).count();
        assert!((ones as f64 / 10_000.0 - 0.75).abs() < 0.02, "{ones}");
    }

    #[test]
    fn multinomial_edges() {
        assert_eq!(sample_mult(&[0.2, 0.8], 0.0), 0);
        assert_eq!(sample_mult(&[0.2, 0.8], 0.25), 1);
        // Rounding leaves the coin above the total: the last index, as run.c.
        assert_eq!(sample_mult(&[0.2, 0.7], 0.95), 1);
    }
}
