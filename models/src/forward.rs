//! The fixed-point forward pass of the transformer, written once over a backend.
//!
//! [`forward`] holds the model's wiring (embedding; per layer RMSNorm -> QKV -> RoPE ->
//! attention over the KV cache -> softmax -> output projection -> RMSNorm -> SwiGLU; final norm,
//! classifier). An [`FxBackend`] supplies the operations on values in the `mesh::fx` activation
//! format: the plaintext twin (`models::FixedEngine`: integers, domain checks, statistics) and
//! the secure engine (`models::secure::SecureEngine`: Shamir shares over a `mesh::Party`).
//!
//! Each backend operation is one batched step, so the rounds of the secure engine are fixed
//! here: several multiplications share one round (the scores of every head in one truncation,
//! q/k/v with RoPE in one, w1 and w3 in one projection); splitting a step costs rounds. Changing an
//! approximation or the wiring is therefore one edit here, and a difference between the twin and
//! the secure engine is a bug in a backend, not a tolerance. `docs/numerics.md` describes the
//! numerics (weight folding, truncations, domains).

use mesh::fx;

use crate::checkpoint::Config;
use crate::engine::rope_cos_sin;

/// RMSNorm epsilon (llama2.c).
pub(crate) const RMS_EPS: f32 = 1e-5;

/// A weight matrix of the folded model (see `FixedWeights`), applied by
/// [`FxBackend::linear`] as `trunc(W x, FRAC_BITS)` row by row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Matrix {
    /// Layer `l`'s `[wq'; wk'; wv']`, `[dim + 2 kv_dim, dim]`.
    Qkv(usize),
    /// Layer `l`'s `wo`, `[dim, dim]`.
    Out(usize),
    /// Layer `l`'s `[w1'; w3']`, `[2 hidden, dim]`.
    UpGate(usize),
    /// Layer `l`'s `w2`, `[dim, hidden]`.
    Down(usize),
    /// The final classifier with the final gain folded in, `[vocab, dim]`.
    Classifier,
}

/// Activations the plaintext backend checks against the comparison domain (they are compared
/// by `max`/`argmax` or feed later comparisons) and records in its statistics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Checked {
    /// Attention scores, `[heads, positions]`.
    Score,
    /// The residual stream after an addition.
    Residual,
    /// The logits.
    Logit,
}

/// How query heads map onto key/value heads (grouped-query attention).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Heads {
    /// Query heads.
    pub n_heads: usize,
    /// Elements per head.
    pub head_size: usize,
    /// Query heads per key/value head.
    pub kv_mul: usize,
}

impl Heads {
    /// The heads of a model.
    pub fn of(c: &Config) -> Self {
        Heads {
            n_heads: c.n_heads,
            head_size: c.head_size(),
            kv_mul: c.kv_mul(),
        }
    }

    /// Offset of query head `h`'s key/value head inside one position's `kv_dim` vector.
    pub fn kv_offset(&self, h: usize) -> usize {
        (h / self.kv_mul) * self.head_size
    }
}

/// The operations of the fixed-point forward pass. Values are in the activation format
/// (`fx::FRAC_BITS`) unless a method says otherwise; every vector operation works element by
/// element, and every method with `&mut self` is one batched step (for the secure backend: the
/// protocol calls of that step, for the plaintext one: the `mesh::fx` functions with their
/// domain checks).
pub trait FxBackend {
    /// One value: an integer, or a share of one.
    type Value: Clone;
    /// What enters the pass: a token id, or the shares of its one-hot row.
    type Input: ?Sized;
    /// Why a step failed.
    type Error;

    /// The model's public shape.
    fn config(&self) -> &Config;
    /// The public zero.
    fn zero() -> Self::Value;
    /// `a + b` (local).
    fn add(a: &Self::Value, b: &Self::Value) -> Self::Value;
    /// `a - b` (local).
    fn sub(a: &Self::Value, b: &Self::Value) -> Self::Value;

