//! The task that drives the coordinator's [`Core`]: the only owner of a run's state.
//!
//! Sessions never touch the core: they send [`Event`]s over a bounded channel (and wait when it
//! is full: backpressure) and receive messages on their own bounded outbox. The shell applies one
//! event at a time, writes the core's messages with `try_send` (a session whose outbox is full is
//! not reading: it is dropped, and its intervals go back), sends the core's writes to the store's
//! writer (waiting when its queue is full: backpressure goes to the store side) and feeds the
//! writer's commits back into the core, which alone turns them into acknowledgements.
//!
//! [`start_run`] is the one place where a coordinator is wired to its store (`serve`, `run` and
//! `bench` all use it).

use super::core::{
    Core, CoreConfig, DurableLine, HeldRow, Input, Output, ResumeState, SessionId, Snapshot,
    WorkerKind, WorkerRow,
};
use super::coverage::CoverageMap;
use super::printer::Printer;
use crate::job::verify::{Refusal, Verified};
use crate::job::Job;
use crate::maths::kernel::Kernel;
use crate::report::FinalReport;
use crate::store::{self, Durability, Store, StoreError, Writer};
use crate::wire::{ServerMessage, WorkResult};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

/// Capacity of the coordinator's event queue. Senders wait when it is full: backpressure.
const EVENT_QUEUE: usize = 4096;
/// How often snapshots are published (and the free disk space checked, every 50th time).
const PUBLISH_EVERY: Duration = Duration::from_millis(100);
/// Events applied in a row before outputs are written out.
const EVENT_BATCH: usize = 256;

/// Messages for a session travel on its outbox; the coordinator closes a session by dropping
/// the sender (the session writes what is queued, then closes).
pub type Outbound = ServerMessage;

/// Everything sessions and the program can ask of the coordinator.
#[derive(Debug)]
pub enum Event {
    /// A session completed its handshake; its `welcome` (or refusal) arrives on `outbox`.
    Join {
        session: SessionId,
        name: String,
        peer: String,
        kind: WorkerKind,
        /// `hello.agent`, printable (may be empty).
        agent: String,
        outbox: mpsc::Sender<Outbound>,
    },
    Request {
        session: SessionId,
        count: u32,
    },
    /// A result with the verdict of its verification.
    Result {
        session: SessionId,
        result: WorkResult,
        verdict: Result<Verified, Refusal>,
        received_at: String,
    },
    /// The session ended.
    Leave {
        session: SessionId,
    },
    /// Stop serving (see [`Input::Drain`]); replies once every session has been told.
    Drain {
        reply: oneshot::Sender<()>,
    },
    /// Serve again.
    Open {
        reply: oneshot::Sender<()>,
    },
    /// The report of the durable results.
    Report {
        reply: oneshot::Sender<FinalReport>,
    },
    /// Replies `true` once every result accepted so far is durable (`false` if it never will be:
    /// the store failed).
    Flush {
        reply: oneshot::Sender<bool>,
    },
    Coverage {
        buckets: u32,
        reply: oneshot::Sender<CoverageMap>,
    },
    Workers {
        reply: oneshot::Sender<Vec<WorkerRow>>,
    },
    /// The intervals held by sessions (read-only, for the dashboard).
    Held {
        reply: oneshot::Sender<Vec<HeldRow>>,
    },
}

/// The coordinator's task has ended (the program is shutting down).
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the coordinator has stopped")]
pub struct CoordinatorGone;

/// The handle through which sessions and the program talk to the coordinator.
#[derive(Debug, Clone)]
pub struct CoordinatorHandle {
    events: mpsc::Sender<Event>,
    snapshot: watch::Receiver<Snapshot>,
    job: Job,
    kernel: Kernel,
    next_session: Arc<AtomicU64>,
}

impl CoordinatorHandle {
    pub fn job(&self) -> Job {
        self.job
    }

    /// The π kernel of the run (its workers compute with it; `--strict` applies its bound).
    pub fn kernel(&self) -> Kernel {
        self.kernel
    }

