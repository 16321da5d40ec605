//! The files of `piswarm export`, as attachments: results.json, results.csv, final.json.

use super::{resolve_run, ApiResult};
use crate::coordinator::RunId;
use crate::report::FinalReport;
use crate::store::Store;
use crate::web::{AppState, ErrorBody};
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};

async fn download(
    state: &AppState,
    id: &str,
    file: &'static str,
    content_type: &'static str,
    write: fn(&Store, RunId, &mut dyn std::io::Write) -> Result<(), crate::store::StoreError>,
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
