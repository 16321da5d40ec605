//! Real-process regression tests for the defects of issue 11, one test per promise that broke:
//! the simulator (tests/it/simulation/) checks these on every fault schedule; here each one is
//! also reproduced the way a user met it, with real `piswarm` processes over loopback TCP.

use crate::common::*;
use crate::maths_oracle::{exact_partial, rat, Q};
use num_traits::Signed;
use piswarm::coordinator::CoreConfig;
use piswarm::job::verify::Tolerance;
use piswarm::job::Job;
use piswarm::maths::{kernel, series, sums};
use piswarm::net::ServerConfig;
use piswarm::wire::{DoneReason, ServerMessage};
use serde_json::{json, Value};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

/// A blocking client for these process-level tests: the suite's hand-driven client (the
/// library's connection, lines typed by hand) on a runtime of its own, with 30 s per read.
struct Client {
    runtime: tokio::runtime::Runtime,
    raw: RawClient,
}

impl Client {
    fn connect(port: u16) -> Client {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        let mut raw = runtime.block_on(RawClient::connect(addr));
        raw.conn.set_read_timeout(Some(Duration::from_secs(30)));
        Client { runtime, raw }
    }

    fn send(&mut self, v: Value) {
        self.runtime.block_on(self.raw.send(&v.to_string()));
    }

    /// The next message, or None at the end of the connection.
    fn recv(&mut self) -> Option<Value> {
        self.runtime.block_on(self.raw.recv())
    }

    /// The next message, typed; None at the end of the connection.
    fn recv_message(&mut self) -> Option<ServerMessage> {
        self.runtime.block_on(self.raw.recv_message())
    }

    fn expect(&mut self, ty: &str) -> Value {
        let m = self
            .recv()
            .unwrap_or_else(|| panic!("closed; expected {ty}"));
        assert_eq!(m["type"], ty, "{m}");
        m
    }
}

/// An honest result for interval `id` of a job of chunk `chunk`.
fn result(id: u64, chunk: u64) -> Value {
    let (a, b) = (id * chunk, id * chunk + chunk - 1);
    json!({
        "type": "result", "id": id.to_string(), "a": a.to_string(), "b": b.to_string(),
        "even_sum": sums::even_sum(a, b).to_string(), "odd_sum": sums::odd_sum(a, b).to_string(),
        "pi": kernel::pi_partial(a, b).unwrap(), "duration_s": 0.001,
    })
}

