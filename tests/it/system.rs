//! The whole system over real loopback TCP: a coordinator on port 0, real workers, exact answers.

use crate::common::*;
use piswarm::coordinator::CoreConfig;
use piswarm::job::Job;
use piswarm::net::ServerConfig;
use piswarm::worker::{run_worker, WorkerConfig};
use std::collections::HashSet;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

async fn run_with_workers(job: Job, workers: usize) -> piswarm::report::FinalReport {
    let server = TestServer::start(job).await;
    let mut handles = Vec::new();
    for i in 0..workers {
        let mut config = WorkerConfig::new(server.addr.to_string());
        config.name = format!("w{i}");
        handles.push(tokio::spawn(run_worker(config, CancellationToken::new())));
    }
    for h in handles {
        h.await
            .unwrap()
            .expect("worker ends cleanly when the job is complete");
    }
    let report = server.coordinator.report().await.unwrap();
    server.stop().await;
    report
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bounded_job_is_exact_and_bit_identical_whatever_the_workers() {
    let n = 200_000_000;
    let job = Job::new(Some(n), Some(1_000_000)).unwrap();
    let one = run_with_workers(job, 1).await;
    let three = run_with_workers(job, 3).await;
    for r in [&one, &three] {
        assert_eq!(r.terms, n);
        assert_eq!(r.intervals, 200);
        assert_eq!(r.even_sum.0, evens(0, n - 1));
        assert_eq!(r.odd_sum.0, odds(0, n - 1));
        let exact = prefix_pi(n);
        assert!(
            (r.pi - exact).abs() <= 2e-15,
            "pi {} vs {} (diff {:e})",
            r.pi,
            exact,
            r.pi - exact
        );
        let corrected = r
            .pi_corrected
            .expect("a complete job is a contiguous prefix");
        assert!((corrected - std::f64::consts::PI).abs() <= 1e-14);
    }
    assert_eq!(
        one.pi.to_bits(),
        three.pi.to_bits(),
        "the result depends on (N, C) only"
    );
    assert_eq!(three.workers, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_vanishes_with_intervals_in_hand_loses_nothing() {
    // 1 280 intervals: a new session may hold 1/256 of them, five.
    let n = 1_280_000;
    let server = TestServer::start(Job::new(Some(n), Some(1000)).unwrap()).await;
    // A client takes five intervals and disappears without a word.
    let mut raw = RawClient::connect(server.addr).await;
    raw.hello("vanishing").await;
    raw.send(r#"{"type":"request","count":5}"#).await;
    let mut taken = HashSet::new();
    for _ in 0..5 {
        let m = raw.recv().await.unwrap();
        assert_eq!(m["type"], "assign");
        taken.insert(m["id"].as_str().unwrap().to_string());
    }
    assert_eq!(taken.len(), 5);
    drop(raw);
    let worker = run_worker(
        WorkerConfig::new(server.addr.to_string()),
        CancellationToken::new(),
    );
    let summary = worker.await.unwrap();
    assert_eq!(summary.accepted, 1280);
    let r = server.coordinator.report().await.unwrap();
    assert_eq!((r.intervals, r.terms), (1280, n));
    assert_eq!(
        (r.even_sum.0, r.odd_sum.0),
        (evens(0, n - 1), odds(0, n - 1))
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_process_killed_mid_job_loses_nothing() {
    let n = 4_000_000_000;
    let server = TestServer::start(Job::new(Some(n), Some(10_000_000)).unwrap()).await;
    let mut victim = std::process::Command::new(bin())
        .args([
            "worker",
            "--connect",
            &server.addr.to_string(),
            "--threads",
            "1",
            "--name",
            "victim",
        ])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Kill it once it has delivered some results and holds more.
    let mut snap = server.coordinator.snapshot();
    tokio::time::timeout(
        Duration::from_secs(60),
        snap.wait_for(|s| s.totals.intervals_done >= 3),
    )
    .await
    .unwrap()
    .unwrap();
    victim.kill().unwrap();
    victim.wait().unwrap();
    let done_before = server.coordinator.snapshot().borrow().totals.intervals_done;
    assert!(done_before < 400, "the victim was killed mid-job");
    let mut config = WorkerConfig::new(server.addr.to_string());
    config.threads = 2;
    run_worker(config, CancellationToken::new()).await.unwrap();
    let r = server.coordinator.report().await.unwrap();
    assert_eq!((r.intervals, r.terms), (400, n));
    assert_eq!(
        (r.even_sum.0, r.odd_sum.0),
        (evens(0, n - 1), odds(0, n - 1))
    );
    assert!((r.pi - prefix_pi(n)).abs() <= 2e-15);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_hundred_once_clients_are_all_served_with_distinct_intervals() {
    let out = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let options = piswarm::commands::serve::ServeOptions::new(
        Job::new(None, Some(1000)).unwrap(),
        out.path().join("piswarm.db"),
        out.path().to_path_buf(),
    );
    let shutdown = CancellationToken::new();
    let serving = tokio::spawn(piswarm::commands::serve::serve(
        listener,
        options,
        shutdown.clone(),
    ));
    let clients: Vec<_> = (0..300)
        .map(|i| {
            let mut c = WorkerConfig::new(addr.to_string());
            c.once = true;
            c.name = format!("once-{i}");
            tokio::spawn(run_worker(c, CancellationToken::new()))
        })
        .collect();
    for c in clients {
        let summary = c.await.unwrap().expect("every once-client is served");
        assert_eq!(summary.accepted, 1);
    }
    shutdown.cancel();
    let report = serving.await.unwrap().unwrap();
    assert_eq!((report.intervals, report.terms), (300, 300_000));
    assert_eq!(
        (report.even_sum.0, report.odd_sum.0),
        (evens(0, 299_999), odds(0, 299_999))
    );
    let results: Vec<serde_json::Value> =
        serde_json::from_slice(&std::fs::read(out.path().join("results.json")).unwrap()).unwrap();
    let ids: HashSet<String> = results
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 300, "300 distinct intervals");
    assert!((0..300).all(|k| ids.contains(&k.to_string())));
    let names: HashSet<&str> = results
        .iter()
        .map(|r| r["worker"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 300);
    for field in [
        "id",
        "a",
        "b",
        "worker",
        "peer",
        "even_sum",
        "odd_sum",
        "pi",
        "duration_s",
        "timestamp",
    ] {
        assert!(
            results[0].get(field).is_some(),
            "results.json lacks {field}"
        );
    }
    let fin: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.path().join("final.json")).unwrap()).unwrap();
    assert_eq!(fin["terms"], 300_000);
    assert_eq!(fin["even_sum"], evens(0, 299_999).to_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_tells_workers_and_gives_their_intervals_back() {
    let mut config = CoreConfig::new(Job::new(None, Some(1_000_000)).unwrap());
    config.max_prefetch = 4;
    let server = TestServer::start_with(config, ServerConfig::default()).await;
    let worker = tokio::spawn(run_worker(
        WorkerConfig::new(server.addr.to_string()),
        CancellationToken::new(),
    ));
    let mut snap = server.coordinator.snapshot();
    snap.wait_for(|s| s.totals.intervals_done >= 2)
        .await
        .unwrap();
    server.stop().await;
    // The worker was told there is no more work and left cleanly.
    tokio::time::timeout(Duration::from_secs(10), worker)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    // The sessions' departures reach the coordinator after their tasks end: wait for them.
    let mut snap = server.coordinator.snapshot();
    tokio::time::timeout(Duration::from_secs(10), snap.wait_for(|s| s.sessions == 0))
        .await
        .expect("the worker's session ends")
        .unwrap();
    let s = server.coordinator.snapshot().borrow().clone();
    assert_eq!(s.in_flight, 0, "held intervals went back to the queue");
    let r = server.coordinator.report().await.unwrap();
    assert_eq!(
        r.even_sum.0,
        evens(0, r.terms - 1),
        "a contiguous prefix was accepted so far"
    );
}

#[tokio::test]
async fn the_protocol_by_hand() {
    let mut config = CoreConfig::new(Job::new(Some(3000), Some(1000)).unwrap());
    config.max_prefetch = 2;
    let server = TestServer::start_with(config, ServerConfig::default()).await;
    let mut c = RawClient::connect(server.addr).await;
    let welcome = c.hello("by-hand").await;
    assert_eq!(welcome["type"], "welcome");
    assert_eq!(welcome["chunk"], "1000");
    assert_eq!(welcome["terms"], "3000");
    assert_eq!(welcome["max_prefetch"], 2);
    c.send("{oops").await;
    assert_eq!(c.recv().await.unwrap()["code"], "bad_json");
    c.send(r#"{"type":"teleport"}"#).await;
    assert_eq!(c.recv().await.unwrap()["code"], "unknown_type");
    c.send(r#"{"type":"request","count":"many"}"#).await;
    assert_eq!(c.recv().await.unwrap()["code"], "bad_message");
    c.send(r#"{"type":"request","count":5}"#).await;
    let first = c.recv().await.unwrap();
    let second = c.recv().await.unwrap();
    assert_eq!(
        (
            first["type"].as_str(),
            first["id"].as_str(),
            first["a"].as_str(),
            first["b"].as_str()
        ),
        (Some("assign"), Some("0"), Some("0"), Some("999"))
    );
    assert_eq!(second["id"], "1");
    // A wrong sum is refused with an error naming the interval.
    c.send(r#"{"type":"result","id":"0","a":"0","b":"999","even_sum":"1","odd_sum":"250000","pi":3.14}"#).await;
    let err = c.recv().await.unwrap();
    assert_eq!(
        (
            err["type"].as_str(),
            err["code"].as_str(),
            err["id"].as_str()
        ),
        (Some("error"), Some("wrong_sums"), Some("0"))
    );
    // The refused interval went back to the queue: asking for more work brings it back first.
    c.send(r#"{"type":"request","count":1}"#).await;
    let again = c.recv().await.unwrap();
    assert_eq!(
        (again["type"].as_str(), again["id"].as_str()),
        (Some("assign"), Some("0"))
    );
    let pi = piswarm::maths::kernel::pi_partial_naive(1000, 1999);
    c.send(&format!(
        r#"{{"type":"result","id":"1","a":"1000","b":"1999","even_sum":"{}","odd_sum":"{}","pi":{pi:?},"duration_s":0.001}}"#,
        evens(1000, 1999),
        odds(1000, 1999)
    ))
    .await;
    let ack = c.recv().await.unwrap();
    assert_eq!(
        (
            ack["type"].as_str(),
            ack["id"].as_str(),
            ack["status"].as_str()
        ),
        (Some("ack"), Some("1"), Some("accepted"))
    );
    // A result for an interval we do not hold.
    c.send(&format!(
        r#"{{"type":"result","id":"2","a":"2000","b":"2999","even_sum":"{}","odd_sum":"{}","pi":0.0}}"#,
        evens(2000, 2999),
        odds(2000, 2999)
    ))
    .await;
    let mut codes = Vec::new();
    while let Some(m) = c.recv().await {
        codes.push(m.clone());
        if m["type"] == "error" {
            break;
        }
    }
    assert!(
        codes
            .iter()
            .any(|m| m["code"] == "not_assigned" || m["code"] == "wrong_pi"),
        "{codes:?}"
    );
    c.send(r#"{"type":"bye"}"#).await;
    server.stop().await;
}

#[tokio::test]
async fn handshake_errors_close_the_connection() {
    let server = TestServer::start(Job::new(None, None).unwrap()).await;
    let mut c = RawClient::connect(server.addr).await;
    c.send(r#"{"type":"hello","version":2,"worker":"future"}"#)
        .await;
    assert_eq!(c.recv().await.unwrap()["code"], "unsupported_version");
    assert!(c.recv().await.is_none(), "closed after the error");

    let mut c = RawClient::connect(server.addr).await;
    c.send(r#"{"type":"request","count":1}"#).await;
    assert_eq!(c.recv().await.unwrap()["code"], "out_of_order");
    assert!(c.recv().await.is_none());

    let mut c = RawClient::connect(server.addr).await;
    let long = "x".repeat(70_000);
    c.send(&long).await;
    assert_eq!(c.recv().await.unwrap()["code"], "line_too_long");
    assert!(c.recv().await.is_none());

    // After a hello, an oversized line also gets an error and a close.
    let mut c = RawClient::connect(server.addr).await;
    c.hello("big").await;
    c.send(&format!(
        r#"{{"type":"heartbeat","pad":"{}"}}"#,
        "y".repeat(65_536)
    ))
    .await;
    assert_eq!(c.recv().await.unwrap()["code"], "line_too_long");
    assert!(c.recv().await.is_none());
    server.stop().await;
}

#[tokio::test]
async fn silent_clients_are_cut_off_by_the_timeouts() {
    let config = ServerConfig {
        // Real time, kept short: paused time would race the loopback I/O.
        handshake_timeout: Duration::from_millis(300),
        idle_timeout: Duration::from_millis(800),
        ..ServerConfig::default()
    };
    let server =
        TestServer::start_with(CoreConfig::new(Job::new(None, None).unwrap()), config).await;
    let mut mute = RawClient::connect(server.addr).await;
    assert_eq!(mute.recv().await.unwrap()["code"], "handshake_timeout");
    let mut idle = RawClient::connect(server.addr).await;
    idle.hello("idle").await;
    idle.send(r#"{"type":"request","count":1}"#).await;
    assert_eq!(idle.recv().await.unwrap()["type"], "assign");
    assert_eq!(idle.recv().await.unwrap()["code"], "idle_timeout");
    assert!(idle.recv().await.is_none());
    // Its interval went back to the queue.
    let mut snap = server.coordinator.snapshot();
    snap.wait_for(|s| s.in_flight == 0 && s.sessions == 0)
        .await
        .unwrap();
    server.stop().await;
}

/// A terminal that accepts nothing until told to.
#[derive(Clone, Default)]
struct StuckTerminal(std::sync::Arc<(std::sync::Mutex<bool>, std::sync::Condvar)>);

impl std::io::Write for StuckTerminal {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut open = self.0 .0.lock().unwrap();
        while !*open {
            open = self.0 .1.wait(open).unwrap();
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Printing a line per result happens on a thread of its own: a terminal that accepts nothing
/// does not slow the run down (lines are dropped and counted instead).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_terminal_does_not_hold_up_the_run() {
    use piswarm::coordinator::printer::Printer;
    let job = Job::new(Some(5_000_000), Some(1000)).unwrap();
    let mut config = CoreConfig::new(job);
    config.emit_durable = true;
    let terminal = StuckTerminal::default();
    let printer = Printer::new(Box::new(terminal.clone())).unwrap();
    let dropped = printer.dropped_counter();
    let (coordinator, _task) = piswarm::coordinator::spawn_with(config, None, None, Some(printer));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    let tracker = tokio_util::task::TaskTracker::new();
    tokio::spawn(piswarm::net::serve(
        piswarm::net::Listeners {
            v1: listener,
            legacy: None,
        },
        coordinator.clone(),
        ServerConfig::default(),
        stop.clone(),
        tracker.clone(),
    ));
    let mut wc = WorkerConfig::new(addr.to_string());
    wc.prefetch = Some(64);
    let summary = tokio::time::timeout(
        Duration::from_secs(120),
        run_worker(wc, CancellationToken::new()),
    )
    .await
    .expect("the run ends while the terminal is stuck")
    .unwrap();
    assert_eq!(summary.accepted, 5000);
    assert_eq!(coordinator.report().await.unwrap().intervals, 5000);
    assert!(dropped.load(std::sync::atomic::Ordering::Relaxed) > 0);
    *terminal.0 .0.lock().unwrap() = true;
    terminal.0 .1.notify_all();
    stop.cancel();
}

/// A worker computes with the run's kernel: told a kernel it does not have (a newer server's),
/// it stops with an error that names it rather than computing bits of another kernel — and it
/// does not retry, since retrying cannot help.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_told_an_unknown_kernel_stops_and_says_which() {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (socket, _) = listener.accept().await.unwrap();
        let (read, mut write) = socket.into_split();
        let mut hello = String::new();
        BufReader::new(read).read_line(&mut hello).await.unwrap();
        assert!(hello.contains("\"hello\""), "{hello}");
        write
            .write_all(
                b"{\"type\":\"welcome\",\"version\":1,\"server\":\"future\",\"run\":1,\"terms\":\"1000\",\
                  \"chunk\":\"100\",\"max_prefetch\":4,\"heartbeat_s\":20,\"kernel\":\"hex\"}\n",
            )
            .await
            .unwrap();
        // Held open until the test ends (the task is aborted).
        std::future::pending::<()>().await;
    });
    let mut config = WorkerConfig::new(addr.to_string());
    config.retry_for = Some(Duration::from_secs(30));
    let outcome = tokio::time::timeout(
        Duration::from_secs(20),
        run_worker(config, CancellationToken::new()),
    )
    .await
    .expect("the worker decides at once");
    let err = outcome
        .expect_err("an unknown kernel is an error")
        .to_string();
    assert!(err.contains("kernel 'hex'") && err.contains("oct"), "{err}");
    server.abort();
}
