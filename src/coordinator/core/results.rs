//! Results: verdicts, acceptance, duplicates, strikes, and the replies that leave in order.

use super::durability::Pending;
use super::sessions::{Hold, Reply};
use super::{Core, Output, SessionId, Write};
use crate::coordinator::scheduler::IntervalState;
use crate::job::verify::{Refusal, Verified};
use crate::job::IntervalId;
use crate::report::ResultRecord;
use crate::wire::{AckStatus, Dec, ErrorCode, ServerMessage, WorkResult};
use std::collections::VecDeque;

/// How many recently rejected intervals are remembered for the coverage map.
const RECENT_REJECTS: usize = 1024;

/// How many assign-to-result times are remembered to size leases.
const LATENCY_WINDOW: usize = 64;

/// How many recent results measure a session's speed.
const SPEED_WINDOW: usize = 16;

fn push_bounded<T>(queue: &mut VecDeque<T>, value: T, max: usize) {
    if queue.len() >= max {
        queue.pop_front();
    }
    queue.push_back(value);
}

impl Core {
    pub(super) fn result(
        &mut self,
        sid: SessionId,
        result: WorkResult,
        verdict: Result<Verified, Refusal>,
        received_at: String,
    ) {
        let now = self.now;
        let Some(s) = self.sessions.get_mut(&sid) else {
            return;
        };
        if s.closing {
            // Refused or told to leave: nothing more is answered (its replies are bounded).
            return;
        }
        s.last_seen = now;
        if self.store_failed.is_some() {
            return; // not answered: the worker sends it again to a restarted coordinator
        }
        let id = IntervalId(result.id.0);
        let verified = match verdict {
            Ok(v) => v,
            Err(refusal) => {
                self.reject(sid, id, refusal);
                return;
            }
        };
        let hold = s.held.get(&id.0).copied();
        // A re-sent copy never uses up the session's own assignment of the interval: the worker
        // may be computing it again (it was handed out again after a restart), and that copy
        // must be answered `duplicate`, not struck.
        if result.resend {
            self.resent(sid, result, verified, received_at);
            return;
        }
        let Some(hold) = hold else {
            let message = format!("interval {id} is not assigned to you");
            self.strike(sid, id, ErrorCode::NotAssigned, message);
            return;
        };
        let assigned = match hold {
            Hold::Answered => {
                let message = format!("interval {id} was already answered on this connection");
                self.strike(sid, id, ErrorCode::NotAssigned, message);
                return;
            }
            Hold::Computing { assigned, deadline } => {
                self.leases.remove(&(deadline, id.0, sid));
                assigned
            }
            Hold::Expired { assigned } => {
                s.expired -= 1;
                assigned
            }
            Hold::Covered { assigned } => assigned,
        };
        let latency = now.saturating_sub(assigned);
        push_bounded(&mut s.latencies, latency, LATENCY_WINDOW / 4);
        push_bounded(&mut self.run_latencies, latency, LATENCY_WINDOW);
        let since = s.last_result.map_or(assigned, |r| r.max(assigned));
        let terms = result.b.0 - result.a.0 + 1;
        let before = s.speed().unwrap_or(0.0);
        push_bounded(
            &mut s.work,
            (terms, now.saturating_sub(since)),
            SPEED_WINDOW,
        );
        self.speed_total = (self.speed_total + s.speed().unwrap_or(0.0) - before).max(0.0);
        s.last_result = Some(now);
        s.fastest = Some(s.fastest.map_or(latency, |f| f.min(latency)));
        match self.schedule.state(id) {
            IntervalState::InFlight(_) | IntervalState::GivenBack => {
                if let Some(s) = self.sessions.get_mut(&sid) {
                    s.held.insert(id.0, Hold::Answered);
                }
                self.accept(sid, result, verified, received_at);
            }
            IntervalState::Pending | IntervalState::Done | IntervalState::Fresh => {
                // Held until its answer leaves (it may queue behind an `ack` that waits for a
                // commit), so that answers waiting never outnumber the session's prefetch.
                if let Some(s) = self.sessions.get_mut(&sid) {
                    s.held.insert(id.0, Hold::Answered);
                }
                self.answer_releasing(sid, id, AckStatus::Duplicate, 0, false, Some(id.0));
            }
        }
        self.retier(sid);
    }

