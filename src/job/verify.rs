//! Checking a worker's result for one interval, exactly and in O(1).
//!
//! Pure: no state, no I/O. Sessions call [`check_result`] before a result reaches the coordinator,
//! so verification runs on every core, in parallel, and the coordinator only does bookkeeping; a
//! resumed run re-verifies its stored results the same way (`store::Store::load`). It lives with
//! the job because it is a property of the job's grid, used by sessions, coordinator and store.
//!
//! Besides the verdict, an accepted result comes with a certified bound on its π partial's error
//! ([`Verified::pi_bound`]): the run's `pi_bound` is their sum, so the final report says how far
//! the estimate can be from the exact partial sum whichever clients computed it. `--strict`
//! ([`Tolerance::Kernel`]) accepts only what the compensated kernel can produce, so that no
//! client can move the result by more than the kernel's own error.

use crate::job::{IntervalId, Job};
use crate::maths::kernel::Kernel;
use crate::maths::{series, sums};
use crate::wire::{ErrorCode, WorkResult};

/// What verification certifies about an accepted result.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Verified {
    /// A rigorous bound on |reported π partial − exact partial sum|: its distance to the O(1)
    /// reference (rounded up) plus the reference's own error bound.
    pub pi_bound: f64,
}

/// How far a π partial may be from the reference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Tolerance {
    /// Anything an honest client summing in plain `f64` can produce (the default).
    #[default]
    Honest,
    /// Only what the run's compensated kernel can produce (`serve --strict`).
    Kernel,
}

/// Why a result was refused: the code sent on the wire and a sentence for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub code: ErrorCode,
    pub message: String,
}

/// Checks the bounds against the job's grid, the even and odd sums against their closed forms and
/// the π partial against its closed form within the honest-rounding tolerance
/// (see [`series::pi_partial_tolerance`]).
pub fn check_result(job: &Job, r: &WorkResult) -> Result<Verified, Refusal> {
    check_result_with(job, Kernel::CURRENT, r, Tolerance::Honest)
}

/// [`check_result`] with a choice of tolerance for the π partial; `kernel` is the run's, whose
/// bound [`Tolerance::Kernel`] applies.
pub fn check_result_with(
    job: &Job,
    kernel: Kernel,
    r: &WorkResult,
    tolerance: Tolerance,
) -> Result<Verified, Refusal> {
    let refuse = |code, message: String| Err(Refusal { code, message });
    let Some(interval) = job.interval(IntervalId(r.id.0)) else {
        return refuse(
            ErrorCode::WrongInterval,
            format!("interval {} is not part of this job", r.id.0),
        );
    };
    if (interval.a, interval.b) != (r.a.0, r.b.0) {
        return refuse(
            ErrorCode::WrongInterval,
            format!(
                "interval {} is [{}, {}], not [{}, {}]",
                r.id.0, interval.a, interval.b, r.a.0, r.b.0
            ),
        );
    }
    let (even, odd) = (
        sums::even_sum(interval.a, interval.b),
        sums::odd_sum(interval.a, interval.b),
    );
    if (r.even_sum.0, r.odd_sum.0) != (even, odd) {
        return refuse(
            ErrorCode::WrongSums,
            format!(
                "wrong sums for [{}, {}]: got evens {} and odds {}, expected {} and {}",
                interval.a, interval.b, r.even_sum.0, r.odd_sum.0, even, odd
            ),
        );
    }
    if !r.pi.is_finite() {
        return refuse(
            ErrorCode::WrongPi,
            format!("the π partial must be a finite number, got {}", r.pi),
        );
    }
    let reference = series::pi_partial_reference(interval.a, interval.b);
    let allowed = match tolerance {
        Tolerance::Honest => series::pi_partial_tolerance(interval.a, interval.b, reference),
        Tolerance::Kernel => series::kernel_tolerance(kernel, reference),
    };
    let deviation = (r.pi - reference).abs();
    // (NaN cannot reach here: `pi` is finite and so is the reference.)
    if deviation > allowed {
        let strict = if tolerance == Tolerance::Kernel {
            format!(" (--strict: the {kernel} kernel's bound)")
        } else {
            String::new()
        };
        return refuse(
            ErrorCode::WrongPi,
            format!(
                "wrong π partial for [{}, {}]: got {:e}, expected {:e} within {:.1e}{strict}",
                interval.a, interval.b, r.pi, reference, allowed
            ),
        );
    }
    if !(r.duration_s >= 0.0 && r.duration_s.is_finite()) || r.duration_s.is_sign_negative() {
        return refuse(
            ErrorCode::BadMessage,
            format!(
                "duration_s must be a finite number of seconds, zero or more, got {}",
                r.duration_s
            ),
        );
    }
    Ok(Verified {
        pi_bound: bound(deviation, reference),
    })
}

