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
//! # Kernels: grouping by four or by eight
//! The grouping above is [`Kernel::Quad`]. [`Kernel::Oct`] (the default for new runs) groups two
//! quads: with `p₁ = u(u+2)`, `r₁ = (u+4)(u+6)`, `p₂ = (u+8)(u+10)`, `r₂ = (u+12)(u+14)`,
//! `m₁ = p₁r₁` and `m₂ = p₂r₂`, eight terms add up to `2·((p₁+r₁)·m₂ + (p₂+r₂)·m₁)/(m₁·m₂)`: one
//! division per eight terms, the divider's work halved for seven more adds and multiplies. On a
//! CPU whose divider binds (Intel with AVX-512) that is about 1.5× the speed; where the adds bind
//! it is about even (docs/performance.md). Range: `m₁·m₂ < (u+14)⁸`, finite while `u < 2^127`;
//! term indexes stop at 2^52 (`u < 2^53`, see [`super::MAX_TERMS`]), so it never overflows, and
//! the quotient, about `4/u²`, stays above 2^−105, far from the subnormals. (Grouping by sixteen
//! would still be finite below 2^53 — `(u+30)¹⁶ < 2^1024` needs `u < 2^64` — but it adds more
//! roundings than it saves divisions where the adds bind.)
//!
//! Error of an oct term, to first order in u = 2⁻⁵³: the roundings of `p₁, r₁, p₂, r₂` (and of
//! `u + k` once `u + k` passes 2^53) perturb `1/p₁ + 1/r₁ + 1/p₂ + 1/r₂` by a weighted mean of
//! their relative errors, at most 2u; then `p₁+r₁`, `p₂+r₂`, `m₁`, `m₂`, the two cross products,
//! their sum, `m₁·m₂` and the quotient make the numerator at most 4u off, the denominator 3u and
//! the quotient one more: 10u in all. Kahan's summation of same-sign terms adds at most 2u of the
//! sum (plus O(n·u²)), the double-double combination and the final rounding one more: 13u, about
//! 1.45e-15 relative, which [`Kernel::relative_bound`] rounds up to 2e-15. (The quad term's is
//! 5u + 3u, within the 1e-15 of [`Kernel::Quad`].) Both are tested against exact rationals
//! (tests/it/maths_oracle.rs), at a = 0, near 2^52 and for intervals of 1 to 2^34 terms.
//!
//! Bit-identity is promised per (job, kernel): a run records its kernel (the store's
//! `runs.kernel`, the welcome's `kernel`) and every worker of the run computes with it, so a run
//! started with the quad kernel resumes with it, bit for bit.
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

/// A version of the π kernel: how the terms are grouped before the compensated sum. The bits of a
/// π partial depend on `(a, b, kernel)` and nothing else.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kernel {
    /// Four terms per division: every run started before the oct kernel existed.
    Quad,
    /// Eight terms per division: new runs.
    Oct,
}

impl Kernel {
    /// The kernel new runs are started with.
    pub const CURRENT: Kernel = Kernel::Oct;
    /// Every kernel, oldest first.
    pub const ALL: [Kernel; 2] = [Kernel::Quad, Kernel::Oct];

