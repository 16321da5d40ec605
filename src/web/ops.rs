//! What operators and orchestrators ask the dashboard's server, beside the page and its API:
//! `GET /healthz` and `GET /readyz` (no token: probes carry none; they reveal only whether the
//! process serves) and `GET /metrics` (behind the same guard as the API; `serve --metrics ADDR`
//! serves it without a token on a listener of its own).

use super::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

/// `GET /healthz`: the process is alive and its HTTP server answers.
pub async fn healthz() -> Response {
    (StatusCode::OK, Json(json!({ "status": "ok" }))).into_response()
}

/// `GET /readyz`: 200 while the TCP server accepts workers and the store makes results durable;
/// 503 otherwise, with the reason.
pub async fn readyz(State(state): State<AppState>) -> Response {
    let view = state.node.view();
    let run = state.node.current_run();
    let store_failed = run.snapshot.borrow().store_failed.clone();
    let reason = if let Some(why) = store_failed {
        Some(format!("the store failed: {why}"))
    } else if !view.running {
        Some(
            "the TCP server is stopped (start it from the dashboard or POST /api/server/start)"
                .to_string(),
        )
    } else {
        None
    };
    match reason {
        None => (
            StatusCode::OK,
            Json(json!({ "ready": true, "listen": view.listen, "run": run.id.0 })),
        )
            .into_response(),
        Some(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "ready": false, "reason": reason })),
        )
            .into_response(),
    }
}

/// `GET /metrics`: the Prometheus exposition (see `web::metrics`).
pub async fn metrics(State(state): State<AppState>) -> Response {
    crate::metrics::listener::response(crate::web::metrics::render(&state.node).await)
}
