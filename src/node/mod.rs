//! What `piswarm serve` runs: its store, its current run and that run's coordinator, the TCP
//! server that can be stopped and started again, and the local clients the dashboard creates.
//!
//! What it owns: the lifecycle around the coordinator, never a run's state (that stays with the
//! coordinator's task, which alone writes the run's results, totals and state). Control
//! operations (start, stop, new run, shutdown) are rare — a person clicks a button — and are
//! serialised by one async mutex, so two clicks cannot interleave a stop and a start. Reading the
//! status never waits for it: the view and the current run are published on channels.
//!
//! * Which run `serve` continues is explicit ([`choose_run`]): an interrupted run of the same job
//!   is resumed; a complete one is never restarted silently; an unfinished run of another job is
//!   never orphaned silently.
//! * Stop is graceful: the accept loop ends (the ports are closed), the coordinator is drained
//!   (every worker gets its pending acknowledgements, then `done server_stopping`; every held
//!   interval goes back to the queue), sessions get a few seconds to end, then results.json and
//!   final.json are written. The coordinator stays alive, so Start resumes the same run.
//! * New run stops the server if it runs, settles the current run (its files are written),
//!   creates the new run in the store, starts its coordinator, and starts the server again if it
//!   was running.

pub mod clients;
mod reads;
mod start;

pub use clients::ClientMode;
pub use reads::ReadPool;
pub use start::{start_run, RunningRun, StartOptions};

use crate::coordinator::RunId;
use crate::coordinator::{self, CoordinatorHandle, CoreConfig, LeasePolicy, Snapshot};
use crate::job::Job;
use crate::logging;
use crate::maths::kernel::Kernel;
use crate::net::{self, Listeners, ServerConfig};
use crate::report::FinalReport;
use crate::store::lock::{LockError, StoreLock};
use crate::store::{Location, RunRow, Store, StoreError};
use crate::wire::Secret;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex as StdMutex};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::{watch, Mutex};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How long stopping waits for sessions to end.
pub const STOP_GRACE: Duration = Duration::from_secs(5);

/// Options of `piswarm serve`.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub job: Job,
    /// The SQLite store: runs and every accepted result.
    pub db: PathBuf,
    pub out: PathBuf,
    pub quiet: bool,
    pub max_prefetch: u32,
    pub lease: Option<Duration>,
    pub server: ServerConfig,
    /// Stop by itself once a bounded job is complete.
    pub exit_when_done: bool,
    /// Also serve the original's Python clients, in their own wire format, on this address.
    pub legacy_listen: Option<String>,
    /// Serve the dashboard and its JSON API on this address (`None`: no dashboard).
    pub http: Option<String>,
    /// The token the dashboard requires (one is generated when it listens beyond loopback).
    pub ui_token: Option<Secret>,
    /// The dashboard's URL as other machines reach it (`--public-url`), for the join link.
    pub public_url: Option<String>,
    /// Serve `GET /metrics` on this address too, without a token (`--metrics`).
    pub metrics: Option<String>,
    /// Start a new run even if the latest one could be resumed (`--new-run`).
    pub new_run: bool,
    /// Continue this run (`--resume RUN`).
    pub resume: Option<RunId>,
    /// Stop accepting results below this much free disk (`None`: the default, see
    /// [`default_min_free_disk`]).
    pub min_free_disk: Option<u64>,
    /// The most local clients running at once (the dashboard's Create).
    pub max_local_clients: usize,
    /// Hand out backup copies at the tail of a job (`--no-backups` turns them off).
    pub backups: bool,
    /// The π kernel of the runs this node creates (a resumed run keeps its own).
    pub kernel: Kernel,
}

impl ServeOptions {
    /// Options with the defaults of the command line.
    pub fn new(job: Job, db: PathBuf, out: PathBuf) -> ServeOptions {
        ServeOptions {
            job,
            db,
            out,
            quiet: true,
            max_prefetch: crate::wire::DEFAULT_MAX_PREFETCH,
            lease: None,
            server: ServerConfig::default(),
            exit_when_done: false,
            legacy_listen: None,
            http: None,
            ui_token: None,
            public_url: None,
            metrics: None,
            new_run: false,
            resume: None,
            min_free_disk: None,
            max_local_clients: clients::DEFAULT_MAX_LOCAL_CLIENTS,
            backups: true,
            kernel: Kernel::CURRENT,
        }
    }
}

