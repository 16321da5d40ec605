//! The durable store: runs and every accepted result, in one SQLite file (WAL mode).
//!
//! Two sides:
//! * [`Writer`]: a dedicated thread that owns the write connection. The coordinator sends it
//!   accepted results; it commits them in batches (group commit: whatever queued up while the
//!   previous transaction was being written goes into the next one) and only then releases the
//!   acknowledgements to the workers. A result is therefore acknowledged only once it is durable.
//! * [`Store`]: plain synchronous access for everything else — opening and migrating, creating and
//!   resuming runs, exports and the dashboard's queries (each caller opens its own connection; WAL
//!   lets readers run beside the writer).
//!
//! Exactly-once is enforced by the schema: `UNIQUE (run_id, interval_id)` on results.

pub mod export;

use crate::coordinator::Outbound;
use crate::job::Job;
use crate::maths::exact::ExactSum;
use crate::wire::{Dec, ServerMessage};
use crate::report::{FinalReport, ResultRecord, Totals};
use rusqlite::{params, Connection, OptionalExtension};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// The schema version this build writes; older files are migrated on open.
pub const SCHEMA_VERSION: i64 = 1;

/// Most results committed in one transaction.
const MAX_BATCH: usize = 20_000;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database {path}: {source}")]
    Sqlite {
        path: String,
        source: rusqlite::Error,
    },
    #[error("database {path} is not a piswarm database or is damaged: {detail}")]
    Corrupt { path: String, detail: String },
    #[error("database {path} was written by a newer piswarm (schema {found}, this build knows {SCHEMA_VERSION})")]
    TooNew { path: String, found: i64 },
    #[error("run {0} does not exist")]
    NoSuchRun(i64),
    #[error("the database has no runs yet")]
    NoRuns,
    #[error("writing the export failed: {0}")]
    Io(#[from] std::io::Error),
}

/// Where a store lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    File(PathBuf),
    /// A private in-memory database (`piswarm run` by default).
    Memory,
}

impl Location {
    fn describe(&self) -> String {
        match self {
            Location::File(p) => p.display().to_string(),
            Location::Memory => ":memory:".into(),
        }
    }
}

/// The state of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    Running,
    Stopped,
    Complete,
}

impl RunState {
    fn as_str(self) -> &'static str {
        match self {
            RunState::Running => "running",
            RunState::Stopped => "stopped",
            RunState::Complete => "complete",
        }
    }
    fn parse(s: &str) -> RunState {
        match s {
            "complete" => RunState::Complete,
            "stopped" => RunState::Stopped,
            _ => RunState::Running,
        }
    }
}

/// A run as stored.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RunRow {
    pub id: i64,
    pub terms: Option<u64>,
    pub chunk: u64,
    pub state: RunState,
    pub created_at: String,
    pub updated_at: String,
    pub intervals_done: u64,
    pub terms_done: u64,
    pub even_sum: Dec<u128>,
    pub odd_sum: Dec<u128>,
    pub pi: f64,
    pub workers: u64,
    pub elapsed_s: f64,
}

/// Everything needed to continue a run.
#[derive(Debug, Clone)]
pub struct Resume {
    pub run: RunRow,
    pub job: Job,
    pub done_ids: Vec<u64>,
    pub pi: ExactSum,
}

/// The running totals of a run, written with every batch.
#[derive(Debug, Clone)]
pub struct RunTotals {
    pub intervals_done: u64,
    pub terms_done: u64,
    pub even_sum: u128,
    pub odd_sum: u128,
    pub pi: ExactSum,
    pub workers: u64,
    pub elapsed_s: f64,
    pub state: RunState,
}

/// Synchronous access to a store.
pub struct Store {
    conn: Connection,
    location: Location,
}

impl Store {
    /// Opens (creating if needed) and migrates a store, and checks that it is sound.
    pub fn open(location: &Location) -> Result<Store, StoreError> {
        let path = location.describe();
        let err = |source| StoreError::Sqlite {
            path: path.clone(),
            source,
        };
        let conn = match location {
            Location::File(p) => Connection::open(p).map_err(err)?,
            Location::Memory => Connection::open_in_memory().map_err(err)?,
        };
        let store = Store {
            conn,
            location: location.clone(),
        };
        store.prepare().map_err(|e| match e {
            StoreError::Sqlite { source, .. } if is_not_a_database(&source) => {
                StoreError::Corrupt {
                    path: path.clone(),
                    detail: source.to_string(),
                }
            }
            other => other,
        })?;
        Ok(store)
    }

