//! Sessions: joining and leaving, what each may hold (its allowance), and feeding those that
//! wait for work.

use super::{Core, Joining, Output, SessionId, Time, WorkerKind};
use crate::job::{Interval, IntervalId, Job};
use crate::wire::{Dec, DoneReason, ErrorCode, ServerMessage, PROTOCOL_VERSION};
use std::collections::{HashMap, VecDeque};
use std::time::Duration;

/// Where an interval held by a session stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Hold {
    /// Assigned; the lease runs until `deadline`.
    Computing { assigned: Time, deadline: Time },
    /// The lease ran out: the interval went back to the queue, but the session may still answer
    /// it (a late result counts if nobody's counted first). Counts against its prefetch.
    Expired { assigned: Time },
    /// Another result for it counted (someone else's, or this worker's own re-sent copy): the
    /// session's own result will be a `duplicate`. Counts against its prefetch.
    Covered { assigned: Time },
    /// Its result was accepted and is being made durable; the `ack` waits for the commit.
    Answered,
}

impl Hold {
    /// When it was assigned, while the session may still be computing it.
    pub(super) fn assigned(&self) -> Option<Time> {
        match *self {
            Hold::Computing { assigned, .. }
            | Hold::Expired { assigned }
            | Hold::Covered { assigned } => Some(assigned),
            Hold::Answered => None,
        }
    }
}

/// A reply to a result (or a final message), released in order once its write is durable.
#[derive(Debug, Clone)]
pub(super) struct Reply {
    pub(super) message: ServerMessage,
    /// The write that must be committed first (0: none).
    pub(super) after: u64,
    /// It answers a re-sent result (counted in `Session::resends_waiting`).
    pub(super) resend: bool,
    /// The hold it ends when it is sent.
    pub(super) releases: Option<u64>,
}

#[derive(Debug)]
pub(super) struct Session {
    pub(super) name: String,
    pub(super) peer: String,
    pub(super) kind: WorkerKind,
    pub(super) agent: String,
    pub(super) joined: Time,
    pub(super) last_seen: Time,
    pub(super) credit: u32,
    pub(super) held: HashMap<u64, Hold>,
    pub(super) replies: VecDeque<Reply>,
    /// Re-sent results whose replies are still queued.
    pub(super) resends_waiting: u32,
    /// Holds in the `Expired` state.
    pub(super) expired: u32,
    pub(super) strikes: u32,
    pub(super) accepted: u64,
    pub(super) rejected: u64,
    pub(super) terms_accepted: u64,
    /// Recent assign-to-result times.
    pub(super) latencies: VecDeque<Duration>,
    /// Closing: no more assignments; closed once its replies are out.
    pub(super) closing: bool,
    /// Its close was emitted: nothing more is sent.
    pub(super) closed: bool,
    /// Its key in the hungry queue, while it waits for work.
    pub(super) hungry: Option<(u8, SessionId)>,
    /// When its last result arrived (the end of its last piece of measured work).
    pub(super) last_result: Option<Time>,
    /// Recent results: terms, and the time the session spent on them (from the later of the
    /// assignment and its previous result, to the result).
    pub(super) work: VecDeque<(u64, Duration)>,
    /// Its fastest assign-to-result time.
    pub(super) fastest: Option<Duration>,
    pub(super) backups: u64,
    pub(super) backups_won: u64,
}

impl Session {
    /// The feeding tier: sessions that deliver first, then new ones, then those holding
    /// intervals past their leases.
    pub(super) fn tier(&self) -> u8 {
        if self.expired > 0 {
            2
        } else if self.accepted == 0 {
            1
        } else {
            0
        }
    }

    pub(super) fn slowest(&self) -> Option<Duration> {
        self.latencies.iter().max().copied()
    }

    /// Terms per second over its recent results, once it has delivered.
    pub(super) fn speed(&self) -> Option<f64> {
        if self.work.is_empty() {
            return None;
        }
        let terms: u64 = self.work.iter().map(|w| w.0).sum();
        let time: Duration = self.work.iter().map(|w| w.1).sum();
        Some(terms as f64 / time.as_secs_f64().max(1e-6))
    }

