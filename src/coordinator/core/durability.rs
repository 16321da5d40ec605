//! Durability: what the core writes, what a commit makes durable (the totals, the `ack`s behind
//! it, the end of the job), and a store that fails.

use super::sessions::{Hold, Reply};
use super::{Core, DurableLine, Output, SessionId};
use crate::job::IntervalId;
use crate::maths::exact::ExactSum;
use crate::report::{ResultRecord, Totals};
use crate::wire::{DoneReason, ErrorCode, ServerMessage};
use std::collections::HashSet;
use std::time::Duration;

/// A write the core asks its driver to make durable ([`Output::Write`]); the store's writer
/// commits them in order and reports the highest sequence number committed
/// ([`super::Input::Committed`]). Sequence numbers increase by one per write.
#[derive(Debug, Clone, PartialEq)]
pub enum Write {
    /// An accepted result.
    Result { seq: u64, record: ResultRecord },
    /// Interval ids below `upto` may be handed out: after a crash, everything below it may have
    /// been, and re-sent results for such ids are recognised.
    Reserve { seq: u64, upto: u64 },
    /// The run's running totals and state (a cache of what its results say).
    Totals {
        seq: u64,
        totals: Totals,
        pi_exact: Box<ExactSum>,
        state: RunState,
    },
}

impl Write {
    pub fn seq(&self) -> u64 {
        match self {
            Write::Result { seq, .. } | Write::Reserve { seq, .. } | Write::Totals { seq, .. } => {
                *seq
            }
        }
    }
}

/// The state of a run, as the core writes it with its totals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunState {
    Running,
    Stopped,
    Complete,
}

/// How many ids are reserved durably at a time, ahead of those handed out.
pub const RESERVE_BLOCK: u64 = 4096;

/// How often the running totals are written (they are a cache: a resume recomputes them).
pub(super) const TOTALS_EVERY: Duration = Duration::from_secs(1);

/// A write whose commit is awaited.
#[derive(Debug)]
pub(super) enum Pending {
    Result {
        seq: u64,
        id: IntervalId,
        session: SessionId,
        record: ResultRecord,
        terms: u64,
        pi_bound: f64,
    },
    Reserve {
        seq: u64,
        upto: u64,
    },
    Other {
        seq: u64,
    },
}

impl Pending {
    pub(super) fn seq(&self) -> u64 {
        match self {
            Pending::Result { seq, .. } | Pending::Reserve { seq, .. } | Pending::Other { seq } => {
                *seq
            }
        }
    }
}

/// The durable totals, accumulated exactly.
#[derive(Debug, Clone, Default)]
pub(super) struct Aggregate {
    pub(super) pi: ExactSum,
    pub(super) pi_bound: ExactSum,
    pub(super) even_sum: u128,
    pub(super) odd_sum: u128,
    pub(super) terms: u64,
    pub(super) workers: HashSet<String>,
}

impl Core {
    pub(super) fn committed(&mut self, through: u64) {
        if through <= self.committed {
            return;
        }
        self.committed = through.min(self.last_write());
        let mut touched: Vec<SessionId> = Vec::new();
        let mut fed_reserve = false;
        while self
            .pending
            .front()
            .is_some_and(|p| p.seq() <= self.committed)
        {
            let Some(p) = self.pending.pop_front() else {
                break;
            };
            match p {
                Pending::Result {
                    id,
                    session,
                    record,
                    terms,
                    pi_bound,
                    ..
                } => {
                    self.schedule.make_durable(id);
                    let a = &mut self.aggregate;
                    let _ = a.pi.add(record.pi);
                    let _ = a.pi_bound.add(pi_bound);
                    a.even_sum += record.even_sum.0;
                    a.odd_sum += record.odd_sum.0;
                    a.terms += terms;
                    if !a.workers.contains(&record.worker) {
                        a.workers.insert(record.worker.clone());
                    }
                    self.totals_dirty = true;
                    if let Some(s) = self.sessions.get_mut(&session) {
                        if s.held.get(&id.0) == Some(&Hold::Answered) {
                            s.held.remove(&id.0);
                        }
                        s.accepted += 1;
                        s.terms_accepted += terms;
                        touched.push(session);
                    }
                    if self.config.emit_durable {
                        self.out.push_back(Output::Durable(DurableLine {
                            record,
                            intervals_done: self.schedule.done(),
                            terms_done: self.aggregate.terms,
                            pi: self.aggregate.pi.value(),
                        }));
                    }
                }
                Pending::Reserve { upto, .. } => {
                    self.reserved = self.reserved.max(upto);
                    self.schedule.allow_up_to(self.reserved);
                    self.reserving = false;
                    fed_reserve = true;
                }
                Pending::Other { .. } => {}
            }
        }
        touched.sort_unstable();
        touched.dedup();
        for sid in &touched {
            self.retier(*sid);
            self.flush(*sid);
            self.feed(*sid);
        }
        if fed_reserve {
            self.feed_hungry();
            self.reserve_ahead();
        }
        self.check_complete();
    }

