//! `piswarm check client` and `piswarm check server`, as users run them: piswarm's own worker and
//! serve (v1 and `--legacy-listen`) pass every clause; small broken implementations in Python
//! (tests/fixtures/check/) are each reported with exactly the clause they break and nothing else
//! failing; a program that does nothing is reported as such.
//!
//! Every check runs as a child process with its own deadlines (`--timeout`); the tests wait for
//! it with a generous deadline of their own, and every process they start is killed at the end.

use crate::common::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// The longest a whole check may take here (its scenarios have shorter deadlines of their own).
const CHECK_DEADLINE: Duration = Duration::from_secs(240);

fn fixture(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/check")
        .join(name)
        .display()
        .to_string()
}

fn scratch(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("piswarm-check-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A `piswarm check …` child, its output in files.
struct Check {
    process: Process,
    stdout: PathBuf,
    stderr: PathBuf,
}

impl Check {
    fn start(args: &[&str], dir: &Path) -> Check {
        let (stdout, stderr) = (dir.join("check.out"), dir.join("check.err"));
        let child = Command::new(bin())
            .arg("check")
            .args(args)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&stdout).unwrap())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap();
        Check {
            process: Process(child),
            stdout,
            stderr,
        }
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Waits for the check to end; its exit code and its JSON report.
    fn finish(mut self) -> (i32, Value) {
        let code = self.process.wait(CHECK_DEADLINE).unwrap_or(-1);
        let out = std::fs::read_to_string(&self.stdout).unwrap();
        let report: Value = serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("no JSON report ({e}): {out}\nstderr: {}", self.stderr()));
        (code, report)
    }
}

fn check(args: &[&str], tag: &str) -> (i32, Value) {
    let dir = scratch(tag);
    Check::start(args, &dir).finish()
}