    /// A fresh session id.
    pub fn new_session(&self) -> SessionId {
        self.next_session.fetch_add(1, Ordering::Relaxed)
    }

    pub async fn send(&self, event: Event) -> Result<(), CoordinatorGone> {
        self.events.send(event).await.map_err(|_| CoordinatorGone)
    }

    pub fn snapshot(&self) -> watch::Receiver<Snapshot> {
        self.snapshot.clone()
    }

    async fn ask<T>(
        &self,
        event: impl FnOnce(oneshot::Sender<T>) -> Event,
    ) -> Result<T, CoordinatorGone> {
        let (reply, rx) = oneshot::channel();
        self.send(event(reply)).await?;
        rx.await.map_err(|_| CoordinatorGone)
    }

    /// Tells every worker to leave (after its pending acknowledgements) and stops handing out
    /// work; the run stays resumable.
    pub async fn drain(&self) -> Result<(), CoordinatorGone> {
        self.ask(|reply| Event::Drain { reply }).await
    }

    /// Serves again after [`CoordinatorHandle::drain`].
    pub async fn open(&self) -> Result<(), CoordinatorGone> {
        self.ask(|reply| Event::Open { reply }).await
    }

    /// Waits until every result accepted so far is durable; `false` if the store failed.
    pub async fn flush(&self) -> Result<bool, CoordinatorGone> {
        self.ask(|reply| Event::Flush { reply }).await
    }

    pub async fn report(&self) -> Result<FinalReport, CoordinatorGone> {
        self.ask(|reply| Event::Report { reply }).await
    }

    /// The coverage map of the run (see [`CoverageMap`]).
    pub async fn coverage(&self, buckets: u32) -> Result<CoverageMap, CoordinatorGone> {
        self.ask(|reply| Event::Coverage { buckets, reply }).await
    }

    /// The worker table.
    pub async fn workers(&self) -> Result<Vec<WorkerRow>, CoordinatorGone> {
        self.ask(|reply| Event::Workers { reply }).await
    }

    /// The intervals sessions hold, by id.
    pub async fn held(&self) -> Result<Vec<HeldRow>, CoordinatorGone> {
        self.ask(|reply| Event::Held { reply }).await
    }

    /// Waits until the bounded job is complete (every result durable).
    pub async fn wait_complete(&self) -> Result<(), CoordinatorGone> {
        let mut rx = self.snapshot.clone();
        rx.wait_for(|s| s.complete)
            .await
            .map(|_| ())
            .map_err(|_| CoordinatorGone)
    }
}

/// Where a coordinator makes its results durable.
#[derive(Debug)]
pub struct StoreLink {
    pub writer: Writer,
    pub durability: watch::Receiver<Durability>,
    /// The database file, to watch the free space of its file system.
    pub path: Option<PathBuf>,
    /// Stop accepting results when that file system has less free space than this.
    pub min_free_disk: u64,
}

/// Spawns a coordinator for a fresh run without a store: everything counts as durable at once
/// (tests, embedding). Returns its handle and its task, which ends when every handle is dropped.
pub fn spawn(config: CoreConfig) -> (CoordinatorHandle, tokio::task::JoinHandle<()>) {
    spawn_with(config, None, None, None)
}

/// Spawns a coordinator, optionally continuing a stored run, making results durable in a store
/// and printing durable results.
pub fn spawn_with(
    config: CoreConfig,
    resume: Option<ResumeState>,
    store: Option<StoreLink>,
    printer: Option<Printer>,
) -> (CoordinatorHandle, tokio::task::JoinHandle<()>) {
    let (job, kernel) = (config.job, config.kernel);
    let core = Core::new(config, resume);
    let (snap_tx, snapshot) = watch::channel(core.snapshot());
    let (events, rx) = mpsc::channel(EVENT_QUEUE);
    let shell = Shell {
        core,
        origin: Instant::now(),
        outboxes: HashMap::new(),
        store,
        printer,
        snapshot: snap_tx,
        flushes: Vec::new(),
        publishes: 0,
    };
    let task = tokio::spawn(shell.run(rx));
    (
        CoordinatorHandle {
            events,
            snapshot,
            job,
            kernel,
            next_session: Arc::new(AtomicU64::new(1)),
        },
        task,
    )
}

