//! The clauses of `piswarm check client` (protocol v1) and the judgements of what a client
//! computed: bounds, exact sums, and the π partial against the verification tolerance and,
//! separately, against the compensated kernel's bound.

use super::client::{HEARTBEAT_S, LONGEST_SILENCE};
use super::Tally;
use crate::job::verify::{check_result_with, Tolerance};
use crate::job::{IntervalId, Job};
use crate::maths::kernel::Kernel;
use crate::maths::sums;
use crate::wire::{Dec, WorkResult};
use std::time::Duration;

/// The clauses of a v1 client, in the report's order.
pub(crate) struct Clauses {
    pub(crate) hello: Tally,
    pub(crate) credit: Tally,
    pub(crate) heartbeat: Tally,
    pub(crate) format: Tally,
    pub(crate) sums: Tally,
    pub(crate) pi_tolerance: Tally,
    pub(crate) pi_kernel: Tally,
    pub(crate) answers: Tally,
    pub(crate) resend: Tally,
    pub(crate) leaves: Tally,
    pub(crate) backoff: Tally,
}

impl Clauses {
    pub(crate) fn new() -> Clauses {
        Clauses {
            hello: Tally::new("hello", "speaks first, with hello version 1"),
            credit: Tally::new("credit", "never asks to hold more than max_prefetch (§4.2)"),
            heartbeat: Tally::new(
                "heartbeat",
                "a line at least every heartbeat_s while waiting (§4.4)",
            ),
            format: Tally::new(
                "result_format",
                "every line a valid message; results echo an interval it holds (§3.1, §4.3)",
            ),
            sums: Tally::new(
                "exact_sums",
                "even and odd sums exact, in their own fields (§5.2)",
            ),
            pi_tolerance: Tally::new(
                "pi_tolerance",
                "π partial within the verification tolerance (§5.3)",
            ),
            pi_kernel: Tally::new(
                "pi_kernel_bound",
                "π partial within the compensated kernel's bound (serve --strict)",
            ),
            answers: Tally::new(
                "answers",
                "goes on after ack duplicate and error; never re-sends an answered result (§4.3)",
            ),
            resend: Tally::new(
                "resend",
                "re-sends unanswered results, marked resend, after a restart (§4.6)",
            ),
            leaves: Tally::new(
                "leaves_on_done",
                "on done: bye and close within 5 s, no reconnection (§4.5)",
            ),
            backoff: Tally::new(
                "backoff",
                "reconnects with backoff, never in a tight loop (§7.2, §8)",
            ),
        }
    }

    pub(crate) fn all(self) -> Vec<super::Clause> {
        [
            self.hello,
            self.credit,
            self.heartbeat,
            self.format,
            self.sums,
            self.pi_tolerance,
            self.pi_kernel,
            self.answers,
            self.resend,
            self.leaves,
            self.backoff,
        ]
        .into_iter()
        .map(Tally::finish)
        .collect()
    }
}

pub(crate) fn judge_heartbeat(c: &mut Clauses, longest: &(Duration, String)) {
    if longest.0 > LONGEST_SILENCE {
        c.heartbeat.fail(
            format!(
                "silent for {:.1} s while waiting for work (heartbeat_s is {HEARTBEAT_S}: the server closes an idle connection)",
                longest.0.as_secs_f64()
            ),
            std::slice::from_ref(&longest.1),
        );
    } else {
        c.heartbeat.pass(
            format!(
                "never silent for more than {:.1} s while waiting for work (heartbeat_s {HEARTBEAT_S})",
                longest.0.as_secs_f64()
            ),
            std::slice::from_ref(&longest.1),
        );
    }
}