/// The certified bound of a π partial `pi` reported for `[a, b]` (see [`Verified::pi_bound`]).
pub fn pi_bound(a: u64, b: u64, pi: f64) -> f64 {
    let reference = series::pi_partial_reference(a, b);
    bound((pi - reference).abs(), reference)
}

/// |p − P| ≤ |p − R| + |R − P|; the subtraction giving |p − R| rounds by at most half an ulp,
/// hence the factor (one ulp up covers it).
fn bound(deviation: f64, reference: f64) -> f64 {
    deviation * (1.0 + f64::EPSILON) + series::reference_error(reference)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::maths::kernel;
    use crate::wire::Dec;

    fn honest(job: &Job, id: u64) -> WorkResult {
        let i = job.interval(IntervalId(id)).unwrap();
        WorkResult {
            id: Dec(id),
            a: Dec(i.a),
            b: Dec(i.b),
            even_sum: Dec(sums::even_sum(i.a, i.b)),
            odd_sum: Dec(sums::odd_sum(i.a, i.b)),
            pi: kernel::pi_partial(i.a, i.b).unwrap(),
            duration_s: 0.001,
            resend: false,
        }
    }

    #[test]
    fn honest_results_pass_and_lies_do_not() {
        let job = Job::new(None, Some(1000)).unwrap();
        for id in [0, 1, 7, 123_456, 4_000_000_000] {
            let r = honest(&job, id);
            assert!(check_result(&job, &r).is_ok());
            let naive = WorkResult {
                pi: kernel::pi_partial_naive(r.a.0, r.b.0),
                ..r.clone()
            };
            assert!(
                check_result(&job, &naive).is_ok(),
                "naive client on interval {id}"
            );
            assert_eq!(
                check_result_with(&job, Kernel::CURRENT, &r, Tolerance::Kernel)
                    .map(|v| v.pi_bound <= 1e-13),
                Ok(true),
                "the kernel passes --strict on interval {id}"
            );
        }
        let r = honest(&job, 3);
        let code = |r: &WorkResult| check_result(&job, r).unwrap_err().code;
        assert_eq!(
            code(&WorkResult {
                even_sum: Dec(r.even_sum.0 + 2),
                ..r.clone()
            }),
            ErrorCode::WrongSums
        );
        assert_eq!(
            code(&WorkResult {
                odd_sum: Dec(0),
                ..r.clone()
            }),
            ErrorCode::WrongSums
        );
        assert_eq!(
            code(&WorkResult {
                b: Dec(3998),
                ..r.clone()
            }),
            ErrorCode::WrongInterval
        );
        assert_eq!(
            code(&WorkResult {
                pi: f64::NAN,
                ..r.clone()
            }),
            ErrorCode::WrongPi
        );
        assert_eq!(
            code(&WorkResult {
                pi: f64::INFINITY,
                ..r.clone()
            }),
            ErrorCode::WrongPi
        );
        assert_eq!(
            code(&WorkResult {
                pi: -r.pi,
                ..r.clone()
            }),
            ErrorCode::WrongPi
        );
        let first = honest(&job, 0);
        assert_eq!(
            code(&WorkResult {
                pi: first.pi * (1.0 + 1e-7),
                ..first
            }),
            ErrorCode::WrongPi
        );
        for duration in [-1.0, -0.0, -1e300, f64::NAN, f64::INFINITY] {
            assert_eq!(
                code(&WorkResult {
                    duration_s: duration,
                    ..r.clone()
                }),
                ErrorCode::BadMessage,
                "duration_s {duration}"
            );
        }
        let bounded = Job::new(Some(5000), Some(1000)).unwrap();
        assert_eq!(
            check_result(&bounded, &honest(&job, 5)).unwrap_err().code,
            ErrorCode::WrongInterval
        );
    }
}