struct Shell {
    core: Core,
    origin: Instant,
    outboxes: HashMap<SessionId, mpsc::Sender<Outbound>>,
    store: Option<StoreLink>,
    printer: Option<Printer>,
    snapshot: watch::Sender<Snapshot>,
    /// Flush requests: the write that must be committed, and the reply.
    flushes: Vec<(u64, oneshot::Sender<bool>)>,
    publishes: u64,
}

impl Shell {
    fn now(&self) -> Duration {
        self.origin.elapsed()
    }

    fn input(&mut self, input: Input) {
        let now = self.now();
        self.core.handle(now, input);
    }

    async fn run(mut self, mut events: mpsc::Receiver<Event>) {
        let mut durability = self.store.as_ref().map(|s| s.durability.clone());
        let mut publish = tokio::time::interval(PUBLISH_EVERY);
        publish.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            self.pump().await;
            let deadline = self.core.poll_timeout().map(|t| self.origin + t);
            let committed = async {
                match durability.as_mut() {
                    Some(rx) => rx.changed().await.map(|()| rx.borrow_and_update().clone()),
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                event = events.recv() => {
                    let Some(event) = event else { break };
                    let before = self.vital();
                    self.event(event);
                    // Apply what else is queued before writing outputs out.
                    for _ in 1..EVENT_BATCH {
                        match events.try_recv() {
                            Ok(event) => self.event(event),
                            Err(_) => break,
                        }
                    }
                    if self.vital() != before {
                        self.publish();
                    }
                }
                state = committed => {
                    let before = self.vital();
                    match state {
                        Ok(d) => {
                            if let Some(reason) = d.failed {
                                tracing::error!("{reason}: no longer accepting results; the run can be resumed once this is fixed");
                                self.input(Input::StoreFailed { reason });
                            }
                            self.input(Input::Committed { through: d.committed });
                        }
                        Err(_) => {
                            durability = None;
                            self.input(Input::StoreFailed { reason: "the store's writer stopped".into() });
                        }
                    }
                    if self.vital() != before {
                        self.publish();
                    }
                }
                _ = sleep_until_opt(deadline) => self.input(Input::Tick),
                _ = publish.tick() => {
                    self.publishes += 1;
                    if self.publishes % 50 == 0 {
                        self.check_disk();
                    }
                    self.publish();
                }
            }
        }
        // Every handle is gone. Writes already queued are committed by the writer, which ends
        // when its queue's last sender (ours) is dropped.
        self.pump().await;
        self.publish();
    }

    /// What observers must see at once when it changes.
    fn vital(&self) -> (bool, bool, bool, usize) {
        (
            self.core.is_complete(),
            self.core.snapshot_serving(),
            self.core.store_has_failed(),
            self.core.session_count(),
        )
    }

    fn event(&mut self, event: Event) {
        match event {
            Event::Join {
                session,
                name,
                peer,
                kind,
                agent,
                outbox,
            } => {
                self.outboxes.insert(session, outbox);
                self.input(Input::Join {
                    session,
                    name,
                    peer,
                    kind,
                    agent,
                });
            }
            Event::Request { session, count } => self.input(Input::Request { session, count }),
            Event::Result {
                session,
                result,
                verdict,
                received_at,
            } => self.input(Input::Result {
                session,
                result,
                verdict,
                received_at,
            }),
            Event::Leave { session } => {
                self.outboxes.remove(&session);
                self.input(Input::Leave { session });
            }
            Event::Drain { reply } => {
                self.input(Input::Drain);
                self.publish();
                let _ = reply.send(());
            }
            Event::Open { reply } => {
                self.input(Input::Open);
                self.publish();
                let _ = reply.send(());
            }
            Event::Report { reply } => {
                self.input(Input::Tick);
                let _ = reply.send(self.core.report());
            }
            Event::Flush { reply } => {
                let target = self.core.last_write();
                self.flushes.push((target, reply));
            }
            Event::Coverage { buckets, reply } => {
                let _ = reply.send(self.core.coverage(buckets));
            }
            Event::Workers { reply } => {
                self.input(Input::Tick);
                let _ = reply.send(self.core.workers());
            }
            Event::Held { reply } => {
                self.input(Input::Tick);
                let _ = reply.send(self.core.held());
            }
        }
    }

