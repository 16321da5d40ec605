//! The JSON API (documented in docs/api.md) and the live stream of Server-Sent Events.

use super::{error_response, AppError, AppState};
use crate::coordinator::{CoverageBucket, CoverageMap};
use crate::job::Job;
use crate::maths::series;
use crate::node::clients::MAX_PER_REQUEST as MAX_LOCAL_CLIENTS;
use crate::node::ClientMode;
use crate::store::{RunState, Store, StoredResult};
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use std::convert::Infallible;
use std::time::Duration;

/// How often the live stream sends an update, at most.
const UPDATE_EVERY: Duration = Duration::from_millis(250);
/// The most results one live update carries (the newest ones).
const RESULTS_PER_UPDATE: usize = 100;
/// The most results one page of history holds.
const MAX_PAGE: usize = 1000;

type ApiResult<T> = Result<T, AppError>;

/// The body of a JSON request, or a 4xx with a JSON error.
fn body<T>(payload: Result<Json<T>, JsonRejection>) -> ApiResult<T> {
    payload
        .map(|Json(v)| v)
        .map_err(|rejection| AppError::Client(rejection.status(), rejection.body_text()))
}

fn query<T>(q: Result<Query<T>, QueryRejection>) -> ApiResult<T> {
    q.map(|Query(v)| v)
        .map_err(|rejection| AppError::bad_request(rejection.body_text()))
}

/// Resolves `{id}`: a run number, or `current`; 404 if the run does not exist.
async fn resolve_run(state: &AppState, id: &str) -> ApiResult<i64> {
    let run = if id == "current" {
        state.node.current_run().id
    } else {
        id.parse::<i64>().ok().filter(|&n| n > 0).ok_or_else(|| {
            AppError::not_found(format!("no run '{id}' (a run number or 'current')"))
        })?
    };
    state
        .node
        .reads()
        .with(move |s| s.run(run).map(|_| ()))
        .await?;
    Ok(run)
}

pub async fn not_found() -> Response {
    error_response(
        StatusCode::NOT_FOUND,
        "no such API path (see /api/openapi.json)",
    )
}

pub async fn method_not_allowed() -> Response {
    error_response(
        StatusCode::METHOD_NOT_ALLOWED,
        "method not allowed (state-changing requests are POST; reads are GET)",
    )
}

/// `GET /api/status`.
pub async fn status(State(state): State<AppState>) -> ApiResult<Json<Value>> {
    Ok(Json(status_value(&state).await))
}

/// The status object: the server and the current run.
pub(crate) async fn status_value(state: &AppState) -> Value {
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
    let remaining = job.terms.map(|n| n.saturating_sub(snap.totals.terms_done));
    let eta = match remaining {
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
    let has_terms = snap.totals.terms_done > 0;
    json!({
        "server": {
            "running": view.running,
            "listen": view.listen,
            "legacy_listen": view.legacy_listen,
            "clients": snap.sessions,
            "local_clients": node.local_clients(),
            "uptime_s": view.server_since.map_or(0.0, |s| s.elapsed().as_secs_f64()),
            "process_uptime_s": node.uptime().as_secs_f64(),
        },
        "run": {
            "id": run.id,
            "state": run_state,
            "terms": job.terms,
            "chunk": job.chunk,
            "intervals_total": job.intervals(),
            "intervals_done": snap.totals.intervals_done,
            "in_flight": snap.in_flight,
            "done_terms": snap.totals.terms_done.to_string(),
            "even_sum": snap.totals.even_sum.0.to_string(),
            "odd_sum": snap.totals.odd_sum.0.to_string(),
            "pi": has_terms.then_some(snap.totals.pi),
            "pi_error": has_terms.then(|| series::pi_error(snap.totals.pi)),
            "correct_digits": has_terms.then(|| series::correct_digits(snap.totals.pi)),
            "pi_corrected": report.as_ref().filter(|_| has_terms).and_then(|r| r.pi_corrected),
            "workers": snap.totals.workers,
            "elapsed_s": report.as_ref().map(|r| r.elapsed_s),
            "rate_terms_per_s": rate,
            "eta_s": eta,
            "complete": snap.complete,
            "store_failed": snap.store_failed,
        }
    })
}

/// `POST /api/server/start`.
pub async fn server_start(State(state): State<AppState>) -> ApiResult<Json<Value>> {
    state.node.start_server().await?;
    Ok(Json(status_value(&state).await))
}

/// `POST /api/server/stop`.
pub async fn server_stop(State(state): State<AppState>) -> ApiResult<Json<Value>> {
    state.node.stop_server().await?;
    Ok(Json(status_value(&state).await))
}

/// `POST /api/shutdown`: stops the whole process (as Ctrl-C would).
pub async fn shutdown(State(state): State<AppState>) -> ApiResult<(StatusCode, Json<Value>)> {
    state.node.request_exit();
    Ok((StatusCode::ACCEPTED, Json(json!({ "exiting": true }))))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientsRequest {
    count: u64,
    mode: ClientMode,
}

/// `POST /api/clients`.
pub async fn create_clients(
    State(state): State<AppState>,
    payload: Result<Json<ClientsRequest>, JsonRejection>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let req = body(payload)?;
    if req.count == 0 || req.count > MAX_LOCAL_CLIENTS as u64 {
        return Err(AppError::unprocessable(format!(
            "count must be between 1 and {MAX_LOCAL_CLIENTS}"
        )));
    }
    let names = state
        .node
        .create_clients(req.count as usize, req.mode)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "created": names.len(), "mode": req.mode, "names": names })),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewRunRequest {
    #[serde(default)]
    terms: Option<Count>,
    #[serde(default)]
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
    fn value(&self, what: &str) -> ApiResult<u64> {
        match self {
            Count::Number(n) => Ok(*n),
            Count::Text(t) => crate::job::count::parse_count(t)
                .map_err(|e| AppError::unprocessable(format!("{what}: {e}"))),
        }
    }
}