    pub fn location(&self) -> &Location {
        &self.location
    }

    fn sql_err(&self) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
        move |source| StoreError::Sqlite {
            path: self.location.describe(),
            source,
        }
    }

    fn prepare(&self) -> Result<(), StoreError> {
        let e = self.sql_err();
        self.conn
            .busy_timeout(Duration::from_secs(10))
            .map_err(&e)?;
        // WAL: readers (exports, the dashboard) never block the writer. FULL: a commit is on disk
        // before it returns, so an acknowledged result survives a crash of the machine too.
        if matches!(self.location, Location::File(_)) {
            let mode: String = self
                .conn
                .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
                .map_err(&e)?;
            if !mode.eq_ignore_ascii_case("wal") {
                tracing::warn!("SQLite refused WAL mode (got {mode})");
            }
        }
        self.conn
            .execute_batch("PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;")
            .map_err(&e)?;
        let check: String = self
            .conn
            .query_row("PRAGMA quick_check", [], |r| r.get(0))
            .map_err(&e)?;
        if check != "ok" {
            return Err(StoreError::Corrupt {
                path: self.location.describe(),
                detail: check,
            });
        }
        let version: i64 = self
            .conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(&e)?;
        if version > SCHEMA_VERSION {
            return Err(StoreError::TooNew {
                path: self.location.describe(),
                found: version,
            });
        }
        if version == 0 {
            // Migration 0 → 1: the first schema.
            self.conn
                .execute_batch(
                    "BEGIN;
                     CREATE TABLE IF NOT EXISTS runs (
                        id INTEGER PRIMARY KEY,
                        terms INTEGER,
                        chunk INTEGER NOT NULL,
                        state TEXT NOT NULL,
                        created_at TEXT NOT NULL,
                        updated_at TEXT NOT NULL,
                        intervals_done INTEGER NOT NULL DEFAULT 0,
                        terms_done INTEGER NOT NULL DEFAULT 0,
                        even_sum TEXT NOT NULL DEFAULT '0',
                        odd_sum TEXT NOT NULL DEFAULT '0',
                        pi_exact TEXT NOT NULL DEFAULT '0',
                        pi REAL NOT NULL DEFAULT 0,
                        workers INTEGER NOT NULL DEFAULT 0,
                        elapsed_s REAL NOT NULL DEFAULT 0
                     );
                     CREATE TABLE IF NOT EXISTS results (
                        seq INTEGER PRIMARY KEY,
                        run_id INTEGER NOT NULL REFERENCES runs(id),
                        interval_id INTEGER NOT NULL,
                        a INTEGER NOT NULL,
                        b INTEGER NOT NULL,
                        worker TEXT NOT NULL,
                        peer TEXT NOT NULL,
                        even_sum TEXT NOT NULL,
                        odd_sum TEXT NOT NULL,
                        pi REAL NOT NULL,
                        duration_s REAL NOT NULL,
                        timestamp TEXT NOT NULL,
                        UNIQUE (run_id, interval_id)
                     );
                     CREATE INDEX IF NOT EXISTS results_by_run ON results(run_id, seq);
                     PRAGMA user_version = 1;
                     COMMIT;",
                )
                .map_err(&e)?;
        }
        Ok(())
    }

    /// Creates a new run and returns its id.
    pub fn create_run(&self, job: Job) -> Result<i64, StoreError> {
        let now = crate::report::now_iso8601();
        self.conn
            .execute(
                "INSERT INTO runs (terms, chunk, state, created_at, updated_at) VALUES (?1, ?2, 'running', ?3, ?3)",
                params![job.terms.map(|t| t as i64), job.chunk as i64, now],
            )
            .map_err(self.sql_err())?;
        Ok(self.conn.last_insert_rowid())
    }

    /// All runs, newest first.
    pub fn runs(&self) -> Result<Vec<RunRow>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(&format!("{RUN_SELECT} ORDER BY id DESC"))
            .map_err(self.sql_err())?;
        let rows = stmt.query_map([], run_row).map_err(self.sql_err())?;
        rows.collect::<Result<Vec<_>, _>>().map_err(self.sql_err())
    }

    pub fn run(&self, id: i64) -> Result<RunRow, StoreError> {
        self.conn
            .query_row(&format!("{RUN_SELECT} WHERE id = ?1"), [id], run_row)
            .optional()
            .map_err(self.sql_err())?
            .ok_or(StoreError::NoSuchRun(id))
    }

    pub fn latest_run(&self) -> Result<RunRow, StoreError> {
        self.conn
            .query_row(
                &format!("{RUN_SELECT} ORDER BY id DESC LIMIT 1"),
                [],
                run_row,
            )
            .optional()
            .map_err(self.sql_err())?
            .ok_or(StoreError::NoRuns)
    }

    /// The latest run if it is unfinished and has the same job parameters.
    pub fn resumable(&self, job: Job) -> Result<Option<Resume>, StoreError> {
        let Ok(run) = self.latest_run() else {
            return Ok(None);
        };
        if run.state == RunState::Complete || run.terms != job.terms || run.chunk != job.chunk {
            return Ok(None);
        }
        self.load(run.id).map(Some)
    }

    /// Loads a run's done intervals and exact total, recomputed from its results (the source of
    /// truth), so that a resumed run continues exactly where the last durable commit left it.
    pub fn load(&self, id: i64) -> Result<Resume, StoreError> {
        let mut run = self.run(id)?;
        let job = Job::new(run.terms, Some(run.chunk)).map_err(|e| StoreError::Corrupt {
            path: self.location.describe(),
            detail: format!("run {id} has invalid parameters: {e}"),
        })?;
        let mut stmt = self
            .conn
            .prepare(
                "SELECT interval_id, a, b, even_sum, odd_sum, pi FROM results WHERE run_id = ?1",
            )
            .map_err(self.sql_err())?;
        let mut rows = stmt.query([id]).map_err(self.sql_err())?;
        let (mut done_ids, mut pi, mut even, mut odd, mut terms) =
            (Vec::new(), ExactSum::new(), 0u128, 0u128, 0u64);
        while let Some(row) = rows.next().map_err(self.sql_err())? {
            let get = |i| row.get::<_, i64>(i).map_err(self.sql_err());
            let (iid, a, b) = (get(0)? as u64, get(1)? as u64, get(2)? as u64);
            let text = |i| row.get::<_, String>(i).map_err(self.sql_err());
            let parse = |s: String| {
                s.parse::<u128>().map_err(|_| StoreError::Corrupt {
                    path: self.location.describe(),
                    detail: format!("bad sum '{s}' in run {id}"),
                })
            };
            even += parse(text(3)?)?;
            odd += parse(text(4)?)?;
            let p: f64 = row.get(5).map_err(self.sql_err())?;
            let _ = pi.add(p);
            terms += b - a + 1;
            done_ids.push(iid);
        }
        run.intervals_done = done_ids.len() as u64;
        run.terms_done = terms;
        run.even_sum = Dec(even);
        run.odd_sum = Dec(odd);
        run.pi = pi.value();
        Ok(Resume {
            run,
            job,
            done_ids,
            pi,
        })
    }

    /// One page of a run's results, newest first: rows with `seq < cursor` (all if `None`).
    /// Returns the rows and the cursor of the next page.
    pub fn results_page(
        &self,
        run: i64,
        cursor: Option<i64>,
        limit: usize,
    ) -> Result<(Vec<StoredResult>, Option<i64>), StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT seq, interval_id, a, b, worker, peer, even_sum, odd_sum, pi, duration_s, timestamp
                 FROM results WHERE run_id = ?1 AND seq < ?2 ORDER BY seq DESC LIMIT ?3",
            )
            .map_err(self.sql_err())?;
        let rows = stmt
            .query_map(
                params![run, cursor.unwrap_or(i64::MAX), limit as i64],
                stored_result,
            )
            .map_err(self.sql_err())?;
        let rows: Vec<StoredResult> = rows.collect::<Result<_, _>>().map_err(self.sql_err())?;
        let next = if rows.len() == limit {
            rows.last().map(|r| r.seq)
        } else {
            None
        };
        Ok((rows, next))
    }

    /// Every result of a run in interval order (for exports).
    pub fn for_each_result(
        &self,
        run: i64,
        mut f: impl FnMut(ResultRecord) -> std::io::Result<()>,
    ) -> Result<(), StoreError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT seq, interval_id, a, b, worker, peer, even_sum, odd_sum, pi, duration_s, timestamp
                 FROM results WHERE run_id = ?1 ORDER BY interval_id",
            )
            .map_err(self.sql_err())?;
        let mut rows = stmt.query([run]).map_err(self.sql_err())?;
        while let Some(row) = rows.next().map_err(self.sql_err())? {
            let r = stored_result(row).map_err(self.sql_err())?;
            f(r.record)?;
        }
        Ok(())
    }

    /// The final report of a run, from its stored results.
    pub fn final_report(&self, run: i64) -> Result<FinalReport, StoreError> {
        let resume = self.load(run)?;
        let mut done = resume.done_ids.clone();
        done.sort_unstable();
        let prefix = done.iter().enumerate().all(|(i, &id)| i as u64 == id);
        Ok(FinalReport::from_totals(Totals {
            terms_done: resume.run.terms_done,
            job_terms: resume.job.terms,
            chunk: resume.job.chunk,
            intervals: resume.run.intervals_done,
            even_sum: resume.run.even_sum.0,
            odd_sum: resume.run.odd_sum.0,
            pi: resume.pi.value(),
            done_is_prefix: prefix,
            workers: resume.run.workers,
            elapsed_s: resume.run.elapsed_s,
        }))
    }

    /// Number of stored results of a run, and how many distinct intervals they cover.
    pub fn count_results(&self, run: i64) -> Result<(u64, u64), StoreError> {
        self.conn
            .query_row(
                "SELECT COUNT(*), COUNT(DISTINCT interval_id) FROM results WHERE run_id = ?1",
                [run],
                |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64)),
            )
            .map_err(self.sql_err())
    }

    pub fn set_state(&self, run: i64, state: RunState) -> Result<(), StoreError> {
        self.conn
            .execute(
                "UPDATE runs SET state = ?2, updated_at = ?3 WHERE id = ?1",
                params![run, state.as_str(), crate::report::now_iso8601()],
            )
            .map_err(self.sql_err())?;
        Ok(())
    }
}

