//! Preprocessing: the pool of input-independent random material the online protocols consume,
//! and the dealer-free protocol that fills it.
//!
//! Material (all dealer-free; every item is dealt by `t + 1` parties of the active set, in
//! rotation, so no coalition of `t` knows it):
//! - random bits (degree t): each dealer shares a random bit; the `t + 1` bits are XORed
//!   (`a xor b = a + b - 2ab`) in a tree of degree reductions;
//! - comparison material: `fx::CMP_BITS - 1` random bits and a bounded random `r''` per
//!   comparison;
//! - truncation masks per shift `m`: `r2t` (a degree-2t sharing of `2^m r'' + r'` plus a
//!   random degree-2t sharing of zero) and `r_hi = r''` (degree t). `r'` is built from `m`
//!   random bits whose last XOR level is left at degree 2t: it is only ever opened inside a
//!   degree-2t mask, so it needs no reduction (for t = 1 the truncation masks cost no
//!   multiplication at all).
//!
//! Items are taken from the pool by moving them out; the pool never hands out an item twice.
//!
//! - [`Demand`] (module `demand`): how much material a computation needs, with one constructor
//!   per protocol;
//! - `pool`: the material one party holds;
//! - `generate`: the dealing round and the XOR tree that fill the pool.

pub(crate) mod demand;
pub(crate) mod generate;
pub(crate) mod pool;

pub use demand::Demand;
