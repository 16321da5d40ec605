//! The legacy listener against clients that behave exactly like the original's Python client:
//! the header and the body of a frame written with separate sends, the header read with a single
//! `recv(256)` and the body with another single `recv` of the header's size (the original reads
//! `len(header)` bytes, whatever the header says), π summed naively in `f64`, sums in integers.
//!
//! Expected values are computed here, independently of the library: the sums from Gauss's closed
//! forms, π by Kahan summation.

use piswarm::coordinator::{self, CoordinatorHandle, CoreConfig};
use piswarm::job::Job;
use piswarm::maths::kernel::pi_partial_naive;
use piswarm::net::{self, Listeners, ServerConfig};
use piswarm::report::FinalReport;
use piswarm::worker::{run_worker, WorkerConfig};
use std::io::{BufRead, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::{Arc, Barrier};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Every test ends within this, whatever happens.
const TEST_TIMEOUT: Duration = Duration::from_secs(120);
/// A client gives up waiting for the server after this.
const CLIENT_READ_TIMEOUT: Duration = Duration::from_secs(20);
const HEADER: usize = 256;
const GOODBYE_REPLY: &[u8] = b"msg recebida corretamente";

// ---------------------------------------------------------------------------------------------
// Independent oracles
// ---------------------------------------------------------------------------------------------

/// The sums of the even and of the odd numbers of `[0, n − 1]`: with `e = ⌈n/2⌉` evens and
/// `o = ⌊n/2⌋` odds, `0 + 2 + … + 2(e−1) = e(e−1)` and `1 + 3 + … + (2o−1) = o²`.
fn gauss_sums(n: u64) -> (u128, u128) {
    let (e, o) = ((n as u128).div_ceil(2), n as u128 / 2);
    (e * e.saturating_sub(1), o * o)
}

/// `4·Σₖ₌₀ⁿ⁻¹ (−1)ᵏ/(2k+1)` by Kahan's compensated summation.
fn kahan_pi(n: u64) -> f64 {
    let (mut sum, mut carry) = (0.0f64, 0.0f64);
    for k in 0..n {
        let term = if k % 2 == 0 { 4.0 } else { -4.0 } / (2 * k + 1) as f64;
        let y = term - carry;
        let t = sum + y;
        carry = (t - sum) - y;
        sum = t;
    }
    sum
}

fn assert_exact(report: &FinalReport, terms: u64) {
    let (evens, odds) = gauss_sums(terms);
    assert_eq!(report.terms, terms);
    assert_eq!(report.even_sum.0, evens, "sum of the even numbers");
    assert_eq!(report.odd_sum.0, odds, "sum of the odd numbers");
    let reference = kahan_pi(terms);
    assert!(
        (report.pi - reference).abs() <= 1e-12,
        "π partial {} is not within 1e-12 of {reference}",
        report.pi
    );
}

// ---------------------------------------------------------------------------------------------
// The original's client
// ---------------------------------------------------------------------------------------------

/// `repr(x)` of a Python float: the shortest digits that round-trip, in fixed notation for
/// exponents from −4 to 15 and in scientific notation (`e-05`, `e+16`) otherwise.
fn python_repr(x: f64) -> String {
    if x.is_nan() {
        return "nan".into();
    }
    if x.is_infinite() {
        return if x > 0.0 { "inf" } else { "-inf" }.into();
    }
    if x == 0.0 {
        return if x.is_sign_negative() { "-0.0" } else { "0.0" }.into();
    }
    let scientific = format!("{x:e}"); // shortest round-trip digits, e.g. -8.333332798032551e-5
    let (mantissa, exponent) = scientific.split_once('e').unwrap();
    let exponent: i32 = exponent.parse().unwrap();
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => ("-", m),
        None => ("", mantissa),
    };
    let digits: String = mantissa.chars().filter(|&c| c != '.').collect();
    if !(-4..16).contains(&exponent) {
        let mantissa = if digits.len() == 1 {
            digits
        } else {
            format!("{}.{}", &digits[..1], &digits[1..])
        };
        let exp_sign = if exponent < 0 { '-' } else { '+' };
        format!("{sign}{mantissa}e{exp_sign}{:02}", exponent.abs())
    } else if exponent < 0 {
        let zeros = "0".repeat((-exponent - 1) as usize);
        format!("{sign}0.{zeros}{digits}")
    } else {
        let whole = exponent as usize + 1;
        if digits.len() > whole {
            format!("{sign}{}.{}", &digits[..whole], &digits[whole..])
        } else {
            format!("{sign}{digits}{}.0", "0".repeat(whole - digits.len()))
        }
    }
}