/// Judges a result's bounds, sums and π partial (each clause on its own).
pub(crate) fn judge_numbers(c: &mut Clauses, job: &Job, r: &WorkResult, line: &str) {
    let evidence = [line.to_string()];
    let Some(interval) = job.interval(IntervalId(r.id.0)) else {
        c.format.fail(
            format!(
                "interval {} is not part of the job (wrong_interval)",
                r.id.0
            ),
            &evidence,
        );
        return;
    };
    if (interval.a, interval.b) != (r.a.0, r.b.0) {
        c.format.fail(
            format!(
                "interval {} is [{}, {}], the result says [{}, {}] (wrong_interval)",
                r.id.0, interval.a, interval.b, r.a.0, r.b.0
            ),
            &evidence,
        );
        return;
    }
    if r.duration_s.is_nan() || r.duration_s < 0.0 || r.duration_s.is_sign_negative() {
        c.format.fail(
            format!("duration_s {} is negative (bad_message)", r.duration_s),
            &evidence,
        );
    }
    let (even, odd) = (
        sums::even_sum(interval.a, interval.b),
        sums::odd_sum(interval.a, interval.b),
    );
    if (r.even_sum.0, r.odd_sum.0) == (even, odd) {
        c.sums.pass("every sum exact", &evidence);
    } else if (r.even_sum.0, r.odd_sum.0) == (odd, even) {
        c.sums.fail(
            format!(
                "evens and odds swapped for [{}, {}]: even_sum must be {even}, odd_sum {odd}",
                interval.a, interval.b
            ),
            &evidence,
        );
    } else {
        c.sums.fail(
            format!(
                "wrong sums for [{}, {}]: got {} and {}, expected {even} and {odd}",
                interval.a, interval.b, r.even_sum.0, r.odd_sum.0
            ),
            &evidence,
        );
    }
    // π on its own: the same result with exact sums and a valid duration.
    let pi_only = WorkResult {
        even_sum: Dec(even),
        odd_sum: Dec(odd),
        duration_s: 0.0,
        ..r.clone()
    };
    match check_result_with(job, Kernel::CURRENT, &pi_only, Tolerance::Honest) {
        Ok(_) => c
            .pi_tolerance
            .pass("every π partial within the tolerance", &evidence),
        Err(refusal) => c.pi_tolerance.fail(refusal.message, &evidence),
    }
    match check_result_with(job, Kernel::CURRENT, &pi_only, Tolerance::Kernel) {
        Ok(_) => c.pi_kernel.pass("every π partial within the compensated kernel's bound", &evidence),
        Err(refusal) => c.pi_kernel.fail(
            format!("{} — a plain forward loop does this; sum pairs or compensate (docs/protocol.md §5.3)", refusal.message),
            &evidence,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::client::{CHUNK, INTERVALS};
    use crate::maths::kernel;

    #[test]
    fn a_forward_loop_leaves_the_kernel_bound_on_the_scripted_job_and_the_kernel_does_not() {
        let job = Job::new(Some(CHUNK * INTERVALS), Some(CHUNK)).unwrap();
        let mut naive_out = 0;
        for id in 0..INTERVALS {
            let i = job.interval(IntervalId(id)).unwrap();
            let result = |pi| WorkResult {
                id: Dec(id),
                a: Dec(i.a),
                b: Dec(i.b),
                even_sum: Dec(sums::even_sum(i.a, i.b)),
                odd_sum: Dec(sums::odd_sum(i.a, i.b)),
                pi,
                duration_s: 0.0,
                resend: false,
            };
            let exact = result(kernel::pi_partial(i.a, i.b).unwrap());
            let check = |r: &WorkResult, t| check_result_with(&job, Kernel::CURRENT, r, t);
            assert!(check(&exact, Tolerance::Kernel).is_ok());
            let naive = result(kernel::pi_partial_naive(i.a, i.b));
            assert!(check(&naive, Tolerance::Honest).is_ok());
            if check(&naive, Tolerance::Kernel).is_err() {
                naive_out += 1;
            }
        }
        assert!(
            naive_out >= 2,
            "only {naive_out} intervals out of the kernel's bound"
        );
    }
}
