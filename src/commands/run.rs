//! `piswarm run`: the whole job on this machine — a coordinator on an ephemeral loopback port and
//! `W` workers that connect to it over real TCP — with a progress bar and the final report.

use crate::coordinator::CoreConfig;
use crate::job::Job;
use crate::maths::kernel::Kernel;
use crate::net::{self, Listeners, ServerConfig};
use crate::node;
use crate::report::FinalReport;
use crate::store::{Location, Store};
use crate::worker::{self, WorkerConfig};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Options of a local run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub job: Job,
    pub workers: usize,
    /// Compute threads per worker.
    pub threads_per_worker: usize,
    pub progress: bool,
    /// A SQLite file for the run; `None` keeps it in memory.
    pub db: Option<std::path::PathBuf>,
    /// The π kernel of the run.
    pub kernel: Kernel,
}

/// Runs the job to completion and returns its report.
pub async fn run_local(options: RunOptions) -> anyhow::Result<FinalReport> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    // Results go through the store like in `serve` (group commit, acknowledged once durable).
    let location = options.db.clone().map_or(Location::Memory, Location::File);
    let store = Store::open(&location)?;
    let run = store.create_run_with(options.job, options.kernel)?;
    let mut config = CoreConfig::new(options.job);
    config.max_prefetch = crate::wire::DEFAULT_MAX_PREFETCH;
    let running = node::start_run(
        store,
        run,
        node::StartOptions {
            config,
            print_results: false,
            path: options.db.clone(),
            min_free_disk: options
                .db
                .as_deref()
                .map_or(0, crate::node::default_min_free_disk),
            on_commit: None,
        },
    )
    .await?;
    let coordinator = running.handle.clone();
    let shutdown = CancellationToken::new();
    let tracker = TaskTracker::new();
    let server = tokio::spawn(net::serve(
        Listeners {
            v1: listener,
            legacy: None,
        },
        coordinator.clone(),
        ServerConfig::default(),
        shutdown.clone(),
        tracker.clone(),
    ));

    let mut workers = Vec::new();
    for i in 0..options.workers.max(1) {
        let mut wc = WorkerConfig::new(addr.to_string());
        wc.threads = options.threads_per_worker.max(1);
        wc.name = format!("local-{}", i + 1);
        workers.push(tokio::spawn(worker::run_worker(wc, shutdown.clone())));
    }

    let bar = options
        .progress
        .then(|| progress_bar(options.job.terms.unwrap_or(0)));
    let mut snapshots = coordinator.snapshot();
    loop {
        let snap = snapshots.borrow_and_update().clone();
        if let Some(bar) = &bar {
            bar.set_position(snap.totals.terms_done);
        }
        if snap.complete {
            break;
        }
        if let Some(reason) = snap.store_failed {
            anyhow::bail!("the store failed: {reason}");
        }
        snapshots.changed().await?;
    }
    let report = coordinator.report().await?;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    for w in workers {
        if let Ok(Err(e)) = w.await {
            tracing::warn!("a local worker ended with an error: {e}");
        }
    }
    shutdown.cancel();
    let _ = server.await;
    tracker.close();
    let _ = tokio::time::timeout(Duration::from_secs(5), tracker.wait()).await;
    drop(coordinator);
    running.finish().await;
    Ok(report)
}

fn progress_bar(total: u64) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::with_draw_target(
        Some(total),
        indicatif::ProgressDrawTarget::stderr(),
    );
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{bar:40} {human_pos}/{human_len} terms  {per_sec}  ETA {eta}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar
}
