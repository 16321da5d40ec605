//! `piswarm bench crowd`: real crowds of unequal workers against a real `serve`, and each run's
//! time against the ideal.
//!
//! Every member is a `piswarm worker` process on this machine. Three runs of the same job, each
//! against a fresh `piswarm serve`:
//!
//! * **alone**: one worker with a thread per core — the machine's capacity with real processes;
//! * **pair**: the same worker, joining a slow honest client that asked for 16 intervals and
//!   reports one every 3 s (`--pace 3s`, a phone) and took its intervals first;
//! * **hoarders**: 41 connections take every interval of a 64-interval job and never answer
//!   (they keep their connections open); then the fast worker joins: when its first result is
//!   durable, and when the job is;
//! * **crowd**: the fast worker, one at the lowest priority (`nice -n 19`), four that wait 0.1 s
//!   to 3 s after each interval (`--pace`, asking for 16 each), and two that go silent for good
//!   part-way (stopped with SIGSTOP: their connections stay open, nothing is answered). Their
//!   speeds spread over more than 100×.
//!
//! All the members share this machine's cores, so the crowd's summed speed is the machine's:
//! the ideal of every run is the **alone** run's time (the job over that speed, its last
//! interval included). A run's clock starts when its first worker has joined and stops when the
//! last interval is durable. `--no-backups` runs the same against a coordinator that hands out
//! no backup copies, for comparison.

use super::child::ServeChild;
use serde::Serialize;
use std::time::{Duration, Instant};

/// How the runs are made.
#[derive(Debug, Clone)]
pub struct CrowdOptions {
    pub terms: u64,
    pub chunk: u64,
    /// Hand out backup copies (the coordinator's default).
    pub backups: bool,
    /// Give up on a run after this long (the report then says it did not complete).
    pub limit: Duration,
}

/// One member of a run.
#[derive(Debug, Clone, Serialize)]
pub struct Member {
    pub name: String,
    /// What makes it what it is: threads, nice, pace, when it goes silent.
    pub how: String,
}

/// One run.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    pub members: Vec<Member>,
    /// From the first welcome of a worker without a head start to the last interval durable
    /// (None: not within the limit).
    pub makespan_s: Option<f64>,
    /// The makespan over the ideal (the alone run's time).
    pub over_ideal: Option<f64>,
    /// When 25, 50, 75, 90, 99 % of the intervals were durable (seconds): where the time went.
    pub progress_s: Vec<(u32, f64)>,
    /// When the first result was durable (seconds).
    pub first_result_s: Option<f64>,
    pub backups_issued: u64,
    pub backups_won: u64,
    /// Terms of the backup copies handed out, over the job's terms: at most this share of the
    /// job was computed twice.
    pub backup_terms_share: f64,
    /// Terms of the results answered `duplicate` (copies computed and delivered twice), over
    /// the job's terms.
    pub duplicate_terms_share: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct CrowdReport {
    pub cpu: String,
    pub terms: u64,
    pub chunk: u64,
    pub backups: bool,
    /// The kernel alone on every core (terms/s), for reference.
    pub kernel_all_cores: f64,
    /// The ideal: the alone run's makespan.
    pub ideal_s: Option<f64>,
    pub alone: RunReport,
    pub pair: RunReport,
    /// Its job is 64 intervals (not `terms`): its ideal is not the alone run's.
    pub hoarders: RunReport,
    pub crowd: RunReport,
}

/// A member: its name, threads, nice, pace (seconds), when it goes silent (seconds after the
/// run's processes start), and whether it starts before the others (and how long before).
struct Spec {
    name: &'static str,
    threads: usize,
    nice: bool,
    pace: Option<f64>,
    vanish: Option<f64>,
    head_start: Option<f64>,
}

impl Spec {
    fn new(name: &'static str, threads: usize) -> Spec {
        Spec {
            name,
            threads,
            nice: false,
            pace: None,
            vanish: None,
            head_start: None,
        }
    }
}

