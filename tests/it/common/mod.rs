//! Shared helpers for the integration tests: a real coordinator on a loopback port, raw protocol
//! clients, and independent oracles.

use piswarm::client::{ClientError, Connection, Hello};
use piswarm::coordinator::{self, CoordinatorHandle, CoreConfig, RunId};
use piswarm::job::Job;
use piswarm::net::{self, Listeners, ServerConfig};
use piswarm::wire::ServerMessage;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
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

/// A hand-driven protocol client: the library's [`Connection`] (connecting, the frame limit, a
/// deadline of 10 s per read, decoding), with lines typed as into `nc` and the server's messages
/// seen as the JSON they travelled as.
pub struct RawClient {
    pub conn: Connection,
}

impl RawClient {
    pub async fn connect(addr: SocketAddr) -> RawClient {
        let mut conn = Connection::connect(&addr.to_string(), None).await.unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(10)));
        RawClient { conn }
    }

    pub async fn send(&mut self, line: &str) {
        self.conn
            .send_raw(format!("{line}\n").as_bytes())
            .await
            .unwrap();
    }

    /// The next message, or None at the end of the connection. Fails the test after the read
    /// deadline (10 s unless changed), or if the server sends a line that is not a message.
    pub async fn recv_message(&mut self) -> Option<ServerMessage> {
        match self.conn.recv().await {
            Ok(m) => Some(m),
            Err(ClientError::Closed | ClientError::Read(_)) => None,
            Err(ClientError::Timeout(limit)) => panic!("no answer within {limit:?}"),
            Err(e) => panic!("the server sent a line that is not a message: {e}"),
        }
    }

    /// The next message, as the JSON line it travelled as; None at the end of the connection
    /// (as [`Self::recv_message`]).
    pub async fn recv(&mut self) -> Option<serde_json::Value> {
        self.recv_message().await?;
        Some(self.line_json())
    }

    /// The handshake: hello, and the welcome as the JSON line it travelled as (a refusal fails
    /// the test).
    pub async fn hello(&mut self, name: &str) -> serde_json::Value {
        if let Err(e) = self.conn.handshake(Hello::new(name)).await {
            panic!("{name}: no welcome: {e}");
        }
        self.line_json()
    }

    fn line_json(&self) -> serde_json::Value {
        serde_json::from_slice(self.conn.line()).unwrap()
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
pub fn stored_results(db: &std::path::Path, run: u64) -> u64 {
    match piswarm::store::Store::open_read_only(db) {
        Ok(store) => store.count_results(RunId(run)).map_or(0, |c| c.0),
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