fn serve_args<'a>(port: &'a str, dir: &'a Path, extra: &[&'a str]) -> Vec<String> {
    let mut args: Vec<String> = [
        "serve",
        "--no-http",
        "--quiet",
        "--listen",
        port,
        "--db",
        dir.join("piswarm.db").to_str().unwrap(),
        "--out",
        dir.to_str().unwrap(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

fn serve(port: u16, dir: &Path, extra: &[&str], log: &str) -> Process {
    let addr = format!("127.0.0.1:{port}");
    let args = serve_args(&addr, dir, extra);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    spawn_piswarm(&args, &dir.join(log))
}

fn log(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(name)).unwrap_or_default()
}

/// Defect 1: the transcript of docs/protocol.md §9, by hand. Every result is answered before
/// `done`, with and without `--exit-when-done`; and a coordinator killed the moment it says
/// `done` has lost nothing (a restart finds the run complete).
#[test]
fn every_result_is_answered_before_done_and_done_means_durable() {
    for exit_when_done in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let mut extra = vec!["--terms", "3000", "--chunk", "1000"];
        if exit_when_done {
            extra.push("--exit-when-done");
        }
        let mut server = serve(port, dir.path(), &extra, "serve.log");
        wait_for_port(port);
        let mut c = Client::connect(port);
        c.send(json!({"type": "hello", "version": 1, "worker": "doc-example"}));
        c.expect("welcome");
        c.send(json!({"type": "request", "count": 2}));
        c.expect("assign");
        c.expect("assign");
        c.send(result(0, 1000));
        assert_eq!(c.expect("ack")["status"], "accepted");
        let mut wrong = result(1, 1000);
        wrong["even_sum"] = json!("749502");
        c.send(wrong);
        assert_eq!(c.expect("error")["code"], "wrong_sums");
        c.send(json!({"type": "request", "count": 2}));
        c.expect("assign");
        c.expect("assign");
        c.send(result(1, 1000));
        c.send(result(2, 1000));
        let mut acks = Vec::new();
        let done = loop {
            match c.recv_message().expect("a done before the end") {
                ServerMessage::Ack { id, .. } => acks.push(id.0),
                ServerMessage::Done { reason } => break reason,
                m @ (ServerMessage::Welcome { .. }
                | ServerMessage::Assign { .. }
                | ServerMessage::Error { .. }) => panic!("unexpected {m:?}"),
            }
        };
        assert_eq!(acks, [1, 2], "both answered before done");
        assert_eq!(done, DoneReason::JobComplete);
        // Killed the moment it says done: everything acknowledged is there after a restart.
        server.kill();
        let mut again = serve(port, dir.path(), &extra, "again.log");
        assert_eq!(again.wait(Duration::from_secs(30)), Some(0));
        let said = log(dir.path(), "again.log");
        assert!(said.contains("is complete"), "{said}");
        assert_eq!(stored_results(&dir.path().join("piswarm.db"), 1), 3);
    }
}

/// Defects 6 and 8: a complete run is never restarted silently and its files are never
/// overwritten; an unfinished run of another job is never orphaned silently.
#[test]
fn restarting_on_a_complete_run_changes_nothing_and_another_job_asks_first() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let job = ["--terms", "5000", "--chunk", "1000"];
    let mut server = serve(
        port,
        dir.path(),
        &[&job[..], &["--exit-when-done"]].concat(),
        "1.log",
    );
    wait_for_port(port);
    let mut w = spawn_piswarm(
        &[
            "worker",
            "--connect",
            &format!("127.0.0.1:{port}"),
            "--threads",
            "1",
        ],
        &dir.path().join("w.log"),
    );
    assert_eq!(server.wait(Duration::from_secs(60)), Some(0));
    assert_eq!(w.wait(Duration::from_secs(30)), Some(0));
    let files = ["final.json", "results.json"];
    let before: Vec<(Vec<u8>, std::time::SystemTime)> = files
        .iter()
        .map(|f| {
            let p = dir.path().join(f);
            (
                std::fs::read(&p).unwrap(),
                p.metadata().unwrap().modified().unwrap(),
            )
        })
        .collect();
    let report: Value = serde_json::from_slice(&before[0].0).unwrap();
    assert_eq!(report["intervals"], 5);

    // The same job again: complete, nothing to do, nothing written.
    let mut again = serve(port, dir.path(), &job, "2.log");
    assert_eq!(again.wait(Duration::from_secs(30)), Some(0));
    assert!(log(dir.path(), "2.log").contains("is complete"));
    for (f, (bytes, mtime)) in files.iter().zip(&before) {
        let p = dir.path().join(f);
        assert_eq!(&std::fs::read(&p).unwrap(), bytes, "{f} changed");
        assert_eq!(
            &p.metadata().unwrap().modified().unwrap(),
            mtime,
            "{f} rewritten"
        );
    }

    // An unfinished run of an open-ended job, then another job: serve asks what to do.
    let mut open = serve(port, dir.path(), &["--new-run"], "3.log");
    // Not the port: serve binds it before it opens the store and creates the run, so a
    // connection can succeed before the run exists. This line comes once it does.
    started(dir.path(), "3.log");
    open.kill();
    let mut asked = serve(port, dir.path(), &job, "4.log");
    assert_eq!(asked.wait(Duration::from_secs(30)), Some(2));
    let said = log(dir.path(), "4.log");
    assert!(
        said.contains("--resume 2") && said.contains("--new-run"),
        "{said}"
    );
    // It may be resumed explicitly.
    let mut resumed = serve(port, dir.path(), &["--resume", "2"], "5.log");
    started(dir.path(), "5.log");
    resumed.kill();
    let said = log(dir.path(), "5.log");
    assert!(said.contains("resuming run 2"), "{said}");
}

/// Waits until the serve writing `log` says it is listening: its run exists in the store by then.
fn started(dir: &Path, name: &str) {
    wait_until(
        &format!("{name} to say the coordinator is listening"),
        Duration::from_secs(60),
        || log(dir, name).contains("coordinator listening on"),
    );
}

