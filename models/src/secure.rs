//! The secure transformer: the fixed-point forward pass ([`crate::forward`]) on Shamir shares,
//! the backend the plaintext twin ([`crate::FixedEngine`]) is checked against.
//!
//! - [`provision`] splits a model's folded fixed-point weights ([`FixedWeights`]) into one
//!   [`ShareFile`] per party; no party's file says anything about the weights on its own.
//! - [`PartyModel`] is one party's weights, loaded from its share file and checked against the
//!   quorum's `(n, t)` and its own index.
//! - [`SecureEngine`] runs one party's side of a forward pass ([`crate::forward::forward`]
//!   over the secure backend): every step is a `mesh` protocol computing exactly the `mesh::fx`
//!   function the twin computes (truncations may differ by one unit in the last place, see
//!   `docs/numerics.md`).
//!
//! The session that runs a private generation over these pieces is `node::session`.
//!
//! Tokens enter as secret-shared one-hot rows (the client shares them): the embedding is then
//! a matrix-vector product, and the argmax inside MPC produces the next token as a one-hot row
//! too, so a generated token never has to leave the quorum in the clear; only its index is
//! opened, to the client alone.

use std::sync::Arc;

use mesh::fx;
use mesh::{MeshError, Party, Share, Threshold, Transport, Wide};
use rand::{CryptoRng, RngCore};

use crate::checkpoint::Config;
use crate::fixed::FixedWeights;
use crate::forward::{self, Checked, FxBackend, Heads, Matrix, RMS_EPS};
use crate::sharefile::{
    FIELD_MERSENNE127, ModelShape, ShareFile, ShareFileError, ShareHeader, TensorInfo,
};