    /// What it is still computing, oldest assignment first: (id, terms).
    pub(super) fn queue(&self, job: &Job) -> Vec<(Time, u64, u64)> {
        let mut q: Vec<(Time, u64, u64)> = self
            .held
            .iter()
            .filter_map(|(&id, hold)| {
                let assigned = hold.assigned()?;
                let terms = job.interval(IntervalId(id)).map_or(0, |i| i.b - i.a + 1);
                Some((assigned, id, terms))
            })
            .collect();
        q.sort_unstable();
        q
    }

    /// When it started on what it holds now: its last result, or its oldest assignment if later.
    pub(super) fn started(&self, queue: &[(Time, u64, u64)]) -> Time {
        let oldest = queue.first().map_or(Time::ZERO, |q| q.0);
        self.last_result.map_or(oldest, |r| r.max(oldest))
    }
}

fn assign_message(interval: &Interval, lease: Duration, backup: bool) -> ServerMessage {
    ServerMessage::Assign {
        id: Dec(interval.id.0),
        a: Dec(interval.a),
        b: Dec(interval.b),
        lease_s: lease.as_secs_f64(),
        backup,
    }
}

/// The speed assumed for a session that has not delivered yet, while no session has (terms/s).
/// Once some have, the median of their speeds is assumed instead.
const PRIOR_SPEED: f64 = 1e8;

/// Before its first result, a session holds at most this fraction (1/n) of the intervals left
/// (and at least 2): a slow newcomer cannot take a large share of the job.
const INITIAL_SHARE: u64 = 256;

/// The horizon is a quarter of the run's expected remaining time, but at least this long (and at
/// most [`CoreConfig::horizon`]).
const HORIZON_FLOOR: Duration = Duration::from_millis(250);

impl Core {
    pub(super) fn join(&mut self, joining: Joining) {
        let Joining {
            session: id,
            name,
            peer,
            kind,
            agent,
        } = joining;
        if self.sessions.contains_key(&id) {
            return; // a driver bug; never two sessions under one id
        }
        let refusal = if let Some(reason) = &self.store_failed {
            Some(format!(
                "the server cannot store results ({reason}); try again later"
            ))
        } else if !self.serving && !self.announced_complete {
            Some("the server is stopping; try again later".to_string())
        } else {
            None
        };
        if let Some(message) = refusal {
            self.out.push_back(Output::Send {
                session: id,
                message: ServerMessage::error(ErrorCode::Internal, message),
            });
            self.out.push_back(Output::Close { session: id });
            return;
        }
        self.sessions_seen += 1;
        let job = self.config.job;
        self.out.push_back(Output::Send {
            session: id,
            message: ServerMessage::Welcome {
                version: PROTOCOL_VERSION,
                server: format!("piswarm {}", env!("CARGO_PKG_VERSION")),
                run: self.config.run_id.0,
                terms: job.terms.map(Dec),
                chunk: Dec(job.chunk),
                max_prefetch: self.config.max_prefetch,
                heartbeat_s: self.config.heartbeat.as_secs_f64(),
                run_uid: (!self.config.run_uid.is_empty()).then(|| self.config.run_uid.clone()),
                kernel: Some(self.config.kernel.name().to_string()),
            },
        });
        let mut session = Session {
            name,
            peer,
            kind,
            agent,
            joined: self.now,
            last_seen: self.now,
            credit: 0,
            held: HashMap::new(),
            replies: VecDeque::new(),
            resends_waiting: 0,
            expired: 0,
            strikes: 0,
            accepted: 0,
            rejected: 0,
            terms_accepted: 0,
            latencies: VecDeque::new(),
            closing: false,
            closed: false,
            hungry: None,
            last_result: None,
            work: VecDeque::new(),
            fastest: None,
            backups: 0,
            backups_won: 0,
        };
        if self.announced_complete {
            session.replies.push_back(Reply {
                message: ServerMessage::Done {
                    reason: DoneReason::JobComplete,
                },
                after: 0,
                resend: false,
                releases: None,
            });
            // A stopping coordinator of a complete run still says so (a late worker leaves at
            // once instead of waiting for a coordinator to come back), then closes.
            session.closing = !self.serving;
        }
        self.sessions.insert(id, session);
        self.flush(id);
    }