/// Throughput of one worker name over a run: `terms / seconds` of its accepted results.
#[derive(Debug, Clone, serde::Serialize)]
pub struct WorkerThroughput {
    pub worker: String,
    pub results: u64,
    pub terms: u64,
    /// Sum of the durations the worker reported.
    pub seconds: f64,
    pub terms_per_s: f64,
}

/// The estimate after some of a run's results, in the order they were accepted.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct PiPoint {
    /// Terms covered by the results so far.
    pub terms: u64,
    /// Their π partials summed (plain floating point: for plotting).
    pub pi: f64,
    /// Whether the results so far cover exactly [0, terms − 1], so that the truncation
    /// correction applies.
    pub prefix: bool,
}

/// The dashboard's queries.
impl Store {
    /// Throughput per worker name over a run, fastest first, at most `limit` workers.
    pub fn worker_throughput(
        &self,
        run: i64,
        limit: usize,
    ) -> Result<Vec<WorkerThroughput>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT worker, COUNT(*), SUM(b - a + 1), SUM(duration_s) FROM results
                 WHERE run_id = ?1 GROUP BY worker ORDER BY SUM(b - a + 1) DESC LIMIT ?2",
            )
            .map_err(self.sql_err())?;
        let rows = stmt
            .query_map(params![run, limit as i64], |r| {
                let terms = r.get::<_, i64>(2)? as u64;
                let seconds: f64 = r.get(3)?;
                Ok(WorkerThroughput {
                    worker: r.get(0)?,
                    results: r.get::<_, i64>(1)? as u64,
                    terms,
                    seconds,
                    terms_per_s: if seconds > 0.0 {
                        terms as f64 / seconds
                    } else {
                        0.0
                    },
                })
            })
            .map_err(self.sql_err())?;
        rows.collect::<Result<_, _>>().map_err(self.sql_err())
    }

    /// The running estimate of a run after its results in acceptance order, sampled at about
    /// `points` places spread evenly on a log scale of the result count (the last one included).
    pub fn pi_history(&self, run: i64, points: usize) -> Result<Vec<PiPoint>, StoreError> {
        let (total, _) = self.count_results(run)?;
        let points = points.max(2) as f64;
        let mut stmt = self
            .conn
            .prepare_cached("SELECT a, b, pi FROM results WHERE run_id = ?1 ORDER BY seq")
            .map_err(self.sql_err())?;
        let mut rows = stmt.query([run]).map_err(self.sql_err())?;
        let (mut out, mut n, mut terms, mut pi, mut max_b) = (Vec::new(), 0u64, 0u64, 0.0, 0u64);
        let mut next_sample = 1.0f64;
        let ratio = (total.max(2) as f64).powf(1.0 / points);
        while let Some(row) = rows.next().map_err(self.sql_err())? {
            let a = row.get::<_, i64>(0).map_err(self.sql_err())? as u64;
            let b = row.get::<_, i64>(1).map_err(self.sql_err())? as u64;
            let p: f64 = row.get(2).map_err(self.sql_err())?;
            n += 1;
            terms += b.saturating_sub(a) + 1;
            pi += p;
            max_b = max_b.max(b);
            if n as f64 >= next_sample || n == total {
                out.push(PiPoint {
                    terms,
                    pi,
                    prefix: max_b + 1 == terms,
                });
                next_sample = (next_sample * ratio).max(n as f64 + 1.0);
            }
        }
        Ok(out)
    }

    /// Done intervals per stretch of `width` intervals: `(stretch, count)`, and the highest
    /// done interval id (for the coverage map of a run that is not being served).
    pub fn done_per_stretch(&self, run: i64, width: u64) -> Result<Vec<(u64, u64)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT interval_id / ?2, COUNT(*) FROM results WHERE run_id = ?1 GROUP BY 1",
            )
            .map_err(self.sql_err())?;
        let rows = stmt
            .query_map(params![run, width.max(1) as i64], |r| {
                Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64))
            })
            .map_err(self.sql_err())?;
        rows.collect::<Result<_, _>>().map_err(self.sql_err())
    }

    /// The highest done interval id of a run.
    pub fn max_interval(&self, run: i64) -> Result<Option<u64>, StoreError> {
        self.conn
            .query_row(
                "SELECT MAX(interval_id) FROM results WHERE run_id = ?1",
                [run],
                |r| r.get::<_, Option<i64>>(0),
            )
            .map(|v| v.map(|x| x as u64))
            .map_err(self.sql_err())
    }
}