/// Why a secure computation could not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SecureError {
    /// A protocol step failed (a peer is gone, timed out, or sent a malformed message).
    #[error(transparent)]
    Mesh(#[from] MeshError),
    /// A share file could not be read or written.
    #[error(transparent)]
    ShareFile(#[from] ShareFileError),
    /// A share file does not belong to this quorum or party.
    #[error("{0}")]
    Mismatch(String),
    /// The request does not fit the model (too many tokens, a token outside the vocabulary).
    #[error("{0}")]
    Request(String),
}

/// The payload tensors of a share file, in order (names as in the header).
pub const TENSORS: [&str; 9] = [
    "embedding",
    "wq",
    "wk",
    "wv",
    "wo",
    "w1",
    "w2",
    "w3",
    "classifier",
];

impl From<&Config> for ModelShape {
    fn from(c: &Config) -> Self {
        ModelShape {
            dim: c.dim as u32,
            hidden_dim: c.hidden_dim as u32,
            n_layers: c.n_layers as u32,
            n_heads: c.n_heads as u32,
            n_kv_heads: c.n_kv_heads as u32,
            vocab_size: c.vocab_size as u32,
            seq_len: c.seq_len as u32,
        }
    }
}

fn config_of(s: &ModelShape) -> Config {
    Config {
        dim: s.dim as usize,
        hidden_dim: s.hidden_dim as usize,
        n_layers: s.n_layers as usize,
        n_heads: s.n_heads as usize,
        n_kv_heads: s.n_kv_heads as usize,
        vocab_size: s.vocab_size as usize,
        seq_len: s.seq_len as usize,
        shared_classifier: true,
    }
}

/// Split `weights` into `n` share files of threshold `t`, party `i + 1` bound to the device
/// whose peer ID bytes are `roster[i]` (every file carries the whole roster). `progress(done,
/// total)` is called as elements are shared. Every file gets the same fresh random
/// provisioning id.
pub fn provision<R: RngCore + CryptoRng>(
    weights: &FixedWeights,
    model_sha256: [u8; 32],
    th: Threshold,
    roster: &[Vec<u8>],
    rng: &mut R,
    mut progress: impl FnMut(u64, u64),
) -> Result<Vec<ShareFile>, SecureError> {
    let (n, t) = (th.n(), th.t());
    let narrow = |v: usize, what: &str| {
        u8::try_from(v).map_err(|_| SecureError::Request(format!("{what} {v} is above 255")))
    };
    let (n8, t8) = (narrow(n, "n")?, narrow(t, "t")?);
    crate::sharefile::check_roster(roster, n8)
        .map_err(|e| SecureError::Request(format!("{e}: give one distinct device per party")))?;
    let tensors = weights.tensors();
    let total: u64 = tensors.iter().map(|(_, v)| v.len() as u64).sum();
    let mut provisioning_id = [0u8; 16];
    rng.fill_bytes(&mut provisioning_id);
    let mut per_party: Vec<Vec<u128>> =
        (0..n).map(|_| Vec::with_capacity(total as usize)).collect();
    let mut done = 0u64;
    for (_, values) in &tensors {
        for chunk in values.chunks(1 << 14) {
            for &v in chunk {
                let shares = mesh::shamir::deal(mesh::Fp::from_i64(v), t, n, rng);
                for (dst, s) in per_party.iter_mut().zip(&shares) {
                    dst.push(u128::from_le_bytes(s.to_le_bytes()));
                }
            }
            done += chunk.len() as u64;
            progress(done, total);
        }
    }
    let shape = ModelShape::from(weights.config());
    let infos: Vec<TensorInfo> = tensors
        .iter()
        .map(|(name, v)| TensorInfo {
            name: (*name).to_owned(),
            len: v.len() as u64,
        })
        .collect();
    per_party
        .into_iter()
        .enumerate()
        .map(|(i, elements)| {
            let header = ShareHeader {
                model_sha256,
                provisioning_id,
                roster: roster.to_vec(),
                n: n8,
                t: t8,
                party: i as u8 + 1,
                field: FIELD_MERSENNE127,
                frac_bits: fx::FRAC_BITS as u8,
                shape,
                tensors: infos.clone(),
            };
            ShareFile::new(header, elements).map_err(SecureError::Mismatch)
        })
        .collect()
}

/// One party's shares of the model, arranged for the forward pass.
pub struct PartyModel {
    header: ShareHeader,
    config: Config,
    /// `[dim, vocab]`: the embedding transposed, so a one-hot row selects by a dot product.
    embedding_t: Vec<Share>,
    /// Per layer `[wq'; wk'; wv']`, `[dim + 2 kv_dim, dim]`.
    wqkv: Vec<Vec<Share>>,
    /// Per layer `[dim, dim]`.
    wo: Vec<Vec<Share>>,
    /// Per layer `[w1'; w3']`, `[2 hidden, dim]`.
    w13: Vec<Vec<Share>>,
    /// Per layer `[dim, hidden]`.
    w2: Vec<Vec<Share>>,
    /// `[vocab, dim]`.
    classifier: Vec<Share>,
}

impl std::fmt::Debug for PartyModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartyModel")
            .field("party", &self.header.party)
            .field("n", &self.header.n)
            .field("t", &self.header.t)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

fn to_shares(v: &[u128]) -> Vec<Share> {
    v.iter()
        .map(|&e| Share::from_le_bytes(e.to_le_bytes()).unwrap_or_else(|| Share::public(0)))
        .collect()
}

/// Check a share file's header against this quorum and party (`index` 0-based); returns the
/// model's shape.
fn check_header(h: &ShareHeader, th: Threshold, index: usize) -> Result<Config, SecureError> {
    if usize::from(h.n) != th.n() || usize::from(h.t) != th.t() {
        return Err(SecureError::Mismatch(format!(
            "share file is for a ({}, {}) quorum, this quorum is ({}, {}); use the share files of this provisioning",
            h.n,
            h.t,
            th.n(),
            th.t()
        )));
    }
    if usize::from(h.party) != index + 1 {
        return Err(SecureError::Mismatch(format!(
            "share file belongs to party {}, this node is party {}",
            h.party,
            index + 1
        )));
    }
    if u32::from(h.frac_bits) != fx::FRAC_BITS {
        return Err(SecureError::Mismatch(format!(
            "share file uses {} fractional bits, this sotto uses {}; re-provision",
            h.frac_bits,
            fx::FRAC_BITS
        )));
    }
    let c = config_of(&h.shape);
    let shape_ok = c.dim > 0
        && c.n_heads > 0
        && c.n_kv_heads > 0
        && c.dim % c.n_heads == 0
        && c.n_heads % c.n_kv_heads == 0
        && c.head_size() % 2 == 0;
    if !shape_ok {
        return Err(SecureError::Mismatch(format!(
            "impossible model shape {:?}",
            h.shape
        )));
    }
    Ok(c)
}

/// The payload tensors in [`TENSORS`] order, each checked against the size `c` implies.
fn payload_tensors<'a>(file: &'a ShareFile, c: &Config) -> Result<Vec<&'a [u128]>, SecureError> {
    let (dim, hidden, kv, layers, vocab) =
        (c.dim, c.hidden_dim, c.kv_dim(), c.n_layers, c.vocab_size);
    let want: [usize; 9] = [
        vocab * dim,
        layers * dim * dim,
        layers * kv * dim,
        layers * kv * dim,
        layers * dim * dim,
        layers * hidden * dim,
        layers * dim * hidden,
        layers * hidden * dim,
        vocab * dim,
    ];
    let mut t: Vec<&[u128]> = Vec::with_capacity(9);
    for (name, len) in TENSORS.iter().zip(want) {
        let v = file
            .tensor(name)
            .ok_or_else(|| SecureError::Mismatch(format!("share file has no tensor `{name}`")))?;
        if v.len() != len {
            return Err(SecureError::Mismatch(format!(
                "tensor `{name}` has {} elements, the model shape needs {len}",
                v.len()
            )));
        }
        t.push(v);
    }
    Ok(t)
}

