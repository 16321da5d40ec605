//! The worker: connects, pulls intervals, computes them on its threads, reports, and leaves when
//! the job is complete.
//!
//! One async task speaks the protocol (`session`); `threads` plain OS threads run the kernel
//! (`pool`). Results that were not acknowledged — because the connection or the coordinator went
//! away — are kept and sent again, marked `resend`, on the next connection to the same run.
//!
//! With `--retry-for D` the worker rides out coordinator restarts: it reconnects with jittered
//! exponential backoff for as long as D passes *without* a coordinator (the clock restarts at every
//! successful connection, and so does the backoff), and `done server_stopping` is a restart to wait
//! for. Without it, any end of the connection ends the worker.

mod pool;
pub mod retry;
mod session;

pub use pool::{compute, compute_with, ComputePool};

use crate::metrics::worker::WorkerInstruments;
use crate::net::tls::TlsClient;
use crate::wire::{ErrorCode, Secret, WorkResult};
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Settings of a worker. Its `Debug` shows neither the token nor the TLS configuration.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    pub connect: String,
    pub threads: usize,
    pub name: String,
    /// Take one interval, report it, leave (the original's client).
    pub once: bool,
    /// Keep trying to (re)connect for this long when the coordinator is unreachable or goes away.
    pub retry_for: Option<Duration>,
    pub token: Option<Secret>,
    /// Assignments to hold at once (capped by the server); default two per thread.
    pub prefetch: Option<u32>,
    /// Connect with TLS, trusting these certificate authorities (`--tls-ca`).
    pub tls: Option<TlsClient>,
    /// The name expected in the coordinator's certificate (default: the host part of `connect`).
    pub tls_server_name: Option<String>,
    /// What the worker counts for `worker --metrics`.
    pub metrics: WorkerInstruments,
    /// Wait this long after each interval before reporting it (a slow machine, emulated).
    pub pace: Option<Duration>,
    /// Compute on these shared threads instead of starting `threads` of its own (a node's local
    /// clients share one pool sized to the cores).
    pub pool: Option<ComputePool>,
}

impl WorkerConfig {
    pub fn new(connect: impl Into<String>) -> WorkerConfig {
        WorkerConfig {
            connect: connect.into(),
            threads: 1,
            name: default_name(),
            once: false,
            retry_for: None,
            token: None,
            prefetch: None,
            tls: None,
            tls_server_name: None,
            metrics: WorkerInstruments::default(),
            pace: None,
            pool: None,
        }
    }
}

/// The default worker name: host name, process id and a random suffix (names are for people:
/// nothing is granted or refused by name).
pub fn default_name() -> String {
    format!(
        "{}-{}-{:04x}",
        gethostname::gethostname().to_string_lossy(),
        std::process::id(),
        getrandom::u32().unwrap_or(0) & 0xffff
    )
}

/// What a worker did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WorkerSummary {
    /// Results the server accepted.
    pub accepted: u64,
    /// Results the server acknowledged as duplicates.
    pub duplicates: u64,
    pub terms: u64,
    /// `error` messages the server sent (rejected results, refused lines). An honest worker on a
    /// healthy server receives none.
    pub errors: u64,
}

/// Why a worker stopped without finishing.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("cannot reach the coordinator at {addr}: {source}")]
    Connect {
        addr: String,
        source: std::io::Error,
    },
    #[error(
        "the coordinator at {addr} closed the connection before saying there was no more work"
    )]
    Lost { addr: String },
    #[error("the coordinator refused this worker ({}): {message}", wire_name(.code))]
    Refused { code: ErrorCode, message: String },
    #[error("TLS with the coordinator at {addr} failed: {reason}")]
    Tls {
        addr: String,
        reason: String,
        /// The connection was cut or timed out during the handshake (a full or restarting
        /// server), as opposed to a certificate or protocol failure, which retrying cannot fix.
        transient: bool,
    },
    #[error("protocol error: {0}")]
    Protocol(String),
    #[error(transparent)]
    UnknownKernel(crate::client::UnknownKernel),
    #[error("cannot start the compute threads: {0}")]
    Threads(std::io::Error),
}