/// Defect 5: one coordinator per store. The second `serve` names the store and its holder, and
/// exits 1 without serving.
#[test]
fn a_second_serve_on_the_same_store_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (p1, p2) = (free_port(), free_port());
    let _first = serve(p1, dir.path(), &["--terms", "1e12"], "1.log");
    wait_for_port(p1);
    let mut second = serve(p2, dir.path(), &["--terms", "1e12"], "2.log");
    assert_eq!(second.wait(Duration::from_secs(30)), Some(1));
    let said = log(dir.path(), "2.log");
    assert!(said.contains("in use by another piswarm serve"), "{said}");
    assert!(
        said.contains("piswarm.db") && said.contains("pid "),
        "{said}"
    );
    assert!(
        TcpStream::connect(("127.0.0.1", p2)).is_err(),
        "the second serve never bound its port"
    );
}

/// Defects 2 and 3: ten coordinator kills, and honest workers with `--retry-for` are never
/// struck, never refused, and finish the job (exit 0) with every interval stored once.
#[test]
fn no_honest_worker_is_struck_across_ten_coordinator_kills() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let db = dir.path().join("piswarm.db");
    let job = ["--terms", "4e9", "--chunk", "2e6"];
    let mut server = serve(port, dir.path(), &job, "serve.log");
    wait_for_port(port);
    let workers: Vec<Process> = (0..2)
        .map(|i| {
            spawn_piswarm(
                &[
                    "worker",
                    "--connect",
                    &format!("127.0.0.1:{port}"),
                    "--threads",
                    "1",
                    "--retry-for",
                    "60s",
                    "--name",
                    &format!("honest-{i}"),
                ],
                &dir.path().join(format!("w{i}.log")),
            )
        })
        .collect();
    for kill in 0..10 {
        let target = (kill + 1) * 150;
        wait_until("progress between kills", Duration::from_secs(120), || {
            stored_results(&db, 1) >= target
        });
        server.kill();
        server = serve(port, dir.path(), &job, "serve.log");
    }
    wait_until("the job's end", Duration::from_secs(180), || {
        stored_results(&db, 1) >= 2000
    });
    for (i, mut w) in workers.into_iter().enumerate() {
        assert_eq!(w.wait(Duration::from_secs(60)), Some(0), "worker {i}");
        let said = log(dir.path(), &format!("w{i}.log"));
        assert!(
            !said.contains("server error"),
            "worker {i} was answered an error:\n{said}"
        );
        assert!(!said.contains("refused this worker"), "{said}");
    }
    server.kill();
    let store = piswarm::store::Store::open_read_only(&db).unwrap();
    assert_eq!(
        store.count_results(piswarm::coordinator::RunId(1)).unwrap(),
        (2000, 2000)
    );
    let report = store.final_report(piswarm::coordinator::RunId(1)).unwrap();
    let n = 4_000_000_000u64;
    assert_eq!(report.even_sum.0, evens(0, n - 1));
    assert_eq!(report.odd_sum.0, odds(0, n - 1));
}

/// Defect 3: `--retry-for` is the time without a coordinator, not since the worker started.
#[test]
fn retry_for_counts_the_time_without_a_coordinator() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let db = dir.path().join("piswarm.db");
    let job = ["--terms", "6e10", "--chunk", "1e8", "--exit-when-done"];
    let mut server = serve(port, dir.path(), &job, "serve.log");
    wait_for_port(port);
    let started = std::time::Instant::now();
    let mut worker = spawn_piswarm(
        &[
            "worker",
            "--connect",
            &format!("127.0.0.1:{port}"),
            "--threads",
            "1",
            "--retry-for",
            "2s",
        ],
        &dir.path().join("w.log"),
    );
    // The worker has been up longer than its --retry-for when the coordinator goes away.
    wait_until(
        "a worker older than its --retry-for",
        Duration::from_secs(60),
        || started.elapsed() > Duration::from_secs(3) && stored_results(&db, 1) > 0,
    );
    server.kill();
    let mut server = serve(port, dir.path(), &job, "serve.log");
    assert_eq!(
        worker.wait(Duration::from_secs(300)),
        Some(0),
        "{}",
        log(dir.path(), "w.log")
    );
    assert_eq!(server.wait(Duration::from_secs(60)), Some(0));
    assert_eq!(stored_results(&db, 1), 600);
}

