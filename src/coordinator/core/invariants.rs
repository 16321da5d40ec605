//! The core's invariants, checked by its tests and by the simulator after every step.

use super::durability::Pending;
use super::sessions::Hold;
use super::Core;
use crate::coordinator::scheduler::IntervalState;
use crate::job::IntervalId;

impl Core {
    /// Checks the core's invariants (for tests and the simulator); returns what is broken.
    ///
    /// Bounded memory: no session holds more than its prefetch or queues more replies than its
    /// holds and re-sent results allow, and no id beyond the durable reservation exists. No
    /// starvation: no session waits for work while something could be handed out. Leases: no
    /// assignment is held past its deadline once the core has seen that time (`Input::Tick` at
    /// [`Core::poll_timeout`]).
    pub fn check_invariants(&self) -> Result<(), String> {
        let max = self.config.max_prefetch as usize;
        if self.schedule.next_fresh() > self.reserved {
            return Err(format!(
                "ids up to {} exist beyond the durable reservation {}",
                self.schedule.next_fresh(),
                self.reserved
            ));
        }
        if let Some(&(deadline, interval, sid)) = self.leases.first() {
            if deadline < self.now {
                return Err(format!(
                    "session {sid} holds interval {interval} past its lease ({deadline:?} < {:?})",
                    self.now
                ));
            }
        }
        if self.serving && self.store_failed.is_none() {
            let end = self.config.job.intervals().unwrap_or(u64::MAX);
            let available = self.schedule.given_back_count() > 0
                || self.schedule.next_fresh() < self.reserved.min(end);
            if available {
                for &(_, sid) in &self.hungry {
                    let Some(s) = self.sessions.get(&sid) else {
                        return Err(format!("hungry session {sid} does not exist"));
                    };
                    if !s.closing && s.credit > 0 && s.held.len() < self.allowance(s) {
                        return Err(format!(
                            "session {sid} waits for work while intervals can be handed out"
                        ));
                    }
                }
            }
        }
        for (&sid, s) in &self.sessions {
            if s.held.len() > max {
                return Err(format!(
                    "session {sid} holds {} > max_prefetch {max}",
                    s.held.len()
                ));
            }
            let expired = s
                .held
                .values()
                .filter(|h| matches!(h, Hold::Expired { .. }))
                .count();
            if expired != s.expired as usize {
                return Err(format!(
                    "session {sid}: expired count {} != {expired}",
                    s.expired
                ));
            }
            if s.replies.len() > 2 * max + self.config.max_bad_results as usize + 4 {
                let replies: Vec<String> = s
                    .replies
                    .iter()
                    .map(|r| {
                        format!(
                            "{:?}@{}{}",
                            r.message,
                            r.after,
                            if r.resend { " r" } else { "" }
                        )
                    })
                    .collect();
                return Err(format!(
                    "session {sid} has {} queued replies (committed {}; held {:?}): {}",
                    s.replies.len(),
                    self.committed,
                    s.held,
                    replies.join(", ")
                ));
            }
            for (&interval, hold) in &s.held {
                if let Hold::Computing { deadline, .. } = hold {
                    if !self.leases.contains(&(*deadline, interval, sid)) {
                        return Err(format!("session {sid}: lease of {interval} not indexed"));
                    }
                }
            }
        }
        for &(_, interval, sid) in &self.leases {
            let ok = self
                .sessions
                .get(&sid)
                .and_then(|s| s.held.get(&interval))
                .is_some_and(|h| matches!(h, Hold::Computing { .. }));
            if !ok {
                return Err(format!("stale lease of {interval} for session {sid}"));
            }
        }
        for id in self.schedule.in_flight_ids() {
            let Some(holder) = self.schedule.holder(IntervalId(id)) else {
                continue;
            };
            let held = self
                .sessions
                .get(&holder)
                .and_then(|s| s.held.get(&id))
                .is_some_and(|h| matches!(h, Hold::Computing { .. }));
            if !held {
                return Err(format!(
                    "interval {id} in flight with session {holder}, which does not compute it"
                ));
            }
        }
        for (&id, &backup) in &self.backups {
            match self.schedule.state(IntervalId(id)) {
                IntervalState::InFlight(holder) if holder != backup => {}
                other => {
                    return Err(format!(
                        "interval {id} has a backup with session {backup} while {other:?}"
                    ))
                }
            }
            let computing = self
                .sessions
                .get(&backup)
                .and_then(|s| s.held.get(&id))
                .is_some_and(|h| matches!(h, Hold::Computing { .. }));
            if !computing {
                return Err(format!(
                    "interval {id}'s backup session {backup} does not compute it"
                ));
            }
        }
        if self.schedule.pending()
            != self
                .pending
                .iter()
                .filter(|p| matches!(p, Pending::Result { .. }))
                .count()
        {
            return Err("pending intervals and pending writes disagree".into());
        }
        Ok(())
    }
}
