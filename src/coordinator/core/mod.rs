//! The coordinator's state machine: inputs and the current time in, outputs out.
//!
//! [`Core`] decides every assignment, lease, strike, acknowledgement and the end of the job. It
//! owns no socket, task, channel or clock: the caller feeds it [`Input`]s with the time they
//! happened ([`Core::handle`]), takes the [`Output`]s it produced ([`Core::poll_output`]) —
//! messages for sessions, rows for the store, results that became durable — and wakes it at
//! [`Core::poll_timeout`]. `coordinator::shell` drives it with tokio; the deterministic simulator
//! in `tests/it/simulation/` drives it with a seeded random schedule of faults.
//!
//! This file holds its vocabulary (configuration, [`Input`], [`Output`]), its state and its entry
//! points; the decisions are split by concern, each an `impl Core` block of its own:
//! `sessions` (joining, leaving, allowances, feeding those that wait), `results` (verdicts,
//! acceptance, duplicates, strikes, replies in order), `leases` (leases running out, backup
//! copies at the tail), `durability` (writes, commits, totals, the end of the job, a failed
//! store), `snapshot` (read-only views for observers) and `invariants` (what the simulator checks
//! after every step).
//!
//! # The rules it enforces
//! * **Each interval counts at most once.** The [`Scheduler`] moves an interval to *pending* when
//!   its first valid result is accepted, and only a commit moves pending to done.
//! * **An acknowledgement means durable.** An accepted result is written ([`Write::Result`], with a
//!   sequence number) and its `ack` waits until the store reports that sequence number committed
//!   ([`Input::Committed`]). Replies to a session's results leave in the order the results came,
//!   so an `ack duplicate` or an `error` queues behind an earlier `ack accepted` that waits.
//! * **`done` comes last.** `done job_complete` is sent only when every result is durable, behind
//!   every reply; `done server_stopping` is queued behind the replies too.
//! * **A session's backlog is bounded by its prefetch.** An interval stays held by its session
//!   (and counts toward `max_prefetch`) from its `assign` until its result is durable, so a session
//!   never has more than `max_prefetch` acknowledgements waiting, plus as many re-sent results.
//! * **Honest workers are never struck.** A worker that holds an interval twice — re-sent after a
//!   reconnect and assigned again, or reissued to it after its lease ran out — gets `duplicate`
//!   for the second copy. Strikes are counted per connection; nothing is refused by name.
//! * **Re-sent results** (`resend`, after a reconnect) count only for intervals that were handed
//!   out (in this process or before a restart: ids are reserved durably before they are issued,
//!   [`Write::Reserve`]) and that no live session holds; for one a live session holds they are a
//!   `duplicate`, not a steal; beyond the reservation they are `not_assigned`.
//! * **Leases come from what the server saw**, never from a client's claimed duration: a multiple
//!   of the slowest assign-to-result time observed (per session once it has delivered, over the
//!   run before), between a floor and a ceiling. An interval whose lease ran out goes back to the
//!   queue, but stays counted against its session's prefetch until that session answers it, and
//!   sessions that deliver are fed before sessions that hold intervals past their leases.

mod durability;
mod invariants;
mod leases;
mod results;
mod sessions;
mod snapshot;

pub use durability::{RunState, Write, RESERVE_BLOCK};
pub use snapshot::{HeldRow, Snapshot, WorkerRow};

use super::scheduler::Scheduler;
use crate::job::verify::{Refusal, Verified};
use crate::job::Job;
use crate::maths::exact::ExactSum;
use crate::maths::kernel::Kernel;
use crate::report::ResultRecord;
use crate::wire::{DoneReason, ServerMessage, WorkResult};
use durability::{Aggregate, Pending, TOTALS_EVERY};
use leases::BACKUP_CHECK;
use sessions::{Reply, Session};
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::time::Duration;

/// A session: one connection of one worker.
pub type SessionId = u64;

/// The core's clock: time since an origin chosen by its driver (the shell uses the moment the
/// coordinator started; the simulator its own virtual clock).
pub type Time = Duration;