/// `POST /api/runs`: finishes the current run and starts a new one.
pub async fn new_run(
    State(state): State<AppState>,
    payload: Result<Json<NewRunRequest>, JsonRejection>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let req = body(payload)?;
    let terms = req.terms.map(|c| c.value("terms")).transpose()?;
    let chunk = req.chunk.map(|c| c.value("chunk")).transpose()?;
    let job = Job::new(terms, chunk).map_err(|e| AppError::unprocessable(e.to_string()))?;
    let id = state.node.new_run(job).await?;
    let row = state.node.reads().with(move |s| s.run(id)).await?;
    let mut v = serde_json::to_value(row).map_err(AppError::internal)?;
    v["current"] = json!(true);
    Ok((StatusCode::CREATED, Json(v)))
}

/// `GET /api/runs`: every run, newest first.
pub async fn list_runs(State(state): State<AppState>) -> ApiResult<Json<Value>> {
    let current = state.node.current_run().id;
    let rows = state.node.reads().with(|s| s.runs()).await?;
    let runs: Vec<Value> = rows
        .into_iter()
        .filter_map(|r| {
            let mut v = serde_json::to_value(&r).ok()?;
            v["current"] = json!(r.id == current);
            Some(v)
        })
        .collect();
    Ok(Json(Value::Array(runs)))
}

/// `GET /api/runs/{id}`: one run as stored.
pub async fn run_info(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let run = resolve_run(&state, &id).await?;
    let current = state.node.current_run().id;
    let row = state.node.reads().with(move |s| s.run(run)).await?;
    let mut v = serde_json::to_value(row).map_err(AppError::internal)?;
    v["current"] = json!(run == current);
    Ok(Json(v))
}

#[derive(Debug, Deserialize)]
pub struct PageQuery {
    cursor: Option<i64>,
    limit: Option<usize>,
}

/// `GET /api/runs/{id}/results?cursor=&limit=`: accepted results, newest first.
pub async fn results(
    State(state): State<AppState>,
    Path(id): Path<String>,
    q: Result<Query<PageQuery>, QueryRejection>,
) -> ApiResult<Json<Value>> {
    let q = query(q)?;
    let run = resolve_run(&state, &id).await?;
    let limit = q.limit.unwrap_or(50);
    if limit == 0 {
        return Err(AppError::bad_request("limit must be at least 1"));
    }
    let limit = limit.min(MAX_PAGE);
    let cursor = q.cursor;
    let (rows, next) = state
        .node
        .reads()
        .with(move |s| s.results_page(run, cursor, limit))
        .await?;
    Ok(Json(json!({ "results": rows, "next_cursor": next })))
}

