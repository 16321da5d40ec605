//! A real crowd over loopback TCP: a slow honest client, hoarders, a coordinator replaced by one
//! with another store. Nothing here asserts a duration (the crowd benchmark measures those,
//! docs/performance.md); what is checked is what happened: backup copies issued and won, nobody
//! honest struck, every interval once, the sums exact.

use crate::common::{self, evens, odds, RawClient, TestServer};
use piswarm::job::Job;
use piswarm::wire::{AckStatus, ServerMessage};
use piswarm::worker::{self, WorkerConfig};
use serde_json::{json, Value};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// A result line for interval `id` = [a, b], computed by the library's kernel.
fn result_line(id: u64, a: u64, b: u64) -> String {
    let r = worker::compute(id, a, b);
    serde_json::to_string(&json!({
        "type": "result", "id": id.to_string(), "a": a.to_string(), "b": b.to_string(),
        "even_sum": r.even_sum.0.to_string(), "odd_sum": r.odd_sum.0.to_string(),
        "pi": r.pi, "duration_s": r.duration_s,
    }))
    .unwrap()
}

fn dec(v: &Value) -> u64 {
    v.as_str().unwrap().parse().unwrap()
}

/// Waits (at most `limit`, a hang guard) until the coordinator's snapshot says complete.
async fn wait_complete(server: &TestServer, limit: Duration) {
    tokio::time::timeout(limit, server.coordinator.wait_complete())
        .await
        .expect("the job did not complete")
        .unwrap();
}

