//! `piswarm bench`: the measurements behind docs/performance.md, runnable by anyone.
//!
//! * `kernel`: π terms per second on every core, with the instruction set in use.
//! * `coordinator`: results per second accepted, verified, aggregated and made durable (SQLite
//!   store on disk, as `serve` uses it) by a real coordinator, fed by many lightweight clients over
//!   loopback TCP.
//! * `connections`: resident memory of a `piswarm serve` process holding N idle, handshaken
//!   connections.

use crate::client::{ClientError, Connection, Hello};
use crate::coordinator::CoreConfig;
use crate::job::Job;
use crate::maths::kernel::{self, HotLoop, Isa, Kernel};
use crate::net::{self, Listeners, ServerConfig};
use crate::node;
use crate::store::{Location, Store};
use crate::wire::{AckStatus, ClientMessage, ServerMessage};
use crate::worker;
use serde::Serialize;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The processor's model name, as Linux reports it (`/proc/cpuinfo`), or "unknown".
pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}

#[derive(Debug, Clone, Serialize)]
pub struct KernelReport {
    pub cpu: String,
    /// The kernel of new runs ([`Kernel::CURRENT`]), whose rate the next two fields give.
    pub kernel: &'static str,
    pub terms_per_s_per_core: f64,
    pub threads: usize,
    pub terms_per_s: f64,
    pub isa: &'static str,
    /// Every kernel's rate per core, measured the same way in the same run.
    pub kernels: Vec<KernelRate>,
    /// What bounds the oct kernel on this CPU: "divider" or "adds and multiplies".
    pub bound: &'static str,
    /// The probe behind `bound`, on one thread: seconds for the same rounds of the oct loop, of
    /// its arithmetic without the division, and of its divisions alone.
    pub probe: BoundProbe,
}

