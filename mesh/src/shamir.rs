//! Shamir secret sharing over F_p: the threshold configuration, the share types and the
//! dealing / reconstruction used by the client and by preprocessing.
//!
//! Party `i` (0-based index) holds the evaluation at the public point `i + 1` of a random
//! polynomial whose constant term is the secret. A [`Share`] is a degree-`t` share; a [`Wide`]
//! is a degree-`2t` share (a local product, or a sum of them), which only becomes a `Share`
//! again through a degree reduction or a fused truncation.

use crate::error::MeshError;
use crate::field::{Fp, lagrange_at_zero};
use rand::RngCore;
use zeroize::{Zeroize, ZeroizeOnDrop};

/// Largest number of parties supported (messages and Lagrange tables are sized for it).
pub use crate::ids::MAX_PARTIES;

/// A validated `(n, t)` configuration: `n` parties, polynomials of degree `t`, `t >= 1`,
/// `n >= 2t + 1` (honest majority, needed for one-round degree reduction).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Threshold {
    n: usize,
    t: usize,
}

impl Threshold {
    /// Validate `(n, t)`.
    pub fn new(n: usize, t: usize) -> Result<Threshold, MeshError> {
        if n > MAX_PARTIES {
            return Err(MeshError::TooManyParties {
                n,
                max: MAX_PARTIES,
            });
        }
        if t == 0 || n < 2 * t + 1 {
            return Err(MeshError::InvalidThreshold { n, t });
        }
        Ok(Threshold { n, t })
    }

    /// Number of parties.
    pub fn n(&self) -> usize {
        self.n
    }

    /// Polynomial degree (the largest coalition that learns nothing).
    pub fn t(&self) -> usize {
        self.t
    }

    /// Check a party index.
    pub fn check_party(&self, index: usize) -> Result<(), MeshError> {
        if index < self.n {
            Ok(())
        } else {
            Err(MeshError::PartyOutOfRange { index, n: self.n })
        }
    }

    /// Validate a set of distinct party indices of exactly `need` members, sorted.
    pub fn check_set(&self, parties: &[usize], need: usize) -> Result<Vec<usize>, MeshError> {
        if parties.len() != need {
            return Err(MeshError::PartySetSize {
                got: parties.len(),
                need,
            });
        }
        let mut seen = [false; MAX_PARTIES];
        for &p in parties {
            self.check_party(p)?;
            if seen[p] {
                return Err(MeshError::DuplicateParty(p));
            }
            seen[p] = true;
        }
        let mut v = parties.to_vec();
        v.sort_unstable();
        Ok(v)
    }

    /// Lagrange coefficients at zero for the given distinct parties (validated).
    pub fn lagrange(&self, parties: &[usize]) -> Result<Vec<Fp>, MeshError> {
        self.check_set(parties, parties.len())?;
        if parties.is_empty() {
            return Err(MeshError::PartySetSize { got: 0, need: 1 });
        }
        let points: Vec<u64> = parties.iter().map(|&p| p as u64 + 1).collect();
        Ok(lagrange_at_zero(&points))
    }
}

macro_rules! share_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
        pub struct $name(pub(crate) Fp);

        impl core::fmt::Debug for $name {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                write!(f, concat!(stringify!($name), "(<redacted>)"))
            }
        }

        impl $name {
            /// Sum of two shares (local).
            #[inline]
            pub fn add(&self, o: &$name) -> $name {
                $name(self.0 + o.0)
            }
            /// Difference of two shares (local).
            #[inline]
            pub fn sub(&self, o: &$name) -> $name {
                $name(self.0 - o.0)
            }
            /// Negation (local).
            #[inline]
            pub fn neg(&self) -> $name {
                $name(-self.0)
            }
            /// Product with a public signed integer (local).
            #[inline]
            pub fn scale(&self, k: i128) -> $name {
                $name(self.0 * Fp::from_i128(k))
            }
            /// Product with a public field element (local).
            #[inline]
            pub fn scale_fp(&self, k: Fp) -> $name {
                $name(self.0 * k)
            }
            /// Add a public signed integer to the shared value (every party adds it).
            #[inline]
            pub fn add_public(&self, c: i128) -> $name {
                $name(self.0 + Fp::from_i128(c))
            }
            /// The share as 16 little-endian bytes (for share files; handle as secret).
            pub fn to_le_bytes(&self) -> [u8; 16] {
                self.0.to_le_bytes()
            }
            /// A share from 16 little-endian bytes; `None` if not a canonical field element.
            pub fn from_le_bytes(b: [u8; 16]) -> Option<$name> {
                Fp::from_le_bytes(b).map($name)
            }
        }
    };
}