/// How long an assignment may stay unanswered before it goes back to the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeasePolicy {
    /// Every assignment gets this lease.
    Fixed(Duration),
    /// `LEASE_FACTOR` (4, in `leases`) times the slowest observed assign-to-result time, within
    /// these bounds; the floor until something has been observed.
    Observed { floor: Duration, ceiling: Duration },
}

impl Default for LeasePolicy {
    fn default() -> Self {
        LeasePolicy::Observed {
            floor: Duration::from_secs(30),
            ceiling: Duration::from_secs(3600),
        }
    }
}

/// A run's number in its store (1, 2, …): the one type of run ids, in the core, the store, the
/// node and the web layer. SQLite keeps it as an `INTEGER` (i64): the store converts at its
/// boundary, checked both ways. On the wire (the welcome's `run`) and in the API's JSON it is a
/// plain number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct RunId(pub u64);

impl std::fmt::Display for RunId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// Settings of a coordinator.
#[derive(Debug, Clone)]
pub struct CoreConfig {
    pub job: Job,
    pub run_id: RunId,
    /// The most assignments one session may hold.
    pub max_prefetch: u32,
    pub lease: LeasePolicy,
    /// How often workers must send something (announced in the welcome).
    pub heartbeat: Duration,
    /// Bad results one connection may send; the last one closes it.
    pub max_bad_results: u32,
    /// Produce [`Output::Durable`] for every result that becomes durable.
    pub emit_durable: bool,
    /// The run's identity, unique across stores (sent in the welcome as `run_uid`).
    pub run_uid: String,
    /// The π kernel the run computes with (named in the welcome; a stored run keeps its own).
    pub kernel: Kernel,
    /// Hand out backup copies of intervals in flight at the tail of the job.
    pub backups: bool,
    /// Once it has delivered, a session holds at most what it is expected to finish within the
    /// horizon (or twice its fastest assign-to-result time, if longer), plus one. The horizon is
    /// a quarter of the run's expected remaining time (the terms left over the sessions' summed
    /// speeds), between 0.25 s and this.
    pub horizon: Duration,
}

impl CoreConfig {
    pub fn new(job: Job) -> CoreConfig {
        CoreConfig {
            job,
            run_id: RunId(1),
            max_prefetch: crate::wire::DEFAULT_MAX_PREFETCH,
            lease: LeasePolicy::default(),
            heartbeat: Duration::from_secs(20),
            max_bad_results: 3,
            emit_durable: false,
            run_uid: String::new(),
            kernel: Kernel::CURRENT,
            backups: true,
            horizon: Duration::from_secs(2),
        }
    }
}

/// What kind of client a session is (for the worker table).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkerKind {
    /// `piswarm worker` (its hello says so).
    Piswarm,
    /// The original's Python client, on the legacy listener.
    Legacy,
    /// A browser on `/join`.
    Browser,
    /// Any other client of protocol v1.
    Other,
}

/// A session that completed its handshake (token and version already checked).
#[derive(Debug, Clone)]
pub struct Joining {
    pub session: SessionId,
    pub name: String,
    pub peer: String,
    pub kind: WorkerKind,
    /// What the client says it is (`hello.agent`, made printable; may be empty).
    pub agent: String,
}

/// Everything that can happen to the coordinator.
#[derive(Debug, Clone)]
pub enum Input {
    /// A session completed its handshake. The core answers with a `welcome` (and `done` if the
    /// job is complete), or an error and a close.
    Join(Joining),
    /// The session asks for `count` more assignments.
    Request { session: SessionId, count: u32 },
    /// A result, with the verdict of the O(1) verification (run by the session, off this task).
    Result {
        session: SessionId,
        result: WorkResult,
        verdict: Result<Verified, Refusal>,
        /// When it arrived, as RFC 3339 (stored with the result).
        received_at: String,
    },
    /// The session ended: whatever it holds goes back to the queue.
    Leave { session: SessionId },
    /// The store made every write up to this sequence number durable.
    Committed { through: u64 },
    /// The store cannot make anything durable any more (or the disk is full).
    StoreFailed { reason: String },
    /// Stop serving: every session is told `done server_stopping` (after its pending replies)
    /// and closed; nothing more is handed out until [`Input::Open`].
    Drain,
    /// Serve again after a drain.
    Open,
    /// Time passed (leases, periodic writes).
    Tick,
}

