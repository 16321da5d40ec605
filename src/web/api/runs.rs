//! The runs: `GET`/`POST /api/runs`, `GET /api/runs/{id}` and its final report.

use super::{body, resolve_run, ApiResult};
use crate::coordinator::RunId;
use crate::job::Job;
use crate::report::FinalReport;
use crate::store::RunRow;
use crate::web::i18n::{JobField, Message};
use crate::web::{AppError, AppState, ErrorBody};
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

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
    /// The count, or an error that names the field.
    fn value(&self, field: JobField) -> ApiResult<u64> {
        match self {
            Count::Number(n) => Ok(*n),
            Count::Text(t) => crate::job::count::parse_count(t).map_err(|e| {
                AppError::Client(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    Message::bad_count(field, t, &e.to_string()),
                )
            }),
        }
    }
}

/// The state of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    Running,
    Stopped,
    Complete,
}

impl From<crate::coordinator::RunState> for RunState {
    fn from(s: crate::coordinator::RunState) -> RunState {
        use crate::coordinator::RunState as S;
        match s {
            S::Running => RunState::Running,
            S::Stopped => RunState::Stopped,
            S::Complete => RunState::Complete,
        }
    }
}

/// A run as stored (its totals as of the last write of them, at most a second old for the
/// current run), and whether it is the one being served.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RunInfo {
    pub id: u64,
    /// Terms of the job; null for an open-ended job.
    pub terms: Option<u64>,
    pub chunk: u64,
    pub state: RunState,
    /// RFC 3339 (UTC).
    pub created_at: String,
    pub updated_at: String,
    /// Intervals whose results are stored.
    pub intervals_done: u64,
    /// Terms those intervals cover: a decimal string, like `done_terms` in the status.
    #[schema(pattern = "^[0-9]+$")]
    pub done_terms: String,
    #[schema(pattern = "^[0-9]+$")]
    pub even_sum: String,
    #[schema(pattern = "^[0-9]+$")]
    pub odd_sum: String,
    /// The π partials of those intervals, summed exactly and rounded once.
    pub pi: f64,
    /// A rigorous bound on |pi − the exact partial sum of the done intervals|.
    pub pi_bound: f64,
    /// Distinct worker names with at least one accepted result.
    pub workers: u64,
    /// Seconds the run has been served.
    pub elapsed_s: f64,
    /// The π kernel the run computes with: `oct`, or `quad` for runs made before it.
    #[schema(example = "oct")]
    pub kernel: String,
    /// The run being served.
    pub current: bool,
}

impl RunInfo {
    fn new(row: RunRow, current: RunId) -> RunInfo {
        let t = row.totals;
        RunInfo {
            id: row.id.0,
            terms: row.terms,
            chunk: row.chunk,
            state: row.state.into(),
            created_at: row.created_at,
            updated_at: row.updated_at,
            intervals_done: t.intervals_done,
            done_terms: t.terms_done.to_string(),
            even_sum: t.even_sum.0.to_string(),
            odd_sum: t.odd_sum.0.to_string(),
            pi: t.pi,
            pi_bound: t.pi_bound,
            workers: t.workers,
            elapsed_s: t.elapsed_s,
            kernel: row.kernel.name().to_string(),
            current: row.id == current,
        }
    }
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
    let terms = req.terms.map(|c| c.value(JobField::Terms)).transpose()?;
    let chunk = req.chunk.map(|c| c.value(JobField::Chunk)).transpose()?;
    let job = Job::new(terms, chunk)
        .map_err(|e| AppError::Client(StatusCode::UNPROCESSABLE_ENTITY, Message::from(&e)))?;
    let id = state.node.new_run(job).await?;
    let row = state.node.reads().with(move |s| s.run(id)).await?;
    Ok((StatusCode::CREATED, Json(RunInfo::new(row, id))))
}

#[utoipa::path(get, path = "/api/runs", tag = "runs",
    responses((status = 200, description = "Every run, newest first", body = Vec<RunInfo>)))]
pub async fn list_runs(State(state): State<AppState>) -> ApiResult<Json<Vec<RunInfo>>> {
    let current = state.node.current_run().id;
    let rows = state.node.reads().with(|s| s.runs()).await?;
    Ok(Json(
        rows.into_iter()
            .map(|row| RunInfo::new(row, current))
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
    Ok(Json(RunInfo::new(row, current)))
}

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
