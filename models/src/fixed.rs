//! The plaintext fixed-point twin of the secure engine.
//!
//! Every number is a `mesh::fx` fixed-point integer and every operation is a `mesh::fx`
//! function or one of the steps MPC can do: a local linear operation, a product of two secret
//! values followed by exactly one truncation (`fx::trunc` of an i128), or a comparison. The
//! forward pass itself is [`crate::forward::forward`], shared with the secure engine; this
//! module is its plaintext backend; `docs/numerics.md`
//! describes the structure and its measured error.
//!
//! Folding ([`FixedWeights`]): RMSNorm gains are multiplied into the columns of the matrix that
//! consumes the normalised vector (`W' = W diag(g)`), and `1/sqrt(head_size)` into `wq`, so a
//! normalised projection is `rms_inv(x) * (W' x)`: one exact wide dot product, one truncation
//! to the activation format, one scale by the HI-format inverse RMS.
//!
//! The engine also checks that every value stays inside the domain the `mesh::fx`
//! approximations are designed for and returns [`EngineError::OutOfDomain`] otherwise, and it
//! records the observed ranges ([`FixedStats`]).

use std::fmt;
use std::sync::Arc;

use mesh::fx;

use crate::checkpoint::{Checkpoint, Config};
use crate::engine::{Engine, EngineKind, check_step};
use crate::error::EngineError;
use crate::forward::{self, Checked, FxBackend, Heads, Matrix, RMS_EPS};
/// Largest magnitude of a folded weight (real units): products with activations below
/// [`ACTIVATION_LIMIT_RAW`] then stay far inside i128.
const WEIGHT_LIMIT: f64 = 32768.0;
/// Activations that are compared (residual, scores, SiLU inputs, logits) stay below 2^30 raw
/// (16384.0), so the difference of two of them is inside `fx::ltz`'s exact range
/// (`|x| < 2^(CMP_BITS - 1)`).
const ACTIVATION_LIMIT_RAW: i64 = 1 << (fx::CMP_BITS - 2);

/// SiLU inputs must stay below 12 in magnitude: beyond ~12.3 the secure engine's powers of
/// `x^2/64` exceed `fx::TRUNC_BITS`, and their masked openings would stop hiding them
/// (`fx::silu`'s doc).
const SILU_LIMIT_RAW: i64 = 12 << fx::FRAC_BITS;

/// A checkpoint converted once to the activation format, with the gains folded in (see the
/// module doc). The embedding table stays unfolded for the lookup.
#[derive(Clone)]
pub struct FixedWeights {
    config: Config,
    embedding: Vec<i64>,
    /// `wq diag(g_att) / sqrt(head_size)`, `[layers, dim, dim]`.
    wq: Vec<i64>,
    /// `wk diag(g_att)`, `[layers, kv_dim, dim]`.
    wk: Vec<i64>,
    /// `wv diag(g_att)`, `[layers, kv_dim, dim]`.
    wv: Vec<i64>,
    wo: Vec<i64>,
    /// `w1 diag(g_ffn)`, `[layers, hidden, dim]`.
    w1: Vec<i64>,
    w2: Vec<i64>,
    /// `w3 diag(g_ffn)`, `[layers, hidden, dim]`.
    w3: Vec<i64>,
    /// `classifier diag(g_final)`, `[vocab, dim]`.
    classifier: Vec<i64>,
}