/// What the core asks its driver to do, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// Write a message to a session.
    Send {
        session: SessionId,
        message: ServerMessage,
    },
    /// Close a session once everything sent before is written.
    Close { session: SessionId },
    /// Make this durable; report its sequence number with [`Input::Committed`].
    Write(Write),
    /// A result is now durable (in commit order), with the totals after it: print it.
    /// Produced only with [`CoreConfig::emit_durable`].
    Durable(DurableLine),
}

/// A durable result and the totals after it (the shell prints it: `coordinator::printer`).
#[derive(Debug, Clone, PartialEq)]
pub struct DurableLine {
    pub record: ResultRecord,
    pub intervals_done: u64,
    pub terms_done: u64,
    pub pi: f64,
}

/// What a coordinator continues from after a restart (read back from the store).
#[derive(Debug, Clone, Default)]
pub struct ResumeState {
    pub done_ids: Vec<u64>,
    /// Every id below this may have been handed out before.
    pub issued_upto: u64,
    pub pi: ExactSum,
    pub even_sum: u128,
    pub odd_sum: u128,
    pub terms_done: u64,
    pub worker_names: Vec<String>,
    pub elapsed_s: f64,
    /// The exact sum of the stored results' certified bounds.
    pub pi_bound: ExactSum,
}

/// The coordinator's state machine (see the module's documentation).
#[derive(Debug)]
pub struct Core {
    config: CoreConfig,
    schedule: Scheduler,
    /// Ordered, so that everything the core does is deterministic (the simulator replays seeds).
    sessions: BTreeMap<SessionId, Session>,
    /// Sessions with credit and nothing to be given, by (tier, id).
    hungry: BTreeSet<(u8, SessionId)>,
    /// Lease deadlines of `Computing` holds.
    leases: BTreeSet<(Time, u64, SessionId)>,
    next_seq: u64,
    committed: u64,
    pending: VecDeque<Pending>,
    /// Ids below this are durably reserved.
    reserved: u64,
    /// A reservation written and not yet committed.
    reserving: bool,
    aggregate: Aggregate,
    prior_elapsed: f64,
    run_latencies: VecDeque<Duration>,
    store_failed: Option<String>,
    serving: bool,
    announced_complete: bool,
    last_totals: Option<Time>,
    totals_dirty: bool,
    recent_rejects: VecDeque<u64>,
    sessions_seen: u64,
    leases_expired: u64,
    results_accepted: u64,
    results_duplicate: u64,
    results_rejected: u64,
    /// Intervals in flight that also have a backup copy, and the session computing it.
    backups: HashMap<u64, SessionId>,
    backups_issued: u64,
    backups_won: u64,
    backup_terms: u64,
    /// When backups were last considered for waiting sessions.
    last_backup_check: Time,
    /// The connected sessions' measured speeds, summed (terms/s).
    speed_total: f64,
    now: Time,
    out: VecDeque<Output>,
}

