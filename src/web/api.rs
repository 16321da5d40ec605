//! The JSON API (documented in docs/api.md), its OpenAPI document generated from the types
//! below, and the live stream of Server-Sent Events.

use super::api_types::{CoverageMap, RunState};
use super::digest::RunDigest;
use super::{AppError, AppState, ErrorBody};
use crate::coordinator::WorkerKind;
use crate::job::{IntervalId, Job};
use crate::maths::series;
use crate::node::clients::MAX_PER_REQUEST as MAX_LOCAL_CLIENTS;
use crate::node::ClientMode;
use crate::report::FinalReport;
use crate::store::{HistoryPosition, HistoryQuery, HistorySort, RunRow, Store, StoredResult};
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use std::convert::Infallible;
use std::time::{Duration, SystemTime};
use utoipa::{IntoParams, OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// How often the live stream sends an update, at most.
const UPDATE_EVERY: Duration = Duration::from_millis(250);
/// The most results one live update carries (the newest ones).
const RESULTS_PER_UPDATE: usize = 100;
/// The most results one page of history holds.
const MAX_PAGE: usize = 1000;
/// The most rows one page of the worker table holds.
const MAX_WORKERS_PAGE: usize = 500;

type ApiResult<T> = Result<T, AppError>;

/// The OpenAPI document of the dashboard's API (paths are added by [`routes`]).
#[derive(OpenApi)]
#[openapi(
    info(
        title = "piswarm dashboard API",
        description = "The JSON API of `piswarm serve`'s dashboard (docs/api.md). Errors are `{\"error\": \"one sentence\"}` in English, or Portuguese by Accept-Language or the `lang` cookie."
    ),
    components(schemas(LiveUpdate, ErrorBody))
)]
pub struct ApiDoc;

/// The API's routes and their OpenAPI document, from one list.
pub fn routes() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(status))
        .routes(routes!(server_start))
        .routes(routes!(server_stop))
        .routes(routes!(create_clients))
        .routes(routes!(list_runs, new_run))
        .routes(routes!(run_info))
        .routes(routes!(results))
        .routes(routes!(in_flight))
        .routes(routes!(final_report))
        .routes(routes!(download_results_json))
        .routes(routes!(download_results_csv))
        .routes(routes!(download_final_json))
        .routes(routes!(coverage))
        .routes(routes!(plots))
        .routes(routes!(workers))
        .routes(routes!(join_info))
        .routes(routes!(join_qr))
        .routes(routes!(events))
        .routes(routes!(shutdown))
        .routes(routes!(openapi))
        .split_for_parts()
}

/// The body of a JSON request, or a 4xx with a JSON error.
fn body<T>(payload: Result<Json<T>, JsonRejection>) -> ApiResult<T> {
    payload.map(|Json(v)| v).map_err(|rejection| {
        let detail = rejection.body_text();
        let pt = match &rejection {
            JsonRejection::MissingJsonContentType(_) => {
                "o pedido deve ter Content-Type: application/json".to_string()
            }
            JsonRejection::JsonSyntaxError(_) => format!("JSON inválido: {detail}"),
            _ => format!("corpo do pedido inválido: {detail}"),
        };
        AppError::client(rejection.status(), detail, pt)
    })
}

fn query<T>(q: Result<Query<T>, QueryRejection>) -> ApiResult<T> {
    q.map(|Query(v)| v).map_err(|rejection| {
        let detail = rejection.body_text();
        AppError::bad_request(detail.clone(), format!("parâmetros inválidos: {detail}"))
    })
}

/// Resolves `{id}`: a run number, or `current`; 404 if the run does not exist.
async fn resolve_run(state: &AppState, id: &str) -> ApiResult<i64> {
    let run = if id == "current" {
        state.node.current_run().id
    } else {
        id.parse::<i64>().ok().filter(|&n| n > 0).ok_or_else(|| {
            AppError::not_found(
                format!("no run '{id}' (a run number or 'current')"),
                format!("não há execução '{id}' (um número de execução ou 'current')"),
            )
        })?
    };
    state
        .node
        .reads()
        .with(move |s| s.run(run).map(|_| ()))
        .await?;
    Ok(run)
}

pub async fn not_found() -> AppError {
    AppError::not_found(
        "no such path (the API is described at /api/openapi.json)",
        "caminho inexistente (a API está descrita em /api/openapi.json)",
    )
}

pub async fn method_not_allowed() -> AppError {
    AppError::client(
        StatusCode::METHOD_NOT_ALLOWED,
        "method not allowed (state-changing requests are POST; reads are GET)",
        "método não permitido (o que muda o estado é POST; leituras são GET)",
    )
}