/// `send(msg, client)` of the original: the padded header and the body in two separate sends.
fn send(sock: &mut TcpStream, msg: &[u8]) -> std::io::Result<()> {
    let mut header = msg.len().to_string().into_bytes();
    header.resize(HEADER, b' ');
    sock.write_all(&header)?;
    sock.write_all(msg)
}

/// `receive(client)` of the original: one `recv(256)`, then one `recv` of as many bytes as that
/// returned. `None` when the server closed the connection instead.
fn receive(sock: &mut TcpStream) -> Option<String> {
    let mut header = [0u8; HEADER];
    let n = match sock.read(&mut header) {
        Ok(0) | Err(_) => return None,
        Ok(n) => n,
    };
    let mut body = vec![0u8; n];
    let m = sock.read(&mut body).ok()?;
    Some(String::from_utf8(body[..m].to_vec()).expect("the interval is UTF-8"))
}

/// `inicio = int(intervalo.split(',')[0][1:])`, `fim = int(intervalo.split(',')[1][:-1])`.
fn parse_interval(text: &str) -> (u64, u64) {
    let parts: Vec<&str> = text.split(',').collect();
    let a = parts[0][1..].trim().parse().expect("the interval's start");
    let b = parts[1][..parts[1].len() - 1]
        .trim()
        .parse()
        .expect("the interval's end");
    (a, b)
}

/// What an honest client computes for `[a, b]`.
fn honest_sums(a: u64, b: u64) -> (u128, u128, f64) {
    let (mut evens, mut odds) = (0u128, 0u128);
    for n in a..=b {
        if n % 2 == 0 {
            evens += n as u128;
        } else {
            odds += n as u128;
        }
    }
    (evens, odds, pi_partial_naive(a, b))
}

fn result_body(evens: u128, odds: u128, pi: f64) -> Vec<u8> {
    format!("[R]{evens},{odds},{}", python_repr(pi)).into_bytes()
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Behaviour {
    /// The original client: its result, then `!DESCONECTADO`; it closes without reading more.
    Original,
    /// The same, but it reads what the server sends back until the server closes.
    ReadsReply,
    /// Its result, then `!ENCERRAR` instead of the goodbye.
    ResultThenShutdown,
    /// The original's stop_server.py: takes the interval and sends `!ENCERRAR`.
    StopServer,
    /// An honest client whose frames reach the server in several TCP segments.
    Trickle,
    NonDigitHeader,
    HugeLength,
    /// Closes its sending side in the middle of the result's body.
    Truncated,
    Unparsable,
    WrongSums,
    WrongPi,
    /// Takes the interval and never answers.
    Silent,
    /// The original client as published: exact sums, but for π the trapezoidal integral
    /// ∫₀¹ 4/(1+x²) dx with 10000 steps, the same for every interval.
    Trapezoid,
}

#[derive(Debug)]
struct Outcome {
    /// The interval received; `None` if the server closed the connection instead.
    interval: Option<(u64, u64)>,
    /// What the server sent after the client's frames, until it closed the connection.
    after: Vec<u8>,
    /// Whether the server closed the connection (rather than the client giving up waiting).
    closed_by_server: bool,
}

/// Reads until the server closes the connection (or the read timeout).
fn read_to_close(sock: &mut TcpStream) -> (Vec<u8>, bool) {
    let mut after = Vec::new();
    let mut buf = [0u8; 512];
    loop {
        match sock.read(&mut buf) {
            Ok(0) => return (after, true),
            Ok(n) => after.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return (after, false)
            }
            // A reset: the server closed with bytes of ours unread.
            Err(_) => return (after, true),
        }
    }
}

