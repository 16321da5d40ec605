//! A run's history: its accepted results page by page (`GET /api/runs/{id}/results`), and the
//! intervals sessions hold now (`GET /api/in-flight`).

use super::{bad_request, query, resolve_run, rfc3339, ApiResult, Order};
use crate::job::IntervalId;
use crate::report::ResultRecord;
use crate::store::{HistoryPosition, HistoryQuery, HistorySort, StoredResult};
use crate::web::i18n::Message;
use crate::web::{AppState, ErrorBody};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// The most results one page of history holds.
const MAX_PAGE: usize = 1000;

/// The order of the history.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SortKey {
    /// Acceptance order (by `seq`).
    #[default]
    Arrival,
    /// Interval order (by `id`).
    Interval,
}

/// Which page of the history: `cursor` (the next page), `before` (the previous page), `from` (a
/// jump, inclusive) and `last` are keys of the sort (a `seq`, or an interval id) and exclude each
/// other; none: the first page.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ResultsQuery {
    /// `arrival` (default) or `interval`.
    sort: Option<SortKey>,
    /// `desc` (the default for arrival) or `asc` (the default for interval).
    order: Option<Order>,
    /// The rows after this key: pass `next_cursor`.
    cursor: Option<i64>,
    /// The rows just before this key: pass `prev_cursor`.
    before: Option<i64>,
    /// The rows from this key on (a jump to an interval id or a `seq`).
    from: Option<i64>,
    /// The last page.
    last: Option<bool>,
    /// Rows per page: default 50, at most 1000.
    limit: Option<usize>,
    /// Only this worker's results.
    worker: Option<String>,
}

/// An accepted result: its results.json record and its position in the run's history.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ResultRow {
    /// Position in the run's history (acceptance order; positions only grow).
    pub seq: i64,
    #[serde(flatten)]
    pub record: ResultRecord,
}

impl From<StoredResult> for ResultRow {
    fn from(r: StoredResult) -> ResultRow {
        ResultRow {
            seq: r.seq,
            record: r.record,
        }
    }
}

/// A page of history.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ResultsPage {
    pub results: Vec<ResultRow>,
    /// The `cursor` of the next page; null on the last one.
    pub next_cursor: Option<i64>,
    /// The `before` of the previous page; null on the first one.
    pub prev_cursor: Option<i64>,
    /// Results that match (the run's, or the worker's).
    pub total: u64,
    pub sort: SortKey,
    pub order: Order,
}

#[utoipa::path(get, path = "/api/runs/{id}/results", tag = "history",
    params(("id" = String, Path, description = "A run number, or `current`"), ResultsQuery),
    responses(
        (status = 200, description = "A page of accepted results", body = ResultsPage),
        (status = 400, description = "A malformed query", body = ErrorBody),
        (status = 404, description = "No such run", body = ErrorBody)))]
