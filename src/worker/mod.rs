//! The worker: connects, pulls intervals, computes them on its threads, reports, and leaves when
//! told there is no more work.
//!
//! One async task speaks the protocol; `threads` plain OS threads run the kernel. Results that
//! were not acknowledged — because the connection or the coordinator went away — are kept and sent
//! again, marked `resend`, on the next connection (with `--retry-for`).

use crate::wire::line::read_line;
use crate::maths::{kernel, sums};
use crate::wire::{
    self, ClientMessage, Dec, DoneReason, ErrorCode, ServerMessage, WorkResult, MAX_LINE,
    PROTOCOL_VERSION,
};
use crate::wire::secret::Secret;
use crate::net::tls::TlsClient;
use std::sync::{mpsc as std_mpsc, Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::timeout;
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
        }
    }
}

/// The default worker name: host name and process id.
pub fn default_name() -> String {
    format!(
        "{}-{}",
        gethostname::gethostname().to_string_lossy(),
        std::process::id()
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
            WorkerError::Protocol(_) => false,
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

/// A sentence for a failed TLS handshake, with a hint at the usual cause.
fn tls_failure(e: &std::io::Error) -> String {
    let inner = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>());
    match inner {
        Some(rustls::Error::InvalidCertificate(why)) => format!(
            "the coordinator's certificate is not trusted ({why:?}): check that --tls-ca is the \
             certificate authority that signed it and that it names the host of --connect \
             (or --tls-server-name)"
        ),
        Some(other) => other.to_string(),
        None if matches!(
            e.kind(),
            std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::ConnectionReset
        ) =>
        {
            "the coordinator closed the connection during the TLS handshake (does it serve TLS? \
             it needs --tls-cert and --tls-key; or it is full)"
                .to_string()
        }
        None => e.to_string(),
    }
}

struct Task {
    epoch: u64,
    id: u64,
    a: u64,
    b: u64,
}

struct Computed {
    epoch: u64,
    result: WorkResult,
}

/// A pool of compute threads fed through a shared queue.
struct Pool {
    tasks: std_mpsc::Sender<Task>,
    results: mpsc::Receiver<Computed>,
    /// Results sent (or computed) but not acknowledged yet, across connections: after a
    /// reconnect they are sent again, marked `resend`, so that no finished work is lost.
    unacked: std::collections::BTreeMap<u64, WorkResult>,
}

impl Pool {
    fn new(threads: usize) -> Pool {
        let (task_tx, task_rx) = std_mpsc::channel::<Task>();
        let task_rx = Arc::new(Mutex::new(task_rx));
        let (result_tx, results) = mpsc::channel(1024);
        for i in 0..threads.max(1) {
            let task_rx = task_rx.clone();
            let result_tx = result_tx.clone();
            std::thread::Builder::new()
                .name(format!("piswarm-compute-{i}"))
                .spawn(move || loop {
                    // The lock is held only while waiting for the next task.
                    let next = match task_rx.lock() {
                        Ok(rx) => rx.recv(),
                        Err(_) => return,
                    };
                    let Ok(task) = next else { return };
                    let result = compute(task.id, task.a, task.b);
                    if result_tx
                        .blocking_send(Computed {
                            epoch: task.epoch,
                            result,
                        })
                        .is_err()
                    {
                        return;
                    }
                })
                .expect("spawning a compute thread");
        }
        Pool {
            tasks: task_tx,
            results,
            unacked: std::collections::BTreeMap::new(),
        }
    }
}

/// Computes one interval: the even and odd sums and the π partial.
pub fn compute(id: u64, a: u64, b: u64) -> WorkResult {
    let start = Instant::now();
    // The server only hands out intervals inside the supported range; a hostile server that does
    // not gets a NaN, which it will reject.
    let pi = kernel::pi_partial(a, b).unwrap_or(f64::NAN);
    WorkResult {
        id: Dec(id),
        a: Dec(a),
        b: Dec(b),
        even_sum: Dec(sums::even_sum(a, b)),
        odd_sum: Dec(sums::odd_sum(a, b)),
        pi,
        duration_s: start.elapsed().as_secs_f64(),
        resend: false,
    }
}

/// Runs a worker until the coordinator says there is no more work (Ok), `shutdown` is cancelled
/// (Ok), or it fails for good.
pub async fn run_worker(
    config: WorkerConfig,
    shutdown: CancellationToken,
) -> Result<WorkerSummary, WorkerError> {
    let mut pool = Pool::new(if config.once { 1 } else { config.threads });
    let mut summary = WorkerSummary::default();
    let give_up_at = config.retry_for.map(|d| Instant::now() + d);
    let mut backoff = Duration::from_millis(100);
    let mut epoch = 0;
    loop {
        epoch += 1;
        let outcome = tokio::select! {
            _ = shutdown.cancelled() => return Ok(summary),
            r = session(&config, &mut pool, epoch, &mut summary, &shutdown) => r,
        };
        match outcome {
            Ok(()) => return Ok(summary),
            Err(e)
                if e.is_transient() && give_up_at.is_some_and(|t| Instant::now() + backoff < t) =>
            {
                tracing::warn!("{e}; retrying in {backoff:?}");
                tokio::select! {
                    _ = shutdown.cancelled() => return Ok(summary),
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
            Err(e) => return Err(e),
        }
    }
}

async fn session(
    config: &WorkerConfig,
    pool: &mut Pool,
    epoch: u64,
    summary: &mut WorkerSummary,
    shutdown: &CancellationToken,
) -> Result<(), WorkerError> {
    let addr = config.connect.clone();
    let connect_err = |source| WorkerError::Connect {
        addr: addr.clone(),
        source,
    };
    let stream = match timeout(Duration::from_secs(10), TcpStream::connect(&config.connect)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return Err(connect_err(e)),
        Err(_) => {
            return Err(connect_err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "connection timed out",
            )))
        }
    };
    let _ = stream.set_nodelay(true);
    type Read = Box<dyn AsyncRead + Unpin + Send>;
    type Write = Box<dyn AsyncWrite + Unpin + Send>;
    let (read, mut write): (Read, Write) = match &config.tls {
        None => {
            let (read, write) = stream.into_split();
            (Box::new(read), Box::new(write))
        }
        Some(tls) => {
            let tls_error = |reason: String, transient: bool| WorkerError::Tls {
                addr: addr.clone(),
                reason,
                transient,
            };
            let name = crate::net::tls::server_name(&config.connect, config.tls_server_name.as_deref())
                .map_err(|reason| tls_error(reason, false))?;
            match timeout(Duration::from_secs(10), tls.connect(name, stream)).await {
                Ok(Ok(stream)) => {
                    let (read, write) = tokio::io::split(stream);
                    (Box::new(read), Box::new(write))
                }
                Ok(Err(e)) => {
                    let cut = !matches!(e.get_ref(), Some(i) if i.is::<rustls::Error>());
                    return Err(tls_error(tls_failure(&e), cut));
                }
                Err(_) => return Err(tls_error("the TLS handshake timed out".into(), true)),
            }
        }
    };
    let mut reader = BufReader::with_capacity(16 * 1024, read);
    let (mut line, mut complete) = (Vec::new(), false);
    let lost = || WorkerError::Lost { addr: addr.clone() };

    let mut out = Vec::new();
    let hello = ClientMessage::Hello {
        version: PROTOCOL_VERSION,
        worker: config.name.clone(),
        token: config.token.clone(),
    };
    wire::encode(&hello, &mut out);
    write.write_all(&out).await.map_err(|_| lost())?;
    out.clear();

    let welcome = match timeout(
        Duration::from_secs(30),
        read_line(&mut reader, &mut line, &mut complete, MAX_LINE),
    )
    .await
    {
        Ok(Ok(true)) => {
            wire::decode_server(&line).map_err(|e| WorkerError::Protocol(e.message))?
        }
        _ => return Err(lost()),
    };
    let (max_prefetch, heartbeat) = match welcome {
        ServerMessage::Welcome {
            max_prefetch,
            heartbeat_s,
            ..
        } => (max_prefetch, heartbeat_s),
        ServerMessage::Error { code, message, .. } => {
            return Err(WorkerError::Refused { code, message })
        }
        other => {
            return Err(WorkerError::Protocol(format!(
                "expected welcome, got {other:?}"
            )))
        }
    };
    let prefetch = if config.once {
        1
    } else {
        config
            .prefetch
            .unwrap_or(2 * config.threads.max(1) as u32)
            .clamp(1, max_prefetch.max(1))
    };
    wire::encode(&ClientMessage::Request { count: prefetch }, &mut out);
    // Work finished on an earlier connection and never acknowledged.
    for result in pool.unacked.values() {
        let resent = WorkResult {
            resend: true,
            ..result.clone()
        };
        wire::encode(&ClientMessage::Result(resent), &mut out);
    }
    write.write_all(&out).await.map_err(|_| lost())?;
    out.clear();

    let heartbeat = Duration::from_secs_f64((heartbeat / 2.0).clamp(0.5, 60.0));
    let mut ticker = tokio::time::interval(heartbeat);
    ticker.tick().await;
    let mut reported = 0u64;
    let mut awaiting_ack = 0u64;
    let result = loop {
        tokio::select! {
            r = read_line(&mut reader, &mut line, &mut complete, MAX_LINE) => {
                match r {
                    Ok(true) => {}
                    _ => break Err(lost()),
                }
                let msg = match wire::decode_server(&line) {
                    Ok(m) => m,
                    Err(e) => break Err(WorkerError::Protocol(e.message)),
                };
                match msg {
                    ServerMessage::Assign { id, a, b, .. } => {
                        let task = Task { epoch, id: id.0, a: a.0, b: b.0 };
                        if pool.tasks.send(task).is_err() {
                            break Err(WorkerError::Protocol("compute threads stopped".into()));
                        }
                    }
                    ServerMessage::Ack { id, status } => {
                        pool.unacked.remove(&id.0);
                        awaiting_ack = awaiting_ack.saturating_sub(1);
                        match status {
                            wire::AckStatus::Accepted => summary.accepted += 1,
                            wire::AckStatus::Duplicate => summary.duplicates += 1,
                        }
                        if config.once && reported >= 1 && awaiting_ack == 0 {
                            break Ok(());
                        }
                    }
                    ServerMessage::Done { reason } => {
                        tracing::info!("no more work ({})", match reason { DoneReason::JobComplete => "job complete", DoneReason::ServerStopping => "server stopping" });
                        break Ok(());
                    }
                    ServerMessage::Error { code, message, id } => {
                        summary.errors += 1;
                        tracing::warn!(?code, interval = ?id.map(|i| i.0), "server error: {message}");
                        if matches!(code, ErrorCode::Refused | ErrorCode::Unauthorized | ErrorCode::UnsupportedVersion | ErrorCode::TooManyConnections | ErrorCode::IdleTimeout | ErrorCode::LineTooLong | ErrorCode::TlsRequired) {
                            break Err(WorkerError::Refused { code, message });
                        }
                        if let Some(refused) = id {
                            pool.unacked.remove(&refused.0);
                            awaiting_ack = awaiting_ack.saturating_sub(1);
                            if config.once { break Err(WorkerError::Refused { code, message }); }
                        }
                    }
                    ServerMessage::Welcome { .. } => {}
                }
            }
            computed = pool.results.recv() => {
                let mut next = computed;
                let mut fresh = 0;
                while let Some(c) = next {
                    summary.terms += c.result.b.0 - c.result.a.0 + 1;
                    // A result of an earlier connection's assignment is sent as a resend.
                    let result = WorkResult { resend: c.epoch != epoch, ..c.result };
                    pool.unacked.insert(result.id.0, result.clone());
                    wire::encode(&ClientMessage::Result(result), &mut out);
                    if c.epoch == epoch {
                        fresh += 1;
                    }
                    next = pool.results.try_recv().ok();
                }
                if fresh > 0 && !config.once {
                    wire::encode(&ClientMessage::Request { count: fresh }, &mut out);
                }
                reported += fresh as u64;
                awaiting_ack += fresh as u64;
                if write.write_all(&out).await.is_err() { break Err(lost()); }
                out.clear();
            }
            _ = ticker.tick() => {
                wire::encode(&ClientMessage::Heartbeat {}, &mut out);
                if write.write_all(&out).await.is_err() { break Err(lost()); }
                out.clear();
            }
            _ = shutdown.cancelled() => break Ok(()),
        }
    };
    if result.is_ok() {
        out.clear();
        wire::encode(&ClientMessage::Bye {}, &mut out);
        let _ = timeout(Duration::from_secs(1), write.write_all(&out)).await;
        let _ = write.shutdown().await;
    }
    result
}
