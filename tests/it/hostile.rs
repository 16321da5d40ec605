//! The hostile-input matrix: every kind of bad input of issue 5, thrown from raw TCP clients at a
//! live coordinator while honest workers run a bounded job. Each bad client must get its error on
//! the wire (the code is checked) or be cut off, the liar must be refused (its connection closed; strikes are per connection), the
//! job must end exact, and the honest workers must never notice.
//!
//! Timeouts are short here (handshake 1 s, idle 2 s) so that the slow clients are cut off within
//! the test; everything runs on 127.0.0.1 and the whole test takes a few seconds.

use crate::common::*;
use piswarm::coordinator::CoreConfig;
use piswarm::job::{IntervalId, Job};
use piswarm::net::ServerConfig;
use piswarm::worker::{run_worker, WorkerConfig};
use serde_json::Value;

use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

const N: u64 = 10_000_000_000;
/// 1 000 intervals: a new session may hold 1/256 of them (4) before its first result, and the
/// liar below takes 3.
const CHUNK: u64 = 10_000_000;
const HANDSHAKE: Duration = Duration::from_secs(1);
const IDLE: Duration = Duration::from_secs(2);

/// The job's grid, independent of the library: interval k is [kC, (k+1)C − 1].
fn bounds(id: u64) -> (u64, u64) {
    (id * CHUNK, ((id + 1) * CHUNK).min(N) - 1)
}

/// A correct result line for interval `id`, with fields overridden as given.
fn result_line(id: u64, tweak: impl FnOnce(&mut Value)) -> String {
    let (a, b) = bounds(id);
    let mut v = serde_json::json!({
        "type": "result",
        "id": id.to_string(),
        "a": a.to_string(),
        "b": b.to_string(),
        "even_sum": evens(a, b).to_string(),
        "odd_sum": odds(a, b).to_string(),
        "pi": piswarm::maths::kernel::pi_partial(a, b).unwrap_or(0.0),
        "duration_s": 0.01,
    });
    tweak(&mut v);
    v.to_string()
}

/// A result line with the `pi` field replaced by raw text (`NaN`, `1e999`: not expressible in
/// serde_json's `Value`).
fn result_with_raw_pi(id: u64, raw: &str) -> String {
    let line = result_line(id, |v| v["pi"] = Value::from(0.25));
    line.replace("\"pi\":0.25", &format!("\"pi\":{raw}"))
}

async fn connect(addr: SocketAddr) -> RawClient {
    RawClient::connect(addr).await
}

async fn hello(addr: SocketAddr, name: &str) -> RawClient {
    let mut c = connect(addr).await;
    let welcome = c.hello(name).await;
    assert_eq!(welcome["type"], "welcome", "{name}: {welcome}");
    c
}

/// The next message must be an `error` with this code (and this `id`, if given).
async fn expect_error(c: &mut RawClient, who: &str, code: &str, id: Option<u64>) -> Value {
    let m = c
        .recv()
        .await
        .unwrap_or_else(|| panic!("{who}: connection closed, expected error {code}"));
    assert_eq!(
        (m["type"].as_str(), m["code"].as_str()),
        (Some("error"), Some(code)),
        "{who}: {m}"
    );
    match id {
        Some(id) => assert_eq!(m["id"], id.to_string(), "{who}: {m}"),
        None => assert!(m.get("id").is_none(), "{who}: {m}"),
    }
    m
}

/// The server must close the connection now (after nothing more than what was read).
async fn expect_closed(c: &mut RawClient, who: &str) {
    if let Some(m) = c.recv().await {
        panic!("{who}: expected the connection to be closed, got {m}");
    }
}

/// Sends a line, then expects one error with `code` and no `id`.
async fn bad_line(c: &mut RawClient, who: &str, line: &str, code: &str) {
    c.send(line).await;
    expect_error(c, who, code, None).await;
}