/// The cap on local clients: as configured, and at most half the connection budget (each local
/// client is one of the server's connections; the other half stays for workers from elsewhere).
fn effective_max_local_clients(options: &ServeOptions) -> usize {
    options
        .max_local_clients
        .min((options.server.max_connections / 2).max(1))
}

/// The default free-disk guard: 64 MiB, or a quarter of the store's size if that is more (the
/// store grows by about 200 bytes per result, and SQLite needs room to checkpoint).
pub fn default_min_free_disk(db: &std::path::Path) -> u64 {
    let size = std::fs::metadata(db).map_or(0, |m| m.len());
    (64 << 20).max(size / 4)
}

/// Why `serve` did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Lock(#[from] LockError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("run {run} in {db} is complete: nothing to do (its results are in results.json and final.json; `piswarm export --run {run}` writes them again). Start another with --new-run")]
    Complete { run: RunId, db: String },
    #[error("the latest run in {db}, run {} ({}), is unfinished and is not the job asked for ({}). Continue it with --resume {}, or start the new job with --new-run (run {} stays in the store and can be resumed later)", .run.id, describe_job(&.run.job()), describe_job(.asked), .run.id, .run.id)]
    Unfinished {
        run: Box<RunRow>,
        asked: Job,
        db: String,
    },
    #[error("--resume {run}: {why}")]
    CannotResume { run: RunId, why: String },
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// "N terms, chunk C" or "open-ended, chunk C".
pub fn describe_job(job: &Job) -> String {
    match job.terms {
        Some(n) => format!("{n} terms, chunk {}", job.chunk),
        None => format!("open-ended, chunk {}", job.chunk),
    }
}

/// Which run a `serve` continues or creates.
#[derive(Debug, Clone, PartialEq)]
pub enum RunChoice {
    Resume(RunRow),
    Create(Job),
}

/// Decides which run to serve (see the module's documentation).
pub fn choose_run(store: &Store, options: &ServeOptions) -> Result<RunChoice, StartError> {
    let db = options.db.display().to_string();
    let complete = |row: &RunRow| -> Result<bool, StartError> {
        let intervals = row.job().intervals();
        let (_, distinct) = store.count_results(row.id)?;
        Ok(intervals.is_some_and(|n| distinct >= n))
    };
    if let Some(id) = options.resume {
        let row = match store.run(id) {
            Ok(row) => row,
            Err(StoreError::NoSuchRun(_)) => {
                return Err(StartError::CannotResume {
                    run: id,
                    why: format!("{db} has no such run"),
                })
            }
            Err(e) => return Err(e.into()),
        };
        if complete(&row)? {
            return Err(StartError::Complete { run: id, db });
        }
        return Ok(RunChoice::Resume(row));
    }
    if options.new_run {
        return Ok(RunChoice::Create(options.job));
    }
    let latest = match store.latest_run() {
        Ok(row) => row,
        Err(StoreError::NoRuns) => return Ok(RunChoice::Create(options.job)),
        Err(e) => return Err(e.into()),
    };
    let same = latest.job() == options.job;
    match (same, complete(&latest)?) {
        (true, true) => Err(StartError::Complete { run: latest.id, db }),
        (true, false) => Ok(RunChoice::Resume(latest)),
        (false, true) => Ok(RunChoice::Create(options.job)),
        (false, false) => Err(StartError::Unfinished {
            run: Box::new(latest),
            asked: options.job,
            db,
        }),
    }
}

/// Why a control operation could not be done. Shown to the user as is.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("the TCP server is not running: start it first")]
    NotRunning,
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("local clients cannot be created while the server requires TLS")]
    TlsOnly,
    #[error("{running} local clients are running and the most allowed is {max}: wait for some to finish, or start serve with a higher --max-local-clients")]
    TooManyClients { running: usize, max: usize },
    #[error("the node is shutting down")]
    ShuttingDown,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the coordinator has stopped")]
    Coordinator(#[from] coordinator::CoordinatorGone),
    #[error(
        "the store cannot make results durable any more; the run can be resumed after a restart"
    )]
    StoreFailed,
    #[error("cannot start a thread or task: {0}")]
    Io(#[from] std::io::Error),
}

