//! The π partial-sum kernel: `4·Σₙ₌ₐᵇ (−1)ⁿ/(2n+1)`, fast and accurate.
//!
//! # Method
//! Consecutive terms are paired: for `n` of the same parity as `a`,
//! `1/(2n+1) − 1/(2n+3) = 2/(u(u+2))` with `u = 2n+1`, so the interval becomes a sum of terms that
//! all share one sign — no cancellation — and one division per two terms. The pair terms are spread
//! over [`LANES`] independent lanes, each a Kahan-compensated sum; the lanes are then combined in a
//! fixed order in double-double arithmetic, and the odd last term (if the count is odd) is added the
//! same way. Every pair term carries at most two roundings (the product and the quotient), and the
//! terms all have the same sign, so the relative error of the whole sum stays within a few units in
//! the last place — well inside the 1e-15 this module promises and tests for up to 2^40 terms.
//!
//! # Determinism across instruction sets
//! The lane loop is written once, over plain arrays, and compiled several times with different
//! `target_feature`s (AVX-512, AVX2, baseline); the CPU is probed at run time. The compiler does not
//! reassociate floating-point operations and Rust never contracts `a*b+c` into a fused multiply-add,
//! so every variant performs exactly the same IEEE operations in the same order per lane: the bits of
//! the result do not depend on the machine, only on `(a, b)`.

use super::{check_interval, RangeError};

/// Number of independent compensated accumulators. A multiple of every vector width we target
/// (8 doubles for AVX-512), and enough independent chains to hide the latency of the Kahan updates.
pub const LANES: usize = 32;

/// The instruction set the kernel uses on this machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isa {
    Avx512,
    Avx2,
    /// Plain code compiled for the target's baseline (SSE2 on x86-64, NEON on aarch64).
    Baseline,
}

impl Isa {
    /// The best instruction set available on the running CPU.
    pub fn detect() -> Isa {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") {
                return Isa::Avx512;
            }
            if std::arch::is_x86_feature_detected!("avx2") {
                return Isa::Avx2;
            }
        }
        Isa::Baseline
    }

    /// The name reported by `piswarm bench kernel`.
    pub fn name(self) -> &'static str {
        match self {
            Isa::Avx512 => "avx512",
            Isa::Avx2 => "avx2",
            Isa::Baseline => {
                if cfg!(target_arch = "aarch64") {
                    "neon"
                } else if cfg!(target_arch = "x86_64") {
                    "sse2"
                } else {
                    "portable"
                }
            }
        }
    }
}

/// The π partial sum `4·Σₙ₌ₐᵇ (−1)ⁿ/(2n+1)` of the inclusive interval `[a, b]`.
pub fn pi_partial(a: u64, b: u64) -> Result<f64, RangeError> {
    check_interval(a, b)?;
    Ok(pi_partial_with(Isa::detect(), a, b))
}

/// [`pi_partial`] with an explicit instruction set (for tests and benchmarks).
///
/// `[a, b]` must already have passed [`check_interval`]. An `isa` the CPU lacks falls back to
/// [`Isa::Baseline`].
pub fn pi_partial_with(isa: Isa, a: u64, b: u64) -> f64 {
    debug_assert!(check_interval(a, b).is_ok());
    let count = b - a + 1;
    let pairs = count / 2;
    let blocks = pairs / LANES as u64;
    // u = 2n + 1 for the first term of the first pair; exact in f64 below 2^53.
    let u0 = (2 * a + 1) as f64;
    let (sums, comps) = lane_sums(isa, u0, blocks);

    let mut total = DoubleDouble::default();
    for (s, c) in sums.iter().zip(&comps) {
        total.add(*s);
        total.add(-*c);
    }
    // Pairs left over after the whole blocks, then the unpaired last term.
    let mut u = u0 + 4.0 * (blocks * LANES as u64) as f64;
    for _ in 0..pairs % LANES as u64 {
        total.add(pair_term(u));
        u += 4.0;
    }
    if count % 2 == 1 {
        total.add(1.0 / u);
    }
    let sign = if a % 2 == 0 { 4.0 } else { -4.0 };
    sign * total.value()
}

