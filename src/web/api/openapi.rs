//! The OpenAPI document: its header here, its paths from the handlers' `#[utoipa::path]`s,
//! gathered by `super::routes`.

use super::stream::LiveUpdate;
use crate::web::{AppState, ErrorBody};
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use utoipa::OpenApi;

/// The OpenAPI document of the dashboard's API (paths are added by [`super::routes`]).
#[derive(OpenApi)]
#[openapi(
    info(
        title = "piswarm dashboard API",
        description = "The JSON API of `piswarm serve`'s dashboard (docs/api.md). Errors are `{\"error\": \"one sentence\"}` in English, or Portuguese by Accept-Language or the `lang` cookie."
    ),
    components(schemas(LiveUpdate, ErrorBody))
)]
pub struct ApiDoc;

#[utoipa::path(get, path = "/api/openapi.json", tag = "status",
    responses((status = 200, description = "This document (OpenAPI 3.1)", body = Object)))]
pub async fn openapi(State(state): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        state.openapi.as_str().to_string(),
    )
        .into_response()
}