pub async fn results(
    State(state): State<AppState>,
    Path(id): Path<String>,
    q: Result<Query<ResultsQuery>, QueryRejection>,
) -> ApiResult<Json<ResultsPage>> {
    let q = query(q)?;
    let run = resolve_run(&state, &id).await?;
    let limit = q.limit.unwrap_or(50);
    if limit == 0 {
        return Err(bad_request(Message::limit_zero()));
    }
    let positions = [
        q.cursor.is_some(),
        q.before.is_some(),
        q.from.is_some(),
        q.last == Some(true),
    ];
    if positions.iter().filter(|&&p| p).count() > 1 {
        return Err(bad_request(Message::one_position()));
    }
    let sort = q.sort.unwrap_or_default();
    let order = q.order.unwrap_or(match sort {
        SortKey::Arrival => Order::Desc,
        SortKey::Interval => Order::Asc,
    });
    let position = match (q.cursor, q.before, q.from, q.last) {
        (Some(k), _, _, _) => HistoryPosition::After(k),
        (_, Some(k), _, _) => HistoryPosition::Before(k),
        (_, _, Some(k), _) => HistoryPosition::From(k),
        (_, _, _, Some(true)) => HistoryPosition::Last,
        _ => HistoryPosition::First,
    };
    let worker = q.worker.filter(|w| !w.is_empty());
    let history = HistoryQuery {
        run,
        sort: match sort {
            SortKey::Arrival => HistorySort::Arrival,
            SortKey::Interval => HistorySort::Interval,
        },
        descending: order == Order::Desc,
        worker: worker.clone(),
        position,
        limit: limit.min(MAX_PAGE),
    };
    let page = state
        .node
        .reads()
        .with(move |s| s.history_page(&history))
        .await?;
    // The totals come from the run's digest (brought up to date on the way).
    let total = state
        .digests
        .with(run, move |d, _| match &worker {
            Some(w) => d.workers.get(w).map_or(0, |s| s.results),
            None => d.count,
        })
        .await?;
    let key = |r: &StoredResult| match sort {
        SortKey::Arrival => r.seq,
        SortKey::Interval => r.record.id.0 as i64,
    };
    Ok(Json(ResultsPage {
        next_cursor: page.rows.last().filter(|_| page.has_after).map(key),
        prev_cursor: page.rows.first().filter(|_| page.has_before).map(key),
        results: page.rows.into_iter().map(ResultRow::from).collect(),
        total,
        sort,
        order,
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct InFlightQuery {
    /// Rows skipped (by interval id).
    offset: Option<usize>,
    /// Rows per page: default 50, at most 1000.
    limit: Option<usize>,
    /// Only this worker's intervals.
    worker: Option<String>,
}

/// An interval a session holds now.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct HeldInterval {
    #[schema(pattern = "^[0-9]+$")]
    pub id: String,
    #[schema(pattern = "^[0-9]+$")]
    pub a: String,
    #[schema(pattern = "^[0-9]+$")]
    pub b: String,
    pub session: u64,
    pub worker: String,
    pub peer: String,
    /// RFC 3339 (UTC) time of the assignment.
    pub assigned_at: String,
    /// Its lease ran out (it is back in the queue; a late result still counts).
    pub expired: bool,
}

/// A page of the intervals held now.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct InFlightPage {
    pub intervals: Vec<HeldInterval>,
    pub total: usize,
    pub offset: usize,
}

#[utoipa::path(get, path = "/api/in-flight", tag = "history", params(InFlightQuery),
    responses(
        (status = 200, description = "The intervals of the current run that sessions hold now, by interval id", body = InFlightPage),
        (status = 400, description = "A malformed query", body = ErrorBody)))]
pub async fn in_flight(
    State(state): State<AppState>,
    q: Result<Query<InFlightQuery>, QueryRejection>,
) -> ApiResult<Json<InFlightPage>> {
    let q = query(q)?;
    let limit = q.limit.unwrap_or(50).clamp(1, MAX_PAGE);
    let offset = q.offset.unwrap_or(0);
    let run = state.node.current_run();
    let held = match state.node.coordinator() {
        Some(c) => c.held().await.unwrap_or_default(),
        None => Vec::new(),
    };
    let worker = q.worker.filter(|w| !w.is_empty());
    let matching: Vec<_> = held
        .into_iter()
        .filter(|h| worker.as_ref().map_or(true, |w| *w == h.worker))
        .collect();
    let intervals = matching
        .iter()
        .skip(offset)
        .take(limit)
        .filter_map(|h| {
            let interval = run.job.interval(IntervalId(h.id))?;
            Some(HeldInterval {
                id: h.id.to_string(),
                a: interval.a.to_string(),
                b: interval.b.to_string(),
                session: h.session,
                worker: h.worker.clone(),
                peer: h.peer.clone(),
                assigned_at: rfc3339(run.started, h.assigned_s),
                expired: h.expired,
            })
        })
        .collect();
    Ok(Json(InFlightPage {
        intervals,
        total: matching.len(),
        offset,
    }))
}