    /// Reserves the next block of ids when the handed-out ones come near the reservation.
    pub(super) fn reserve_ahead(&mut self) {
        if self.reserving || self.store_failed.is_some() {
            return;
        }
        let end = self.config.job.intervals().unwrap_or(u64::MAX);
        if self.reserved >= end {
            return;
        }
        if self.schedule.next_fresh() + RESERVE_BLOCK / 2 < self.reserved {
            return;
        }
        let upto = self.reserved.saturating_add(RESERVE_BLOCK).min(end);
        let seq = self.next_seq;
        self.next_seq += 1;
        self.reserving = true;
        self.out
            .push_back(Output::Write(Write::Reserve { seq, upto }));
        self.pending.push_back(Pending::Reserve { seq, upto });
    }

    fn write_totals(&mut self, state: RunState) {
        if self.store_failed.is_some() {
            // Nothing can be written any more: nothing is waiting to be.
            self.totals_dirty = false;
            return;
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.out.push_back(Output::Write(Write::Totals {
            seq,
            totals: self.totals(),
            pi_exact: Box::new(self.aggregate.pi.clone()),
            state,
        }));
        self.pending.push_back(Pending::Other { seq });
        self.last_totals = Some(self.now);
        self.totals_dirty = false;
    }

    pub(super) fn write_state(&mut self, state: RunState) {
        let state = if self.schedule.is_complete() {
            RunState::Complete
        } else {
            state
        };
        self.write_totals(state);
    }

    fn check_complete(&mut self) {
        if !self.schedule.is_complete() {
            return;
        }
        self.announce_complete();
    }

    /// Tells every session `done job_complete`, behind its pending replies.
    pub(super) fn announce_complete(&mut self) {
        if self.announced_complete {
            return;
        }
        self.announced_complete = true;
        self.write_totals(RunState::Complete);
        let ids: Vec<SessionId> = self.sessions.keys().copied().collect();
        for sid in ids {
            if let Some(s) = self.sessions.get_mut(&sid) {
                s.replies.push_back(Reply {
                    message: ServerMessage::Done {
                        reason: DoneReason::JobComplete,
                    },
                    after: 0,
                    resend: false,
                    releases: None,
                });
            }
            self.flush(sid);
        }
    }

    pub(super) fn store_failed(&mut self, reason: String) {
        if self.store_failed.is_some() {
            return;
        }
        self.store_failed = Some(reason.clone());
        let message = format!(
            "the server cannot store results ({reason}); results not acknowledged are not counted: send them again later"
        );
        let ids: Vec<SessionId> = self.sessions.keys().copied().collect();
        for sid in ids {
            if let Some(s) = self.sessions.get_mut(&sid) {
                // Replies waiting for a commit will never be sent: the worker keeps those
                // results and sends them again to a restarted coordinator.
                s.replies.retain(|r| r.after == 0);
                s.resends_waiting = s.replies.iter().filter(|r| r.resend).count() as u32;
                s.replies.push_back(Reply {
                    message: ServerMessage::error(ErrorCode::Internal, message.clone()),
                    after: 0,
                    resend: false,
                    releases: None,
                });
                s.closing = true;
            }
            self.flush(sid);
        }
    }
}
