//! The coordinator: the one task that owns a run's state.
//!
//! Sessions (see `server`) never touch the schedule or the totals: they send [`Event`]s over a
//! bounded channel and receive [`Outbound`] messages on their own bounded outbox. The coordinator
//! applies events one at a time, so there are no locks and no races: an interval is issued to one
//! holder at a time and counted at most once (see `scheduler`). It publishes a [`Snapshot`] on a
//! `watch` channel for progress bars and the dashboard.
//!
//! The coordinator never waits on a session: it writes to outboxes with `try_send`, and a session
//! whose outbox is full (its peer stopped reading) is dropped and its intervals given back.

pub mod scheduler;
pub mod verify;

use crate::job::{Interval, IntervalId, Job};
use crate::maths::exact::ExactSum;
use crate::wire::{
    AckStatus, Dec, DoneReason, ErrorCode, ServerMessage, WorkResult, PROTOCOL_VERSION,
};
use crate::report::{now_iso8601, FinalReport, ResultRecord, Totals};
use crate::coordinator::scheduler::{Completion, Scheduler};
use crate::store::{self, RunState, RunTotals, WriteFailure, WriteOp, Writer};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot, watch};

pub type SessionId = u64;

/// Capacity of the coordinator's event queue. Senders wait when it is full: backpressure.
const EVENT_QUEUE: usize = 4096;
/// How often leases are checked and snapshots published.
const TICK: Duration = Duration::from_millis(100);
/// The shortest lease the coordinator grants when it derives one.
pub const LEASE_FLOOR: Duration = Duration::from_secs(30);
/// The longest derived lease.
const LEASE_CEILING: Duration = Duration::from_secs(3600);
/// How far past the highest issued interval a re-sent result may be (see
/// `Scheduler::complete_resent`): enough for every interval that a crashed coordinator can have had
/// in flight.
const RESEND_WINDOW: u64 = 1 << 20;
/// Speed assumed for a worker before it has reported anything (a slow, Python-like client).
const ASSUMED_TERMS_PER_S: f64 = 2e6;

/// Settings of a coordinator.
#[derive(Debug, Clone)]
pub struct CoordinatorConfig {
    pub job: Job,
    pub run_id: u64,
    /// The most assignments one worker may hold.
    pub max_prefetch: u32,
    /// A fixed lease for every assignment; `None` derives it from the chunk and the worker's speed.
    pub lease: Option<Duration>,
    /// How often workers must send something.
    pub heartbeat: Duration,
    /// Bad results a worker may send before it is refused for the rest of the run.
    pub max_bad_results: u32,
    /// Print one line per accepted result to stdout.
    pub print_results: bool,
    /// Stop accepting results when the store's file system has less free space than this.
    pub min_free_disk: u64,
}

impl CoordinatorConfig {
    pub fn new(job: Job) -> CoordinatorConfig {
        CoordinatorConfig {
            job,
            run_id: 1,
            max_prefetch: 64,
            lease: None,
            heartbeat: Duration::from_secs(10),
            max_bad_results: 3,
            print_results: false,
            min_free_disk: 1 << 30,
        }
    }
}

/// A message for a session to write to its peer, or an order to close.
#[derive(Debug, Clone, PartialEq)]
pub enum Outbound {
    Message(ServerMessage),
    /// Close the connection after writing everything before this.
    Close,
}