/// A stored result with its position in the history.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StoredResult {
    pub seq: i64,
    #[serde(flatten)]
    pub record: ResultRecord,
}

const RUN_SELECT: &str =
    "SELECT id, terms, chunk, state, created_at, updated_at, intervals_done, terms_done,
    even_sum, odd_sum, pi, workers, elapsed_s FROM runs";

fn run_row(r: &rusqlite::Row) -> rusqlite::Result<RunRow> {
    let sum =
        |i| -> rusqlite::Result<Dec<u128>> { Ok(Dec(r.get::<_, String>(i)?.parse().unwrap_or(0))) };
    Ok(RunRow {
        id: r.get(0)?,
        terms: r.get::<_, Option<i64>>(1)?.map(|t| t as u64),
        chunk: r.get::<_, i64>(2)? as u64,
        state: RunState::parse(&r.get::<_, String>(3)?),
        created_at: r.get(4)?,
        updated_at: r.get(5)?,
        intervals_done: r.get::<_, i64>(6)? as u64,
        terms_done: r.get::<_, i64>(7)? as u64,
        even_sum: sum(8)?,
        odd_sum: sum(9)?,
        pi: r.get(10)?,
        workers: r.get::<_, i64>(11)? as u64,
        elapsed_s: r.get(12)?,
    })
}

