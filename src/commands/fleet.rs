//! `piswarm bench fleet`: a fleet of worker sessions joining a real `piswarm serve` at once, the
//! way a Kubernetes Job or a Slurm array starts hundreds of workers together.
//!
//! One process plays the whole fleet: `sessions` protocol clients, started evenly over
//! `within`, each on its own TCP connection to a `piswarm serve` child process (so the server
//! is measured exactly as deployed, with its own descriptors and runtime). Each session says
//! hello, takes `intervals` intervals, computes and reports them, waits for their
//! acknowledgements, and then stays connected, like a worker waiting for work, until every
//! session of the fleet has been served (or, with `hold`, for that long); then it says bye. A session refused with
//! `too_many_connections` comes back after the worker's own jittered backoff
//! (`worker::retry::Reconnect`), as `piswarm worker --retry-for` does.
//!
//! The report separates what the configured limits explain (refusals beyond
//! `--max-connections`) from errors (anything else), and reads the server's own counts from its
//! `/metrics`.

use super::child::ServeChild;
use crate::client::{ClientError, Connection, Hello};
use crate::wire::{AckStatus, ClientMessage, ErrorCode, ServerMessage};
use serde::Serialize;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// How long a session may be refused (and retry) before it counts as failed.
const SESSION_DEADLINE: Duration = Duration::from_secs(120);
/// How long one answer (welcome, assignment, acknowledgement) may take.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(60);

/// What to run.
#[derive(Debug, Clone)]
pub struct FleetOptions {
    pub sessions: usize,
    /// Sessions start evenly over this window.
    pub within: Duration,
    /// The server's `--max-connections` (default: the fleet plus a margin).
    pub max_connections: Option<usize>,
    /// Intervals each session computes.
    pub intervals: u32,
    /// How long a served session stays connected (default: until the whole fleet is served;
    /// give a duration when the fleet is larger than `max_connections`, so that sessions leave
    /// and refused ones get their turn).
    pub hold: Option<Duration>,
}

/// What happened.
#[derive(Debug, Clone, Serialize)]
pub struct FleetReport {
    pub sessions: usize,
    /// The window the sessions started in.
    pub within_s: f64,
    pub max_connections: usize,
    /// Sessions welcomed whose every result was acknowledged.
    pub served: usize,
    /// Sessions that failed for a reason other than the connection limit.
    pub failed: usize,
    /// `too_many_connections` refusals (each followed by a jittered retry).
    pub refusals: u64,
    /// The first few failures, as sentences.
    pub errors: Vec<String>,
    /// From the first session's start to the last session's welcome.
    pub all_joined_s: f64,
    /// Sessions welcomed per second over that time.
    pub joins_per_s: f64,
    /// From a session's first connection attempt to its welcome (retries included).
    pub join_p50_ms: f64,
    pub join_p99_ms: f64,
    pub join_max_ms: f64,
    /// The most sessions connected at once (client side).
    pub peak_connected: usize,
    /// Results acknowledged as accepted (client side).
    pub results_accepted: u64,
    /// The server's own counts, from its /metrics after the fleet was served.
    pub server: ServerCounts,
}

/// Counts read from the server's `/metrics`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ServerCounts {
    pub results_accepted: u64,
    pub results_duplicate: u64,
    pub results_rejected: u64,
    pub connections_refused: u64,
    /// Sessions the coordinator saw.
    pub sessions: u64,
    pub resident_memory_bytes: u64,
}

/// How one session ended.
enum Outcome {
    Served { join: Duration, accepted: u64 },
    Failed(String),
}

/// Shared counters of the fleet.
struct Tally {
    sessions: usize,
    refusals: AtomicU64,
    connected: AtomicUsize,
    peak: AtomicUsize,
    /// Sessions served or failed for good.
    settled: AtomicUsize,
    /// Cancelled once every session is settled.
    all_served: CancellationToken,
    last_welcome: Mutex<Option<Instant>>,
}

impl Tally {
    /// One more session is served or has failed for good.
    fn settle(&self) {
        if self.settled.fetch_add(1, Ordering::SeqCst) + 1 == self.sessions {
            self.all_served.cancel();
        }
    }
}

/// Runs the fleet against a `piswarm serve` child process and reports.
pub async fn fleet(options: &FleetOptions) -> anyhow::Result<FleetReport> {
    let sessions = options.sessions.max(1);
    let max_connections = options.max_connections.unwrap_or(sessions + 64);
    crate::net::limits::raise_fd_limit();
    let serve = ServeChild::spawn(
        "fleet",
        &[
            "--chunk".to_string(),
            "1000".to_string(),
            "--max-connections".to_string(),
            max_connections.to_string(),
        ],
    )
    .await?;
    let result = drive(&serve, options, sessions, max_connections).await;
    serve.stop().await;
    result
}

