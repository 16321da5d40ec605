//! Local clients: real `piswarm worker`s in this process, created from the dashboard, with a cap
//! on how many run at once. A local client is a connection (a task speaking protocol v1 over
//! loopback), not a thread: they all compute on one pool of threads, one per core.

use super::ControlError;
use crate::wire::Secret;
use crate::worker::{self, ComputePool, WorkerConfig};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The most local clients one request may create.
pub const MAX_PER_REQUEST: usize = 1000;

/// The default cap on local clients running at once (each is a connection and a task; they share
/// one compute thread per core). The node lowers it to half its connection budget if that is less.
pub const DEFAULT_MAX_LOCAL_CLIENTS: usize = 1000;

/// How a local client works.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientMode {
    /// One interval, then leave (the original's client).
    Once,
    /// Until the coordinator says there is no more work.
    UntilDone,
}

/// The local clients of a node.
pub(super) struct LocalClients {
    max: usize,
    /// The compute threads every local client shares, started with the first client.
    pool: OnceLock<ComputePool>,
    tracker: TaskTracker,
    stop: CancellationToken,
    running: Arc<AtomicUsize>,
    next: AtomicU64,
}

impl LocalClients {
    pub fn new(max: usize) -> LocalClients {
        LocalClients {
            max,
            pool: OnceLock::new(),
            tracker: TaskTracker::new(),
            stop: CancellationToken::new(),
            running: Arc::new(AtomicUsize::new(0)),
            next: AtomicU64::new(1),
        }
    }

    pub fn running(&self) -> usize {
        self.running.load(Ordering::Relaxed)
    }

    /// Starts `count` clients connecting to `connect`; refuses if that would exceed the cap.
    pub fn create(
        &self,
        count: usize,
        mode: ClientMode,
        connect: String,
        token: Option<Secret>,
    ) -> Result<Vec<String>, ControlError> {
        let running = self.running();
        if running + count > self.max {
            return Err(ControlError::TooManyClients {
                running,
                max: self.max,
            });
        }
        let pool = match self.pool.get() {
            Some(pool) => pool.clone(),
            None => {
                let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
                let pool = ComputePool::new(cores)?;
                self.pool.get_or_init(|| pool).clone()
            }
        };
        let mut names = Vec::with_capacity(count);
        for _ in 0..count {
            let n = self.next.fetch_add(1, Ordering::Relaxed);
            let mut config = WorkerConfig::new(connect.clone());
            config.threads = 1;
            config.pool = Some(pool.clone());
            config.once = mode == ClientMode::Once;
            config.name = format!("local-{n}");
            config.token = token.clone();
            // Hundreds of clients connect at once: give them a moment of retries.
            config.retry_for = Some(Duration::from_secs(10));
            names.push(config.name.clone());
            let counter = self.running.clone();
            counter.fetch_add(1, Ordering::Relaxed);
            let stop = self.stop.child_token();
            self.tracker.spawn(async move {
                let name = config.name.clone();
                if let Err(e) = worker::run_worker(config, stop).await {
                    tracing::info!(worker = %name, "local client ended: {e}");
                }
                counter.fetch_sub(1, Ordering::Relaxed);
            });
        }
        Ok(names)
    }

    /// Stops every client, waiting at most `grace`.
    pub async fn stop(&self, grace: Duration) {
        self.stop.cancel();
        self.tracker.close();
        let _ = tokio::time::timeout(grace, self.tracker.wait()).await;
    }
}