fn stored_result(r: &rusqlite::Row) -> rusqlite::Result<StoredResult> {
    let sum =
        |i| -> rusqlite::Result<Dec<u128>> { Ok(Dec(r.get::<_, String>(i)?.parse().unwrap_or(0))) };
    Ok(StoredResult {
        seq: r.get(0)?,
        record: ResultRecord {
            id: Dec(r.get::<_, i64>(1)? as u64),
            a: Dec(r.get::<_, i64>(2)? as u64),
            b: Dec(r.get::<_, i64>(3)? as u64),
            worker: r.get(4)?,
            peer: r.get(5)?,
            even_sum: sum(6)?,
            odd_sum: sum(7)?,
            pi: r.get(8)?,
            duration_s: r.get(9)?,
            timestamp: r.get(10)?,
        },
    })
}

fn is_not_a_database(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _)
        if matches!(f.code, rusqlite::ErrorCode::NotADatabase | rusqlite::ErrorCode::DatabaseCorrupt))
}

/// One operation for the writer thread.
// Results are by far the most frequent operation: boxing them to shrink the rare ones would cost
// an allocation per result.
#[allow(clippy::large_enum_variant)]
pub enum WriteOp {
    /// An accepted result: stored, then its acknowledgement is released.
    Result {
        run: i64,
        record: ResultRecord,
        ack: Option<(mpsc::Sender<Outbound>, ServerMessage)>,
    },
    /// The run's totals as of the last result queued before this.
    Totals { run: i64, totals: RunTotals },
    /// Replies once everything before it is committed.
    Flush(oneshot::Sender<()>),
}

