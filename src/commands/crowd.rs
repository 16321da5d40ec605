//! `piswarm bench crowd`: a real crowd of unequal workers against a real `serve`, and the run's
//! time against the crowd's ideal.
//!
//! Every member is a `piswarm worker` process on this machine: one with a thread per core, one at
//! the lowest priority (`nice -n 19`), four that wait 0.1 s to 3 s after each interval (`--pace`:
//! phones and old laptops, asking for 16 intervals each), and two that go silent for good part-way
//! (stopped with SIGSTOP: their connections stay open, nothing is answered). Their speeds spread
//! over more than 100×. The ideal is the job over the sum of the speeds of those that stay (the
//! CPU-bound ones share the cores: together they are counted as the machine's kernel rate on
//! every core), plus one interval on one core. `--no-backups` runs the same crowd against a
//! coordinator that hands out no backup copies, for comparison.

use super::child::ServeChild;
use serde::Serialize;
use std::time::{Duration, Instant};

/// How the crowd is run.
#[derive(Debug, Clone)]
pub struct CrowdOptions {
    pub terms: u64,
    pub chunk: u64,
    /// Hand out backup copies (the coordinator's default).
    pub backups: bool,
    /// Give up after this long (the report then says the run did not complete).
    pub limit: Duration,
}

/// One member of the crowd.
#[derive(Debug, Clone, Serialize)]
pub struct Member {
    pub name: String,
    /// What makes it what it is: threads, nice, pace.
    pub how: String,
    /// Its speed alone, in terms per second (for the CPU-bound ones: their share of the machine).
    pub terms_per_s: Option<f64>,
    /// When it goes silent for good (seconds after the start), if it does.
    pub vanishes_at_s: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CrowdReport {
    pub cpu: String,
    pub terms: u64,
    pub chunk: u64,
    pub backups: bool,
    pub members: Vec<Member>,
    /// The kernel on one core, and on every core at once (terms/s), measured first.
    pub kernel_one_core: f64,
    pub kernel_all_cores: f64,
    /// The job over the summed speeds of the members that stay, plus one interval on one core.
    pub ideal_s: f64,
    /// From the workers' start to the last interval durable (None: not within the limit).
    pub makespan_s: Option<f64>,
    pub makespan_over_ideal: Option<f64>,
    pub backups_issued: u64,
    pub backups_won: u64,
    /// Terms of the backup copies handed out, over the job's terms: at most this share of the
    /// job was computed twice.
    pub backup_terms_share: f64,
    /// Terms of the results answered `duplicate` (copies computed and delivered twice), over the
    /// job's terms.
    pub duplicate_terms_share: f64,
}

/// Runs the crowd and reports.
pub async fn crowd(options: &CrowdOptions) -> anyhow::Result<CrowdReport> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let (one, all) = tokio::task::spawn_blocking(move || {
        let one = super::bench::kernel(1.0, 1).terms_per_s;
        let all = super::bench::kernel(1.0, cores).terms_per_s;
        (one, all)
    })
    .await?;
    let chunk = options.chunk.max(1);
    let interval_s = chunk as f64 / one;
    let mut args = vec![
        "--terms".to_string(),
        options.terms.to_string(),
        "--chunk".to_string(),
        chunk.to_string(),
        "--idle-timeout".to_string(),
        "10m".to_string(),
    ];
    if !options.backups {
        args.push("--no-backups".into());
    }
    let serve = ServeChild::spawn("crowd", &args).await?;
    let addr = serve.addr.to_string();

