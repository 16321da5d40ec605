//! The control layer of `piswarm serve`: one running node — its store, its current run and that
//! run's coordinator, the TCP server that can be stopped and started again, and the local clients
//! the dashboard creates.
//!
//! What it owns: the lifecycle around the coordinator, never the run's state itself (that stays in
//! the coordinator task). Control operations (start, stop, new run, shutdown) are rare — a person
//! clicks a button — and are serialised by one async mutex, so two clicks cannot interleave a stop
//! and a start. Reading the status never waits for that mutex for long: it only copies a few fields.
//!
//! * Stop is graceful: the accept loops end (the port is closed), the coordinator is drained
//!   (every worker is told `done server_stopping`, every held interval goes back to the queue),
//!   sessions get a few seconds to say goodbye, then results.json and final.json are written.
//!   The coordinator itself stays alive, so Start resumes the same run where it was.
//! * New run stops the server if it runs, finishes the current run (its state in the store becomes
//!   stopped or complete, its files are written), creates the new run in the store, spawns a fresh
//!   coordinator for it, and starts the server again if it was running.

use crate::coordinator::{self, CoordinatorConfig, CoordinatorHandle, Snapshot, StoreLink};
use crate::job::Job;
use crate::net::legacy;
use crate::report::FinalReport;
use crate::commands::serve::ServeOptions;
use crate::net::session as server;
use crate::store::{Location, Resume, RunState, Store, StoreError};
use crate::worker::{self, WorkerConfig};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::{watch, Mutex};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How long stopping waits for sessions to say goodbye.
pub const STOP_GRACE: Duration = Duration::from_secs(5);
/// The most local clients one request may create.
pub const MAX_LOCAL_CLIENTS: usize = 1000;
/// How many read connections to the store are kept open for the dashboard.
const READ_POOL: usize = 8;

/// How a local client works.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientMode {
    /// One interval, then leave (the original's client).
    Once,
    /// Until the coordinator says there is no more work.
    UntilDone,
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
    #[error("the node is shutting down")]
    ShuttingDown,
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("the coordinator has stopped")]
    Coordinator(#[from] coordinator::CoordinatorGone),
    #[error("{0}")]
    Other(String),
}

/// A run being served: its id and the coordinator that owns its state.
struct RunCtx {
    id: i64,
    job: Job,
    coordinator: CoordinatorHandle,
    task: JoinHandle<()>,
    writer_thread: std::thread::JoinHandle<()>,
    /// Writes results.json and final.json once a bounded job completes.
    files_on_completion: JoinHandle<()>,
}

impl RunCtx {
    fn current(&self) -> CurrentRun {
        CurrentRun {
            id: self.id,
            job: self.job,
            snapshot: self.coordinator.snapshot(),
        }
    }
}

/// The TCP server while it runs.
struct Listening {
    addr: SocketAddr,
    stop: CancellationToken,
    accept: JoinHandle<()>,
    legacy_accept: Option<JoinHandle<()>>,
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
    pub id: i64,
    pub job: Job,
    pub snapshot: watch::Receiver<Snapshot>,
}

/// A pool of read connections to the store, for the dashboard's queries.
pub struct ReadPool {
    location: Location,
    idle: StdMutex<Vec<Store>>,
}

impl ReadPool {
    pub fn new(location: Location) -> ReadPool {
        ReadPool {
            location,
            idle: StdMutex::new(Vec::new()),
        }
    }

    /// Runs `f` on a pooled connection, on a blocking thread.
    pub async fn with<R: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&Store) -> Result<R, StoreError> + Send + 'static,
    ) -> Result<R, StoreError> {
        let pool = self.clone();
        let joined = tokio::task::spawn_blocking(move || {
            let taken = pool.idle.lock().ok().and_then(|mut v| v.pop());
            let store = match taken {
                Some(s) => s,
                None => Store::open(&pool.location)?,
            };
            let result = f(&store);
            if let Ok(mut idle) = pool.idle.lock() {
                if idle.len() < READ_POOL {
                    idle.push(store);
                }
            }
            result
        })
        .await;
        match joined {
            Ok(r) => r,
            Err(e) => Err(StoreError::Io(std::io::Error::other(e.to_string()))),
        }
    }
}

/// Speed of the current run, measured from snapshots over the last seconds.
#[derive(Default)]
struct RateMeter {
    samples: VecDeque<(Instant, i64, u64)>,
}