/// Runs the three crowds and reports.
pub async fn crowd(options: &CrowdOptions) -> anyhow::Result<CrowdReport> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let all =
        tokio::task::spawn_blocking(move || super::bench::current_kernel_rate(1.0, cores)).await?;
    let alone = run(options, &[Spec::new("fast", cores)], None, 0).await?;
    let ideal = alone.makespan_s;
    let phone = Spec {
        pace: Some(3.0),
        head_start: Some(1.0),
        ..Spec::new("phone", 1)
    };
    let pair = run(options, &[Spec::new("fast", cores), phone], ideal, 0).await?;
    let small = CrowdOptions {
        terms: 64 * options.chunk.max(1),
        ..options.clone()
    };
    let hoarders = run(&small, &[Spec::new("fast", cores)], None, 41).await?;
    let crowd = [
        Spec::new("fast", cores),
        Spec {
            nice: true,
            ..Spec::new("niced", 1)
        },
        Spec {
            pace: Some(0.1),
            ..Spec::new("paced-0.1s", 1)
        },
        Spec {
            pace: Some(0.3),
            ..Spec::new("paced-0.3s", 1)
        },
        Spec {
            pace: Some(1.0),
            ..Spec::new("paced-1s", 1)
        },
        Spec {
            pace: Some(3.0),
            ..Spec::new("paced-3s", 1)
        },
        Spec {
            vanish: Some(0.5),
            ..Spec::new("vanishes-fast", 1)
        },
        Spec {
            pace: Some(0.3),
            vanish: Some(1.0),
            ..Spec::new("vanishes-paced", 1)
        },
    ];
    let crowd = run(options, &crowd, ideal, 0).await?;
    let mut alone = alone;
    alone.over_ideal = ideal.map(|_| 1.0);
    Ok(CrowdReport {
        cpu: super::bench::cpu_model(),
        terms: options.terms,
        chunk: options.chunk.max(1),
        backups: options.backups,
        kernel_all_cores: all,
        ideal_s: ideal,
        alone,
        pair,
        hoarders,
        crowd,
    })
}

