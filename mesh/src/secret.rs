//! Vectors of secret field elements and the conversions between them and share vectors; every
//! intermediate vector of a protocol is one of these, so it is wiped when dropped.

use crate::field::Fp;
use crate::shamir::{Share, Wide};
use zeroize::Zeroizing;

/// A vector of secret field elements that is wiped when dropped.
pub(crate) type Secret = Zeroizing<Vec<Fp>>;

pub(crate) fn secret(v: Vec<Fp>) -> Secret {
    Zeroizing::new(v)
}

pub(crate) fn raw(xs: &[Share]) -> Secret {
    secret(xs.iter().map(|s| s.0).collect())
}

pub(crate) fn raw_wide(xs: &[Wide]) -> Secret {
    secret(xs.iter().map(|s| s.0).collect())
}

pub(crate) fn shares(v: &[Fp]) -> Vec<Share> {
    v.iter().map(|&x| Share(x)).collect()
}
