//! The interval scheduler: which intervals are fresh, in flight, given back or done.
//!
//! Pure bookkeeping, no I/O and no clock: the coordinator owns one and is its only user.
//! Invariant: every interval id of the grid is in exactly one of four states —
//! fresh (`id >= next_fresh`), in flight (in `holders`), given back (in `returned`), or done
//! (every other id below `next_fresh`). Hence "done" needs no set of its own, and an interval can
//! be counted at most once: accepting it moves it to done, and done is final.

use crate::job::{Interval, IntervalId, Job};
use std::collections::{BTreeSet, HashMap};

/// Who holds an interval: an opaque session number chosen by the coordinator.
pub type HolderId = u64;

#[derive(Debug)]
pub struct Scheduler {
    job: Job,
    next_fresh: u64,
    returned: BTreeSet<u64>,
    holders: HashMap<u64, HolderId>,
    done: u64,
}

/// What [`Scheduler::complete`] decided about a result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Completion {
    /// The first valid result for this interval: it counts.
    Accepted,
    /// The interval was already done: the result is ignored.
    Duplicate,
    /// The interval was never handed out.
    NeverIssued,
}

impl Scheduler {
    pub fn new(job: Job) -> Scheduler {
        Scheduler {
            job,
            next_fresh: 0,
            returned: BTreeSet::new(),
            holders: HashMap::new(),
            done: 0,
        }
    }

    /// Rebuilds a scheduler from the set of done intervals (e.g. read back from a store).
    /// Everything that is not done below the highest done id is given back.
    pub fn resume(job: Job, done_ids: impl IntoIterator<Item = u64>) -> Scheduler {
        let mut s = Scheduler::new(job);
        let mut done: Vec<u64> = done_ids.into_iter().collect();
        done.sort_unstable();
        done.dedup();
        s.next_fresh = done.last().map_or(0, |&m| m + 1);
        let mut expect = 0;
        for &id in &done {
            s.returned.extend(expect..id);
            expect = id + 1;
        }
        s.done = done.len() as u64;
        s
    }

    pub fn job(&self) -> &Job {
        &self.job
    }

    /// Hands out the next interval: the smallest given-back one first, then a fresh one.
    pub fn issue(&mut self, holder: HolderId) -> Option<Interval> {
        let id = match self.returned.pop_first() {
            Some(id) => id,
            None => {
                let interval = self.job.interval(IntervalId(self.next_fresh))?;
                self.next_fresh += 1;
                interval.id.0
            }
        };
        self.holders.insert(id, holder);
        self.job.interval(IntervalId(id))
    }

    /// Puts an in-flight interval back in the queue (its holder left, failed, or its lease ran out).
    /// Returns false if the interval was not in flight.
    pub fn give_back(&mut self, id: IntervalId) -> bool {
        if self.holders.remove(&id.0).is_some() {
            self.returned.insert(id.0);
            true
        } else {
            false
        }
    }

    /// The current holder of an in-flight interval.
    pub fn holder(&self, id: IntervalId) -> Option<HolderId> {
        self.holders.get(&id.0).copied()
    }

    pub fn is_done(&self, id: IntervalId) -> bool {
        id.0 < self.next_fresh
            && !self.holders.contains_key(&id.0)
            && !self.returned.contains(&id.0)
    }

    /// Records a valid result for `id`. Only the first one is accepted.
    pub fn complete(&mut self, id: IntervalId) -> Completion {
        if id.0 >= self.next_fresh {
            return Completion::NeverIssued;
        }
        if self.holders.remove(&id.0).is_some() || self.returned.remove(&id.0) {
            self.done += 1;
            Completion::Accepted
        } else {
            Completion::Duplicate
        }
    }

    /// Records a valid result that a worker sends again after a reconnect: the interval may have
    /// been issued by an earlier coordinator process, so it may be past `next_fresh` here — but
    /// by at most `window` ids, so that a claim far ahead cannot make the queue grow without bound.
    pub fn complete_resent(&mut self, id: IntervalId, window: u64) -> Completion {
        if id.0 >= self.next_fresh {
            if id.0 - self.next_fresh >= window || self.job.interval(id).is_none() {
                return Completion::NeverIssued;
            }
            self.returned.extend(self.next_fresh..id.0);
            self.next_fresh = id.0 + 1;
            self.done += 1;
            return Completion::Accepted;
        }
        self.complete(id)
    }