#[derive(Debug, Clone, Serialize)]
pub struct KernelRate {
    pub kernel: &'static str,
    pub terms_per_s_per_core: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct BoundProbe {
    /// Terms of each timed loop (2^29).
    pub terms: u64,
    pub oct_s: f64,
    /// The quad loop over as many terms, for comparison.
    pub quad_s: f64,
    pub without_division_s: f64,
    pub divisions_only_s: f64,
}

/// Runs each kernel on `threads` threads for about `seconds` and reports the rates, then probes
/// what bounds the oct loop.
pub fn kernel(seconds: f64, threads: usize) -> KernelReport {
    let isa = Isa::detect();
    let threads = threads.max(1);
    let kernels: Vec<KernelRate> = Kernel::ALL
        .iter()
        .rev()
        .map(|&k| KernelRate {
            kernel: k.name(),
            terms_per_s_per_core: kernel_rate(k, isa, seconds, threads) / threads as f64,
        })
        .collect();
    let current = kernels
        .iter()
        .find(|r| r.kernel == Kernel::CURRENT.name())
        .map_or(0.0, |r| r.terms_per_s_per_core);
    let probe = bound_probe(isa);
    KernelReport {
        cpu: cpu_model(),
        kernel: Kernel::CURRENT.name(),
        terms_per_s_per_core: current,
        threads,
        terms_per_s: current * threads as f64,
        isa: isa.name(),
        kernels,
        bound: if probe.divisions_only_s >= probe.without_division_s {
            "divider"
        } else {
            "adds and multiplies"
        },
        probe,
    }
}

/// Terms per second of the current kernel on `threads` threads for about `seconds`.
pub fn current_kernel_rate(seconds: f64, threads: usize) -> f64 {
    kernel_rate(Kernel::CURRENT, Isa::detect(), seconds, threads.max(1))
}

/// Terms per second of `kernel` on `threads` threads for about `seconds`.
fn kernel_rate(kernel: Kernel, isa: Isa, seconds: f64, threads: usize) -> f64 {
    const BLOCK: u64 = 1 << 26;
    let stop = Arc::new(AtomicBool::new(false));
    let terms = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let (stop, terms) = (stop.clone(), terms.clone());
            std::thread::spawn(move || {
                let mut a = (t as u64) << 40;
                let mut sink = 0.0;
                while !stop.load(Ordering::Relaxed) {
                    sink += kernel.pi_partial_with(isa, a, a + BLOCK - 1);
                    a += BLOCK;
                    terms.fetch_add(BLOCK, Ordering::Relaxed);
                }
                std::hint::black_box(sink);
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs_f64(seconds));
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        let _ = h.join();
    }
    terms.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64()
}

/// Times the same rounds of the oct loop, of its arithmetic alone and of its divisions alone
/// (best of three each, one thread): the slower half is what bounds the whole.
fn bound_probe(isa: Isa) -> BoundProbe {
    const ROUNDS: u64 = 1 << 21; // 2^21 rounds × 32 lanes × 8 terms = 2^29 terms
    let time = |hot: HotLoop| {
        let rounds = if hot == HotLoop::Quad {
            2 * ROUNDS
        } else {
            ROUNDS
        };
        (0..3)
            .map(|_| {
                let t = Instant::now();
                std::hint::black_box(kernel::run_hot_loop(hot, isa, 1.0, rounds));
                t.elapsed().as_secs_f64()
            })
            .fold(f64::INFINITY, f64::min)
    };
    BoundProbe {
        terms: ROUNDS * 8 * kernel::LANES as u64,
        oct_s: time(HotLoop::Oct),
        quad_s: time(HotLoop::Quad),
        without_division_s: time(HotLoop::OctWithoutDivision),
        divisions_only_s: time(HotLoop::DivisionsOnly),
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct CoordinatorReport {
    /// Results acknowledged per second: verified, aggregated and committed to the store.
    pub results_per_s: f64,
    pub clients: usize,
    pub chunk: u64,
    /// Results acknowledged during the measurement.
    pub results: u64,
    pub seconds: f64,
    /// Results accepted by the coordinator per second (counted before they are durable; equal to
    /// `results_per_s` up to the store's bounded queue).
    pub accepted_per_s: f64,
    /// Where the results were made durable.
    pub store: String,
}

/// A real coordinator and TCP server on loopback, with a SQLite store in a temporary file (WAL,
/// synchronous=FULL, group commits: what `serve` uses), fed by `clients` protocol clients that
/// compute each interval (sums and π) and report it at once, each keeping `prefetch` assignments
/// in hand. Results are counted when their acknowledgement arrives, which the coordinator sends
/// only once the result is committed.
pub async fn coordinator(
    clients: usize,
    chunk: u64,
    seconds: f64,
    prefetch: u32,
) -> anyhow::Result<CoordinatorReport> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let job = Job::new(None, Some(chunk))?;
    let dir = tempdir_path();
    std::fs::create_dir_all(&dir)?;
    let db = dir.join("bench.db");
    let store = Store::open(&Location::File(db.clone()))?;
    let run = store.create_run(job)?;
    let mut config = CoreConfig::new(job);
    config.max_prefetch = prefetch.max(1);
    let running = node::start_run(
        store,
        run,
        node::StartOptions {
            config,
            print_results: false,
            path: Some(db.clone()),
            min_free_disk: 0,
            on_commit: None,
        },
    )
    .await?;
    let handle = running.handle.clone();
    let shutdown = CancellationToken::new();
    let tracker = TaskTracker::new();
    tokio::spawn(net::serve(
        Listeners {
            v1: listener,
            legacy: None,
        },
        handle.clone(),
        ServerConfig::default(),
        shutdown.clone(),
        tracker.clone(),
    ));
    let client_stop = CancellationToken::new();
    let acked = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (stop, acked) = (client_stop.clone(), acked.clone());
        tasks.push(tokio::spawn(light_client(addr, prefetch, stop, acked)));
    }
    let snap = handle.snapshot();
    // Warm up, then measure.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (a0, d0, t0) = (
        acked.load(Ordering::Relaxed),
        snap.borrow().totals.intervals_done,
        Instant::now(),
    );
    tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
    let (a1, d1, t1) = (
        acked.load(Ordering::Relaxed),
        snap.borrow().totals.intervals_done,
        Instant::now(),
    );
    client_stop.cancel();
    for t in tasks {
        let _ = t.await;
    }
    shutdown.cancel();
    let _ = handle.drain().await;
    drop(handle);
    drop(snap);
    running.finish().await;
    let _ = std::fs::remove_dir_all(&dir);
    let elapsed = (t1 - t0).as_secs_f64();
    Ok(CoordinatorReport {
        results_per_s: (a1 - a0) as f64 / elapsed,
        clients,
        chunk,
        results: a1 - a0,
        seconds: elapsed,
        accepted_per_s: (d1 - d0) as f64 / elapsed,
        store: format!("SQLite file in {}", std::env::temp_dir().display()),
    })
}

