//! The durable store: runs and every accepted result, in one SQLite file (WAL mode).
//!
//! * [`Store`]: synchronous access — opening (refusing foreign files, migrating old ones:
//!   `schema`), creating and resuming runs; the read queries are in `queries`, the exports in
//!   `export`. Each caller opens its own connection; WAL lets readers run beside the writer.
//! * `writer`: the one thread that writes a run, in group commits, and publishes how
//!   far it got; the coordinator turns that into acknowledgements.
//!
//! Exactly-once is enforced by the schema: `UNIQUE (run_id, interval_id)` on results. Nothing
//! read back is trusted blindly: a damaged run row is an error, and resuming re-verifies every
//! result (see [`Store::load`]).

pub mod export;
pub mod lock;
pub mod queries;
pub mod result_row;
mod schema;
pub mod writer;

pub use queries::{HistoryPage, HistoryPosition, HistoryQuery, HistorySort, StoredResult};
pub use schema::{APPLICATION_ID, SCHEMA_VERSION};
pub use writer::CommitObserver;

use crate::coordinator::{RunId, RunState};
use crate::job::verify::check_result;
use crate::job::Job;
use crate::maths::exact::ExactSum;
use crate::maths::kernel::Kernel;
use crate::report::{certified_bound, FinalReport, ResultRecord, Totals};
use crate::wire::Dec;
use rusqlite::{params, Connection, OpenFlags, OptionalExtension};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database {path}: {source}")]
    Sqlite {
        path: String,
        source: rusqlite::Error,
    },
    #[error("database {path} is damaged: {detail}")]
    Corrupt { path: String, detail: String },
    #[error("{path} is not a piswarm database: {detail}")]
    Foreign { path: String, detail: String },
    #[error("database {path} was written by a newer piswarm (schema {found}, this build knows {SCHEMA_VERSION})")]
    TooNew { path: String, found: i64 },
    #[error("run {0} does not exist")]
    NoSuchRun(RunId),
    #[error("the database has no runs yet")]
    NoRuns,
    #[error("{0}")]
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
    pub fn describe(&self) -> String {
        match self {
            Location::File(p) => p.display().to_string(),
            Location::Memory => ":memory:".into(),
        }
    }
}

/// A run's state as the `runs` table spells it.
pub(crate) fn state_name(state: RunState) -> &'static str {
    match state {
        RunState::Running => "running",
        RunState::Stopped => "stopped",
        RunState::Complete => "complete",
    }
}

fn parse_state(s: &str) -> Option<RunState> {
    match s {
        "running" => Some(RunState::Running),
        "stopped" => Some(RunState::Stopped),
        "complete" => Some(RunState::Complete),
        _ => None,
    }
}

/// A run as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct RunRow {
    pub id: RunId,
    /// Terms of the job; null for an open-ended job.
    pub terms: Option<u64>,
    pub chunk: u64,
    pub state: RunState,
    pub created_at: String,
    pub updated_at: String,
    pub totals: Totals,
    /// Every interval id below this may have been handed out.
    pub issued_upto: u64,
    /// The run's identity, unique across stores: 32 hex digits of randomness, made with the run
    /// (sent to workers as `run_uid`, so that results are never carried from one store's run to
    /// another's run of the same number).
    pub uid: String,
    /// The π kernel the run computes with ("oct", or "quad" for runs made before it existed).
    pub kernel: Kernel,
}

impl RunRow {
    /// The run's job (checked when the row was read).
    pub fn job(&self) -> Job {
        Job {
            terms: self.terms,
            chunk: self.chunk,
        }
    }

    /// Whether every interval of a bounded job has its result.
    pub fn is_complete(&self) -> bool {
        self.job().intervals() == Some(self.totals.intervals_done)
    }
}