impl RateMeter {
    fn observe(&mut self, run: i64, terms_done: u64) -> f64 {
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
    state: Mutex<State>,
    /// The current run; changes on New run.
    current: watch::Sender<CurrentRun>,
    /// The server's state for the status, updated by start and stop.
    view: StdMutex<NodeView>,
    /// The current run's coordinator, for queries; taken away before a run is finished.
    coordinator: StdMutex<Option<CoordinatorHandle>>,
    reads: Arc<ReadPool>,
    started: Instant,
    clients: TaskTracker,
    clients_stop: CancellationToken,
    local_clients: Arc<AtomicUsize>,
    next_client: AtomicU64,
    rate: StdMutex<RateMeter>,
    /// Cancelled when someone asks the whole process to exit (`POST /api/shutdown`).
    exit: CancellationToken,
}

impl Node {
    /// Opens the store, resumes the latest unfinished run with the same job (or creates one),
    /// spawns its coordinator and, if `serving`, starts the TCP server on `listener` (otherwise the
    /// listener only fixes the address that Start will bind).
    pub async fn start(
        options: ServeOptions,
        listener: TcpListener,
        serving: bool,
    ) -> anyhow::Result<Node> {
        let location = Location::File(options.db.clone());
        let store = Store::open(&location)?;
        let resume = store.resumable(options.job)?;
        let run = match &resume {
            Some(r) => {
                println!(
                    "piswarm: resuming run {} from {} ({} intervals already done)",
                    r.run.id,
                    options.db.display(),
                    r.done_ids.len()
                );
                store.set_state(r.run.id, RunState::Running)?;
                r.run.id
            }
            None => store.create_run(options.job)?,
        };
        let ctx = spawn_run(&options, store, run, options.job, resume)?;
        let listen = listener.local_addr()?.to_string();
        let (current, _) = watch::channel(ctx.current());
        let coordinator = StdMutex::new(Some(ctx.coordinator.clone()));
        let view = StdMutex::new(NodeView {
            listen: listen.clone(),
            legacy_listen: options.legacy_listen.clone(),
            ..NodeView::default()
        });
        let node = Node {
            inner: Arc::new(Inner {
                location: location.clone(),
                state: Mutex::new(State {
                    run: Some(ctx),
                    server: None,
                    listen,
                    legacy_listen: options.legacy_listen.clone(),
                    closed: false,
                }),
                options,
                current,
                view,
                coordinator,
                reads: Arc::new(ReadPool::new(location)),
                started: Instant::now(),
                clients: TaskTracker::new(),
                clients_stop: CancellationToken::new(),
                local_clients: Arc::new(AtomicUsize::new(0)),
                next_client: AtomicU64::new(1),
                rate: StdMutex::new(RateMeter::default()),
                exit: CancellationToken::new(),
            }),
        };
        if serving {
            let mut state = node.inner.state.lock().await;
            node.start_locked(&mut state, Some(listener)).await?;
        } else {
            drop(listener);
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
        self.inner.local_clients.load(Ordering::Relaxed)
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

    /// Cancelled when the whole process was asked to exit.
    pub fn exit_requested(&self) -> CancellationToken {
        self.inner.exit.clone()
    }

    /// Asks the process to exit (the caller of `serve` then shuts the node down).
    pub fn request_exit(&self) {
        self.inner.exit.cancel();
    }

    /// Terms per second of the current run, over the last seconds.
    pub fn rate(&self, run: i64, snap: &Snapshot) -> f64 {
        match self.inner.rate.lock() {
            Ok(mut meter) => meter.observe(run, snap.terms_done),
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
        self.start_locked(&mut state, None).await
    }

    async fn start_locked(
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
        let listener = match listener {
            Some(l) => l,
            None => {
                TcpListener::bind(&state.listen)
                    .await
                    .map_err(|source| ControlError::Bind {
                        addr: state.listen.clone(),
                        source,
                    })?
            }
        };
        let legacy_listener = match &state.legacy_listen {
            Some(addr) => {
                Some(
                    TcpListener::bind(addr)
                        .await
                        .map_err(|source| ControlError::Bind {
                            addr: addr.clone(),
                            source,
                        })?,
                )
            }
            None => None,
        };
        let addr = listener
            .local_addr()
            .map_err(|e| ControlError::Other(e.to_string()))?;
        state.listen = addr.to_string();
        let legacy_addr = legacy_listener.as_ref().and_then(|l| l.local_addr().ok());
        if let Some(a) = legacy_addr {
            state.legacy_listen = Some(a.to_string());
        }
        let stop = CancellationToken::new();
        let sessions = TaskTracker::new();
        let config = self.inner.options.server.clone();
        let accept = tokio::spawn(server::serve(
            listener,
            run.coordinator.clone(),
            config.clone(),
            stop.clone(),
            sessions.clone(),
        ));
        let legacy_accept = legacy_listener.map(|l| {
            let shown = legacy_addr.map_or_else(String::new, |a| a.to_string());
            println!("piswarm: legacy clients (the original's wire format) on {shown}");
            tokio::spawn(legacy::serve_legacy(
                l,
                run.coordinator.clone(),
                config,
                stop.clone(),
                sessions.clone(),
            ))
        });
        if let Ok(store) = Store::open(&self.inner.location) {
            let _ = store.set_state(run.id, RunState::Running);
        }
        println!(
            "piswarm: coordinator listening on {addr} — run {}, job: {}, chunk {}",
            run.id,
            run.job
                .terms
                .map_or("open-ended".to_string(), |n| format!("{n} terms")),
            run.job.chunk
        );
        state.server = Some(Listening {
            addr,
            stop,
            accept,
            legacy_accept,
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
        self.stop_locked(&mut state).await
    }

    async fn stop_locked(&self, state: &mut State) -> Result<(), ControlError> {
        let Some(server) = state.server.take() else {
            return Ok(());
        };
        println!("piswarm: stopping the TCP server — telling workers, writing results");
        self.publish_view(state);
        server.stop.cancel();
        let _ = server.accept.await;
        if let Some(legacy) = server.legacy_accept {
            let _ = legacy.await;
        }
        if let Some(run) = &state.run {
            let _ = run.coordinator.drain().await;
            server.sessions.close();
            if tokio::time::timeout(STOP_GRACE, server.sessions.wait())
                .await
                .is_err()
            {
                tracing::warn!("some sessions did not end within {STOP_GRACE:?}; closing them");
            }
            self.settle(run).await;
        }
        Ok(())
    }

    /// Makes a run's results durable, writes its files, and records whether it is complete.
    async fn settle(&self, run: &RunCtx) {
        if run.coordinator.flush().await.is_err() {
            return;
        }
        let snap = run.coordinator.snapshot().borrow().clone();
        if snap.store_failed.is_some() {
            return;
        }
        let state = if snap.complete {
            RunState::Complete
        } else {
            RunState::Stopped
        };
        write_files(
            &run.coordinator,
            &self.inner.options.db,
            run.id,
            &self.inner.options.out,
        )
        .await;
        if let Ok(store) = Store::open(&self.inner.location) {
            let _ = store.set_state(run.id, state);
        }
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
        let connect = local_connect_addr(server.addr);
        let mut names = Vec::with_capacity(count);
        for _ in 0..count {
            let n = self.inner.next_client.fetch_add(1, Ordering::Relaxed);
            let mut config = WorkerConfig::new(connect.clone());
            config.threads = 1;
            config.once = mode == ClientMode::Once;
            config.name = format!("local-{n}");
            config.token = self.inner.options.server.token.clone();
            // Hundreds of clients connect at once: give them a moment of retries.
            config.retry_for = Some(Duration::from_secs(10));
            names.push(config.name.clone());
            let counter = self.inner.local_clients.clone();
            counter.fetch_add(1, Ordering::Relaxed);
            let stop = self.inner.clients_stop.child_token();
            self.inner.clients.spawn(async move {
                let name = config.name.clone();
                if let Err(e) = worker::run_worker(config, stop).await {
                    tracing::info!(worker = %name, "local client ended: {e}");
                }
                counter.fetch_sub(1, Ordering::Relaxed);
            });
        }
        Ok(names)
    }

    /// Finishes the current run and starts a new one with `job`. Returns the new run's id.
    pub async fn new_run(&self, job: Job) -> Result<i64, ControlError> {
        let mut state = self.inner.state.lock().await;
        if state.closed {
            return Err(ControlError::ShuttingDown);
        }
        let was_running = state.server.is_some();
        self.stop_locked(&mut state).await?;
        if !was_running {
            // Stopping the server settles the run; a run that was not being served is settled here.
            if let Some(old) = &state.run {
                self.settle(old).await;
            }
        }
        let store = Store::open(&self.inner.location)?;
        let id = store.create_run(job)?;
        let ctx = spawn_run(&self.inner.options, store, id, job, None)
            .map_err(|e| ControlError::Other(e.to_string()))?;
        self.inner.current.send_replace(ctx.current());
        if let Ok(mut c) = self.inner.coordinator.lock() {
            *c = Some(ctx.coordinator.clone());
        }
        if let Some(old) = state.run.replace(ctx) {
            finish_run(old).await;
        }
        println!(
            "piswarm: new run {id}, job: {}, chunk {}",
            job.terms
                .map_or("open-ended".to_string(), |n| format!("{n} terms")),
            job.chunk
        );
        if was_running {
            self.start_locked(&mut state, None).await?;
        }
        Ok(id)
    }

    /// Stops everything: local clients, the TCP server, the run. Returns the final report of the
    /// current run. Control operations are refused afterwards.
    pub async fn shutdown(&self) -> anyhow::Result<FinalReport> {
        let mut state = self.inner.state.lock().await;
        let was_running = state.server.is_some();
        self.stop_locked(&mut state).await?;
        state.closed = true;
        self.inner.clients_stop.cancel();
        self.inner.clients.close();
        let _ = tokio::time::timeout(STOP_GRACE, self.inner.clients.wait()).await;
        let Some(run) = state.run.take() else {
            anyhow::bail!("the node was already shut down");
        };
        if let Ok(mut c) = self.inner.coordinator.lock() {
            *c = None;
        }
        let report = run.coordinator.report().await?;
        if !was_running {
            // Stopping the server settled the run; a node that was not serving settles it here.
            self.settle(&run).await;
        }
        finish_run(run).await;
        Ok(report)
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

/// Spawns the coordinator of run `id` with its store writer.
fn spawn_run(
    options: &ServeOptions,
    store: Store,
    id: i64,
    job: Job,
    resume: Option<Resume>,
) -> anyhow::Result<RunCtx> {
    let mut config = CoordinatorConfig::new(job);
    config.max_prefetch = options.max_prefetch;
    config.lease = options.lease;
    // Workers are asked to speak three times per idle timeout, so a live one is never cut off.
    config.heartbeat = options.server.idle_timeout / 3;
    config.print_results = !options.quiet;
    config.run_id = id as u64;
    let (failures_tx, failures) = tokio::sync::mpsc::unbounded_channel();
    let (writer, writer_thread) = crate::store::Writer::start(store, failures_tx)?;
    let link = StoreLink {
        writer,
        run: id,
        failures,
        path: Some(options.db.clone()),
    };
    let (coordinator, task) = coordinator::spawn_with(config, resume, Some(link));
    let files_on_completion = {
        let (coordinator, db, out) = (coordinator.clone(), options.db.clone(), options.out.clone());
        tokio::spawn(async move {
            if coordinator.wait_complete().await.is_ok() {
                write_files(&coordinator, &db, id, &out).await;
            }
        })
    };
    Ok(RunCtx {
        id,
        job,
        coordinator,
        task,
        writer_thread,
        files_on_completion,
    })
}

/// Drops a run's coordinator and waits for its task and its store writer to end.
async fn finish_run(run: RunCtx) {
    run.files_on_completion.abort();
    drop(run.coordinator);
    let _ = run.task.await;
    let writer = run.writer_thread;
    let _ = tokio::task::spawn_blocking(move || writer.join()).await;
}

/// Makes everything durable, then exports results.json and final.json from the store.
pub(crate) async fn write_files(coordinator: &CoordinatorHandle, db: &Path, run: i64, out: &Path) {
    if coordinator.flush().await.is_err() {
        return;
    }
    let (db, out): (PathBuf, PathBuf) = (db.to_path_buf(), out.to_path_buf());
    let written = tokio::task::spawn_blocking(move || {
        let store = Store::open(&Location::File(db))?;
        crate::store::export::write_files(&store, run, &out).map(|()| out)
    })
    .await;
    match written {
        Ok(Ok(out)) => tracing::info!(dir = %out.display(), "wrote results.json and final.json"),
        Ok(Err(e)) => tracing::error!("could not write the result files: {e}"),
        Err(e) => tracing::error!("could not write the result files: {e}"),
    }
}