impl fmt::Debug for FixedWeights {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FixedWeights")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// `W diag(gain) * scale` for each layer's `[rows, cols]` matrix, rounded to the activation
/// format (the product is formed in f64, then rounded once by `fx::from_f64`).
fn fold(
    name: &'static str,
    w: &[f32],
    gains: Option<&[f32]>,
    cols: usize,
    layer_len: usize,
    scale: f64,
) -> Result<Vec<i64>, EngineError> {
    let mut out = Vec::with_capacity(w.len());
    for (index, &v) in w.iter().enumerate() {
        let g = match gains {
            Some(g) => f64::from(g[(index / layer_len) * cols + index % cols]),
            None => 1.0,
        };
        let folded = f64::from(v) * g * scale;
        if folded.abs() >= WEIGHT_LIMIT {
            return Err(EngineError::WeightOutOfRange {
                tensor: name,
                index,
                value: folded,
                limit: WEIGHT_LIMIT,
            });
        }
        out.push(fx::from_f64(folded, fx::FRAC_BITS));
    }
    Ok(out)
}

impl FixedWeights {
    /// Convert and fold a checkpoint.
    pub fn from_checkpoint(ck: &Checkpoint) -> Result<Self, EngineError> {
        let c = *ck.config();
        let (dim, hidden, kv) = (c.dim, c.hidden_dim, c.kv_dim());
        let q_scale = 1.0 / (c.head_size() as f64).sqrt();
        let g_att = Some(&ck.rms_att[..]);
        let g_ffn = Some(&ck.rms_ffn[..]);
        Ok(FixedWeights {
            config: c,
            embedding: fold("token_embedding", &ck.token_embedding, None, dim, dim, 1.0)?,
            wq: fold("wq'", &ck.wq, g_att, dim, dim * dim, q_scale)?,
            wk: fold("wk'", &ck.wk, g_att, dim, kv * dim, 1.0)?,
            wv: fold("wv'", &ck.wv, g_att, dim, kv * dim, 1.0)?,
            wo: fold("wo", &ck.wo, None, dim, dim * dim, 1.0)?,
            w1: fold("w1'", &ck.w1, g_ffn, dim, hidden * dim, 1.0)?,
            w2: fold("w2", &ck.w2, None, hidden, dim * hidden, 1.0)?,
            w3: fold("w3'", &ck.w3, g_ffn, dim, hidden * dim, 1.0)?,
            // One "layer" spanning the whole matrix: the final gain applies to every row.
            classifier: fold(
                "classifier'",
                ck.classifier(),
                Some(&ck.rms_final[..]),
                dim,
                c.vocab_size * dim,
                1.0,
            )?,
        })
    }

    /// The hyper-parameters.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Every tensor with its name, in the order `embedding, wq, wk, wv, wo, w1, w2, w3,
    /// classifier` (the folded ones are `wq, wk, wv, w1, w3, classifier`; the share files of
    /// `crate::secure` store them in this order).
    pub fn tensors(&self) -> [(&'static str, &[i64]); 9] {
        [
            ("embedding", &self.embedding),
            ("wq", &self.wq),
            ("wk", &self.wk),
            ("wv", &self.wv),
            ("wo", &self.wo),
            ("w1", &self.w1),
            ("w2", &self.w2),
            ("w3", &self.w3),
            ("classifier", &self.classifier),
        ]
    }
}

/// Ranges observed by a [`FixedEngine`] since it was built (or since [`FixedEngine::clear_stats`]),
/// in real units; they show how far each value is from the edge of its design domain.
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub struct FixedStats {
    /// Largest `|x|` of the residual stream.
    pub max_abs_residual: f64,
    /// Smallest `mean(x^2) + eps` fed to `rsqrt` (domain starts at 2^-10).
    pub min_mean_square: f64,
    /// Largest `mean(x^2) + eps` fed to `rsqrt` (domain ends below 2^10).
    pub max_mean_square: f64,
    /// Most negative input of `exp` (domain starts at -1024).
    pub min_exp_input: f64,
    /// Largest softmax denominator fed to `reciprocal` (domain ends below 2^14).
    pub max_softmax_sum: f64,
    /// Largest `|score|` (scores are compared by `max`).
    pub max_abs_score: f64,
    /// Largest `|SiLU input|`.
    pub max_abs_silu_input: f64,
    /// Largest `|logit|`.
    pub max_abs_logit: f64,
    /// `log2` of the largest `|v|` that this engine passed to `fx::trunc` itself (dot
    /// products, scalings, RoPE); `mesh::fx::TRUNC_BITS - 1` is the limit.
    pub max_trunc_input_log2: f64,
}

impl Default for FixedStats {
    fn default() -> Self {
        FixedStats {
            max_abs_residual: 0.0,
            min_mean_square: f64::INFINITY,
            max_mean_square: 0.0,
            min_exp_input: 0.0,
            max_softmax_sum: 0.0,
            max_abs_score: 0.0,
            max_abs_silu_input: 0.0,
            max_abs_logit: 0.0,
            max_trunc_input_log2: 0.0,
        }
    }
}

impl fmt::Display for FixedStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "max|residual| {:.3}, mean(x^2)+eps in [{:.3e}, {:.3}], min exp input {:.3}, \
             max softmax sum {:.3}, max|score| {:.3}, max|silu input| {:.3}, max|logit| {:.3}, \
             largest truncation input 2^{:.1}",
            self.max_abs_residual,
            self.min_mean_square,
            self.max_mean_square,
            self.min_exp_input,
            self.max_softmax_sum,
            self.max_abs_score,
            self.max_abs_silu_input,
            self.max_abs_logit,
            self.max_trunc_input_log2,
        )
    }
}

