//! Shared helpers for the integration tests: a real coordinator on a loopback port, raw protocol
//! clients, and independent oracles.

use piswarm::coordinator::{self, CoordinatorHandle, CoreConfig};
use piswarm::job::Job;
use piswarm::net::{self, Listeners, ServerConfig};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub struct TestServer {
    pub addr: SocketAddr,
    pub coordinator: CoordinatorHandle,
    pub shutdown: CancellationToken,
    pub tracker: TaskTracker,
}

impl TestServer {
    pub async fn start(job: Job) -> TestServer {
        Self::start_with(CoreConfig::new(job), ServerConfig::default()).await
    }

    pub async fn start_with(config: CoreConfig, server_config: ServerConfig) -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (coordinator, _task) = coordinator::spawn(config);
        let shutdown = CancellationToken::new();
        let tracker = TaskTracker::new();
        tokio::spawn(net::serve(
            Listeners {
                v1: listener,
                legacy: None,
            },
            coordinator.clone(),
            server_config,
            shutdown.clone(),
            tracker.clone(),
        ));
        TestServer {
            addr,
            coordinator,
            shutdown,
            tracker,
        }
    }

    pub async fn stop(&self) {
        self.shutdown.cancel();
        self.coordinator.drain().await.unwrap();
        self.tracker.close();
        tokio::time::timeout(Duration::from_secs(10), self.tracker.wait())
            .await
            .unwrap();
    }
}

/// A hand-driven protocol client, as one would type into `nc`.
pub struct RawClient {
    pub reader: BufReader<OwnedReadHalf>,
    pub writer: OwnedWriteHalf,
}

impl RawClient {
    pub async fn connect(addr: SocketAddr) -> RawClient {
        let stream = TcpStream::connect(addr).await.unwrap();
        let (r, w) = stream.into_split();
        RawClient {
            reader: BufReader::new(r),
            writer: w,
        }
    }

    pub async fn send(&mut self, line: &str) {
        self.writer.write_all(line.as_bytes()).await.unwrap();
        self.writer.write_all(b"\n").await.unwrap();
    }

    /// The next line as JSON, or None at end of stream. Fails the test after 10 s.
    pub async fn recv(&mut self) -> Option<serde_json::Value> {
        let mut line = String::new();
        let n = tokio::time::timeout(Duration::from_secs(10), self.reader.read_line(&mut line))
            .await
            .expect("no answer within 10 s")
            .ok()?;
        if n == 0 {
            return None;
        }
        Some(
            serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("server sent invalid JSON {line:?}: {e}")),
        )
    }

    pub async fn hello(&mut self, name: &str) -> serde_json::Value {
        self.send(&format!(
            r#"{{"type":"hello","version":1,"worker":"{name}"}}"#
        ))
        .await;
        self.recv().await.unwrap()
    }
}

/// Sum of the even integers of [a, b], by Gauss's formula on the halves (independent of the library).
pub fn evens(a: u64, b: u64) -> u128 {
    // Evens in [0, m]: 2·(0 + 1 + ... + ⌊m/2⌋).
    let upto = |m: u64| -> u128 {
        let k = u128::from(m / 2);
        k * (k + 1)
    };
    upto(b) - if a == 0 { 0 } else { upto(a - 1) }
}

/// Sum of the odd integers of [a, b].
pub fn odds(a: u64, b: u64) -> u128 {
    let all = |m: u64| -> u128 { u128::from(m) * (u128::from(m) + 1) / 2 };
    let total = all(b) - if a == 0 { 0 } else { all(a - 1) };
    total - evens(a, b)
}

