//! The store's read side: pages of history (by arrival or interval, optionally one worker's),
//! exports, and the rows the dashboard's digests read. Every query runs on its caller's own
//! connection (WAL lets readers run beside the writer), and every page is one range query on an
//! index.

use super::result_row::{decode, select_list};
use super::{Store, StoreError};
use crate::coordinator::RunId;
use crate::report::ResultRecord;
use rusqlite::params;

/// A stored result with its position in the history.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredResult {
    /// Position in the run's history (acceptance order).
    pub seq: i64,
    pub record: ResultRecord,
}

/// The order of a page of history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HistorySort {
    /// Acceptance order: the key is `seq`.
    Arrival,
    /// Interval order: the key is the interval id.
    Interval,
}

impl HistorySort {
    fn column(self) -> &'static str {
        match self {
            HistorySort::Arrival => "seq",
            HistorySort::Interval => "interval_id",
        }
    }
}

/// Where a page of history starts, by the key of its sort.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HistoryPosition {
    /// The first page.
    First,
    /// The last page.
    Last,
    /// The rows that come after this key (the next page).
    After(i64),
    /// The rows that come just before this key (the previous page).
    Before(i64),
    /// The rows from this key on, the key included (a jump).
    From(i64),
}

/// What page of a run's history to read.
#[derive(Debug, Clone)]
pub struct HistoryQuery {
    pub run: RunId,
    pub sort: HistorySort,
    pub descending: bool,
    /// Only the results of this worker name.
    pub worker: Option<String>,
    pub position: HistoryPosition,
    pub limit: usize,
}

/// A page of history, in the order asked for.
#[derive(Debug, Clone)]
pub struct HistoryPage {
    pub rows: Vec<StoredResult>,
    /// Whether rows come before the first one of the page (in the order asked for).
    pub has_before: bool,
    /// Whether rows come after the last one.
    pub has_after: bool,
}

impl Store {
    /// One page of a run's results, newest first: rows with `seq < cursor` (all if `None`).
    /// Returns the rows and the cursor of the next page.
    pub fn results_page(
        &self,
        run: RunId,
        cursor: Option<i64>,
        limit: usize,
    ) -> Result<(Vec<StoredResult>, Option<i64>), StoreError> {
        let page = self.history_page(&HistoryQuery {
            run,
            sort: HistorySort::Arrival,
            descending: true,
            worker: None,
            position: cursor.map_or(HistoryPosition::First, HistoryPosition::After),
            limit,
        })?;
        let next = if page.has_after {
            page.rows.last().map(|r| r.seq)
        } else {
            None
        };
        Ok((page.rows, next))
    }

    /// One page of a run's history: by arrival or by interval, either way, optionally one
    /// worker's. Each page is one range query on an index, (run, seq) or (run, interval id), so
    /// it is as fast at the millionth result as at the first (a worker filter reads past the
    /// other workers' rows).
    pub fn history_page(&self, q: &HistoryQuery) -> Result<HistoryPage, StoreError> {
        let limit = q.limit.max(1);
        // Reading backwards (Before, Last) walks the opposite order, then turns the rows round.
        let backwards = matches!(
            q.position,
            HistoryPosition::Before(_) | HistoryPosition::Last
        );
        let walk_descending = q.descending != backwards;
        let bound = match q.position {
            HistoryPosition::First | HistoryPosition::Last => None,
            HistoryPosition::After(k) | HistoryPosition::Before(k) => {
                Some((if walk_descending { "<" } else { ">" }, k))
            }
            HistoryPosition::From(k) => Some((if walk_descending { "<=" } else { ">=" }, k)),
        };
        let mut rows = self.walk(q, walk_descending, bound, limit + 1)?;
        let more = rows.len() > limit;
        rows.truncate(limit);
        if backwards {
            rows.reverse();
        }
        let key = |r: &StoredResult| match q.sort {
            HistorySort::Arrival => r.seq,
            HistorySort::Interval => r.record.id.0 as i64,
        };
        let (has_before, has_after) = match (rows.first(), rows.last()) {
            (Some(first), Some(last)) => {
                let before = if backwards {
                    more
                } else {
                    !matches!(q.position, HistoryPosition::First)
                        && self.exists_beyond(q, !q.descending, key(first))?
                };
                let after = if backwards {
                    self.exists_beyond(q, q.descending, key(last))?
                } else {
                    more
                };
                (before, after)
            }
            _ => (false, false),
        };
        Ok(HistoryPage {
            rows,
            has_before,
            has_after,
        })
    }