impl Core {
    /// A coordinator for a new run, or continuing one (`resume`). It starts serving: its first
    /// output reserves the first block of ids.
    pub fn new(config: CoreConfig, resume: Option<ResumeState>) -> Core {
        let r = resume.unwrap_or_default();
        let schedule = Scheduler::resume(config.job, r.done_ids.iter().copied(), r.issued_upto);
        let reserved = schedule.next_fresh();
        let mut core = Core {
            config,
            schedule,
            sessions: BTreeMap::new(),
            hungry: BTreeSet::new(),
            leases: BTreeSet::new(),
            next_seq: 1,
            committed: 0,
            pending: VecDeque::new(),
            reserved,
            reserving: false,
            aggregate: Aggregate {
                pi: r.pi,
                pi_bound: r.pi_bound,
                even_sum: r.even_sum,
                odd_sum: r.odd_sum,
                terms: r.terms_done,
                workers: r.worker_names.into_iter().collect(),
            },
            prior_elapsed: r.elapsed_s,
            run_latencies: VecDeque::new(),
            store_failed: None,
            serving: true,
            announced_complete: false,
            last_totals: None,
            totals_dirty: false,
            recent_rejects: VecDeque::new(),
            sessions_seen: 0,
            leases_expired: 0,
            results_accepted: 0,
            results_duplicate: 0,
            results_rejected: 0,
            backups: HashMap::new(),
            backups_issued: 0,
            backups_won: 0,
            backup_terms: 0,
            last_backup_check: Duration::ZERO,
            speed_total: 0.0,
            now: Duration::ZERO,
            out: VecDeque::new(),
        };
        core.schedule.allow_up_to(reserved);
        core.announced_complete = core.schedule.is_complete();
        core.write_state(RunState::Running);
        core.reserve_ahead();
        core
    }

    pub fn config(&self) -> &CoreConfig {
        &self.config
    }

    /// Applies one input that happened at `now` (time never goes back: an earlier `now` is taken
    /// as the latest seen).
    pub fn handle(&mut self, now: Time, input: Input) {
        self.now = self.now.max(now);
        match input {
            Input::Join(joining) => self.join(joining),
            Input::Request { session, count } => {
                if let Some(s) = self.sessions.get_mut(&session) {
                    s.last_seen = self.now;
                    s.credit = s.credit.saturating_add(count).min(self.config.max_prefetch);
                    self.feed(session);
                }
            }
            Input::Result {
                session,
                result,
                verdict,
                received_at,
            } => self.result(session, result, verdict, received_at),
            Input::Leave { session } => self.leave(session),
            Input::Committed { through } => self.committed(through),
            Input::StoreFailed { reason } => self.store_failed(reason),
            Input::Drain => self.drain(),
            Input::Open => self.open(),
            Input::Tick => self.tick(),
        }
    }

    /// The next output, if any. Drain them after every [`Core::handle`].
    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// When [`Input::Tick`] is next due (the earliest lease deadline), if anything is waiting.
    pub fn poll_timeout(&self) -> Option<Time> {
        let lease = self.leases.first().map(|l| l.0);
        let totals = self
            .totals_dirty
            .then(|| self.last_totals.map_or(self.now, |t| t + TOTALS_EVERY));
        let backups = self
            .backup_wanted()
            .then(|| self.last_backup_check + BACKUP_CHECK);
        [lease, totals, backups].into_iter().flatten().min()
    }

    /// The sequence number of the last write produced (0 if none): once it is committed,
    /// everything accepted so far is durable.
    pub fn last_write(&self) -> u64 {
        self.next_seq - 1
    }

    /// The highest sequence number known to be committed.
    pub fn committed_through(&self) -> u64 {
        self.committed
    }

    pub fn is_complete(&self) -> bool {
        self.schedule.is_complete()
    }

    /// Whether it hands out work (not drained).
    pub fn snapshot_serving(&self) -> bool {
        self.serving
    }

    pub fn store_has_failed(&self) -> bool {
        self.store_failed.is_some()
    }

    /// Connected sessions.
    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    fn drain(&mut self) {
        if !self.serving {
            return;
        }
        self.serving = false;
        let ids: Vec<SessionId> = self.sessions.keys().copied().collect();
        for sid in ids {
            if let Some(s) = self.sessions.get_mut(&sid) {
                if !s.closing {
                    s.replies.push_back(Reply {
                        message: ServerMessage::Done {
                            reason: DoneReason::ServerStopping,
                        },
                        after: 0,
                        resend: false,
                        releases: None,
                    });
                    s.closing = true;
                }
            }
            self.flush(sid);
        }
        self.write_state(RunState::Stopped);
    }

    fn open(&mut self) {
        if self.serving {
            return;
        }
        self.serving = true;
        self.write_state(RunState::Running);
    }
}

#[cfg(test)]
mod tests;