// ------------------------------------------------------------------------------------------
// Status
// ------------------------------------------------------------------------------------------

/// `GET /api/status`: the TCP server and the current run.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Status {
    pub server: ServerStatus,
    pub run: RunStatus,
}

/// The TCP server.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ServerStatus {
    pub running: bool,
    /// The TCP address workers connect to.
    pub listen: String,
    pub legacy_listen: Option<String>,
    /// Connected sessions (clients that completed their handshake).
    pub clients: usize,
    /// Local clients (created by the dashboard) still running.
    pub local_clients: usize,
    /// The most local clients allowed at once (`--max-local-clients`).
    pub max_local_clients: usize,
    /// Seconds since the TCP server was (last) started; 0 when stopped.
    pub uptime_s: f64,
    pub process_uptime_s: f64,
}

/// The current run.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RunStatus {
    pub id: i64,
    pub state: RunState,
    /// Null for an open-ended job.
    pub terms: Option<u64>,
    pub chunk: u64,
    /// Null for an open-ended job.
    pub intervals_total: Option<u64>,
    pub intervals_done: u64,
    pub in_flight: usize,
    #[schema(pattern = "^[0-9]+$")]
    pub done_terms: String,
    #[schema(pattern = "^[0-9]+$")]
    pub even_sum: String,
    #[schema(pattern = "^[0-9]+$")]
    pub odd_sum: String,
    /// Null before the first result.
    pub pi: Option<f64>,
    pub pi_error: Option<f64>,
    pub correct_digits: Option<u32>,
    /// Null unless the accepted intervals form a prefix [0, done_terms − 1].
    pub pi_corrected: Option<f64>,
    pub workers: u64,
    pub elapsed_s: Option<f64>,
    /// Terms per second over the last seconds.
    pub rate_terms_per_s: f64,
    /// Seconds left at that rate; null for open-ended jobs or before a rate is known.
    pub eta_s: Option<f64>,
    /// `done_terms / terms`; null for open-ended jobs.
    pub progress: Option<f64>,
    pub complete: bool,
    pub store_failed: Option<String>,
    pub results_accepted: u64,
    pub results_duplicate: u64,
    pub results_rejected: u64,
    pub leases_expired: u64,
    /// Backup copies handed out at the tail of the job (an interval in flight given to a second,
    /// faster session as well), how many of them counted first, and the terms they covered.
    pub backups_issued: u64,
    pub backups_won: u64,
    /// A decimal string, like every term count.
    pub backup_terms: String,
}

#[utoipa::path(get, path = "/api/status", tag = "status",
    responses((status = 200, description = "The server and the current run", body = Status)))]
pub async fn status(State(state): State<AppState>) -> ApiResult<Json<Status>> {
    Ok(Json(status_value(&state).await))
}

/// The status: the server and the current run.
pub(crate) async fn status_value(state: &AppState) -> Status {
    let node = &state.node;
    let view = node.view();
    let run = node.current_run();
    let snap = run.snapshot.borrow().clone();
    let report = match node.coordinator() {
        Some(c) => tokio::time::timeout(Duration::from_secs(2), c.report())
            .await
            .ok()
            .and_then(Result::ok),
        None => None,
    };
    let rate = node.rate(run.id, &snap);
    let job = run.job;
    let done = snap.totals.terms_done;
    let remaining = job.terms.map(|n| n.saturating_sub(done));
    let eta_s = match remaining {
        Some(0) => Some(0.0),
        Some(r) if rate > 0.0 => Some(r as f64 / rate),
        _ => None,
    };
    let run_state = if snap.complete {
        RunState::Complete
    } else if view.running {
        RunState::Running
    } else {
        RunState::Stopped
    };
    let has_terms = done > 0;
    Status {
        server: ServerStatus {
            running: view.running,
            listen: view.listen,
            legacy_listen: view.legacy_listen,
            clients: snap.sessions,
            local_clients: node.local_clients(),
            max_local_clients: node.max_local_clients(),
            uptime_s: view.server_since.map_or(0.0, |s| s.elapsed().as_secs_f64()),
            process_uptime_s: node.uptime().as_secs_f64(),
        },
        run: RunStatus {
            id: run.id,
            state: run_state,
            terms: job.terms,
            chunk: job.chunk,
            intervals_total: job.intervals(),
            intervals_done: snap.totals.intervals_done,
            in_flight: snap.in_flight,
            done_terms: done.to_string(),
            even_sum: snap.totals.even_sum.0.to_string(),
            odd_sum: snap.totals.odd_sum.0.to_string(),
            pi: has_terms.then_some(snap.totals.pi),
            pi_error: has_terms.then(|| series::pi_error(snap.totals.pi)),
            correct_digits: has_terms.then(|| series::correct_digits(snap.totals.pi)),
            pi_corrected: report
                .as_ref()
                .filter(|_| has_terms)
                .and_then(|r| r.pi_corrected),
            workers: snap.totals.workers,
            elapsed_s: report.as_ref().map(|r| r.elapsed_s),
            rate_terms_per_s: rate,
            eta_s,
            progress: job.terms.map(|n| (done as f64 / n.max(1) as f64).min(1.0)),
            complete: snap.complete,
            store_failed: snap.store_failed.clone(),
            results_accepted: snap.results_accepted,
            results_duplicate: snap.results_duplicate,
            results_rejected: snap.results_rejected,
            leases_expired: snap.leases_expired,
            backups_issued: snap.backups_issued,
            backups_won: snap.backups_won,
            backup_terms: snap.backup_terms.to_string(),
        },
    }
}