/// One run of `specs` against a fresh `serve`, after `hoarders` connections took what they may.
async fn run(
    options: &CrowdOptions,
    specs: &[Spec],
    ideal: Option<f64>,
    hoarders: usize,
) -> anyhow::Result<RunReport> {
    let chunk = options.chunk.max(1);
    let mut members = Vec::new();
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
    let hoarding = tokio_util::task::TaskTracker::new();
    let stop_hoarding = tokio_util::sync::CancellationToken::new();
    for i in 0..hoarders {
        let (addr, stop) = (serve.addr, stop_hoarding.clone());
        let (taken_tx, taken_rx) = tokio::sync::oneshot::channel::<()>();
        hoarding.spawn(async move {
            let _ = hoard(addr, i, taken_tx, stop).await;
        });
        // One after the other, so that they take everything in order.
        let _ = tokio::time::timeout(Duration::from_millis(300), taken_rx).await;
    }
    if hoarders > 0 {
        members.push(Member {
            name: format!("{hoarders} hoarders"),
            how: "ask for 64 intervals each, never answer, stay connected".into(),
        });
    }
    let nice = std::path::Path::new("/usr/bin/nice").exists();
    let exe = std::env::current_exe()?;
    let mut children = Vec::new();
    let spawn = |spec: &Spec| -> anyhow::Result<tokio::process::Child> {
        let mut command = if spec.nice && nice {
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
        Ok(command
            .env("PISWARM_LOG", "error")
            .env_remove("PISWARM_TOKEN")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()?)
    };
    // Members with a head start join first (and take their intervals).
    let mut head_start = 0.0f64;
    let early = specs.iter().filter(|s| s.head_start.is_some()).count();
    for spec in specs.iter().filter(|s| s.head_start.is_some()) {
        children.push((spawn(spec)?, spec.vanish));
        head_start = head_start.max(spec.head_start.unwrap_or(0.0));
    }
    let start = Instant::now();
    tokio::time::sleep(Duration::from_secs_f64(head_start)).await;
    for spec in specs.iter().filter(|s| s.head_start.is_none()) {
        children.push((spawn(spec)?, spec.vanish));
    }
    for spec in specs {
        let mut how = format!("{} thread(s)", spec.threads);
        if spec.nice {
            how.push_str(", nice 19");
        }
        if let Some(p) = spec.pace {
            how.push_str(&format!(", {p} s after each interval, asks for 16"));
        }
        if let Some(h) = spec.head_start {
            how.push_str(&format!(", joins {h} s before the others"));
        }
        if let Some(v) = spec.vanish {
            how.push_str(&format!(", silent for good after {v} s"));
        }
        members.push(Member {
            name: spec.name.to_string(),
            how,
        });
    }

    let total = options.terms.div_ceil(chunk);
    let (mut makespan, mut last, mut progress_s) = (None, Default::default(), Vec::new());
    let mut first_result = None;
    let marks = [25u32, 50, 75, 90, 99];
    let deadline = Instant::now() + options.limit;
    // The run's clock starts when the first worker without a head start has joined.
    let mut begun: Option<Instant> = None;
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
        // Scraped every 20 ms: the server renders its metrics 50 times a second, a small
        // share of a core.
        if let Ok(m) = serve.scrape().await {
            let done = m.value("piswarm_intervals_done") as u64;
            if begun.is_none() && m.value("piswarm_sessions_total") >= (hoarders + early + 1) as f64
            {
                begun = Some(Instant::now());
            }
            let clock = begun.unwrap_or_else(Instant::now);
            while let Some(&p) = marks.get(progress_s.len()) {
                if done * 100 < u64::from(p) * total {
                    break;
                }
                progress_s.push((p, clock.elapsed().as_secs_f64()));
            }
            if done > 0 && first_result.is_none() && begun.is_some() {
                first_result = Some(clock.elapsed().as_secs_f64());
            }
            last = m;
            if done >= total {
                makespan = Some(clock.elapsed().as_secs_f64());
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for (mut child, _) in children {
        let _ = child.kill().await;
    }
    stop_hoarding.cancel();
    hoarding.close();
    let _ = tokio::time::timeout(Duration::from_secs(5), hoarding.wait()).await;
    let m = last;
    serve.stop().await;
    let terms = options.terms.max(1) as f64;
    Ok(RunReport {
        members,
        makespan_s: makespan,
        over_ideal: makespan.zip(ideal).map(|(t, i)| t / i),
        progress_s,
        first_result_s: first_result,
        backups_issued: m.value("piswarm_backups_issued_total") as u64,
        backups_won: m.value("piswarm_backups_won_total") as u64,
        backup_terms_share: m.value("piswarm_backup_terms_total") / terms,
        duplicate_terms_share: m.value("piswarm_results_total{status=\"duplicate\"}")
            * chunk as f64
            / terms,
    })
}

/// A hoarder: joins, asks for 64 intervals, tells when it got its first, and then only listens
/// (it never answers) until told to stop.
async fn hoard(
    addr: std::net::SocketAddr,
    index: usize,
    taken: tokio::sync::oneshot::Sender<()>,
    stop: tokio_util::sync::CancellationToken,
) -> anyhow::Result<()> {
    use crate::client::{ClientError, Connection, Hello};
    use crate::wire::{ClientMessage, ServerMessage};
    let mut conn = Connection::connect(&addr.to_string(), None).await?;
    conn.queue(&ClientMessage::Request { count: 64 });
    let hello = Hello {
        agent: Some("piswarm bench crowd".into()),
        ..Hello::new(format!("hoarder-{index}"))
    };
    match conn.handshake(hello).await {
        Ok(_) => {}
        Err(ClientError::Refused { code, message }) => {
            tracing::info!(hoarder = index, ?code, "the server answered: {message}");
            return Ok(());
        }
        Err(e) => anyhow::bail!("hoarder {index}: {e}"),
    }
    let mut taken = Some(taken);
    loop {
        tokio::select! {
            () = stop.cancelled() => return Ok(()),
            message = conn.recv() => match message {
                Ok(ServerMessage::Assign { .. }) | Ok(ServerMessage::Done { .. }) => {
                    if let Some(t) = taken.take() {
                        let _ = t.send(());
                    }
                }
                // It holds what it was given and answers nothing, so no ack comes; an error
                // (its idle time out, say) is logged, and the connection's end ends it.
                Ok(ServerMessage::Welcome { .. }) | Ok(ServerMessage::Ack { .. }) => {}
                Ok(ServerMessage::Error { code, message, .. }) => {
                    tracing::info!(hoarder = index, ?code, "the server answered: {message}");
                }
                Err(ClientError::Closed) => return Ok(()),
                Err(e) => anyhow::bail!("hoarder {index}: {e}"),
            },
        }
    }
}
