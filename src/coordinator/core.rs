//! The coordinator's state machine: inputs and the current time in, outputs out.
//!
//! [`Core`] decides every assignment, lease, strike, acknowledgement and the end of the job. It
//! owns no socket, task, channel or clock: the caller feeds it [`Input`]s with the time they
//! happened ([`Core::handle`]), takes the [`Output`]s it produced ([`Core::poll_output`]) —
//! messages for sessions, rows for the store, results that became durable — and wakes it at
//! [`Core::poll_timeout`]. `coordinator::shell` drives it with tokio; the deterministic simulator
//! in `tests/simulation.rs` drives it with a seeded random schedule of faults.
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

use super::coverage::{self, CoverageMap};
use super::scheduler::{IntervalState, Scheduler};
use crate::job::verify::{Refusal, Verified};
use crate::job::{Interval, IntervalId, Job};
use crate::maths::exact::ExactSum;
use crate::maths::kernel::Kernel;
use crate::report::{certified_bound, FinalReport, ResultRecord, Totals};
use crate::store::{RunState, Write};
use crate::wire::{
    AckStatus, Dec, DoneReason, ErrorCode, ServerMessage, WorkResult, PROTOCOL_VERSION,
};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::time::Duration;

/// A session: one connection of one worker.
pub type SessionId = u64;

/// The core's clock: time since an origin chosen by its driver (the shell uses the moment the
/// coordinator started; the simulator its own virtual clock).
pub type Time = Duration;

/// How many ids are reserved durably at a time, ahead of those handed out.
pub const RESERVE_BLOCK: u64 = 4096;
/// How often the running totals are written (they are a cache: a resume recomputes them).
const TOTALS_EVERY: Duration = Duration::from_secs(1);
/// How many recently rejected intervals are remembered for the coverage map.
const RECENT_REJECTS: usize = 1024;
/// How many assign-to-result times are remembered to size leases.
const LATENCY_WINDOW: usize = 64;
/// Leases are this many times the slowest assign-to-result time observed.
const LEASE_FACTOR: u32 = 4;
/// How many recent results measure a session's speed.
const SPEED_WINDOW: usize = 16;
/// The speed assumed for a session that has not delivered yet, while no session has (terms/s).
/// Once some have, the median of their speeds is assumed instead.
const PRIOR_SPEED: f64 = 1e8;
/// Before its first result, a session holds at most this fraction (1/n) of the intervals left
/// (and at least 2): a slow newcomer cannot take a large share of the job.
const INITIAL_SHARE: u64 = 256;
/// The horizon is a quarter of the run's expected remaining time, but at least this long (and at
/// most [`CoreConfig::horizon`]).
const HORIZON_FLOOR: Duration = Duration::from_millis(250);
/// A backup copy is handed out only if its holder is expected to need this many times longer
/// than the requester to finish it (Spark's `speculation.multiplier` is 1.5 as well).
const BACKUP_MARGIN: f64 = 1.5;
/// While sessions wait for work and intervals are in flight, backups are reconsidered this often
/// (a holder that stops answering becomes worth backing up as time passes).
const BACKUP_CHECK: Duration = Duration::from_millis(250);

/// How long an assignment may stay unanswered before it goes back to the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeasePolicy {
    /// Every assignment gets this lease.
    Fixed(Duration),
    /// [`LEASE_FACTOR`] times the slowest observed assign-to-result time, within these bounds;
    /// the floor until something has been observed.
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

