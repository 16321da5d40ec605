//! `piswarm serve`: the coordinator and its TCP server, until a signal or the caller says stop.

use crate::coordinator::{self, CoordinatorConfig, CoordinatorHandle, StoreLink};
use crate::job::Job;
use crate::legacy;
use crate::report::FinalReport;
use crate::server::{self, ServerConfig};
use crate::store::{Location, RunState, Store};
use std::path::PathBuf;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Options of `piswarm serve`.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub job: Job,
    /// The SQLite store: runs and every accepted result.
    pub db: PathBuf,
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

impl ServeOptions {
    /// Options with the defaults of the command line.
    pub fn new(job: Job, db: PathBuf, out: PathBuf) -> ServeOptions {
        ServeOptions {
            job,
            db,
            out,
            quiet: true,
            max_prefetch: 64,
            lease: None,
            server: ServerConfig::default(),
            exit_when_done: false,
            legacy_listen: None,
        }
    }
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

    // The store: resume the latest run if it is unfinished and has the same job, else a new run.
    let location = Location::File(options.db.clone());
    let store = Store::open(&location)?;
    let resume = store.resumable(options.job)?;
    let run = match &resume {
        Some(r) => {
            println!(
                "piswarm: resuming run {} from {} ({} intervals already done)",
                r.run.id,
                options.db.display(),
                r.done_ids.len()
            );
            store.set_state(r.run.id, RunState::Running)?;
            r.run.id
        }
        None => store.create_run(options.job)?,
    };
    config.run_id = run as u64;
    let (failures_tx, failures) = tokio::sync::mpsc::unbounded_channel();
    let (writer, writer_thread) = crate::store::Writer::start(store, failures_tx)?;
    let link = StoreLink {
        writer,
        run,
        failures,
        path: Some(options.db.clone()),
    };
    let (coordinator, task) = coordinator::spawn_with(config, resume, Some(link));
    let job = options.job;
    println!(
        "piswarm: coordinator listening on {addr} — run {run}, job: {}, chunk {}",
        job.terms
            .map_or("open-ended".to_string(), |n| format!("{n} terms")),
        job.chunk
    );
    // Write the files as soon as a bounded job completes, while still serving.
    let files_on_completion = {
        let (coordinator, db, out) = (coordinator.clone(), options.db.clone(), options.out.clone());
        tokio::spawn(async move {
            if coordinator.wait_complete().await.is_ok() {
                write_files(&coordinator, &db, run, &out).await;
            }
        })
    };
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
    let mut snapshots = coordinator.snapshot();
    let store_failed = async move {
        snapshots
            .wait_for(|s| s.store_failed.is_some())
            .await
            .map(|s| s.store_failed.clone())
    };
    let failure = tokio::select! {
        _ = shutdown.cancelled() => None,
        _ = coordinator.wait_complete(), if options.exit_when_done => None,
        failed = store_failed => failed.ok().flatten(),
    };
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
    files_on_completion.abort();
    if failure.is_none() {
        let _ = coordinator.flush().await;
        let state = if report_complete(&coordinator) {
            RunState::Complete
        } else {
            RunState::Stopped
        };
        write_files(&coordinator, &options.db, run, &options.out).await;
        if let Ok(store) = Store::open(&location) {
            let _ = store.set_state(run, state);
        }
    }
    drop(coordinator);
    let _ = task.await;
    let _ = tokio::task::spawn_blocking(move || writer_thread.join()).await;
    println!("{}", report.human());
    if let Some(reason) = failure {
        anyhow::bail!("stopped because the store failed: {reason}");
    }
    println!(
        "piswarm: results written to {} (store: {})",
        options.out.display(),
        options.db.display()
    );
    Ok(report)
}

fn report_complete(coordinator: &CoordinatorHandle) -> bool {
    coordinator.snapshot().borrow().complete
}

/// Makes everything durable, then exports results.json and final.json from the store.
async fn write_files(
    coordinator: &CoordinatorHandle,
    db: &std::path::Path,
    run: i64,
    out: &std::path::Path,
) {
    if coordinator.flush().await.is_err() {
        return;
    }
    let (db, out) = (db.to_path_buf(), out.to_path_buf());
    let written = tokio::task::spawn_blocking(move || {
        let store = Store::open(&Location::File(db))?;
        crate::export::write_files(&store, run, &out).map(|()| out)
    })
    .await;
    match written {
        Ok(Ok(out)) => tracing::info!(dir = %out.display(), "wrote results.json and final.json"),
        Ok(Err(e)) => tracing::error!("could not write the result files: {e}"),
        Err(e) => tracing::error!("could not write the result files: {e}"),
    }
}