    /// Carries out the core's outputs until there are none.
    async fn pump(&mut self) {
        loop {
            while let Some(output) = self.core.poll_output() {
                match output {
                    Output::Send { session, message } => self.send(session, message),
                    Output::Close { session } => {
                        // The session writes what is queued, then sees its outbox closed.
                        self.outboxes.remove(&session);
                    }
                    Output::Write(write) => {
                        let delivered = match &self.store {
                            Some(link) => link.writer.send(write).await,
                            None => true,
                        };
                        if !delivered {
                            self.input(Input::StoreFailed {
                                reason: "the store's writer stopped".into(),
                            });
                        }
                    }
                    Output::Durable(line) => {
                        if let Some(printer) = &self.printer {
                            printer.print(printed(&line));
                        }
                    }
                }
            }
            // Without a store, a write is durable as soon as it is made.
            if self.store.is_none() && self.core.last_write() > self.core.committed_through() {
                let through = self.core.last_write();
                self.input(Input::Committed { through });
                continue;
            }
            break;
        }
        let committed = self.core.committed_through();
        let failed = self.core.store_has_failed();
        self.answer_flushes(committed, failed);
    }

    fn answer_flushes(&mut self, committed: u64, failed: bool) {
        let mut waiting = Vec::new();
        for (target, reply) in self.flushes.drain(..) {
            if target <= committed {
                let _ = reply.send(true);
            } else if failed {
                let _ = reply.send(false);
            } else {
                waiting.push((target, reply));
            }
        }
        self.flushes = waiting;
    }

    fn send(&mut self, session: SessionId, message: ServerMessage) {
        let Some(outbox) = self.outboxes.get(&session) else {
            return;
        };
        if outbox.try_send(message).is_err() {
            // Full: the peer stopped reading (the core never queues more than its prefetch
            // allows); or the session already ended.
            if !outbox.is_closed() {
                tracing::warn!(session, "worker is not reading its messages; dropping it");
            }
            self.outboxes.remove(&session);
            self.input(Input::Leave { session });
        }
    }

    fn check_disk(&mut self) {
        let Some(link) = &self.store else { return };
        let Some(path) = link.path.clone() else {
            return;
        };
        let min = link.min_free_disk;
        if let Some(free) = store::free_disk_bytes(&path) {
            if free < min && !self.core.store_has_failed() {
                let reason = format!(
                    "the disk holding {} has {} MiB free, below the minimum of {} MiB (--min-free-disk)",
                    path.display(),
                    free >> 20,
                    min >> 20
                );
                tracing::error!("{reason}: no longer accepting results; the run can be resumed once there is room");
                self.input(Input::StoreFailed { reason });
            }
        }
    }

    fn publish(&mut self) {
        self.input(Input::Tick);
        let snap = self.core.snapshot();
        self.snapshot.send_if_modified(|old| {
            if *old == snap {
                false
            } else {
                *old = snap;
                true
            }
        });
    }
}

