//! An exact, order-independent accumulator of `f64` values ("superaccumulator").
//!
//! Every finite double is an integer multiple of 2^-1074. [`ExactSum`] keeps the running total as
//! one long fixed-point integer in 32-bit digits held in `i64` limbs (the spare 32 bits absorb
//! carries, so an addition touches three limbs and never loops). The total is therefore exact, and
//! its rounding to `f64` — done once, at the end, to nearest-even — does not depend on the order in
//! which the values arrived. This is what makes a run's π bit-identical whatever the number of
//! workers and the order of their results.

use std::fmt;

/// Weight of limb 0 is 2^-BIAS; BIAS is a multiple of 32 at least 1074 (the smallest subnormal).
const BIAS: i32 = 1088;
/// Enough limbs for any sum of fewer than 2^62 finite doubles.
const LIMBS: usize = 72;
/// Carries are propagated after this many additions; each addition adds less than 2^32 to a limb.
const NORMALIZE_EVERY: u32 = 1 << 30;

/// The exact sum of a multiset of finite doubles.
#[derive(Clone, PartialEq, Eq)]
pub struct ExactSum {
    limbs: [i64; LIMBS],
    pending: u32,
}

impl Default for ExactSum {
    fn default() -> Self {
        ExactSum {
            limbs: [0; LIMBS],
            pending: 0,
        }
    }
}

impl fmt::Debug for ExactSum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ExactSum({:e} = {})", self.value(), self.to_hex())
    }
}

/// The value added was NaN or infinite.
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
#[error("cannot add a non-finite value ({0}) to an exact sum")]
pub struct NotFinite(pub f64);

impl ExactSum {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `x` exactly. NaN and infinities are refused and leave the sum unchanged.
    pub fn add(&mut self, x: f64) -> Result<(), NotFinite> {
        if !x.is_finite() {
            return Err(NotFinite(x));
        }
        if x == 0.0 {
            return Ok(());
        }
        let bits = x.to_bits();
        let biased_exp = ((bits >> 52) & 0x7ff) as i32;
        let fraction = bits & ((1u64 << 52) - 1);
        let (mantissa, exp) = if biased_exp == 0 {
            (fraction, -1074)
        } else {
            (fraction | (1u64 << 52), biased_exp - 1075)
        };
        let pos = (exp + BIAS) as u32; // >= 14 by the choice of BIAS
        let limb = (pos / 32) as usize;
        let shifted = u128::from(mantissa) << (pos % 32);
        let digits = [
            (shifted & 0xffff_ffff) as i64,
            ((shifted >> 32) & 0xffff_ffff) as i64,
            (shifted >> 64) as i64,
        ];
        for (i, d) in digits.into_iter().enumerate() {
            if x < 0.0 {
                self.limbs[limb + i] -= d;
            } else {
                self.limbs[limb + i] += d;
            }
        }
        self.pending += 1;
        if self.pending >= NORMALIZE_EVERY {
            self.normalize();
        }
        Ok(())
    }

    /// Adds another exact sum.
    pub fn merge(&mut self, other: &ExactSum) {
        self.normalize();
        let mut other = other.clone();
        other.normalize();
        for (mine, theirs) in self.limbs.iter_mut().zip(other.limbs) {
            *mine += theirs;
        }
        self.normalize();
    }

    /// Propagates carries: limbs 0..LIMBS-1 end in [0, 2^32), the top limb carries the sign.
    fn normalize(&mut self) {
        for i in 0..LIMBS - 1 {
            let carry = self.limbs[i] >> 32;
            self.limbs[i] -= carry << 32;
            self.limbs[i + 1] += carry;
        }
        self.pending = 0;
    }

    /// The exact sum rounded once to the nearest double (ties to even).
    pub fn value(&self) -> f64 {
        let mut n = self.clone();
        n.normalize();
        let negative = n.limbs[LIMBS - 1] < 0;
        if negative {
            for limb in n.limbs.iter_mut() {
                *limb = -*limb;
            }
            n.normalize();
        }
        let Some(top) = n.limbs.iter().rposition(|&l| l != 0) else {
            return 0.0;
        };
        let limb = |i: isize| {
            if i < 0 {
                0u128
            } else {
                n.limbs[i as usize] as u128
            }
        };
        let top = top as isize;
        let window = (limb(top) << 64) | (limb(top - 1) << 32) | limb(top - 2);
        let lower_nonzero = (0..(top - 2).max(0) as usize).any(|i| n.limbs[i] != 0);
        let lz = window.leading_zeros();
        let aligned = window << lz;
        let mut top64 = (aligned >> 64) as u64;
        if lower_nonzero || (aligned as u64) != 0 {
            // A sticky bit below the rounding position: breaks exact ties the right way.
            top64 |= 1;
        }
        // Bit 0 of top64 has weight 2^(32·(top-2) - BIAS + 64 - lz).
        let exp = 32 * (top as i32 - 2) - BIAS + 64 - lz as i32;
        let magnitude = scale_by_power_of_two(top64 as f64, exp);
        if negative {
            -magnitude
        } else {
            magnitude
        }
    }

