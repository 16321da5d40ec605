//! Control of the process: `POST /api/server/start`, `/api/server/stop` and `/api/shutdown`.

use super::status::{status_value, Status};
use super::ApiResult;
use crate::web::{AppState, ErrorBody};
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

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