    /// The name on the wire (`welcome.kernel`), in the store and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Kernel::Quad => "quad",
            Kernel::Oct => "oct",
        }
    }

    /// The kernel of a name given by [`Kernel::name`].
    pub fn from_name(name: &str) -> Option<Kernel> {
        Kernel::ALL.into_iter().find(|k| k.name() == name)
    }

    /// Terms per division in the hot loop.
    pub fn terms_per_division(self) -> u64 {
        match self {
            Kernel::Quad => 4,
            Kernel::Oct => 8,
        }
    }

    /// A bound on the relative error of this kernel's π partial of any interval of at most
    /// [`MAX_INTERVAL_TERMS`](super::MAX_INTERVAL_TERMS) terms (derived in the module's docs,
    /// tested against exact rationals): what `serve --strict` allows.
    pub fn relative_bound(self) -> f64 {
        match self {
            Kernel::Quad => 1e-15,
            Kernel::Oct => 2e-15,
        }
    }

    /// The π partial sum `4·Σₙ₌ₐᵇ (−1)ⁿ/(2n+1)` of `[a, b]` computed by this kernel.
    pub fn pi_partial(self, a: u64, b: u64) -> Result<f64, RangeError> {
        check_interval(a, b)?;
        Ok(self.pi_partial_with(Isa::detect(), a, b))
    }

    /// [`Kernel::pi_partial`] with an explicit instruction set (for tests and benchmarks).
    ///
    /// `[a, b]` must already have passed [`check_interval`]. An `isa` the CPU lacks falls back to
    /// [`Isa::Baseline`].
    pub fn pi_partial_with(self, isa: Isa, a: u64, b: u64) -> f64 {
        debug_assert!(check_interval(a, b).is_ok());
        let count = b - a + 1;
        let pairs = count / 2;
        // A block is one group (a quad or an oct term) per lane.
        let pairs_per_group = self.terms_per_division() / 2;
        let blocks = pairs / (pairs_per_group * LANES as u64);
        // u = 2n + 1 for the first term of the first pair; exact in f64 below 2^53.
        let u0 = (2 * a + 1) as f64;
        let hot = match self {
            Kernel::Quad => HotLoop::Quad,
            Kernel::Oct => HotLoop::Oct,
        };
        let (sums, comps) = lane_sums(hot, isa, u0, blocks);

        let mut total = DoubleDouble::default();
        for (s, c) in sums.iter().zip(&comps) {
            // The lanes hold half the group terms; doubling is an exact scaling.
            total.add(2.0 * *s);
            total.add(-2.0 * *c);
        }
        // Pairs left over after the whole blocks, then the unpaired last term.
        let group_step = (2 * self.terms_per_division()) as f64;
        let mut u = u0 + group_step * (blocks * LANES as u64) as f64;
        for _ in 0..pairs % (pairs_per_group * LANES as u64) {
            total.add(pair_term(u));
            u += 4.0;
        }
        if count % 2 == 1 {
            total.add(1.0 / u);
        }
        let sign = if a % 2 == 0 { 4.0 } else { -4.0 };
        sign * total.value()
    }
}

impl std::fmt::Display for Kernel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The π partial sum `4·Σₙ₌ₐᵇ (−1)ⁿ/(2n+1)` of the inclusive interval `[a, b]`, by the kernel of
/// new runs ([`Kernel::CURRENT`]).
pub fn pi_partial(a: u64, b: u64) -> Result<f64, RangeError> {
    Kernel::CURRENT.pi_partial(a, b)
}

/// [`pi_partial`] with an explicit instruction set (for tests and benchmarks).
///
/// `[a, b]` must already have passed [`check_interval`]. An `isa` the CPU lacks falls back to
/// [`Isa::Baseline`].
pub fn pi_partial_with(isa: Isa, a: u64, b: u64) -> f64 {
    Kernel::CURRENT.pi_partial_with(isa, a, b)
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

type Lanes = ([f64; LANES], [f64; LANES]);

/// The hot loops: the two kernels', and two halves of the oct loop that tell what bounds it on a
/// CPU (`piswarm bench kernel`): its arithmetic without the division, and the divisions alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HotLoop {
    Quad,
    Oct,
    /// The oct loop with its division replaced by a multiplication (meaningless values).
    OctWithoutDivision,
    /// One division per lane and round, accumulated, and nothing else of the oct loop.
    DivisionsOnly,
}

/// Runs `blocks` rounds of a hot loop from `u0` on `isa` and returns a value that depends on
/// every round (for benchmarks, which must not let the compiler drop the work).
pub fn run_hot_loop(hot: HotLoop, isa: Isa, u0: f64, blocks: u64) -> f64 {
    let (sums, comps) = lane_sums(hot, isa, u0, blocks);
    sums.iter().zip(&comps).map(|(s, c)| s - c).sum()
}