impl WorkerError {
    /// Whether trying again later may help.
    fn is_transient(&self) -> bool {
        match self {
            WorkerError::Connect { .. } | WorkerError::Lost { .. } => true,
            WorkerError::Refused { code, .. } => {
                matches!(
                    code,
                    ErrorCode::TooManyConnections | ErrorCode::IdleTimeout | ErrorCode::Internal
                )
            }
            WorkerError::Tls { transient, .. } => *transient,
            WorkerError::Protocol(_) | WorkerError::Threads(_) | WorkerError::UnknownKernel(_) => {
                false
            }
        }
    }
}

/// An error code as it is written on the wire (`unauthorized`, `tls_required`, …).
fn wire_name(code: &ErrorCode) -> String {
    serde_json::to_value(code)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| format!("{code:?}"))
}

/// How a connection ended, when it ended well.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// `done job_complete`, or `--once` got its answer.
    Finished,
    /// `done server_stopping`: a coordinator restart (waited for with `--retry-for`).
    Stopping,
    /// The worker was told to stop (Ctrl-C).
    Shutdown,
}

/// What survives from one connection to the next.
#[derive(Debug, Default)]
struct Carry {
    /// The run the unacknowledged results belong to: its number, and its `run_uid` when the
    /// coordinator sent one.
    run: Option<(u64, Option<String>)>,
    /// Results computed and not acknowledged, to send again (marked `resend`).
    unacked: BTreeMap<u64, WorkResult>,
}

/// Runs a worker until the job is complete (Ok), `shutdown` is cancelled (Ok), or it fails for
/// good.
pub async fn run_worker(
    config: WorkerConfig,
    shutdown: CancellationToken,
) -> Result<WorkerSummary, WorkerError> {
    let mut pool = match &config.pool {
        Some(shared) => pool::Pool::shared(shared),
        None => {
            let threads = if config.once { 1 } else { config.threads };
            pool::Pool::new(threads, config.pace).map_err(WorkerError::Threads)?
        }
    };
    let threads = config.pool.as_ref().map_or(
        if config.once { 1 } else { config.threads },
        ComputePool::threads,
    );
    let metrics = &config.metrics;
    metrics
        .threads
        .set(i64::try_from(threads).unwrap_or(i64::MAX));
    let mut welcomed_before = false;
    let mut summary = WorkerSummary::default();
    let mut carry = Carry::default();
    let start = Instant::now();
    let mut reconnect = retry::Reconnect::new(config.retry_for, Duration::ZERO);
    let mut epoch = 0;
    loop {
        epoch += 1;
        let mut connected = false;
        metrics.connection_attempts.inc();
        let outcome = tokio::select! {
            _ = shutdown.cancelled() => return Ok(summary),
            r = session::run(&config, &mut pool, epoch, &mut carry, &mut summary, &mut connected, &shutdown) => r,
        };
        metrics.connected.set(0);
        if connected {
            if welcomed_before {
                metrics.reconnects.inc();
            }
            welcomed_before = true;
            reconnect.connected(start.elapsed());
        }
        let failure = match outcome {
            Ok(End::Finished) | Ok(End::Shutdown) => return Ok(summary),
            Ok(End::Stopping) if config.retry_for.is_none() => return Ok(summary),
            Ok(End::Stopping) => WorkerError::Lost {
                addr: config.connect.clone(),
            },
            Err(e) if e.is_transient() && config.retry_for.is_some() => e,
            Err(e) => return Err(e),
        };
        let jitter =
            f64::from(getrandom::u32().unwrap_or(u32::MAX / 2)) / (f64::from(u32::MAX) + 1.0);
        let Some(wait) = reconnect.next_wait(start.elapsed(), jitter) else {
            return Err(failure);
        };
        tracing::warn!("{failure}; retrying in {wait:?}");
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(summary),
            _ = tokio::time::sleep(wait) => {}
        }
    }
}
