//! Nothing lost, with real processes: coordinators and workers killed with SIGKILL mid-run, and
//! connections cut mid-line. Each run must end with the same bits as a clean run, and the store
//! must hold every interval exactly once.

use crate::common::*;
use piswarm::maths::kernel::Kernel;
use piswarm::store::Store;
use std::io::Write;
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const TERMS: &str = "2e10";
const CHUNK: &str = "1e7";
const INTERVALS: u64 = 2000;

struct Killed(Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts a coordinator on `port` (0: any free port) and waits until it says it listens; returns
/// it and its port. A coordinator that cannot start (say, the port was taken meanwhile) fails the
/// test with its output, rather than leaving the workers to find somebody else's listener.
fn serve(port: u16, dir: &Path) -> (Killed, u16) {
    serve_job(port, dir, &["--terms", TERMS, "--chunk", CHUNK])
}

/// [`serve`] with the job's flags (and any others) given.
fn serve_job(port: u16, dir: &Path, job: &[&str]) -> (Killed, u16) {
    static STARTS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = STARTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let log = dir.join(format!("serve-{n}.log"));
    let out = std::fs::File::create(&log).unwrap();
    let child = Command::new(bin())
        .args(["serve", "--no-http", "--quiet", "--exit-when-done"])
        .args(job)
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--db")
        .arg(dir.join("piswarm.db"))
        .arg("--out")
        .arg(dir)
        .env("PISWARM_LOG", "error")
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap();
    let mut child = Killed(child);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if let Some(rest) = text.split("coordinator listening on 127.0.0.1:").nth(1) {
            let bound: u16 = rest
                .split(|c: char| !c.is_ascii_digit())
                .next()
                .unwrap()
                .parse()
                .unwrap();
            assert!(port == 0 || bound == port, "{text}");
            return (child, bound);
        }
        if let Some(status) = child.0.try_wait().unwrap() {
            panic!("the coordinator exited ({status}) before listening: {text}");
        }
        assert!(
            Instant::now() < deadline,
            "the coordinator did not start: {text}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits for a process to exit by itself; fails the test (and kills it, on drop) after `deadline`.
fn exit_within(process: &mut Killed, deadline: Duration) -> std::process::ExitStatus {
    let end = Instant::now() + deadline;
    loop {
        if let Some(status) = process.0.try_wait().unwrap() {
            return status;
        }
        assert!(
            Instant::now() < end,
            "the process did not exit within {deadline:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn worker(port: u16, name: &str) -> Killed {
    worker_with(port, name, &[])
}

/// [`worker`] with more flags.
fn worker_with(port: u16, name: &str, extra: &[&str]) -> Killed {
    Killed(
        Command::new(bin())
            .args([
                "worker",
                "--threads",
                "1",
                "--retry-for",
                "60s",
                "--name",
                name,
            ])
            .args(extra)
            .arg("--connect")
            .arg(format!("127.0.0.1:{port}"))
            .env("PISWARM_LOG", "error")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

/// (stored results, distinct intervals among them) of the first run, read-only (the coordinator
/// owns the store).
fn stored(dir: &Path) -> (u64, u64) {
    match Store::open_read_only(&dir.join("piswarm.db")) {
        Ok(store) => store
            .count_results(piswarm::coordinator::RunId(1))
            .unwrap_or((0, 0)),
        Err(_) => (0, 0),
    }
}

fn wait_for_results(dir: &Path, at_least: u64) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while stored(dir).0 < at_least {
        assert!(
            Instant::now() < deadline,
            "no progress past {} results",
            stored(dir).0
        );
        std::thread::sleep(Duration::from_millis(25));
    }
}

fn final_json(dir: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(dir.join("final.json")).expect("final.json")).unwrap()
}

/// The clean reference: the same job, uninterrupted.
fn reference() -> serde_json::Value {
    run_json(TERMS, CHUNK)
}

fn assert_same_result(got: &serde_json::Value, clean: &serde_json::Value) {
    for field in [
        "terms",
        "chunk",
        "intervals",
        "even_sum",
        "odd_sum",
        "pi",
        "pi_corrected",
    ] {
        assert_eq!(
            got[field], clean[field],
            "{field} differs from the clean run"
        );
    }
    let n = 20_000_000_000u64;
    assert_eq!(got["even_sum"], evens(0, n - 1).to_string());
    assert_eq!(got["odd_sum"], odds(0, n - 1).to_string());
}

#[test]
fn coordinator_killed_twice_resumes_with_identical_bits() {
    let dir = tempfile::tempdir().unwrap();
    let (mut coordinator, port) = serve(0, dir.path());
    let workers: Vec<Killed> = (0..2).map(|i| worker(port, &format!("w{i}"))).collect();
    for kill_at in [INTERVALS / 5, INTERVALS / 2] {
        wait_for_results(dir.path(), kill_at);
        coordinator.0.kill().unwrap(); // SIGKILL
        coordinator.0.wait().unwrap();
        coordinator = serve(port, dir.path()).0;
    }
    let status = exit_within(&mut coordinator, Duration::from_secs(300));
    assert!(
        status.success(),
        "the resumed coordinator finishes the job and exits 0"
    );
    drop(workers);
    assert_eq!(
        stored(dir.path()),
        (INTERVALS, INTERVALS),
        "every interval stored exactly once"
    );
    assert_same_result(&final_json(dir.path()), &reference());
}

/// `piswarm run --json` of a job with the given kernel.
fn run_json_with_kernel(terms: &str, chunk: &str, kernel: &str) -> serde_json::Value {
    let out = Command::new(bin())
        .args(["run", "--terms", terms, "--chunk", chunk, "--workers", "2"])
        .args(["--kernel", kernel, "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Bit-identity is promised per (job, kernel): a run started with the quad kernel (as every run
/// made before the oct kernel was) and interrupted is resumed by a coordinator whose new runs
/// would be oct, and still ends with the quad kernel's bits — its workers are told the run's
/// kernel in the welcome.
#[test]
fn a_quad_run_resumes_with_its_own_kernel_bit_identically() {
    let (terms, chunk, intervals) = ("2e6", "1000", 2000);
    let quad = run_json_with_kernel(terms, chunk, "quad");
    assert_eq!(quad["kernel"], "quad");
    // Both kernels are nearly correctly rounded: they differ in the last bit of a few intervals'
    // partials (about 4% of these; fewer for longer intervals) and the run's π, an exact sum
    // rounded once, may still agree; so every stored partial is compared, bit for bit.
    let grid = |id: u64| (id * 1000, id * 1000 + 999);
    let differ = (0..intervals)
        .filter(|&id| {
            let (a, b) = grid(id);
            Kernel::Quad.pi_partial(a, b).unwrap() != Kernel::Oct.pi_partial(a, b).unwrap()
        })
        .count();
    assert!(
        differ > 0,
        "the kernels must differ on this job, or the test shows nothing"
    );
    let dir = tempfile::tempdir().unwrap();
    let job = ["--terms", terms, "--chunk", chunk];
    let (mut coordinator, port) =
        serve_job(0, dir.path(), &[&job[..], &["--kernel", "quad"]].concat());
    // A worker slowed to a millisecond an interval, so that the coordinator dies mid-run.
    let _worker = worker_with(port, "w0", &["--pace", "1ms"]);
    wait_for_results(dir.path(), intervals / 4);
    coordinator.0.kill().unwrap(); // SIGKILL
    coordinator.0.wait().unwrap();
    let before = stored(dir.path()).0;
    assert!(before < intervals, "killed mid-run ({before} stored)");
    // Resumed without --kernel: the default for new runs is oct; this run stays quad.
    let (mut coordinator, _) = serve_job(port, dir.path(), &job);
    let status = exit_within(&mut coordinator, Duration::from_secs(300));
    assert!(
        status.success(),
        "the resumed coordinator finishes and exits 0"
    );
    assert_eq!(stored(dir.path()), (intervals, intervals));
    let got = final_json(dir.path());
    assert_eq!(got["kernel"], "quad");
    for field in ["intervals", "even_sum", "odd_sum", "pi", "pi_corrected"] {
        assert_eq!(got[field], quad[field], "{field} differs from the quad run");
    }
    let results: Vec<serde_json::Value> =
        serde_json::from_slice(&std::fs::read(dir.path().join("results.json")).unwrap()).unwrap();
    assert_eq!(results.len() as u64, intervals);
    for r in &results {
        let id: u64 = r["id"].as_str().unwrap().parse().unwrap();
        let (a, b) = grid(id);
        assert_eq!(
            r["pi"].as_f64().map(f64::to_bits),
            Some(Kernel::Quad.pi_partial(a, b).unwrap().to_bits()),
            "interval {id}: not the quad kernel's bits ({differ} of {intervals} differ between kernels)"
        );
    }
}

#[test]
fn workers_killed_and_connections_cut_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (mut coordinator, port) = serve(0, dir.path());
    let mut workers: Vec<Killed> = (0..2).map(|i| worker(port, &format!("w{i}"))).collect();
    // A client that takes work and vanishes in the middle of a line.
    let mut cut = TcpStream::connect(("127.0.0.1", port)).unwrap();
    cut.write_all(b"{\"type\":\"hello\",\"version\":1,\"worker\":\"cut\"}\n{\"type\":\"request\",\"count\":4}\n").unwrap();
    std::thread::sleep(Duration::from_millis(50));
    cut.write_all(b"{\"type\":\"result\",\"id\":\"0\",\"a\":\"0\",\"b\":")
        .unwrap();
    drop(cut);
    // Kill a worker at every tenth of the job and start a replacement.
    for round in 1..=5u64 {
        wait_for_results(dir.path(), round * INTERVALS / 8);
        let victim = (round % 2) as usize;
        workers[victim].0.kill().unwrap();
        workers[victim].0.wait().unwrap();
        workers[victim] = worker(port, &format!("replacement-{round}"));
    }
    let status = exit_within(&mut coordinator, Duration::from_secs(300));
    assert!(status.success());
    drop(workers);
    assert_eq!(stored(dir.path()), (INTERVALS, INTERVALS));
    assert_same_result(&final_json(dir.path()), &reference());
}

#[test]
fn a_corrupt_database_is_refused_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("piswarm.db");
    std::fs::write(
        &db,
        b"this is not a database, just some bytes that are long enough to look like a header....",
    )
    .unwrap();
    let out = Command::new(bin())
        .args(["serve", "--no-http", "--listen", "127.0.0.1:0", "--db"])
        .arg(&db)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("is not a piswarm database") && err.contains("damaged"),
        "{err}"
    );
}
