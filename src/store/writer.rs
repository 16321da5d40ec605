//! The store's write side: one thread that owns the write connection of one run.
//!
//! The coordinator sends it its [`Write`]s, each with a sequence number; it commits them in batches
//! (group commit: whatever queued up while the previous transaction was being written goes into
//! the next one) and then publishes the highest sequence number committed on a `watch` channel
//! ([`Durability`]). It never talks to sessions: the coordinator alone turns commits into
//! acknowledgements. If a commit fails, it says so on the same channel and drops everything
//! after: nothing more can be made durable.
//!
//! It also keeps a high-water mark of the results made durable, in a file beside the database
//! (`<db>.acked`, at most once a second): a store that comes back with fewer results than the
//! mark says — its `-wal` file deleted or damaged after a crash — is detected when the run is
//! resumed ([`super::Store::load`]), not silently recomputed.
//!
//! An optional [`CommitObserver`] is told how long each commit took (the metrics'
//! `piswarm_store_commit_seconds`).

use super::{result_row, state_name, Location, Store, StoreError};
use crate::coordinator::RunId;
use crate::coordinator::{Durability, RunState, Write};
use crate::maths::exact::ExactSum;
use crate::report::{now_iso8601, Totals};
use rusqlite::params;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};

/// Called by the writer thread after each successful commit with the time it took (a
/// transaction of a group commit). It runs on the writer's thread: it must be quick and never
/// block.
pub type CommitObserver = Arc<dyn Fn(Duration) + Send + Sync>;

/// Most writes committed in one transaction.
const MAX_BATCH: usize = 20_000;
/// Writes queued for the writer thread; the coordinator waits when it is full (backpressure).
const QUEUE: usize = 2 * MAX_BATCH;
/// How often, at most, the high-water mark is written.
const MARK_EVERY: Duration = Duration::from_secs(1);

/// The high-water mark file of a store.
pub fn mark_path(db: &Path) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push(".acked");
    PathBuf::from(name)
}

/// Reads a store's high-water mark: the run and how many of its results were durable.
pub fn read_mark(db: &Path) -> Option<(RunId, u64)> {
    let text = std::fs::read_to_string(mark_path(db)).ok()?;
    let mut words = text.split_whitespace();
    let (Some("run"), Some(run), Some("results"), Some(n)) =
        (words.next(), words.next(), words.next(), words.next())
    else {
        return None;
    };
    Some((RunId(run.parse().ok()?), n.parse().ok()?))
}

/// Writes the mark: a temporary file, synced, renamed over the old one.
fn write_mark(db: &Path, run: RunId, results: u64) -> std::io::Result<()> {
    let path = mark_path(db);
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    std::io::Write::write_all(
        &mut tmp,
        format!("run {run} results {results}\n").as_bytes(),
    )?;
    tmp.as_file().sync_all()?;
    tmp.persist(&path).map_err(|e| e.error)?;
    Ok(())
}

/// Starts the writer thread of run `run` on its own connection: the coordinator's writes go in
/// on the sender, what is durable comes out on the `watch` (the shell's [`StoreLink`]); tells
/// `observer`, if any, how long each commit took.
///
/// [`StoreLink`]: crate::coordinator::StoreLink
#[allow(clippy::type_complexity)]
pub fn start(
    store: Store,
    run: RunId,
    observer: Option<CommitObserver>,
) -> Result<
    (
        mpsc::Sender<Write>,
        watch::Receiver<Durability>,
        std::thread::JoinHandle<()>,
    ),
    StoreError,
> {
    let (writes, rx) = mpsc::channel(QUEUE);
    let (durable_tx, durable) = watch::channel(Durability::default());
    let thread = std::thread::Builder::new()
        .name("piswarm-store".into())
        .spawn(move || writer_loop(store, run, rx, durable_tx, observer))
        .map_err(|e| {
            StoreError::Io(std::io::Error::other(format!(
                "cannot start the store's writer thread: {e}"
            )))
        })?;
    Ok((writes, durable, thread))
}

fn writer_loop(
    mut store: Store,
    run: RunId,
    mut rx: mpsc::Receiver<Write>,
    durable: watch::Sender<Durability>,
    observer: Option<CommitObserver>,
) {
    let mut batch = Vec::with_capacity(1024);
    let db = match store.location() {
        Location::File(p) => Some(p.clone()),
        Location::Memory => None,
    };
    let mut durable_results = store.count_results(run).map_or(0, |c| c.0);
    let mut marked = durable_results;
    let mut last_mark = Instant::now();
    while let Some(op) = rx.blocking_recv() {
        batch.push(op);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        let last = batch.iter().map(Write::seq).max().unwrap_or(0);
        let started = Instant::now();
        match commit(&mut store, run, &batch) {
            Ok(inserted) => {
                if let Some(observe) = &observer {
                    observe(started.elapsed());
                }
                durable.send_modify(|d| d.committed = d.committed.max(last));
                batch.clear();
                durable_results += inserted;
                if let Some(db) = &db {
                    if durable_results > marked && last_mark.elapsed() >= MARK_EVERY {
                        match write_mark(db, run, durable_results) {
                            Ok(()) => marked = durable_results,
                            Err(e) => {
                                tracing::warn!("could not write the store's high-water mark: {e}")
                            }
                        }
                        last_mark = Instant::now();
                    }
                }
            }
            Err(e) => {
                let reason = format!("could not write to the store: {e}");
                tracing::error!("{reason}; results are no longer acknowledged");
                durable.send_modify(|d| d.failed = Some(reason));
                // Nothing more can be made durable: drop everything from now on.
                rx.close();
                while rx.blocking_recv().is_some() {}
                return;
            }
        }
    }
}

/// Commits one batch in one transaction; returns how many results were inserted.
pub(super) fn commit(
    store: &mut Store,
    run: RunId,
    batch: &[Write],
) -> Result<u64, rusqlite::Error> {
    let tx = store.conn.transaction()?;
    let mut inserted = 0u64;
    {
        let mut insert = tx.prepare_cached(&result_row::insert_sql())?;
        let mut totals: Option<(&Totals, &ExactSum, RunState)> = None;
        let mut reserved: Option<u64> = None;
        for op in batch {
            match op {
                Write::Result { record, .. } => {
                    inserted += result_row::insert(&mut insert, run, record)? as u64;
                }
                Write::Reserve { upto, .. } => reserved = Some(reserved.unwrap_or(0).max(*upto)),
                Write::Totals {
                    totals: t,
                    pi_exact,
                    state,
                    ..
                } => totals = Some((t, &**pi_exact, *state)),
            }
        }
        if let Some(upto) = reserved {
            tx.execute(
                "UPDATE runs SET issued_upto = MAX(issued_upto, ?2) WHERE id = ?1",
                params![run, upto as i64],
            )?;
        }
        if let Some((t, pi_exact, state)) = totals {
            tx.execute(
                "UPDATE runs SET intervals_done = ?2, terms_done = ?3, even_sum = ?4, odd_sum = ?5, pi_exact = ?6,
                 pi = ?7, workers = ?8, elapsed_s = ?9, state = ?10, updated_at = ?11, pi_bound = ?12 WHERE id = ?1",
                params![
                    run,
                    t.intervals_done as i64,
                    t.terms_done as i64,
                    t.even_sum.0.to_string(),
                    t.odd_sum.0.to_string(),
                    pi_exact.to_hex(),
                    t.pi,
                    t.workers as i64,
                    t.elapsed_s,
                    state_name(state),
                    now_iso8601(),
                    t.pi_bound,
                ],
            )?;
        }
    }
    tx.commit()?;
    Ok(inserted)
}