impl PartyModel {
    /// Arrange a share file for party `index` (0-based) of a quorum with threshold `th`.
    /// Refuses a file made for another party, another `(n, t)`, another number format, or with
    /// tensors of the wrong size.
    pub fn from_share_file(
        file: &ShareFile,
        th: Threshold,
        index: usize,
    ) -> Result<Self, SecureError> {
        let h = &file.header;
        let c = check_header(h, th, index)?;
        let t = payload_tensors(file, &c)?;
        Ok(Self::arrange(h, c, &t))
    }

    /// Arrange the payload tensors (in [`TENSORS`] order) for the forward pass: the embedding
    /// transposed, per layer `[wq; wk; wv]` and `[w1; w3]` stacked.
    fn arrange(h: &ShareHeader, c: Config, t: &[&[u128]]) -> Self {
        let (dim, hidden, kv, layers, vocab) =
            (c.dim, c.hidden_dim, c.kv_dim(), c.n_layers, c.vocab_size);
        let emb = to_shares(t[0]);
        let mut embedding_t = Vec::with_capacity(emb.len());
        for j in 0..dim {
            for v in 0..vocab {
                embedding_t.push(emb[v * dim + j].clone());
            }
        }
        let layer = |v: &[u128], l: usize, len: usize| to_shares(&v[l * len..(l + 1) * len]);
        let mut wqkv = Vec::with_capacity(layers);
        let mut wo = Vec::with_capacity(layers);
        let mut w13 = Vec::with_capacity(layers);
        let mut w2 = Vec::with_capacity(layers);
        for l in 0..layers {
            let mut m = layer(t[1], l, dim * dim);
            m.extend(layer(t[2], l, kv * dim));
            m.extend(layer(t[3], l, kv * dim));
            wqkv.push(m);
            wo.push(layer(t[4], l, dim * dim));
            let mut m = layer(t[5], l, hidden * dim);
            m.extend(layer(t[7], l, hidden * dim));
            w13.push(m);
            w2.push(layer(t[6], l, dim * hidden));
        }
        PartyModel {
            header: h.clone(),
            config: c,
            embedding_t,
            wqkv,
            wo,
            w13,
            w2,
            classifier: to_shares(t[8]),
        }
    }