    /// A result computed on an earlier connection (perhaps to an earlier coordinator process)
    /// and never acknowledged; this session does not hold it.
    fn resent(
        &mut self,
        sid: SessionId,
        result: WorkResult,
        verified: Verified,
        received_at: String,
    ) {
        let id = IntervalId(result.id.0);
        let waiting = self.sessions.get(&sid).map_or(0, |s| s.resends_waiting);
        if waiting >= self.config.max_prefetch {
            let message = format!(
                "more than {} re-sent results awaiting their answers; send more once they are answered",
                self.config.max_prefetch
            );
            self.strike(sid, id, ErrorCode::BadMessage, message);
            return;
        }
        match self.schedule.state(id) {
            IntervalState::Fresh => {
                let message = format!("interval {id} was never handed out in this run");
                self.strike(sid, id, ErrorCode::NotAssigned, message);
            }
            IntervalState::InFlight(holder) if holder != sid => {
                // Another live session holds it: its own result will count. Not a steal.
                self.answer(sid, id, AckStatus::Duplicate, 0, true);
            }
            IntervalState::Pending | IntervalState::Done => {
                self.answer(sid, id, AckStatus::Duplicate, 0, true);
            }
            IntervalState::InFlight(_) | IntervalState::GivenBack => {
                self.accept(sid, result, verified, received_at);
            }
        }
    }

    /// Counts a verified result for an interval in flight or given back: it becomes pending, is
    /// written, and its `ack` waits for the commit.
    fn accept(
        &mut self,
        sid: SessionId,
        result: WorkResult,
        verified: Verified,
        received_at: String,
    ) {
        let id = IntervalId(result.id.0);
        // Whoever else holds it now (its holder, or its backup) holds a copy whose result will
        // be a duplicate.
        let backup = self.backups.remove(&id.0);
        for holder in [self.schedule.holder(id), backup] {
            let Some(holder) = holder.filter(|&h| h != sid) else {
                continue;
            };
            if let Some(h) = self.sessions.get_mut(&holder) {
                if let Some(Hold::Computing { assigned, deadline }) = h.held.get(&id.0).copied() {
                    self.leases.remove(&(deadline, id.0, holder));
                    h.held.insert(id.0, Hold::Covered { assigned });
                }
            }
        }
        if !self.schedule.accept(id) {
            self.answer(sid, id, AckStatus::Duplicate, 0, result.resend);
            return;
        }
        if backup == Some(sid) {
            self.backups_won += 1;
            if let Some(s) = self.sessions.get_mut(&sid) {
                s.backups_won += 1;
            }
        }
        self.accept_pending(sid, result, verified, received_at);
    }

    /// Writes a result whose interval just became pending, and queues its `ack` behind the write.
    fn accept_pending(
        &mut self,
        sid: SessionId,
        result: WorkResult,
        verified: Verified,
        received_at: String,
    ) {
        let id = IntervalId(result.id.0);
        let Some(s) = self.sessions.get_mut(&sid) else {
            return;
        };
        // This worker's own assignment of the interval, if it re-sent an earlier copy: its fresh
        // result will be a duplicate.
        if result.resend {
            if let Some(Hold::Computing { assigned, deadline }) = s.held.get(&id.0).copied() {
                self.leases.remove(&(deadline, id.0, sid));
                s.held.insert(id.0, Hold::Covered { assigned });
            } else if let Some(Hold::Expired { assigned }) = s.held.get(&id.0).copied() {
                s.expired -= 1;
                s.held.insert(id.0, Hold::Covered { assigned });
            }
        }
        let terms = result.b.0 - result.a.0 + 1;
        let record = ResultRecord {
            id: result.id,
            a: result.a,
            b: result.b,
            worker: s.name.clone(),
            peer: s.peer.clone(),
            even_sum: result.even_sum,
            odd_sum: result.odd_sum,
            pi: result.pi,
            duration_s: result.duration_s,
            timestamp: received_at,
        };
        let seq = self.next_seq;
        self.next_seq += 1;
        self.out.push_back(Output::Write(Write::Result {
            seq,
            record: record.clone(),
        }));
        self.pending.push_back(Pending::Result {
            seq,
            id,
            session: sid,
            record,
            terms,
            pi_bound: verified.pi_bound,
        });
        self.results_accepted += 1;
        self.answer(sid, id, AckStatus::Accepted, seq, result.resend);
    }