/// `4·Σₙ₌₀ᴺ⁻¹ (−1)ⁿ/(2n+1)` for large N from π and the tail's Euler-number expansion, written out
/// here independently of the library: π − 2·Σₖ E₂ₖ/(2N)^(2k+1) (N even), accurate to ~5e-16.
pub fn prefix_pi(n: u64) -> f64 {
    assert!(n >= 100_000 && n % 2 == 0);
    let x = 2.0 * n as f64;
    let tail = 2.0 * (1.0 / x - 1.0 / x.powi(3) + 5.0 / x.powi(5));
    // π = 3.141592653589793 + 1.2246467991473532e-16
    (std::f64::consts::PI - tail) + 1.2246467991473532e-16
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_piswarm")
}

/// Log lines written during a test.
#[derive(Clone, Default)]
pub struct LogBuffer(pub Arc<Mutex<Vec<u8>>>);

impl LogBuffer {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl std::io::Write for LogBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A runtime (two worker threads) whose threads log into `log` at `filter`, and a guard that
/// does the same for the calling thread. Panics on those threads are logged too ("panicked: …"),
/// so a test can check that none happened. Other tests of this binary keep their own logging.
pub fn logging_runtime(
    log: &LogBuffer,
    filter: &str,
) -> (tokio::runtime::Runtime, tracing::dispatcher::DefaultGuard) {
    log_panics();
    let sink = log.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_writer(move || sink.clone())
        .finish();
    let dispatch = tracing::Dispatch::new(subscriber);
    let on_start = dispatch.clone();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .on_thread_start(move || {
            // Kept for the thread's life.
            std::mem::forget(tracing::dispatcher::set_default(&on_start));
        })
        .build()
        .unwrap();
    let guard = tracing::dispatcher::set_default(&dispatch);
    (runtime, guard)
}

/// Sends every panic's message to the panicking thread's log as well as to stderr.
pub fn log_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            tracing::error!("panicked: {info}");
            previous(info);
        }));
    });
}

/// A child process, killed (and reaped) when dropped: a test never leaves one behind.
pub struct Process(pub std::process::Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Process {
    /// Waits for the process to exit (at most `deadline`); its exit code.
    pub fn wait(&mut self, deadline: Duration) -> Option<i32> {
        let end = std::time::Instant::now() + deadline;
        loop {
            if let Some(status) = self.0.try_wait().unwrap() {
                return status.code();
            }
            assert!(
                std::time::Instant::now() < end,
                "the process did not exit within {deadline:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL, and wait for it.
    pub fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A loopback port nobody listens on (at the time of asking).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Runs `piswarm ARGS` with stdout and stderr into `log`.
pub fn spawn_piswarm(args: &[&str], log: &std::path::Path) -> Process {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    let child = std::process::Command::new(bin())
        .args(args)
        .env("PISWARM_LOG", "info")
        .stdout(file.try_clone().unwrap())
        .stderr(file)
        .spawn()
        .unwrap();
    Process(child)
}

/// Polls `condition` until it holds; fails the test after `deadline`.
pub fn wait_until(what: &str, deadline: Duration, mut condition: impl FnMut() -> bool) {
    let end = std::time::Instant::now() + deadline;
    while !condition() {
        assert!(
            std::time::Instant::now() < end,
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until something accepts connections on the loopback port.
pub fn wait_for_port(port: u16) {
    wait_until(&format!("port {port}"), Duration::from_secs(30), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
}

/// Results stored for run `run` in the store at `db` (read-only; 0 if it cannot be read yet).
pub fn stored_results(db: &std::path::Path, run: i64) -> u64 {
    match piswarm::store::Store::open_read_only(db) {
        Ok(store) => store.count_results(run).map_or(0, |c| c.0),
        Err(_) => 0,
    }
}

/// `piswarm run --json` for a job (two workers): the result a distributed run of the same job
/// must equal bit for bit.
pub fn run_json(terms: &str, chunk: &str) -> serde_json::Value {
    let out = std::process::Command::new(bin())
        .args([
            "run",
            "--terms",
            terms,
            "--chunk",
            chunk,
            "--workers",
            "2",
            "--json",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    serde_json::from_slice(&out.stdout).unwrap()
}
