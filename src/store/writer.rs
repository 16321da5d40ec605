//! The store's write side: one thread that owns the write connection of one run.
//!
//! The coordinator sends it [`Write`]s, each with a sequence number; it commits them in batches
//! (group commit: whatever queued up while the previous transaction was being written goes into
//! the next one) and then publishes the highest sequence number committed on a `watch` channel
//! ([`Durability`]). It never talks to sessions: the coordinator alone turns commits into
//! acknowledgements. If a commit fails, it says so on the same channel and drops everything
//! after: nothing more can be made durable. An optional [`CommitObserver`] is told how long each
//! commit took (the metrics' `piswarm_store_commit_seconds`).

use super::{RunState, Store, StoreError};
use crate::maths::exact::ExactSum;
use crate::report::{now_iso8601, ResultRecord, Totals};
use rusqlite::params;
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

/// A write. Sequence numbers increase by one per write.
#[derive(Debug, Clone, PartialEq)]
pub enum Write {
    /// An accepted result.
    Result { seq: u64, record: ResultRecord },
    /// Interval ids below `upto` may be handed out: after a crash, everything below it may have
    /// been, and re-sent results for such ids are recognised.
    Reserve { seq: u64, upto: u64 },
    /// The run's running totals and state (a cache of what its results say).
    Totals {
        seq: u64,
        totals: Totals,
        pi_exact: Box<ExactSum>,
        state: RunState,
    },
}

impl Write {
    pub fn seq(&self) -> u64 {
        match self {
            Write::Result { seq, .. } | Write::Reserve { seq, .. } | Write::Totals { seq, .. } => {
                *seq
            }
        }
    }
}

/// What is durable: every write up to `committed`; `failed` once the store cannot write.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Durability {
    pub committed: u64,
    pub failed: Option<String>,
}

/// The handle of a writer thread.
#[derive(Debug, Clone)]
pub struct Writer {
    ops: mpsc::Sender<Write>,
}

impl Writer {
    /// Starts the writer thread of run `run` on its own connection.
    pub fn start(
        store: Store,
        run: i64,
    ) -> Result<
        (
            Writer,
            watch::Receiver<Durability>,
            std::thread::JoinHandle<()>,
        ),
        StoreError,
    > {
        Self::start_observed(store, run, None)
    }

    /// [`Writer::start`], telling `observer` how long each commit took.
    pub fn start_observed(
        store: Store,
        run: i64,
        observer: Option<CommitObserver>,
    ) -> Result<
        (
            Writer,
            watch::Receiver<Durability>,
            std::thread::JoinHandle<()>,
        ),
        StoreError,
    > {
        let (ops, rx) = mpsc::channel(QUEUE);
        let (durable_tx, durable) = watch::channel(Durability::default());
        let thread = std::thread::Builder::new()
            .name("piswarm-store".into())
            .spawn(move || writer_loop(store, run, rx, durable_tx, observer))
            .map_err(|e| {
                StoreError::Io(std::io::Error::other(format!(
                    "cannot start the store's writer thread: {e}"
                )))
            })?;
        Ok((Writer { ops }, durable, thread))
    }

    /// Queues a write; waits while the queue is full. False if the writer has stopped.
    pub async fn send(&self, write: Write) -> bool {
        self.ops.send(write).await.is_ok()
    }
}

fn writer_loop(
    mut store: Store,
    run: i64,
    mut rx: mpsc::Receiver<Write>,
    durable: watch::Sender<Durability>,
    observer: Option<CommitObserver>,
) {
    let mut batch = Vec::with_capacity(1024);
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
            Ok(()) => {
                if let Some(observe) = &observer {
                    observe(started.elapsed());
                }
                durable.send_modify(|d| d.committed = d.committed.max(last));
                batch.clear();
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

/// Commits one batch in one transaction.
pub(super) fn commit(store: &mut Store, run: i64, batch: &[Write]) -> Result<(), rusqlite::Error> {
    let tx = store.conn.transaction()?;
    {
        let mut insert = tx.prepare_cached(
            "INSERT OR IGNORE INTO results (run_id, interval_id, a, b, worker, peer, even_sum, odd_sum, pi, duration_s, timestamp)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
        )?;
        let mut totals: Option<(&Totals, &ExactSum, RunState)> = None;
        let mut reserved: Option<u64> = None;
        for op in batch {
            match op {
                Write::Result { record: r, .. } => {
                    insert.execute(params![
                        run,
                        r.id.0 as i64,
                        r.a.0 as i64,
                        r.b.0 as i64,
                        r.worker,
                        r.peer,
                        r.even_sum.0.to_string(),
                        r.odd_sum.0.to_string(),
                        r.pi,
                        r.duration_s,
                        r.timestamp,
                    ])?;
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
                 pi = ?7, workers = ?8, elapsed_s = ?9, state = ?10, updated_at = ?11 WHERE id = ?1",
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
                    state.as_str(),
                    now_iso8601(),
                ],
            )?;
        }
    }
    tx.commit()
}