/// Defect 4: a re-sent result never takes an interval another live session holds, one never
/// handed out is `not_assigned`, and a negative duration is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resent_results_follow_their_documented_bounds() {
    let job = Job::new(Some(100_000), Some(1000)).unwrap();
    let server = TestServer::start(job).await;
    let mut holder = RawClient::connect(server.addr).await;
    holder.hello("holder").await;
    holder.send(r#"{"type":"request","count":1}"#).await;
    let assign = holder.recv().await.unwrap();
    assert_eq!(assign["id"], "0");
    let mut other = RawClient::connect(server.addr).await;
    other.hello("other").await;
    let mut resent = result(0, 1000);
    resent["resend"] = json!(true);
    other.send(&resent.to_string()).await;
    let m = other.recv().await.unwrap();
    assert_eq!(
        (m["type"].as_str(), m["status"].as_str()),
        (Some("ack"), Some("duplicate")),
        "{m}"
    );
    // The holder's own result still counts.
    holder.send(&result(0, 1000).to_string()).await;
    assert_eq!(holder.recv().await.unwrap()["status"], "accepted");
    // Never handed out (far beyond the handed-out ids, inside the grid).
    let mut far = result(90, 1000);
    far["resend"] = json!(true);
    other.send(&far.to_string()).await;
    let m = other.recv().await.unwrap();
    assert_eq!(
        (m["type"].as_str(), m["code"].as_str()),
        (Some("error"), Some("not_assigned")),
        "{m}"
    );
    for d in [-1.0, -0.0, -1e300] {
        holder.send(r#"{"type":"request","count":1}"#).await;
        let id: u64 = holder.recv().await.unwrap()["id"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        let mut r = result(id, 1000);
        r["duration_s"] = json!(d);
        holder.send(&r.to_string()).await;
        let m = holder.recv().await.unwrap();
        assert_eq!(
            (m["type"].as_str(), m["code"].as_str()),
            (Some("error"), Some("bad_message")),
            "{d}: {m}"
        );
        if d == -1e300 {
            break;
        }
    }
    server.stop().await;
}

/// Runs a job until a high-water mark is written and some results are stored, then kills
/// the coordinator and its worker.
fn run_then_crash(dir: &Path, port: u16, job: &[&str]) {
    let db = dir.join("piswarm.db");
    let mut server = serve(port, dir, job, "1.log");
    wait_for_port(port);
    let mut worker = spawn_piswarm(
        &[
            "worker",
            "--connect",
            &format!("127.0.0.1:{port}"),
            "--threads",
            "1",
            "--retry-for",
            "60s",
        ],
        &dir.join("w.log"),
    );
    // The high-water mark is written at most once a second, after commits.
    let mark = dir.join("piswarm.db.acked");
    wait_until("a high-water mark", Duration::from_secs(60), || {
        std::fs::read_to_string(&mark).is_ok_and(|t| !t.ends_with("results 0\n"))
            && stored_results(&db, 1) >= 20
    });
    server.kill();
    worker.kill();
}

/// Finishes the job after a crash; returns what the coordinator said, and checks the result.
fn finish(dir: &Path, port: u16, job: &[&str], n: u64) -> String {
    let mut server = serve(port, dir, &[job, &["--exit-when-done"]].concat(), "2.log");
    wait_for_port(port);
    let mut worker = spawn_piswarm(
        &[
            "worker",
            "--connect",
            &format!("127.0.0.1:{port}"),
            "--threads",
            "1",
        ],
        &dir.join("w2.log"),
    );
    assert_eq!(
        server.wait(Duration::from_secs(120)),
        Some(0),
        "{}",
        log(dir, "2.log")
    );
    assert_eq!(worker.wait(Duration::from_secs(30)), Some(0));
    let report: Value =
        serde_json::from_slice(&std::fs::read(dir.join("final.json")).unwrap()).unwrap();
    assert_eq!(report["even_sum"], evens(0, n - 1).to_string());
    assert_eq!(report["odd_sum"], odds(0, n - 1).to_string());
    log(dir, "2.log")
}

/// Defect 7: a bit flipped in a stored row is caught when the run resumes: the row is dropped,
/// its interval computed again, and the count reported.
#[test]
fn a_damaged_row_is_dropped_and_recomputed() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let job = ["--terms", "3e10", "--chunk", "1e7"];
    run_then_crash(dir.path(), port, &job);
    {
        let c = rusqlite::Connection::open(dir.path().join("piswarm.db")).unwrap();
        let changed = c
            .execute(
                "UPDATE results SET even_sum = CAST(CAST(even_sum AS INTEGER) + 4 AS TEXT)
                 WHERE seq = (SELECT MIN(seq) FROM results)",
                [],
            )
            .unwrap();
        assert_eq!(changed, 1);
    }
    let said = finish(dir.path(), port, &job, 30_000_000_000);
    assert!(
        said.contains("1 stored results of run 1 failed verification"),
        "{said}"
    );
}

/// Defect 7: a `-wal` file lost after a crash takes committed results with it; the high-water
/// mark beside the store says so when the run resumes, instead of a silent recomputation.
#[test]
fn a_lost_wal_is_reported() {
    // Chunks of 10⁸ terms: commits are few, so the -wal is checkpointed every few seconds, and
    // the high-water mark (written at most once a second) soon says more than the main file
    // holds. A loss is detectable only then; if a checkpoint came between the mark and the
    // crash, the scenario is run again (at most three times).
    let job = ["--terms", "3e10", "--chunk", "1e8"];
    for attempt in 1..=3 {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        run_then_crash(dir.path(), port, &job);
        let db = dir.path().join("piswarm.db");
        let had = stored_results(&db, 1);
        let mark: u64 = std::fs::read_to_string(dir.path().join("piswarm.db.acked"))
            .unwrap()
            .split_whitespace()
            .last()
            .unwrap()
            .parse()
            .unwrap();
        std::fs::remove_file(dir.path().join("piswarm.db-wal")).expect("a -wal file after a crash");
        let left = stored_results(&db, 1);
        if mark <= left {
            eprintln!("attempt {attempt}: the main file already held the {mark} marked results ({left}); again");
            continue;
        }
        assert!(
            left < had,
            "the -wal held committed results ({left} of {had} left)"
        );
        let said = finish(dir.path(), port, &job, 30_000_000_000);
        assert!(
            said.contains(&format!(
                "the store lost {} acknowledged results of run 1",
                mark - left
            )),
            "{said}"
        );
        return;
    }
    panic!("in three attempts, the -wal never held marked results");
}

/// Defect 7: `export` opens its store read-only: it never changes the file it exports.
#[test]
fn export_never_writes_to_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut server = serve(
        port,
        dir.path(),
        &["--terms", "3000", "--chunk", "1000", "--exit-when-done"],
        "serve.log",
    );
    wait_for_port(port);
    let mut w = spawn_piswarm(
        &["worker", "--connect", &format!("127.0.0.1:{port}")],
        &dir.path().join("w.log"),
    );
    assert_eq!(server.wait(Duration::from_secs(60)), Some(0));
    assert_eq!(w.wait(Duration::from_secs(30)), Some(0));
    let db = dir.path().join("piswarm.db");
    let before = std::fs::read(&db).unwrap();
    let out = std::process::Command::new(bin())
        .args(["export", "--final", "--db"])
        .arg(&db)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read(&db).unwrap(),
        before,
        "export changed the store"
    );
    // A foreign SQLite file is refused, and untouched.
    let foreign = dir.path().join("other.db");
    {
        let c = rusqlite::Connection::open(&foreign).unwrap();
        c.execute_batch("CREATE TABLE t (x); INSERT INTO t VALUES (1);")
            .unwrap();
    }
    let bytes = std::fs::read(&foreign).unwrap();
    let out = std::process::Command::new(bin())
        .args(["export", "--db"])
        .arg(&foreign)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a piswarm database"));
    assert_eq!(std::fs::read(&foreign).unwrap(), bytes);
}

