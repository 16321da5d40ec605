//! Closed forms of the Leibniz series, all O(1).
//!
//! # The tail
//! Let `T(M) = Σₙ₌ₘ^∞ (−1)ⁿ/(2n+1)`. It equals `(−1)ᴹ/4 · [ψ((2M+3)/4) − ψ((2M+1)/4)]` (ψ the
//! digamma function), and for large `M` it has the asymptotic expansion in the Euler numbers
//! `E₀ = 1, E₂ = −1, E₄ = 5, E₆ = −61, E₈ = 1385, …`:
//!
//! ```text
//! T(M) ~ (−1)ᴹ · ½ · Σₖ E₂ₖ / (2M)^(2k+1)
//! ```
//!
//! For `M ≥ 1024` nine terms (up to E₁₆) leave a truncation error below 10⁻⁴⁰ relative to `T(M)`.
//! Near 0 (an interval starting below 1024) the first few thousand terms are summed directly.
//!
//! # Uses
//! * The truncation-corrected estimate of π after the prefix `[0, N−1]`: `4·(Σ + T(N))`.
//! * The reference value of any interval, `4·(T(a) − T(b+1))`, used by the coordinator to check a
//!   worker's π partial. Subtracting two tails far from 0 would cancel catastrophically, so the
//!   difference is expanded term by term as `x⁻ᵏ ∓ y⁻ᵏ` and, for the minus case, rewritten as
//!   `(y − x)·Σⱼ x⁻⁽ᵏ⁻ʲ⁾ y⁻⁽ʲ⁺¹⁾`, a sum of positive terms.

use super::kernel::{DoubleDouble, Kernel};

/// Euler numbers E₀, E₂, …, E₁₆.
const EULER: [f64; 9] = [
    1.0,
    -1.0,
    5.0,
    -61.0,
    1385.0,
    -50521.0,
    2702765.0,
    -199360981.0,
    19391512145.0,
];

/// Below this index, tails and references are completed by summing terms directly.
const DIRECT_BELOW: u64 = 1024;

/// π as a double-double: `PI_HI + PI_LO` is π to about 32 digits.
const PI_HI: f64 = std::f64::consts::PI;
const PI_LO: f64 = 1.2246467991473532e-16;

/// `Σₙ₌ₐᵇ (−1)ⁿ/(2n+1)` summed directly, in double-double (for short stretches only).
///
/// Each term is itself taken in double-double (the quotient plus its exact remainder, via a fused
/// multiply-add), because neighbouring terms cancel: rounding them to doubles first would lose
/// about log10(2a) digits of the sum.
fn direct(a: u64, b: u64) -> DoubleDouble {
    let mut sum = DoubleDouble::default();
    // Smallest terms first.
    for n in (a..=b).rev() {
        let d = (2 * n + 1) as f64;
        let q = 1.0 / d;
        let remainder = (-q).mul_add(d, 1.0); // exact: 1 − q·d
        let (hi, lo) = (q, remainder / d);
        if n % 2 == 0 {
            sum.add(hi);
            sum.add(lo);
        } else {
            sum.add(-hi);
            sum.add(-lo);
        }
    }
    sum
}

/// The tail `T(M) = Σₙ₌ₘ^∞ (−1)ⁿ/(2n+1)`.
pub fn tail(m: u64) -> f64 {
    if m >= DIRECT_BELOW {
        let x = 2.0 * m as f64;
        let inv2 = 1.0 / (x * x);
        // Horner, smallest terms first.
        let mut s = 0.0;
        for e in EULER.iter().rev() {
            s = s * inv2 + e;
        }
        let v = 0.5 * s / x;
        if m % 2 == 0 {
            v
        } else {
            -v
        }
    } else {
        let mut sum = direct(m, DIRECT_BELOW - 1);
        sum.add(tail(DIRECT_BELOW));
        sum.value()
    }
}

/// The exact π partial `4·Σₙ₌ₐᵇ (−1)ⁿ/(2n+1)` from closed forms, in O(1), to about 1e-15
/// relative. Requires `a ≤ b < 2^52`.
pub fn pi_partial_reference(a: u64, b: u64) -> f64 {
    if a < DIRECT_BELOW {
        // Sum directly well past the start, so that the tail part is small against the whole
        // and adding the two cannot cancel (the sum is at least about half its first term).
        let split = 4 * DIRECT_BELOW;
        let mut sum = direct(a, b.min(split - 1));
        if b >= split {
            sum.add(tail_difference(split, b));
        }
        return 4.0 * sum.value();
    }
    4.0 * tail_difference(a, b)
}

