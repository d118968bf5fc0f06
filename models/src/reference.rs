//! The plaintext f32 reference engine: llama2.c run.c's `forward`, operation for operation in
//! the same order (sequential f32 sums, `1/sqrtf`, libm `expf`/`powf`/`cosf`/`sinf`), so its
//! greedy token ids match run.c's bit for bit.

use std::sync::Arc;

use crate::checkpoint::{Checkpoint, Config};
use crate::engine::{Engine, EngineKind, check_step, rope_cos_sin};
use crate::error::EngineError;

/// f32 engine: shared weights plus this engine's activations and KV cache.
pub struct F32Engine {
    weights: Arc<Checkpoint>,
    config: Config,
    x: Vec<f32>,
    xb: Vec<f32>,
    xb2: Vec<f32>,
    hb: Vec<f32>,
    hb2: Vec<f32>,
    q: Vec<f32>,
    att: Vec<f32>,
    logits: Vec<f32>,
    /// `[layers, seq_len, kv_dim]`.
    key_cache: Vec<f32>,
    /// `[layers, seq_len, kv_dim]`.
    value_cache: Vec<f32>,
    filled: usize,
}

impl std::fmt::Debug for F32Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("F32Engine")
            .field("config", &self.config)
            .field("filled", &self.filled)
            .finish_non_exhaustive()
    }
}

impl F32Engine {
    /// An engine with an empty cache. Buffer sizes are bounded by the checkpoint's validation.
    pub fn new(weights: Arc<Checkpoint>) -> Self {
        let c = *weights.config();
        let cache = c.n_layers * c.seq_len * c.kv_dim();
        F32Engine {
            weights,
            config: c,
            x: vec![0.0; c.dim],
            xb: vec![0.0; c.dim],
            xb2: vec![0.0; c.dim],
            hb: vec![0.0; c.hidden_dim],
            hb2: vec![0.0; c.hidden_dim],
            q: vec![0.0; c.dim],
            att: vec![0.0; c.seq_len],
            logits: vec![0.0; c.vocab_size],
            key_cache: vec![0.0; cache],
            value_cache: vec![0.0; cache],
            filled: 0,
        }
    }
}

/// `o = weight * (x / sqrt(mean(x^2) + 1e-5))`, as run.c.
fn rmsnorm(o: &mut [f32], x: &[f32], weight: &[f32]) {
    let mut ss = 0.0f32;
    for &v in x {
        ss += v * v;
    }
    ss /= x.len() as f32;
    ss += 1e-5;
    ss = 1.0 / ss.sqrt();
    for ((o, &w), &v) in o.iter_mut().zip(weight).zip(x) {
        *o = w * (ss * v);
    }
}

/// `out = W x` for `W` row-major `[out.len(), x.len()]`, one sequential sum per row.
fn matmul(out: &mut [f32], x: &[f32], w: &[f32]) {
    for (o, row) in out.iter_mut().zip(w.chunks_exact(x.len())) {
        let mut val = 0.0f32;
        for (&wi, &xi) in row.iter().zip(x) {
            val += wi * xi;
        }
        *o = val;
    }
}

/// In-place softmax, as run.c (an empty slice stays empty).
pub(crate) fn softmax(x: &mut [f32]) {
    let Some((&first, rest)) = x.split_first() else {
        return;
    };
    let mut max = first;
    for &v in rest {
        if v > max {
            max = v;
        }
    }
    let mut sum = 0.0f32;
    for v in x.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    for v in x.iter_mut() {
        *v /= sum;
    }
}

/// Index of the first maximum (run.c `sample_argmax`).
pub(crate) fn argmax_f32(x: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in x.iter().enumerate().skip(1) {
        if v > x[best] {
            best = i;
        }
    }
    best
}

impl F32Engine {
    /// Layer `l`'s attention block at `pos`: `x += Wo attention(rmsnorm(x))`, writing the
    /// position's key and value into the cache.
    fn attention_block(&mut self, l: usize, pos: usize) {
        let c = self.config;
        let dim = c.dim;
        let w = &*self.weights;
        rmsnorm(&mut self.xb, &self.x, &w.rms_att[l * dim..(l + 1) * dim]);
        self.qkv_rope(l, pos);
        self.attend_heads(l, pos);
        let w = &*self.weights;
        matmul(
            &mut self.xb2,
            &self.xb,
            &w.wo[l * dim * dim..(l + 1) * dim * dim],
        );
        for (x, &o) in self.x.iter_mut().zip(&self.xb2) {
            *x += o;
        }
    }

