//! Leases and backups: an assignment's lease, what happens when it runs out, and backup copies of
//! intervals in flight at the tail of the job.

use super::durability::TOTALS_EVERY;
use super::sessions::{Hold, Session};
use super::{Core, LeasePolicy, RunState, SessionId, Time};
use crate::job::{Interval, IntervalId};
use std::collections::HashMap;
use std::time::Duration;

/// Leases are this many times the slowest assign-to-result time observed.
const LEASE_FACTOR: u32 = 4;

/// A backup copy is handed out only if its holder is expected to need this many times longer
/// than the requester to finish it (Spark's `speculation.multiplier` is 1.5 as well).
const BACKUP_MARGIN: f64 = 1.5;

/// While sessions wait for work and intervals are in flight, backups are reconsidered this often
/// (a holder that stops answering becomes worth backing up as time passes).
pub(super) const BACKUP_CHECK: Duration = Duration::from_millis(250);

/// When a session is expected to finish work that takes `needs` from `started`, seen at `now`:
/// on time, as planned; overdue by d, another d from now (the longer a silence lasts, the longer
/// it is expected to last).
fn expected_finish(started: Time, needs: Duration, now: Time) -> Time {
    let planned = started + needs;
    if planned >= now {
        planned
    } else {
        now + (now - planned)
    }
}

fn seconds(terms: u64, speed: f64) -> Duration {
    Duration::from_secs_f64((terms as f64 / speed.max(1.0)).min(1e9))
}

impl Core {
    /// Its holder no longer computes an interval in flight (it left, failed it, or its lease ran
    /// out): the backup copy's session becomes its holder, or else it goes back to the queue.
    /// Returns whether it went back to the queue.
    pub(super) fn release(&mut self, id: IntervalId) -> bool {
        if let Some(backup) = self.backups.remove(&id.0) {
            let computing = self
                .sessions
                .get(&backup)
                .and_then(|s| s.held.get(&id.0))
                .is_some_and(|h| matches!(h, Hold::Computing { .. }));
            if computing && self.schedule.reassign(id, backup) {
                return false;
            }
        }
        self.schedule.give_back(id)
    }

    pub(super) fn lease_for(&self, id: SessionId) -> Duration {
        match self.config.lease {
            LeasePolicy::Fixed(d) => d,
            LeasePolicy::Observed { floor, ceiling } => {
                let own = self.sessions.get(&id).and_then(Session::slowest);
                let observed = own.or_else(|| self.run_latencies.iter().max().copied());
                observed
                    .map_or(floor, |o| o * LEASE_FACTOR)
                    .clamp(floor, ceiling.max(floor))
            }
        }
    }

    /// Whether backups could help someone now: sessions wait, nothing is fresh or given back,
    /// and intervals are in flight.
    pub(super) fn backup_wanted(&self) -> bool {
        self.config.backups
            && self.serving
            && self.store_failed.is_none()
            && !self.hungry.is_empty()
            && self.schedule.in_flight() > 0
            && self.schedule.given_back_count() == 0
            && self
                .config
                .job
                .intervals()
                .is_some_and(|n| self.schedule.next_fresh() >= n)
    }

    /// A backup copy for session `req`, when nothing fresh or given back is left: of the
    /// intervals in flight, the one expected to be finished last — by its holder, or by its
    /// backup's session if that is expected sooner (each by its measured speed, what it holds
    /// before it and how long it has held them) —, if `req` is expected to finish it
    /// [`BACKUP_MARGIN`] times sooner. Returns the interval, and the session whose backup copy
    /// it replaces (one that is itself overdue), if any: at most one backup per interval.
    pub(super) fn pick_backup(&self, req: SessionId) -> Option<(Interval, Option<SessionId>)> {
        if !self.config.backups {
            return None;
        }
        let job = &self.config.job;
        let end = job.intervals()?;
        if self.schedule.next_fresh() < end || self.schedule.given_back_count() > 0 {
            return None;
        }
        let now = self.now;
        let prior = self.prior_speed();
        let r = self.sessions.get(&req)?;
        // When each copy in flight is expected to be finished: by its holder, by its backup.
        let mut by_holder: Vec<(u64, Time)> = Vec::new();
        let mut by_backup: HashMap<u64, Time> = HashMap::new();
        for (&sid, s) in &self.sessions {
            if sid == req || s.held.is_empty() {
                continue;
            }
            let queue = s.queue(job);
            let speed = s.speed().unwrap_or(prior);
            let started = s.started(&queue);
            let mut before = 0;
            for &(_, id, terms) in &queue {
                before += terms;
                if !matches!(s.held.get(&id), Some(Hold::Computing { .. })) {
                    continue;
                }
                let finish = expected_finish(started, seconds(before, speed), now);
                if self.backups.get(&id) == Some(&sid) {
                    by_backup.insert(id, finish);
                } else if self.schedule.holder(IntervalId(id)) == Some(sid) {
                    by_holder.push((id, finish));
                }
            }
        }
        let (finish, id) = by_holder
            .into_iter()
            .filter(|(id, _)| !r.held.contains_key(id))
            .map(|(id, f)| (by_backup.get(&id).map_or(f, |&b| b.min(f)), id))
            .max()?;
        let interval = job.interval(IntervalId(id))?;
        let speed = r.speed().unwrap_or(prior);
        let queue = r.queue(job);
        let busy = seconds(queue.iter().map(|q| q.2).sum(), speed);
        let free = (r.started(&queue) + busy).max(now);
        let mine = free + seconds(interval.b - interval.a + 1, speed) - now;
        ((finish - now).as_secs_f64() > BACKUP_MARGIN * mine.as_secs_f64())
            .then(|| (interval, self.backups.get(&id).copied()))
    }

    /// A backup copy is replaced by a better one: its session keeps it as if its lease had run
    /// out (it may still answer; it counts against its allowance; it is fed last).
    pub(super) fn demote_backup(&mut self, id: u64, old: SessionId) {
        self.backups.remove(&id);
        if let Some(s) = self.sessions.get_mut(&old) {
            if let Some(Hold::Computing { assigned, deadline }) = s.held.get(&id).copied() {
                self.leases.remove(&(deadline, id, old));
                s.held.insert(id, Hold::Expired { assigned });
                s.expired += 1;
            }
        }
        self.retier(old);
    }

    pub(super) fn tick(&mut self) {
        let now = self.now;
        let mut any = false;
        while let Some(&(deadline, interval, sid)) = self.leases.first() {
            if deadline > now {
                break;
            }
            self.leases.pop_first();
            let Some(s) = self.sessions.get_mut(&sid) else {
                continue;
            };
            if let Some(Hold::Computing {
                assigned,
                deadline: d,
            }) = s.held.get(&interval).copied()
            {
                if d != deadline {
                    continue;
                }
                s.held.insert(interval, Hold::Expired { assigned });
                s.expired += 1;
                self.leases_expired += 1;
                if self.backups.get(&interval) == Some(&sid) {
                    self.backups.remove(&interval);
                } else if self.schedule.holder(IntervalId(interval)) == Some(sid) {
                    any |= self.release(IntervalId(interval));
                }
                self.retier(sid);
            }
        }
        if any {
            self.feed_hungry();
        }
        if self.backup_wanted() && now >= self.last_backup_check + BACKUP_CHECK {
            self.last_backup_check = now;
            self.feed_hungry();
        }
        if self.totals_dirty && self.last_totals.map_or(true, |t| now >= t + TOTALS_EVERY) {
            let state = if self.serving {
                RunState::Running
            } else {
                RunState::Stopped
            };
            self.write_state(state);
        }
    }
}
