//! A job: how many terms (or open-ended) and the chunk size, and the fixed grid of intervals.
//!
//! Interval `k` covers terms `[k·C, min((k+1)·C, N) − 1]`. The grid depends on `(N, C)` only, which
//! is why a run's result is the same whatever the workers do.

pub mod count;
pub mod verify;

use crate::maths::{MAX_INTERVAL_TERMS, MAX_TERMS};
use serde::{Deserialize, Serialize};

/// The chunk of the original system, the default for open-ended jobs.
pub const OPEN_ENDED_CHUNK: u64 = 1000;

/// Identifies interval `k` of a job's grid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct IntervalId(pub u64);

impl std::fmt::Display for IntervalId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// An interval of terms, inclusive bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interval {
    pub id: IntervalId,
    pub a: u64,
    pub b: u64,
}

impl Interval {
    pub fn terms(&self) -> u64 {
        self.b - self.a + 1
    }
}

/// The job's parameters were invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JobError {
    #[error("the number of terms must be at least 1")]
    ZeroTerms,
    #[error("the chunk size must be at least 1")]
    ZeroChunk,
    #[error("{0} terms is beyond the supported range (at most 2^52 = {max})", max = MAX_TERMS)]
    TooManyTerms(u64),
    #[error("a chunk of {0} terms is beyond the supported range (at most 2^40 = {max})", max = MAX_INTERVAL_TERMS)]
    ChunkTooLarge(u64),
}

/// A job: `terms` (None: open-ended) and `chunk`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    pub terms: Option<u64>,
    pub chunk: u64,
}

impl Job {
    /// A job with an explicit or default chunk (see [`default_chunk`]).
    pub fn new(terms: Option<u64>, chunk: Option<u64>) -> Result<Job, JobError> {
        match terms {
            Some(0) => return Err(JobError::ZeroTerms),
            Some(n) if n > MAX_TERMS => return Err(JobError::TooManyTerms(n)),
            _ => {}
        }
        let chunk = chunk.unwrap_or_else(|| default_chunk(terms));
        if chunk == 0 {
            return Err(JobError::ZeroChunk);
        }
        if chunk > MAX_INTERVAL_TERMS {
            return Err(JobError::ChunkTooLarge(chunk));
        }
        Ok(Job { terms, chunk })
    }

    /// Number of intervals, `None` for an open-ended job.
    pub fn intervals(&self) -> Option<u64> {
        self.terms.map(|n| n.div_ceil(self.chunk))
    }

    /// The open-ended grid ends where term indexes would leave the supported range.
    fn limit(&self) -> u64 {
        self.terms.unwrap_or(MAX_TERMS)
    }

    /// Interval `id`, or `None` past the end of the grid.
    pub fn interval(&self, id: IntervalId) -> Option<Interval> {
        let a = id.0.checked_mul(self.chunk)?;
        if a >= self.limit() {
            return None;
        }
        let b = (a + self.chunk).min(self.limit()) - 1;
        Some(Interval { id, a, b })
    }
}

/// The default chunk: the original's 1000 for open-ended jobs; for a job of `N` terms,
/// `clamp(⌈N/1000⌉, 10^7, 2^32)` — about a thousand intervals, each at least 10^7 terms (several
/// milliseconds of one core) so that the coordinator's per-interval cost (tens of microseconds for a
/// round trip, a check and a store write) stays far below 2% of the run, and at most 2^32 terms
/// (about two seconds) so that progress and leases stay responsive.
pub fn default_chunk(terms: Option<u64>) -> u64 {
    match terms {
        None => OPEN_ENDED_CHUNK,
        Some(n) => n.div_ceil(1000).clamp(10_000_000, 1 << 32),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid() {
        let job = Job::new(Some(2500), Some(1000)).unwrap();
        assert_eq!(job.intervals(), Some(3));
        let ivs: Vec<_> = (0..4)
            .map(|k| job.interval(IntervalId(k)).map(|i| (i.a, i.b)))
            .collect();
        assert_eq!(
            ivs,
            vec![Some((0, 999)), Some((1000, 1999)), Some((2000, 2499)), None]
        );
        let open = Job::new(None, None).unwrap();
        assert_eq!(open.chunk, 1000);
        assert_eq!(
            open.interval(IntervalId(7)).map(|i| (i.a, i.b)),
            Some((7000, 7999))
        );
        assert!(open.interval(IntervalId(u64::MAX)).is_none());
    }

    #[test]
    fn refusals() {
        assert_eq!(Job::new(Some(0), None), Err(JobError::ZeroTerms));
        assert_eq!(Job::new(Some(10), Some(0)), Err(JobError::ZeroChunk));
        assert!(Job::new(Some(MAX_TERMS + 1), None).is_err());
        assert!(Job::new(Some(MAX_TERMS), None).is_ok());
        assert_eq!(default_chunk(Some(1_000_000_000)), 10_000_000);
        assert_eq!(default_chunk(Some(100_000_000_000)), 100_000_000);
    }
}
