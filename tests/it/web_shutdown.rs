//! `piswarm serve` stops however many dashboard tabs are open: Ctrl-C (SIGINT), SIGTERM and
//! `piswarm stop --exit` each end the process with its final report while three tabs of the
//! dashboard keep event streams open. (The time it takes is printed, not asserted: it is a figure
//! for docs/performance.md, measured on a quiet machine.)

use crate::common::bin;
use crate::web_browser::{browser, open};
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long the process may take to exit before the test fails (the goal is 2 s).
const EXIT_DEADLINE: Duration = Duration::from_secs(30);

/// A `piswarm serve` that is killed if the test ends before it does.
struct Serve {
    child: Child,
    lines: mpsc::Receiver<String>,
    url: String,
    _dir: tempfile::TempDir,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve() -> Serve {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(bin())
        .args(["serve", "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0"])
        .args(["--terms", "1000000000", "--chunk", "1000000", "--quiet"])
        .arg("--db")
        .arg(dir.path().join("piswarm.db"))
        .arg("--out")
        .arg(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let url = loop {
        let line = lines
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("serve prints its dashboard's URL");
        if let Some(url) = line.strip_prefix("piswarm: dashboard at ") {
            break url.trim().to_string();
        }
    };
    Serve {
        child,
        lines,
        url,
        _dir: dir,
    }
}

/// Opens three tabs on the dashboard, asks the process to stop with `how`, and returns what it
/// printed afterwards and how long it took to exit.
fn stop_with_three_tabs(how: &str) -> (String, Duration) {
    let mut s = serve();
    let (browser, _profile) = browser();
    let tabs: Vec<_> = (0..3).map(|_| browser.new_tab().unwrap()).collect();
    for tab in &tabs {
        open(tab, &s.url);
    }
    let pid = s.child.id().to_string();
    let started = Instant::now();
    match how {
        "INT" | "TERM" => {
            let status = Command::new("kill")
                .args([&format!("-{how}"), &pid])
                .status()
                .unwrap();
            assert!(status.success());
        }
        "stop --exit" => {
            let http = s
                .url
                .trim_start_matches("http://")
                .trim_end_matches('/')
                .to_string();
            let out = Command::new(bin())
                .args(["stop", "--exit", "--http", &http])
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        other => panic!("{other}"),
    }
    let deadline = started + EXIT_DEADLINE;
    let status = loop {
        if let Some(status) = s.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "serve did not exit within {EXIT_DEADLINE:?} of {how} with three tabs open"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let took = started.elapsed();
    assert!(status.success(), "{how}: exit status {status}");
    let mut printed = String::new();
    while let Ok(line) = s.lines.recv_timeout(Duration::from_secs(5)) {
        printed.push_str(&line);
        printed.push('\n');
    }
    if let Some(mut rest) = s.child.stdout.take() {
        let _ = rest.read_to_string(&mut printed);
    }
    drop(tabs);
    eprintln!("serve exited {took:?} after {how} with three dashboard tabs open");
    (printed, took)
}

#[test]
fn ctrl_c_with_three_tabs_open_exits_and_prints_the_final_report() {
    let (printed, _) = stop_with_three_tabs("INT");
    assert!(printed.contains("sum of evens"), "{printed}");
    assert!(printed.contains("π estimate"), "{printed}");
}

#[test]
fn sigterm_with_three_tabs_open_exits_and_prints_the_final_report() {
    let (printed, _) = stop_with_three_tabs("TERM");
    assert!(printed.contains("sum of evens"), "{printed}");
}

#[test]
fn stop_exit_with_three_tabs_open_exits_and_prints_the_final_report() {
    let (printed, _) = stop_with_three_tabs("stop --exit");
    assert!(printed.contains("sum of evens"), "{printed}");
}

/// `piswarm status` and `piswarm stop` talk to the dashboard's API over HTTP.
#[test]
fn status_and_stop_from_the_command_line() {
    let mut s = serve();
    let http = s
        .url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    let run = |args: &[&str]| {
        let out = Command::new(bin()).args(args).output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let (code, out, _) = run(&["status", "--http", &http]);
    assert_eq!(code, Some(0));
    let status: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(status["server"]["running"], serde_json::json!(true));
    let (code, out, _) = run(&["stop", "--http", &http]);
    assert_eq!(code, Some(0), "{out}");
    let status: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(status["server"]["running"], serde_json::json!(false));
    // An error answer is printed and exits 1; so does a dashboard that is not there.
    let (code, out, _) = run(&["status", "--http", &http, "--ui-token", "x"]);
    assert_eq!(code, Some(0), "no token is needed on loopback: {out}");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let nobody = listener.local_addr().unwrap().to_string();
    drop(listener);
    let (code, _, err) = run(&["status", "--http", &nobody]);
    assert_eq!(code, Some(1));
    assert!(err.contains("cannot reach the dashboard"), "{err}");
    let (code, _, _) = run(&["stop", "--exit", "--http", &http]);
    assert_eq!(code, Some(0));
    let deadline = Instant::now() + EXIT_DEADLINE;
    while s.child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "serve exits after stop --exit");
        std::thread::sleep(Duration::from_millis(20));
    }
}