/// Raw-unit trackers behind [`FixedStats`] (integer compares in the hot loops).
#[derive(Clone, Copy, Debug, Default)]
struct RawStats {
    max_abs_residual: i64,
    min_mean_square: Option<i64>,
    max_mean_square: i64,
    min_exp_input: i64,
    max_softmax_sum: i64,
    max_abs_score: i64,
    max_abs_silu_input: i64,
    max_abs_logit: i64,
    max_trunc_input: u128,
}

impl RawStats {
    fn to_stats(self) -> FixedStats {
        let f = |raw: i64| fx::to_f64(raw, fx::FRAC_BITS);
        FixedStats {
            max_abs_residual: f(self.max_abs_residual),
            min_mean_square: self.min_mean_square.map_or(f64::INFINITY, f),
            max_mean_square: f(self.max_mean_square),
            min_exp_input: f(self.min_exp_input),
            max_softmax_sum: f(self.max_softmax_sum),
            max_abs_score: f(self.max_abs_score),
            max_abs_silu_input: f(self.max_abs_silu_input),
            max_abs_logit: f(self.max_abs_logit),
            max_trunc_input_log2: (self.max_trunc_input as f64).log2().max(0.0),
        }
    }

    #[inline]
    fn wide(&mut self, v: i128) {
        self.max_trunc_input = self.max_trunc_input.max(v.unsigned_abs());
    }
}

/// The KV cache of a [`FixedEngine`].
#[derive(Clone)]
struct FixedCache {
    /// `[layers, seq_len, kv_dim]`.
    k: Vec<i64>,
    /// Transposed `[layers, kv_dim, seq_len]` so each output's column over `t` is contiguous.
    v: Vec<i64>,
}

/// Fixed-point engine: shared folded weights plus this engine's KV cache and logits.
pub struct FixedEngine {
    w: Arc<FixedWeights>,
    config: Config,
    cache: FixedCache,
    logits_raw: Vec<i64>,
    logits: Vec<f32>,
    filled: usize,
    stats: RawStats,
}

impl fmt::Debug for FixedEngine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FixedEngine")
            .field("config", &self.config)
            .field("filled", &self.filled)
            .finish_non_exhaustive()
    }
}

impl FixedEngine {
    /// An engine with an empty cache.
    pub fn new(w: Arc<FixedWeights>) -> Result<Self, EngineError> {
        let c = w.config;
        // The softmax denominator is at most seq_len (each term <= 1.0) and must stay inside
        // the reciprocal's domain.
        if c.seq_len >= 1 << fx::RECIP_MAX_LOG2 {
            return Err(EngineError::Unsupported {
                reason: format!(
                    "seq_len {} is not below 2^{} (the reciprocal's domain)",
                    c.seq_len,
                    fx::RECIP_MAX_LOG2
                ),
            });
        }
        let cache = c.n_layers * c.seq_len * c.kv_dim();
        Ok(FixedEngine {
            config: c,
            cache: FixedCache {
                k: vec![0; cache],
                v: vec![0; cache],
            },
            logits_raw: vec![0; c.vocab_size],
            logits: vec![0.0; c.vocab_size],
            filled: 0,
            stats: RawStats::default(),
            w,
        })
    }

    /// The logits of the last forward pass in the activation format.
    pub fn logits_raw(&self) -> &[i64] {
        &self.logits_raw
    }

    /// Ranges observed so far.
    pub fn stats(&self) -> FixedStats {
        self.stats.to_stats()
    }

    /// Start recording ranges afresh.
    pub fn clear_stats(&mut self) {
        self.stats = RawStats::default();
    }
}

impl Engine for FixedEngine {
    fn config(&self) -> &Config {
        &self.config
    }