    /// q, k, v of the normalised `xb` for layer `l`, with RoPE applied to q and k at `pos`
    /// (k and v go straight into the cache).
    fn qkv_rope(&mut self, l: usize, pos: usize) {
        let c = self.config;
        let w = &*self.weights;
        let (dim, kv_dim, hs) = (c.dim, c.kv_dim(), c.head_size());
        let loff = l * c.seq_len * kv_dim;
        let kv_at = loff + pos * kv_dim..loff + (pos + 1) * kv_dim;
        matmul(
            &mut self.q,
            &self.xb,
            &w.wq[l * dim * dim..(l + 1) * dim * dim],
        );
        let wk = &w.wk[l * kv_dim * dim..(l + 1) * kv_dim * dim];
        let wv = &w.wv[l * kv_dim * dim..(l + 1) * kv_dim * dim];
        matmul(&mut self.key_cache[kv_at.clone()], &self.xb, wk);
        matmul(&mut self.value_cache[kv_at.clone()], &self.xb, wv);

        let k = &mut self.key_cache[kv_at];
        for i in (0..dim).step_by(2) {
            let (fcr, fci) = rope_cos_sin(pos, i, hs);
            let (v0, v1) = (self.q[i], self.q[i + 1]);
            self.q[i] = v0 * fcr - v1 * fci;
            self.q[i + 1] = v0 * fci + v1 * fcr;
            if i < kv_dim {
                let (v0, v1) = (k[i], k[i + 1]);
                k[i] = v0 * fcr - v1 * fci;
                k[i + 1] = v0 * fci + v1 * fcr;
            }
        }
    }

    /// Softmax attention of every head of `q` over positions `0..=pos` of layer `l`, into `xb`.
    fn attend_heads(&mut self, l: usize, pos: usize) {
        let c = self.config;
        let (kv_dim, hs, kv_mul) = (c.kv_dim(), c.head_size(), c.kv_mul());
        let loff = l * c.seq_len * kv_dim;
        let scale = (hs as f32).sqrt();
        for h in 0..c.n_heads {
            let q = &self.q[h * hs..(h + 1) * hs];
            let kv_off = (h / kv_mul) * hs;
            let att = &mut self.att[..=pos];
            for (t, a) in att.iter_mut().enumerate() {
                let base = loff + t * kv_dim + kv_off;
                let k = &self.key_cache[base..base + hs];
                let mut score = 0.0f32;
                for (&qi, &ki) in q.iter().zip(k) {
                    score += qi * ki;
                }
                *a = score / scale;
            }
            softmax(att);
            let xb = &mut self.xb[h * hs..(h + 1) * hs];
            xb.fill(0.0);
            for (t, &a) in att.iter().enumerate() {
                let base = loff + t * kv_dim + kv_off;
                let v = &self.value_cache[base..base + hs];
                for (o, &vi) in xb.iter_mut().zip(v) {
                    *o += a * vi;
                }
            }
        }
    }

    /// Layer `l`'s SwiGLU block: `x += W2 (silu(W1 rmsnorm(x)) * W3 rmsnorm(x))`.
    fn feed_forward_block(&mut self, l: usize) {
        let c = self.config;
        let (dim, hidden) = (c.dim, c.hidden_dim);
        let w = &*self.weights;
        rmsnorm(&mut self.xb, &self.x, &w.rms_ffn[l * dim..(l + 1) * dim]);
        let wh = l * dim * hidden..(l + 1) * dim * hidden;
        matmul(&mut self.hb, &self.xb, &w.w1[wh.clone()]);
        matmul(&mut self.hb2, &self.xb, &w.w3[wh.clone()]);
        for (a, &b) in self.hb.iter_mut().zip(&self.hb2) {
            let mut val = *a;
            val *= 1.0 / (1.0 + (-val).exp());
            val *= b;
            *a = val;
        }
        matmul(&mut self.xb, &self.hb, &w.w2[wh]);
        for (x, &o) in self.x.iter_mut().zip(&self.xb) {
            *x += o;
        }
    }
}

impl Engine for F32Engine {
    fn config(&self) -> &Config {
        &self.config
    }

    fn forward(&mut self, token: u32, pos: usize) -> Result<&[f32], EngineError> {
        let c = self.config;
        check_step(&c, token, pos, self.filled)?;
        let dim = c.dim;
        let token = token as usize;
        let w = &*self.weights;
        self.x
            .copy_from_slice(&w.token_embedding[token * dim..(token + 1) * dim]);
        for l in 0..c.n_layers {
            self.attention_block(l, pos);
            self.feed_forward_block(l);
        }
        let w = &*self.weights;
        rmsnorm(&mut self.xb, &self.x, &w.rms_final);
        matmul(&mut self.logits, &self.xb, w.classifier());
        self.filled = pos + 1;
        Ok(&self.logits)
    }

    fn logits(&self) -> &[f32] {
        &self.logits
    }

    fn argmax(&self) -> u32 {
        // vocab_size <= 2^20 (checkpoint validation), so the index fits in u32.
        argmax_f32(&self.logits) as u32
    }

    fn reset(&mut self) {
        self.filled = 0;
    }

    fn kind(&self) -> EngineKind {
        EngineKind::F32
    }
}