    /// Queues the reply to a result.
    fn answer(
        &mut self,
        sid: SessionId,
        id: IntervalId,
        status: AckStatus,
        after: u64,
        resend: bool,
    ) {
        self.answer_releasing(sid, id, status, after, resend, None);
    }

    /// Queues the reply to a result, which ends the session's hold of `releases` once sent.
    fn answer_releasing(
        &mut self,
        sid: SessionId,
        id: IntervalId,
        status: AckStatus,
        after: u64,
        resend: bool,
        releases: Option<u64>,
    ) {
        if status == AckStatus::Duplicate {
            self.results_duplicate += 1;
        }
        let Some(s) = self.sessions.get_mut(&sid) else {
            return;
        };
        if resend {
            s.resends_waiting += 1;
        }
        s.replies.push_back(Reply {
            message: ServerMessage::Ack {
                id: Dec(id.0),
                status,
            },
            after,
            resend,
            releases,
        });
        self.flush(sid);
    }

    /// A result that failed verification: the interval goes back, the connection gets a strike.
    fn reject(&mut self, sid: SessionId, id: IntervalId, refusal: Refusal) {
        push_bounded(&mut self.recent_rejects, id.0, RECENT_REJECTS);
        if let Some(s) = self.sessions.get_mut(&sid) {
            match s.held.get(&id.0).copied() {
                Some(Hold::Computing { deadline, .. }) => {
                    self.leases.remove(&(deadline, id.0, sid));
                    s.held.remove(&id.0);
                }
                Some(Hold::Expired { .. }) => {
                    s.expired -= 1;
                    s.held.remove(&id.0);
                }
                Some(Hold::Covered { .. }) => {
                    s.held.remove(&id.0);
                }
                Some(Hold::Answered) | None => {}
            }
        }
        if self.backups.get(&id.0) == Some(&sid) {
            self.backups.remove(&id.0);
        } else if self.schedule.holder(id) == Some(sid) {
            self.release(id);
        }
        self.strike(sid, id, refusal.code, refusal.message);
        self.feed_hungry();
        self.feed(sid);
    }

    /// Answers a bad result with an error and counts a strike; past the limit the connection is
    /// refused and closed. Strikes are per connection: a name proves nothing.
    fn strike(&mut self, sid: SessionId, id: IntervalId, code: ErrorCode, message: String) {
        self.results_rejected += 1;
        let max = self.config.max_bad_results;
        let Some(s) = self.sessions.get_mut(&sid) else {
            return;
        };
        s.strikes += 1;
        s.rejected += 1;
        s.replies.push_back(Reply {
            message: ServerMessage::Error {
                code,
                message,
                id: Some(Dec(id.0)),
            },
            after: 0,
            resend: false,
            releases: None,
        });
        if s.strikes >= max && !s.closing {
            s.replies.push_back(Reply {
                message: ServerMessage::error(
                    ErrorCode::Refused,
                    "too many bad results: this connection is closed",
                ),
                after: 0,
                resend: false,
                releases: None,
            });
            s.closing = true;
        }
        self.flush(sid);
    }

    /// Sends a session's replies whose writes are durable, in order; closes it when it is
    /// closing and nothing is left.
    pub(super) fn flush(&mut self, sid: SessionId) {
        let committed = self.committed;
        let Some(s) = self.sessions.get_mut(&sid) else {
            return;
        };
        if s.closed {
            return;
        }
        let mut released = false;
        while let Some(front) = s.replies.front() {
            if front.after > committed {
                break;
            }
            let Some(reply) = s.replies.pop_front() else {
                break;
            };
            if reply.resend {
                s.resends_waiting -= 1;
            }
            if let Some(id) = reply.releases {
                if s.held.get(&id) == Some(&Hold::Answered) {
                    s.held.remove(&id);
                    released = true;
                }
            }
            self.out.push_back(Output::Send {
                session: sid,
                message: reply.message,
            });
        }
        if s.closing && s.replies.is_empty() {
            s.closed = true;
            self.out.push_back(Output::Close { session: sid });
        }
        if released {
            self.feed(sid);
        }
    }
}