// ------------------------------------------------------------------------------------------
// Control
// ------------------------------------------------------------------------------------------

#[utoipa::path(post, path = "/api/server/start", tag = "control",
    responses(
        (status = 200, description = "Started (or already running): the status", body = Status),
        (status = 409, description = "The address cannot be bound, or the store failed", body = ErrorBody),
        (status = 503, description = "The process is shutting down", body = ErrorBody)))]
pub async fn server_start(State(state): State<AppState>) -> ApiResult<Json<Status>> {
    state.node.start_server().await?;
    Ok(Json(status_value(&state).await))
}

#[utoipa::path(post, path = "/api/server/stop", tag = "control",
    responses(
        (status = 200, description = "Stopped gracefully, files written: the status", body = Status),
        (status = 409, description = "The store failed", body = ErrorBody)))]
pub async fn server_stop(State(state): State<AppState>) -> ApiResult<Json<Status>> {
    state.node.stop_server().await?;
    Ok(Json(status_value(&state).await))
}

/// The answer to `POST /api/shutdown`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Exiting {
    pub exiting: bool,
}

#[utoipa::path(post, path = "/api/shutdown", tag = "control",
    responses((status = 202, description = "The process stops, as on Ctrl-C", body = Exiting)))]
pub async fn shutdown(State(state): State<AppState>) -> ApiResult<(StatusCode, Json<Exiting>)> {
    state.node.request_exit();
    Ok((StatusCode::ACCEPTED, Json(Exiting { exiting: true })))
}

/// `POST /api/clients`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClientsRequest {
    /// 1 to 1000 (and at most `max_local_clients` running at once).
    count: u64,
    mode: ClientMode,
}

/// Clients started.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ClientsCreated {
    pub created: usize,
    pub mode: ClientMode,
    pub names: Vec<String>,
}

#[utoipa::path(post, path = "/api/clients", tag = "control", request_body = ClientsRequest,
    responses(
        (status = 201, description = "Clients started", body = ClientsCreated),
        (status = 409, description = "The server is stopped, TLS-only, or the local-client cap would be exceeded", body = ErrorBody),
        (status = 422, description = "A count out of range or an unknown mode", body = ErrorBody)))]
pub async fn create_clients(
    State(state): State<AppState>,
    payload: Result<Json<ClientsRequest>, JsonRejection>,
) -> ApiResult<(StatusCode, Json<ClientsCreated>)> {
    let req = body(payload)?;
    if req.count == 0 || req.count > MAX_LOCAL_CLIENTS as u64 {
        return Err(AppError::unprocessable(
            format!("count must be between 1 and {MAX_LOCAL_CLIENTS}"),
            format!("a quantidade deve estar entre 1 e {MAX_LOCAL_CLIENTS}"),
        ));
    }
    let names = state
        .node
        .create_clients(req.count as usize, req.mode)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(ClientsCreated {
            created: names.len(),
            mode: req.mode,
            names,
        }),
    ))
}

/// `POST /api/runs`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewRunRequest {
    /// Null or absent: open-ended.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    terms: Option<Count>,
    /// Absent: the default chunk.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    chunk: Option<Count>,
}

/// A count as a JSON number, or as a string written like on the command line (`1e10`, `10^9`,
/// `1_000_000`).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Count {
    Number(u64),
    Text(String),
}

impl Count {
    /// The count, or an error that names the field: `what` in English and in Portuguese.
    fn value(&self, (what, what_pt): (&str, &str)) -> ApiResult<u64> {
        match self {
            Count::Number(n) => Ok(*n),
            Count::Text(t) => crate::job::count::parse_count(t).map_err(|e| {
                AppError::unprocessable(
                    format!("{what}: {e}"),
                    format!("{what_pt}: número inválido '{t}'"),
                )
            }),
        }
    }
}

