//! The binary as users run it: exit codes, `run --json`, `serve` with real worker processes.

use crate::common::*;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

#[test]
fn run_json_has_every_field_and_exact_sums() {
    let out = Command::new(bin())
        .args([
            "run",
            "--terms",
            "10^7",
            "--workers",
            "2",
            "--chunk",
            "1e6",
            "--json",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("stdout is exactly one JSON object");
    for f in [
        "terms",
        "chunk",
        "intervals",
        "even_sum",
        "odd_sum",
        "pi",
        "pi_error",
        "correct_digits",
        "pi_corrected",
        "workers",
        "elapsed_s",
        "terms_per_s",
    ] {
        assert!(v.get(f).is_some(), "missing {f}");
    }
    assert_eq!(v["terms"], 10_000_000);
    assert_eq!(v["intervals"], 10);
    // Two workers ran; on a job this small the faster one may win the other's intervals by
    // backup copies at the tail, so one or both contributed.
    assert!(matches!(v["workers"].as_u64(), Some(1 | 2)), "{v}");
    assert_eq!(v["even_sum"], evens(0, 9_999_999).to_string());
    assert_eq!(v["odd_sum"], odds(0, 9_999_999).to_string());
    let corrected = v["pi_corrected"].as_f64().unwrap();
    assert!((corrected - std::f64::consts::PI).abs() < 1e-14);
}

#[test]
fn bad_counts_exit_with_2() {
    for args in [
        vec!["run", "--terms", "0"],
        vec!["run", "--terms", "banana"],
        vec!["run", "--terms", "1e20"],
        vec!["run", "--terms", "2^53"],
        vec!["run", "--terms", "1000", "--chunk", "0"],
        vec!["serve", "--chunk", "0"],
    ] {
        let out = Command::new(bin()).args(&args).output().unwrap();
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!out.stderr.is_empty());
    }
}

#[test]
fn a_worker_without_a_coordinator_says_so_and_exits_1() {
    // Bind and drop to find a port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = Command::new(bin())
        .args(["worker", "--connect", &format!("127.0.0.1:{port}")])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot reach the coordinator"), "{err}");
}

#[test]
fn serve_with_once_workers_then_sigterm_writes_both_files() {
    let out_dir = tempfile::tempdir().unwrap();
    let mut server = Command::new(bin())
        .args([
            "serve",
            "--no-http",
            "--listen",
            "127.0.0.1:0",
            "--chunk",
            "1000",
            "--out",
        ])
        .arg(out_dir.path())
        .arg("--db")
        .arg(out_dir.path().join("piswarm.db"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(server.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    let addr = first
        .split("listening on ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .unwrap()
        .to_string();
    let workers: Vec<_> = (0..8)
        .map(|i| {
            Command::new(bin())
                .args([
                    "worker",
                    "--once",
                    "--connect",
                    &addr,
                    "--name",
                    &format!("p{i}"),
                ])
                .stderr(Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    for mut w in workers {
        assert!(w.wait().unwrap().success());
    }
    // Each accepted result was printed as one line.
    let printed: Vec<String> = (0..8).map(|_| lines.next().unwrap().unwrap()).collect();
    assert!(printed.iter().all(|l| l.contains("evens=")), "{printed:?}");
    Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status()
        .unwrap();
    let status = server.wait().unwrap();
    assert!(status.success(), "graceful stop exits 0");
    let fin: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out_dir.path().join("final.json")).unwrap()).unwrap();
    assert_eq!(fin["terms"], 8000);
    assert_eq!(fin["intervals"], 8);
    assert_eq!(fin["even_sum"], evens(0, 7999).to_string());
    assert_eq!(fin["odd_sum"], odds(0, 7999).to_string());
    let results: Vec<serde_json::Value> =
        serde_json::from_slice(&std::fs::read(out_dir.path().join("results.json")).unwrap())
            .unwrap();
    assert_eq!(results.len(), 8);
}