/// `GET /api/runs/{id}/final`: the fields of `piswarm run --json`.
pub async fn final_report(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let run = resolve_run(&state, &id).await?;
    if run == state.node.current_run().id {
        if let Some(c) = state.node.coordinator() {
            if let Ok(report) = c.report().await {
                return Ok(Json(
                    serde_json::to_value(report).map_err(AppError::internal)?,
                ));
            }
        }
    }
    let report = state
        .node
        .reads()
        .with(move |s| s.final_report(run))
        .await?;
    Ok(Json(
        serde_json::to_value(report).map_err(AppError::internal)?,
    ))
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

#[derive(Debug, Deserialize)]
pub struct CoverageQuery {
    buckets: Option<u32>,
}

/// `GET /api/runs/{id}/coverage?buckets=N`: the coverage map of the grid.
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
                return Ok(Json(map));
            }
        }
    }
    // A run that is not being served: only what the store knows (done or not started).
    let map = state
        .node
        .reads()
        .with(move |s| {
            let row = s.run(run)?;
            let job = Job {
                terms: row.terms,
                chunk: row.chunk,
            };
            let span = match job.intervals() {
                Some(n) => n,
                None => s.max_interval(run)?.map_or(0, |m| m + 1),
            };
            if span == 0 {
                return Ok(CoverageMap {
                    chunk: job.chunk,
                    ..CoverageMap::default()
                });
            }
            let width = span.div_ceil(u64::from(buckets).min(span));
            let count = span.div_ceil(width);
            let mut map: Vec<CoverageBucket> = (0..count)
                .map(|k| CoverageBucket {
                    not_started: ((k + 1) * width).min(span) - k * width,
                    ..CoverageBucket::default()
                })
                .collect();
            for (k, done) in s.done_per_stretch(run, width)? {
                if let Some(b) = map.get_mut(k as usize) {
                    b.done = done.min(b.not_started);
                    b.not_started -= b.done;
                }
            }
            Ok(CoverageMap {
                span,
                width,
                chunk: job.chunk,
                buckets: map,
            })
        })
        .await?;
    Ok(Json(map))
}

#[derive(Debug, Deserialize)]
pub struct PlotsQuery {
    points: Option<usize>,
}

/// `GET /api/runs/{id}/plots`: the estimate's error against terms covered, and throughput per
/// worker.
pub async fn plots(
    State(state): State<AppState>,
    Path(id): Path<String>,
    q: Result<Query<PlotsQuery>, QueryRejection>,
) -> ApiResult<Json<Value>> {
    let q = query(q)?;
    let points = q.points.unwrap_or(200).clamp(2, 2000);
    let run = resolve_run(&state, &id).await?;
    let (history, workers) = state
        .node
        .reads()
        .with(move |s| Ok((s.pi_history(run, points)?, s.worker_throughput(run, 50)?)))
        .await?;
    let error: Vec<Value> = history
        .iter()
        .map(|p| {
            let corrected = p.prefix.then(|| series::pi_corrected(p.pi, p.terms));
            json!({
                "terms": p.terms,
                "error": series::pi_error(p.pi),
                "corrected_error": corrected.map(series::pi_error),
            })
        })
        .collect();
    Ok(Json(json!({ "error": error, "workers": workers })))
}

/// `GET /api/events`: Server-Sent Events. At most four `update` events a second, each with the
/// status and the newest results accepted since the previous one (at most
/// [`RESULTS_PER_UPDATE`]; `more` says some were left out), however fast results arrive.
pub async fn events(
    State(state): State<AppState>,
) -> Sse<impl futures_util::Stream<Item = Result<SseEvent, Infallible>>> {
    struct Stream {
        state: AppState,
        tick: tokio::time::Interval,
        run: i64,
        last_seq: Option<i64>,
        last_done: Option<u64>,
    }
    let mut tick = tokio::time::interval(UPDATE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let start = Stream {
        state,
        tick,
        run: 0,
        last_seq: None,
        last_done: None,
    };
    let stream = futures_util::stream::unfold(start, |mut s| async move {
        s.tick.tick().await;
        let status = status_value(&s.state).await;
        let current = s.state.node.current_run();
        if current.id != s.run {
            s.run = current.id;
            s.last_done = None;
            s.last_seq = None;
        }
        let done = current.snapshot.borrow().totals.intervals_done;
        let mut results: Vec<StoredResult> = Vec::new();
        let mut more = false;
        if s.last_done != Some(done) {
            let run = s.run;
            let page = s
                .state
                .node
                .reads()
                .with(move |st| st.results_page(run, None, RESULTS_PER_UPDATE + 1))
                .await;
            if let Ok((rows, _)) = page {
                let newest = rows.first().map(|r| r.seq);
                match s.last_seq {
                    // The first update only sets the mark: the page loads its history itself.
                    None => {}
                    Some(last) => {
                        results = rows.into_iter().filter(|r| r.seq > last).collect();
                        more = results.len() > RESULTS_PER_UPDATE;
                        results.truncate(RESULTS_PER_UPDATE);
                    }
                }
                s.last_seq = newest.or(s.last_seq).or(Some(0));
                s.last_done = Some(done);
            }
        }
        let data = json!({ "status": status, "results": results, "more": more });
        let event = SseEvent::default().event("update").data(data.to_string());
        Some((Ok(event), s))
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

/// `GET /api/openapi.json`.
pub async fn openapi() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        include_str!("assets/openapi.json"),
    )
        .into_response()
}