/// Defect 8: a failure to write the result files is an error (exit 1, with the reason), not
/// "results written".
#[test]
fn a_failed_write_of_the_result_files_exits_nonzero() {
    let dir = tempfile::tempdir().unwrap();
    let not_a_dir = dir.path().join("file");
    std::fs::write(&not_a_dir, b"x").unwrap();
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let db = dir.path().join("piswarm.db");
    let mut server = spawn_piswarm(
        &[
            "serve",
            "--no-http",
            "--quiet",
            "--listen",
            &addr,
            "--terms",
            "2000",
            "--chunk",
            "1000",
            "--exit-when-done",
            "--db",
            db.to_str().unwrap(),
            "--out",
            not_a_dir.join("out").to_str().unwrap(),
        ],
        &dir.path().join("serve.log"),
    );
    wait_for_port(port);
    let mut w = spawn_piswarm(&["worker", "--connect", &addr], &dir.path().join("w.log"));
    assert_eq!(server.wait(Duration::from_secs(60)), Some(1));
    let said = log(dir.path(), "serve.log");
    assert!(!said.contains("results written"), "{said}");
    assert!(said.contains("could not"), "{said}");
    let _ = w.wait(Duration::from_secs(30));
}

/// Defect 11: a newline in a client-supplied name never starts a line of its own in the log.
#[test]
fn client_strings_cannot_forge_log_lines() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let _server = serve(port, dir.path(), &["--terms", "1e12"], "serve.log");
    wait_for_port(port);
    let mut c = Client::connect(port);
    c.send(json!({"type": "hello", "version": 1, "worker": "evil\nFORGED piswarm: run complete"}));
    c.expect("welcome");
    c.send(json!({"type": "result", "id": "0", "a": "0", "b": "1", "even_sum": "0", "odd_sum": "1", "pi": 1.0}));
    c.expect("error");
    c.send(json!({"type": "request", "count": 1, "x\nFORGED": 1}));
    c.expect("error");
    wait_until("the log lines", Duration::from_secs(10), || {
        let l = log(dir.path(), "serve.log");
        l.contains("rejected result") && l.contains("bad message")
    });
    let said = log(dir.path(), "serve.log");
    assert!(said.lines().all(|l| !l.starts_with("FORGED")), "{said}");
}