    pub(super) fn leave(&mut self, id: SessionId) {
        let Some(session) = self.sessions.remove(&id) else {
            return;
        };
        self.speed_total = (self.speed_total - session.speed().unwrap_or(0.0)).max(0.0);
        if self.sessions.is_empty() {
            self.speed_total = 0.0; // no rounding left over
        }
        if let Some(key) = session.hungry {
            self.hungry.remove(&key);
        }
        let mut returned = false;
        for (&interval, hold) in &session.held {
            if let Hold::Computing { deadline, .. } = hold {
                self.leases.remove(&(*deadline, interval, id));
            }
            if self.backups.get(&interval) == Some(&id) {
                self.backups.remove(&interval);
            } else if matches!(hold, Hold::Computing { .. } | Hold::Expired { .. })
                && self.schedule.holder(IntervalId(interval)) == Some(id)
            {
                returned |= self.release(IntervalId(interval));
            }
        }
        if returned {
            self.feed_hungry();
        }
    }

    /// Hands the session as many intervals as its credit and prefetch allow.
    pub(super) fn feed(&mut self, id: SessionId) {
        if !self.serving || self.store_failed.is_some() {
            return;
        }
        let Some(allowance) = self.sessions.get(&id).map(|s| self.allowance(s)) else {
            return;
        };
        loop {
            let lease = self.lease_for(id);
            let Some(s) = self.sessions.get(&id) else {
                return;
            };
            if s.closing || s.credit == 0 || s.held.len() >= allowance {
                break;
            }
            let (interval, backup) = match self.schedule.issue(id) {
                Some(interval) => (interval, false),
                None => match self.pick_backup(id) {
                    Some((interval, replaces)) => {
                        if let Some(old) = replaces {
                            self.demote_backup(interval.id.0, old);
                        }
                        (interval, true)
                    }
                    None => {
                        self.wait_for_work(id);
                        self.reserve_ahead();
                        return;
                    }
                },
            };
            let Some(s) = self.sessions.get_mut(&id) else {
                return;
            };
            let deadline = self.now + lease;
            match s.held.get(&interval.id.0) {
                Some(_) if backup => {
                    // Cannot happen (a backup is never picked for an interval its requester holds).
                    break;
                }
                Some(Hold::Expired { assigned }) => {
                    // Reissued to the session that still has it: it is computing it already, so
                    // only its lease is renewed (no second assign, no credit spent).
                    let assigned = *assigned;
                    s.expired -= 1;
                    s.held
                        .insert(interval.id.0, Hold::Computing { assigned, deadline });
                    self.leases.insert((deadline, interval.id.0, id));
                    continue;
                }
                Some(_) => {
                    // Cannot happen (only an expired hold can be in the queue); keep it safe.
                    self.schedule.give_back(interval.id);
                    break;
                }
                None => {}
            }
            s.held.insert(
                interval.id.0,
                Hold::Computing {
                    assigned: self.now,
                    deadline,
                },
            );
            s.credit -= 1;
            self.leases.insert((deadline, interval.id.0, id));
            if backup {
                s.backups += 1;
                self.backups.insert(interval.id.0, id);
                self.backups_issued += 1;
                self.backup_terms += interval.b - interval.a + 1;
            }
            self.out.push_back(Output::Send {
                session: id,
                message: assign_message(&interval, lease, backup),
            });
        }
        if let Some(s) = self.sessions.get_mut(&id) {
            if let Some(key) = s.hungry.take() {
                self.hungry.remove(&key);
            }
        }
        self.reserve_ahead();
    }