fn legacy_client(addr: SocketAddr, behaviour: Behaviour) -> Outcome {
    let mut sock = TcpStream::connect(addr).expect("connect to the legacy listener");
    sock.set_read_timeout(Some(CLIENT_READ_TIMEOUT)).unwrap();
    let Some(text) = receive(&mut sock) else {
        return Outcome {
            interval: None,
            after: Vec::new(),
            closed_by_server: true,
        };
    };
    let (a, b) = parse_interval(&text);
    let (evens, odds, pi) = honest_sums(a, b);
    let honest = result_body(evens, odds, pi);
    match behaviour {
        Behaviour::Original => {
            send(&mut sock, &honest).unwrap();
            send(&mut sock, b"!DESCONECTADO").unwrap();
            return Outcome {
                interval: Some((a, b)),
                after: Vec::new(),
                closed_by_server: false,
            };
        }
        Behaviour::ReadsReply => {
            send(&mut sock, &honest).unwrap();
            send(&mut sock, b"!DESCONECTADO").unwrap();
        }
        Behaviour::ResultThenShutdown => {
            send(&mut sock, &honest).unwrap();
            send(&mut sock, b"!ENCERRAR").unwrap();
        }
        Behaviour::StopServer => send(&mut sock, b"!ENCERRAR").unwrap(),
        Behaviour::Trickle => {
            // Small pauses so that the pieces leave as separate segments; nothing waits on them.
            sock.set_nodelay(true).unwrap();
            let mut frame = honest.len().to_string().into_bytes();
            frame.resize(HEADER, b' ');
            frame.extend_from_slice(&honest);
            let mut goodbye = b"13".to_vec();
            goodbye.resize(HEADER, b' ');
            goodbye.extend_from_slice(b"!DESCONECTADO");
            frame.extend_from_slice(&goodbye);
            for piece in frame.chunks(97) {
                sock.write_all(piece).unwrap();
                std::thread::sleep(Duration::from_millis(2));
            }
        }
        Behaviour::NonDigitHeader => {
            // The server may close as soon as it sees the header: later writes may fail.
            let mut header = b"abc".to_vec();
            header.resize(HEADER, b' ');
            let _ = sock.write_all(&header);
            let _ = sock.write_all(b"hello");
        }
        Behaviour::HugeLength => {
            let mut header = b"70000".to_vec();
            header.resize(HEADER, b' ');
            sock.write_all(&header).unwrap();
        }
        Behaviour::Truncated => {
            let mut header = honest.len().to_string().into_bytes();
            header.resize(HEADER, b' ');
            sock.write_all(&header).unwrap();
            sock.write_all(&honest[..honest.len() / 2]).unwrap();
            sock.shutdown(Shutdown::Write).unwrap();
        }
        Behaviour::Unparsable => send(&mut sock, b"[R]twelve,thirteen,pi").unwrap(),
        Behaviour::WrongSums => send(&mut sock, &result_body(evens + 2, odds, pi)).unwrap(),
        Behaviour::WrongPi => {
            send(&mut sock, &result_body(evens, odds, pi * (1.0 + 1e-6))).unwrap()
        }
        Behaviour::Silent => {}
        Behaviour::Trapezoid => {
            // repr(trapezio(0, 1, 10000)) in CPython.
            send(&mut sock, &result_body(evens, odds, 3.14159265192314)).unwrap();
            send(&mut sock, b"!DESCONECTADO").unwrap();
        }
    }
    let (after, closed_by_server) = read_to_close(&mut sock);
    Outcome {
        interval: Some((a, b)),
        after,
        closed_by_server,
    }
}

async fn client(addr: SocketAddr, behaviour: Behaviour) -> Outcome {
    tokio::task::spawn_blocking(move || legacy_client(addr, behaviour))
        .await
        .expect("the client thread")
}

/// A client that takes intervals, one connection each, until the server has none left.
fn legacy_looper(addr: SocketAddr) -> u64 {
    looper(addr, Behaviour::ReadsReply)
}

/// Original clients, one after another, until the job is done; how many intervals they served.
fn looper(addr: SocketAddr, behaviour: Behaviour) -> u64 {
    for served in 0..100_000 {
        let outcome = legacy_client(addr, behaviour);
        if outcome.interval.is_none() {
            return served;
        }
        assert_eq!(outcome.after, GOODBYE_REPLY);
    }
    panic!("the server kept handing out intervals");
}

// ---------------------------------------------------------------------------------------------
// A coordinator with both listeners, in process
// ---------------------------------------------------------------------------------------------

struct TestServer {
    legacy: SocketAddr,
    native: SocketAddr,
    coordinator: CoordinatorHandle,
    shutdown: CancellationToken,
    tracker: TaskTracker,
}

