//! Checking a worker's result for one interval, exactly and in O(1).
//!
//! Pure: no state, no I/O. Sessions call [`check_result`] before a result reaches the coordinator,
//! so verification runs on every core, in parallel, and the coordinator only does bookkeeping. A
//! resumed run re-verifies its stored results with [`check_record`].

use crate::job::{IntervalId, Job};
use crate::maths::{series, sums};
use crate::report::ResultRecord;
use crate::wire::{ErrorCode, WorkResult};

/// Why a result was refused: the code sent on the wire and a sentence for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub code: ErrorCode,
    pub message: String,
}

/// Checks the bounds against the job's grid, the even and odd sums against their closed forms and
/// the π partial against its closed form within the honest-rounding tolerance
/// (see [`series::pi_partial_tolerance`]).
pub fn check_result(job: &Job, r: &WorkResult) -> Result<(), Refusal> {
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
    if !series::pi_partial_plausible(interval.a, interval.b, r.pi) {
        let reference = series::pi_partial_reference(interval.a, interval.b);
        return refuse(
            ErrorCode::WrongPi,
            format!(
                "wrong π partial for [{}, {}]: got {:e}, expected {:e} within {:.1e}",
                interval.a,
                interval.b,
                r.pi,
                reference,
                series::pi_partial_tolerance(interval.a, interval.b, reference)
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
    Ok(())
}

/// Whether a stored result is still one that [`check_result`] accepts (bit rot, a damaged file).
pub fn check_record(job: &Job, r: &ResultRecord) -> bool {
    let result = WorkResult {
        id: r.id,
        a: r.a,
        b: r.b,
        even_sum: r.even_sum,
        odd_sum: r.odd_sum,
        pi: r.pi,
        duration_s: r.duration_s.max(0.0),
        resend: false,
    };
    check_result(job, &result).is_ok()
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
            assert_eq!(check_result(&job, &r), Ok(()));
            let naive = WorkResult {
                pi: kernel::pi_partial_naive(r.a.0, r.b.0),
                ..r.clone()
            };
            assert_eq!(
                check_result(&job, &naive),
                Ok(()),
                "naive client on interval {id}"
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
