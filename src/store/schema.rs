//! Opening a store: what makes a file a piswarm store, and the versioned migrations.
//!
//! A piswarm store carries SQLite's `application_id` [`APPLICATION_ID`] and its schema version in
//! `user_version`. A file with another application id, or with tables but no piswarm schema, is
//! refused as foreign — never adopted or migrated.

use super::{Location, Store, StoreError};
use std::time::Duration;

/// The schema version this build writes; older files are migrated on open.
pub const SCHEMA_VERSION: i64 = 4;
/// SQLite `application_id` of a piswarm store: "PiSw".
pub const APPLICATION_ID: i64 = 0x5069_5377;

const SCHEMA_1: &str = "
    CREATE TABLE runs (
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
    CREATE TABLE results (
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
    CREATE INDEX results_by_run ON results(run_id, seq);
";

/// Migration 1 → 2: the durable reservation of handed-out ids, the certified bound of the
/// estimate (a cache, like the other totals), and the application id.
const MIGRATION_2: &str = "
    ALTER TABLE runs ADD COLUMN issued_upto INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE runs ADD COLUMN pi_bound REAL NOT NULL DEFAULT 0;
    UPDATE runs SET issued_upto =
        COALESCE((SELECT MAX(interval_id) + 1 FROM results WHERE run_id = runs.id), 0);
";

/// Migration 2 → 3: every run gets an identity no other store can have (128 random bits), so that
/// a worker never carries results of one store's run into another store's run of the same number.
const MIGRATION_3: &str = "
    ALTER TABLE runs ADD COLUMN uid TEXT NOT NULL DEFAULT '';
    UPDATE runs SET uid = lower(hex(randomblob(16))) WHERE uid = '';
";

/// Migration 3 → 4: every run records the π kernel it computes with; the runs made before the
/// oct kernel existed used the quad kernel and keep it (their bits are promised per kernel).
const MIGRATION_4: &str = "
    ALTER TABLE runs ADD COLUMN kernel TEXT NOT NULL DEFAULT 'quad';
";

impl Store {
    /// Sets the connection up and brings the schema to [`SCHEMA_VERSION`] (unless `read_only`,
    /// which requires it to be there already).
    pub(super) fn prepare(&self, read_only: bool) -> Result<(), StoreError> {
        let e = self.sql_err();
        self.conn
            .busy_timeout(Duration::from_secs(10))
            .map_err(&e)?;
        let (app, version, tables) = self.identity()?;
        let path = self.location.describe();
        let foreign = |detail: String| StoreError::Foreign {
            path: path.clone(),
            detail,
        };
        if app != 0 && app != APPLICATION_ID {
            return Err(foreign(format!(
                "its SQLite application id is {app:#x}, not piswarm's {APPLICATION_ID:#x}"
            )));
        }
        if version > SCHEMA_VERSION {
            return Err(StoreError::TooNew {
                path,
                found: version,
            });
        }
        let ours = tables.iter().any(|t| t == "runs") && tables.iter().any(|t| t == "results");
        if version == 0 && !tables.is_empty() {
            return Err(foreign(format!(
                "it already holds other tables ({}) and no piswarm schema",
                tables.join(", ")
            )));
        }
        if version >= 1 && !ours {
            return Err(foreign(format!(
                "its schema version says {version} but it has no runs and results tables"
            )));
        }
        if read_only {
            if version < SCHEMA_VERSION {
                return Err(StoreError::Foreign {
                    path,
                    detail: format!(
                        "schema version {version} needs a migration: open it once with piswarm serve"
                    ),
                });
            }
            return Ok(());
        }
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
        if version < SCHEMA_VERSION {
            let mut script = String::from("BEGIN;");
            if version < 1 {
                script.push_str(SCHEMA_1);
            }
            if version < 2 {
                script.push_str(MIGRATION_2);
            }
            if version < 3 {
                script.push_str(MIGRATION_3);
            }
            if version < 4 {
                script.push_str(MIGRATION_4);
            }
            script.push_str(&format!(
                "PRAGMA application_id = {APPLICATION_ID}; PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"
            ));
            self.conn.execute_batch(&script).map_err(&e)?;
        }
        Ok(())
    }

    /// The file's application id, schema version and table names.
    fn identity(&self) -> Result<(i64, i64, Vec<String>), StoreError> {
        let e = self.sql_err();
        let app: i64 = self
            .conn
            .query_row("PRAGMA application_id", [], |r| r.get(0))
            .map_err(&e)?;
        let version: i64 = self
            .conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(&e)?;
        let mut stmt = self
            .conn
            .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
            .map_err(&e)?;
        let tables = stmt
            .query_map([], |r| r.get::<_, String>(0))
            .map_err(&e)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(&e)?;
        Ok((app, version, tables))
    }

    /// SQLite's full integrity check: reads the whole file. Run once, when `serve` opens its store,
    /// on a blocking thread.
    pub fn integrity_check(&self) -> Result<(), StoreError> {
        let check: String = self
            .conn
            .query_row("PRAGMA quick_check", [], |r| r.get(0))
            .map_err(self.sql_err())?;
        if check == "ok" {
            Ok(())
        } else {
            Err(StoreError::Corrupt {
                path: self.location.describe(),
                detail: check,
            })
        }
    }
}