    /// Files the session among those waiting for work.
    fn wait_for_work(&mut self, id: SessionId) {
        let Some(s) = self.sessions.get_mut(&id) else {
            return;
        };
        let key = (s.tier(), id);
        if s.hungry != Some(key) {
            if let Some(old) = s.hungry.take() {
                self.hungry.remove(&old);
            }
            s.hungry = Some(key);
            self.hungry.insert(key);
        }
    }

    /// The most intervals a session may hold now: before its first result, a small share of
    /// what is left; then what it is expected to finish within the horizon, plus one.
    pub(super) fn allowance(&self, s: &Session) -> usize {
        let max = self.config.max_prefetch.max(1) as usize;
        match s.speed() {
            None => match self.config.job.intervals() {
                Some(n) => {
                    let left = n.saturating_sub(self.schedule.done());
                    usize::try_from(left.div_ceil(INITIAL_SHARE).max(2))
                        .unwrap_or(max)
                        .min(max)
                }
                None => max,
            },
            Some(speed) => {
                let horizon = self.horizon().max(s.fastest.unwrap_or_default() * 2);
                let chunk = self.config.job.chunk.max(1) as f64;
                let n = (speed * horizon.as_secs_f64() / chunk).floor();
                (n.min(max as f64) as usize + 1).min(max)
            }
        }
    }

    /// The horizon of allowances: a quarter of the run's expected remaining time, within
    /// [[`HORIZON_FLOOR`], [`CoreConfig::horizon`]].
    fn horizon(&self) -> Duration {
        let most = self.config.horizon.max(HORIZON_FLOOR);
        let Some(terms) = self.config.job.terms else {
            return most;
        };
        if self.speed_total <= 0.0 {
            return most;
        }
        let left = terms.saturating_sub(self.aggregate.terms) as f64;
        Duration::from_secs_f64((left / self.speed_total / 4.0).min(most.as_secs_f64()))
            .max(HORIZON_FLOOR)
    }

    /// The speed assumed for a session that has not delivered: the median of those that have.
    pub(super) fn prior_speed(&self) -> f64 {
        let mut speeds: Vec<f64> = self.sessions.values().filter_map(Session::speed).collect();
        if speeds.is_empty() {
            return PRIOR_SPEED;
        }
        speeds.sort_unstable_by(f64::total_cmp);
        speeds[speeds.len() / 2]
    }

    /// Feeds waiting sessions, best tier first, while there is something to hand out.
    pub(super) fn feed_hungry(&mut self) {
        let waiting: Vec<SessionId> = self.hungry.iter().map(|&(_, id)| id).collect();
        for id in waiting {
            self.feed(id);
            if self.sessions.get(&id).is_some_and(|s| s.hungry.is_some()) {
                break; // nothing fresh or given back is left
            }
        }
        if !self.backup_wanted() {
            return;
        }
        // Backup copies depend on who asks: the fastest waiting sessions first, until one is
        // not expected to beat any holder (then no slower one is either).
        let prior = self.prior_speed();
        let mut waiting: Vec<(f64, SessionId)> = self
            .hungry
            .iter()
            .filter_map(|&(_, id)| {
                let s = self.sessions.get(&id)?;
                Some((s.speed().unwrap_or(prior), id))
            })
            .collect();
        waiting.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        for (_, id) in waiting {
            self.feed(id);
            if self.sessions.get(&id).is_some_and(|s| s.hungry.is_some()) {
                break;
            }
        }
    }

    /// Re-files a waiting session after its tier changed.
    pub(super) fn retier(&mut self, id: SessionId) {
        let Some(s) = self.sessions.get_mut(&id) else {
            return;
        };
        if let Some(old) = s.hungry {
            let key = (s.tier(), id);
            if key != old {
                self.hungry.remove(&old);
                self.hungry.insert(key);
                s.hungry = Some(key);
            }
        }
    }
}