impl TestServer {
    async fn start(job: Job, config: ServerConfig) -> TestServer {
        // Logs for debugging, off unless PISWARM_LOG says otherwise (e.g. PISWARM_LOG=info).
        let filter = tracing_subscriber::EnvFilter::try_from_env("PISWARM_LOG")
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("off"));
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_test_writer()
            .try_init();
        let legacy_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let native_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let legacy = legacy_listener.local_addr().unwrap();
        let native = native_listener.local_addr().unwrap();
        let (coordinator, _task) = coordinator::spawn(CoreConfig::new(job));
        let shutdown = CancellationToken::new();
        let tracker = TaskTracker::new();
        tokio::spawn(net::serve(
            Listeners {
                v1: native_listener,
                legacy: Some(legacy_listener),
            },
            coordinator.clone(),
            config,
            shutdown.clone(),
            tracker.clone(),
        ));
        TestServer {
            legacy,
            native,
            coordinator,
            shutdown,
            tracker,
        }
    }

    async fn finish(&self) -> FinalReport {
        self.coordinator.wait_complete().await.unwrap();
        let report = self.coordinator.report().await.unwrap();
        self.shutdown.cancel();
        self.coordinator.drain().await.unwrap();
        self.tracker.close();
        tokio::time::timeout(Duration::from_secs(10), self.tracker.wait())
            .await
            .expect("every session ends once the coordinator is drained");
        report
    }
}

fn quick_timeouts() -> ServerConfig {
    ServerConfig {
        idle_timeout: Duration::from_millis(300),
        handshake_timeout: Duration::from_secs(5),
        ..ServerConfig::default()
    }
}

async fn bounded<T>(test: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(TEST_TIMEOUT, test)
        .await
        .expect("the test did not finish in time")
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[test]
fn python_floats_are_written_as_python_writes_them() {
    assert_eq!(python_repr(3.140592653839794), "3.140592653839794");
    assert_eq!(python_repr(8.333332798032551e-05), "8.333332798032551e-05");
    assert_eq!(
        python_repr(-8.333332798032551e-05),
        "-8.333332798032551e-05"
    );
    assert_eq!(python_repr(1e-5), "1e-05");
    assert_eq!(python_repr(1e-4), "0.0001");
    assert_eq!(python_repr(123.0), "123.0");
    assert_eq!(python_repr(1e15), "1000000000000000.0");
    assert_eq!(python_repr(1e16), "1e+16");
    assert_eq!(python_repr(-0.5), "-0.5");
    // The original's first interval.
    assert_eq!(python_repr(pi_partial_naive(0, 999)), "3.140592653839794");
    assert_eq!(gauss_sums(1000), (249_500, 250_000));
    assert_eq!(gauss_sums(1), (0, 0));
}

/// The original's README reports a run with 259 clients: here they all connect at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_fifty_nine_original_clients_at_once() {
    bounded(async {
        const CLIENTS: u64 = 259;
        let job = Job::new(Some(CLIENTS * 1000), Some(1000)).unwrap();
        let server = TestServer::start(job, ServerConfig::default()).await;
        let addr = server.legacy;
        let outcomes = tokio::task::spawn_blocking(move || {
            let start = Arc::new(Barrier::new(CLIENTS as usize));
            let threads: Vec<_> = (0..CLIENTS)
                .map(|i| {
                    let start = start.clone();
                    std::thread::spawn(move || {
                        start.wait();
                        // Most read the answer to their goodbye; every third leaves at once, as
                        // the original does.
                        // Every fifth sends the published client's trapezoidal π.
                        let behaviour = if i % 5 == 1 {
                            Behaviour::Trapezoid
                        } else if i % 3 == 0 {
                            Behaviour::Original
                        } else {
                            Behaviour::ReadsReply
                        };
                        (behaviour, legacy_client(addr, behaviour))
                    })
                })
                .collect();
            threads
                .into_iter()
                .map(|t| t.join().expect("a client thread panicked"))
                .collect::<Vec<_>>()
        })
        .await
        .unwrap();

        let mut intervals: Vec<(u64, u64)> = outcomes
            .iter()
            .map(|(_, o)| o.interval.expect("every client is served an interval"))
            .collect();
        intervals.sort_unstable();
        let expected: Vec<(u64, u64)> = (0..CLIENTS).map(|k| (k * 1000, k * 1000 + 999)).collect();
        assert_eq!(intervals, expected);
        for (behaviour, outcome) in &outcomes {
            if matches!(behaviour, Behaviour::ReadsReply | Behaviour::Trapezoid) {
                assert_eq!(outcome.after, GOODBYE_REPLY);
                assert!(outcome.closed_by_server);
            }
        }
        let report = server.finish().await;
        assert_eq!(report.intervals, CLIENTS);
        assert_eq!(report.workers, CLIENTS);
        assert_exact(&report, CLIENTS * 1000);
    })
    .await;
}

