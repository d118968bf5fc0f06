//! The security parameters and bit widths of the protocols, in one place: how many bits a
//! truncation or comparison input may have, how many random bits a mask carries beyond the
//! value (statistical hiding), and the widths the preprocessing deals its masks at.

use crate::fx;

/// Statistical security parameter: masks carry this many random bits beyond the value.
pub const KAPPA: u32 = 40;

/// Bit length `k` of truncation inputs: `|v| < 2^(k-1)`.
pub(crate) const TRUNC_K: u32 = fx::TRUNC_BITS;

/// Bit length `k` of comparison inputs.
pub(crate) const CMP_K: u32 = fx::CMP_BITS;

/// Random bits per comparison (`k - 1`).
pub(crate) const LTZ_BITS: usize = (fx::CMP_BITS - 1) as usize;

/// Number of prefix-OR levels of a comparison: `ceil(log2(LTZ_BITS))`.
pub(crate) const OR_LEVELS: u32 = usize::BITS - (LTZ_BITS - 1).leading_zeros();

/// Width of a comparison's bounded random high part `r''`: it must hide the `CMP_K -
/// LTZ_BITS` bits above the random bits by `KAPPA` bits.
pub(crate) const LTZ_HI_BITS: u32 = CMP_K - LTZ_BITS as u32 + KAPPA;

/// Width of a truncation mask's high part `r''` for a shift by `m` bits: it hides the
/// `TRUNC_K - m` bits above the shift by `KAPPA` bits.
pub(crate) const fn trunc_hi_bits(m: u32) -> u32 {
    TRUNC_K + KAPPA - m
}