/// Everything needed to continue a run, recomputed from its results.
#[derive(Debug, Clone)]
pub struct Resume {
    pub run: RunRow,
    pub done_ids: Vec<u64>,
    pub pi: ExactSum,
    /// The exact sum of the results' certified bounds (`job::verify::Verified::pi_bound`).
    pub pi_bound: ExactSum,
    pub worker_names: Vec<String>,
    /// Stored results that failed verification and were deleted (their intervals will be
    /// computed again).
    pub dropped: Vec<u64>,
    /// Results the high-water mark says were durable and that are missing (a lost `-wal` file):
    /// they will be computed again, and this says so.
    pub lost: u64,
}

impl Resume {
    /// Whether the done intervals are exactly `[0, n)`.
    pub fn done_is_prefix(&self) -> bool {
        let mut ids = self.done_ids.clone();
        ids.sort_unstable();
        ids.iter().enumerate().all(|(i, &id)| i as u64 == id)
    }
}

/// Synchronous access to a store.
pub struct Store {
    conn: Connection,
    location: Location,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("location", &self.location)
            .finish()
    }
}

impl Store {
    /// Opens (creating if needed) and migrates a store. Refuses a file that is not a piswarm
    /// store. Does not read the whole file: see [`Store::integrity_check`].
    pub fn open(location: &Location) -> Result<Store, StoreError> {
        Self::open_with(location, false)
    }

    /// Opens an existing store without writing anything to it (exports).
    pub fn open_read_only(path: &Path) -> Result<Store, StoreError> {
        Self::open_with(&Location::File(path.to_path_buf()), true)
    }

    fn open_with(location: &Location, read_only: bool) -> Result<Store, StoreError> {
        let path = location.describe();
        let err = |source| StoreError::Sqlite {
            path: path.clone(),
            source,
        };
        let conn = match location {
            Location::File(p) if read_only => {
                Connection::open_with_flags(p, OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(err)?
            }
            Location::File(p) => Connection::open(p).map_err(err)?,
            Location::Memory => Connection::open_in_memory().map_err(err)?,
        };
        let store = Store {
            conn,
            location: location.clone(),
        };
        store.prepare(read_only).map_err(|e| match e {
            StoreError::Sqlite { source, .. } if is_not_a_database(&source) => {
                StoreError::Foreign {
                    path: path.clone(),
                    detail: format!("{source} (or it is damaged)"),
                }
            }
            other => other,
        })?;
        Ok(store)
    }

    pub fn location(&self) -> &Location {
        &self.location
    }

    pub(crate) fn sql_err(&self) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
        move |source| StoreError::Sqlite {
            path: self.location.describe(),
            source,
        }
    }

    fn corrupt(&self, detail: String) -> StoreError {
        StoreError::Corrupt {
            path: self.location.describe(),
            detail,
        }
    }

    /// Creates a new run of the current kernel ([`Kernel::CURRENT`]) and returns its id.
    pub fn create_run(&self, job: Job) -> Result<RunId, StoreError> {
        self.create_run_with(job, Kernel::CURRENT)
    }

    /// Creates a new run that computes with `kernel` and returns its id.
    pub fn create_run_with(&self, job: Job, kernel: Kernel) -> Result<RunId, StoreError> {
        let now = crate::report::now_iso8601();
        self.conn
            .execute(
                "INSERT INTO runs (terms, chunk, state, created_at, updated_at, uid, kernel)
                 VALUES (?1, ?2, 'running', ?3, ?3, lower(hex(randomblob(16))), ?4)",
                params![
                    job.terms.map(|t| t as i64),
                    job.chunk as i64,
                    now,
                    kernel.name()
                ],
            )
            .map_err(self.sql_err())?;
        let rowid = self.conn.last_insert_rowid();
        u64::try_from(rowid)
            .map(RunId)
            .map_err(|_| self.corrupt(format!("a new run was given the id {rowid}")))
    }