/// The store failed while writing: the coordinator must stop accepting results.
#[derive(Debug, Clone)]
pub struct WriteFailure(pub String);

/// The handle of the writer thread.
#[derive(Clone)]
pub struct Writer {
    ops: mpsc::Sender<WriteOp>,
}

impl Writer {
    /// Starts the writer thread on its own connection. `failed` is told if a commit fails.
    pub fn start(
        store: Store,
        failed: mpsc::UnboundedSender<WriteFailure>,
    ) -> Result<(Writer, std::thread::JoinHandle<()>), StoreError> {
        let location = store.location.clone();
        let (ops, rx) = mpsc::channel(2 * MAX_BATCH);
        let thread = std::thread::Builder::new()
            .name("piswarm-store".into())
            .spawn(move || writer_loop(store, rx, failed))
            .map_err(|e| StoreError::Corrupt {
                path: location.describe(),
                detail: format!("cannot start the writer thread: {e}"),
            })?;
        Ok((Writer { ops }, thread))
    }

    pub async fn send(&self, op: WriteOp) -> bool {
        self.ops.send(op).await.is_ok()
    }

    /// Waits until everything sent so far is committed.
    pub async fn flush(&self) -> bool {
        let (tx, rx) = oneshot::channel();
        self.send(WriteOp::Flush(tx)).await && rx.await.is_ok()
    }
}

fn writer_loop(
    mut store: Store,
    mut rx: mpsc::Receiver<WriteOp>,
    failed: mpsc::UnboundedSender<WriteFailure>,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while let Some(op) = rx.blocking_recv() {
        batch.push(op);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        match commit(&mut store, &batch) {
            Ok(()) => {
                for op in batch.drain(..) {
                    match op {
                        WriteOp::Result {
                            ack: Some((outbox, msg)),
                            ..
                        } => {
                            let _ = outbox.try_send(Outbound::Message(msg));
                        }
                        WriteOp::Flush(reply) => {
                            let _ = reply.send(());
                        }
                        _ => {}
                    }
                }
            }
            Err(e) => {
                tracing::error!(
                    "could not write to the store: {e}; results are no longer acknowledged"
                );
                let _ = failed.send(WriteFailure(e.to_string()));
                // Nothing more can be made durable: refuse everything from now on.
                batch.clear();
                while let Some(op) = rx.blocking_recv() {
                    drop(op);
                }
                return;
            }
        }
    }
}