/// A run as stored, and whether it is the one being served.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RunInfo {
    #[serde(flatten)]
    pub row: RunRow,
    pub current: bool,
}

#[utoipa::path(post, path = "/api/runs", tag = "runs", request_body = NewRunRequest,
    responses(
        (status = 201, description = "The new run", body = RunInfo),
        (status = 422, description = "An invalid job", body = ErrorBody)))]
pub async fn new_run(
    State(state): State<AppState>,
    payload: Result<Json<NewRunRequest>, JsonRejection>,
) -> ApiResult<(StatusCode, Json<RunInfo>)> {
    let req = body(payload)?;
    let terms = req
        .terms
        .map(|c| c.value(("terms", "termos")))
        .transpose()?;
    let chunk = req
        .chunk
        .map(|c| c.value(("chunk", "tamanho do bloco")))
        .transpose()?;
    let job = Job::new(terms, chunk).map_err(|e| {
        AppError::Client(StatusCode::UNPROCESSABLE_ENTITY, super::Message::from(&e))
    })?;
    let id = state.node.new_run(job).await?;
    let row = state.node.reads().with(move |s| s.run(id)).await?;
    Ok((StatusCode::CREATED, Json(RunInfo { row, current: true })))
}

#[utoipa::path(get, path = "/api/runs", tag = "runs",
    responses((status = 200, description = "Every run, newest first", body = Vec<RunInfo>)))]
pub async fn list_runs(State(state): State<AppState>) -> ApiResult<Json<Vec<RunInfo>>> {
    let current = state.node.current_run().id;
    let rows = state.node.reads().with(|s| s.runs()).await?;
    Ok(Json(
        rows.into_iter()
            .map(|row| RunInfo {
                current: row.id == current,
                row,
            })
            .collect(),
    ))
}

#[utoipa::path(get, path = "/api/runs/{id}", tag = "runs",
    params(("id" = String, Path, description = "A run number, or `current`")),
    responses(
        (status = 200, description = "One run as stored", body = RunInfo),
        (status = 404, description = "No such run", body = ErrorBody)))]
pub async fn run_info(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<RunInfo>> {
    let run = resolve_run(&state, &id).await?;
    let current = state.node.current_run().id;
    let row = state.node.reads().with(move |s| s.run(run)).await?;
    Ok(Json(RunInfo {
        row,
        current: run == current,
    }))
}

// ------------------------------------------------------------------------------------------
// History
// ------------------------------------------------------------------------------------------

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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Order {
    Asc,
    Desc,
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

/// A page of history.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ResultsPage {
    pub results: Vec<StoredResult>,
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
        return Err(AppError::bad_request(
            "limit must be at least 1",
            "limit deve ser pelo menos 1",
        ));
    }
    let positions = [
        q.cursor.is_some(),
        q.before.is_some(),
        q.from.is_some(),
        q.last == Some(true),
    ];
    if positions.iter().filter(|&&p| p).count() > 1 {
        return Err(AppError::bad_request(
            "give at most one of cursor, before, from and last",
            "informe no máximo um de cursor, before, from e last",
        ));
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
        results: page.rows,
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

/// `start` plus `seconds`, as RFC 3339 UTC with milliseconds.
fn rfc3339(start: SystemTime, seconds: f64) -> String {
    let at = start + Duration::from_secs_f64(seconds.max(0.0));
    humantime::format_rfc3339_millis(at).to_string()
}

// ------------------------------------------------------------------------------------------
// A run's report, files, coverage and plots
// ------------------------------------------------------------------------------------------

#[utoipa::path(get, path = "/api/runs/{id}/final", tag = "runs",
    params(("id" = String, Path, description = "A run number, or `current`")),
    responses(
        (status = 200, description = "The final report as of now: the fields of `piswarm run --json`", body = FinalReport),
        (status = 404, description = "No such run", body = ErrorBody)))]