    /// All runs, newest first.
    pub fn runs(&self) -> Result<Vec<RunRow>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(&format!("{RUN_SELECT} ORDER BY id DESC"))
            .map_err(self.sql_err())?;
        let rows = stmt.query_map([], raw_run_row).map_err(self.sql_err())?;
        let raw = rows
            .collect::<Result<Vec<_>, _>>()
            .map_err(self.sql_err())?;
        raw.into_iter().map(|r| self.check_run_row(r)).collect()
    }

    pub fn run(&self, id: RunId) -> Result<RunRow, StoreError> {
        let raw = self
            .conn
            .query_row(&format!("{RUN_SELECT} WHERE id = ?1"), [id], raw_run_row)
            .optional()
            .map_err(self.sql_err())?
            .ok_or(StoreError::NoSuchRun(id))?;
        self.check_run_row(raw)
    }

    pub fn latest_run(&self) -> Result<RunRow, StoreError> {
        let raw = self
            .conn
            .query_row(
                &format!("{RUN_SELECT} ORDER BY id DESC LIMIT 1"),
                [],
                raw_run_row,
            )
            .optional()
            .map_err(self.sql_err())?
            .ok_or(StoreError::NoRuns)?;
        self.check_run_row(raw)
    }

    /// Loads a run's done intervals and exact totals, recomputed from its results (the source of
    /// truth), so that a resumed run continues exactly where the last durable commit left it.
    ///
    /// Every row is verified again ([`verify_record`]); a row that fails — a bit flipped on
    /// disk — is deleted, so that its interval is computed again, and reported in
    /// [`Resume::dropped`].
    pub fn load(&mut self, id: RunId) -> Result<Resume, StoreError> {
        let mut run = self.run(id)?;
        let job = run.job();
        let (mut done_ids, mut dropped) = (Vec::new(), Vec::new());
        let (mut pi, mut even, mut odd, mut terms) = (ExactSum::new(), 0u128, 0u128, 0u64);
        let mut pi_bound = ExactSum::new();
        let mut names = std::collections::BTreeSet::new();
        {
            let mut stmt = self
                .conn
                .prepare(&format!(
                    "SELECT {} FROM results WHERE run_id = ?1",
                    result_row::select_list()
                ))
                .map_err(self.sql_err())?;
            let mut rows = stmt.query([id]).map_err(self.sql_err())?;
            while let Some(row) = rows.next().map_err(self.sql_err())? {
                let stored = result_row::decode(row);
                let verified = stored
                    .as_ref()
                    .ok()
                    .and_then(|r| verify_record(&job, &r.record));
                let record = match (stored, verified) {
                    (Ok(r), Some(bound)) => {
                        let _ = pi_bound.add(bound);
                        r.record
                    }
                    _ => {
                        let seq: i64 = row.get(0).map_err(self.sql_err())?;
                        dropped.push(seq);
                        continue;
                    }
                };
                even += record.even_sum.0;
                odd += record.odd_sum.0;
                let _ = pi.add(record.pi);
                terms += record.b.0 - record.a.0 + 1;
                done_ids.push(record.id.0);
                if !names.contains(&record.worker) {
                    names.insert(record.worker);
                }
            }
        }
        if !dropped.is_empty() {
            let path = self.location.describe();
            let err = |source| StoreError::Sqlite {
                path: path.clone(),
                source,
            };
            let tx = self.conn.transaction().map_err(err)?;
            for seq in &dropped {
                tx.execute("DELETE FROM results WHERE seq = ?1", [seq])
                    .map_err(err)?;
            }
            tx.commit().map_err(err)?;
        }
        run.totals = Totals {
            intervals_done: done_ids.len() as u64,
            terms_done: terms,
            even_sum: Dec(even),
            odd_sum: Dec(odd),
            pi: pi.value(),
            workers: names.len() as u64,
            elapsed_s: run.totals.elapsed_s,
            pi_bound: certified_bound(pi_bound.value(), pi.value()),
        };
        run.issued_upto = run
            .issued_upto
            .max(done_ids.iter().max().map_or(0, |m| m + 1));
        let lost = match &self.location {
            Location::File(db) => match writer::read_mark(db) {
                Some((r, marked)) if r == id => {
                    marked.saturating_sub(done_ids.len() as u64 + dropped.len() as u64)
                }
                _ => 0,
            },
            Location::Memory => 0,
        };
        Ok(Resume {
            run,
            lost,
            done_ids,
            pi,
            pi_bound,
            worker_names: names.into_iter().collect(),
            dropped: dropped.into_iter().map(|s| s as u64).collect(),
        })
    }

    /// The final report of a run, from its stored results.
    pub fn final_report(&self, run: RunId) -> Result<FinalReport, StoreError> {
        let row = self.run(run)?;
        let job = row.job();
        let (mut pi, mut even, mut odd, mut terms, mut count) =
            (ExactSum::new(), 0u128, 0u128, 0u64, 0u64);
        let mut pi_bound = ExactSum::new();
        let mut names = std::collections::BTreeSet::new();
        let mut ids = Vec::new();
        self.for_each_result(run, |r| {
            // A row that does not verify any more (a damaged file) bounds nothing: infinity.
            let _ = pi_bound.add(verify_record(&job, &r).unwrap_or(f64::MAX));
            even += r.even_sum.0;
            odd += r.odd_sum.0;
            let _ = pi.add(r.pi);
            terms += r.b.0 - r.a.0 + 1;
            count += 1;
            ids.push(r.id.0);
            names.insert(r.worker);
            Ok(())
        })?;
        let prefix = ids.iter().enumerate().all(|(i, &id)| i as u64 == id);
        let totals = Totals {
            intervals_done: count,
            terms_done: terms,
            even_sum: Dec(even),
            odd_sum: Dec(odd),
            pi: pi.value(),
            workers: names.len() as u64,
            elapsed_s: row.totals.elapsed_s,
            pi_bound: certified_bound(pi_bound.value(), pi.value()),
        };
        Ok(FinalReport::new(&job, row.kernel, &totals, prefix))
    }

    /// Number of stored results of a run, and how many distinct intervals they cover.
    pub fn count_results(&self, run: RunId) -> Result<(u64, u64), StoreError> {
        self.conn
            .query_row(
                "SELECT COUNT(*), COUNT(DISTINCT interval_id) FROM results WHERE run_id = ?1",
                [run],
                |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64)),
            )
            .map_err(self.sql_err())
    }

    /// A run row as read, checked: its job must be valid, its sums decimal, its state known.
    fn check_run_row(&self, raw: RawRunRow) -> Result<RunRow, StoreError> {
        let id = raw.id;
        let bad = |what: &str| self.corrupt(format!("run {id} has {what}"));
        let terms = match raw.terms {
            None => None,
            Some(t) => Some(u64::try_from(t).map_err(|_| bad("a negative term count"))?),
        };
        let chunk = u64::try_from(raw.chunk).map_err(|_| bad("a negative chunk"))?;
        let job = Job::new(terms, Some(chunk))
            .map_err(|e| bad(&format!("invalid job parameters ({e})")))?;
        let state = parse_state(&raw.state)
            .ok_or_else(|| bad(&format!("an unknown state '{}'", raw.state)))?;
        let kernel = Kernel::from_name(&raw.kernel)
            .ok_or_else(|| bad(&format!("an unknown kernel '{}'", raw.kernel)))?;
        let sum = |s: &str, what: &str| -> Result<u128, StoreError> {
            s.parse::<u128>()
                .map_err(|_| bad(&format!("a damaged {what} '{s}'")))
        };
        let count = |v: i64, what: &str| -> Result<u64, StoreError> {
            u64::try_from(v).map_err(|_| bad(&format!("a negative {what}")))
        };
        Ok(RunRow {
            id,
            terms: job.terms,
            chunk: job.chunk,
            state,
            created_at: raw.created_at,
            updated_at: raw.updated_at,
            totals: Totals {
                intervals_done: count(raw.intervals_done, "interval count")?,
                terms_done: count(raw.terms_done, "term count")?,
                even_sum: Dec(sum(&raw.even_sum, "sum of evens")?),
                odd_sum: Dec(sum(&raw.odd_sum, "sum of odds")?),
                pi: raw.pi,
                workers: count(raw.workers, "worker count")?,
                elapsed_s: raw.elapsed_s,
                pi_bound: raw.pi_bound,
            },
            issued_upto: count(raw.issued_upto, "reservation")?,
            uid: raw.uid,
            kernel,
        })
    }
}