    /// Number of done intervals.
    pub fn done(&self) -> u64 {
        self.done
    }

    pub fn in_flight(&self) -> usize {
        self.holders.len()
    }

    /// True when a bounded job has every interval done.
    pub fn is_complete(&self) -> bool {
        self.job.intervals() == Some(self.done)
    }

    /// Whether the done intervals are exactly `0..done` (a contiguous prefix of the grid).
    pub fn done_is_prefix(&self) -> bool {
        let lowest_open = self
            .returned
            .first()
            .copied()
            .into_iter()
            .chain(self.holders.keys().copied())
            .min()
            .unwrap_or(self.next_fresh);
        lowest_open == self.done
    }

    /// Stretches of the grid by state, for the coverage map: `(first_id, last_id, state)`.
    pub fn given_back(&self) -> impl Iterator<Item = u64> + '_ {
        self.returned.iter().copied()
    }

    pub fn in_flight_ids(&self) -> impl Iterator<Item = u64> + '_ {
        self.holders.keys().copied()
    }

    pub fn next_fresh(&self) -> u64 {
        self.next_fresh
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_interval_once() {
        let job = Job::new(Some(10_000), Some(1000)).unwrap();
        let mut s = Scheduler::new(job);
        let a = s.issue(1).unwrap();
        let b = s.issue(2).unwrap();
        assert_eq!((a.id.0, b.id.0), (0, 1));
        assert!(s.give_back(a.id));
        assert!(!s.give_back(a.id));
        let again = s.issue(3).unwrap();
        assert_eq!(again.id, a.id, "given-back intervals are reissued first");
        assert_eq!(s.complete(again.id), Completion::Accepted);
        assert_eq!(s.complete(again.id), Completion::Duplicate);
        assert_eq!(s.complete(IntervalId(5)), Completion::NeverIssued);
        assert!(s.is_done(again.id) && !s.is_done(b.id));
        assert!(s.done_is_prefix());
        s.complete(b.id);
        let mut n = 2;
        while let Some(i) = s.issue(9) {
            assert_eq!(s.complete(i.id), Completion::Accepted);
            n += 1;
        }
        assert_eq!(n, 10);
        assert!(s.is_complete() && s.done_is_prefix());
    }

    #[test]
    fn a_late_result_for_a_given_back_interval_counts_once() {
        let mut s = Scheduler::new(Job::new(None, None).unwrap());
        let i = s.issue(1).unwrap();
        s.give_back(i.id);
        assert_eq!(s.complete(i.id), Completion::Accepted);
        assert!(
            s.issue(2).unwrap().id.0 == 1,
            "the accepted interval is not reissued"
        );
    }

    #[test]
    fn resent_results_count_once_within_the_window() {
        let mut s = Scheduler::new(Job::new(Some(100_000), Some(1000)).unwrap());
        assert_eq!(s.complete_resent(IntervalId(5), 16), Completion::Accepted);
        assert_eq!(s.complete_resent(IntervalId(5), 16), Completion::Duplicate);
        assert_eq!(
            s.complete_resent(IntervalId(50), 16),
            Completion::NeverIssued
        );
        assert_eq!(
            s.complete_resent(IntervalId(100), 1000),
            Completion::NeverIssued,
            "past the grid"
        );
        let issued: Vec<u64> = (0..5).map(|_| s.issue(1).unwrap().id.0).collect();
        assert_eq!(
            issued,
            vec![0, 1, 2, 3, 4],
            "the gap before the resent interval is handed out"
        );
        assert_eq!(s.issue(1).unwrap().id.0, 6);
    }

    #[test]
    fn resume_gives_back_the_gaps() {
        let job = Job::new(Some(10_000), Some(1000)).unwrap();
        let mut s = Scheduler::resume(job, [0, 1, 4, 2]);
        assert_eq!(s.done(), 4);
        assert!(!s.done_is_prefix());
        assert_eq!(s.issue(1).unwrap().id.0, 3);
        assert_eq!(s.issue(1).unwrap().id.0, 5);
    }
}