/// Defect 12: the final report's `pi_bound` contains the exact partial sum (an independent
/// rational oracle) whoever computed what — the exact kernel, a plain loop, or a client that
/// shifts its partial by most of the tolerance — and `--strict` refuses the shifted partial.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pi_bound_contains_the_exact_partial_sum_for_every_kind_of_client() {
    const CHUNK: u64 = 1000;
    const INTERVALS: u64 = 20;
    let job = Job::new(Some(CHUNK * INTERVALS), Some(CHUNK)).unwrap();
    let shifted = |id: u64| {
        let (a, b) = (id * CHUNK, id * CHUNK + CHUNK - 1);
        let reference = series::pi_partial_reference(a, b);
        reference + 0.9 * series::pi_partial_tolerance(a, b, reference)
    };
    for strict in [false, true] {
        let server = ServerConfig {
            tolerance: if strict {
                Tolerance::Kernel
            } else {
                Tolerance::Honest
            },
            ..ServerConfig::default()
        };
        let server = TestServer::start_with(CoreConfig::new(job), server).await;
        let mut refused = 0;
        for _ in 0..INTERVALS {
            // One connection per interval: three refused partials would close a connection.
            let mut c = RawClient::connect(server.addr).await;
            c.hello("mixed").await;
            c.send(r#"{"type":"request","count":1}"#).await;
            let id: u64 = c.recv().await.unwrap()["id"]
                .as_str()
                .unwrap()
                .parse()
                .unwrap();
            let mut r = result(id, CHUNK);
            match id % 3 {
                0 => r["pi"] = json!(shifted(id)),
                1 => r["pi"] = json!(kernel::pi_partial_naive(id * CHUNK, id * CHUNK + CHUNK - 1)),
                _ => {}
            }
            c.send(&r.to_string()).await;
            let m = c.recv().await.unwrap();
            if m["type"] == "error" {
                assert_eq!(m["code"], "wrong_pi", "{m}");
                refused += 1;
                // The same interval again, honestly.
                c.send(r#"{"type":"request","count":1}"#).await;
                let again = c.recv().await.unwrap();
                assert_eq!(again["id"], id.to_string());
                c.send(&result(id, CHUNK).to_string()).await;
                assert_eq!(c.recv().await.unwrap()["status"], "accepted");
            }
        }
        assert_eq!(
            refused > 0,
            strict,
            "strict refuses the shifted partials, and only then"
        );
        let report = server.coordinator.report().await.unwrap();
        assert_eq!(report.intervals, INTERVALS);
        let exact: Q = (0..INTERVALS)
            .map(|k| exact_partial(k * CHUNK, k * CHUNK + CHUNK - 1))
            .fold(Q::from_integer(0.into()), |s, x| s + x);
        let distance = (rat(report.pi) - &exact).abs();
        assert!(
            distance <= rat(report.pi_bound),
            "strict={strict}: |pi − exact| is not within pi_bound {:e}",
            report.pi_bound
        );
        server.stop().await;
    }
}