pub async fn final_report(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<FinalReport>> {
    let run = resolve_run(&state, &id).await?;
    if run == state.node.current_run().id {
        if let Some(c) = state.node.coordinator() {
            if let Ok(report) = c.report().await {
                return Ok(Json(report));
            }
        }
    }
    let report = state
        .digests
        .with(run, |d, row| d.final_report(row))
        .await?;
    Ok(Json(report))
}

async fn download(
    state: &AppState,
    id: &str,
    file: &'static str,
    content_type: &'static str,
    write: fn(&Store, i64, &mut dyn std::io::Write) -> Result<(), crate::store::StoreError>,
) -> ApiResult<Response> {
    let run = resolve_run(state, id).await?;
    let bytes = state
        .node
        .reads()
        .with(move |s| {
            let mut out = Vec::new();
            write(s, run, &mut out)?;
            Ok(out)
        })
        .await?;
    let disposition = format!("attachment; filename=\"run-{run}-{file}\"");
    Ok((
        [
            (header::CONTENT_TYPE, content_type.to_string()),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        bytes,
    )
        .into_response())
}

#[utoipa::path(get, path = "/api/runs/{id}/results.json", tag = "files",
    params(("id" = String, Path, description = "A run number, or `current`")),
    responses(
        (status = 200, description = "results.json, as an attachment", body = Vec<crate::report::ResultRecord>),
        (status = 404, description = "No such run", body = ErrorBody)))]
pub async fn download_results_json(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    download(
        &state,
        &id,
        "results.json",
        "application/json",
        crate::store::export::results_json,
    )
    .await
}

#[utoipa::path(get, path = "/api/runs/{id}/results.csv", tag = "files",
    params(("id" = String, Path, description = "A run number, or `current`")),
    responses(
        (status = 200, description = "results.csv, as an attachment", content_type = "text/csv", body = String),
        (status = 404, description = "No such run", body = ErrorBody)))]
pub async fn download_results_csv(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    download(
        &state,
        &id,
        "results.csv",
        "text/csv; charset=utf-8",
        crate::store::export::results_csv,
    )
    .await
}

#[utoipa::path(get, path = "/api/runs/{id}/final.json", tag = "files",
    params(("id" = String, Path, description = "A run number, or `current`")),
    responses(
        (status = 200, description = "final.json, as an attachment", body = FinalReport),
        (status = 404, description = "No such run", body = ErrorBody)))]
pub async fn download_final_json(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    download(
        &state,
        &id,
        "final.json",
        "application/json",
        crate::store::export::final_json,
    )
    .await
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CoverageQuery {
    /// At most this many stretches: default 200, at most 4096.
    buckets: Option<u32>,
}

#[utoipa::path(get, path = "/api/runs/{id}/coverage", tag = "runs",
    params(("id" = String, Path, description = "A run number, or `current`"), CoverageQuery),
    responses(
        (status = 200, description = "The coverage map of the job's grid", body = CoverageMap),
        (status = 400, description = "A malformed query", body = ErrorBody),
        (status = 404, description = "No such run", body = ErrorBody)))]
pub async fn coverage(
    State(state): State<AppState>,
    Path(id): Path<String>,
    q: Result<Query<CoverageQuery>, QueryRejection>,
) -> ApiResult<Json<CoverageMap>> {
    let q = query(q)?;
    let buckets = q.buckets.unwrap_or(200).clamp(1, 4096);
    let run = resolve_run(&state, &id).await?;
    if run == state.node.current_run().id {
        if let Some(c) = state.node.coordinator() {
            if let Ok(map) = c.coverage(buckets).await {
                return Ok(Json(map.into()));
            }
        }
    }
    // A run that is not being served: only what the store knows (done or not started).
    let map = state
        .digests
        .with(run, move |d, row| d.coverage(row, buckets))
        .await?;
    Ok(Json(map.into()))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PlotsQuery {
    /// About this many points of the error plot: default 200, from 2 to 2000.
    points: Option<usize>,
}

/// The error of the estimate after some results.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ErrorPoint {
    pub terms: u64,
    pub error: f64,
    /// The corrected estimate's error, where the results so far form a prefix.
    pub corrected_error: Option<f64>,
}

/// One worker name's throughput over the run.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct WorkerThroughput {
    pub worker: String,
    pub results: u64,
    pub terms: u64,
    /// Sum of the durations it reported.
    pub seconds: f64,
    pub terms_per_s: f64,
}

/// Data for the plots.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Plots {
    pub error: Vec<ErrorPoint>,
    /// The fastest workers first, at most 50.
    pub workers: Vec<WorkerThroughput>,
    /// How many worker names the run has in all.
    pub workers_total: usize,
}

fn plots_of(d: &RunDigest, points: usize) -> Plots {
    let error = d
        .samples(points)
        .into_iter()
        .map(|p| ErrorPoint {
            terms: p.terms,
            error: series::pi_error(p.pi),
            corrected_error: p
                .prefix
                .then(|| series::pi_error(series::pi_corrected(p.pi, p.terms))),
        })
        .collect();
    let mut workers: Vec<WorkerThroughput> = d
        .workers
        .iter()
        .map(|(name, s)| WorkerThroughput {
            worker: name.clone(),
            results: s.results,
            terms: s.terms,
            seconds: s.seconds,
            terms_per_s: s.terms_per_s(),
        })
        .collect();
    workers.sort_by(|a, b| {
        b.terms_per_s
            .total_cmp(&a.terms_per_s)
            .then_with(|| a.worker.cmp(&b.worker))
    });
    let workers_total = workers.len();
    workers.truncate(50);
    Plots {
        error,
        workers,
        workers_total,
    }
}