/// A run being served.
struct RunCtx {
    running: RunningRun,
    job: Job,
    started: std::time::SystemTime,
    /// Writes results.json and final.json once a bounded job completes.
    files_on_completion: JoinHandle<()>,
}

impl RunCtx {
    fn current(&self) -> CurrentRun {
        CurrentRun {
            id: self.running.id,
            job: self.job,
            snapshot: self.running.handle.snapshot(),
            started: self.started,
        }
    }

    fn handle(&self) -> &CoordinatorHandle {
        &self.running.handle
    }
}

/// The TCP server while it runs.
struct Listening {
    addr: SocketAddr,
    stop: CancellationToken,
    accept: JoinHandle<()>,
    sessions: TaskTracker,
    since: Instant,
}

struct State {
    run: Option<RunCtx>,
    server: Option<Listening>,
    /// The address the TCP server listens on when started (the first bound one: a port 0 is
    /// resolved once, so that Start after Stop serves on the same port).
    listen: String,
    legacy_listen: Option<String>,
    closed: bool,
}

/// What the dashboard shows of the node; cheap to read (never waits for a control operation).
#[derive(Debug, Clone, Default)]
pub struct NodeView {
    pub running: bool,
    pub listen: String,
    pub legacy_listen: Option<String>,
    pub server_since: Option<Instant>,
}

/// The run being served, as observers see it. Holds no coordinator handle, so it never keeps a
/// finished coordinator alive.
#[derive(Debug, Clone)]
pub struct CurrentRun {
    pub id: RunId,
    pub job: Job,
    pub snapshot: watch::Receiver<Snapshot>,
    /// When its coordinator started (its times, such as a worker's `joined_s`, count from about
    /// then).
    pub started: std::time::SystemTime,
}

/// Speed of the current run, measured from snapshots over the last seconds.
#[derive(Default)]
struct RateMeter {
    samples: VecDeque<(Instant, RunId, u64)>,
}

impl RateMeter {
    fn observe(&mut self, run: RunId, terms_done: u64) -> f64 {
        let now = Instant::now();
        if self.samples.back().is_some_and(|s| s.1 != run) {
            self.samples.clear();
        }
        if self.samples.back().map_or(true, |s| {
            now.duration_since(s.0) >= Duration::from_millis(200)
        }) {
            self.samples.push_back((now, run, terms_done));
        }
        while self.samples.len() > 2
            && now.duration_since(self.samples[0].0) > Duration::from_secs(10)
        {
            self.samples.pop_front();
        }
        match (self.samples.front(), self.samples.back()) {
            (Some(first), Some(last)) if last.0 > first.0 => {
                let dt = last.0.duration_since(first.0).as_secs_f64();
                last.2.saturating_sub(first.2) as f64 / dt
            }
            _ => 0.0,
        }
    }
}

/// A running `piswarm serve`: cheap to clone, shared by the HTTP handlers.
#[derive(Clone)]
pub struct Node {
    inner: Arc<Inner>,
}

struct Inner {
    options: ServeOptions,
    location: Location,
    _lock: StoreLock,
    state: Mutex<State>,
    /// The current run; changes on New run.
    current: watch::Sender<CurrentRun>,
    /// The server's state for the status, updated by start and stop.
    view: StdMutex<NodeView>,
    /// The current run's coordinator, for queries; taken away before a run is finished.
    coordinator: StdMutex<Option<CoordinatorHandle>>,
    /// The running server's gate, for workers on other transports (the dashboard's WebSocket);
    /// `None` while the server is stopped.
    gate: StdMutex<Option<net::Gate>>,
    reads: Arc<ReadPool>,
    started: Instant,
    clients: clients::LocalClients,
    rate: StdMutex<RateMeter>,
    /// Cancelled when someone asks the whole process to exit (`POST /api/shutdown`).
    exit: CancellationToken,
    /// Results that failed re-verification when the run was resumed.
    dropped_on_resume: usize,
}

