//! The coverage map: the job's grid cut into equal stretches, with how many intervals of each are
//! done, in flight, given back, recently rejected or not started (for the dashboard).

use super::scheduler::Scheduler;
use crate::job::{IntervalId, Job};
use std::collections::{BTreeSet, VecDeque};

/// The most stretches a map is cut into.
pub const MAX_BUCKETS: u32 = 4096;

/// The grid [0, span) cut into equal stretches of `width` intervals, with how many intervals of
/// each stretch are in each state. `span` is the job's interval count, or for an open-ended job
/// the highest interval handed out so far plus one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CoverageMap {
    pub span: u64,
    pub width: u64,
    pub chunk: u64,
    pub buckets: Vec<CoverageBucket>,
}

/// Interval counts of one stretch of the coverage map. `rejected` counts intervals whose last
/// result was rejected recently and that are not done yet (they are also in flight or given back).
/// Accepted results still being made durable count as done.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CoverageBucket {
    pub done: u64,
    pub in_flight: u64,
    pub given_back: u64,
    pub rejected: u64,
    pub not_started: u64,
}

impl CoverageMap {
    /// An empty map of `span` intervals cut into at most `buckets` stretches, everything
    /// `not_started`.
    pub fn empty(span: u64, chunk: u64, buckets: u32) -> CoverageMap {
        if span == 0 {
            return CoverageMap {
                chunk,
                ..CoverageMap::default()
            };
        }
        let wanted = u64::from(buckets.clamp(1, MAX_BUCKETS)).min(span);
        let width = span.div_ceil(wanted);
        let count = span.div_ceil(width);
        CoverageMap {
            span,
            width,
            chunk,
            buckets: (0..count)
                .map(|k| CoverageBucket {
                    not_started: ((k + 1) * width).min(span) - k * width,
                    ..CoverageBucket::default()
                })
                .collect(),
        }
    }

    fn bucket(&mut self, id: u64) -> Option<&mut CoverageBucket> {
        if id >= self.span {
            return None;
        }
        self.buckets.get_mut((id / self.width.max(1)) as usize)
    }

    /// Moves `count` intervals of the stretch holding `id` from not started to done.
    pub fn mark_done(&mut self, stretch: u64, count: u64) {
        if let Some(b) = self.buckets.get_mut(stretch as usize) {
            let n = count.min(b.not_started);
            b.done += n;
            b.not_started -= n;
        }
    }
}

/// The live map of a run being served.
pub fn map(
    job: &Job,
    schedule: &Scheduler,
    recent_rejects: &VecDeque<u64>,
    buckets: u32,
) -> CoverageMap {
    let issued = schedule.next_fresh();
    let span = job.intervals().unwrap_or(issued);
    let mut map = CoverageMap::empty(span, job.chunk, buckets);
    if span == 0 {
        return map;
    }
    // Everything issued starts as done; in-flight and given-back ids are moved out below.
    for k in 0..map.buckets.len() as u64 {
        let (lo, hi) = (k * map.width, ((k + 1) * map.width).min(span));
        map.mark_done(k, hi.min(issued).saturating_sub(lo));
    }
    for id in schedule.in_flight_ids() {
        if let Some(b) = map.bucket(id) {
            b.in_flight += 1;
            b.done = b.done.saturating_sub(1);
        }
    }
    for id in schedule.given_back() {
        if let Some(b) = map.bucket(id) {
            b.given_back += 1;
            b.done = b.done.saturating_sub(1);
        }
    }
    let rejected: BTreeSet<u64> = recent_rejects.iter().copied().collect();
    for id in rejected {
        let open = !matches!(
            schedule.state(IntervalId(id)),
            super::scheduler::IntervalState::Done | super::scheduler::IntervalState::Pending
        );
        if open {
            if let Some(b) = map.bucket(id) {
                b.rejected += 1;
            }
        }
    }
    map
}
