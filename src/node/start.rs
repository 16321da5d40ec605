//! Starting a stored run: the one place where a coordinator is wired to its store. The store's
//! run is read back (every result verified again), its writer thread started, and the
//! coordinator spawned with a [`StoreLink`] to it (`serve`, `run` and `bench` all start runs
//! here).

use crate::coordinator::printer::Printer;
use crate::coordinator::RunId;
use crate::coordinator::{spawn_with, CoordinatorHandle, CoreConfig, ResumeState, StoreLink};
use crate::store::{writer, CommitObserver, Store, StoreError};
use std::path::PathBuf;

/// How [`start_run`] sets a coordinator up.
pub struct StartOptions {
    pub config: CoreConfig,
    /// Print a line per durable result to standard output.
    pub print_results: bool,
    /// The store's file (to watch its disk), if it is a file.
    pub path: Option<PathBuf>,
    pub min_free_disk: u64,
    /// Told how long each of the store's commits took (metrics).
    pub on_commit: Option<CommitObserver>,
}

impl std::fmt::Debug for StartOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StartOptions")
            .field("config", &self.config)
            .field("print_results", &self.print_results)
            .field("path", &self.path)
            .field("min_free_disk", &self.min_free_disk)
            .field("on_commit", &self.on_commit.is_some())
            .finish()
    }
}

/// A coordinator wired to its store: what `serve`, `run` and `bench` run.
#[derive(Debug)]
pub struct RunningRun {
    pub id: RunId,
    pub handle: CoordinatorHandle,
    /// Stored results that failed re-verification on resume (deleted; they will be redone).
    pub dropped: Vec<u64>,
    /// Intervals already done when it started.
    pub resumed_done: u64,
    /// Results the store's high-water mark says were durable and are missing (a lost `-wal`).
    pub lost: u64,
    task: tokio::task::JoinHandle<()>,
    writer: std::thread::JoinHandle<()>,
}

impl RunningRun {
    /// Drops this handle and waits for the coordinator's task and the store's writer to end
    /// (other clones of the handle must be gone too).
    pub async fn finish(self) {
        drop(self.handle);
        let _ = self.task.await;
        let writer = self.writer;
        let _ = tokio::task::spawn_blocking(move || writer.join()).await;
    }
}

/// Starts the coordinator of run `run` in `store`: reads back (and re-verifies) what is stored,
/// starts the store's writer, spawns the coordinator. Reading a large run takes a while; it runs
/// on a blocking thread.
pub async fn start_run(
    store: Store,
    run: RunId,
    mut options: StartOptions,
) -> Result<RunningRun, StoreError> {
    let (store, resume) = tokio::task::spawn_blocking(move || {
        let mut store = store;
        let resume = store.load(run)?;
        Ok::<_, StoreError>((store, resume))
    })
    .await
    .map_err(|e| StoreError::Io(std::io::Error::other(e.to_string())))??;
    let dropped = resume.dropped.clone();
    let resumed_done = resume.done_ids.len() as u64;
    let lost = resume.lost;
    let state = ResumeState {
        issued_upto: resume.run.issued_upto,
        pi: resume.pi,
        even_sum: resume.run.totals.even_sum.0,
        odd_sum: resume.run.totals.odd_sum.0,
        terms_done: resume.run.totals.terms_done,
        worker_names: resume.worker_names,
        elapsed_s: resume.run.totals.elapsed_s,
        pi_bound: resume.pi_bound,
        done_ids: resume.done_ids,
    };
    options.config.run_id = run;
    options.config.run_uid = resume.run.uid.clone();
    options.config.kernel = resume.run.kernel;
    options.config.emit_durable = options.print_results;
    let (writes, durability, writer_thread) = writer::start(store, run, options.on_commit.take())?;
    let link = StoreLink {
        writes,
        durability,
        path: options.path,
        min_free_disk: options.min_free_disk,
    };
    let printer = if options.print_results {
        Some(Printer::stdout()?)
    } else {
        None
    };
    let (handle, task) = spawn_with(options.config, Some(state), Some(link), printer);
    Ok(RunningRun {
        id: run,
        handle,
        dropped,
        resumed_done,
        lost,
        task,
        writer: writer_thread,
    })
}
