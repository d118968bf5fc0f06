//! The prime field F_p with p = 2^127 - 1 (a Mersenne prime) that every share lives in.
//!
//! Elements are canonical `u128`s in `[0, p)`. A product of two elements is formed from four
//! 64x64-bit limb products and folded with `2^127 = 1 (mod p)`; a lazy accumulator sums many
//! products without reducing each one (lazy reduction), which is what dot products use.
//!
//! Fixed-point values are signed integers embedded as `x mod p` (negative `x` as `p - |x|`),
//! see [`Fp::from_i128`] / [`Fp::to_i128`].

use core::ops::{Add, AddAssign, Mul, MulAssign, Neg, Sub, SubAssign};
use rand::RngCore;
use zeroize::DefaultIsZeroes;

/// The modulus `p = 2^127 - 1`.
pub const P: u128 = (1u128 << 127) - 1;

/// Bytes of one element on the wire (little-endian `u128`).
pub const ELEMENT_BYTES: usize = 16;

/// An element of F_p, always canonical (`< p`).
///
/// `Fp` is a plain number: public values (opened masked values, constants) are `Fp`s. A party's
/// secret share of a value is a [`crate::Share`], which wraps an `Fp`, zeroizes on drop and
/// never prints its value.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Fp(u128);

impl DefaultIsZeroes for Fp {}

impl core::fmt::Debug for Fp {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "Fp({})", self.to_i128())
    }
}

#[inline(always)]
fn fold(x: u128) -> u128 {
    // x < 2^128: x = hi * 2^127 + lo = hi + lo (mod p), hi <= 1.
    let r = (x & P) + (x >> 127);
    if r >= P { r - P } else { r }
}

/// The unreduced product of two canonical elements: a value `< 2^128` congruent to `a * b`.
#[inline(always)]
fn mul_unreduced(a: u128, b: u128) -> u128 {
    let (a0, a1) = (a as u64 as u128, a >> 64);
    let (b0, b1) = (b as u64 as u128, b >> 64);
    let p00 = a0 * b0;
    let mid = a0 * b1 + a1 * b0; // each < 2^127, sum < 2^128
    let p11 = a1 * b1; // < 2^126
    let (lo, carry) = p00.overflowing_add(mid << 64);
    let hi = p11 + (mid >> 64) + u128::from(carry);
    // product = hi * 2^128 + lo = ((hi << 1) | (lo >> 127)) * 2^127 + (lo & P)
    let high = (hi << 1) | (lo >> 127); // product >> 127 < 2^127
    high + (lo & P)
}

impl Fp {
    /// Zero.
    pub const ZERO: Fp = Fp(0);
    /// One.
    pub const ONE: Fp = Fp(1);

    /// Reduce any `u128` modulo p.
    #[inline]
    pub fn new(v: u128) -> Fp {
        Fp(fold(v))
    }

    /// The element if `v` is canonical (`< p`), else `None`.
    #[inline]
    pub fn from_canonical(v: u128) -> Option<Fp> {
        (v < P).then_some(Fp(v))
    }

    /// The canonical representative in `[0, p)`.
    #[inline]
    pub fn value(self) -> u128 {
        self.0
    }

    /// `v mod p` for a signed integer with `|v| < p`.
    #[inline]
    pub fn from_i128(v: i128) -> Fp {
        if v >= 0 {
            Fp::new(v as u128)
        } else {
            -Fp::new(v.unsigned_abs())
        }
    }

    /// `v mod p`.
    #[inline]
    pub fn from_i64(v: i64) -> Fp {
        Fp::from_i128(i128::from(v))
    }

    /// `2^e` for `e < 127`.
    #[inline]
    pub fn pow2(e: u32) -> Fp {
        debug_assert!(e < 127);
        Fp(1u128 << e)
    }