/// Settings of a coordinator.
#[derive(Debug, Clone)]
pub struct CoreConfig {
    pub job: Job,
    pub run_id: u64,
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
            run_id: 1,
            max_prefetch: 64,
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
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

/// Everything that can happen to the coordinator.
#[derive(Debug, Clone)]
pub enum Input {
    /// A session completed its handshake (token and version already checked). The core answers
    /// with a `welcome` (and `done` if the job is complete), or an error and a close.
    Join {
        session: SessionId,
        name: String,
        peer: String,
        kind: WorkerKind,
        /// What the client says it is (`hello.agent`, made printable; may be empty).
        agent: String,
    },
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

/// A durable result and the totals after it: one printed line.
#[derive(Debug, Clone, PartialEq)]
pub struct DurableLine {
    pub record: ResultRecord,
    pub intervals_done: u64,
    pub terms_done: u64,
    pub pi: f64,
}

impl std::fmt::Display for DurableLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let r = &self.record;
        write!(
            f,
            "[{:>6}] {} {} [{}, {}] evens={} odds={} pi={:e} {:.3}ms | total: {} intervals, {} terms, π≈{:.15}",
            r.id.0,
            r.worker,
            r.peer,
            r.a.0,
            r.b.0,
            r.even_sum.0,
            r.odd_sum.0,
            r.pi,
            r.duration_s * 1e3,
            self.intervals_done,
            self.terms_done,
            self.pi,
        )
    }
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

/// What the coordinator publishes for observers.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    pub run_id: u64,
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
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
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
    /// The most intervals it may hold now (its speed times the horizon; see [`CoreConfig::horizon`]).
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

/// Where an interval held by a session stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hold {
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
    fn assigned(&self) -> Option<Time> {
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
struct Reply {
    message: ServerMessage,
    /// The write that must be committed first (0: none).
    after: u64,
    /// It answers a re-sent result (counted in `Session::resends_waiting`).
    resend: bool,
    /// The hold it ends when it is sent.
    releases: Option<u64>,
}

#[derive(Debug)]
struct Session {
    name: String,
    peer: String,
    kind: WorkerKind,
    agent: String,
    joined: Time,
    last_seen: Time,
    credit: u32,
    held: HashMap<u64, Hold>,
    replies: VecDeque<Reply>,
    /// Re-sent results whose replies are still queued.
    resends_waiting: u32,
    /// Holds in the `Expired` state.
    expired: u32,
    strikes: u32,
    accepted: u64,
    rejected: u64,
    terms_accepted: u64,
    /// Recent assign-to-result times.
    latencies: VecDeque<Duration>,
    /// Closing: no more assignments; closed once its replies are out.
    closing: bool,
    /// Its close was emitted: nothing more is sent.
    closed: bool,
    /// Its key in the hungry queue, while it waits for work.
    hungry: Option<(u8, SessionId)>,
    /// When its last result arrived (the end of its last piece of measured work).
    last_result: Option<Time>,
    /// Recent results: terms, and the time the session spent on them (from the later of the
    /// assignment and its previous result, to the result).
    work: VecDeque<(u64, Duration)>,
    /// Its fastest assign-to-result time.
    fastest: Option<Duration>,
    backups: u64,
    backups_won: u64,
}

impl Session {
    /// The feeding tier: sessions that deliver first, then new ones, then those holding
    /// intervals past their leases.
    fn tier(&self) -> u8 {
        if self.expired > 0 {
            2
        } else if self.accepted == 0 {
            1
        } else {
            0
        }
    }

    fn slowest(&self) -> Option<Duration> {
        self.latencies.iter().max().copied()
    }

    /// Terms per second over its recent results, once it has delivered.
    fn speed(&self) -> Option<f64> {
        if self.work.is_empty() {
            return None;
        }
        let terms: u64 = self.work.iter().map(|w| w.0).sum();
        let time: Duration = self.work.iter().map(|w| w.1).sum();
        Some(terms as f64 / time.as_secs_f64().max(1e-6))
    }

    /// What it is still computing, oldest assignment first: (id, terms).
    fn queue(&self, job: &Job) -> Vec<(Time, u64, u64)> {
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
    fn started(&self, queue: &[(Time, u64, u64)]) -> Time {
        let oldest = queue.first().map_or(Time::ZERO, |q| q.0);
        self.last_result.map_or(oldest, |r| r.max(oldest))
    }
}

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

/// A write whose commit is awaited.
#[derive(Debug)]
enum Pending {
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
    fn seq(&self) -> u64 {
        match self {
            Pending::Result { seq, .. } | Pending::Reserve { seq, .. } | Pending::Other { seq } => {
                *seq
            }
        }
    }
}

/// The durable totals, accumulated exactly.
#[derive(Debug, Clone, Default)]
struct Aggregate {
    pi: ExactSum,
    pi_bound: ExactSum,
    even_sum: u128,
    odd_sum: u128,
    terms: u64,
    workers: HashSet<String>,
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
            Input::Join {
                session,
                name,
                peer,
                kind,
                agent,
            } => self.join(session, name, peer, kind, agent),
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

    // ----------------------------------------------------------------------------------------
    // Sessions
    // ----------------------------------------------------------------------------------------

    fn join(&mut self, id: SessionId, name: String, peer: String, kind: WorkerKind, agent: String) {
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
                run: self.config.run_id,
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

    fn leave(&mut self, id: SessionId) {
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

    /// Its holder no longer computes an interval in flight (it left, failed it, or its lease ran
    /// out): the backup copy's session becomes its holder, or else it goes back to the queue.
    /// Returns whether it went back to the queue.
    fn release(&mut self, id: IntervalId) -> bool {
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

    /// Hands the session as many intervals as its credit and prefetch allow.
    fn feed(&mut self, id: SessionId) {
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
    fn allowance(&self, s: &Session) -> usize {
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
    fn prior_speed(&self) -> f64 {
        let mut speeds: Vec<f64> = self.sessions.values().filter_map(Session::speed).collect();
        if speeds.is_empty() {
            return PRIOR_SPEED;
        }
        speeds.sort_unstable_by(f64::total_cmp);
        speeds[speeds.len() / 2]
    }

    /// Whether backups could help someone now: sessions wait, nothing is fresh or given back,
    /// and intervals are in flight.
    fn backup_wanted(&self) -> bool {
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
    fn pick_backup(&self, req: SessionId) -> Option<(Interval, Option<SessionId>)> {
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
    fn demote_backup(&mut self, id: u64, old: SessionId) {
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

    /// Feeds waiting sessions, best tier first, while there is something to hand out.
    fn feed_hungry(&mut self) {
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
    fn retier(&mut self, id: SessionId) {
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

    fn lease_for(&self, id: SessionId) -> Duration {
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

    // ----------------------------------------------------------------------------------------
    // Results
    // ----------------------------------------------------------------------------------------

    fn result(
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
    fn flush(&mut self, sid: SessionId) {
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

    // ----------------------------------------------------------------------------------------
    // Durability
    // ----------------------------------------------------------------------------------------

    fn committed(&mut self, through: u64) {
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
    fn reserve_ahead(&mut self) {
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

    fn write_state(&mut self, state: RunState) {
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
    fn announce_complete(&mut self) {
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

    fn store_failed(&mut self, reason: String) {
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

    // ----------------------------------------------------------------------------------------
    // Serving, draining, time
    // ----------------------------------------------------------------------------------------

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

    fn tick(&mut self) {
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

fn assign_message(interval: &Interval, lease: Duration, backup: bool) -> ServerMessage {
    ServerMessage::Assign {
        id: Dec(interval.id.0),
        a: Dec(interval.a),
        b: Dec(interval.b),
        lease_s: lease.as_secs_f64(),
        backup,
    }
}

fn push_bounded<T>(queue: &mut VecDeque<T>, value: T, max: usize) {
    if queue.len() >= max {
        queue.pop_front();
    }
    queue.push_back(value);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::verify::check_result;
    use crate::wire::AckStatus;

    fn ms(n: u64) -> Time {
        Duration::from_millis(n)
    }

    fn join(core: &mut Core, now: Time, session: SessionId) {
        core.handle(
            now,
            Input::Join {
                session,
                name: format!("w{session}"),
                peer: "test".into(),
                kind: WorkerKind::Piswarm,
                agent: String::new(),
            },
        );
    }

    /// Everything sent so far, by session; writes are committed at once.
    fn drain(core: &mut Core, now: Time) -> Vec<(SessionId, ServerMessage)> {
        let mut sent = Vec::new();
        loop {
            let mut wrote = false;
            while let Some(out) = core.poll_output() {
                match out {
                    Output::Send { session, message } => sent.push((session, message)),
                    Output::Write(_) => wrote = true,
                    Output::Close { .. } | Output::Durable(_) => {}
                }
            }
            if !wrote {
                return sent;
            }
            let through = core.last_write();
            core.handle(now, Input::Committed { through });
        }
    }

    fn assigns(sent: &[(SessionId, ServerMessage)], to: SessionId) -> Vec<(u64, bool)> {
        sent.iter()
            .filter(|(s, _)| *s == to)
            .filter_map(|(_, m)| match m {
                ServerMessage::Assign { id, backup, .. } => Some((id.0, *backup)),
                _ => None,
            })
            .collect()
    }

    fn result(core: &mut Core, now: Time, session: SessionId, id: u64) {
        let job = core.config().job;
        let i = job.interval(IntervalId(id)).unwrap();
        let r = crate::worker::compute(id, i.a, i.b);
        let verdict = check_result(&job, &r);
        core.handle(
            now,
            Input::Result {
                session,
                result: r,
                verdict,
                received_at: "test".into(),
            },
        );
    }

    /// No backup while anything fresh is left; then a newcomer gets a copy of an interval a
    /// silent holder sits on, at most one per interval; its result counts, and the holder's own
    /// late result is a duplicate, never an error.
    #[test]
    fn backups_only_at_the_tail_one_per_interval_and_the_first_result_counts() {
        let job = Job::new(Some(4000), Some(1000)).unwrap();
        let mut core = Core::new(CoreConfig::new(job), None);
        drain(&mut core, ms(0));
        join(&mut core, ms(0), 1);
        core.handle(
            ms(0),
            Input::Request {
                session: 1,
                count: 8,
            },
        );
        join(&mut core, ms(0), 2);
        core.handle(
            ms(0),
            Input::Request {
                session: 2,
                count: 8,
            },
        );
        let sent = drain(&mut core, ms(0));
        // Before a first result, 2 each (4 / 256, at least 2): everything is handed out, fresh.
        assert_eq!(assigns(&sent, 1), vec![(0, false), (1, false)]);
        assert_eq!(assigns(&sent, 2), vec![(2, false), (3, false)]);
        core.check_invariants().unwrap();
        // Ten seconds of silence; a newcomer asks for work.
        join(&mut core, ms(10_000), 3);
        core.handle(
            ms(10_000),
            Input::Request {
                session: 3,
                count: 8,
            },
        );
        let sent = drain(&mut core, ms(10_000));
        let copies = assigns(&sent, 3);
        assert_eq!(copies.len(), 2, "its allowance: {sent:?}");
        assert!(copies.iter().all(|&(_, backup)| backup));
        assert_ne!(copies[0].0, copies[1].0, "one backup per interval");
        core.check_invariants().unwrap();
        let snap = core.snapshot();
        assert_eq!((snap.backups_issued, snap.backup_terms), (2, 2000));
        // The newcomer answers one copy: it counts.
        let (won, _) = copies[0];
        result(&mut core, ms(10_001), 3, won);
        let sent = drain(&mut core, ms(10_001));
        assert!(sent.iter().any(|(s, m)| *s == 3
            && *m
                == ServerMessage::Ack {
                    id: Dec(won),
                    status: AckStatus::Accepted
                }));
        // Its holder answers late: a duplicate, not a strike.
        let holder = if won < 2 { 1 } else { 2 };
        result(&mut core, ms(10_002), holder, won);
        let sent = drain(&mut core, ms(10_002));
        assert!(
            sent.iter().any(|(s, m)| *s == holder
                && *m
                    == ServerMessage::Ack {
                        id: Dec(won),
                        status: AckStatus::Duplicate
                    }),
            "{sent:?}"
        );
        assert!(!sent
            .iter()
            .any(|(_, m)| matches!(m, ServerMessage::Error { .. })));
        let snap = core.snapshot();
        assert_eq!((snap.backups_won, snap.results_rejected), (1, 0));
        core.check_invariants().unwrap();
    }

    /// A holder that leaves hands its interval to the session computing the backup copy: it
    /// does not go back to the queue (another session can only get a backup copy of it).
    #[test]
    fn a_backup_becomes_the_holder_when_the_holder_leaves() {
        let job = Job::new(Some(2000), Some(1000)).unwrap();
        let mut core = Core::new(CoreConfig::new(job), None);
        drain(&mut core, ms(0));
        join(&mut core, ms(0), 1);
        core.handle(
            ms(0),
            Input::Request {
                session: 1,
                count: 2,
            },
        );
        drain(&mut core, ms(0));
        join(&mut core, ms(5_000), 2);
        core.handle(
            ms(5_000),
            Input::Request {
                session: 2,
                count: 1,
            },
        );
        let sent = drain(&mut core, ms(5_000));
        let (copy, backup) = assigns(&sent, 2)[0];
        assert!(backup);
        core.handle(ms(5_001), Input::Leave { session: 1 });
        join(&mut core, ms(5_001), 3);
        core.handle(
            ms(5_001),
            Input::Request {
                session: 3,
                count: 2,
            },
        );
        let sent = drain(&mut core, ms(5_001));
        let third = assigns(&sent, 3);
        assert!(
            third.iter().all(|&(id, backup)| (id == copy) == backup),
            "the copy's session holds it now, the other one went back: {third:?}"
        );
        assert!(third.contains(&(1 - copy, false)), "{third:?}");
        assert!(core
            .held()
            .iter()
            .any(|h| h.id == copy && h.session == 2 && !h.expired));
        core.check_invariants().unwrap();
        result(&mut core, ms(5_002), 2, copy);
        let sent = drain(&mut core, ms(5_002));
        assert!(sent.iter().any(|(s, m)| *s == 2
            && *m
                == ServerMessage::Ack {
                    id: Dec(copy),
                    status: AckStatus::Accepted
                }));
    }

    /// A session that completes its handshake after the run completed and the coordinator began
    /// to stop is told `done job_complete` (it leaves at once), not "stopping, try again".
    #[test]
    fn a_late_joiner_of_a_complete_run_is_told_it_is_complete_even_while_stopping() {
        let job = Job::new(Some(1000), Some(1000)).unwrap();
        let mut core = Core::new(CoreConfig::new(job), None);
        drain(&mut core, ms(0));
        join(&mut core, ms(0), 1);
        core.handle(
            ms(0),
            Input::Request {
                session: 1,
                count: 1,
            },
        );
        drain(&mut core, ms(0));
        result(&mut core, ms(1), 1, 0);
        drain(&mut core, ms(1));
        assert!(core.is_complete());
        core.handle(ms(2), Input::Drain);
        drain(&mut core, ms(2));
        join(&mut core, ms(3), 2);
        let sent = drain(&mut core, ms(3));
        let to_late: Vec<&ServerMessage> = sent
            .iter()
            .filter(|(s, _)| *s == 2)
            .map(|(_, m)| m)
            .collect();
        assert!(
            matches!(to_late[0], ServerMessage::Welcome { .. }),
            "{to_late:?}"
        );
        assert_eq!(
            to_late[1],
            &ServerMessage::Done {
                reason: DoneReason::JobComplete
            }
        );
    }
}
