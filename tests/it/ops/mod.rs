//! Operating piswarm as deployed (issue 14): metrics, health probes, structured logs, TLS
//! certificates and fleets, tested on the real binary. Every process started here is killed when
//! its handle drops; every wait has a deadline and polls, never sleeps blindly.

mod fleet;
mod health;
mod logs;
mod metrics;
mod tls;

use crate::common::bin;
use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long any one wait of these tests may take.
pub const DEADLINE: Duration = Duration::from_secs(60);

/// A `piswarm` child process: its stdout lines arrive on a channel, its stderr goes to a file.
/// Killed (and reaped) on drop.
pub struct Proc {
    child: Child,
    stdout: mpsc::Receiver<String>,
    /// Every stdout line seen so far.
    pub seen: Vec<String>,
    pub stderr_path: PathBuf,
}

impl Proc {
    /// Starts `piswarm ARGS` with `env` added (and PISWARM_* variables of the test's own
    /// environment removed), stderr into `dir/<name>.stderr`.
    pub fn start(dir: &Path, name: &str, args: &[&str], env: &[(&str, &str)]) -> Proc {
        let stderr_path = dir.join(format!("{name}.stderr"));
        let stderr = std::fs::File::create(&stderr_path).unwrap();
        let mut command = Command::new(bin());
        command
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr);
        for var in [
            "PISWARM_TOKEN",
            "PISWARM_UI_TOKEN",
            "PISWARM_LOG",
            "PISWARM_LOG_FORMAT",
        ] {
            command.env_remove(var);
        }
        for (k, v) in env {
            command.env(k, v);
        }
        let mut child = command.spawn().unwrap();
        let out = child.stdout.take().unwrap();
        let (tx, stdout) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Proc {
            child,
            stdout,
            seen: Vec::new(),
            stderr_path,
        }
    }

    /// Waits (at most [`DEADLINE`]) for a stdout line containing `marker` and returns what
    /// follows it, up to the next space.
    pub fn wait_for_word_after(&mut self, marker: &str) -> String {
        let until = Instant::now() + DEADLINE;
        loop {
            if let Some(found) = self
                .seen
                .iter()
                .find_map(|l| l.split(marker).nth(1).map(|r| r.to_string()))
            {
                return found.split_whitespace().next().unwrap_or("").to_string();
            }
            let left = until.saturating_duration_since(Instant::now());
            match self.stdout.recv_timeout(left) {
                Ok(line) => self.seen.push(line),
                Err(_) => panic!(
                    "no line with {marker:?} on stdout within {DEADLINE:?}; stdout {:?}, stderr {}",
                    self.seen,
                    self.stderr()
                ),
            }
        }
    }

    /// Every stdout line until now (without waiting).
    pub fn stdout_so_far(&mut self) -> String {
        while let Ok(line) = self.stdout.try_recv() {
            self.seen.push(line);
        }
        self.seen.join("\n")
    }

    /// Everything the process wrote on stdout, once it has closed it (at most [`DEADLINE`]): after
    /// the process exits, its last lines may still be on their way through the reader thread.
    pub fn stdout_to_end(&mut self) -> String {
        let until = Instant::now() + DEADLINE;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            match self.stdout.recv_timeout(left) {
                Ok(line) => self.seen.push(line),
                Err(mpsc::RecvTimeoutError::Disconnected) => return self.seen.join("\n"),
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    panic!(
                        "stdout not closed within {DEADLINE:?}; stdout {:?}",
                        self.seen
                    )
                }
            }
        }
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for the process to exit, polling, at most [`DEADLINE`].
    pub fn wait(&mut self) -> ExitStatus {
        let until = Instant::now() + DEADLINE;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < until,
                "process did not exit within {DEADLINE:?}; stderr: {}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends SIGTERM (a graceful stop) and waits for the exit.
    pub fn terminate(&mut self) -> ExitStatus {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        self.wait()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `piswarm serve` on ephemeral loopback ports, with the addresses it printed.
pub struct Serve {
    pub proc: Proc,
    pub listen: String,
    pub http: Option<String>,
    pub metrics: Option<String>,
}

/// Starts `piswarm serve` on 127.0.0.1:0 with its store and files in `dir`, plus `args`
/// (`--http`/`--metrics` addresses given in `args` are read back from its output).
pub fn serve(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Serve {
    let db = dir.join("piswarm.db");
    let mut all = vec![
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--out",
        dir.to_str().unwrap(),
        "--db",
        db.to_str().unwrap(),
    ];
    all.extend_from_slice(args);
    let mut proc = Proc::start(dir, "serve", &all, env);
    let listen = proc.wait_for_word_after("listening on ");
    let http = (!args.contains(&"--no-http"))
        .then(|| proc.wait_for_word_after("dashboard at http://"))
        .map(|u| u.split('/').next().unwrap().to_string());
    let metrics = args
        .contains(&"--metrics")
        .then(|| proc.wait_for_word_after("metrics at http://"))
        .map(|u| u.split('/').next().unwrap().to_string());
    Serve {
        proc,
        listen,
        http,
        metrics,
    }
}

/// `GET`/`POST` `path` on `addr`, with a bearer token if given: the status and the body.
pub fn http(addr: &str, method: &str, path: &str, token: Option<&str>) -> (u16, String) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime
        .block_on(piswarm::commands::status::request(
            addr, method, path, token,
        ))
        .unwrap_or_else(|e| panic!("{method} http://{addr}{path}: {e}"))
}

/// Polls `check` every 20 ms until it gives a value, at most [`DEADLINE`].
pub fn poll<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let until = Instant::now() + DEADLINE;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(Instant::now() < until, "{what}: not within {DEADLINE:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A scrape parsed with a Prometheus text-format parser: every sample by its name and labels
/// (`name{k="v",…}` with labels sorted), and every metric's declared type.
pub struct Scrape {
    pub samples: HashMap<String, f64>,
    pub types: HashMap<String, String>,
    pub raw: String,
}

impl Scrape {
    pub fn parse(text: &str) -> Scrape {
        let lines = text.lines().map(|l| Ok(l.to_string()));
        let parsed = prometheus_parse::Scrape::parse(lines)
            .unwrap_or_else(|e| panic!("not the Prometheus text format ({e}):\n{text}"));
        let mut samples = HashMap::new();
        for s in &parsed.samples {
            let mut labels: Vec<(String, String)> = s
                .labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            labels.sort();
            let key = if labels.is_empty() {
                s.metric.clone()
            } else {
                let inner: Vec<String> =
                    labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
                format!("{}{{{}}}", s.metric, inner.join(","))
            };
            let value = match &s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => *v,
                prometheus_parse::Value::Histogram(buckets) => {
                    buckets.last().map_or(0.0, |b| b.count)
                }
                prometheus_parse::Value::Summary(_) => f64::NAN,
            };
            samples.insert(key, value);
        }
        let types = text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| l.split_once(' '))
            .map(|(n, t)| (n.to_string(), t.to_string()))
            .collect();
        Scrape {
            samples,
            types,
            raw: text.to_string(),
        }
    }

    /// The value of `key` (`name` or `name{k="v",…}` with labels sorted); fails if absent.
    pub fn get(&self, key: &str) -> f64 {
        *self
            .samples
            .get(key)
            .unwrap_or_else(|| panic!("no sample {key} in:\n{}", self.raw))
    }

    /// The samples of metric `name`, whatever their labels.
    pub fn family(&self, name: &str) -> Vec<(&str, f64)> {
        self.samples
            .iter()
            .filter(|(k, _)| *k == name || k.starts_with(&format!("{name}{{")))
            .map(|(k, v)| (k.as_str(), *v))
            .collect()
    }
}