impl Node {
    /// Takes the store's lock, then [`Node::start_locked`]. (`serve` takes the lock itself,
    /// before binding any port.)
    pub async fn start(
        options: ServeOptions,
        listener: TcpListener,
        serving: bool,
    ) -> Result<Node, StartError> {
        let lock = StoreLock::acquire(&options.db)?;
        Self::start_locked(options, lock, listener, serving).await
    }

    /// Opens the store (checking its integrity, on a blocking thread), chooses the run
    /// ([`choose_run`]), starts its coordinator and, if `serving`, the TCP server on `listener`
    /// (otherwise the listener only fixes the address that Start will bind).
    pub async fn start_locked(
        options: ServeOptions,
        lock: StoreLock,
        listener: TcpListener,
        serving: bool,
    ) -> Result<Node, StartError> {
        let location = Location::File(options.db.clone());
        let opts = options.clone();
        let (store, choice) = tokio::task::spawn_blocking(move || {
            let store = Store::open(&location)?;
            store.integrity_check()?;
            let choice = choose_run(&store, &opts)?;
            Ok::<_, StartError>((store, choice))
        })
        .await
        .map_err(|e| StartError::Io(std::io::Error::other(e.to_string())))??;
        let (run, job) = match &choice {
            RunChoice::Resume(row) => (row.id, row.job()),
            RunChoice::Create(job) => (store.create_run_with(*job, options.kernel)?, *job),
        };
        let running = start_run(store, run, run_options(&options, job)).await?;
        if let RunChoice::Resume(row) = &choice {
            logging::say(format_args!(
                "resuming run {} from {} ({}; {} intervals already done)",
                row.id,
                options.db.display(),
                describe_job(&job),
                running.resumed_done
            ));
        }
        if running.lost > 0 {
            eprintln!(
                "piswarm: warning: the store lost {} acknowledged results of run {run} (its -wal file was deleted or damaged after a crash?); their intervals will be computed again",
                running.lost
            );
        }
        let dropped = running.dropped.len();
        if dropped > 0 {
            logging::warn(format_args!(
                "{dropped} stored results of run {run} failed verification (a damaged file?); they were removed and their intervals will be computed again"
            ));
        }
        let ctx = spawn_files_task(&options, running, job);
        let listen = listener.local_addr()?.to_string();
        let (current, _) = watch::channel(ctx.current());
        let coordinator = StdMutex::new(Some(ctx.handle().clone()));
        let view = StdMutex::new(NodeView {
            listen: listen.clone(),
            legacy_listen: options.legacy_listen.clone(),
            ..NodeView::default()
        });
        let location = Location::File(options.db.clone());
        let node = Node {
            inner: Arc::new(Inner {
                location: location.clone(),
                _lock: lock,
                state: Mutex::new(State {
                    run: Some(ctx),
                    server: None,
                    listen,
                    legacy_listen: options.legacy_listen.clone(),
                    closed: false,
                }),
                clients: clients::LocalClients::new(effective_max_local_clients(&options)),
                options,
                current,
                view,
                gate: StdMutex::new(None),
                coordinator,
                reads: Arc::new(ReadPool::new(location)),
                started: Instant::now(),
                rate: StdMutex::new(RateMeter::default()),
                exit: CancellationToken::new(),
                dropped_on_resume: dropped,
            }),
        };
        {
            let mut state = node.inner.state.lock().await;
            if serving {
                node.start_locked_server(&mut state, Some(listener))
                    .await
                    .map_err(|e| StartError::Io(std::io::Error::other(e.to_string())))?;
            } else {
                drop(listener);
                if let Some(run) = &state.run {
                    // Not serving yet: the run is stopped until Start.
                    let _ = run.handle().drain().await;
                }
            }
        }
        Ok(node)
    }

    pub fn options(&self) -> &ServeOptions {
        &self.inner.options
    }

    pub fn reads(&self) -> Arc<ReadPool> {
        self.inner.reads.clone()
    }

    /// Seconds since the node started.
    pub fn uptime(&self) -> Duration {
        self.inner.started.elapsed()
    }