    /// The signed integer in `(-p/2, p/2]` congruent to this element.
    #[inline]
    pub fn to_i128(self) -> i128 {
        if self.0 > P / 2 {
            -((P - self.0) as i128)
        } else {
            self.0 as i128
        }
    }

    /// `self * k` for a small public integer (one limb product fewer than a full product).
    #[inline(always)]
    pub fn mul_u64(self, k: u64) -> Fp {
        let k = u128::from(k);
        let lo_part = (self.0 as u64 as u128) * k; // < 2^128
        let hi_part = (self.0 >> 64) * k; // < 2^127
        let (lo, carry) = lo_part.overflowing_add(hi_part << 64);
        let hi = (hi_part >> 64) + u128::from(carry);
        let high = (hi << 1) | (lo >> 127);
        Fp(fold(high + (lo & P)))
    }

    /// `self^e`.
    pub fn pow(self, mut e: u128) -> Fp {
        let mut base = self;
        let mut acc = Fp::ONE;
        while e > 0 {
            if e & 1 == 1 {
                acc *= base;
            }
            base *= base;
            e >>= 1;
        }
        acc
    }

    /// The multiplicative inverse, `None` for zero.
    pub fn inv(self) -> Option<Fp> {
        (self.0 != 0).then(|| self.pow(P - 2))
    }

    /// A uniformly random element (bias `2^-127` from mapping `p` to zero).
    #[inline]
    pub fn random<R: RngCore + ?Sized>(rng: &mut R) -> Fp {
        let lo = u128::from(rng.next_u64());
        let hi = u128::from(rng.next_u64());
        Fp::new(((hi << 64) | lo) & P)
    }

    /// A uniformly random integer in `[0, 2^bits)` (`bits <= 126`) as an element.
    #[inline]
    pub fn random_bits<R: RngCore + ?Sized>(rng: &mut R, bits: u32) -> Fp {
        debug_assert!(bits <= 126);
        let lo = u128::from(rng.next_u64());
        let hi = u128::from(rng.next_u64());
        let v = (hi << 64) | lo;
        Fp(if bits == 0 { 0 } else { v >> (128 - bits) })
    }

    /// Little-endian bytes.
    #[inline]
    pub fn to_le_bytes(self) -> [u8; ELEMENT_BYTES] {
        self.0.to_le_bytes()
    }

    /// From little-endian bytes; `None` if not canonical.
    #[inline]
    pub fn from_le_bytes(b: [u8; ELEMENT_BYTES]) -> Option<Fp> {
        Fp::from_canonical(u128::from_le_bytes(b))
    }
}

impl Add for Fp {
    type Output = Fp;
    #[inline(always)]
    fn add(self, o: Fp) -> Fp {
        let s = self.0 + o.0; // < 2^128
        Fp(if s >= P { s - P } else { s })
    }
}

impl Sub for Fp {
    type Output = Fp;
    #[inline(always)]
    fn sub(self, o: Fp) -> Fp {
        Fp(if self.0 >= o.0 {
            self.0 - o.0
        } else {
            self.0 + P - o.0
        })
    }
}

impl Neg for Fp {
    type Output = Fp;
    #[inline(always)]
    fn neg(self) -> Fp {
        Fp(if self.0 == 0 { 0 } else { P - self.0 })
    }
}

impl Mul for Fp {
    type Output = Fp;
    #[inline(always)]
    fn mul(self, o: Fp) -> Fp {
        Fp(fold(mul_unreduced(self.0, o.0)))
    }
}

impl AddAssign for Fp {
    #[inline(always)]
    fn add_assign(&mut self, o: Fp) {
        *self = *self + o;
    }
}

impl SubAssign for Fp {
    #[inline(always)]
    fn sub_assign(&mut self, o: Fp) {
        *self = *self - o;
    }
}

impl MulAssign for Fp {
    #[inline(always)]
    fn mul_assign(&mut self, o: Fp) {
        *self = *self * o;
    }
}