fn commit(store: &mut Store, batch: &[WriteOp]) -> Result<(), rusqlite::Error> {
    let tx = store.conn.transaction()?;
    {
        let mut insert = tx.prepare_cached(
            "INSERT OR IGNORE INTO results (run_id, interval_id, a, b, worker, peer, even_sum, odd_sum, pi, duration_s, timestamp)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
        )?;
        let mut totals: Option<(i64, &RunTotals)> = None;
        for op in batch {
            match op {
                WriteOp::Result { run, record: r, .. } => {
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
                WriteOp::Totals { run, totals: t } => totals = Some((*run, t)),
                WriteOp::Flush(_) => {}
            }
        }
        if let Some((run, t)) = totals {
            tx.execute(
                "UPDATE runs SET intervals_done = ?2, terms_done = ?3, even_sum = ?4, odd_sum = ?5, pi_exact = ?6,
                 pi = ?7, workers = ?8, elapsed_s = ?9, state = ?10, updated_at = ?11 WHERE id = ?1",
                params![
                    run,
                    t.intervals_done as i64,
                    t.terms_done as i64,
                    t.even_sum.to_string(),
                    t.odd_sum.to_string(),
                    t.pi.to_hex(),
                    t.pi.value(),
                    t.workers as i64,
                    t.elapsed_s,
                    t.state.as_str(),
                    crate::report::now_iso8601(),
                ],
            )?;
        }
    }
    tx.commit()
}

/// Free space on the file system holding `path`, in bytes (None if unknown).
pub fn free_disk_bytes(path: &Path) -> Option<u64> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let c = CString::new(dir.as_os_str().as_bytes()).ok()?;
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid NUL-terminated path and `stat` a properly sized out-parameter.
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut stat) };
    (rc == 0).then(|| stat.f_bavail as u64 * stat.f_frsize as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: u64) -> ResultRecord {
        ResultRecord {
            id: Dec(id),
            a: Dec(id * 1000),
            b: Dec(id * 1000 + 999),
            worker: "w".into(),
            peer: "127.0.0.1:1".into(),
            even_sum: Dec(crate::maths::sums::even_sum(id * 1000, id * 1000 + 999)),
            odd_sum: Dec(crate::maths::sums::odd_sum(id * 1000, id * 1000 + 999)),
            pi: crate::maths::kernel::pi_partial(id * 1000, id * 1000 + 999).unwrap(),
            duration_s: 0.001,
            timestamp: crate::report::now_iso8601(),
        }
    }

    #[test]
    fn schema_is_versioned_and_an_interval_is_stored_once() {
        let dir = tempfile::tempdir().unwrap();
        let location = Location::File(dir.path().join("t.db"));
        let store = Store::open(&location).unwrap();
        let version: i64 = store
            .conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
        let job = Job::new(Some(5000), Some(1000)).unwrap();
        let run = store.create_run(job).unwrap();
        let mut store = store;
        let batch = vec![
            WriteOp::Result {
                run,
                record: record(0),
                ack: None,
            },
            WriteOp::Result {
                run,
                record: record(1),
                ack: None,
            },
            // The same interval again: ignored, whatever the rest of the row says.
            WriteOp::Result {
                run,
                record: ResultRecord {
                    worker: "other".into(),
                    ..record(1)
                },
                ack: None,
            },
        ];
        commit(&mut store, &batch).unwrap();
        assert_eq!(store.count_results(run).unwrap(), (2, 2));
        // The constraint itself refuses a duplicate row: exactly-once is not a hope.
        let dup = store.conn.execute(
            "INSERT INTO results (run_id, interval_id, a, b, worker, peer, even_sum, odd_sum, pi, duration_s, timestamp)
             VALUES (?1, 1, 1000, 1999, 'x', 'y', '0', '0', 0, 0, 'now')",
            [run],
        );
        assert!(dup.is_err());
        // Reopening (a restart) finds everything and recomputes the exact totals.
        drop(store);
        let store = Store::open(&location).unwrap();
        let resume = store
            .resumable(job)
            .unwrap()
            .expect("an unfinished run with the same job");
        let mut ids = resume.done_ids.clone();
        ids.sort_unstable();
        assert_eq!(ids, vec![0, 1]);
        let expected = {
            let mut s = ExactSum::new();
            s.add(record(0).pi).unwrap();
            s.add(record(1).pi).unwrap();
            s.value()
        };
        assert_eq!(resume.pi.value().to_bits(), expected.to_bits());
        assert!(
            store
                .resumable(Job::new(Some(6000), Some(1000)).unwrap())
                .unwrap()
                .is_none(),
            "another job is a new run"
        );
        let (page, next) = store.results_page(run, None, 1).unwrap();
        assert_eq!((page.len(), page[0].record.id.0), (1, 1), "newest first");
        let (older, _) = store.results_page(run, next, 10).unwrap();
        assert_eq!(older[0].record.id.0, 0);
    }

    #[test]
    fn a_file_that_is_not_a_database_is_refused_clearly() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("junk.db");
        std::fs::write(&path, vec![0x42u8; 4096]).unwrap();
        let err = Store::open(&Location::File(path)).err().expect("refused");
        assert!(
            err.to_string()
                .contains("not a piswarm database or is damaged"),
            "{err}"
        );
    }
}