    /// The input token's embedding row, `[dim]`.
    fn embed(&mut self, input: &Self::Input) -> Result<Vec<Self::Value>, Self::Error>;
    /// `fx::rms_inv(x)` (RMSNorm's inverse RMS in the HI format).
    fn rms_inv(&mut self, x: &[Self::Value]) -> Result<Self::Value, Self::Error>;
    /// `trunc(m x, FRAC_BITS)` for every row of `m`.
    fn linear(&mut self, m: Matrix, x: &[Self::Value]) -> Result<Vec<Self::Value>, Self::Error>;
    /// The fused RoPE-and-scale step on `h = [q; k; v]` (the raw `Qkv` projection): for each
    /// pair `(a, b)` of q and of k, with public `rope[i] = (cos, sin)`,
    /// `trunc((a inv) cos - (b inv) sin, HI + FRAC)` and `trunc((a inv) sin + (b inv) cos,
    /// HI + FRAC)`; for v, `trunc(v inv, HI)`. `q_len` is `dim`, `kv_len` is `kv_dim`.
    fn rope_scale(
        &mut self,
        h: &[Self::Value],
        inv: &Self::Value,
        rope: &[(i64, i64)],
        q_len: usize,
    ) -> Result<Vec<Self::Value>, Self::Error>;
    /// Append position `pos`'s key and value (`[kv_dim]` each) to layer `layer`'s cache.
    fn append_kv(&mut self, layer: usize, pos: usize, k: &[Self::Value], v: &[Self::Value]);
    /// Every head's scores against the `n` cached keys of `layer`, `trunc(q_h . k_t,
    /// FRAC_BITS)`, as `[heads, n]`.
    fn scores(
        &mut self,
        layer: usize,
        q: &[Self::Value],
        n: usize,
        heads: Heads,
    ) -> Result<Vec<Self::Value>, Self::Error>;
    /// Every head's `trunc(sum_t e_t v_t, FRAC_BITS)` over the `n` cached values of `layer`
    /// (`e` is `[heads, n]`), as `[dim]`.
    fn mix_values(
        &mut self,
        layer: usize,
        e: &[Self::Value],
        n: usize,
        heads: Heads,
    ) -> Result<Vec<Self::Value>, Self::Error>;
    /// `fx::max` of each row of `row_len` values.
    fn max(&mut self, x: &[Self::Value], row_len: usize) -> Result<Vec<Self::Value>, Self::Error>;
    /// `fx::exp` of each value (inputs `<= 0`).
    fn exp(&mut self, x: &[Self::Value]) -> Result<Vec<Self::Value>, Self::Error>;
    /// `fx::reciprocal` of each value (HI format), each known to lie in the public raw range
    /// `[lo, hi]`.
    fn reciprocal(
        &mut self,
        d: &[Self::Value],
        lo: i64,
        hi: i64,
    ) -> Result<Vec<Self::Value>, Self::Error>;
    /// `fx::scale_hi(x_i, f_i)`: `trunc(x_i f_i, HI_FRAC_BITS)` with `f` in the HI format.
    fn scale_hi(
        &mut self,
        x: &[Self::Value],
        f: &[Self::Value],
    ) -> Result<Vec<Self::Value>, Self::Error>;
    /// `fx::silu` of each value.
    fn silu(&mut self, x: &[Self::Value]) -> Result<Vec<Self::Value>, Self::Error>;
    /// `fx::mul(a_i, b_i)`.
    fn mul(
        &mut self,
        a: &[Self::Value],
        b: &[Self::Value],
    ) -> Result<Vec<Self::Value>, Self::Error>;
    /// Check `x` against the domain the later steps need (no-op where nothing can be seen).
    fn check(&mut self, what: Checked, x: &[Self::Value]) -> Result<(), Self::Error>;
    /// Every layer's cache now holds `positions` positions.
    fn cached(&mut self, positions: usize);
}

/// The public RoPE constants of position `pos` in the activation format: `(cos, sin)` of the
/// pair starting at element `2i` of the query vector, `[dim / 2]`.
fn rope_table(c: &Config, pos: usize) -> Vec<(i64, i64)> {
    (0..c.dim / 2)
        .map(|i| {
            let (cos, sin) = rope_cos_sin(pos, 2 * i, c.head_size());
            (fx::from_f32(cos), fx::from_f32(sin))
        })
        .collect()
}

/// `x[i] + y[i]`.
fn residual<B: FxBackend>(x: &[B::Value], y: &[B::Value]) -> Vec<B::Value> {
    x.iter().zip(y).map(|(a, b)| B::add(a, b)).collect()
}

/// One forward pass at position `pos` (the caller checked it against the cache): fills every
/// layer's KV cache at `pos` and, with `want_logits`, returns the logits.
pub fn forward<B: FxBackend>(
    b: &mut B,
    input: &B::Input,
    pos: usize,
    want_logits: bool,
) -> Result<Option<Vec<B::Value>>, B::Error> {
    let c = *b.config();
    let rope = rope_table(&c, pos);
    // Embedding: a lookup, or the one-hot row times the table (exact: no truncation).
    let mut x = b.embed(input)?;
    for l in 0..c.n_layers {
        x = attention_block(b, l, &x, &rope, pos)?;
        x = feed_forward_block(b, l, &x)?;
    }
    b.cached(pos + 1);
    if !want_logits {
        return Ok(None);
    }
    let logits = classify(b, &x)?;
    b.check(Checked::Logit, &logits)?;
    Ok(Some(logits))
}