#[utoipa::path(get, path = "/api/runs/{id}/plots", tag = "runs",
    params(("id" = String, Path, description = "A run number, or `current`"), PlotsQuery),
    responses(
        (status = 200, description = "The error against terms covered, and throughput per worker", body = Plots),
        (status = 400, description = "A malformed query", body = ErrorBody),
        (status = 404, description = "No such run", body = ErrorBody)))]
pub async fn plots(
    State(state): State<AppState>,
    Path(id): Path<String>,
    q: Result<Query<PlotsQuery>, QueryRejection>,
) -> ApiResult<Json<Plots>> {
    let q = query(q)?;
    let points = q.points.unwrap_or(200).clamp(2, 2000);
    let run = resolve_run(&state, &id).await?;
    let plots = state
        .digests
        .with(run, move |d, _| plots_of(d, points))
        .await?;
    Ok(Json(plots))
}

// ------------------------------------------------------------------------------------------
// Workers
// ------------------------------------------------------------------------------------------

/// What kind of client a session is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// `piswarm worker`.
    Piswarm,
    /// The original's Python client, on the legacy listener.
    Legacy,
    /// A browser.
    Browser,
    /// Any other client of protocol v1.
    Other,
}

impl From<WorkerKind> for Kind {
    fn from(k: WorkerKind) -> Kind {
        match k {
            WorkerKind::Piswarm => Kind::Piswarm,
            WorkerKind::Legacy => Kind::Legacy,
            WorkerKind::Browser => Kind::Browser,
            WorkerKind::Other => Kind::Other,
        }
    }
}

/// One connected session.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct WorkerInfo {
    pub session: u64,
    pub name: String,
    pub kind: Kind,
    /// What the client says it is: the browser's short name (`Chrome 131 · Android`) for a
    /// `/join` page, `piswarm/VERSION` for `piswarm worker`; empty when it said nothing.
    pub agent: String,
    /// Its address.
    pub peer: String,
    /// RFC 3339 (UTC) time it connected.
    pub connected_at: String,
    pub accepted: u64,
    pub rejected: u64,
    /// Intervals assigned to it and not answered yet.
    pub in_hand: usize,
    pub strikes: u32,
    /// Terms per second of its accepted results since it connected.
    pub terms_per_s: f64,
    /// The most intervals it may hold now: before its first result a small share of the job,
    /// then what it is expected to finish within the horizon (its measured speed), plus one.
    pub allowance: usize,
    /// Backup copies it was handed (intervals another session held too), and how many of them
    /// counted first.
    pub backups: u64,
    pub backups_won: u64,
    /// RFC 3339 (UTC) time it was last heard from.
    pub last_seen_at: String,
}

/// How the worker table is sorted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum WorkerSort {
    /// Fastest first (the default).
    #[default]
    Rate,
    Name,
    Kind,
    Peer,
    Connected,
    Accepted,
    Rejected,
    InHand,
    Strikes,
    LastSeen,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct WorkersQuery {
    /// The column: `rate` (default), `name`, `kind`, `peer`, `connected`, `accepted`,
    /// `rejected`, `in_hand`, `strikes`, `last_seen`.
    sort: Option<WorkerSort>,
    /// `desc` (the default for rate and the counts) or `asc`.
    order: Option<Order>,
    /// Rows skipped.
    offset: Option<usize>,
    /// Rows per page: default 100, at most 500.
    limit: Option<usize>,
}

/// A page of the worker table.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct WorkersPage {
    pub workers: Vec<WorkerInfo>,
    /// Connected sessions in all.
    pub total: usize,
    pub offset: usize,
}

#[utoipa::path(get, path = "/api/workers", tag = "workers", params(WorkersQuery),
    responses(
        (status = 200, description = "One row per connected session of the current run", body = WorkersPage),
        (status = 400, description = "A malformed query", body = ErrorBody)))]
