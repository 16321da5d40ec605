//! How other devices join: `GET /api/join` (the link) and `/api/join/qr.svg` (its QR code).

use super::ApiResult;
use crate::web::{AppError, AppState};
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

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
        websocket: crate::web::join::WS_PATH.into(),
    }))
}

#[utoipa::path(get, path = "/api/join/qr.svg", tag = "status",
    responses((status = 200, description = "The QR code of the join link (image/svg+xml)", content_type = "image/svg+xml", body = String)))]
pub async fn join_qr(State(state): State<AppState>) -> ApiResult<Response> {
    let (url, _) = join_url(&state);
    let svg = crate::web::join::qr_svg(&url).map_err(AppError::internal)?;
    Ok((
        [
            (header::CONTENT_TYPE, "image/svg+xml"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        svg,
    )
        .into_response())
}