    /// A canonical text form (normalized limbs, hexadecimal, most significant first), for storage.
    pub fn to_hex(&self) -> String {
        let mut n = self.clone();
        n.normalize();
        let top = n.limbs.iter().rposition(|&l| l != 0).unwrap_or(0);
        let mut out = String::with_capacity(9 * (top + 1));
        for (i, limb) in n.limbs[..=top].iter().enumerate().rev() {
            if i != top {
                out.push(':');
            }
            out.push_str(&format!("{limb:x}"));
        }
        if n.limbs[top] < 0 {
            // The top limb is negative: spell it as a signed number.
            let rest = out.split_once(':').map(|(_, r)| r.to_string());
            out = format!("-{:x}", -n.limbs[top]);
            if let Some(rest) = rest {
                out.push(':');
                out.push_str(&rest);
            }
        }
        out
    }

    /// Parses [`ExactSum::to_hex`]'s output.
    pub fn from_hex(text: &str) -> Option<ExactSum> {
        let mut sum = ExactSum::default();
        let parts: Vec<&str> = text.split(':').collect();
        if parts.is_empty() || parts.len() > LIMBS {
            return None;
        }
        let top = parts.len() - 1;
        for (k, part) in parts.iter().enumerate() {
            let index = top - k;
            let (negative, digits) = match part.strip_prefix('-') {
                Some(d) if k == 0 => (true, d),
                _ => (false, *part),
            };
            let value = i64::from_str_radix(digits, 16).ok()?;
            if value < 0 || (k != 0 && value >= 1 << 32) {
                return None;
            }
            sum.limbs[index] = if negative { -value } else { value };
        }
        Some(sum)
    }
}

/// `x · 2^exp`, exact whenever the result is a normal double.
fn scale_by_power_of_two(mut x: f64, mut exp: i32) -> f64 {
    while exp > 1000 {
        x *= f64::powi(2.0, 1000);
        exp -= 1000;
    }
    while exp < -1000 {
        x *= f64::powi(2.0, -1000);
        exp += 1000;
    }
    x * f64::powi(2.0, exp)
}

#[cfg(test)]
mod tests {
    use super::*;
    use num_bigint::BigInt;
    use num_traits::{Signed, Zero};

    /// The exact value of `x` in units of 2^-1074, as an independent oracle.
    fn units(x: f64) -> BigInt {
        let bits = x.to_bits();
        let e = ((bits >> 52) & 0x7ff) as i64;
        let f = bits & ((1u64 << 52) - 1);
        let (m, exp) = if e == 0 {
            (f, 0)
        } else {
            (f | (1 << 52), e - 1)
        };
        let v = BigInt::from(m) << exp as usize;
        if x < 0.0 {
            -v
        } else {
            v
        }
    }

    fn assert_correctly_rounded(values: &[f64]) {
        let mut sum = ExactSum::new();
        let mut exact = BigInt::zero();
        for &v in values {
            sum.add(v).unwrap();
            exact += units(v);
        }
        let r = sum.value();
        let err = (units(r) - &exact).abs();
        for neighbour in [next_up(r), next_down(r)] {
            let other = (units(neighbour) - &exact).abs();
            assert!(
                err <= other,
                "{r:e} is not the nearest double to the exact sum of {values:?}"
            );
        }
    }

    fn next_up(x: f64) -> f64 {
        if x == 0.0 {
            return f64::from_bits(1);
        }
        if x > 0.0 {
            f64::from_bits(x.to_bits() + 1)
        } else {
            f64::from_bits(x.to_bits() - 1)
        }
    }
    fn next_down(x: f64) -> f64 {
        -next_up(-x)
    }

    #[test]
    fn cancellation_is_exact() {
        let mut s = ExactSum::new();
        for v in [1e300, 1.0, -1e300, 1e-300, -1.0] {
            s.add(v).unwrap();
        }
        assert_eq!(s.value(), 1e-300);
        assert_correctly_rounded(&[1.0, 1e-16, 1e-16]);
        assert_correctly_rounded(&[1.0, f64::EPSILON / 2.0, 1e-300]);
        assert_correctly_rounded(&[-3.0, 1e-20, 5e-324]);
    }

    #[test]
    fn rejects_non_finite() {
        let mut s = ExactSum::new();
        assert!(s.add(f64::NAN).is_err());
        assert!(s.add(f64::INFINITY).is_err());
        assert_eq!(s.value(), 0.0);
    }

    #[test]
    fn hex_round_trip() {
        let mut s = ExactSum::new();
        for v in [3.0, -1e-17, 2.5e-200, -7.0] {
            s.add(v).unwrap();
            let back = ExactSum::from_hex(&s.to_hex()).unwrap();
            assert_eq!(back.value().to_bits(), s.value().to_bits());
            assert_eq!(back.to_hex(), s.to_hex());
        }
        assert!(ExactSum::from_hex("zz").is_none());
    }

    proptest::proptest! {
        #[test]
        fn correctly_rounded_and_order_independent(
            values in proptest::collection::vec(
                (-1e3f64..1e3, -60i32..60).prop_map(|(m, e)| m * f64::powi(2.0, e)), 1..40)
        ) {
            assert_correctly_rounded(&values);
            let mut forward = ExactSum::new();
            let mut backward = ExactSum::new();
            for &v in &values { forward.add(v).unwrap(); }
            for &v in values.iter().rev() { backward.add(v).unwrap(); }
            proptest::prop_assert_eq!(forward.value().to_bits(), backward.value().to_bits());
        }
    }
    use proptest::prelude::Strategy;
}