    /// The model's public shape.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The share file's header (model hash, provisioning id, n, t, party).
    pub fn header(&self) -> &ShareHeader {
        &self.header
    }
}

/// The degree-2t dot product of two share vectors (local).
fn dot_wide(a: &[Share], b: &[Share]) -> Wide {
    let mut acc = Wide::from(&Share::public(0));
    for (x, y) in a.iter().zip(b) {
        acc = acc.add(&x.mul_local(y));
    }
    acc
}

/// One party's shares of the KV cache.
struct KvShares {
    /// Per layer, `[pos, kv_dim]` appended position by position.
    k: Vec<Vec<Share>>,
    /// Per layer, `[pos, kv_dim]`.
    v: Vec<Vec<Share>>,
    /// Positions every layer holds.
    filled: usize,
}

/// One party's side of the secure forward pass: its weights and its shares of the KV cache.
pub struct SecureEngine {
    w: Arc<PartyModel>,
    cache: KvShares,
}

impl std::fmt::Debug for SecureEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecureEngine")
            .field("filled", &self.cache.filled)
            .finish_non_exhaustive()
    }
}

impl SecureEngine {
    /// An engine with an empty KV cache.
    pub fn new(w: Arc<PartyModel>) -> Self {
        let layers = w.config.n_layers;
        SecureEngine {
            w,
            cache: KvShares {
                k: vec![Vec::new(); layers],
                v: vec![Vec::new(); layers],
                filled: 0,
            },
        }
    }

    /// Positions already in the KV cache.
    pub fn filled(&self) -> usize {
        self.cache.filled
    }

    /// Forget every position from `positions` on (recovery: the quorum redoes a token after a
    /// party was lost, possibly in the middle of a forward pass that had already appended part
    /// of its keys and values). Keeps the cache as it was after `positions` forward passes.
    pub fn truncate(&mut self, positions: usize) {
        let c = &mut self.cache;
        let keep = positions.min(c.filled) * self.w.config.kv_dim();
        for layer in c.k.iter_mut().chain(c.v.iter_mut()) {
            layer.truncate(keep);
        }
        c.filled = positions.min(c.filled);
    }

    /// Run the forward pass for the token whose one-hot row `onehot` (vocabulary length) is
    /// shared, at the next position. Returns the logits' shares when `logits` is set (the last
    /// prompt position and every generated one), otherwise only fills the KV cache.
    pub fn forward<T: Transport>(
        &mut self,
        p: &mut Party<T>,
        onehot: &[Share],
        logits: bool,
    ) -> Result<Option<Vec<Share>>, SecureError> {
        let c = self.w.config;
        let pos = self.cache.filled;
        if pos >= c.seq_len {
            return Err(SecureError::Request(format!(
                "the model's context is {} tokens; this request needs more",
                c.seq_len
            )));
        }
        if onehot.len() != c.vocab_size {
            return Err(MeshError::LengthMismatch {
                what: "one-hot token row",
                expected: c.vocab_size,
                got: onehot.len(),
            }
            .into());
        }
        let mut pass = SecurePass {
            p,
            w: &self.w,
            cache: &mut self.cache,
        };
        forward::forward(&mut pass, onehot, pos, logits)
    }
}

/// The secure backend of one forward pass: every step is the `mesh` protocol computing the
/// `mesh::fx` function the plaintext twin computes (truncations may differ by one unit in the
/// last place, see `docs/numerics.md`).
struct SecurePass<'a, T: Transport> {
    p: &'a mut Party<T>,
    w: &'a PartyModel,
    cache: &'a mut KvShares,
}