    fn forward(&mut self, token: u32, pos: usize) -> Result<&[f32], EngineError> {
        check_step(&self.config, token, pos, self.filled)?;
        // Any error below leaves the cache at `pos` half-written: only positions < pos stay
        // valid.
        self.filled = pos;
        let mut pass = FixedPass {
            w: &self.w,
            cache: &mut self.cache,
            stats: &mut self.stats,
        };
        let logits = forward::forward(&mut pass, &token, pos, true)?.ok_or_else(|| {
            EngineError::Unsupported {
                reason: "the forward pass returned no logits".into(),
            }
        })?;
        self.logits_raw = logits;
        for (f, &r) in self.logits.iter_mut().zip(&self.logits_raw) {
            *f = fx::to_f32(r);
        }
        self.filled = pos + 1;
        Ok(&self.logits)
    }

    fn logits(&self) -> &[f32] {
        &self.logits
    }

    fn argmax(&self) -> u32 {
        // vocab_size <= 2^20 (checkpoint validation), so the index fits in u32.
        fx::argmax(&self.logits_raw) as u32
    }

    fn reset(&mut self) {
        self.filled = 0;
    }

    fn kind(&self) -> EngineKind {
        EngineKind::Fixed
    }
}

/// The plaintext backend of one forward pass: integers, every `mesh::fx` step with its domain
/// check, and every wide value that is truncated recorded in the statistics.
struct FixedPass<'a> {
    w: &'a FixedWeights,
    cache: &'a mut FixedCache,
    stats: &'a mut RawStats,
}

/// `fx::dot` written as its definition (`trunc(dot_wide, FRAC_BITS)`) so the wide sum can be
/// recorded.
#[inline]
fn dot(a: &[i64], b: &[i64], stats: &mut RawStats) -> i64 {
    let wide = fx::dot_wide(a, b);
    stats.wide(wide);
    fx::trunc(wide, fx::FRAC_BITS)
}

/// `fx::scale_hi` with the product recorded.
#[inline]
fn scale_hi(x: i64, factor_hi: i64, stats: &mut RawStats) -> i64 {
    stats.wide(i128::from(x) * i128::from(factor_hi));
    fx::scale_hi(x, factor_hi)
}

fn out_of_domain(what: &'static str, raw: i64, domain: &'static str) -> EngineError {
    EngineError::OutOfDomain {
        what,
        value: fx::to_f64(raw, fx::FRAC_BITS),
        domain,
    }
}

/// Check a compared activation vector against [`ACTIVATION_LIMIT_RAW`]; return its max `|v|`.
#[inline]
fn check_activations(xs: &[i64], what: &'static str) -> Result<i64, EngineError> {
    let mut m = 0;
    for &v in xs {
        let a = v.saturating_abs();
        if a >= ACTIVATION_LIMIT_RAW {
            return Err(out_of_domain(what, v, "(-16384, 16384)"));
        }
        m = m.max(a);
    }
    Ok(m)
}

/// RoPE fused with the inverse-RMS scale, one truncation per output: for the pair
/// `(a, b) = (h[2i], h[2i+1])` with public `(cos, sin)` in the activation format,
/// `out[2i] = trunc((a inv) cos - (b inv) sin, 48)` and
/// `out[2i+1] = trunc((a inv) sin + (b inv) cos, 48)`; `a inv` is exact (i128).
/// `h` may be shorter than the RoPE table (keys: `kv_dim`); pairs start at element 0 of each
/// head, as the table's index `i` covers element `2i` of the full query vector.
#[inline]
fn rotate_scaled(out: &mut Vec<i64>, h: &[i64], inv: i64, rope: &[(i64, i64)], st: &mut RawStats) {
    let shift = fx::HI_FRAC_BITS + fx::FRAC_BITS;
    for (p, &(cos, sin)) in h.chunks_exact(2).zip(rope) {
        let a = i128::from(p[0]) * i128::from(inv);
        let b = i128::from(p[1]) * i128::from(inv);
        let (cos, sin) = (i128::from(cos), i128::from(sin));
        let re = a * cos - b * sin;
        let im = a * sin + b * cos;
        st.wide(re);
        st.wide(im);
        out.push(fx::trunc(re, shift));
        out.push(fx::trunc(im, shift));
    }
}

/// Layer `l` of a per-layer stack of `len`-element matrices.
fn layer(v: &[i64], l: usize, len: usize) -> &[i64] {
    &v[l * len..(l + 1) * len]
}