/// Everything that can happen to the coordinator.
#[derive(Debug)]
pub enum Event {
    /// A worker completed the hello; the reply is its welcome or an error message.
    Join {
        name: String,
        peer: String,
        outbox: mpsc::Sender<Outbound>,
        reply: oneshot::Sender<Result<(SessionId, ServerMessage), ServerMessage>>,
    },
    /// The worker asks for `count` more assignments.
    Request { session: SessionId, count: u32 },
    /// A result that the session has already verified (bounds, sums, π).
    Result {
        session: SessionId,
        result: WorkResult,
    },
    /// A result that failed verification: the interval goes back, the worker gets a strike.
    Rejected {
        session: SessionId,
        id: IntervalId,
        code: ErrorCode,
        message: String,
    },
    /// The session ended (the peer left, timed out or broke the protocol).
    Leave { session: SessionId },
    /// Stop serving: every session is told there is no more work and every held interval goes
    /// back to the queue. The run's state is kept; new joins are welcomed again afterwards.
    Drain { reply: oneshot::Sender<()> },
    /// The final report as of now.
    Report { reply: oneshot::Sender<FinalReport> },
    /// Replies once every result accepted so far is durable (immediately without a store).
    Flush { reply: oneshot::Sender<()> },
    /// The coverage map of the grid in at most `buckets` stretches (for the dashboard).
    Coverage {
        buckets: u32,
        reply: oneshot::Sender<CoverageMap>,
    },
}

/// How many recently rejected intervals the coordinator remembers for the coverage map.
const RECENT_REJECTS: usize = 1024;

/// The grid [0, span) cut into equal stretches of `width` intervals, with how many intervals of
/// each stretch are in each state. `span` is the job's interval count, or for an open-ended job
/// the highest interval issued so far plus one.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct CoverageMap {
    pub span: u64,
    pub width: u64,
    pub chunk: u64,
    pub buckets: Vec<CoverageBucket>,
}

/// Interval counts of one stretch of the coverage map. `rejected` counts intervals whose last
/// result was rejected recently and that are not done yet (they are also in flight or given back).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct CoverageBucket {
    pub done: u64,
    pub in_flight: u64,
    pub given_back: u64,
    pub rejected: u64,
    pub not_started: u64,
}

/// What the coordinator publishes for observers.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    pub run_id: u64,
    pub job: Job,
    pub clients: usize,
    pub intervals_done: u64,
    pub terms_done: u64,
    pub in_flight: usize,
    pub even_sum: u128,
    pub odd_sum: u128,
    pub pi: f64,
    pub complete: bool,
    pub workers_seen: u64,
    /// Set when the store failed: the coordinator no longer accepts results.
    pub store_failed: Option<String>,
}

/// The handle through which sessions and the program talk to the coordinator.
#[derive(Debug, Clone)]
pub struct CoordinatorHandle {
    events: mpsc::Sender<Event>,
    snapshot: watch::Receiver<Snapshot>,
    job: Job,
}

/// The coordinator's task has ended (the program is shutting down).
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the coordinator has stopped")]
pub struct CoordinatorGone;

impl CoordinatorHandle {
    pub fn job(&self) -> Job {
        self.job
    }

    pub async fn send(&self, event: Event) -> Result<(), CoordinatorGone> {
        self.events.send(event).await.map_err(|_| CoordinatorGone)
    }

    pub fn snapshot(&self) -> watch::Receiver<Snapshot> {
        self.snapshot.clone()
    }

    /// Tells every worker to leave and takes their intervals back; the run stays resumable.
    pub async fn drain(&self) -> Result<(), CoordinatorGone> {
        let (reply, rx) = oneshot::channel();
        self.send(Event::Drain { reply }).await?;
        rx.await.map_err(|_| CoordinatorGone)
    }

    /// Waits until every result accepted so far is durable.
    pub async fn flush(&self) -> Result<(), CoordinatorGone> {
        let (reply, rx) = oneshot::channel();
        self.send(Event::Flush { reply }).await?;
        rx.await.map_err(|_| CoordinatorGone)
    }

    pub async fn report(&self) -> Result<FinalReport, CoordinatorGone> {
        let (reply, rx) = oneshot::channel();
        self.send(Event::Report { reply }).await?;
        rx.await.map_err(|_| CoordinatorGone)
    }

    /// The coverage map of the run (see [`CoverageMap`]).
    pub async fn coverage(&self, buckets: u32) -> Result<CoverageMap, CoordinatorGone> {
        let (reply, rx) = oneshot::channel();
        self.send(Event::Coverage { buckets, reply }).await?;
        rx.await.map_err(|_| CoordinatorGone)
    }