fn lane_sums(kernel: HotLoop, isa: Isa, u0: f64, blocks: u64) -> Lanes {
    #[cfg(target_arch = "x86_64")]
    {
        match isa {
            Isa::Avx512 if std::arch::is_x86_feature_detected!("avx512f") => {
                // SAFETY: the CPU supports AVX-512F, checked just above.
                return unsafe { lane_sums_avx512(kernel, u0, blocks) };
            }
            Isa::Avx2 | Isa::Avx512 if std::arch::is_x86_feature_detected!("avx2") => {
                // SAFETY: the CPU supports AVX2, checked just above.
                return unsafe { lane_sums_avx2(kernel, u0, blocks) };
            }
            _ => {}
        }
    }
    let _ = isa;
    lane_sums_any(kernel, u0, blocks)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn lane_sums_avx512(kernel: HotLoop, u0: f64, blocks: u64) -> Lanes {
    lane_sums_any(kernel, u0, blocks)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn lane_sums_avx2(kernel: HotLoop, u0: f64, blocks: u64) -> Lanes {
    lane_sums_any(kernel, u0, blocks)
}

/// One hot loop per kernel, inlined into each instruction set's function.
#[inline(always)]
fn lane_sums_any(hot: HotLoop, u0: f64, blocks: u64) -> Lanes {
    match hot {
        HotLoop::Quad => lane_sums_generic(u0, blocks, 8.0, quad_half),
        HotLoop::Oct => lane_sums_generic(u0, blocks, 16.0, oct_half),
        HotLoop::OctWithoutDivision => lane_sums_generic(u0, blocks, 16.0, oct_half_times),
        HotLoop::DivisionsOnly => divisions_only(u0, blocks),
    }
}

/// [`oct_half`] with a multiplication where it divides: the same adds and multiplies.
#[inline(always)]
fn oct_half_times(u: f64) -> f64 {
    let (numerator, denominator) = oct_fraction(u);
    numerator * denominator
}

/// One division per lane and round (what the oct loop divides), accumulated without
/// compensation.
#[inline(always)]
fn divisions_only(u0: f64, blocks: u64) -> Lanes {
    let mut u = [0.0f64; LANES];
    for (l, ul) in u.iter_mut().enumerate() {
        *ul = u0 + 16.0 * l as f64;
    }
    let step = 16.0 * LANES as f64;
    let mut sum = [0.0f64; LANES];
    for _ in 0..blocks {
        for l in 0..LANES {
            sum[l] += 1.0 / u[l];
            u[l] += step;
        }
    }
    (sum, [0.0; LANES])
}

/// Half a quad term: `1/u − 1/(u+2) + 1/(u+4) − 1/(u+6) = 2·quad_half(u)`.
#[inline(always)]
fn quad_half(u: f64) -> f64 {
    let p = u * (u + 2.0);
    let r = (u + 4.0) * (u + 6.0);
    (p + r) / (p * r)
}

/// Half an oct term: the eight terms from `u` add up to `2·oct_half(u)`
/// (`1/p₁ + 1/r₁ + 1/p₂ + 1/r₂` over one division; see the module's docs).
#[inline(always)]
fn oct_half(u: f64) -> f64 {
    let (numerator, denominator) = oct_fraction(u);
    numerator / denominator
}

/// The numerator `(p₁+r₁)·m₂ + (p₂+r₂)·m₁` and the denominator `m₁·m₂` of [`oct_half`].
#[inline(always)]
fn oct_fraction(u: f64) -> (f64, f64) {
    let p1 = u * (u + 2.0);
    let r1 = (u + 4.0) * (u + 6.0);
    let p2 = (u + 8.0) * (u + 10.0);
    let r2 = (u + 12.0) * (u + 14.0);
    let m1 = p1 * r1;
    let m2 = p2 * r2;
    ((p1 + r1) * m2 + (p2 + r2) * m1, m1 * m2)
}

/// The hot loop: `blocks` rounds of one group term per lane, Kahan-compensated per lane (the
/// lanes hold half the group terms; the caller doubles them). Lane `l` of round `i` takes the
/// group starting at `u = u0 + group_step·(LANES·i + l)`, `group_step` being twice the terms per
/// group.
#[inline(always)]
fn lane_sums_generic(u0: f64, blocks: u64, group_step: f64, half: impl Fn(f64) -> f64) -> Lanes {
    let mut u = [0.0f64; LANES];
    for (l, ul) in u.iter_mut().enumerate() {
        *ul = u0 + group_step * l as f64;
    }
    let step = group_step * LANES as f64;
    let mut sum = [0.0f64; LANES];
    let mut comp = [0.0f64; LANES];
    for _ in 0..blocks {
        for l in 0..LANES {
            let term = half(u[l]);
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
        // A block is one group per lane: terms_per_division·LANES terms. Probe lengths on either
        // side of its multiples (whole blocks, leftover pairs, the odd last term), near 0 and far
        // from it, for every kernel.
        for kernel in Kernel::ALL {
            let block = kernel.terms_per_division() * LANES as u64;
            for a in [
                0u64,
                1,
                1_000_003,
                (1 << 40) + 1,
                super::super::MAX_TERMS - 3 * block - 9,
            ] {
                for len in (1..=6).chain((1..=3).flat_map(|k| k * block - 3..=k * block + 3)) {
                    let b = a + len - 1;
                    let got = kernel.pi_partial(a, b).unwrap();
                    let reference = crate::maths::series::pi_partial_reference(a, b);
                    assert!(
                        (got - reference).abs() <= 2.0 * kernel.relative_bound() * reference.abs(),
                        "{kernel} [{a}, {b}]: {got:e} vs the reference {reference:e}"
                    );
                }
            }
        }
    }

    #[test]
    fn every_isa_gives_the_same_bits() {
        let isas = [Isa::Avx512, Isa::Avx2, Isa::Baseline];
        for kernel in Kernel::ALL {
            for (a, b) in [
                (0, 999),
                (1, 100_000),
                (12_345, 1_012_344),
                (1 << 40, (1 << 40) + 77_777),
                (7, 7 + 8 * LANES as u64 * 3 + 2),
            ] {
                let bits: Vec<u64> = isas
                    .iter()
                    .map(|&i| kernel.pi_partial_with(i, a, b).to_bits())
                    .collect();
                assert!(
                    bits.iter().all(|&x| x == bits[0]),
                    "{kernel} [{a}, {b}]: {bits:x?}"
                );
            }
        }
    }

    /// Runs started before the oct kernel keep their bits: these are the quad kernel's results as
    /// the JavaScript kernel of that time (src/web/assets/kernel.js, which the browser tests held
    /// bit-identical to this file) computed them, before either side changed.
    #[test]
    fn the_quad_kernel_keeps_the_bits_of_earlier_runs() {
        let earlier: [(u64, u64, u64); 8] = [
            (0, 0, 0x4010000000000000),
            (0, 999, 0x40091fef0a9265e8),
            (1, 100000, 0xbfeb77fdb6478125),
            (12345, 1012344, 0xbf14f9d3927a7914),
            (1099511627776, 1099511705553, 0x3bf2fd1fe976d397),
            (4503599626370495, 4503599627370495, 0xbcc000000007a121),
            (0, 67108863, 0x400921fb52442d18),
            (7, 393, 0xbfc285007f35b128),
        ];
        for (a, b, bits) in earlier {
            let got = Kernel::Quad.pi_partial(a, b).unwrap().to_bits();
            assert_eq!(got, bits, "[{a}, {b}]: {got:#x}, earlier {bits:#x}");
        }
    }

    #[test]
    fn the_two_kernels_differ_only_within_their_bounds() {
        let (a, b) = (3, 3 + (1 << 20));
        let (q, o) = (
            Kernel::Quad.pi_partial(a, b).unwrap(),
            Kernel::Oct.pi_partial(a, b).unwrap(),
        );
        assert!((q - o).abs() <= 3e-15 * q.abs(), "{q:e} vs {o:e}");
        assert_eq!(Kernel::from_name("oct"), Some(Kernel::Oct));
        assert_eq!(Kernel::from_name("quad"), Some(Kernel::Quad));
        assert_eq!(Kernel::from_name("hex"), None);
    }
}
