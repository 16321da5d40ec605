//! The task that drives the coordinator's [`Core`]: the only owner of a run's state.
//!
//! Sessions never touch the core: they send the core's own [`Input`]s, wrapped in [`Event`]s,
//! over a bounded channel (and wait when it is full: backpressure) and receive messages on their
//! own bounded outbox. The shell applies one event at a time, writes the core's messages with
//! `try_send` (a session whose outbox is full is not reading: it is dropped, and its intervals go
//! back), sends the core's writes to the store's writer (waiting when its queue is full:
//! backpressure goes to the store side) and feeds the writer's commits back into the core, which
//! alone turns them into acknowledgements.
//!
//! It knows no store: a [`StoreLink`] is a queue for the core's [`Write`]s and a `watch` of what
//! is [`Durability`]; `node::start_run` wires it to the store's writer thread (`serve`, `run`
//! and `bench` all use it).

use super::core::{
    Core, CoreConfig, HeldRow, Input, Joining, Output, ResumeState, SessionId, Snapshot, WorkerRow,
    Write,
};
use super::coverage::CoverageMap;
use super::printer::{self, Printer};
use crate::job::Job;
use crate::maths::kernel::Kernel;
use crate::report::FinalReport;
use crate::wire::ServerMessage;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
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

/// Everything sessions and the program can ask of the coordinator: a session's input for the
/// core, or the program's requests, which need a reply.
#[derive(Debug)]
pub enum Event {
    /// A session completed its handshake: its [`Input::Join`], and the outbox its `welcome` (or
    /// refusal) and then its work arrive on.
    Join {
        joining: Joining,
        outbox: mpsc::Sender<Outbound>,
    },
    /// What a session reports: [`Input::Request`], [`Input::Result`] (with the verdict of its
    /// verification) or [`Input::Leave`], which also drops its outbox. The store's inputs and
    /// the clock's are the shell's own.
    Input(Input),
    /// Stop serving (see [`Input::Drain`]); replies once every session has been told.
    Drain { reply: oneshot::Sender<()> },
    /// Serve again.
    Open { reply: oneshot::Sender<()> },
    /// The report of the durable results.
    Report { reply: oneshot::Sender<FinalReport> },
    /// Replies `true` once every result accepted so far is durable (`false` if it never will be:
    /// the store failed).
    Flush { reply: oneshot::Sender<bool> },
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

/// What the store has made durable: every write up to `committed`; `failed` once it cannot
/// write any more. The store's writer publishes it on a `watch`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Durability {
    pub committed: u64,
    pub failed: Option<String>,
}

/// Where a coordinator makes its results durable: the store's writer (`store::writer::start`).
#[derive(Debug)]
pub struct StoreLink {
    /// The core's writes, in order (the shell waits when the queue is full: backpressure).
    pub writes: mpsc::Sender<Write>,
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
            Event::Join { joining, outbox } => {
                self.outboxes.insert(joining.session, outbox);
                self.input(Input::Join(joining));
            }
            Event::Input(input) => {
                if let Input::Leave { session } = input {
                    self.outboxes.remove(&session);
                }
                self.input(input);
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
                            Some(link) => link.writes.send(write).await.is_ok(),
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
                            printer.print(printer::printed(&line));
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
        if let Some(free) = free_disk_bytes(&path) {
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

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// Free space on the file system holding `path`, in bytes (None if unknown).
fn free_disk_bytes(path: &Path) -> Option<u64> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let stat = rustix::fs::statvfs(dir).ok()?;
    Some(stat.f_bavail.saturating_mul(stat.f_frsize))
}
