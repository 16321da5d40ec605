//! The JSON API (documented in docs/api.md), one module per resource, and the router that
//! registers every handler with its OpenAPI description (`openapi.rs`), so that the document is
//! generated from the handlers and their types.
//!
//! The types here are the API's: the store and the coordinator derive no HTTP schema, and each
//! handler maps their values into its own response types (`From` or a constructor beside the
//! type). Every error sentence comes from `web::i18n`, in both languages.
//!
//! * `status.rs` — `GET /api/status`; `control.rs` — start, stop, shutdown; `clients.rs` —
//!   local clients;
//! * `runs.rs` — the runs and their final report; `history.rs` — a run's results, the intervals
//!   in flight; `downloads.rs` — the files of `piswarm export`; `plots.rs` — coverage and plots;
//! * `workers.rs` — the worker table; `stream.rs` — the live stream (`/api/events`); `join.rs` —
//!   the join link and its QR code; `openapi.rs` — the document itself.

mod clients;
mod control;
mod downloads;
mod history;
mod join;
mod openapi;
mod plots;
mod runs;
mod status;
mod stream;
mod workers;

pub use openapi::ApiDoc;

use super::i18n::Message;
use super::{AppError, AppState};
use crate::coordinator::RunId;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::Query;
use axum::http::StatusCode;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use std::time::{Duration, SystemTime};
use utoipa::{OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

type ApiResult<T> = Result<T, AppError>;

/// The API's routes and their OpenAPI document, from one list.
pub fn routes() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(status::status))
        .routes(routes!(control::server_start))
        .routes(routes!(control::server_stop))
        .routes(routes!(clients::create_clients))
        .routes(routes!(runs::list_runs, runs::new_run))
        .routes(routes!(runs::run_info))
        .routes(routes!(history::results))
        .routes(routes!(history::in_flight))
        .routes(routes!(runs::final_report))
        .routes(routes!(downloads::download_results_json))
        .routes(routes!(downloads::download_results_csv))
        .routes(routes!(downloads::download_final_json))
        .routes(routes!(plots::coverage))
        .routes(routes!(plots::plots))
        .routes(routes!(workers::workers))
        .routes(routes!(join::join_info))
        .routes(routes!(join::join_qr))
        .routes(routes!(stream::events))
        .routes(routes!(control::shutdown))
        .routes(routes!(openapi::openapi))
        .split_for_parts()
}

/// The body of a JSON request, or a 4xx with a JSON error.
fn body<T>(payload: Result<Json<T>, JsonRejection>) -> ApiResult<T> {
    payload.map(|Json(v)| v).map_err(|rejection| {
        let detail = rejection.body_text();
        let message = match &rejection {
            JsonRejection::MissingJsonContentType(_) => Message::json_content_type(detail),
            JsonRejection::JsonSyntaxError(_) => Message::json_syntax(detail),
            _ => Message::bad_body(detail),
        };
        AppError::Client(rejection.status(), message)
    })
}

/// The query string of a request, or a 400 with a JSON error.
fn query<T>(q: Result<Query<T>, QueryRejection>) -> ApiResult<T> {
    q.map(|Query(v)| v)
        .map_err(|rejection| bad_request(Message::bad_query(rejection.body_text())))
}

fn bad_request(message: Message) -> AppError {
    AppError::Client(StatusCode::BAD_REQUEST, message)
}

/// Resolves `{id}`: a run number, or `current`; 404 if the run does not exist.
async fn resolve_run(state: &AppState, id: &str) -> ApiResult<RunId> {
    let run = if id == "current" {
        state.node.current_run().id
    } else {
        id.parse::<u64>()
            .ok()
            .filter(|&n| n > 0)
            .map(RunId)
            .ok_or_else(|| AppError::Client(StatusCode::NOT_FOUND, Message::no_such_run_id(id)))?
    };
    state
        .node
        .reads()
        .with(move |s| s.run(run).map(|_| ()))
        .await?;
    Ok(run)
}

/// The answer to a path the API does not have.
pub async fn not_found() -> AppError {
    AppError::Client(StatusCode::NOT_FOUND, Message::no_such_path())
}

/// The answer to a method a path does not take.
pub async fn method_not_allowed() -> AppError {
    AppError::Client(
        StatusCode::METHOD_NOT_ALLOWED,
        Message::method_not_allowed(),
    )
}

/// An order, for the history and the worker table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Order {
    Asc,
    Desc,
}

/// `start` plus `seconds`, as RFC 3339 UTC with milliseconds.
fn rfc3339(start: SystemTime, seconds: f64) -> String {
    let at = start + Duration::from_secs_f64(seconds.max(0.0));
    humantime::format_rfc3339_millis(at).to_string()
}