/// A lazily reduced sum of products: each product is folded once to `< 2^128` and added to a
/// 192-bit accumulator; the sum is reduced once at the end (`2^128 = 2 mod p`).
#[derive(Clone, Copy, Default)]
pub(crate) struct Acc {
    lo: u128,
    carries: u64,
}

impl Acc {
    #[inline(always)]
    pub(crate) fn add_product(&mut self, a: Fp, b: Fp) {
        self.add_raw(mul_unreduced(a.0, b.0));
    }

    #[inline(always)]
    pub(crate) fn add(&mut self, a: Fp) {
        self.add_raw(a.0);
    }

    #[inline(always)]
    fn add_raw(&mut self, v: u128) {
        let (s, c) = self.lo.overflowing_add(v);
        self.lo = s;
        self.carries += u64::from(c);
    }

    #[inline(always)]
    pub(crate) fn finish(self) -> Fp {
        Fp::new(self.lo) + Fp::new(u128::from(self.carries) << 1)
    }
}

/// Lagrange coefficients `lambda_i` with `f(0) = sum lambda_i f(x_i)` for every polynomial of
/// degree `< points.len()`; `points` are distinct public evaluation points.
pub(crate) fn lagrange_at_zero(points: &[u64]) -> Vec<Fp> {
    let points: Vec<Fp> = points.iter().map(|&x| Fp::from(x)).collect();
    lagrange_at(&points, Fp::ZERO)
}

/// Lagrange coefficients `lambda_i` with `f(x) = sum lambda_i f(x_i)` for every polynomial of
/// degree `< points.len()`; `points` are distinct public evaluation points.
pub(crate) fn lagrange_at(points: &[Fp], x: Fp) -> Vec<Fp> {
    points
        .iter()
        .enumerate()
        .map(|(i, &xi)| {
            let mut num = Fp::ONE;
            let mut den = Fp::ONE;
            for (j, &xj) in points.iter().enumerate() {
                if i != j {
                    num *= x - xj;
                    den *= xi - xj;
                }
            }
            // Points are distinct (checked by callers), so den != 0.
            num * den.inv().unwrap_or(Fp::ZERO)
        })
        .collect()
}

impl From<u64> for Fp {
    fn from(v: u64) -> Fp {
        Fp(u128::from(v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn naive_mul(a: u128, b: u128) -> u128 {
        // Schoolbook double-and-add mod p.
        let mut acc = 0u128;
        let mut base = a;
        let mut e = b;
        while e > 0 {
            if e & 1 == 1 {
                acc = (Fp(acc) + Fp(base)).0;
            }
            base = (Fp(base) + Fp(base)).0;
            e >>= 1;
        }
        acc
    }

    #[test]
    fn edge_products() {
        let m = P - 1;
        assert_eq!((Fp(m) * Fp(m)).0, 1); // (-1)^2
        assert_eq!((Fp(m) * Fp(2)).0, P - 2);
        assert_eq!(
            Fp(m).mul_u64(u64::MAX).0,
            naive_mul(m, u128::from(u64::MAX))
        );
        assert_eq!(Fp::from_i128(-5).to_i128(), -5);
        assert_eq!((Fp(3).inv().unwrap() * Fp(3)).0, 1);
        let mut acc = Acc::default();
        for _ in 0..1000 {
            acc.add_product(Fp(m), Fp(m - 7));
        }
        assert_eq!(acc.finish(), Fp::from(1000) * (Fp(m) * Fp(m - 7)));
    }

    proptest! {
        #[test]
        fn mul_matches_naive(a in 0..P, b in 0..P, k in any::<u64>()) {
            prop_assert_eq!((Fp(a) * Fp(b)).0, naive_mul(a, b));
            prop_assert_eq!(Fp(a).mul_u64(k).0, naive_mul(a, u128::from(k)));
            prop_assert_eq!((Fp(a) - Fp(b) + Fp(b)).0, a);
        }
    }
}
