//! The interval scheduler: which intervals are fresh, in flight, given back, pending or done.
//!
//! Pure bookkeeping, no I/O and no clock: the coordinator's core owns one and is its only user.
//! Invariant: every interval id of the grid is in exactly one of five states —
//! * fresh: `id >= next_fresh` (never handed out, in this process or, through the durable
//!   reservation, in an earlier one);
//! * in flight: in `holders`, with the session that holds it;
//! * given back: in `returned` (its holder left, failed, or its lease ran out);
//! * pending: in `pending` (a result was accepted and is being made durable);
//! * done: every other id below `next_fresh` (its result is durable).
//!
//! Hence "done" needs no set of its own, and an interval is counted at most once: accepting a
//! result moves it to pending, pending only ever moves on to done, and done is final.

use crate::job::{Interval, IntervalId, Job};
use std::collections::{BTreeSet, HashMap, HashSet};

/// Who holds an interval: an opaque session number chosen by the coordinator.
pub type HolderId = u64;

/// The state of one interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IntervalState {
    Fresh,
    InFlight(HolderId),
    GivenBack,
    Pending,
    Done,
}

#[derive(Debug)]
pub struct Scheduler {
    job: Job,
    next_fresh: u64,
    /// Fresh ids below this may be handed out (see [`Scheduler::allow_up_to`]).
    issue_limit: u64,
    returned: BTreeSet<u64>,
    holders: HashMap<u64, HolderId>,
    pending: HashSet<u64>,
    done: u64,
}

impl Scheduler {
    pub fn new(job: Job) -> Scheduler {
        Scheduler {
            job,
            next_fresh: 0,
            issue_limit: u64::MAX,
            returned: BTreeSet::new(),
            holders: HashMap::new(),
            pending: HashSet::new(),
            done: 0,
        }
    }

    /// Rebuilds a scheduler from the set of done intervals (read back from a store) and the
    /// highest id an earlier process may have handed out plus one (`issued`): every id below that
    /// which is not done is given back, to be handed out again first.
    pub fn resume(job: Job, done_ids: impl IntoIterator<Item = u64>, issued: u64) -> Scheduler {
        let mut s = Scheduler::new(job);
        let mut done: Vec<u64> = done_ids.into_iter().collect();
        done.sort_unstable();
        done.dedup();
        let bound = job.intervals().unwrap_or(u64::MAX);
        let end = done.last().map_or(0, |&m| m + 1).max(issued.min(bound));
        let mut expect = 0;
        for &id in &done {
            s.returned.extend(expect..id);
            expect = id + 1;
        }
        s.returned.extend(expect..end);
        s.next_fresh = end;
        s.done = done.len() as u64;
        s
    }

    pub fn job(&self) -> &Job {
        &self.job
    }

    /// Fresh ids at or above `limit` are not handed out until the limit is raised. The core keeps
    /// this at the durable reservation, so that after a crash every id ever handed out is known.
    pub fn allow_up_to(&mut self, limit: u64) {
        self.issue_limit = limit;
    }

