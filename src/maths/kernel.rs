//! The π partial-sum kernel: `4·Σₙ₌ₐᵇ (−1)ⁿ/(2n+1)`, fast and accurate.
//!
//! # Method
//! Consecutive terms are grouped by four: for `n` of the same parity as `a` and `u = 2n+1`,
//! `1/u − 1/(u+2) = 2/p` with `p = u(u+2)`, and likewise `1/(u+4) − 1/(u+6) = 2/r` with
//! `r = (u+4)(u+6)`, so the four terms add up to `2·(p+r)/(p·r)`: the interval becomes a sum of
//! terms that all share one sign — no cancellation — at one division per four terms (the divider
//! is what bounds the speed). The quad terms are spread over [`LANES`] independent lanes, each a
//! Kahan-compensated sum; the lanes are then combined in a fixed order in double-double
//! arithmetic, followed by the pairs left over (`2/(u(u+2))`, one division per two terms) and the
//! odd last term. A quad term carries five roundings: those of `p` and `r` (each perturbs
//! `1/p + 1/r` by at most one unit, u = 2⁻⁵³, relative) and those of the sum, the product and the
//! quotient, so its relative error is at most about 4u; the terms all have the same sign, so the
//! relative error of the whole sum stays within a few units in the last place — well inside the
//! 1e-15 this module promises and tests for up to 2^40 terms. (`p·r < 2^213` for every supported
//! `n`, far from overflow.)
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
    // A block is one quad term (two pairs) per lane.
    let blocks = pairs / (2 * LANES as u64);
    // u = 2n + 1 for the first term of the first pair; exact in f64 below 2^53.
    let u0 = (2 * a + 1) as f64;
    let (sums, comps) = lane_sums(isa, u0, blocks);

    let mut total = DoubleDouble::default();
    for (s, c) in sums.iter().zip(&comps) {
        // The lanes hold Σ (p+r)/(p·r); the quad terms are twice that (an exact scaling).
        total.add(2.0 * *s);
        total.add(-2.0 * *c);
    }
    // Pairs left over after the whole blocks, then the unpaired last term.
    let mut u = u0 + 8.0 * (blocks * LANES as u64) as f64;
    for _ in 0..pairs % (2 * LANES as u64) {
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

/// Half a quad term: `1/u − 1/(u+2) + 1/(u+4) − 1/(u+6) = 2·quad_half(u)`.
#[inline(always)]
fn quad_half(u: f64) -> f64 {
    let p = u * (u + 2.0);
    let r = (u + 4.0) * (u + 6.0);
    (p + r) / (p * r)
}

/// The hot loop: `blocks` rounds of one quad term per lane, Kahan-compensated per lane (the lanes
/// hold half the quad terms; the caller doubles them). Lane `l` of round `i` takes the four terms
/// starting at `u = u0 + 8·(LANES·i + l)`.
#[inline(always)]
fn lane_sums_generic(u0: f64, blocks: u64) -> ([f64; LANES], [f64; LANES]) {
    let mut u = [0.0f64; LANES];
    for (l, ul) in u.iter_mut().enumerate() {
        *ul = u0 + 8.0 * l as f64;
    }
    let step = 8.0 * LANES as f64;
    let mut sum = [0.0f64; LANES];
    let mut comp = [0.0f64; LANES];
    for _ in 0..blocks {
        for l in 0..LANES {
            let term = quad_half(u[l]);
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
    fn lengths_around_whole_blocks_agree_with_the_reference() {
        // A block is one quad term per lane: 4·LANES terms. Probe lengths on either side of its
        // multiples (whole blocks, leftover pairs, the odd last term), near 0 and far from it.
        let block = 4 * LANES as u64;
        for a in [0u64, 1, 1_000_003, (1 << 40) + 1] {
            for len in (1..=6).chain((1..=3).flat_map(|k| k * block - 3..=k * block + 3)) {
                let b = a + len - 1;
                let got = pi_partial(a, b).unwrap();
                let reference = crate::maths::series::pi_partial_reference(a, b);
                assert!(
                    (got - reference).abs() <= 2e-15 * reference.abs(),
                    "[{a}, {b}]: {got:e} vs the reference {reference:e}"
                );
            }
        }
    }

    #[test]
    fn every_isa_gives_the_same_bits() {
        let isas = [Isa::Avx512, Isa::Avx2, Isa::Baseline];
        for (a, b) in [
            (0, 999),
            (1, 100_000),
            (12_345, 1_012_344),
            (1 << 40, (1 << 40) + 77_777),
            (7, 7 + 4 * LANES as u64 * 3 + 2),
        ] {
            let bits: Vec<u64> = isas
                .iter()
                .map(|&i| pi_partial_with(i, a, b).to_bits())
                .collect();
            assert!(bits.iter().all(|&x| x == bits[0]), "[{a}, {b}]: {bits:x?}");
        }
    }
}