    /// Up to `limit` rows of the query's run (and worker), walking its sort column in one
    /// direction from an optional bound.
    fn walk(
        &self,
        q: &HistoryQuery,
        descending: bool,
        bound: Option<(&str, i64)>,
        limit: usize,
    ) -> Result<Vec<StoredResult>, StoreError> {
        let column = q.sort.column();
        let mut sql = format!("SELECT {} FROM results WHERE run_id = ?1", select_list());
        if q.worker.is_some() {
            sql.push_str(" AND worker = ?2");
        }
        if let Some((op, _)) = bound {
            sql.push_str(&format!(" AND {column} {op} ?3"));
        }
        sql.push_str(&format!(
            " ORDER BY {column} {} LIMIT ?4",
            if descending { "DESC" } else { "ASC" }
        ));
        let mut stmt = self.conn.prepare_cached(&sql).map_err(self.sql_err())?;
        // Unused numbered parameters are bound all the same (SQLite allows it).
        let rows = stmt
            .query_map(
                params![
                    q.run,
                    q.worker.as_deref().unwrap_or(""),
                    bound.map_or(0, |(_, k)| k),
                    limit as i64
                ],
                decode,
            )
            .map_err(self.sql_err())?;
        rows.collect::<Result<_, _>>().map_err(self.sql_err())
    }

    /// Whether a row of the query's run (and worker) lies beyond `key` in that direction.
    fn exists_beyond(
        &self,
        q: &HistoryQuery,
        descending: bool,
        key: i64,
    ) -> Result<bool, StoreError> {
        let column = q.sort.column();
        let op = if descending { "<" } else { ">" };
        let mut sql = String::from("SELECT EXISTS (SELECT 1 FROM results WHERE run_id = ?1");
        if q.worker.is_some() {
            sql.push_str(" AND worker = ?2");
        }
        sql.push_str(&format!(" AND {column} {op} ?3)"));
        let mut stmt = self.conn.prepare_cached(&sql).map_err(self.sql_err())?;
        stmt.query_row(
            params![q.run, q.worker.as_deref().unwrap_or(""), key],
            |r| r.get::<_, bool>(0),
        )
        .map_err(self.sql_err())
    }

    /// Results of a run accepted after `seq` (all if `None`), oldest first, at most `limit`
    /// (the dashboard's digests read a run this way).
    pub fn results_after(
        &self,
        run: RunId,
        after: Option<i64>,
        limit: usize,
    ) -> Result<Vec<StoredResult>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(&format!(
                "SELECT {} FROM results WHERE run_id = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
                select_list()
            ))
            .map_err(self.sql_err())?;
        let rows = stmt
            .query_map(
                params![run, after.unwrap_or(i64::MIN), limit as i64],
                decode,
            )
            .map_err(self.sql_err())?;
        rows.collect::<Result<_, _>>().map_err(self.sql_err())
    }

    /// The newest history position of a run (its highest `seq`), if it has results.
    pub fn last_seq(&self, run: RunId) -> Result<Option<i64>, StoreError> {
        self.conn
            .query_row(
                "SELECT MAX(seq) FROM results WHERE run_id = ?1",
                [run],
                |r| r.get::<_, Option<i64>>(0),
            )
            .map_err(self.sql_err())
    }

    /// Every result of a run in interval order (for exports).
    pub fn for_each_result(
        &self,
        run: RunId,
        mut f: impl FnMut(ResultRecord) -> std::io::Result<()>,
    ) -> Result<(), StoreError> {
        let mut stmt = self
            .conn
            .prepare(&format!(
                "SELECT {} FROM results WHERE run_id = ?1 ORDER BY interval_id",
                select_list()
            ))
            .map_err(self.sql_err())?;
        let mut rows = stmt.query([run]).map_err(self.sql_err())?;
        while let Some(row) = rows.next().map_err(self.sql_err())? {
            let r = decode(row).map_err(self.sql_err())?;
            f(r.record)?;
        }
        Ok(())
    }
}