    /// Hands out the next interval: the smallest given-back one first, then a fresh one.
    /// `None` when nothing can be handed out now.
    pub fn issue(&mut self, holder: HolderId) -> Option<Interval> {
        let id = match self.returned.pop_first() {
            Some(id) => id,
            None => {
                if self.next_fresh >= self.issue_limit {
                    return None;
                }
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

    /// Moves an in-flight interval to another holder (its backup copy's, when its holder no
    /// longer computes it). Returns false if the interval was not in flight.
    pub fn reassign(&mut self, id: IntervalId, holder: HolderId) -> bool {
        match self.holders.get_mut(&id.0) {
            Some(h) => {
                *h = holder;
                true
            }
            None => false,
        }
    }

    pub fn state(&self, id: IntervalId) -> IntervalState {
        if id.0 >= self.next_fresh {
            IntervalState::Fresh
        } else if let Some(&h) = self.holders.get(&id.0) {
            IntervalState::InFlight(h)
        } else if self.returned.contains(&id.0) {
            IntervalState::GivenBack
        } else if self.pending.contains(&id.0) {
            IntervalState::Pending
        } else {
            IntervalState::Done
        }
    }

    /// The current holder of an in-flight interval.
    pub fn holder(&self, id: IntervalId) -> Option<HolderId> {
        self.holders.get(&id.0).copied()
    }

    /// Records an accepted result for an interval that is in flight or given back: it becomes
    /// pending. Returns false (and changes nothing) in any other state.
    pub fn accept(&mut self, id: IntervalId) -> bool {
        if id.0 >= self.next_fresh {
            return false;
        }
        if self.holders.remove(&id.0).is_some() || self.returned.remove(&id.0) {
            self.pending.insert(id.0);
            true
        } else {
            false
        }
    }

    /// A pending interval's result is durable: it is done.
    pub fn make_durable(&mut self, id: IntervalId) -> bool {
        if self.pending.remove(&id.0) {
            self.done += 1;
            true
        } else {
            false
        }
    }

    /// Number of done intervals (durable results).
    pub fn done(&self) -> u64 {
        self.done
    }

    pub fn pending(&self) -> usize {
        self.pending.len()
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
            .chain(self.pending.iter().copied())
            .min()
            .unwrap_or(self.next_fresh);
        lowest_open == self.done
    }

    pub fn given_back(&self) -> impl Iterator<Item = u64> + '_ {
        self.returned.iter().copied()
    }

    pub fn given_back_count(&self) -> usize {
        self.returned.len()
    }

    pub fn in_flight_ids(&self) -> impl Iterator<Item = u64> + '_ {
        self.holders.keys().copied()
    }

    pub fn pending_ids(&self) -> impl Iterator<Item = u64> + '_ {
        self.pending.iter().copied()
    }

    /// The lowest id never handed out: every id below it was issued at some point.
    pub fn next_fresh(&self) -> u64 {
        self.next_fresh
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finish(s: &mut Scheduler, id: IntervalId) -> bool {
        s.accept(id) && s.make_durable(id)
    }

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
        assert!(s.accept(again.id));
        assert_eq!(s.state(again.id), IntervalState::Pending);
        assert!(
            !s.accept(again.id),
            "a pending interval is not accepted twice"
        );
        assert!(s.make_durable(again.id));
        assert!(!s.accept(again.id), "done is final");
        assert!(!s.accept(IntervalId(5)), "never issued");
        assert_eq!(s.state(again.id), IntervalState::Done);
        assert_eq!(s.state(b.id), IntervalState::InFlight(2));
        assert!(s.done_is_prefix());
        finish(&mut s, b.id);
        let mut n = 2;
        while let Some(i) = s.issue(9) {
            assert!(finish(&mut s, i.id));
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
        assert!(finish(&mut s, i.id));
        assert!(
            s.issue(2).unwrap().id.0 == 1,
            "the accepted interval is not reissued"
        );
    }

    #[test]
    fn nothing_fresh_beyond_the_limit() {
        let mut s = Scheduler::new(Job::new(None, None).unwrap());
        s.allow_up_to(2);
        assert_eq!(s.issue(1).unwrap().id.0, 0);
        assert_eq!(s.issue(1).unwrap().id.0, 1);
        assert!(s.issue(1).is_none());
        s.give_back(IntervalId(0));
        assert_eq!(s.issue(1).unwrap().id.0, 0, "given back ones still go out");
        s.allow_up_to(3);
        assert_eq!(s.issue(1).unwrap().id.0, 2);
    }

    #[test]
    fn resume_gives_back_the_gaps_and_everything_possibly_issued() {
        let job = Job::new(Some(10_000), Some(1000)).unwrap();
        let mut s = Scheduler::resume(job, [0, 1, 4, 2], 7);
        assert_eq!(s.done(), 4);
        assert!(!s.done_is_prefix());
        let ids: Vec<u64> = (0..4).map(|_| s.issue(1).unwrap().id.0).collect();
        assert_eq!(ids, vec![3, 5, 6, 7]);
        assert_eq!(s.state(IntervalId(9)), IntervalState::Fresh);
        let s = Scheduler::resume(job, [], 100);
        assert_eq!(s.given_back_count(), 10, "clamped to the grid");
    }
}