/// Verifies a stored result again, as it was when it was accepted; its certified bound, or
/// `None` if it does not verify (a damaged row).
pub fn verify_record(job: &Job, r: &ResultRecord) -> Option<f64> {
    check_result(job, &r.work_result()).ok().map(|v| v.pi_bound)
}

const RUN_SELECT: &str =
    "SELECT id, terms, chunk, state, created_at, updated_at, intervals_done, terms_done,
    even_sum, odd_sum, pi, workers, elapsed_s, issued_upto, pi_bound, uid, kernel FROM runs";

/// A run row as SQLite holds it, before it is checked.
struct RawRunRow {
    id: RunId,
    terms: Option<i64>,
    chunk: i64,
    state: String,
    created_at: String,
    updated_at: String,
    intervals_done: i64,
    terms_done: i64,
    even_sum: String,
    odd_sum: String,
    pi: f64,
    workers: i64,
    elapsed_s: f64,
    issued_upto: i64,
    pi_bound: f64,
    uid: String,
    kernel: String,
}

fn raw_run_row(r: &rusqlite::Row) -> rusqlite::Result<RawRunRow> {
    Ok(RawRunRow {
        id: r.get(0)?,
        terms: r.get(1)?,
        chunk: r.get(2)?,
        state: r.get(3)?,
        created_at: r.get(4)?,
        updated_at: r.get(5)?,
        intervals_done: r.get(6)?,
        terms_done: r.get(7)?,
        even_sum: r.get(8)?,
        odd_sum: r.get(9)?,
        pi: r.get(10)?,
        workers: r.get(11)?,
        elapsed_s: r.get(12)?,
        issued_upto: r.get(13)?,
        pi_bound: r.get(14)?,
        uid: r.get(15)?,
        kernel: r.get(16)?,
    })
}