/// Asks for `count` intervals and returns their ids.
async fn take(c: &mut RawClient, count: usize) -> Vec<u64> {
    c.send(&format!(r#"{{"type":"request","count":{count}}}"#))
        .await;
    let mut ids = Vec::new();
    for _ in 0..count {
        let m = c.recv().await.expect("an assignment");
        assert_eq!(m["type"], "assign", "{m}");
        let id: u64 = m["id"].as_str().unwrap().parse().unwrap();
        assert_eq!(
            (m["a"].as_str(), m["b"].as_str()),
            (
                Some(bounds(id).0.to_string().as_str()),
                Some(bounds(id).1.to_string().as_str())
            )
        );
        ids.push(id);
    }
    ids
}

/// Sends `line` (a prefix of a line, never finished) one byte per 100 ms until the server cuts the
/// connection; returns the error the server sent, the time from `start` to the close, and how many
/// bytes were sent.
async fn trickle(
    c: RawClient,
    line: &'static [u8],
    start: Instant,
) -> (Option<Value>, Duration, usize) {
    let mut c = c;
    let mut sent = 0usize;
    let mut bytes = line.iter().cycle();
    let mut writing = true;
    let mut pace = tokio::time::interval(Duration::from_millis(100));
    // One task writes and reads: the read is cancel-safe, so the bytes go out on time.
    let first = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            tokio::select! {
                _ = pace.tick(), if writing => {
                    let byte = *bytes.next().unwrap();
                    match c.conn.send_raw(&[byte]).await {
                        Ok(()) => sent += 1,
                        Err(_) => writing = false,
                    }
                }
                m = c.recv() => break m,
            }
        }
    })
    .await
    .expect("cut off within 10 s");
    let rest = c.recv().await;
    let closed_after = start.elapsed();
    assert!(rest.is_none(), "closed after the error, got {rest:?}");
    (first, closed_after, sent)
}

#[test]
fn hostile_clients_cannot_crash_stall_or_corrupt_a_run() {
    // The server's log goes to a buffer of this test's own (its runtime's threads write there),
    // panics included.
    let log = LogBuffer::default();
    let (runtime, _guard) = logging_runtime(&log, "piswarm=info");
    runtime
        .block_on(async { tokio::time::timeout(Duration::from_secs(120), hostile_run(log)).await })
        .expect("the hostile matrix did not finish within its deadline");
}