impl<T: Transport> FxBackend for SecurePass<'_, T> {
    type Value = Share;
    type Input = [Share];
    type Error = SecureError;

    fn config(&self) -> &Config {
        &self.w.config
    }

    fn zero() -> Share {
        Share::public(0)
    }

    fn add(a: &Share, b: &Share) -> Share {
        a.add(b)
    }

    fn sub(a: &Share, b: &Share) -> Share {
        a.sub(b)
    }

    fn embed(&mut self, onehot: &[Share]) -> Result<Vec<Share>, SecureError> {
        // The one-hot row (integers) times the table, exact: no truncation.
        Ok(self.p.dot(&self.w.embedding_t, onehot)?)
    }

    fn rms_inv(&mut self, x: &[Share]) -> Result<Share, SecureError> {
        let inv = self.p.rms_inv(x, x.len(), RMS_EPS)?;
        inv.into_iter()
            .next()
            .ok_or_else(|| MeshError::InvalidArgument("rms_inv of an empty vector").into())
    }

    fn linear(&mut self, m: Matrix, x: &[Share]) -> Result<Vec<Share>, SecureError> {
        let w = self.w;
        let matrix = match m {
            Matrix::Qkv(l) => &w.wqkv[l],
            Matrix::Out(l) => &w.wo[l],
            Matrix::UpGate(l) => &w.w13[l],
            Matrix::Down(l) => &w.w2[l],
            Matrix::Classifier => &w.classifier,
        };
        Ok(self.p.dot_trunc(matrix, x, fx::FRAC_BITS)?)
    }

    fn rope_scale(
        &mut self,
        h: &[Share],
        inv: &Share,
        rope: &[(i64, i64)],
        q_len: usize,
    ) -> Result<Vec<Share>, SecureError> {
        let kv_len = (h.len() - q_len) / 2;
        // q and k: (a inv) cos - (b inv) sin etc. truncated by HI + FRAC in one round;
        // v: trunc(h inv, HI) computed as trunc(h inv 2^FRAC, HI + FRAC), the same value.
        let mut wide: Vec<Wide> = Vec::with_capacity(h.len());
        for part in [&h[..q_len], &h[q_len..q_len + kv_len]] {
            for (pair, &(cos, sin)) in part.chunks_exact(2).zip(rope) {
                let (cos, sin) = (i128::from(cos), i128::from(sin));
                let a = pair[0].mul_local(inv);
                let b = pair[1].mul_local(inv);
                wide.push(a.scale(cos).sub(&b.scale(sin)));
                wide.push(a.scale(sin).add(&b.scale(cos)));
            }
        }
        for hv in &h[q_len + kv_len..] {
            wide.push(hv.mul_local(inv).scale(1i128 << fx::FRAC_BITS));
        }
        Ok(self
            .p
            .reduce_trunc(&wide, fx::HI_FRAC_BITS + fx::FRAC_BITS)?)
    }

    fn append_kv(&mut self, layer: usize, _pos: usize, k: &[Share], v: &[Share]) {
        self.cache.k[layer].extend_from_slice(k);
        self.cache.v[layer].extend_from_slice(v);
    }

    fn scores(
        &mut self,
        layer: usize,
        q: &[Share],
        n: usize,
        heads: Heads,
    ) -> Result<Vec<Share>, SecureError> {
        let (kc, kv_dim, hs) = (
            &self.cache.k[layer],
            self.w.config.kv_dim(),
            heads.head_size,
        );
        // Scores of every head in one round.
        let mut sw = Vec::with_capacity(heads.n_heads * n);
        for hd in 0..heads.n_heads {
            let qh = &q[hd * hs..(hd + 1) * hs];
            let off = heads.kv_offset(hd);
            for t in 0..n {
                sw.push(dot_wide(qh, &kc[t * kv_dim + off..t * kv_dim + off + hs]));
            }
        }
        Ok(self.p.reduce_trunc(&sw, fx::FRAC_BITS)?)
    }

    fn mix_values(
        &mut self,
        layer: usize,
        e: &[Share],
        n: usize,
        heads: Heads,
    ) -> Result<Vec<Share>, SecureError> {
        let (vc, kv_dim) = (&self.cache.v[layer], self.w.config.kv_dim());
        let mut uw = Vec::with_capacity(heads.n_heads * heads.head_size);
        for (hd, eh) in e.chunks_exact(n).enumerate() {
            let off = heads.kv_offset(hd);
            for j in 0..heads.head_size {
                let mut acc = Wide::from(&Share::public(0));
                for (t, et) in eh.iter().enumerate() {
                    acc = acc.add(&et.mul_local(&vc[t * kv_dim + off + j]));
                }
                uw.push(acc);
            }
        }
        Ok(self.p.reduce_trunc(&uw, fx::FRAC_BITS)?)
    }

    fn max(&mut self, x: &[Share], row_len: usize) -> Result<Vec<Share>, SecureError> {
        Ok(self.p.max(x, row_len)?)
    }

    fn exp(&mut self, x: &[Share]) -> Result<Vec<Share>, SecureError> {
        Ok(self.p.exp(x)?)
    }

    fn reciprocal(&mut self, d: &[Share], lo: i64, hi: i64) -> Result<Vec<Share>, SecureError> {
        Ok(self.p.reciprocal_in(d, lo, hi)?)
    }

    fn scale_hi(&mut self, x: &[Share], f: &[Share]) -> Result<Vec<Share>, SecureError> {
        Ok(self.p.mul_trunc(x, f, fx::HI_FRAC_BITS)?)
    }

    fn silu(&mut self, x: &[Share]) -> Result<Vec<Share>, SecureError> {
        Ok(self.p.silu(x)?)
    }

    fn mul(&mut self, a: &[Share], b: &[Share]) -> Result<Vec<Share>, SecureError> {
        Ok(self.p.mul_fx(a, b)?)
    }

    /// Nothing to check: no party sees a value. The plaintext twin checks the same pass.
    fn check(&mut self, _what: Checked, _x: &[Share]) -> Result<(), SecureError> {
        Ok(())
    }

    fn cached(&mut self, positions: usize) {
        self.cache.filled = positions;
    }
}