/// A durable result as printed: the human line, or with `--log-format json` a JSON line (fields
/// in docs/deployment.md, "Logs").
fn printed(line: &DurableLine) -> String {
    match crate::logging::format() {
        crate::logging::LogFormat::Human => line.to_string(),
        crate::logging::LogFormat::Json => crate::logging::json_line(
            "INFO",
            "piswarm::result",
            "result",
            serde_json::json!({
                "result": line.record,
                "intervals_done": line.intervals_done,
                "terms_done": line.terms_done,
                "pi_total": line.pi,
            }),
        ),
    }
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// How [`start_run`] sets a coordinator up.
pub struct RunOptions {
    pub config: CoreConfig,
    /// Print a line per durable result to standard output.
    pub print_results: bool,
    /// The store's file (to watch its disk), if it is a file.
    pub path: Option<PathBuf>,
    pub min_free_disk: u64,
    /// Told how long each of the store's commits took (metrics).
    pub on_commit: Option<store::CommitObserver>,
}

impl std::fmt::Debug for RunOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunOptions")
            .field("config", &self.config)
            .field("print_results", &self.print_results)
            .field("path", &self.path)
            .field("min_free_disk", &self.min_free_disk)
            .field("on_commit", &self.on_commit.is_some())
            .finish()
    }
}

/// A coordinator wired to its store: what `serve`, `run` and `bench` run.
#[derive(Debug)]
pub struct RunningRun {
    pub id: i64,
    pub handle: CoordinatorHandle,
    /// Stored results that failed re-verification on resume (deleted; they will be redone).
    pub dropped: Vec<u64>,
    /// Intervals already done when it started.
    pub resumed_done: u64,
    /// Results the store's high-water mark says were durable and are missing (a lost `-wal`).
    pub lost: u64,
    task: tokio::task::JoinHandle<()>,
    writer: std::thread::JoinHandle<()>,
}

impl RunningRun {
    /// Drops this handle and waits for the coordinator's task and the store's writer to end
    /// (other clones of the handle must be gone too).
    pub async fn finish(self) {
        drop(self.handle);
        let _ = self.task.await;
        let writer = self.writer;
        let _ = tokio::task::spawn_blocking(move || writer.join()).await;
    }
}

/// Starts the coordinator of run `run` in `store`: reads back (and re-verifies) what is stored,
/// starts the store's writer, spawns the coordinator. Reading a large run takes a while; it runs
/// on a blocking thread.
pub async fn start_run(
    store: Store,
    run: i64,
    mut options: RunOptions,
) -> Result<RunningRun, StoreError> {
    let (store, resume) = tokio::task::spawn_blocking(move || {
        let mut store = store;
        let resume = store.load(run)?;
        Ok::<_, StoreError>((store, resume))
    })
    .await
    .map_err(|e| StoreError::Io(std::io::Error::other(e.to_string())))??;
    let dropped = resume.dropped.clone();
    let resumed_done = resume.done_ids.len() as u64;
    let lost = resume.lost;
    let state = ResumeState {
        issued_upto: resume.run.issued_upto,
        pi: resume.pi,
        even_sum: resume.run.totals.even_sum.0,
        odd_sum: resume.run.totals.odd_sum.0,
        terms_done: resume.run.totals.terms_done,
        worker_names: resume.worker_names,
        elapsed_s: resume.run.totals.elapsed_s,
        pi_bound: resume.pi_bound,
        done_ids: resume.done_ids,
    };
    options.config.run_id = run as u64;
    options.config.run_uid = resume.run.uid.clone();
    options.config.kernel = resume.run.kernel;
    options.config.emit_durable = options.print_results;
    let (writer, durability, writer_thread) =
        Writer::start_observed(store, run, options.on_commit.take())?;
    let link = StoreLink {
        writer,
        durability,
        path: options.path,
        min_free_disk: options.min_free_disk,
    };
    let printer = if options.print_results {
        Some(Printer::stdout()?)
    } else {
        None
    };
    let (handle, task) = spawn_with(options.config, Some(state), Some(link), printer);
    Ok(RunningRun {
        id: run,
        handle,
        dropped,
        resumed_done,
        lost,
        task,
        writer: writer_thread,
    })
}
