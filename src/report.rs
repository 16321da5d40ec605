//! What a run produces: one record per accepted interval, and the final summary.
//!
//! These are the shapes of `results.json` (an array of [`ResultRecord`]) and of `final.json` and
//! `piswarm run --json` ([`FinalReport`]).

use crate::maths::series;
use crate::wire::Dec;
use serde::{Deserialize, Serialize};
use std::path::Path;

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
    pub correct_digits: u32,
    /// `pi` plus the Euler-number estimate of the series' remainder, when the accepted intervals
    /// form a contiguous prefix `[0, terms − 1]`; otherwise null.
    pub pi_corrected: Option<f64>,
    /// Workers that took part (sessions that completed the handshake).
    pub workers: u64,
    pub elapsed_s: f64,
    pub terms_per_s: f64,
}

/// Inputs of a [`FinalReport`], as accumulated by the coordinator.
#[derive(Debug, Clone, Copy)]
pub struct Totals {
    pub terms_done: u64,
    pub job_terms: Option<u64>,
    pub chunk: u64,
    pub intervals: u64,
    pub even_sum: u128,
    pub odd_sum: u128,
    pub pi: f64,
    pub done_is_prefix: bool,
    pub workers: u64,
    pub elapsed_s: f64,
}

impl FinalReport {
    pub fn from_totals(t: Totals) -> FinalReport {
        let pi_corrected = (t.done_is_prefix && t.terms_done > 0)
            .then(|| series::pi_corrected(t.pi, t.terms_done));
        FinalReport {
            terms: t.job_terms.unwrap_or(t.terms_done),
            chunk: t.chunk,
            intervals: t.intervals,
            even_sum: Dec(t.even_sum),
            odd_sum: Dec(t.odd_sum),
            pi: t.pi,
            pi_error: series::pi_error(t.pi),
            correct_digits: series::correct_digits(t.pi),
            pi_corrected,
            workers: t.workers,
            elapsed_s: t.elapsed_s,
            terms_per_s: if t.elapsed_s > 0.0 {
                t.terms_done as f64 / t.elapsed_s
            } else {
                0.0
            },
        }
    }

    /// A few lines for people.
    pub fn human(&self) -> String {
        let mut s = format!(
            "{} terms in {} intervals of {}, {} worker{}, {:.3} s ({:.3e} terms/s)\n\
             sum of evens  {}\nsum of odds   {}\nπ estimate    {:.17} (error {:.2e}, {} correct digits)\n",
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
            self.correct_digits
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

/// Writes `value` as pretty JSON to `path` atomically (a temporary file, then a rename).
pub fn write_json_atomically<T: Serialize + ?Sized>(path: &Path, value: &T) -> std::io::Result<()> {
    let tmp = path.with_extension("json.tmp");
    {
        let file = std::fs::File::create(&tmp)?;
        let mut w = std::io::BufWriter::new(file);
        serde_json::to_writer_pretty(&mut w, value)?;
        std::io::Write::write_all(&mut w, b"\n")?;
        std::io::Write::flush(&mut w)?;
        w.get_ref().sync_all()?;
    }
    std::fs::rename(tmp, path)
}