/// A minimal in-process client: one task, computing inline (intervals of the bench are short).
async fn light_client(
    addr: std::net::SocketAddr,
    prefetch: u32,
    stop: CancellationToken,
    acked: Arc<AtomicU64>,
) -> anyhow::Result<()> {
    let mut conn = Connection::connect(&addr.to_string(), None).await?;
    conn.queue(&ClientMessage::Request { count: prefetch });
    let kernel = conn.handshake(Hello::new("bench")).await?.kernel;
    loop {
        let mut message = tokio::select! {
            _ = stop.cancelled() => break,
            r = conn.recv() => match r {
                Ok(m) => m,
                Err(ClientError::Closed) => break,
                Err(e) => return Err(e.into()),
            },
        };
        let mut fresh = 0;
        loop {
            match message {
                // A second welcome changes nothing: the run's kernel came with the first.
                ServerMessage::Welcome { .. } => {}
                ServerMessage::Assign { id, a, b, .. } => {
                    conn.queue(&ClientMessage::Result(worker::compute_with(
                        kernel, id.0, a.0, b.0,
                    )));
                    fresh += 1;
                }
                ServerMessage::Ack {
                    status: AckStatus::Accepted,
                    ..
                } => {
                    acked.fetch_add(1, Ordering::Relaxed);
                }
                // A backup copy's result that came second: nothing counted, nothing wrong.
                ServerMessage::Ack {
                    status: AckStatus::Duplicate,
                    ..
                } => {}
                // The bench's clients send only well-formed results: an error is the bench's
                // failure, not something to measure through.
                ServerMessage::Error { code, message, id } => {
                    anyhow::bail!("the server answered {code:?} (interval {id:?}): {message}")
                }
                ServerMessage::Done { .. } => return Ok(()),
            }
            // Answer everything already buffered in one write.
            match conn.recv_buffered().await? {
                Some(next) => message = next,
                None => break,
            }
        }
        if fresh > 0 {
            conn.queue(&ClientMessage::Request { count: fresh });
        }
        conn.flush().await?;
    }
    Ok(())
}

#[derive(Debug, Clone, Serialize)]
pub struct ConnectionsReport {
    pub connections: usize,
    pub rss_bytes: u64,
    pub bytes_per_connection: f64,
    /// RSS of the idle server before the connections.
    pub baseline_rss_bytes: u64,
    /// CPU used by the server while the connections wait, as a percentage of one core.
    pub idle_cpu_percent: f64,
}

/// Starts `piswarm serve` as a child process, opens `count` connections that complete the
/// handshake and then wait, and reads the server's resident memory from /proc.
pub async fn connections(count: usize) -> anyhow::Result<ConnectionsReport> {
    use tokio::io::AsyncBufReadExt;
    let exe = std::env::current_exe()?;
    let dir = tempdir_path();
    std::fs::create_dir_all(&dir)?;
    let mut child = tokio::process::Command::new(exe)
        .args([
            "serve",
            "--no-http",
            "--quiet",
            "--listen",
            "127.0.0.1:0",
            "--idle-timeout",
            "10m",
            "--max-connections",
        ])
        .arg((count + 16).to_string())
        .arg("--out")
        .arg(&dir)
        .arg("--db")
        .arg(dir.join("piswarm.db"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let pid = child
        .id()
        .ok_or_else(|| anyhow::anyhow!("the server exited at once"))?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| anyhow::anyhow!("no stdout"))?;
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let first = lines.next_line().await?.unwrap_or_default();
    let addr: std::net::SocketAddr = first
        .split("listening on ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .ok_or_else(|| anyhow::anyhow!("unexpected first line from the server: {first}"))?
        .parse()?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let baseline = rss_bytes(pid)?;
    raise_fd_limit();
    let mut held = Vec::with_capacity(count);
    let addr = addr.to_string();
    for chunk_start in (0..count).step_by(500) {
        let mut batch = Vec::new();
        for _ in chunk_start..(chunk_start + 500).min(count) {
            let addr = addr.clone();
            batch.push(tokio::spawn(async move {
                let mut conn = Connection::connect(&addr, None).await?;
                conn.handshake(Hello::new("idle")).await?;
                Ok::<_, anyhow::Error>(conn)
            }));
        }
        for b in batch {
            held.push(b.await??);
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let cpu0 = cpu_ticks(pid)?;
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle_cpu_percent =
        (cpu_ticks(pid)? - cpu0) as f64 / clock_ticks_per_s() / t0.elapsed().as_secs_f64() * 100.0;
    let rss = rss_bytes(pid)?;
    drop(held);
    let _ = child.kill().await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(ConnectionsReport {
        connections: count,
        rss_bytes: rss,
        bytes_per_connection: rss.saturating_sub(baseline) as f64 / count.max(1) as f64,
        baseline_rss_bytes: baseline,
        idle_cpu_percent,
    })
}

fn tempdir_path() -> std::path::PathBuf {
    std::env::temp_dir().join(format!("piswarm-bench-{}", std::process::id()))
}

fn rss_bytes(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no VmRSS in /proc/{pid}/status"))?;
    Ok(kb * 1024)
}

fn cpu_ticks(pid: u32) -> anyhow::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name (which is in parentheses and may contain spaces).
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11).and_then(|v| v.parse().ok()).unwrap_or(0);
    let stime: u64 = fields.get(12).and_then(|v| v.parse().ok()).unwrap_or(0);
    Ok(utime + stime)
}

fn clock_ticks_per_s() -> f64 {
    100.0
}

/// Raises this process's soft file-descriptor limit to its hard limit (best effort); see
/// [`crate::net::limits::raise_fd_limit`].
pub fn raise_fd_limit() -> u64 {
    crate::net::limits::raise_fd_limit().unwrap_or(0)
}