async fn drive(
    serve: &ServeChild,
    options: &FleetOptions,
    sessions: usize,
    max_connections: usize,
) -> anyhow::Result<FleetReport> {
    let addr = serve.addr;

    let all_served = CancellationToken::new();
    let tally = Arc::new(Tally {
        sessions,
        refusals: AtomicU64::new(0),
        connected: AtomicUsize::new(0),
        peak: AtomicUsize::new(0),
        settled: AtomicUsize::new(0),
        all_served: all_served.clone(),
        last_welcome: Mutex::new(None),
    });
    let start = Instant::now();
    let spacing = options.within.div_f64(sessions as f64);
    let mut tasks = Vec::with_capacity(sessions);
    for i in 0..sessions {
        let (tally, all_served) = (tally.clone(), all_served.clone());
        let begin = start + spacing.mul_f64(i as f64);
        let (intervals, hold) = (options.intervals.max(1), options.hold);
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep_until(begin.into()).await;
            let outcome = session(addr, i, intervals, hold, &tally, &all_served).await;
            if matches!(outcome, Outcome::Failed(_)) {
                tally.settle();
            }
            outcome
        }));
    }
    let (mut joins, mut failed, mut errors, mut accepted) = (Vec::new(), 0, Vec::new(), 0);
    for task in tasks {
        match task.await {
            Ok(Outcome::Served { join, accepted: a }) => {
                joins.push(join);
                accepted += a;
            }
            Ok(Outcome::Failed(why)) => {
                failed += 1;
                if errors.len() < 5 {
                    errors.push(why);
                }
            }
            Err(e) => {
                failed += 1;
                errors.push(format!("a session task failed: {e}"));
            }
        }
    }
    let last = tally.last_welcome.lock().ok().and_then(|l| *l);
    let all_joined = last.map_or(0.0, |l| l.duration_since(start).as_secs_f64());
    joins.sort();
    let quantile = |q: f64| -> f64 {
        if joins.is_empty() {
            return 0.0;
        }
        let i = ((joins.len() - 1) as f64 * q).round() as usize;
        joins[i].as_secs_f64() * 1e3
    };
    // The server's counts once they include every result the fleet saw acknowledged: they come
    // from the coordinator's snapshot, published a moment after the acks (within 5 s).
    let deadline = Instant::now() + Duration::from_secs(5);
    let server = loop {
        let counts = scrape(serve).await.unwrap_or_default();
        if counts.results_accepted >= accepted || Instant::now() >= deadline {
            break counts;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    Ok(FleetReport {
        sessions,
        within_s: options.within.as_secs_f64(),
        max_connections,
        served: joins.len(),
        failed,
        refusals: tally.refusals.load(Ordering::SeqCst),
        errors,
        all_joined_s: all_joined,
        joins_per_s: if all_joined > 0.0 {
            joins.len() as f64 / all_joined
        } else {
            0.0
        },
        join_p50_ms: quantile(0.5),
        join_p99_ms: quantile(0.99),
        join_max_ms: quantile(1.0),
        peak_connected: tally.peak.load(Ordering::SeqCst),
        results_accepted: accepted,
        server,
    })
}

/// One simulated worker: join (retrying after `too_many_connections`), compute its intervals,
/// wait for the rest of the fleet, leave.
async fn session(
    addr: SocketAddr,
    index: usize,
    intervals: u32,
    hold: Option<Duration>,
    tally: &Tally,
    all_served: &CancellationToken,
) -> Outcome {
    let first_try = Instant::now();
    // The worker's own reconnection policy (`--retry-for`), with the fleet's deadline.
    let mut reconnect =
        crate::worker::retry::Reconnect::new(Some(SESSION_DEADLINE), Duration::ZERO);
    loop {
        match attempt(addr, index, intervals, hold, tally, all_served, first_try).await {
            Attempt::Refused => {
                tally.refusals.fetch_add(1, Ordering::SeqCst);
                let jitter = f64::from(getrandom::u32().unwrap_or(u32::MAX / 2))
                    / (f64::from(u32::MAX) + 1.0);
                let Some(wait) = reconnect.next_wait(first_try.elapsed(), jitter) else {
                    return Outcome::Failed("refused for 120 s".into());
                };
                tokio::time::sleep(wait).await;
            }
            Attempt::Done(outcome) => return outcome,
        }
    }
}

enum Attempt {
    Refused,
    Done(Outcome),
}

/// Counts a connection as open while it lives.
struct Connected<'a>(&'a Tally);