/// One honest client that asks for 16 intervals and answers one every 1.5 s (a phone), and one
/// fast worker that joins after it: the slow client is given no more than its share before it
/// has delivered (2 of a 120-interval job), the fast worker gets backup copies of what the slow
/// one holds once nothing fresh is left, and wins them; the slow client's late copies are
/// `duplicate`s, never errors; every sum is exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_slow_client_does_not_hold_the_run_hostage() {
    let job = Job::new(Some(120_000_000), Some(1_000_000)).unwrap();
    let server = TestServer::start(job).await;
    let mut slow = RawClient::connect(server.addr).await;
    slow.hello("phone").await;
    slow.send(r#"{"type":"request","count":16}"#).await;
    let mut held = Vec::new();
    while held.len() < 2 {
        let m = slow.recv().await.unwrap();
        assert_eq!(m["type"], "assign", "{m}");
        held.push((dec(&m["id"]), dec(&m["a"]), dec(&m["b"])));
    }
    // Its allowance before a first result: 120 / 256 → at least 2; the 14 more it asked for wait.
    let workers = server.coordinator.workers().await.unwrap();
    assert_eq!(workers[0].in_hand, 2, "{workers:?}");
    assert_eq!(workers[0].allowance, 2, "{workers:?}");

    let stop = CancellationToken::new();
    let mut config = WorkerConfig::new(server.addr.to_string());
    config.threads = 2;
    config.name = "fast".into();
    let fast = tokio::spawn(worker::run_worker(config, stop.clone()));

    // The phone: one result every 1.5 s, in the order assigned, asking for one more each time,
    // until it is told the job is done. Every answer it gets is an `ack` (never an `error`).
    let phone = tokio::spawn(async move {
        // A minute of silence fails the test (the phone's read deadline).
        slow.conn.set_read_timeout(Some(Duration::from_secs(60)));
        let (mut accepted, mut duplicate) = (0u64, 0u64);
        let mut queue: std::collections::VecDeque<(u64, u64, u64)> = held.into();
        let computing = tokio::time::sleep(Duration::from_millis(1500)); // its slowness
        tokio::pin!(computing);
        loop {
            tokio::select! {
                () = &mut computing, if !queue.is_empty() => {
                    let (id, a, b) = queue.pop_front().unwrap();
                    let lines = format!("{}\n{}\n", result_line(id, a, b), r#"{"type":"request","count":1}"#);
                    // The server may be closing (the job is done): what it answers tells.
                    let _ = slow.conn.send_raw(lines.as_bytes()).await;
                    computing.as_mut().reset(tokio::time::Instant::now() + Duration::from_millis(1500));
                }
                m = slow.recv_message() => {
                    match m.expect("closed before done") {
                        ServerMessage::Assign { id, a, b, .. } => queue.push_back((id.0, a.0, b.0)),
                        ServerMessage::Ack { status: AckStatus::Accepted, .. } => accepted += 1,
                        ServerMessage::Ack { status: AckStatus::Duplicate, .. } => duplicate += 1,
                        ServerMessage::Done { .. } => return (accepted, duplicate),
                        m @ (ServerMessage::Welcome { .. } | ServerMessage::Error { .. }) => {
                            panic!("the honest slow client got {m:?}")
                        }
                    }
                }
            }
        }
    });
    wait_complete(&server, Duration::from_secs(120)).await;
    let summary = tokio::time::timeout(Duration::from_secs(30), fast)
        .await
        .expect("the fast worker did not finish")
        .unwrap()
        .unwrap();
    let (accepted, duplicate) = tokio::time::timeout(Duration::from_secs(30), phone)
        .await
        .expect("the slow client was not told done")
        .unwrap();
    let snap = server.coordinator.snapshot().borrow().clone();
    assert_eq!(summary.errors, 0);
    assert_eq!(snap.results_rejected, 0, "nobody honest is struck");
    assert!(
        snap.backups_issued >= 1 && snap.backups_won >= 1,
        "the fast worker took over the slow client's intervals by backup copies: {snap:?}"
    );
    assert!(snap.backups_won <= snap.backups_issued);
    assert_eq!(
        summary.accepted + accepted,
        120,
        "every interval counted once (phone: {accepted} accepted, {duplicate} duplicates)"
    );
    assert_eq!(snap.totals.even_sum.0, evens(0, 119_999_999));
    assert_eq!(snap.totals.odd_sum.0, odds(0, 119_999_999));
    let pi = common::prefix_pi(120_000_000);
    assert!(
        (snap.totals.pi - pi).abs() <= snap.totals.pi_bound,
        "{snap:?}"
    );
    stop.cancel();
    server.stop().await;
}

/// 41 connections take every interval they may and never answer (a 64-interval job: their
/// allowance before a first result is 2 each, so the first 32 hold everything): a newcomer's request is
/// answered at once with a backup copy, and the newcomer alone completes the job through backups,
/// exactly; the hoarders are not struck (they never sent anything wrong).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hoarders_holding_every_interval_do_not_starve_a_newcomer() {
    let job = Job::new(Some(64_000), Some(1000)).unwrap();
    let server = TestServer::start(job).await;
    let mut hoarders = Vec::new();
    let mut taken = 0;
    for i in 0..41 {
        let mut h = RawClient::connect(server.addr).await;
        h.hello(&format!("hoarder-{i}")).await;
        h.send(r#"{"type":"request","count":64}"#).await;
        if taken < 64 {
            for _ in 0..2 {
                assert_eq!(h.recv().await.unwrap()["type"], "assign");
                taken += 1;
            }
        }
        hoarders.push(h);
    }
    let snap = server.coordinator.snapshot().borrow().clone();
    assert_eq!(snap.in_flight, 64, "the hoarders hold every interval");

    let mut newcomer = RawClient::connect(server.addr).await;
    newcomer.hello("newcomer").await;
    newcomer.send(r#"{"type":"request","count":4}"#).await;
    let first = newcomer.recv().await.expect("an assignment");
    assert_eq!(first["type"], "assign", "{first}");
    assert_eq!(first["backup"], json!(true), "{first}");
    let mut queue =
        std::collections::VecDeque::from([(dec(&first["id"]), dec(&first["a"]), dec(&first["b"]))]);
    let mut accepted = 0;
    let done = tokio::time::timeout(Duration::from_secs(120), async {
        loop {
            while let Some((id, a, b)) = queue.pop_front() {
                newcomer.send(&result_line(id, a, b)).await;
                newcomer.send(r#"{"type":"request","count":1}"#).await;
            }
            let m = newcomer
                .recv_message()
                .await
                .expect("the server closed before done");
            match m {
                ServerMessage::Assign { id, a, b, .. } => queue.push_back((id.0, a.0, b.0)),
                ServerMessage::Ack { status, .. } => {
                    assert_eq!(status, AckStatus::Accepted, "{m:?}");
                    accepted += 1;
                }
                ServerMessage::Done { .. } => break,
                ServerMessage::Welcome { .. } | ServerMessage::Error { .. } => {
                    panic!("the newcomer got {m:?}")
                }
            }
        }
    })
    .await;
    assert!(done.is_ok(), "the job did not complete");
    assert_eq!(accepted, 64);
    wait_complete(&server, Duration::from_secs(30)).await;
    let snap = server.coordinator.snapshot().borrow().clone();
    assert_eq!(snap.backups_won, 64, "{snap:?}");
    assert_eq!(snap.results_rejected, 0);
    assert_eq!(snap.totals.even_sum.0, evens(0, 63_999));
    assert_eq!(snap.totals.odd_sum.0, odds(0, 63_999));
    drop(hoarders);
    server.stop().await;
}

/// A `--retry-for` worker holding results its coordinator never acknowledged reconnects to a
/// coordinator that came back with another store (another job, and a run numbered 1 too): the
/// `run_uid`s differ, so it drops those results (and says so) instead of re-sending them; it is
/// never struck, and the new run completes exactly.
#[test]
fn a_worker_drops_the_results_of_a_replaced_coordinators_run() {
    let dir = tempfile::tempdir().unwrap();
    let port = common::free_port();
    let addr = format!("127.0.0.1:{port}");
    // The first coordinator, played by hand: run 1 of a job of 1 000-term intervals; it assigns
    // five, reads their results, and vanishes without acknowledging any.
    let listener = std::net::TcpListener::bind(&addr).unwrap();
    let log = dir.path().join("worker.log");
    let mut worker = common::spawn_piswarm(
        &[
            "worker",
            "--connect",
            &addr,
            "--threads",
            "1",
            "--name",
            "w",
            "--retry-for",
            "60s",
        ],
        &log,
    );
    {
        use std::io::{BufRead, BufReader, Write};
        let (stream, _) = listener.accept().unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut w = stream;
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        assert!(line.contains("\"hello\""), "{line}");
        writeln!(
            w,
            r#"{{"type":"welcome","version":1,"server":"by hand","run":1,"run_uid":"00000000000000000000000000000001","terms":"10000","chunk":"1000","max_prefetch":8,"heartbeat_s":20.0}}"#
        )
        .unwrap();
        for k in 0..5u64 {
            writeln!(
                w,
                r#"{{"type":"assign","id":"{k}","a":"{}","b":"{}","lease_s":30.0}}"#,
                k * 1000,
                k * 1000 + 999
            )
            .unwrap();
        }
        let mut results = 0;
        while results < 5 {
            line.clear();
            assert!(reader.read_line(&mut line).unwrap() > 0, "the worker left");
            results += usize::from(line.contains("\"result\""));
        }
        // Gone, without a word: the worker keeps its five results unacknowledged.
    }
    drop(listener);
    // The coordinator comes back with a fresh store and another job: its run 1 has 2 000-term
    // intervals, so the old ids would name other terms (`wrong_interval`, a strike each).
    let serve_log = dir.path().join("serve.log");
    let db = dir.path().join("fresh.db");
    let out = dir.path().join("out");
    let mut serve = common::spawn_piswarm(
        &[
            "serve",
            "--listen",
            &addr,
            "--terms",
            "40000",
            "--chunk",
            "2000",
            "--db",
            db.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--exit-when-done",
        ],
        &serve_log,
    );
    assert_eq!(
        worker.wait(Duration::from_secs(120)),
        Some(0),
        "{}",
        std::fs::read_to_string(&log).unwrap()
    );
    assert_eq!(serve.wait(Duration::from_secs(60)), Some(0));
    let wlog = std::fs::read_to_string(&log).unwrap();
    assert!(
        wlog.contains(
            "5 unacknowledged results of run 1 (00000000000000000000000000000001) are dropped"
        ),
        "{wlog}"
    );
    assert!(
        !wlog.contains("wrong_interval") && !wlog.contains("refused"),
        "{wlog}"
    );
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("final.json")).unwrap()).unwrap();
    let expected = common::run_json("40000", "2000");
    for field in ["even_sum", "odd_sum", "pi", "terms", "intervals"] {
        assert_eq!(
            report[field], expected[field],
            "{field}: {report} vs {expected}"
        );
    }
}

/// The original's whole demo from the page: 259 one-interval clients created with the
/// dashboard's Create button (the cap shows 1 000), all served, the sums exact on the page.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_fifty_nine_clients_created_from_the_page() {
    use crate::web_browser::{click, dashboard, in_browser, open, set_value, text, wait_until};
    let d = dashboard(Job::new(Some(259_000), Some(1000)).unwrap(), true).await;
    let url = d.url.clone();
    let (cap, even, odd) = in_browser(move |tab| {
        open(&tab, &url);
        wait_until(
            &tab,
            "document.getElementById('server-state').dataset.state === 'running'",
        );
        let cap = text(&tab, "clients-cap");
        set_value(&tab, "client-count", "259");
        set_value(&tab, "client-mode", "once");
        click(&tab, "create-clients");
        wait_until(
            &tab,
            "document.getElementById('clients-feedback').textContent.includes('259')",
        );
        wait_until(
            &tab,
            "document.getElementById('f-intervals').textContent === '259'",
        );
        (cap, text(&tab, "f-even"), text(&tab, "f-odd"))
    })
    .await;
    assert!(cap.contains("1,000"), "the page's cap: {cap}");
    // [0, 258 999]: the evens are m(m − 1), the odds m², m = 129 500.
    let m: u128 = 129_500;
    let commas = |v: u128| {
        let s = v.to_string();
        let mut out = String::new();
        for (i, c) in s.chars().enumerate() {
            if i > 0 && (s.len() - i) % 3 == 0 {
                out.push(',');
            }
            out.push(c);
        }
        out
    };
    assert_eq!(even, commas(m * (m - 1)));
    assert_eq!(odd, commas(m * m));
    d.close().await;
}