/// The verdict of each clause, by id.
fn verdicts(report: &Value) -> Vec<(String, String)> {
    report["clauses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["id"].as_str().unwrap().to_string(),
                c["verdict"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn clause<'a>(report: &'a Value, id: &str) -> &'a Value {
    report["clauses"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == id)
        .unwrap_or_else(|| panic!("no clause {id} in {report:#}"))
}

/// Every clause passed, and the exit status says so.
fn assert_all_pass(code: i32, report: &Value) {
    let not_passed: Vec<_> = verdicts(report)
        .into_iter()
        .filter(|(_, v)| v != "pass")
        .collect();
    assert!(not_passed.is_empty(), "{not_passed:?}\n{report:#}");
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(report["passed"], true);
}

/// Exactly `failing` failed; every other clause passed; the exit status is 1.
fn assert_only_fails(code: i32, report: &Value, failing: &str) {
    for (id, verdict) in verdicts(report) {
        let expected = if id == failing { "fail" } else { "pass" };
        assert_eq!(verdict, expected, "clause {id}\n{report:#}");
    }
    assert_eq!(code, 1, "{report:#}");
}

fn v1_client(defect: Option<&str>) -> (i32, Value) {
    let script = fixture("v1_client.py");
    let mut args = vec![
        "client",
        "--json",
        "--timeout",
        "20s",
        "--",
        "python3",
        &script,
        "{addr}",
    ];
    if let Some(d) = defect {
        args.extend(["--defect", d]);
    }
    check(&args, defect.unwrap_or("good-client"))
}

#[test]
fn piswarm_worker_passes_every_client_clause() {
    let (code, report) = check(
        &[
            "client",
            "--json",
            "--timeout",
            "20s",
            "--",
            bin(),
            "worker",
            "--connect",
            "{addr}",
            "--retry-for",
            "20s",
            "--threads",
            "2",
        ],
        "worker",
    );
    assert_all_pass(code, &report);
    assert_eq!(report["clauses"].as_array().unwrap().len(), 11);
}

#[test]
fn a_correct_python_client_passes_every_client_clause() {
    let (code, report) = v1_client(None);
    assert_all_pass(code, &report);
}

#[test]
fn a_client_that_never_resends_after_a_restart_fails_only_resend() {
    let (code, report) = v1_client(Some("no-resend"));
    assert_only_fails(code, &report, "resend");
    let detail = clause(&report, "resend")["detail"].as_str().unwrap();
    assert!(detail.contains("not re-sent"), "{detail}");
}

#[test]
fn a_client_that_asks_for_more_than_its_credit_fails_only_credit() {
    let (code, report) = v1_client(Some("over-credit"));
    assert_only_fails(code, &report, "credit");
    let c = clause(&report, "credit");
    assert!(
        c["detail"].as_str().unwrap().contains("max_prefetch 4"),
        "{c}"
    );
    assert!(
        c["evidence"][0].as_str().unwrap().contains("\"count\":8"),
        "{c}"
    );
}

#[test]
fn a_forward_loop_client_fails_only_the_kernel_bound() {
    let (code, report) = v1_client(Some("forward-loop"));
    assert_only_fails(code, &report, "pi_kernel_bound");
    assert_eq!(clause(&report, "pi_tolerance")["verdict"], "pass");
}

#[test]
fn a_program_that_does_nothing_is_reported_as_such() {
    let (code, report) = check(
        &["client", "--json", "--timeout", "3s", "--", "sleep", "600"],
        "nothing",
    );
    assert_eq!(code, 1);
    let hello = clause(&report, "hello");
    assert_eq!(hello["verdict"], "fail");
    assert!(
        hello["detail"]
            .as_str()
            .unwrap()
            .contains("made no connection"),
        "{hello}"
    );
    for (id, verdict) in verdicts(&report) {
        if id != "hello" {
            assert_eq!(verdict, "not_exercised", "{id}");
        }
    }
}

#[test]
fn a_legacy_client_passes_every_legacy_clause() {
    let script = fixture("legacy_client.py");
    let (code, report) = check(
        &[
            "client",
            "--protocol",
            "legacy",
            "--json",
            "--timeout",
            "20s",
            "--",
            "python3",
            &script,
            "{addr}",
        ],
        "legacy-client",
    );
    assert_all_pass(code, &report);
    assert_eq!(report["protocol"], "legacy");
}

/// A `piswarm serve` on free ports (open-ended job, chunk 1000), its store and results in `dir`.
fn serve(dir: &Path) -> (Process, u16, u16) {
    let (port, legacy) = (free_port(), free_port());
    let db = dir.join("piswarm.db");
    let process = spawn_piswarm(
        &[
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--legacy-listen",
            &format!("127.0.0.1:{legacy}"),
            "--no-http",
            "--quiet",
            "--db",
            db.to_str().unwrap(),
            "--out",
            dir.to_str().unwrap(),
        ],
        &dir.join("serve.log"),
    );
    wait_for_port(port);
    wait_for_port(legacy);
    (process, port, legacy)
}

/// `check server` against `piswarm serve` with `--results`: serve writes results.json when it
/// stops, so it is stopped (SIGTERM) once the check says its scenarios are done.
fn check_piswarm_serve(protocol: &str, tag: &str) -> (i32, Value) {
    let dir = scratch(tag);
    let (mut server, port, legacy) = serve(&dir);
    let target = format!(
        "127.0.0.1:{}",
        if protocol == "legacy" { legacy } else { port }
    );
    let results = dir.join("results.json");
    let check = Check::start(
        &[
            "server",
            &target,
            "--protocol",
            protocol,
            "--clients",
            "100",
            "--results",
            results.to_str().unwrap(),
            "--timeout",
            "30s",
            "--json",
        ],
        &dir,
    );
    wait_until("the check's scenarios", CHECK_DEADLINE, || {
        check.stderr().contains("the scenarios are done")
    });
    let pid = server.0.id().to_string();
    let _ = Command::new("kill").args(["-TERM", &pid]).status();
    server.wait(Duration::from_secs(60));
    check.finish()
}

#[test]
fn piswarm_serve_passes_every_server_clause() {
    let (code, report) = check_piswarm_serve("v1", "serve-v1");
    assert_all_pass(code, &report);
    assert_eq!(report["clauses"].as_array().unwrap().len(), 11);
}

#[test]
fn piswarm_serve_legacy_listener_passes_every_server_clause() {
    let (code, report) = check_piswarm_serve("legacy", "serve-legacy");
    assert_all_pass(code, &report);
}

/// The Python legacy server, with a defect.
fn legacy_server(defect: &str, dir: &Path) -> (Process, u16, PathBuf) {
    let port = free_port();
    let results = dir.join("results.json");
    let child = Command::new("python3")
        .args([
            &fixture("legacy_server.py"),
            &port.to_string(),
            results.to_str().unwrap(),
            "--defect",
            defect,
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let process = Process(child);
    wait_for_port(port);
    (process, port, results)
}

#[test]
fn an_unguarded_counter_is_caught_handing_an_interval_out_twice() {
    let dir = scratch("racy");
    let (_server, port, _) = legacy_server("racy", &dir);
    let target = format!("127.0.0.1:{port}");
    let (code, report) = Check::start(
        &[
            "server",
            &target,
            "--protocol",
            "legacy",
            "--clients",
            "100",
            "--timeout",
            "30s",
            "--json",
        ],
        &dir,
    )
    .finish();
    let unique = clause(&report, "unique_intervals");
    for (id, verdict) in verdicts(&report) {
        if id != "unique_intervals" {
            assert_eq!(verdict, "pass", "clause {id}\n{report:#}");
        }
    }
    if unique["verdict"] == "fail" {
        let detail = unique["detail"].as_str().unwrap();
        assert!(detail.contains("handed out twice"), "{detail}");
        let clients: std::collections::BTreeSet<&str> = detail
            .split("check-")
            .skip(1)
            .map(|rest| rest.split(|c: char| !c.is_ascii_digit()).next().unwrap())
            .collect();
        assert_eq!(clients.len(), 2, "two clients named: {detail}");
        assert_eq!(code, 1);
    } else {
        eprintln!("the race did not strike this time: {unique}");
        assert_eq!(code, 0);
    }
}

#[test]
fn a_server_that_swaps_evens_and_odds_fails_only_the_results_check() {
    let dir = scratch("swap");
    let (_server, port, results) = legacy_server("swap", &dir);
    let target = format!("127.0.0.1:{port}");
    let (code, report) = Check::start(
        &[
            "server",
            &target,
            "--protocol",
            "legacy",
            "--clients",
            "50",
            "--results",
            results.to_str().unwrap(),
            "--timeout",
            "30s",
            "--json",
        ],
        &dir,
    )
    .finish();
    assert_only_fails(code, &report, "results_totals");
    let detail = clause(&report, "results_totals")["detail"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(detail.contains("swapped"), "{detail}");
}

#[test]
fn a_correct_python_server_passes_every_server_clause() {
    let dir = scratch("good-server");
    let (_server, port, results) = legacy_server("none", &dir);
    let target = format!("127.0.0.1:{port}");
    let (code, report) = Check::start(
        &[
            "server",
            &target,
            "--protocol",
            "legacy",
            "--clients",
            "50",
            "--results",
            results.to_str().unwrap(),
            "--timeout",
            "30s",
            "--json",
        ],
        &dir,
    )
    .finish();
    assert_all_pass(code, &report);
}

#[test]
fn a_server_that_never_answers_is_reported_within_the_deadlines() {
    // Connections complete in the kernel's backlog; nothing ever reads or answers them.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let target = listener.local_addr().unwrap().to_string();
    let (code, report) = check(
        &[
            "server",
            &target,
            "--clients",
            "20",
            "--timeout",
            "2s",
            "--json",
        ],
        "mute-server",
    );
    assert_eq!(code, 1);
    let everyone = clause(&report, "serves_everyone");
    assert_eq!(everyone["verdict"], "fail", "{everyone}");
    assert!(
        everyone["detail"]
            .as_str()
            .unwrap()
            .contains("20 of 20 concurrent clients were not served"),
        "{everyone}"
    );
    assert_eq!(clause(&report, "still_serves")["verdict"], "fail");
    drop(listener);
}