impl<'a> Connected<'a> {
    fn new(tally: &'a Tally) -> Connected<'a> {
        let now = tally.connected.fetch_add(1, Ordering::SeqCst) + 1;
        tally.peak.fetch_max(now, Ordering::SeqCst);
        Connected(tally)
    }
}

impl Drop for Connected<'_> {
    fn drop(&mut self) {
        self.0.connected.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn attempt(
    addr: SocketAddr,
    index: usize,
    intervals: u32,
    hold: Option<Duration>,
    tally: &Tally,
    all_served: &CancellationToken,
    first_try: Instant,
) -> Attempt {
    let fail = |why: String| Attempt::Done(Outcome::Failed(why));
    let mut conn = match Connection::connect(&addr.to_string(), None).await {
        Ok(c) => c,
        Err(ClientError::Connect { source, .. }) => return fail(format!("connect: {source}")),
        Err(e) => return fail(format!("connect: {e}")),
    };
    let _open = Connected::new(tally);
    conn.set_read_timeout(Some(ANSWER_TIMEOUT));
    conn.queue(&ClientMessage::Request { count: intervals });
    let hello = Hello {
        agent: Some(format!("piswarm/{} fleet", env!("CARGO_PKG_VERSION"))),
        ..Hello::new(format!("fleet-{index}"))
    };
    let kernel = match conn.handshake(hello).await {
        Ok(welcome) => welcome.kernel,
        Err(ClientError::Refused {
            code: ErrorCode::TooManyConnections,
            ..
        }) => return Attempt::Refused,
        Err(e) => return fail(answer_failure(e)),
    };
    let join = first_try.elapsed();
    if let Ok(mut last) = tally.last_welcome.lock() {
        let now = Instant::now();
        *last = Some(last.map_or(now, |l| l.max(now)));
    }
    let (mut acked, mut accepted) = (0u32, 0u64);
    while acked < intervals {
        let message = match conn.recv().await {
            Ok(m) => m,
            Err(e) => return fail(answer_failure(e)),
        };
        match message {
            // A second welcome changes nothing: the run's kernel came with the first.
            ServerMessage::Welcome { .. } => {}
            ServerMessage::Assign { id, a, b, .. } => {
                let result = crate::worker::compute_with(kernel, id.0, a.0, b.0);
                match conn.send(&ClientMessage::Result(result)).await {
                    Err(ClientError::Write(e)) => return fail(format!("result: {e}")),
                    Err(e) => return fail(format!("result: {e}")),
                    Ok(()) => {}
                }
            }
            ServerMessage::Ack { status, .. } => {
                acked += 1;
                if status == AckStatus::Accepted {
                    accepted += 1;
                }
            }
            ServerMessage::Error {
                code: ErrorCode::TooManyConnections,
                ..
            } => return Attempt::Refused,
            ServerMessage::Error { code, message, .. } => {
                return fail(format!("error {code:?}: {message}"))
            }
            ServerMessage::Done { reason } => return fail(format!("done early: {reason:?}")),
        }
    }
    tally.settle();
    // Stay connected, like a worker waiting for work, until the whole fleet is served; then
    // leave. Heartbeats keep the session within the server's idle timeout meanwhile.
    let mut heartbeat = tokio::time::interval(Duration::from_secs(10));
    heartbeat.tick().await;
    let held = async {
        match hold {
            Some(d) => tokio::time::sleep(d).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(held);
    loop {
        tokio::select! {
            _ = all_served.cancelled() => break,
            _ = &mut held => break,
            _ = heartbeat.tick() => {
                let _ = conn.send(&ClientMessage::Heartbeat {}).await;
            }
        }
    }
    conn.close().await;
    Attempt::Done(Outcome::Served { join, accepted })
}

/// A session's failure to hear from the server, as the report's sentence.
fn answer_failure(e: ClientError) -> String {
    match e {
        ClientError::Closed | ClientError::Read(_) => "the server closed the connection".into(),
        ClientError::Timeout(_) => "no answer within 60 s".into(),
        ClientError::Decode(e) => format!("bad message from the server: {}", e.message),
        ClientError::Write(e) => format!("hello: {e}"),
        e @ (ClientError::Connect { .. }
        | ClientError::Tls { .. }
        | ClientError::Refused { .. }
        | ClientError::NotWelcome(_)
        | ClientError::UnknownKernel(_)) => e.to_string(),
    }
}

/// Reads the server's counts from its `/metrics` and its resident memory from /proc.
async fn scrape(serve: &ServeChild) -> anyhow::Result<ServerCounts> {
    let m = serve.scrape().await?;
    let value = |name: &str| m.value(name) as u64;
    let pid = serve.child.id();
    let rss = pid
        .and_then(|p| std::fs::read_to_string(format!("/proc/{p}/status")).ok())
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024);
    Ok(ServerCounts {
        results_accepted: value("piswarm_results_total{status=\"accepted\"}"),
        results_duplicate: value("piswarm_results_total{status=\"duplicate\"}"),
        results_rejected: value("piswarm_results_total{status=\"rejected\"}"),
        connections_refused: value("piswarm_connections_refused_total"),
        sessions: value("piswarm_sessions_total"),
        resident_memory_bytes: rss,
    })
}
