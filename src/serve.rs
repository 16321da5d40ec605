//! `piswarm serve`: the coordinator and its TCP server, until a signal or the caller says stop.

use crate::coordinator::{self, CoordinatorConfig};
use crate::job::Job;
use crate::legacy;
use crate::report::FinalReport;
use crate::server::{self, ServerConfig};
use std::path::PathBuf;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Options of `piswarm serve`.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub job: Job,
    pub out: PathBuf,
    pub quiet: bool,
    pub max_prefetch: u32,
    pub lease: Option<Duration>,
    pub server: ServerConfig,
    /// Stop by itself once a bounded job is complete.
    pub exit_when_done: bool,
    /// Also serve the original's Python clients, in their own wire format, on this address.
    pub legacy_listen: Option<String>,
}

/// How long stopping waits for sessions to say goodbye.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// Serves on `listener` until `shutdown` is cancelled (or the job completes, with
/// `exit_when_done`); then tells the workers, writes results.json and final.json, and returns the
/// final report.
pub async fn serve(
    listener: TcpListener,
    options: ServeOptions,
    shutdown: CancellationToken,
) -> anyhow::Result<FinalReport> {
    let addr = listener.local_addr()?;
    let legacy_listener = match &options.legacy_listen {
        Some(legacy_addr) => Some(TcpListener::bind(legacy_addr).await.map_err(|e| {
            anyhow::anyhow!("cannot listen on {legacy_addr} (legacy clients): {e}")
        })?),
        None => None,
    };
    let mut config = CoordinatorConfig::new(options.job);
    config.max_prefetch = options.max_prefetch;
    config.lease = options.lease;
    // Workers are asked to speak three times per idle timeout, so a live one is never cut off.
    config.heartbeat = options.server.idle_timeout / 3;
    config.print_results = !options.quiet;
    config.keep_results = true;
    config.out_dir = Some(options.out.clone());
    let (coordinator, task) = coordinator::spawn(config);
    let job = options.job;
    println!(
        "piswarm: coordinator listening on {addr} — job: {}, chunk {}",
        job.terms
            .map_or("open-ended".to_string(), |n| format!("{n} terms")),
        job.chunk
    );
    let tracker = TaskTracker::new();
    let accept_stop = shutdown.child_token();
    let server = tokio::spawn(server::serve(
        listener,
        coordinator.clone(),
        options.server.clone(),
        accept_stop.clone(),
        tracker.clone(),
    ));
    let legacy_server = match legacy_listener {
        Some(legacy_listener) => {
            println!(
                "piswarm: legacy clients (the original's wire format) on {}",
                legacy_listener.local_addr()?
            );
            Some(tokio::spawn(legacy::serve_legacy(
                legacy_listener,
                coordinator.clone(),
                options.server.clone(),
                accept_stop.clone(),
                tracker.clone(),
            )))
        }
        None => None,
    };
    if options.exit_when_done {
        tokio::select! {
            _ = shutdown.cancelled() => {}
            _ = coordinator.wait_complete() => {}
        }
    } else {
        shutdown.cancelled().await;
    }
    println!("piswarm: stopping — telling workers, writing results");
    accept_stop.cancel();
    let _ = server.await;
    if let Some(legacy_server) = legacy_server {
        let _ = legacy_server.await;
    }
    coordinator.drain().await?;
    tracker.close();
    if tokio::time::timeout(STOP_GRACE, tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!("some sessions did not end within {STOP_GRACE:?}; closing them");
    }
    let report = coordinator.report().await?;
    drop(coordinator);
    let _ = task.await;
    println!("{}", report.human());
    println!("piswarm: results written to {}", options.out.display());
    Ok(report)
}
