//! Read-only views of the core for observers: the snapshot, the totals, the report, the coverage
//! map, the worker table and the intervals held.

use super::sessions::Hold;
use super::{Core, SessionId, WorkerKind};
use crate::coordinator::coverage::{self, CoverageMap};
use crate::job::Job;
use crate::report::{certified_bound, FinalReport, Totals};
use crate::wire::Dec;

/// What the coordinator publishes for observers.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    pub run_id: super::RunId,
    pub job: Job,
    pub totals: Totals,
    /// Connected sessions (one per connection that completed its handshake).
    pub sessions: usize,
    /// Sessions since the coordinator started.
    pub sessions_seen: u64,
    pub in_flight: usize,
    /// Accepted results not yet durable.
    pub pending: usize,
    pub complete: bool,
    pub serving: bool,
    /// Set when the store failed: the coordinator no longer accepts results.
    pub store_failed: Option<String>,
    pub leases_expired: u64,
    pub results_accepted: u64,
    pub results_duplicate: u64,
    pub results_rejected: u64,
    /// Backup copies handed out, those whose result counted first, and the terms they covered.
    pub backups_issued: u64,
    pub backups_won: u64,
    pub backup_terms: u64,
}

/// One row of the worker table.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerRow {
    pub session: SessionId,
    pub name: String,
    pub kind: WorkerKind,
    /// What the client says it is (`hello.agent`, printable; may be empty).
    pub agent: String,
    pub peer: String,
    /// Seconds since the coordinator started, when the session joined.
    pub joined_s: f64,
    pub accepted: u64,
    pub rejected: u64,
    pub in_hand: usize,
    pub strikes: u32,
    /// Terms per second of its accepted results, measured by the server.
    pub terms_per_s: f64,
    /// The most intervals it may hold now (its speed times the horizon; see
    /// [`super::CoreConfig::horizon`]).
    pub allowance: usize,
    /// Backup copies it was given, and how many of them counted first.
    pub backups: u64,
    pub backups_won: u64,
    /// Seconds since the coordinator started, when it last sent something the core saw.
    pub last_seen_s: f64,
}

/// One interval held by a session, for the dashboard (read-only).
#[derive(Debug, Clone, PartialEq)]
pub struct HeldRow {
    pub id: u64,
    pub session: SessionId,
    pub worker: String,
    pub peer: String,
    /// Seconds since the coordinator started, when it was assigned.
    pub assigned_s: f64,
    /// Its lease ran out (it went back to the queue; a late result still counts).
    pub expired: bool,
}

impl Core {
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            run_id: self.config.run_id,
            job: self.config.job,
            totals: self.totals(),
            sessions: self.sessions.len(),
            sessions_seen: self.sessions_seen,
            in_flight: self.schedule.in_flight(),
            pending: self.schedule.pending(),
            complete: self.schedule.is_complete(),
            serving: self.serving,
            store_failed: self.store_failed.clone(),
            leases_expired: self.leases_expired,
            results_accepted: self.results_accepted,
            results_duplicate: self.results_duplicate,
            results_rejected: self.results_rejected,
            backups_issued: self.backups_issued,
            backups_won: self.backups_won,
            backup_terms: self.backup_terms,
        }
    }

    /// The durable totals.
    pub fn totals(&self) -> Totals {
        let a = &self.aggregate;
        Totals {
            intervals_done: self.schedule.done(),
            terms_done: a.terms,
            even_sum: Dec(a.even_sum),
            odd_sum: Dec(a.odd_sum),
            pi: a.pi.value(),
            workers: a.workers.len() as u64,
            elapsed_s: self.prior_elapsed + self.now.as_secs_f64(),
            pi_bound: certified_bound(a.pi_bound.value(), a.pi.value()),
        }
    }

    /// The report of the durable results so far.
    pub fn report(&self) -> FinalReport {
        FinalReport::new(
            &self.config.job,
            self.config.kernel,
            &self.totals(),
            self.schedule.done_is_prefix(),
        )
    }

    /// The coverage map of the grid in at most `buckets` stretches.
    pub fn coverage(&self, buckets: u32) -> CoverageMap {
        coverage::map(
            &self.config.job,
            &self.schedule,
            &self.recent_rejects,
            buckets,
        )
    }

    /// The worker table: one row per connected session, oldest first.
    pub fn workers(&self) -> Vec<WorkerRow> {
        let mut rows: Vec<WorkerRow> = self
            .sessions
            .iter()
            .map(|(&id, s)| {
                let alive = self.now.saturating_sub(s.joined).as_secs_f64();
                WorkerRow {
                    session: id,
                    name: s.name.clone(),
                    kind: s.kind,
                    agent: s.agent.clone(),
                    peer: s.peer.clone(),
                    joined_s: s.joined.as_secs_f64(),
                    accepted: s.accepted,
                    rejected: s.rejected,
                    in_hand: s.held.len(),
                    strikes: s.strikes,
                    terms_per_s: if alive > 0.0 {
                        s.terms_accepted as f64 / alive
                    } else {
                        0.0
                    },
                    allowance: self.allowance(s),
                    backups: s.backups,
                    backups_won: s.backups_won,
                    last_seen_s: s.last_seen.as_secs_f64(),
                }
            })
            .collect();
        rows.sort_by_key(|r| r.session);
        rows
    }

    /// The intervals sessions are computing (or whose lease ran out while they held them), by
    /// interval id. Read-only: for the dashboard's history.
    pub fn held(&self) -> Vec<HeldRow> {
        let mut rows: Vec<HeldRow> = self
            .sessions
            .iter()
            .flat_map(|(&session, s)| {
                s.held.iter().filter_map(move |(&id, hold)| {
                    let (assigned, expired) = match *hold {
                        Hold::Computing { assigned, .. } => (assigned, false),
                        Hold::Expired { assigned } => (assigned, true),
                        Hold::Covered { .. } | Hold::Answered => return None,
                    };
                    Some(HeldRow {
                        id,
                        session,
                        worker: s.name.clone(),
                        peer: s.peer.clone(),
                        assigned_s: assigned.as_secs_f64(),
                        expired,
                    })
                })
            })
            .collect();
        rows.sort_by_key(|r| (r.id, r.session));
        rows
    }
}