async fn hostile_run(log: LogBuffer) {
    let test_start = Instant::now();

    let job = Job::new(Some(N), Some(CHUNK)).unwrap();
    assert_eq!(
        job.interval(IntervalId(7)).map(|i| (i.a, i.b)),
        Some(bounds(7))
    );
    let mut config = CoreConfig::new(job);
    // Announced as heartbeat_s; the reference worker speaks every 0.5 s, well inside IDLE.
    config.heartbeat = IDLE / 3;
    // The gatekeeper below keeps the job open by holding an interval: no backup copy of it may
    // end the job before every hostile client is through (backups: the crowd tests).
    config.backups = false;
    let server_config = ServerConfig {
        handshake_timeout: HANDSHAKE,
        idle_timeout: IDLE,
        ..ServerConfig::default()
    };
    let server = TestServer::start_with(config, server_config).await;
    let addr = server.addr;

    // Phase 1. Clients that lie about real work take their intervals before the honest workers
    // start, so that they get some. The first request gets interval 0, the one nearest 0.
    let mut pi_liar = hello(addr, "pi-liar").await;
    assert_eq!(take(&mut pi_liar, 1).await, vec![0]);
    let mut gatekeeper = hello(addr, "gatekeeper").await;
    let gate_id = take(&mut gatekeeper, 1).await[0];
    let mut even_liar = hello(addr, "even-liar").await;
    let even_id = take(&mut even_liar, 1).await[0];
    let mut odd_liar = hello(addr, "odd-liar").await;
    let odd_id = take(&mut odd_liar, 1).await[0];
    let mut bounds_liar = hello(addr, "bounds-liar").await;
    let bounds_id = take(&mut bounds_liar, 1).await[0];
    let mut repeater = hello(addr, "repeater").await;
    let repeat_id = take(&mut repeater, 1).await[0];
    let mut liar = hello(addr, "liar").await;
    let liar_ids = take(&mut liar, 3).await;

    // Phase 2. Two honest workers run the job...
    let honest: Vec<_> = (0..2)
        .map(|i| {
            let mut c = WorkerConfig::new(addr.to_string());
            c.name = format!("honest-{i}");
            c.threads = 1;
            tokio::spawn(run_worker(c, CancellationToken::new()))
        })
        .collect();

    // ... while the gatekeeper keeps the job open (holding one interval, heartbeating) until every
    // hostile client is through, so that all of them hit a running job.
    let gate = CancellationToken::new();
    let gate_open = gate.clone();
    let gatekeeper_task = tokio::spawn(async move {
        let mut beat = tokio::time::interval(Duration::from_millis(500));
        loop {
            tokio::select! {
                _ = gate_open.cancelled() => break,
                _ = beat.tick() => gatekeeper.send(r#"{"type":"heartbeat"}"#).await,
            }
        }
        gatekeeper.send(&result_line(gate_id, |_| {})).await;
        let ack = gatekeeper.recv().await.unwrap();
        assert_eq!(
            (ack["type"].as_str(), ack["status"].as_str()),
            (Some("ack"), Some("accepted")),
            "{ack}"
        );
        gatekeeper.send(r#"{"type":"bye"}"#).await;
    });

    // ... and the hostile clients all come at once.
    let mut hostile: JoinSet<&'static str> = JoinSet::new();

    // Before the hello: every error closes the connection.
    hostile.spawn(async move {
        let who = "malformed JSON before hello";
        let mut c = connect(addr).await;
        bad_line(&mut c, who, "{oops", "bad_json").await;
        expect_closed(&mut c, who).await;
        who
    });
    hostile.spawn(async move {
        let who = "an HTTP request";
        let mut c = connect(addr).await;
        c.send("GET / HTTP/1.1\r\nHost: piswarm\r\n\r").await;
        expect_error(&mut c, who, "bad_json", None).await;
        expect_closed(&mut c, who).await;
        who
    });
    hostile.spawn(async move {
        let who = "unknown type before hello";
        let mut c = connect(addr).await;
        bad_line(
            &mut c,
            who,
            r#"{"type":"launch","missiles":true}"#,
            "unknown_type",
        )
        .await;
        expect_closed(&mut c, who).await;
        who
    });
    hostile.spawn(async move {
        let who = "result before hello";
        let mut c = connect(addr).await;
        bad_line(&mut c, who, &result_line(3, |_| {}), "out_of_order").await;
        expect_closed(&mut c, who).await;
        who
    });
    hostile.spawn(async move {
        let who = "request before hello";
        let mut c = connect(addr).await;
        bad_line(
            &mut c,
            who,
            r#"{"type":"request","count":1}"#,
            "out_of_order",
        )
        .await;
        expect_closed(&mut c, who).await;
        who
    });
    hostile.spawn(async move {
        let who = "wrong protocol version";
        let mut c = connect(addr).await;
        let line = r#"{"type":"hello","version":2,"worker":"from-the-future"}"#;
        bad_line(&mut c, who, line, "unsupported_version").await;
        expect_closed(&mut c, who).await;
        let mut c = connect(addr).await;
        let line = r#"{"type":"hello","version":"1","worker":"stringly"}"#;
        bad_line(&mut c, who, line, "bad_message").await;
        expect_closed(&mut c, who).await;
        who
    });
    hostile.spawn(async move {
        let who = "oversized line before hello";
        let mut c = connect(addr).await;
        let _ = c.conn.send_raw(&vec![b'x'; 70_000]).await;
        expect_error(&mut c, who, "line_too_long", None).await;
        expect_closed(&mut c, who).await;
        who
    });
    hostile.spawn(async move {
        let who = "a client that connects and sends nothing";
        let mut c = connect(addr).await;
        expect_error(&mut c, who, "handshake_timeout", None).await;
        expect_closed(&mut c, who).await;
        who
    });
    hostile.spawn(async move {
        let who = "slowloris before hello (one byte per 100 ms)";
        let start = Instant::now();
        let c = connect(addr).await;
        let (err, _, sent) =
            trickle(c, br#"{"type":"hello","version":1,"worker":"slow"}"#, start).await;
        let err = err.unwrap_or_else(|| panic!("{who}: no error"));
        assert_eq!(err["code"], "handshake_timeout", "{who}: {err}");
        assert!(sent >= 3, "{who}: only {sent} bytes sent");
        who
    });
    hostile.spawn(async move {
        let who = "a TLS ClientHello on the plaintext listener";
        let mut c = connect(addr).await;
        let _ = c
            .conn
            .send_raw(&[0x16, 0x03, 0x01, 0x00, 0x05, 1, 2, 3, 4, 5, b'\n'])
            .await;
        expect_closed(&mut c, who).await;
        who
    });

    // After the hello: bad lines are answered and tolerated (up to 15), bad results are strikes.
    hostile.spawn(async move {
        let who = "malformed JSON after hello";
        let mut c = hello(addr, "malformed").await;
        bad_line(&mut c, who, "{oops", "bad_json").await;
        bad_line(&mut c, who, "", "bad_json").await;
        bad_line(&mut c, who, r#"{"type":"request","count":1"#, "bad_json").await;
        bad_line(&mut c, who, "[1, 2, 3]", "bad_message").await;
        bad_line(&mut c, who, r#""a string""#, "bad_message").await;
        bad_line(&mut c, who, r#"{"count":1}"#, "bad_message").await;
        bad_line(
            &mut c,
            who,
            r#"{"type":"request","count":1,"extra":0}"#,
            "bad_message",
        )
        .await;
        bad_line(
            &mut c,
            who,
            r#"{"type":"request","count":1,"count":2}"#,
            "bad_message",
        )
        .await;
        bad_line(
            &mut c,
            who,
            r#"{"type":"welcome","version":1}"#,
            "bad_message",
        )
        .await;
        let _ = c.conn.send_raw(b"\xff\xfe{\"type\":\"bye\"}\n").await;
        expect_error(&mut c, who, "bad_json", None).await;
        c.send(r#"{"type":"bye"}"#).await;
        expect_closed(&mut c, who).await;
        who
    });
    hostile.spawn(async move {
        let who = "unknown message type after hello";
        let mut c = hello(addr, "unknown-type").await;
        bad_line(&mut c, who, r#"{"type":"launch"}"#, "unknown_type").await;
        bad_line(&mut c, who, r#"{"type":"HELLO"}"#, "unknown_type").await;
        c.send(r#"{"type":"bye"}"#).await;
        expect_closed(&mut c, who).await;
        who
    });
    hostile.spawn(async move {
        let who = "a second hello";
        let mut c = hello(addr, "twice").await;
        bad_line(
            &mut c,
            who,
            r#"{"type":"hello","version":1,"worker":"twice"}"#,
            "out_of_order",
        )
        .await;
        c.send(r#"{"type":"bye"}"#).await;
        expect_closed(&mut c, who).await;
        who
    });
    hostile.spawn(async move {
        let who = "NaN, Infinity and 1e999";
        let mut c = hello(addr, "non-finite").await;
        for raw in [
            "NaN",
            "Infinity",
            "-Infinity",
            "1e999",
            "-1e999",
            "nan",
            "inf",
        ] {
            bad_line(&mut c, who, &result_with_raw_pi(5, raw), "bad_json").await;
        }
        let line = result_line(5, |_| {}).replace("\"duration_s\":0.01", "\"duration_s\":NaN");
        bad_line(&mut c, who, &line, "bad_json").await;
        c.send(r#"{"type":"bye"}"#).await;
        expect_closed(&mut c, who).await;
        who
    });
    hostile.spawn(async move {
        let who = "negative and out-of-range numbers";
        let mut c = hello(addr, "out-of-range").await;
        let huge = "99999999999999999999999999999999999999999999";
        let u128_plus = "9".repeat(40); // 40 digits, more than 2^128 − 1
        let cases: Vec<String> = vec![
            result_line(5, |v| v["id"] = "-5".into()),
            result_line(5, |v| v["id"] = (-5).into()),
            result_line(5, |v| v["id"] = huge.into()),
            result_line(5, |v| v["a"] = huge.into()),
            result_line(5, |v| v["even_sum"] = huge.into()),
            result_line(5, |v| v["odd_sum"] = "-1".into()),
            result_line(5, |v| v["even_sum"] = u128_plus.clone().into()),
            result_line(5, |v| v["id"] = 1.5.into()),
            result_line(5, |v| v["b"] = "1e9".into()),
            result_line(5, |v| v["b"] = " 5".into()),
            result_line(5, |_| {}).replace("\"id\":\"5\"", "\"id\":18446744073709551616"),
            r#"{"type":"request","count":-1}"#.to_string(),
            r#"{"type":"request","count":4294967296}"#.to_string(),
            r#"{"type":"hello","version":-1,"worker":"x"}"#.to_string(),
        ];
        for line in &cases {
            bad_line(&mut c, who, line, "bad_message").await;
        }
        c.send(r#"{"type":"bye"}"#).await;
        expect_closed(&mut c, who).await;
        who
    });
    hostile.spawn(async move {
        let who = "sixteen bad lines";
        let mut c = hello(addr, "noisy").await;
        for _ in 0..15 {
            bad_line(&mut c, who, "{oops", "bad_json").await;
        }
        c.send("{oops").await;
        expect_error(&mut c, who, "bad_json", None).await;
        let last = expect_error(&mut c, who, "bad_message", None).await;
        assert!(
            last["message"].as_str().unwrap().contains("too many"),
            "{last}"
        );
        expect_closed(&mut c, who).await;
        who
    });
    hostile.spawn(async move {
        let who = "results for intervals not assigned to the sender";
        let mut c = hello(addr, "thief").await;
        // Correct results, but for intervals this connection does not hold: one likely held by an
        // honest worker right now, one probably not issued yet.
        c.send(&result_line(12, |_| {})).await;
        expect_error(&mut c, who, "not_assigned", Some(12)).await;
        c.send(&result_line(190, |_| {})).await;
        expect_error(&mut c, who, "not_assigned", Some(190)).await;
        c.send(r#"{"type":"bye"}"#).await;
        expect_closed(&mut c, who).await;
        who
    });
    hostile.spawn(async move {
        let who = "the same correct result twice";
        let line = result_line(repeat_id, |_| {});
        repeater.send(&line).await;
        let ack = repeater.recv().await.unwrap();
        assert_eq!(
            (ack["type"].as_str(), ack["status"].as_str()),
            (Some("ack"), Some("accepted")),
            "{who}: {ack}"
        );
        repeater.send(&line).await;
        expect_error(&mut repeater, who, "not_assigned", Some(repeat_id)).await;
        repeater.send(r#"{"type":"bye"}"#).await;
        expect_closed(&mut repeater, who).await;
        who
    });
    hostile.spawn(async move {
        let who = "a wrong even sum";
        even_liar
            .send(&result_line(even_id, |v| {
                let (a, b) = bounds(even_id);
                v["even_sum"] = (evens(a, b) + 2).to_string().into();
            }))
            .await;
        expect_error(&mut even_liar, who, "wrong_sums", Some(even_id)).await;
        even_liar.send(r#"{"type":"bye"}"#).await;
        expect_closed(&mut even_liar, who).await;
        who
    });
    hostile.spawn(async move {
        let who = "a wrong odd sum";
        odd_liar
            .send(&result_line(odd_id, |v| {
                let (a, b) = bounds(odd_id);
                v["odd_sum"] = (odds(a, b) - 1).to_string().into();
            }))
            .await;
        expect_error(&mut odd_liar, who, "wrong_sums", Some(odd_id)).await;
        odd_liar.send(r#"{"type":"bye"}"#).await;
        expect_closed(&mut odd_liar, who).await;
        who
    });
    hostile.spawn(async move {
        let who = "wrong bounds and an id outside the grid";
        bounds_liar
            .send(&result_line(bounds_id, |v| {
                v["b"] = (bounds(bounds_id).1 + 1).to_string().into();
            }))
            .await;
        expect_error(&mut bounds_liar, who, "wrong_interval", Some(bounds_id)).await;
        let outside = N / CHUNK;
        bounds_liar.send(&result_line(outside, |_| {})).await;
        expect_error(&mut bounds_liar, who, "wrong_interval", Some(outside)).await;
        bounds_liar.send(r#"{"type":"bye"}"#).await;
        expect_closed(&mut bounds_liar, who).await;
        who
    });
    hostile.spawn(async move {
        let who = "a π partial off by one part in 10^7 near 0";
        pi_liar
            .send(&result_line(0, |v| {
                let pi = v["pi"].as_f64().unwrap();
                v["pi"] = (pi * (1.0 + 1e-7)).into();
            }))
            .await;
        let err = expect_error(&mut pi_liar, who, "wrong_pi", Some(0)).await;
        assert!(
            err["message"].as_str().unwrap().contains("expected"),
            "{err}"
        );
        pi_liar.send(r#"{"type":"bye"}"#).await;
        expect_closed(&mut pi_liar, who).await;
        who
    });
    hostile.spawn(async move {
        let who = "a liar with three bad results";
        let [x, y, z] = liar_ids[..] else {
            unreachable!()
        };
        liar.send(&result_line(x, |v| v["even_sum"] = "0".into()))
            .await;
        liar.send(&result_line(y, |v| v["pi"] = 0.0.into())).await;
        liar.send(&result_line(z, |v| v["odd_sum"] = "1".into()))
            .await;
        expect_error(&mut liar, who, "wrong_sums", Some(x)).await;
        expect_error(&mut liar, who, "wrong_pi", Some(y)).await;
        expect_error(&mut liar, who, "wrong_sums", Some(z)).await;
        expect_error(&mut liar, who, "refused", None).await;
        expect_closed(&mut liar, who).await;
        // Strikes belong to the connection: a name proves nothing, so nothing is refused by
        // name (a liar could otherwise get an honest worker's name refused). A new connection
        // starts with no strikes, and its lies are refused like any others.
        let mut again = connect(addr).await;
        let m = again.hello("liar").await;
        assert_eq!(m["type"], "welcome", "{who}: {m}");
        again
            .send(&result_line(x, |v| v["even_sum"] = "0".into()))
            .await;
        expect_error(&mut again, who, "wrong_sums", Some(x)).await;
        who
    });
    hostile.spawn(async move {
        let who = "oversized line after hello";
        let mut c = hello(addr, "oversized").await;
        let line = format!(r#"{{"type":"heartbeat","pad":"{}"}}"#, "y".repeat(70_000));
        let _ = c.conn.send_raw(line.as_bytes()).await;
        expect_error(&mut c, who, "line_too_long", None).await;
        expect_closed(&mut c, who).await;
        who
    });
    hostile.spawn(async move {
        let who = "slowloris after hello (one byte per 100 ms, never a whole line)";
        let mut c = connect(addr).await;
        c.send(r#"{"type":"hello","version":1,"worker":"slowloris"}"#)
            .await;
        let start = Instant::now();
        assert_eq!(c.recv().await.unwrap()["type"], "welcome");
        let (err, _, sent) = trickle(
            c,
            br#"{"type":"heartbeat","pad":"zzzzzzzzzzzzzzzzzzzz"#,
            start,
        )
        .await;
        let err = err.unwrap_or_else(|| panic!("{who}: no error"));
        assert_eq!(err["code"], "idle_timeout", "{who}: {err}");
        assert!(sent >= 5, "{who}: only {sent} bytes sent");
        who
    });
    hostile.spawn(async move {
        let who = "silent after hello";
        let mut c = connect(addr).await;
        c.send(r#"{"type":"hello","version":1,"worker":"mute"}"#)
            .await;
        assert_eq!(c.recv().await.unwrap()["type"], "welcome");
        expect_error(&mut c, who, "idle_timeout", None).await;
        expect_closed(&mut c, who).await;
        who
    });

    let scenarios = hostile.len();
    let mut survived = Vec::new();
    while let Some(done) = hostile.join_next().await {
        match done {
            Ok(who) => survived.push(who),
            Err(e) => {
                let log = String::from_utf8_lossy(&log.0.lock().unwrap()).into_owned();
                panic!(
                    "a hostile scenario failed after {:?}: {e}\nserver log:\n{log}",
                    test_start.elapsed()
                );
            }
        }
    }
    assert_eq!(survived.len(), scenarios);
    let before_release = server.coordinator.snapshot().borrow().clone();
    eprintln!(
        "hostile clients done after {:?}; {} of {} intervals done",
        test_start.elapsed(),
        before_release.totals.intervals_done,
        N / CHUNK
    );
    assert!(
        !before_release.complete,
        "the job was still running when the last hostile client was done"
    );

    // Let the job finish.
    gate.cancel();
    gatekeeper_task.await.unwrap();
    for (i, h) in honest.into_iter().enumerate() {
        let summary = tokio::time::timeout(Duration::from_secs(30), h)
            .await
            .expect("honest worker finishes")
            .unwrap()
            .unwrap_or_else(|e| panic!("honest worker {i} failed: {e}"));
        assert!(summary.accepted > 0, "honest worker {i}: {summary:?}");
        assert_eq!(
            summary.errors, 0,
            "honest worker {i} saw errors: {summary:?}"
        );
    }

    let report = server.coordinator.report().await.unwrap();
    assert_eq!((report.terms, report.intervals), (N, N / CHUNK));
    assert_eq!(report.even_sum.0, evens(0, N - 1));
    assert_eq!(report.odd_sum.0, odds(0, N - 1));
    let exact = prefix_pi(N);
    assert!(
        (report.pi - exact).abs() <= 2e-15,
        "pi {} vs {exact} (diff {:e})",
        report.pi,
        report.pi - exact
    );
    server.stop().await;

    // Every kind of bad input left a line in the log; nothing panicked.
    let log = String::from_utf8_lossy(&log.0.lock().unwrap()).into_owned();
    for expected in [
        "bad hello",
        "message before hello",
        "unsupported protocol version",
        "line too long",
        "handshake timeout",
        "idle timeout",
        "bad message",
        "hello was already received",
        "too many bad messages",
        "not assigned",
        "rejected result",
        "too many bad results",
        "code=Refused",
        "TLS client",
    ] {
        assert!(
            log.contains(expected),
            "no log line with {expected:?}:\n{log}"
        );
    }
    // Panics in the server's tasks reach this log through the panic hook of `logging_runtime`.
    assert!(!log.contains("panicked"), "{log}");
}