share_type!(
    /// A party's degree-`t` Shamir share of one secret field element.
    ///
    /// Linear operations are local ([`Share::add`], [`Share::scale`], [`Share::add_public`]);
    /// products go through [`crate::Party`]. Zeroized on drop; `Debug` never prints the value.
    Share
);

share_type!(
    /// A party's degree-`2t` share: a local product of two [`Share`]s (or a sum of such
    /// products, or a `Share` lifted with [`Wide::from`]). Turned back into a `Share` by
    /// [`crate::Party::reduce`] or [`crate::Party::reduce_trunc`]. Zeroized on drop.
    Wide
);

impl Share {
    /// The local product of two degree-`t` shares: a degree-`2t` share of the product.
    #[inline]
    pub fn mul_local(&self, o: &Share) -> Wide {
        Wide(self.0 * o.0)
    }

    /// A public constant as a (degree-0) share: every party holds the constant itself.
    #[inline]
    pub fn public(c: i128) -> Share {
        Share(Fp::from_i128(c))
    }
}

impl From<&Share> for Wide {
    /// A degree-`t` share is also a valid degree-`2t` share.
    fn from(s: &Share) -> Wide {
        Wide(s.0)
    }
}

/// Evaluate `f(x) = c0 + c[0] x + c[1] x^2 + ...` at a small public point (Horner).
#[inline]
pub(crate) fn eval_poly(c0: Fp, coeffs: &[Fp], x: u64) -> Fp {
    let mut acc = Fp::ZERO;
    for &c in coeffs.iter().rev() {
        acc = (acc + c).mul_u64(x);
    }
    acc + c0
}

/// Evaluate `f` at the points `1..=out.len()`; degree 1 (the common `t = 1`) uses additions
/// only (`f(j + 1) = f(j) + c`).
#[inline]
pub(crate) fn eval_points(c0: Fp, coeffs: &[Fp], out: &mut [Fp]) {
    match coeffs {
        [] => out.fill(c0),
        [c] => {
            let mut acc = c0;
            for o in out {
                acc += *c;
                *o = acc;
            }
        }
        _ => {
            for (j, o) in out.iter_mut().enumerate() {
                *o = eval_poly(c0, coeffs, j as u64 + 1);
            }
        }
    }
}

/// Deal `secret` with a fresh random polynomial of degree `degree`: returns the `n` shares
/// (share `i` for party `i`, point `i + 1`).
pub fn deal<R: RngCore + ?Sized>(secret: Fp, degree: usize, n: usize, rng: &mut R) -> Vec<Share> {
    let coeffs: Vec<Fp> = (0..degree).map(|_| Fp::random(rng)).collect();
    (0..n)
        .map(|i| Share(eval_poly(secret, &coeffs, i as u64 + 1)))
        .collect()
}

/// Reconstruct a secret from `(party index, share)` pairs of distinct parties, by Lagrange
/// interpolation at zero over all the given points (so any polynomial of degree below
/// `shares.len()`); validates the indices against `th`.
pub fn reconstruct(th: &Threshold, shares: &[(usize, &Share)]) -> Result<Fp, MeshError> {
    let parties: Vec<usize> = shares.iter().map(|(i, _)| *i).collect();
    let lambda = th.lagrange(&parties)?;
    Ok(shares
        .iter()
        .zip(&lambda)
        .fold(Fp::ZERO, |acc, ((_, s), l)| acc + s.0 * *l))
}