/// Check that the share files of a quorum belong together: one model, one provisioning, one
/// `(n, t)`, and distinct party indices. Parties compare headers before computing anything.
pub fn check_quorum(headers: &[&ShareHeader]) -> Result<(), SecureError> {
    let Some(first) = headers.first() else {
        return Err(SecureError::Mismatch("no share files".into()));
    };
    let mut seen = Vec::with_capacity(headers.len());
    for h in headers {
        if h.model_sha256 != first.model_sha256 {
            return Err(SecureError::Mismatch(format!(
                "party {} holds shares of another model (sha256 {}…) than party {} ({}…)",
                h.party,
                hex8(&h.model_sha256),
                first.party,
                hex8(&first.model_sha256)
            )));
        }
        if h.provisioning_id != first.provisioning_id {
            return Err(SecureError::Mismatch(format!(
                "party {} holds shares from another provisioning run than party {}; \
                 copy every party's file from the same `sotto provision` output",
                h.party, first.party
            )));
        }
        if (h.n, h.t) != (first.n, first.t) {
            return Err(SecureError::Mismatch(format!(
                "party {} is provisioned for ({}, {}), party {} for ({}, {})",
                h.party, h.n, h.t, first.party, first.n, first.t
            )));
        }
        if h.roster != first.roster {
            return Err(SecureError::Mismatch(format!(
                "party {} binds the party indices to other devices than party {}; \
                 copy every party's file from the same `sotto provision` output",
                h.party, first.party
            )));
        }
        if seen.contains(&h.party) {
            return Err(SecureError::Mismatch(format!(
                "two share files claim party index {}",
                h.party
            )));
        }
        seen.push(h.party);
    }
    Ok(())
}

fn hex8(b: &[u8; 32]) -> String {
    b[..4].iter().map(|x| format!("{x:02x}")).collect()
}

/// sha256 of a file (the model's identity in share-file headers), read in chunks.
pub fn file_sha256(path: &std::path::Path) -> std::io::Result<[u8; 32]> {
    use sha2::{Digest, Sha256};
    use std::io::Read;
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let k = f.read(&mut buf)?;
        if k == 0 {
            break;
        }
        h.update(&buf[..k]);
    }
    Ok(h.finalize().into())
}