    /// Waits until the bounded job is complete.
    pub async fn wait_complete(&self) -> Result<(), CoordinatorGone> {
        let mut rx = self.snapshot.clone();
        rx.wait_for(|s| s.complete)
            .await
            .map(|_| ())
            .map_err(|_| CoordinatorGone)
    }
}

struct Session {
    name: String,
    peer: String,
    outbox: mpsc::Sender<Outbound>,
    /// Assignments the peer asked for and has not received yet.
    credit: u32,
    /// Held intervals and their lease deadlines.
    held: HashMap<u64, Instant>,
    /// Intervals whose lease ran out while this session held them: a late result still counts
    /// if nobody else's counted first.
    expired: HashSet<u64>,
    /// Measured speed (terms per second), to size leases.
    terms_per_s: Option<f64>,
}

/// Where a coordinator makes its results durable: the writer of a store and the run's id there.
pub struct StoreLink {
    pub writer: Writer,
    pub run: i64,
    /// Told by the writer if a commit fails.
    pub failures: mpsc::UnboundedReceiver<WriteFailure>,
    /// The database file, to watch the free space of its file system.
    pub path: Option<PathBuf>,
}

/// Spawns a coordinator task for a fresh run without a store (tests, embedding); returns its
/// handle and the task (which ends when every handle is dropped).
pub fn spawn(config: CoordinatorConfig) -> (CoordinatorHandle, tokio::task::JoinHandle<()>) {
    spawn_with(config, None, None)
}

/// Spawns a coordinator, optionally continuing a stored run and making results durable.
pub fn spawn_with(
    config: CoordinatorConfig,
    resume: Option<store::Resume>,
    store: Option<StoreLink>,
) -> (CoordinatorHandle, tokio::task::JoinHandle<()>) {
    let (schedule, pi, sums, terms_done, workers_seen) = match resume {
        Some(r) => (
            Scheduler::resume(config.job, r.done_ids),
            r.pi,
            (r.run.even_sum.0, r.run.odd_sum.0),
            r.run.terms_done,
            r.run.workers,
        ),
        None => (Scheduler::new(config.job), ExactSum::new(), (0, 0), 0, 0),
    };
    let (events, rx) = mpsc::channel(EVENT_QUEUE);
    let job = config.job;
    let first = Snapshot {
        run_id: config.run_id,
        job,
        clients: 0,
        intervals_done: schedule.done(),
        terms_done,
        in_flight: 0,
        even_sum: sums.0,
        odd_sum: sums.1,
        pi: pi.value(),
        complete: schedule.is_complete(),
        workers_seen,
        store_failed: None,
    };
    let (snap_tx, snapshot) = watch::channel(first);
    let state = Coordinator {
        config,
        schedule,
        sessions: HashMap::new(),
        hungry: BTreeSet::new(),
        next_session: 1,
        banned: HashSet::new(),
        strikes: HashMap::new(),
        pi,
        even_sum: sums.0,
        odd_sum: sums.1,
        terms_done,
        workers_seen,
        store,
        totals_pending: false,
        last_disk_check: Instant::now(),
        store_failed: None,
        started: Instant::now(),
        snapshot: snap_tx,
        dirty: true,
        announced_complete: false,
        draining: false,
        recent_rejects: std::collections::VecDeque::new(),
    };
    let task = tokio::spawn(state.run(rx));
    (
        CoordinatorHandle {
            events,
            snapshot,
            job,
        },
        task,
    )
}

struct Coordinator {
    config: CoordinatorConfig,
    schedule: Scheduler,
    sessions: HashMap<SessionId, Session>,
    /// Sessions with credit that could not be fed (no interval available).
    hungry: BTreeSet<SessionId>,
    next_session: SessionId,
    banned: HashSet<String>,
    /// Bad results per worker name.
    strikes: HashMap<String, u32>,
    pi: ExactSum,
    even_sum: u128,
    odd_sum: u128,
    terms_done: u64,
    workers_seen: u64,
    store: Option<StoreLink>,
    /// Results were queued to the store since the totals were last written.
    totals_pending: bool,
    last_disk_check: Instant,
    store_failed: Option<String>,
    started: Instant,
    snapshot: watch::Sender<Snapshot>,
    dirty: bool,
    announced_complete: bool,
    draining: bool,
    /// The latest rejected interval ids, oldest first (for the coverage map).
    recent_rejects: std::collections::VecDeque<u64>,
}