/// The textbook forward loop in plain `f64`: what an honest but naive client computes (the
/// original's Python client does exactly this). Used to test that verification accepts it.
pub fn pi_partial_naive(a: u64, b: u64) -> f64 {
    let mut sum = 0.0;
    for n in a..=b {
        let term = 4.0 / (2.0 * n as f64 + 1.0);
        if n % 2 == 0 {
            sum += term;
        } else {
            sum -= term;
        }
    }
    sum
}

#[inline(always)]
fn pair_term(u: f64) -> f64 {
    2.0 / (u * (u + 2.0))
}

fn lane_sums(isa: Isa, u0: f64, blocks: u64) -> ([f64; LANES], [f64; LANES]) {
    #[cfg(target_arch = "x86_64")]
    {
        match isa {
            Isa::Avx512 if std::arch::is_x86_feature_detected!("avx512f") => {
                // SAFETY: the CPU supports AVX-512F, checked just above.
                return unsafe { lane_sums_avx512(u0, blocks) };
            }
            Isa::Avx2 | Isa::Avx512 if std::arch::is_x86_feature_detected!("avx2") => {
                // SAFETY: the CPU supports AVX2, checked just above.
                return unsafe { lane_sums_avx2(u0, blocks) };
            }
            _ => {}
        }
    }
    let _ = isa;
    lane_sums_generic(u0, blocks)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn lane_sums_avx512(u0: f64, blocks: u64) -> ([f64; LANES], [f64; LANES]) {
    lane_sums_generic(u0, blocks)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn lane_sums_avx2(u0: f64, blocks: u64) -> ([f64; LANES], [f64; LANES]) {
    lane_sums_generic(u0, blocks)
}

/// The hot loop: `blocks` rounds of one pair term per lane, Kahan-compensated per lane.
/// Lane `l` of round `i` takes the pair starting at `u = u0 + 4·(LANES·i + l)`.
#[inline(always)]
fn lane_sums_generic(u0: f64, blocks: u64) -> ([f64; LANES], [f64; LANES]) {
    let mut u = [0.0f64; LANES];
    for (l, ul) in u.iter_mut().enumerate() {
        *ul = u0 + 4.0 * l as f64;
    }
    let step = 4.0 * LANES as f64;
    let mut sum = [0.0f64; LANES];
    let mut comp = [0.0f64; LANES];
    for _ in 0..blocks {
        for l in 0..LANES {
            let term = pair_term(u[l]);
            let y = term - comp[l];
            let t = sum[l] + y;
            comp[l] = (t - sum[l]) - y;
            sum[l] = t;
            u[l] += step;
        }
    }
    (sum, comp)
}

/// An unevaluated sum `hi + lo` of two doubles, updated with error-free transformations.
#[derive(Debug, Default, Clone, Copy)]
pub struct DoubleDouble {
    hi: f64,
    lo: f64,
}

impl DoubleDouble {
    /// Adds `x`, keeping the rounding error of the addition in `lo` (Knuth's TwoSum).
    pub fn add(&mut self, x: f64) {
        let s = self.hi + x;
        let bp = s - self.hi;
        let err = (self.hi - (s - bp)) + (x - bp);
        self.hi = s;
        self.lo += err;
    }

    /// The sum rounded to one double.
    pub fn value(self) -> f64 {
        self.hi + self.lo
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiny_intervals_by_hand() {
        assert_eq!(pi_partial(0, 0).unwrap(), 4.0);
        assert_eq!(pi_partial(1, 1).unwrap(), -4.0 / 3.0);
        assert_eq!(pi_partial(0, 1).unwrap(), 8.0 / 3.0); // correctly rounded, unlike 4 - 4/3
        assert!(pi_partial(3, 2).is_err());
        assert!(pi_partial(0, super::super::MAX_TERMS).is_err());
    }

    #[test]
    fn every_isa_gives_the_same_bits() {
        let isas = [Isa::Avx512, Isa::Avx2, Isa::Baseline];
        for (a, b) in [
            (0, 999),
            (1, 100_000),
            (12_345, 1_012_344),
            (1 << 40, (1 << 40) + 77_777),
        ] {
            let bits: Vec<u64> = isas
                .iter()
                .map(|&i| pi_partial_with(i, a, b).to_bits())
                .collect();
            assert!(bits.iter().all(|&x| x == bits[0]), "[{a}, {b}]: {bits:x?}");
        }
    }
}