/// `x + Wo attention(RMSNorm(x))` for layer `l`, appending position `pos` to its cache.
fn attention_block<B: FxBackend>(
    b: &mut B,
    l: usize,
    x: &[B::Value],
    rope: &[(i64, i64)],
    pos: usize,
) -> Result<Vec<B::Value>, B::Error> {
    let c = *b.config();
    let (dim, kv_dim) = (c.dim, c.kv_dim());
    // The gains are folded into the weights: RMSNorm is `inv * (W' x)`, and `inv` is applied
    // together with RoPE so each output is truncated once.
    let inv = b.rms_inv(x)?;
    let h = b.linear(Matrix::Qkv(l), x)?;
    let qkv = b.rope_scale(&h, &inv, rope, dim)?;
    let (q, kv) = qkv.split_at(dim);
    b.append_kv(l, pos, &kv[..kv_dim], &kv[kv_dim..]);
    let att = attention(b, l, q, pos + 1)?;
    let o = b.linear(Matrix::Out(l), &att)?;
    let x = residual::<B>(x, &o);
    b.check(Checked::Residual, &x)?;
    Ok(x)
}

/// Softmax attention of every head of `q` over the first `n` cached positions of layer `l`.
fn attention<B: FxBackend>(
    b: &mut B,
    l: usize,
    q: &[B::Value],
    n: usize,
) -> Result<Vec<B::Value>, B::Error> {
    let heads = Heads::of(b.config());
    let scores = b.scores(l, q, n, heads)?;
    b.check(Checked::Score, &scores)?;
    let m = b.max(&scores, n)?;
    let args: Vec<B::Value> = scores
        .chunks_exact(n)
        .zip(&m)
        .flat_map(|(row, mi)| row.iter().map(move |s| B::sub(s, mi)))
        .collect();
    let e = b.exp(&args)?;
    let sums: Vec<B::Value> = e
        .chunks_exact(n)
        .map(|row| row.iter().fold(B::zero(), |a, s| B::add(&a, s)))
        .collect();
    // u_j = sum_t e_t v_t[j] (one truncation each), then scaled by 1/sum.
    let u = b.mix_values(l, &e, n, heads)?;
    // 1 <= sum <= n (the maximum's exp is exactly 1, every other term at most 1 plus a few
    // ulps of truncation): the reciprocal's comparisons outside that range are decided.
    let n_raw = n as i64;
    let r = b.reciprocal(&sums, fx::ONE, n_raw * fx::ONE + 4 * n_raw)?;
    b.scale_hi(&u, &repeat(&r, heads.head_size))
}

/// `x + W2 (silu(W1' x inv) * (W3' x inv))` for layer `l`.
fn feed_forward_block<B: FxBackend>(
    b: &mut B,
    l: usize,
    x: &[B::Value],
) -> Result<Vec<B::Value>, B::Error> {
    let hidden = b.config().hidden_dim;
    let inv = b.rms_inv(x)?;
    let h13 = b.linear(Matrix::UpGate(l), x)?;
    let ab = b.scale_hi(&h13, &vec![inv; 2 * hidden])?;
    let s = b.silu(&ab[..hidden])?;
    let g = b.mul(&s, &ab[hidden..])?;
    let f = b.linear(Matrix::Down(l), &g)?;
    let x = residual::<B>(x, &f);
    b.check(Checked::Residual, &x)?;
    Ok(x)
}

/// The logits: the classifier applied to the final RMSNorm of `x`.
fn classify<B: FxBackend>(b: &mut B, x: &[B::Value]) -> Result<Vec<B::Value>, B::Error> {
    let vocab = b.config().vocab_size;
    let inv = b.rms_inv(x)?;
    let h = b.linear(Matrix::Classifier, x)?;
    b.scale_hi(&h, &vec![inv; vocab])
}

/// Each element of `v` repeated `each` times.
fn repeat<V: Clone>(v: &[V], each: usize) -> Vec<V> {
    v.iter()
        .flat_map(|s| std::iter::repeat_n(s, each).cloned())
        .collect()
}