/// `T(a) − T(b+1)` for `a ≥ DIRECT_BELOW`, without cancellation.
fn tail_difference(a: u64, b: u64) -> f64 {
    let x = 2.0 * a as f64;
    let y = 2.0 * (b + 1) as f64;
    let d = 2.0 * (b + 1 - a) as f64; // y − x, exact
    let same_sign = (b + 1 - a) % 2 == 0; // T(a) and T(b+1) have the same sign
    let (ix, iy) = (1.0 / x, 1.0 / y);
    let mut total = 0.0;
    // Term k = 2m+1 of the expansion: E₂ₘ/2 · (x⁻ᵏ ∓ y⁻ᵏ), summed from the smallest.
    for (m, e) in EULER.iter().enumerate().rev() {
        let k = 2 * m + 1;
        let piece = if same_sign {
            // x⁻ᵏ − y⁻ᵏ = d · Σⱼ₌₀ᵏ⁻¹ x⁻⁽ᵏ⁻ʲ⁾ y⁻⁽ʲ⁺¹⁾, all positive.
            let mut s = 0.0;
            for j in 0..k {
                s += ix.powi((k - j) as i32) * iy.powi(j as i32 + 1);
            }
            d * s
        } else {
            ix.powi(k as i32) + iy.powi(k as i32)
        };
        total += 0.5 * e * piece;
    }
    if a % 2 == 0 {
        total
    } else {
        -total
    }
}

/// `|estimate − π|`, computed against π in double-double so that it is meaningful below 1e-16.
pub fn pi_error(estimate: f64) -> f64 {
    ((estimate - PI_HI) - PI_LO).abs()
}

/// The number of correct decimal places of an estimate of π: the largest `d` with
/// `|estimate − π| ≤ ½·10⁻ᵈ`, at most 17 (beyond what a double can tell).
pub fn correct_digits(estimate: f64) -> u32 {
    let err = pi_error(estimate);
    if !err.is_finite() {
        return 0;
    }
    if err == 0.0 {
        return 17;
    }
    let d = (-(2.0 * err).log10()).floor();
    d.clamp(0.0, 17.0) as u32
}

/// [`correct_digits`] of every value within `bound` of `estimate`: the largest `d` with
/// `|estimate − π| + bound ≤ ½·10⁻ᵈ`.
pub fn correct_digits_within(estimate: f64, bound: f64) -> u32 {
    let err = pi_error(estimate) + bound.max(0.0);
    if !err.is_finite() {
        return 0;
    }
    if err == 0.0 {
        return 17;
    }
    let d = (-(2.0 * err).log10()).floor();
    d.clamp(0.0, 17.0) as u32
}

/// The truncation-corrected estimate of π from the π partial of the prefix `[0, n−1]`:
/// `prefix + 4·T(n)`.
pub fn pi_corrected(prefix: f64, n: u64) -> f64 {
    prefix + 4.0 * tail(n)
}

/// An upper bound on `Σₙ₌ₐᵇ 4/(2n+1)`, the sum of the magnitudes of the π partial's terms.
pub fn magnitude_sum_bound(a: u64, b: u64) -> f64 {
    let first = 1.0 / (2 * a + 1) as f64;
    // Σ 1/(2n+1) over [a, b] ≤ 1/(2a+1) + ½·ln((2b+1)/(2a+1)).
    let log = (2.0 * (b - a) as f64 / (2 * a + 1) as f64).ln_1p();
    4.0 * (first + 0.5 * log) * (1.0 + 1e-12)
}

/// A bound on the error of [`pi_partial_reference`] itself: 10⁻¹⁴ of its value (its worst
/// error measured against exact rationals is 2·10⁻¹⁶ relative; tests/it/maths_oracle.rs), plus
/// the smallest normal double.
pub fn reference_error(reference: f64) -> f64 {
    1e-14 * reference.abs() + f64::MIN_POSITIVE
}

/// The largest difference between a compensated kernel's partial ([`super::kernel`]: relative
/// error at most [`Kernel::relative_bound`], tested) and the reference: what `--strict` accepts
/// from a run of that kernel.
pub fn kernel_tolerance(kernel: Kernel, reference: f64) -> f64 {
    kernel.relative_bound() * reference.abs() + reference_error(reference)
}

/// The largest error an honest client may make on the π partial of `[a, b]` when it sums the
/// terms forward in plain `f64`, plus the error of [`pi_partial_reference`] itself.
///
/// Recursive summation errs by at most `u·Σₖ|sₖ|` over its partial sums `sₖ` (u = 2⁻⁵³), and each
/// term `tᵢ = ±4/(2i+1)` carries one rounding of its own, `u·|tᵢ|`. The series alternates with
/// decreasing terms, so every partial sum is at most the first term, `|sₖ| ≤ |tₐ| = 4/(2a+1)`:
/// the error is at most `u·(n·|tₐ| + Σ|tᵢ|)`. We allow twice that (for second-order terms and
/// clients that round a little differently), plus the reference's own error ([`reference_error`]).
pub fn pi_partial_tolerance(a: u64, b: u64, reference: f64) -> f64 {
    let n = (b - a + 1) as f64;
    let u = f64::EPSILON / 2.0;
    let first = 4.0 / (2 * a + 1) as f64;
    2.0 * u * (n * first + magnitude_sum_bound(a, b)) + reference_error(reference)
}

/// Whether `reported` is an acceptable π partial for `[a, b]` (see [`pi_partial_tolerance`]).
pub fn pi_partial_plausible(a: u64, b: u64, reported: f64) -> bool {
    if !reported.is_finite() {
        return false;
    }
    let reference = pi_partial_reference(a, b);
    (reported - reference).abs() <= pi_partial_tolerance(a, b, reference)
}