/// Run ids at the store's boundary: SQLite's `INTEGER` is an i64 and a run id a u64, converted
/// checked both ways (an id beyond i64 cannot be written; a negative one read is an error).
impl rusqlite::ToSql for RunId {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        sql_run_id(*self).map(rusqlite::types::ToSqlOutput::from)
    }
}

/// A run id as SQLite stores it.
pub(crate) fn sql_run_id(run: RunId) -> rusqlite::Result<i64> {
    i64::try_from(run.0).map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))
}

impl rusqlite::types::FromSql for RunId {
    fn column_result(value: rusqlite::types::ValueRef<'_>) -> rusqlite::types::FromSqlResult<Self> {
        let id = i64::column_result(value)?;
        u64::try_from(id)
            .map(RunId)
            .map_err(|_| rusqlite::types::FromSqlError::OutOfRange(id))
    }
}

fn is_not_a_database(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _)
        if matches!(f.code, rusqlite::ErrorCode::NotADatabase | rusqlite::ErrorCode::DatabaseCorrupt))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::coordinator::Write;

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

    fn write(seq: u64, record: ResultRecord) -> Write {
        Write::Result { seq, record }
    }

    #[test]
    fn schema_is_versioned_and_an_interval_is_stored_once() {
        let dir = tempfile::tempdir().unwrap();
        let location = Location::File(dir.path().join("t.db"));
        let mut store = Store::open(&location).unwrap();
        let version: i64 = store
            .conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
        let job = Job::new(Some(5000), Some(1000)).unwrap();
        let run = store.create_run(job).unwrap();
        let batch = vec![
            write(1, record(0)),
            write(2, record(1)),
            // The same interval again: ignored, whatever the rest of the row says.
            write(
                3,
                ResultRecord {
                    worker: "other".into(),
                    ..record(1)
                },
            ),
            Write::Reserve { seq: 4, upto: 7 },
        ];
        writer::commit(&mut store, run, &batch).unwrap();
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
        let mut store = Store::open(&location).unwrap();
        let resume = store.load(run).unwrap();
        let mut ids = resume.done_ids.clone();
        ids.sort_unstable();
        assert_eq!(ids, vec![0, 1]);
        assert_eq!(resume.run.issued_upto, 7);
        assert!(resume.dropped.is_empty());
        let expected = {
            let mut s = ExactSum::new();
            s.add(record(0).pi).unwrap();
            s.add(record(1).pi).unwrap();
            s.value()
        };
        assert_eq!(resume.pi.value().to_bits(), expected.to_bits());
        let (page, next) = store.results_page(run, None, 1).unwrap();
        assert_eq!((page.len(), page[0].record.id.0), (1, 1), "newest first");
        let (older, _) = store.results_page(run, next, 10).unwrap();
        assert_eq!(older[0].record.id.0, 0);
    }

    /// Every run has a run_uid of 32 hex digits that no other run has, new or migrated: a store
    /// of schema 2 (no uid column) gets one per run when it is opened.
    #[test]
    fn runs_have_uids_that_no_other_store_has() {
        let dir = tempfile::tempdir().unwrap();
        let job = Job::new(Some(5000), Some(1000)).unwrap();
        let mut uids = std::collections::BTreeSet::new();
        for name in ["a.db", "b.db"] {
            let location = Location::File(dir.path().join(name));
            let store = Store::open(&location).unwrap();
            let run = store.create_run(job).unwrap();
            assert_eq!(run, RunId(1), "run numbers restart in every store");
            let uid = store.run(run).unwrap().uid;
            assert_eq!(uid.len(), 32, "{uid}");
            assert!(uid.bytes().all(|b| b.is_ascii_hexdigit()), "{uid}");
            uids.insert(uid);
        }
        assert_eq!(uids.len(), 2, "two stores, two run_uids");
        // A schema-2 store: its runs get uids when it is opened (and keep them).
        let location = Location::File(dir.path().join("old.db"));
        {
            let store = Store::open(&location).unwrap();
            store.create_run(job).unwrap();
            store.create_run(job).unwrap();
            store
                .conn
                .execute_batch(
                    "ALTER TABLE runs DROP COLUMN kernel; ALTER TABLE runs DROP COLUMN uid;
                     PRAGMA user_version = 2;",
                )
                .unwrap();
        }
        let store = Store::open(&location).unwrap();
        let runs = store.runs().unwrap();
        assert_eq!(runs.len(), 2);
        assert!(runs.iter().all(|r| r.uid.len() == 32));
        assert_ne!(runs[0].uid, runs[1].uid);
        let again = runs[0].uid.clone();
        drop(store);
        let store = Store::open(&location).unwrap();
        assert_eq!(store.runs().unwrap()[0].uid, again, "kept, not made anew");
    }

    /// New runs record the current kernel; the runs of a store from before kernels were recorded
    /// (schema 3) used the quad kernel and keep it; an unknown kernel is damage, not a default.
    #[test]
    fn runs_record_their_kernel_and_older_runs_are_quad() {
        let dir = tempfile::tempdir().unwrap();
        let job = Job::new(Some(5000), Some(1000)).unwrap();
        let location = Location::File(dir.path().join("k.db"));
        {
            let store = Store::open(&location).unwrap();
            store.create_run(job).unwrap();
            store
                .conn
                .execute_batch("ALTER TABLE runs DROP COLUMN kernel; PRAGMA user_version = 3;")
                .unwrap();
        }
        let store = Store::open(&location).unwrap();
        assert_eq!(store.run(RunId(1)).unwrap().kernel, Kernel::Quad);
        let new = store.create_run(job).unwrap();
        assert_eq!(store.run(new).unwrap().kernel, Kernel::CURRENT);
        let quad = store.create_run_with(job, Kernel::Quad).unwrap();
        assert_eq!(store.run(quad).unwrap().kernel, Kernel::Quad);
        store
            .conn
            .execute("UPDATE runs SET kernel = 'hex' WHERE id = ?1", [quad])
            .unwrap();
        let err = store.run(quad).unwrap_err().to_string();
        assert!(err.contains("unknown kernel 'hex'"), "{err}");
    }

    #[test]
    fn a_damaged_result_row_is_dropped_on_resume_and_a_damaged_run_row_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let location = Location::File(dir.path().join("t.db"));
        let mut store = Store::open(&location).unwrap();
        let run = store
            .create_run(Job::new(Some(5000), Some(1000)).unwrap())
            .unwrap();
        let batch: Vec<Write> = (0..3).map(|i| write(i + 1, record(i))).collect();
        writer::commit(&mut store, run, &batch).unwrap();
        // One bit of a stored sum flips.
        let flipped = (record(1).even_sum.0 ^ 4).to_string();
        store
            .conn
            .execute(
                "UPDATE results SET even_sum = ?1 WHERE interval_id = 1",
                [flipped],
            )
            .unwrap();
        let resume = store.load(run).unwrap();
        assert_eq!(resume.dropped.len(), 1);
        assert_eq!(resume.done_ids.len(), 2);
        assert_eq!(
            store.count_results(run).unwrap().0,
            2,
            "deleted, to be redone"
        );
        store
            .conn
            .execute("UPDATE runs SET odd_sum = 'x1' WHERE id = ?1", [run])
            .unwrap();
        let err = store.run(run).unwrap_err();
        assert!(err.to_string().contains("damaged sum of odds"), "{err}");
        store
            .conn
            .execute(
                "UPDATE runs SET odd_sum = '0', state = 'paused' WHERE id = ?1",
                [run],
            )
            .unwrap();
        assert!(store
            .run(run)
            .unwrap_err()
            .to_string()
            .contains("unknown state"));
    }

    #[test]
    fn foreign_files_are_refused_and_never_changed() {
        let dir = tempfile::tempdir().unwrap();
        let junk = dir.path().join("junk.db");
        std::fs::write(&junk, vec![0x42u8; 4096]).unwrap();
        let err = Store::open(&Location::File(junk)).expect_err("refused");
        assert!(err.to_string().contains("not a piswarm database"), "{err}");
        // Another application's SQLite file.
        let other = dir.path().join("other.db");
        {
            let c = Connection::open(&other).unwrap();
            c.execute_batch("CREATE TABLE people (name TEXT); INSERT INTO people VALUES ('ana');")
                .unwrap();
        }
        let before = std::fs::read(&other).unwrap();
        let err = Store::open(&Location::File(other.clone())).expect_err("refused");
        assert!(err.to_string().contains("other tables (people)"), "{err}");
        let err = Store::open_read_only(&other).expect_err("refused");
        assert!(err.to_string().contains("not a piswarm database"), "{err}");
        assert_eq!(std::fs::read(&other).unwrap(), before, "untouched");
        {
            let c = Connection::open(&other).unwrap();
            c.execute_batch("PRAGMA application_id = 42;").unwrap();
        }
        let err = Store::open(&Location::File(other)).expect_err("refused");
        assert!(err.to_string().contains("application id"), "{err}");
    }
}