/// Each bad client is cut off and its interval goes to the next client; the job still completes
/// exactly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_frames_close_the_connection_and_the_interval_is_reissued() {
    bounded(async {
        let cases = [
            Behaviour::NonDigitHeader,
            Behaviour::HugeLength,
            Behaviour::Truncated,
            Behaviour::Unparsable,
            Behaviour::WrongSums,
            Behaviour::WrongPi,
            Behaviour::Silent,
        ];
        let intervals = cases.len() as u64 + 1;
        let job = Job::new(Some(intervals * 1000), Some(1000)).unwrap();
        let server = TestServer::start(job, quick_timeouts()).await;
        for case in cases {
            let bad = client(server.legacy, case).await;
            let interval = bad.interval.expect("the bad client got an interval");
            assert!(
                bad.closed_by_server,
                "{case:?}: the server closes the connection"
            );
            assert!(bad.after.is_empty(), "{case:?}: no reply to a bad frame");
            let next = client(server.legacy, Behaviour::ReadsReply).await;
            assert_eq!(
                next.interval,
                Some(interval),
                "{case:?}: the interval is reissued"
            );
            assert_eq!(next.after, GOODBYE_REPLY);
        }
        // A client whose frames arrive in pieces is read correctly.
        let trickle = client(server.legacy, Behaviour::Trickle).await;
        assert!(trickle.interval.is_some());
        assert_eq!(trickle.after, GOODBYE_REPLY);
        let report = server.finish().await;
        assert_eq!(report.intervals, intervals);
        assert_exact(&report, intervals * 1000);
    })
    .await;
}

/// The original let any client stop the server with `!ENCERRAR`; piswarm logs it and goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shutdown_message_is_ignored() {
    bounded(async {
        let job = Job::new(Some(3000), Some(1000)).unwrap();
        let server = TestServer::start(job, quick_timeouts()).await;
        // stop_server.py: takes an interval and asks the server to stop.
        let stop = client(server.legacy, Behaviour::StopServer).await;
        assert_eq!(stop.interval, Some((0, 999)));
        assert_eq!(stop.after, GOODBYE_REPLY);
        // Its interval was not computed: it goes to the next client.
        let after_result = client(server.legacy, Behaviour::ResultThenShutdown).await;
        assert_eq!(after_result.interval, Some((0, 999)));
        assert_eq!(after_result.after, GOODBYE_REPLY);
        // The server still serves, and that result counted.
        for expected in [(1000, 1999), (2000, 2999)] {
            let next = client(server.legacy, Behaviour::ReadsReply).await;
            assert_eq!(next.interval, Some(expected));
        }
        let report = server.finish().await;
        assert_exact(&report, 3000);
    })
    .await;
}

/// The legacy listener has its own connection limit; a client beyond it is closed at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_limit_are_closed() {
    bounded(async {
        let job = Job::new(Some(1000), Some(1000)).unwrap();
        let config = ServerConfig {
            max_connections: 1,
            ..ServerConfig::default()
        };
        let server = TestServer::start(job, config).await;
        let addr = server.legacy;
        let (first, second) = tokio::task::spawn_blocking(move || {
            let mut first = TcpStream::connect(addr).unwrap();
            first.set_read_timeout(Some(CLIENT_READ_TIMEOUT)).unwrap();
            let interval =
                parse_interval(&receive(&mut first).expect("the first client is served"));
            // The first session holds the only slot until it has answered.
            let mut second = TcpStream::connect(addr).unwrap();
            second.set_read_timeout(Some(CLIENT_READ_TIMEOUT)).unwrap();
            let second = receive(&mut second);
            let (evens, odds, pi) = honest_sums(interval.0, interval.1);
            send(&mut first, &result_body(evens, odds, pi)).unwrap();
            send(&mut first, b"!DESCONECTADO").unwrap();
            ((interval, read_to_close(&mut first)), second)
        })
        .await
        .unwrap();
        assert_eq!(
            second, None,
            "the second client is closed without an interval"
        );
        assert_eq!(first, ((0, 999), (GOODBYE_REPLY.to_vec(), true)));
        let report = server.finish().await;
        assert_exact(&report, 1000);
    })
    .await;
}