    /// Local clients still running.
    pub fn local_clients(&self) -> usize {
        self.inner.clients.running()
    }

    /// The most local clients running at once.
    pub fn max_local_clients(&self) -> usize {
        effective_max_local_clients(&self.inner.options)
    }

    /// Stored results removed because they failed re-verification when the run was resumed.
    pub fn dropped_on_resume(&self) -> usize {
        self.inner.dropped_on_resume
    }

    /// The current run; `changed()` fires on New run.
    pub fn current(&self) -> watch::Receiver<CurrentRun> {
        self.inner.current.subscribe()
    }

    pub fn current_run(&self) -> CurrentRun {
        self.inner.current.borrow().clone()
    }

    /// The current run's coordinator (None while the node shuts down). Do not keep it: a run
    /// cannot finish while a handle of its coordinator lives.
    pub fn coordinator(&self) -> Option<CoordinatorHandle> {
        self.inner.coordinator.lock().ok().and_then(|c| c.clone())
    }

    /// The running server's gate (its coordinator, limits and connection budget), for a worker
    /// that arrives on another transport; `None` while the server is stopped.
    pub fn gate(&self) -> Option<net::Gate> {
        self.inner.gate.lock().ok().and_then(|g| g.clone())
    }

    /// Cancelled when the whole process was asked to exit.
    pub fn exit_requested(&self) -> CancellationToken {
        self.inner.exit.clone()
    }

    /// Asks the process to exit (the caller of `serve` then shuts the node down).
    pub fn request_exit(&self) {
        self.inner.exit.cancel();
    }

    /// Terms per second of the current run, over the last seconds.
    pub fn rate(&self, run: RunId, snap: &Snapshot) -> f64 {
        match self.inner.rate.lock() {
            Ok(mut meter) => meter.observe(run, snap.totals.terms_done),
            Err(_) => 0.0,
        }
    }

    /// The server's state.
    pub fn view(&self) -> NodeView {
        self.inner
            .view
            .lock()
            .map(|v| v.clone())
            .unwrap_or_default()
    }

    fn publish_view(&self, state: &State) {
        if let Ok(mut v) = self.inner.view.lock() {
            *v = NodeView {
                running: state.server.is_some(),
                listen: state.listen.clone(),
                legacy_listen: state.legacy_listen.clone(),
                server_since: state.server.as_ref().map(|s| s.since),
            };
        }
    }

    /// Starts the TCP server (and the legacy listener, if configured). Starting a running server
    /// does nothing.
    pub async fn start_server(&self) -> Result<(), ControlError> {
        let mut state = self.inner.state.lock().await;
        self.start_locked_server(&mut state, None).await
    }

    async fn start_locked_server(
        &self,
        state: &mut State,
        listener: Option<TcpListener>,
    ) -> Result<(), ControlError> {
        if state.closed {
            return Err(ControlError::ShuttingDown);
        }
        if state.server.is_some() {
            return Ok(());
        }
        let Some(run) = &state.run else {
            return Err(ControlError::ShuttingDown);
        };
        if run.handle().snapshot().borrow().store_failed.is_some() {
            return Err(ControlError::StoreFailed);
        }
        let bind = |addr: String| async move {
            net::bind(&addr)
                .await
                .map_err(|source| ControlError::Bind { addr, source })
        };
        let v1 = match listener {
            Some(l) => l,
            None => bind(state.listen.clone()).await?,
        };
        let legacy = match &state.legacy_listen {
            Some(addr) => Some(bind(addr.clone()).await?),
            None => None,
        };
        let addr = v1.local_addr()?;
        state.listen = addr.to_string();
        if let Some(a) = legacy.as_ref().and_then(|l| l.local_addr().ok()) {
            logging::say(format_args!(
                "legacy clients (the original's wire format) on {a}"
            ));
            state.legacy_listen = Some(a.to_string());
        }
        run.handle().open().await?;
        let stop = CancellationToken::new();
        let sessions = TaskTracker::new();
        let gate = net::Gate::new(
            run.handle().clone(),
            self.inner.options.server.clone(),
            stop.clone(),
            sessions.clone(),
        );
        if let Ok(mut g) = self.inner.gate.lock() {
            *g = Some(gate.clone());
        }
        let accept = tokio::spawn(net::serve_gate(Listeners { v1, legacy }, gate));
        logging::say_with(
            format_args!(
                "coordinator listening on {addr} — run {}, job: {}",
                run.running.id,
                describe_job(&run.job)
            ),
            serde_json::json!({ "listen": addr.to_string(), "run": run.running.id.0 }),
        );
        state.server = Some(Listening {
            addr,
            stop,
            accept,
            sessions,
            since: Instant::now(),
        });
        self.publish_view(state);
        Ok(())
    }