impl Coordinator {
    async fn run(mut self, mut events: mpsc::Receiver<Event>) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let failure = async {
                match self.store.as_mut() {
                    Some(link) => link.failures.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                event = events.recv() => match event {
                    Some(event) => self.handle(event).await,
                    None => break,
                },
                failed = failure => {
                    let reason = failed.map_or_else(|| "the store's writer stopped".to_string(), |f| f.0);
                    self.fail(reason);
                }
                _ = tick.tick() => {
                    self.expire_leases(Instant::now());
                    self.write_totals(false).await;
                    self.check_disk();
                    self.publish();
                }
            }
        }
    }

    /// The store cannot make results durable any more: stop accepting them. Workers are told to
    /// leave; what was acknowledged is safe, and the run can be resumed from the store.
    fn fail(&mut self, reason: String) {
        if self.store_failed.is_some() {
            return;
        }
        tracing::error!(
            "{reason}: no longer accepting results; the run can be resumed once this is fixed"
        );
        self.store_failed = Some(reason);
        self.drain();
        self.dirty = true;
        self.publish();
    }

    fn check_disk(&mut self) {
        if self.last_disk_check.elapsed() < Duration::from_secs(5) {
            return;
        }
        self.last_disk_check = Instant::now();
        let Some(path) = self.store.as_ref().and_then(|s| s.path.clone()) else {
            return;
        };
        if let Some(free) = store::free_disk_bytes(&path) {
            if free < self.config.min_free_disk {
                self.fail(format!(
                    "the disk holding {} has {} MiB free, below the minimum of {} MiB",
                    path.display(),
                    free >> 20,
                    self.config.min_free_disk >> 20
                ));
            }
        }
    }

    /// Queues the run's totals to the store (if anything changed, or always with `force`).
    async fn write_totals(&mut self, force: bool) {
        if !(self.totals_pending || force) {
            return;
        }
        let Some(link) = &self.store else { return };
        self.totals_pending = false;
        let state = if self.schedule.is_complete() {
            RunState::Complete
        } else {
            RunState::Running
        };
        let totals = RunTotals {
            intervals_done: self.schedule.done(),
            terms_done: self.terms_done,
            even_sum: self.even_sum,
            odd_sum: self.odd_sum,
            pi: self.pi.clone(),
            workers: self.workers_seen,
            elapsed_s: self.started.elapsed().as_secs_f64(),
            state,
        };
        let _ = link
            .writer
            .send(WriteOp::Totals {
                run: link.run,
                totals,
            })
            .await;
    }

    async fn handle(&mut self, event: Event) {
        // Frequent events are published with the next tick; the rest at once.
        let publish_now = !matches!(event, Event::Result { .. } | Event::Request { .. });
        match event {
            Event::Join {
                name,
                peer,
                outbox,
                reply,
            } => self.join(name, peer, outbox, reply),
            Event::Request { session, count } => {
                if let Some(s) = self.sessions.get_mut(&session) {
                    s.credit = s.credit.saturating_add(count).min(self.config.max_prefetch);
                    self.feed(session);
                }
            }
            Event::Result { session, result } => self.result(session, result).await,
            Event::Rejected {
                session,
                id,
                code,
                message,
            } => self.rejected(session, id, code, message),
            Event::Leave { session } => self.leave(session),
            Event::Drain { reply } => {
                self.drain();
                let _ = reply.send(());
            }
            Event::Report { reply } => {
                let _ = reply.send(self.report());
            }
            Event::Coverage { buckets, reply } => {
                let _ = reply.send(self.coverage(buckets));
            }
            Event::Flush { reply } => {
                self.write_totals(true).await;
                match &self.store {
                    Some(link) => {
                        let _ = link.writer.send(WriteOp::Flush(reply)).await;
                    }
                    None => {
                        let _ = reply.send(());
                    }
                }
            }
        }
        self.dirty = true;
        if !self.announced_complete && self.schedule.is_complete() {
            self.announced_complete = true;
            self.write_totals(true).await;
            self.complete();
        }
        if publish_now {
            self.publish();
        }
    }

    fn join(
        &mut self,
        name: String,
        peer: String,
        outbox: mpsc::Sender<Outbound>,
        reply: oneshot::Sender<Result<(SessionId, ServerMessage), ServerMessage>>,
    ) {
        if self.banned.contains(&name) {
            let msg = format!(
                "worker '{name}' sent too many bad results and is refused for the rest of the run"
            );
            let _ = reply.send(Err(ServerMessage::error(ErrorCode::Refused, msg)));
            return;
        }
        if let Some(reason) = &self.store_failed {
            let msg = format!("the server cannot store results ({reason}); try again later");
            let _ = reply.send(Err(ServerMessage::error(ErrorCode::Internal, msg)));
            return;
        }
        let id = self.next_session;
        self.next_session += 1;
        let job = self.config.job;
        let welcome = ServerMessage::Welcome {
            version: PROTOCOL_VERSION,
            server: format!("piswarm {}", env!("CARGO_PKG_VERSION")),
            run: self.config.run_id,
            terms: job.terms.map(Dec),
            chunk: Dec(job.chunk),
            max_prefetch: self.config.max_prefetch,
            heartbeat_s: self.config.heartbeat.as_secs_f64(),
        };
        if reply.send(Ok((id, welcome))).is_err() {
            return; // the session gave up waiting
        }
        tracing::debug!(session = id, worker = %name, %peer, "worker joined");
        self.workers_seen += 1;
        if self.schedule.is_complete() {
            let _ = outbox.try_send(Outbound::Message(ServerMessage::Done {
                reason: DoneReason::JobComplete,
            }));
        }
        self.sessions.insert(
            id,
            Session {
                name,
                peer,
                outbox,
                credit: 0,
                held: HashMap::new(),
                expired: HashSet::new(),
                terms_per_s: None,
            },
        );
    }

    /// Sends the session as many assignments as its credit allows.
    fn feed(&mut self, id: SessionId) {
        if self.draining {
            return;
        }
        let Some(session) = self.sessions.get_mut(&id) else {
            return;
        };
        let mut broken = false;
        while session.credit > 0 && session.held.len() < self.config.max_prefetch as usize {
            let Some(interval) = self.schedule.issue(id) else {
                self.hungry.insert(id);
                return;
            };
            let lease = lease_for(&self.config, session, &interval);
            let msg = ServerMessage::Assign {
                id: Dec(interval.id.0),
                a: Dec(interval.a),
                b: Dec(interval.b),
                lease_s: lease.as_secs_f64(),
            };
            if session.outbox.try_send(Outbound::Message(msg)).is_err() {
                self.schedule.give_back(interval.id);
                broken = true;
                break;
            }
            session.held.insert(interval.id.0, Instant::now() + lease);
            session.credit -= 1;
        }
        self.hungry.remove(&id);
        if broken {
            tracing::warn!(
                session = id,
                "worker is not reading its messages; dropping it"
            );
            self.leave(id);
        }
    }

    /// Feeds hungry sessions after intervals came back.
    fn feed_hungry(&mut self) {
        let hungry: Vec<SessionId> = self.hungry.iter().copied().collect();
        for id in hungry {
            self.feed(id);
            if self.hungry.contains(&id) {
                break; // nothing left to hand out
            }
        }
    }

    async fn result(&mut self, session_id: SessionId, result: WorkResult) {
        if self.store_failed.is_some() {
            return; // not acknowledged: the worker will send it again after a restart
        }
        let id = IntervalId(result.id.0);
        let Some(session) = self.sessions.get_mut(&session_id) else {
            return;
        };
        let held = session.held.remove(&id.0).is_some();
        let expired = session.expired.remove(&id.0);
        if !held && !expired && result.resend {
            // Computed on an earlier connection (perhaps to an earlier coordinator process) and
            // never acknowledged. It was verified like any result, so the first one counts.
            let status = match self.schedule.complete_resent(id, RESEND_WINDOW) {
                Completion::Accepted => AckStatus::Accepted,
                Completion::Duplicate => AckStatus::Duplicate,
                Completion::NeverIssued => {
                    let msg = format!("interval {id} was never handed out in this run");
                    send(session, error_for(ErrorCode::NotAssigned, msg, id));
                    return;
                }
            };
            self.acknowledge(session_id, result, status).await;
            return;
        }
        if !held && !expired {
            let msg = format!("interval {id} is not assigned to you");
            tracing::warn!(worker = %session.name, peer = %session.peer, interval = %id, "result for an interval not assigned to the sender");
            send(session, error_for(ErrorCode::NotAssigned, msg, id));
            self.strike(session_id);
            return;
        }
        if result.duration_s > 0.0 && result.duration_s.is_finite() {
            let speed = (result.b.0 - result.a.0 + 1) as f64 / result.duration_s;
            session.terms_per_s =
                Some(session.terms_per_s.map_or(speed, |s| 0.7 * s + 0.3 * speed));
        }
        let status = match self.schedule.complete(id) {
            Completion::Accepted => AckStatus::Accepted,
            Completion::Duplicate | Completion::NeverIssued => AckStatus::Duplicate,
        };
        self.acknowledge(session_id, result, status).await;
    }

    /// Acknowledges a checked result: an accepted one is counted and acknowledged by the store
    /// once it is durable; a duplicate is acknowledged at once.
    async fn acknowledge(&mut self, session_id: SessionId, result: WorkResult, status: AckStatus) {
        let Some(session) = self.sessions.get(&session_id) else {
            return;
        };
        let ack = ServerMessage::Ack {
            id: result.id,
            status,
        };
        if status == AckStatus::Accepted {
            let (name, peer, outbox) = (
                session.name.clone(),
                session.peer.clone(),
                session.outbox.clone(),
            );
            self.accept(name, peer, result, outbox, ack).await;
        } else if !send(session, ack) {
            tracing::warn!(
                session = session_id,
                "worker is not reading its messages; dropping it"
            );
            self.leave(session_id);
        }
    }

    async fn accept(
        &mut self,
        worker: String,
        peer: String,
        mut r: WorkResult,
        outbox: mpsc::Sender<Outbound>,
        ack: ServerMessage,
    ) {
        // The duration is the worker's word, for display only.
        if !(r.duration_s.is_finite() && r.duration_s >= 0.0) {
            r.duration_s = 0.0;
        }
        // The session checked that pi is finite, so this cannot fail.
        let _ = self.pi.add(r.pi);
        self.even_sum += r.even_sum.0;
        self.odd_sum += r.odd_sum.0;
        self.terms_done += r.b.0 - r.a.0 + 1;
        if self.config.print_results {
            println!(
                "[{:>6}] {worker} {peer} [{}, {}] evens={} odds={} pi={:e} {:.3}ms | total: {} intervals, {} terms, π≈{:.15}",
                r.id.0,
                r.a.0,
                r.b.0,
                r.even_sum.0,
                r.odd_sum.0,
                r.pi,
                r.duration_s * 1e3,
                self.schedule.done(),
                self.terms_done,
                self.pi.value(),
            );
        }
        let record = ResultRecord {
            id: r.id,
            a: r.a,
            b: r.b,
            worker,
            peer,
            even_sum: r.even_sum,
            odd_sum: r.odd_sum,
            pi: r.pi,
            duration_s: r.duration_s,
            timestamp: now_iso8601(),
        };
        match &self.store {
            Some(link) => {
                self.totals_pending = true;
                let op = WriteOp::Result {
                    run: link.run,
                    record,
                    ack: Some((outbox, ack)),
                };
                let _ = link.writer.send(op).await;
            }
            None => {
                let _ = outbox.try_send(Outbound::Message(ack));
            }
        }
    }

    fn rejected(
        &mut self,
        session_id: SessionId,
        id: IntervalId,
        code: ErrorCode,
        message: String,
    ) {
        let Some(session) = self.sessions.get_mut(&session_id) else {
            return;
        };
        tracing::warn!(worker = %session.name, peer = %session.peer, interval = %id, ?code, "rejected result: {message}");
        if self.recent_rejects.len() >= RECENT_REJECTS {
            self.recent_rejects.pop_front();
        }
        self.recent_rejects.push_back(id.0);
        if session.held.remove(&id.0).is_some() && self.schedule.holder(id) == Some(session_id) {
            self.schedule.give_back(id);
        }
        session.expired.remove(&id.0);
        send(session, error_for(code, message, id));
        self.strike(session_id);
        self.feed_hungry();
    }

    /// Counts a bad result; past the limit the worker is refused for the rest of the run.
    fn strike(&mut self, session_id: SessionId) {
        let Some(session) = self.sessions.get_mut(&session_id) else {
            return;
        };
        // Strikes follow the worker's name, not the connection: reconnecting does not reset them.
        let strikes = self.strikes.entry(session.name.clone()).or_default();
        *strikes += 1;
        if *strikes >= self.config.max_bad_results {
            tracing::warn!(worker = %session.name, peer = %session.peer, "too many bad results: worker refused for the rest of the run");
            self.banned.insert(session.name.clone());
            send(
                session,
                ServerMessage::error(
                    ErrorCode::Refused,
                    "too many bad results: refused for the rest of the run",
                ),
            );
            let _ = session.outbox.try_send(Outbound::Close);
            self.leave(session_id);
        }
    }

    fn leave(&mut self, session_id: SessionId) {
        let Some(session) = self.sessions.remove(&session_id) else {
            return;
        };
        self.hungry.remove(&session_id);
        let mut returned = 0;
        for id in session.held.keys() {
            if self.schedule.holder(IntervalId(*id)) == Some(session_id)
                && self.schedule.give_back(IntervalId(*id))
            {
                returned += 1;
            }
        }
        if returned > 0 {
            tracing::info!(worker = %session.name, peer = %session.peer, returned, "worker left; its intervals go back to the queue");
            self.feed_hungry();
        }
    }

    fn expire_leases(&mut self, now: Instant) {
        let mut any = false;
        for (&sid, session) in self.sessions.iter_mut() {
            let expired: Vec<u64> = session
                .held
                .iter()
                .filter(|(_, &d)| d <= now)
                .map(|(&id, _)| id)
                .collect();
            for id in expired {
                session.held.remove(&id);
                session.expired.insert(id);
                if self.schedule.holder(IntervalId(id)) == Some(sid) {
                    self.schedule.give_back(IntervalId(id));
                    any = true;
                    tracing::info!(worker = %session.name, interval = id, "lease expired; interval reissued");
                }
            }
        }
        if any {
            self.feed_hungry();
        }
    }

    fn drain(&mut self) {
        // Nobody is fed while everybody leaves: the intervals stay in the queue.
        self.draining = true;
        let ids: Vec<SessionId> = self.sessions.keys().copied().collect();
        for id in ids {
            if let Some(session) = self.sessions.get(&id) {
                let _ = session
                    .outbox
                    .try_send(Outbound::Message(ServerMessage::Done {
                        reason: DoneReason::ServerStopping,
                    }));
                let _ = session.outbox.try_send(Outbound::Close);
            }
            self.leave(id);
        }
        self.draining = false;
    }

    fn complete(&mut self) {
        for session in self.sessions.values() {
            let _ = session
                .outbox
                .try_send(Outbound::Message(ServerMessage::Done {
                    reason: DoneReason::JobComplete,
                }));
        }
        self.publish();
    }

    fn report(&self) -> FinalReport {
        FinalReport::from_totals(Totals {
            terms_done: self.terms_done,
            job_terms: self.config.job.terms,
            chunk: self.config.job.chunk,
            intervals: self.schedule.done(),
            even_sum: self.even_sum,
            odd_sum: self.odd_sum,
            pi: self.pi.value(),
            done_is_prefix: self.schedule.done_is_prefix(),
            workers: self.workers_seen,
            elapsed_s: self.started.elapsed().as_secs_f64(),
        })
    }

    fn coverage(&self, buckets: u32) -> CoverageMap {
        let issued = self.schedule.next_fresh();
        let span = self.config.job.intervals().unwrap_or(issued);
        if span == 0 {
            return CoverageMap {
                chunk: self.config.job.chunk,
                ..CoverageMap::default()
            };
        }
        let wanted = u64::from(buckets.clamp(1, 4096)).min(span);
        let width = span.div_ceil(wanted);
        let count = span.div_ceil(width);
        let mut map: Vec<CoverageBucket> = (0..count)
            .map(|k| {
                let (lo, hi) = (k * width, ((k + 1) * width).min(span));
                let issued_here = hi.min(issued).saturating_sub(lo);
                CoverageBucket {
                    done: issued_here,
                    not_started: (hi - lo) - issued_here,
                    ..CoverageBucket::default()
                }
            })
            .collect();
        for id in self.schedule.in_flight_ids().filter(|&id| id < span) {
            let b = &mut map[(id / width) as usize];
            b.in_flight += 1;
            b.done = b.done.saturating_sub(1);
        }
        for id in self.schedule.given_back().filter(|&id| id < span) {
            let b = &mut map[(id / width) as usize];
            b.given_back += 1;
            b.done = b.done.saturating_sub(1);
        }
        let rejected: BTreeSet<u64> = self.recent_rejects.iter().copied().collect();
        for id in rejected {
            if id < span && !self.schedule.is_done(IntervalId(id)) {
                map[(id / width) as usize].rejected += 1;
            }
        }
        CoverageMap {
            span,
            width,
            chunk: self.config.job.chunk,
            buckets: map,
        }
    }

    fn publish(&mut self) {
        if !self.dirty {
            return;
        }
        self.dirty = false;
        let snap = Snapshot {
            run_id: self.config.run_id,
            job: self.config.job,
            clients: self.sessions.len(),
            intervals_done: self.schedule.done(),
            terms_done: self.terms_done,
            in_flight: self.schedule.in_flight(),
            even_sum: self.even_sum,
            odd_sum: self.odd_sum,
            pi: self.pi.value(),
            complete: self.schedule.is_complete(),
            workers_seen: self.workers_seen,
            store_failed: self.store_failed.clone(),
        };
        self.snapshot.send_replace(snap);
    }
}

/// Queues a message for a session; false if its outbox is full (the peer is not reading) or gone.
fn send(session: &Session, msg: ServerMessage) -> bool {
    session.outbox.try_send(Outbound::Message(msg)).is_ok()
}

fn error_for(code: ErrorCode, message: String, id: IntervalId) -> ServerMessage {
    ServerMessage::Error {
        code,
        message,
        id: Some(Dec(id.0)),
    }
}

/// The lease of a new assignment: fixed by configuration, or long enough for this worker to get
/// through everything it holds at its measured speed, four times over, and never below the floor.
fn lease_for(config: &CoordinatorConfig, session: &Session, interval: &Interval) -> Duration {
    if let Some(lease) = config.lease {
        return lease;
    }
    let speed = session.terms_per_s.unwrap_or(ASSUMED_TERMS_PER_S).max(1.0);
    let queue = (session.held.len() + 1) as f64;
    let secs = 4.0 * queue * interval.terms() as f64 / speed;
    Duration::from_secs_f64(secs.min(LEASE_CEILING.as_secs_f64())).max(LEASE_FLOOR)
}