pub async fn workers(
    State(state): State<AppState>,
    q: Result<Query<WorkersQuery>, QueryRejection>,
) -> ApiResult<Json<WorkersPage>> {
    let q = query(q)?;
    let sort = q.sort.unwrap_or_default();
    let order = q.order.unwrap_or(match sort {
        WorkerSort::Name | WorkerSort::Kind | WorkerSort::Peer | WorkerSort::Connected => {
            Order::Asc
        }
        _ => Order::Desc,
    });
    let offset = q.offset.unwrap_or(0);
    let limit = q.limit.unwrap_or(100).clamp(1, MAX_WORKERS_PAGE);
    let run = state.node.current_run();
    let mut rows = match state.node.coordinator() {
        Some(c) => c.workers().await.unwrap_or_default(),
        None => Vec::new(),
    };
    rows.sort_by(|a, b| {
        let by = match sort {
            WorkerSort::Rate => a.terms_per_s.total_cmp(&b.terms_per_s),
            WorkerSort::Name => a.name.cmp(&b.name),
            WorkerSort::Kind => (a.kind as u8).cmp(&(b.kind as u8)),
            WorkerSort::Peer => a.peer.cmp(&b.peer),
            WorkerSort::Connected => a.joined_s.total_cmp(&b.joined_s),
            WorkerSort::Accepted => a.accepted.cmp(&b.accepted),
            WorkerSort::Rejected => a.rejected.cmp(&b.rejected),
            WorkerSort::InHand => a.in_hand.cmp(&b.in_hand),
            WorkerSort::Strikes => a.strikes.cmp(&b.strikes),
            WorkerSort::LastSeen => a.last_seen_s.total_cmp(&b.last_seen_s),
        };
        let by = if order == Order::Desc {
            by.reverse()
        } else {
            by
        };
        by.then_with(|| a.session.cmp(&b.session))
    });
    let total = rows.len();
    let workers = rows
        .into_iter()
        .skip(offset)
        .take(limit)
        .map(|w| WorkerInfo {
            session: w.session,
            name: w.name,
            kind: w.kind.into(),
            agent: w.agent,
            peer: w.peer,
            connected_at: rfc3339(run.started, w.joined_s),
            accepted: w.accepted,
            rejected: w.rejected,
            in_hand: w.in_hand,
            strikes: w.strikes,
            terms_per_s: w.terms_per_s,
            allowance: w.allowance,
            backups: w.backups,
            backups_won: w.backups_won,
            last_seen_at: rfc3339(run.started, w.last_seen_s),
        })
        .collect();
    Ok(Json(WorkersPage {
        workers,
        total,
        offset,
    }))
}

// ------------------------------------------------------------------------------------------
// The live stream
// ------------------------------------------------------------------------------------------

/// One `update` event of `GET /api/events`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct LiveUpdate {
    pub status: Status,
    /// The run the history positions below belong to (the current run).
    pub run: i64,
    /// The history position (`seq`) the previous update of this stream reached; null in the
    /// first update of a stream (or after the current run changed).
    pub after: Option<i64>,
    /// The newest history position of the run now (0: no results yet). The event's `id` is
    /// `run:head`; a reconnecting browser sends it back as `Last-Event-ID`.
    pub head: i64,
    /// Results with `after < seq ≤ head`, newest first, at most 100.
    pub results: Vec<StoredResult>,
    /// Some results in (after, head] were left out: fetch them from the history
    /// (`GET /api/runs/{run}/results?sort=arrival&order=asc&cursor=after`).
    pub more: bool,
}

/// Parses a `Last-Event-ID` of the form `run:seq`.
fn last_event_id(headers: &HeaderMap) -> Option<(i64, i64)> {
    let v = headers.get("last-event-id")?.to_str().ok()?;
    let (run, seq) = v.split_once(':')?;
    Some((run.parse().ok()?, seq.parse().ok()?))
}

#[utoipa::path(get, path = "/api/events", tag = "status",
    responses((status = 200,
        description = "Server-Sent Events: at most four `update` events a second, whose data is a LiveUpdate (#/components/schemas/LiveUpdate)",
        content_type = "text/event-stream", body = String)))]
