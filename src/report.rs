//! What a run produces: one record per accepted interval, and the final summary.
//!
//! These are the shapes of `results.json` (an array of [`ResultRecord`]) and of `final.json` and
//! `piswarm run --json` ([`FinalReport`]).

use crate::maths::kernel::Kernel;
use crate::maths::series;
use crate::wire::{Dec, WorkResult};
use serde::{Deserialize, Serialize};

/// One accepted result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResultRecord {
    pub id: Dec<u64>,
    pub a: Dec<u64>,
    pub b: Dec<u64>,
    pub worker: String,
    pub peer: String,
    pub even_sum: Dec<u128>,
    pub odd_sum: Dec<u128>,
    pub pi: f64,
    pub duration_s: f64,
    /// ISO-8601 (RFC 3339, UTC) time of acceptance.
    pub timestamp: String,
}

impl ResultRecord {
    /// The result as the worker sent it (not a resend), to verify it again.
    pub fn work_result(&self) -> WorkResult {
        WorkResult {
            id: self.id,
            a: self.a,
            b: self.b,
            even_sum: self.even_sum,
            odd_sum: self.odd_sum,
            pi: self.pi,
            duration_s: self.duration_s.max(0.0),
            resend: false,
        }
    }
}

/// The summary of a run: `final.json`, `run --json`, `GET /api/runs/{id}/final`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FinalReport {
    /// Terms of the job (bounded), or terms covered by accepted results (open-ended).
    pub terms: u64,
    pub chunk: u64,
    /// Accepted intervals.
    pub intervals: u64,
    pub even_sum: Dec<u128>,
    pub odd_sum: Dec<u128>,
    /// The aggregated π partials, summed exactly and rounded once.
    pub pi: f64,
    /// `|pi − π|`.
    pub pi_error: f64,
    /// A rigorous bound on `|pi − exact partial sum of the accepted intervals|`, whichever clients
    /// computed them (each result's distance to the O(1) reference plus the reference's error,
    /// summed, plus the final rounding).
    pub pi_bound: f64,
    /// Decimal places of π that every value within `pi_bound` of `pi` gets right: the largest
    /// `d` with `pi_error + pi_bound ≤ ½·10⁻ᵈ`.
    pub correct_digits: u32,
    /// `pi` plus the Euler-number estimate of the series' remainder, when the accepted intervals
    /// form a contiguous prefix `[0, terms − 1]`; otherwise null.
    pub pi_corrected: Option<f64>,
    /// Workers that contributed: distinct worker names with at least one accepted result.
    pub workers: u64,
    pub elapsed_s: f64,
    pub terms_per_s: f64,
    /// The π kernel the run computes with (`"oct"`, or `"quad"` for runs made before it): the
    /// bits of `pi` are promised per job and kernel.
    pub kernel: String,
}

/// The totals of a run's durable results: the one totals type, shared by the coordinator's
/// snapshots, the store's run rows, the API and the final report.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Totals {
    /// Intervals whose results are durable.
    pub intervals_done: u64,
    /// Terms those intervals cover.
    pub terms_done: u64,
    pub even_sum: Dec<u128>,
    pub odd_sum: Dec<u128>,
    /// Their π partials, summed exactly and rounded once.
    pub pi: f64,
    /// Distinct worker names that contributed at least one accepted result.
    pub workers: u64,
    /// Seconds the run has been served.
    pub elapsed_s: f64,
    /// A rigorous bound on |pi − the exact partial sum of the done intervals|: the sum of each
    /// accepted result's certified bound (`job::verify::Verified`) plus the final rounding.
    pub pi_bound: f64,
}

/// The run's `pi_bound` from the exact sum of its results' bounds and its estimate: rounded up,
/// plus half a unit in the last place of the estimate (the one rounding of the exact sum).
pub fn certified_bound(sum_of_bounds: f64, pi: f64) -> f64 {
    let half_ulp = if pi.is_finite() {
        let x = pi.abs();
        (f64::from_bits(x.to_bits() + 1) - x) / 2.0
    } else {
        0.0
    };
    sum_of_bounds * (1.0 + f64::EPSILON) + half_ulp
}

impl FinalReport {
    /// The report of a run of `job` with these totals; `done_is_prefix` says whether the done
    /// intervals are exactly `[0, intervals_done)` (then the truncation correction applies).
    pub fn new(
        job: &crate::job::Job,
        kernel: Kernel,
        t: &Totals,
        done_is_prefix: bool,
    ) -> FinalReport {
        let pi_corrected =
            (done_is_prefix && t.terms_done > 0).then(|| series::pi_corrected(t.pi, t.terms_done));
        FinalReport {
            terms: job.terms.unwrap_or(t.terms_done),
            chunk: job.chunk,
            intervals: t.intervals_done,
            even_sum: t.even_sum,
            odd_sum: t.odd_sum,
            pi: t.pi,
            pi_error: series::pi_error(t.pi),
            pi_bound: t.pi_bound,
            correct_digits: series::correct_digits_within(t.pi, t.pi_bound),
            pi_corrected,
            workers: t.workers,
            elapsed_s: t.elapsed_s,
            terms_per_s: if t.elapsed_s > 0.0 {
                t.terms_done as f64 / t.elapsed_s
            } else {
                0.0
            },
            kernel: kernel.name().to_string(),
        }
    }

    /// A few lines for people.
    pub fn human(&self) -> String {
        let mut s = format!(
            "{} terms in {} intervals of {}, {} worker{}, {:.3} s ({:.3e} terms/s)\n\
             sum of evens  {}\nsum of odds   {}\nπ estimate    {:.17} (error {:.2e}, {} correct digits; within {:.1e} of the exact partial sum)\n",
            self.terms,
            self.intervals,
            self.chunk,
            self.workers,
            if self.workers == 1 { "" } else { "s" },
            self.elapsed_s,
            self.terms_per_s,
            self.even_sum.0,
            self.odd_sum.0,
            self.pi,
            self.pi_error,
            self.correct_digits,
            self.pi_bound
        );
        if let Some(c) = self.pi_corrected {
            s.push_str(&format!(
                "π corrected   {c:.17} (error {:.2e})\n",
                series::pi_error(c)
            ));
        }
        s
    }
}

/// The current time as RFC 3339 (ISO-8601) UTC with milliseconds.
pub fn now_iso8601() -> String {
    humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string()
}
