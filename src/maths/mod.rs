//! The pure mathematics of piswarm: no I/O, no async, no allocation on hot paths.
//!
//! * [`sums`]: exact sums of the even and of the odd integers of an interval, in `u128`, O(1).
//! * [`kernel`]: the π partial sum `4·Σₙ₌ₐᵇ (−1)ⁿ/(2n+1)`, vectorised and compensated.
//! * [`series`]: closed forms of the Leibniz series (Euler-number expansion of its tail): the O(1)
//!   reference for any interval, the truncation-corrected estimate, the quality of an estimate.
//! * [`exact`]: an order-independent exact accumulator of `f64` values, rounded once at the end.
//!
//! Every function here is deterministic: the same inputs give the same bits on every machine,
//! whatever instruction set the kernel picks (see `kernel` for why).

pub mod exact;
pub mod kernel;
pub mod series;
pub mod sums;

/// The largest supported term index plus one: term indexes `n` satisfy `n < MAX_TERMS = 2^52`.
///
/// Why: the kernel evaluates `2n + 1` in `f64`, which is exact only below `2^53`; and the even and
/// odd sums of `[0, 2^52)` (about `2^102`) fit comfortably in `u128`.
pub const MAX_TERMS: u64 = 1 << 52;

/// The largest interval (in terms) for which the kernel's accuracy (relative error ≤ 1e-15) is
/// guaranteed and tested.
pub const MAX_INTERVAL_TERMS: u64 = 1 << 40;

/// A term interval was outside the supported range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RangeError {
    #[error("interval [{a}, {b}] is empty: a must not exceed b")]
    Empty { a: u64, b: u64 },
    #[error("term index {index} is beyond the supported range (term indexes must be below 2^52 = {max})", max = MAX_TERMS)]
    TooLarge { index: u64 },
}

/// Checks that `[a, b]` is a non-empty interval of supported term indexes.
pub fn check_interval(a: u64, b: u64) -> Result<(), RangeError> {
    if a > b {
        return Err(RangeError::Empty { a, b });
    }
    if b >= MAX_TERMS {
        return Err(RangeError::TooLarge { index: b });
    }
    Ok(())
}