pub async fn events(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Sse<impl futures_util::Stream<Item = Result<SseEvent, Infallible>>> {
    struct Stream {
        state: AppState,
        tick: tokio::time::Interval,
        run: i64,
        /// The history position the stream has reported.
        head: Option<i64>,
        started: bool,
        /// Whether a tick with nothing new is worth an update.
        quiet: super::live::QuietGate,
    }
    let mut tick = tokio::time::interval(UPDATE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let resume = last_event_id(&headers);
    let stop = state.stop.clone();
    let start = Stream {
        run: resume.map_or(0, |r| r.0),
        head: resume.map(|r| r.1),
        started: resume.is_some(),
        state,
        tick,
        quiet: Default::default(),
    };
    let stream = futures_util::stream::unfold(start, |mut s| async move {
        loop {
            s.tick.tick().await;
            let status = status_value(&s.state).await;
            let run = status.run.id;
            if run != s.run || !s.started {
                s.run = run;
                s.head = None;
                s.started = false;
            }
            let reads = s.state.node.reads();
            // Positions start at 1: 0 stands for "before any result".
            let head = match reads.with(move |st| st.last_seq(run)).await {
                Ok(h) => h.unwrap_or(0),
                Err(_) => s.head.unwrap_or(0),
            };
            let after = s.head.filter(|_| s.started);
            let mut results = Vec::new();
            let mut more = false;
            if let Some(from) = after {
                if head > from {
                    let page = reads
                        .with(move |st| {
                            st.history_page(&HistoryQuery {
                                run,
                                sort: HistorySort::Arrival,
                                descending: true,
                                worker: None,
                                position: HistoryPosition::From(head),
                                limit: RESULTS_PER_UPDATE + 1,
                            })
                        })
                        .await;
                    match page {
                        Ok(page) => {
                            results = page.rows.into_iter().filter(|r| r.seq > from).collect();
                            more = results.len() > RESULTS_PER_UPDATE;
                            results.truncate(RESULTS_PER_UPDATE);
                        }
                        // The page fetches what it missed from the history.
                        Err(_) => more = true,
                    }
                }
            }
            // Nothing new but the clocks: at most one update a second (web::live).
            let news = !results.is_empty() || more || after != Some(head);
            let json = serde_json::to_value(&status).unwrap_or(serde_json::Value::Null);
            if !s.quiet.admit(news, json, tokio::time::Instant::now()) {
                continue;
            }
            let update = LiveUpdate {
                status,
                run,
                after,
                head,
                results,
                more,
            };
            s.started = true;
            s.head = Some(head);
            let event = SseEvent::default()
                .event("update")
                .id(format!("{run}:{head}"));
            let event = match serde_json::to_string(&update) {
                Ok(data) => event.data(data),
                Err(e) => {
                    tracing::error!("cannot encode a live update: {e}");
                    event.data("{}")
                }
            };
            return Some((Ok(event), s));
        }
    });
    // The stream ends when the dashboard stops, so that its graceful shutdown can complete.
    let stream = stream.take_until(stop.cancelled_owned());
    Sse::new(stream).keep_alive(KeepAlive::default())
}

// ------------------------------------------------------------------------------------------
// Joining from a browser
// ------------------------------------------------------------------------------------------

/// How other devices join the run (`GET /api/join`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct JoinInfo {
    /// The link to the `/join` page, with the worker token in its fragment (`#token=…`) when the
    /// server has one. It never carries the dashboard's token.
    pub url: String,
    /// Other machines can open it (`false`: the dashboard listens on loopback only).
    pub reachable: bool,
    /// The link carries the worker token.
    pub token_in_link: bool,
    /// Where the QR code of `url` is, as SVG.
    pub qr_svg: String,
    /// The WebSocket path browsers connect to (protocol v1, one message per text message).
    pub websocket: String,
}

fn join_url(state: &AppState) -> (String, bool) {
    let token = state.node.options().server.token.as_ref();
    (state.join.url(token.map(|t| t.expose())), token.is_some())
}

#[utoipa::path(get, path = "/api/join", tag = "status",
    responses((status = 200, description = "The join link for browsers, and where its QR code is", body = JoinInfo)))]
pub async fn join_info(State(state): State<AppState>) -> ApiResult<Json<JoinInfo>> {
    let (url, token_in_link) = join_url(&state);
    Ok(Json(JoinInfo {
        url,
        reachable: state.join.reachable,
        token_in_link,
        qr_svg: "/api/join/qr.svg".into(),
        websocket: super::join::WS_PATH.into(),
    }))
}

#[utoipa::path(get, path = "/api/join/qr.svg", tag = "status",
    responses((status = 200, description = "The QR code of the join link (image/svg+xml)", content_type = "image/svg+xml", body = String)))]
pub async fn join_qr(State(state): State<AppState>) -> ApiResult<Response> {
    let (url, _) = join_url(&state);
    let svg = super::join::qr_svg(&url).map_err(AppError::internal)?;
    Ok((
        [
            (header::CONTENT_TYPE, "image/svg+xml"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        svg,
    )
        .into_response())
}

#[utoipa::path(get, path = "/api/openapi.json", tag = "status",
    responses((status = 200, description = "This document (OpenAPI 3.1)", body = Object)))]
pub async fn openapi(State(state): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        state.openapi.as_str().to_string(),
    )
        .into_response()
}