    /// Stops the TCP server gracefully and writes the result files. Stopping a stopped server
    /// does nothing.
    pub async fn stop_server(&self) -> Result<(), ControlError> {
        let mut state = self.inner.state.lock().await;
        if state.server.is_some() {
            logging::say("stopping the TCP server — telling workers, writing results");
        }
        self.stop_locked(&mut state).await
    }

    async fn stop_locked(&self, state: &mut State) -> Result<(), ControlError> {
        let Some(server) = state.server.take() else {
            return Ok(());
        };
        if let Ok(mut g) = self.inner.gate.lock() {
            *g = None;
        }
        self.publish_view(state);
        server.stop.cancel();
        let _ = server.accept.await;
        if let Some(run) = &state.run {
            let _ = run.handle().drain().await;
            server.sessions.close();
            if tokio::time::timeout(STOP_GRACE, server.sessions.wait())
                .await
                .is_err()
            {
                tracing::warn!("some sessions did not end within {STOP_GRACE:?}; closing them");
            }
            self.settle(run).await?;
        }
        Ok(())
    }

    /// Makes a run's results durable and writes its files (unless it has no result at all:
    /// an empty run never overwrites files).
    async fn settle(&self, run: &RunCtx) -> Result<(), ControlError> {
        if !run.handle().flush().await? {
            return Err(ControlError::StoreFailed);
        }
        write_files(&self.inner.options, run.running.id)
            .await
            .map_err(ControlError::Store)
    }

    /// Starts `count` clients on this machine, as real TCP clients of the coordinator.
    pub async fn create_clients(
        &self,
        count: usize,
        mode: ClientMode,
    ) -> Result<Vec<String>, ControlError> {
        let state = self.inner.state.lock().await;
        let Some(server) = &state.server else {
            return Err(ControlError::NotRunning);
        };
        if self.inner.options.server.tls.is_some() {
            return Err(ControlError::TlsOnly);
        }
        self.inner.clients.create(
            count,
            mode,
            local_connect_addr(server.addr),
            self.inner.options.server.token.clone(),
        )
    }

    /// Finishes the current run and starts a new one with `job`. Returns the new run's id.
    pub async fn new_run(&self, job: Job) -> Result<RunId, ControlError> {
        let mut state = self.inner.state.lock().await;
        if state.closed {
            return Err(ControlError::ShuttingDown);
        }
        let was_running = state.server.is_some();
        self.stop_locked(&mut state).await?;
        if !was_running {
            // Stopping the server settles the run; a run that was not being served is settled here.
            if let Some(old) = &state.run {
                self.settle(old).await?;
            }
        }
        let location = self.inner.location.clone();
        let kernel = self.inner.options.kernel;
        let (store, id) = tokio::task::spawn_blocking(move || {
            let store = Store::open(&location)?;
            let id = store.create_run_with(job, kernel)?;
            Ok::<_, StoreError>((store, id))
        })
        .await
        .map_err(|e| ControlError::Io(std::io::Error::other(e.to_string())))??;
        let running = start_run(store, id, run_options(&self.inner.options, job)).await?;
        let ctx = spawn_files_task(&self.inner.options, running, job);
        self.inner.current.send_replace(ctx.current());
        if let Ok(mut c) = self.inner.coordinator.lock() {
            *c = Some(ctx.handle().clone());
        }
        if let Some(old) = state.run.replace(ctx) {
            finish_run(old).await;
        }
        logging::say(format_args!("new run {id}, job: {}", describe_job(&job)));
        if was_running {
            self.start_locked_server(&mut state, None).await?;
        } else if let Some(run) = &state.run {
            let _ = run.handle().drain().await;
        }
        Ok(id)
    }