/// The row blocks of `m`, stacked in the order [`Matrix`] documents.
fn blocks(w: &FixedWeights, m: Matrix) -> Vec<&[i64]> {
    let c = &w.config;
    let (dim, hidden, kv) = (c.dim, c.hidden_dim, c.kv_dim());
    match m {
        Matrix::Qkv(l) => vec![
            layer(&w.wq, l, dim * dim),
            layer(&w.wk, l, kv * dim),
            layer(&w.wv, l, kv * dim),
        ],
        Matrix::Out(l) => vec![layer(&w.wo, l, dim * dim)],
        Matrix::UpGate(l) => vec![layer(&w.w1, l, hidden * dim), layer(&w.w3, l, hidden * dim)],
        Matrix::Down(l) => vec![layer(&w.w2, l, dim * hidden)],
        Matrix::Classifier => vec![&w.classifier],
    }
}

impl FxBackend for FixedPass<'_> {
    type Value = i64;
    type Input = u32;
    type Error = EngineError;

    fn config(&self) -> &Config {
        &self.w.config
    }

    fn zero() -> i64 {
        0
    }

    fn add(a: &i64, b: &i64) -> i64 {
        a + b
    }

    fn sub(a: &i64, b: &i64) -> i64 {
        a - b
    }

    fn embed(&mut self, token: &u32) -> Result<Vec<i64>, EngineError> {
        // `check_step` has checked the token against the vocabulary.
        let (t, dim) = (*token as usize, self.w.config.dim);
        Ok(self.w.embedding[t * dim..(t + 1) * dim].to_vec())
    }

    /// `fx::rms_inv(x)` after checking `mean(x^2) + eps` is inside `rsqrt`'s domain (computed
    /// exactly as `fx::rms_inv` computes it).
    fn rms_inv(&mut self, x: &[i64]) -> Result<i64, EngineError> {
        let wide = fx::dot_wide(x, x) * i128::from(fx::rms_inv_len(x.len()));
        self.stats.wide(wide);
        let ms = fx::trunc(wide, fx::FRAC_BITS + 16) + fx::rms_eps_raw(RMS_EPS);
        let lo = 1i64 << (fx::FRAC_BITS as i32 + fx::RSQRT_MIN_LOG2);
        let hi = 1i64 << (fx::FRAC_BITS as i32 + fx::RSQRT_MAX_LOG2);
        if !(lo..hi).contains(&ms) {
            return Err(out_of_domain(
                "RMSNorm mean(x^2) + eps",
                ms,
                "[2^-10, 2^10)",
            ));
        }
        let s = &mut *self.stats;
        s.min_mean_square = Some(s.min_mean_square.map_or(ms, |m| m.min(ms)));
        s.max_mean_square = s.max_mean_square.max(ms);
        Ok(fx::rms_inv(x, RMS_EPS))
    }

    fn linear(&mut self, m: Matrix, x: &[i64]) -> Result<Vec<i64>, EngineError> {
        let blocks = blocks(self.w, m);
        let st = &mut *self.stats;
        Ok(blocks
            .into_iter()
            .flat_map(|b| b.chunks_exact(x.len()))
            .map(|row| dot(row, x, st))
            .collect())
    }

    fn rope_scale(
        &mut self,
        h: &[i64],
        inv: &i64,
        rope: &[(i64, i64)],
        q_len: usize,
    ) -> Result<Vec<i64>, EngineError> {
        let kv_len = (h.len() - q_len) / 2;
        let st = &mut *self.stats;
        let mut out = Vec::with_capacity(h.len());
        rotate_scaled(&mut out, &h[..q_len], *inv, rope, st);
        rotate_scaled(&mut out, &h[q_len..q_len + kv_len], *inv, rope, st);
        out.extend(h[q_len + kv_len..].iter().map(|&v| scale_hi(v, *inv, st)));
        Ok(out)
    }

    fn append_kv(&mut self, layer: usize, pos: usize, k: &[i64], v: &[i64]) {
        let c = &self.w.config;
        let (seq, kv_dim) = (c.seq_len, c.kv_dim());
        let kc = layer * seq * kv_dim + pos * kv_dim;
        self.cache.k[kc..kc + kv_dim].copy_from_slice(k);
        let vl = layer * kv_dim * seq;
        for (j, &x) in v.iter().enumerate() {
            self.cache.v[vl + j * seq + pos] = x;
        }
    }

    fn scores(
        &mut self,
        layer: usize,
        q: &[i64],
        n: usize,
        heads: Heads,
    ) -> Result<Vec<i64>, EngineError> {
        let c = &self.w.config;
        let (seq, kv_dim, hs) = (c.seq_len, c.kv_dim(), heads.head_size);
        let mut out = Vec::with_capacity(heads.n_heads * n);
        for h in 0..heads.n_heads {
            let qh = &q[h * hs..(h + 1) * hs];
            let off = layer * seq * kv_dim + heads.kv_offset(h);
            for t in 0..n {
                let base = off + t * kv_dim;
                out.push(dot(qh, &self.cache.k[base..base + hs], self.stats));
            }
        }
        Ok(out)
    }

    fn mix_values(
        &mut self,
        layer: usize,
        e: &[i64],
        n: usize,
        heads: Heads,
    ) -> Result<Vec<i64>, EngineError> {
        let c = &self.w.config;
        let (seq, kv_dim, hs) = (c.seq_len, c.kv_dim(), heads.head_size);
        let vl = layer * kv_dim * seq;
        let mut out = Vec::with_capacity(heads.n_heads * hs);
        for (h, eh) in e.chunks_exact(n).enumerate() {
            for j in 0..hs {
                let col = vl + (heads.kv_offset(h) + j) * seq;
                out.push(dot(eh, &self.cache.v[col..col + n], self.stats));
            }
        }
        Ok(out)
    }

    fn max(&mut self, x: &[i64], row_len: usize) -> Result<Vec<i64>, EngineError> {
        Ok(x.chunks_exact(row_len).map(fx::max).collect())
    }

    fn exp(&mut self, x: &[i64]) -> Result<Vec<i64>, EngineError> {
        let exp_lo = -(1i64 << (fx::EXP_SQUARINGS + fx::FRAC_BITS));
        let st = &mut *self.stats;
        x.iter()
            .map(|&arg| {
                if arg < exp_lo {
                    return Err(out_of_domain("exp input", arg, "[-1024, 1]"));
                }
                st.min_exp_input = st.min_exp_input.min(arg);
                Ok(fx::exp(arg))
            })
            .collect()
    }

    fn reciprocal(&mut self, d: &[i64], _lo: i64, _hi: i64) -> Result<Vec<i64>, EngineError> {
        // d >= 1.0 (the maximum contributes exp(0) = 1) and d <= n < 2^RECIP_MAX_LOG2
        // (checked in `FixedEngine::new`): inside the reciprocal's domain.
        let st = &mut *self.stats;
        Ok(d.iter()
            .map(|&d| {
                st.max_softmax_sum = st.max_softmax_sum.max(d);
                fx::reciprocal(d)
            })
            .collect())
    }

    fn scale_hi(&mut self, x: &[i64], f: &[i64]) -> Result<Vec<i64>, EngineError> {
        let st = &mut *self.stats;
        Ok(x.iter().zip(f).map(|(&x, &f)| scale_hi(x, f, st)).collect())
    }

    fn silu(&mut self, x: &[i64]) -> Result<Vec<i64>, EngineError> {
        let max_abs = check_activations(x, "SiLU input")?;
        if max_abs >= SILU_LIMIT_RAW {
            let worst = x
                .iter()
                .copied()
                .max_by_key(|v| v.saturating_abs())
                .unwrap_or(0);
            return Err(out_of_domain("SiLU input", worst, "(-12, 12)"));
        }
        let st = &mut *self.stats;
        st.max_abs_silu_input = st.max_abs_silu_input.max(max_abs);
        Ok(x.iter().map(|&v| fx::silu(v)).collect())
    }

    fn mul(&mut self, a: &[i64], b: &[i64]) -> Result<Vec<i64>, EngineError> {
        let st = &mut *self.stats;
        Ok(a.iter()
            .zip(b)
            .map(|(&s, &b)| {
                st.wide(i128::from(s) * i128::from(b));
                fx::mul(s, b)
            })
            .collect())
    }

    fn check(&mut self, what: Checked, x: &[i64]) -> Result<(), EngineError> {
        let (name, max) = match what {
            Checked::Score => ("attention score", &mut self.stats.max_abs_score),
            Checked::Residual => ("residual", &mut self.stats.max_abs_residual),
            Checked::Logit => ("logit", &mut self.stats.max_abs_logit),
        };
        *max = (*max).max(check_activations(x, name)?);
        Ok(())
    }

    /// Nothing to record: the engine counts a position once its logits passed their checks.
    fn cached(&mut self, _positions: usize) {}
}
