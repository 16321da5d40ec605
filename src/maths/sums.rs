//! Exact sums of the even and of the odd integers of an interval `[a, b]`, in O(1).
//!
//! These are the "sum of evens" and "sum of odds" that the original assignment asked each client
//! to compute; the coordinator checks every reported pair against these closed forms.

/// Sum of the integers in `[lo, hi]` with a step of 2, where `lo` and `hi` have the same parity.
fn stepped_sum(lo: u64, hi: u64) -> u128 {
    let count = u128::from((hi - lo) / 2 + 1);
    // count·(lo + hi)/2: lo + hi is even because lo and hi share a parity.
    count * ((u128::from(lo) + u128::from(hi)) / 2)
}

/// The sum of the even integers of `[a, b]` (0 when there is none). Exact for all `u64` bounds.
pub fn even_sum(a: u64, b: u64) -> u128 {
    if a > b {
        return 0;
    }
    // a = u64::MAX is odd and has no even successor in range.
    let Some(first) = a.checked_add(a & 1) else {
        return 0;
    };
    let last = b - (b & 1);
    if first > last {
        return 0;
    }
    stepped_sum(first, last)
}

/// The sum of the odd integers of `[a, b]` (0 when there is none). Exact for all `u64` bounds.
pub fn odd_sum(a: u64, b: u64) -> u128 {
    if a > b {
        return 0;
    }
    let first = a | 1;
    let last = if b & 1 == 1 {
        b
    } else if b == 0 {
        return 0;
    } else {
        b - 1
    };
    if first > last {
        return 0;
    }
    stepped_sum(first, last)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loop_sums(a: u64, b: u64) -> (u128, u128) {
        (a..=b).fold((0, 0), |(e, o), n| {
            if n % 2 == 0 {
                (e + u128::from(n), o)
            } else {
                (e, o + u128::from(n))
            }
        })
    }

    #[test]
    fn matches_the_plain_loop_on_small_intervals() {
        for a in 0..60 {
            for b in a..80 {
                assert_eq!(
                    (even_sum(a, b), odd_sum(a, b)),
                    loop_sums(a, b),
                    "[{a}, {b}]"
                );
            }
        }
    }

    #[test]
    fn edges() {
        assert_eq!(even_sum(0, 0), 0);
        assert_eq!(odd_sum(0, 0), 0);
        assert_eq!(odd_sum(1, 1), 1);
        assert_eq!(even_sum(1, 1), 0);
        assert_eq!(even_sum(2, 2), 2);
        // The original's first interval.
        assert_eq!(even_sum(0, 999), 249_500);
        assert_eq!(odd_sum(0, 999), 250_000);
        // Top of the supported range: [0, 2^52 - 1].
        let top = crate::maths::MAX_TERMS - 1;
        let n = u128::from(crate::maths::MAX_TERMS);
        // Evens 0, 2, ..., n-2: (n/2)·(n/2 - 1); odds 1, 3, ..., n-1: (n/2)^2.
        assert_eq!(even_sum(0, top), (n / 2) * (n / 2 - 1));
        assert_eq!(odd_sum(0, top), (n / 2) * (n / 2));
        assert_eq!(even_sum(top, top), 0);
        assert_eq!(odd_sum(top, top), u128::from(top));
        // Even the whole u64 range does not overflow.
        let m = u128::from(u64::MAX);
        assert_eq!(odd_sum(0, u64::MAX), m.div_ceil(2) * m.div_ceil(2));
        assert_eq!(even_sum(u64::MAX, u64::MAX), 0);
    }

    proptest::proptest! {
        #[test]
        fn evens_plus_odds_is_the_gauss_sum(a in 0u64..1 << 52, len in 0u64..1 << 20) {
            let b = a + len;
            let gauss = (u128::from(a) + u128::from(b)) * u128::from(len + 1) / 2;
            proptest::prop_assert_eq!(even_sum(a, b) + odd_sum(a, b), gauss);
        }

        #[test]
        fn matches_the_loop_anywhere(a in 0u64..1 << 52, len in 0u64..200) {
            proptest::prop_assert_eq!((even_sum(a, a + len), odd_sum(a, a + len)), loop_sums(a, a + len));
        }
    }
}