    struct Spec {
        name: &'static str,
        threads: usize,
        nice: bool,
        pace: Option<f64>,
        vanish: Option<f64>,
    }
    let specs = [
        Spec {
            name: "fast",
            threads: cores,
            nice: false,
            pace: None,
            vanish: None,
        },
        Spec {
            name: "niced",
            threads: 1,
            nice: true,
            pace: None,
            vanish: None,
        },
        Spec {
            name: "paced-0.1s",
            threads: 1,
            nice: false,
            pace: Some(0.1),
            vanish: None,
        },
        Spec {
            name: "paced-0.3s",
            threads: 1,
            nice: false,
            pace: Some(0.3),
            vanish: None,
        },
        Spec {
            name: "paced-1s",
            threads: 1,
            nice: false,
            pace: Some(1.0),
            vanish: None,
        },
        Spec {
            name: "paced-3s",
            threads: 1,
            nice: false,
            pace: Some(3.0),
            vanish: None,
        },
        Spec {
            name: "vanishes-fast",
            threads: 1,
            nice: false,
            pace: None,
            vanish: Some(0.5),
        },
        Spec {
            name: "vanishes-paced",
            threads: 1,
            nice: false,
            pace: Some(0.3),
            vanish: Some(1.0),
        },
    ];
    let nice = std::path::Path::new("/usr/bin/nice").exists();
    let exe = std::env::current_exe()?;
    let mut members = Vec::new();
    let mut children = Vec::new();
    let start = Instant::now();
    for spec in &specs {
        if spec.nice && !nice {
            continue;
        }
        let mut command = if spec.nice {
            let mut c = tokio::process::Command::new("/usr/bin/nice");
            c.args(["-n", "19"]).arg(&exe);
            c
        } else {
            tokio::process::Command::new(&exe)
        };
        command
            .args([
                "worker",
                "--connect",
                &addr,
                "--name",
                spec.name,
                "--threads",
            ])
            .arg(spec.threads.to_string());
        if let Some(pace) = spec.pace {
            command.args(["--pace", &format!("{pace}s"), "--prefetch", "16"]);
        }
        let child = command
            .env("PISWARM_LOG", "error")
            .env_remove("PISWARM_TOKEN")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()?;
        let speed = match spec.pace {
            Some(pace) => Some(chunk as f64 / (pace + interval_s)),
            None => None,
        };
        members.push(Member {
            name: spec.name.to_string(),
            how: format!(
                "{} thread(s){}{}",
                spec.threads,
                if spec.nice { ", nice 19" } else { "" },
                spec.pace.map_or(String::new(), |p| format!(
                    ", {p} s after each interval, prefetch 16"
                ))
            ),
            terms_per_s: speed,
            vanishes_at_s: spec.vanish,
        });
        children.push((child, spec.vanish));
    }
    // The CPU-bound members that stay share the machine: together, its rate on every core.
    let paced: f64 = members
        .iter()
        .filter(|m| m.vanishes_at_s.is_none())
        .filter_map(|m| m.terms_per_s)
        .sum();
    let ideal_s = options.terms as f64 / (all + paced) + interval_s;

    let total = options.terms.div_ceil(chunk);
    let mut makespan = None;
    let mut last = Default::default();
    let deadline = start + options.limit;
    while Instant::now() < deadline {
        for (child, vanish) in &mut children {
            if vanish.is_some_and(|v| start.elapsed().as_secs_f64() >= v) {
                if let Some(pid) = child.id() {
                    // Silent for good: the process stops, its connection stays open.
                    let _ = std::process::Command::new("kill")
                        .args(["-STOP", &pid.to_string()])
                        .status();
                }
                *vanish = None;
            }
        }
        if let Ok(m) = serve.scrape().await {
            let done = m.value("piswarm_intervals_done") as u64;
            last = m;
            if done >= total {
                makespan = Some(start.elapsed().as_secs_f64());
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for (mut child, _) in children {
        let _ = child.kill().await;
    }
    let m = last;
    serve.stop().await;
    let terms = options.terms.max(1) as f64;
    Ok(CrowdReport {
        cpu: super::bench::cpu_model(),
        terms: options.terms,
        chunk,
        backups: options.backups,
        members,
        kernel_one_core: one,
        kernel_all_cores: all,
        ideal_s,
        makespan_s: makespan,
        makespan_over_ideal: makespan.map(|t| t / ideal_s),
        backups_issued: m.value("piswarm_backups_issued_total") as u64,
        backups_won: m.value("piswarm_backups_won_total") as u64,
        backup_terms_share: m.value("piswarm_backup_terms_total") / terms,
        duplicate_terms_share: m.value("piswarm_results_total{status=\"duplicate\"}")
            * chunk as f64
            / terms,
    })
}