/// Legacy and native clients share one run; the result is exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_and_native_clients_in_one_run() {
    bounded(async {
        const INTERVALS: u64 = 2000;
        let job = Job::new(Some(INTERVALS * 1000), Some(1000)).unwrap();
        let server = TestServer::start(job, ServerConfig::default()).await;
        let loopers: Vec<_> = (0..4)
            .map(|_| {
                let addr = server.legacy;
                tokio::task::spawn_blocking(move || legacy_looper(addr))
            })
            .collect();
        let natives: Vec<_> = (0..2)
            .map(|i| {
                let mut config = WorkerConfig::new(server.native.to_string());
                config.name = format!("native-{i}");
                tokio::spawn(run_worker(config, CancellationToken::new()))
            })
            .collect();
        let mut legacy_served = 0;
        for looper in loopers {
            legacy_served += looper.await.unwrap();
        }
        let mut native_accepted = 0;
        for native in natives {
            let summary = native.await.unwrap().expect("the native worker finishes");
            assert_eq!(summary.errors, 0);
            native_accepted += summary.accepted;
        }
        println!(
            "legacy clients served {legacy_served} intervals, native workers {native_accepted}"
        );
        let report = server.finish().await;
        assert!(legacy_served > 0, "legacy clients took part");
        assert!(native_accepted > 0, "native workers took part");
        // At the tail a native worker may get a backup copy of a legacy client's interval: both
        // are then served it, and the first result counts (the report is exact, once each).
        assert!(legacy_served + native_accepted >= INTERVALS);
        assert_eq!(report.intervals, INTERVALS);
        assert_exact(&report, INTERVALS * 1000);
    })
    .await;
}

/// A flood of the published original client, whose π the coordinator recomputes (on the
/// blocking pool, a few at a time), does not hold up native workers: they keep taking and
/// finishing intervals beside it, and the run is exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_trapezoid_clients_does_not_stall_native_workers() {
    bounded(async {
        const INTERVALS: u64 = 3000;
        let job = Job::new(Some(INTERVALS * 1000), Some(1000)).unwrap();
        let server = TestServer::start(job, ServerConfig::default()).await;
        let flood: Vec<_> = (0..16)
            .map(|_| {
                let addr = server.legacy;
                tokio::task::spawn_blocking(move || looper(addr, Behaviour::Trapezoid))
            })
            .collect();
        let mut config = WorkerConfig::new(server.native.to_string());
        config.name = "native".into();
        let native = run_worker(config, CancellationToken::new())
            .await
            .expect("the native worker finishes beside the flood");
        let mut flooded = 0;
        for f in flood {
            flooded += f.await.unwrap();
        }
        assert!(native.accepted > 0 && flooded > 0, "both took part");
        // Backup copies at the tail may serve an interval to both (the first result counts).
        assert!(native.accepted + flooded >= INTERVALS);
        assert!(native.accepted <= INTERVALS);
        let report = server.finish().await;
        assert_exact(&report, INTERVALS * 1000);
    })
    .await;
}

/// `piswarm serve --legacy-listen`: the flag, the printed address, and a run to completion.
#[test]
fn serve_with_a_legacy_listener() {
    /// Kills the server if the test fails before it exits by itself.
    struct KillOnDrop(std::process::Child);
    impl Drop for KillOnDrop {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let out = tempfile::tempdir().unwrap();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_piswarm"))
        .args([
            "serve",
            "--no-http",
            "--listen",
            "127.0.0.1:0",
            "--legacy-listen",
            "127.0.0.1:0",
            "--terms",
            "3000",
            "--chunk",
            "1000",
            "--exit-when-done",
            "--quiet",
            "--out",
        ])
        .arg(out.path())
        .arg("--db")
        .arg(out.path().join("piswarm.db"))
        .env("PISWARM_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start piswarm serve");
    let mut child = KillOnDrop(child);
    let stdout = child.0.stdout.take().unwrap();
    let (lines_tx, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let legacy_addr: SocketAddr = loop {
        let line = lines
            .recv_timeout(Duration::from_secs(30))
            .expect("piswarm prints the legacy address");
        if let Some(addr) =
            line.strip_prefix("piswarm: legacy clients (the original's wire format) on ")
        {
            break addr.parse().unwrap();
        }
    };
    let stop = legacy_client(legacy_addr, Behaviour::StopServer);
    assert_eq!(stop.after, GOODBYE_REPLY);
    for _ in 0..3 {
        let served = legacy_client(legacy_addr, Behaviour::Original);
        assert!(served.interval.is_some());
    }
    // The server exits by itself once the job is complete; poll for that, within a deadline.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "piswarm serve --exit-when-done exits once the job is complete"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success());
    let report: FinalReport =
        serde_json::from_slice(&std::fs::read(out.path().join("final.json")).unwrap()).unwrap();
    assert_exact(&report, 3000);
}