    /// Stops everything: local clients, the TCP server, the run. Returns the final report of the
    /// current run. Control operations are refused afterwards.
    pub async fn shutdown(&self) -> Result<FinalReport, ControlError> {
        let mut state = self.inner.state.lock().await;
        let was_running = state.server.is_some();
        let stopped = self.stop_locked(&mut state).await;
        state.closed = true;
        self.inner.clients.stop(STOP_GRACE).await;
        let Some(run) = state.run.take() else {
            return Err(ControlError::ShuttingDown);
        };
        if let Ok(mut c) = self.inner.coordinator.lock() {
            *c = None;
        }
        let report = run.handle().report().await?;
        let settled = if was_running {
            stopped
        } else {
            // Stopping the server settled the run; a node that was not serving settles it here.
            self.settle(&run).await
        };
        finish_run(run).await;
        settled.map(|()| report)
    }
}

/// The coordinator's settings for a run of `job` under these options.
fn run_options(options: &ServeOptions, job: Job) -> StartOptions {
    let mut config = CoreConfig::new(job);
    config.max_prefetch = options.max_prefetch;
    config.backups = options.backups;
    if let Some(lease) = options.lease {
        config.lease = LeasePolicy::Fixed(lease);
    }
    // Workers are asked to speak three times per idle timeout, so a live one is never cut off.
    config.heartbeat = options.server.idle_timeout / 3;
    StartOptions {
        config,
        print_results: !options.quiet,
        path: Some(options.db.clone()),
        min_free_disk: options
            .min_free_disk
            .unwrap_or_else(|| default_min_free_disk(&options.db)),
        on_commit: Some(options.server.metrics.commit_observer()),
    }
}

/// Wraps a running run with the task that writes its files once it completes.
fn spawn_files_task(options: &ServeOptions, running: RunningRun, job: Job) -> RunCtx {
    let files_on_completion = {
        let (handle, options, id) = (running.handle.clone(), options.clone(), running.id);
        tokio::spawn(async move {
            if handle.wait_complete().await.is_ok() && matches!(handle.flush().await, Ok(true)) {
                drop(handle);
                if let Err(e) = write_files(&options, id).await {
                    tracing::error!("could not write the result files: {e}");
                }
            }
        })
    };
    RunCtx {
        running,
        job,
        started: std::time::SystemTime::now(),
        files_on_completion,
    }
}

/// The address local clients connect to: the listen address, with an unspecified IP (0.0.0.0,
/// ::) replaced by loopback.
fn local_connect_addr(addr: SocketAddr) -> String {
    let mut a = addr;
    if a.ip().is_unspecified() {
        a.set_ip(match a {
            SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    a.to_string()
}

/// Drops a run's coordinator and waits for its task and its store writer to end.
async fn finish_run(run: RunCtx) {
    run.files_on_completion.abort();
    let _ = run.files_on_completion.await;
    run.running.finish().await;
}

/// Exports results.json and final.json of a run from the store (a run without results writes
/// nothing, so it never overwrites the files of an earlier run). One export at a time in a
/// process: the files written when a job completes and those written when the server stops
/// (`--exit-when-done` does both, moments apart) never overlap.
pub async fn write_files(options: &ServeOptions, run: RunId) -> Result<(), StoreError> {
    static ONE_WRITER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let _writing = ONE_WRITER.lock().await;
    let (db, out) = (options.db.clone(), options.out.clone());
    let written = tokio::task::spawn_blocking(move || {
        let store = Store::open(&Location::File(db))?;
        if store.count_results(run)?.0 == 0 {
            return Ok(false);
        }
        crate::store::export::write_files(&store, run, &out)?;
        Ok::<_, StoreError>(true)
    })
    .await
    .map_err(|e| StoreError::Io(std::io::Error::other(e.to_string())))??;
    if written {
        tracing::info!(dir = %options.out.display(), "wrote results.json and final.json");
    }
    Ok(())
}
