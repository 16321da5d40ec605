//! The metrics' own HTTP listener (`serve --metrics ADDR`, `worker --metrics ADDR`): `GET
//! /metrics` only, without a token, for a Prometheus that reaches it over a network the operator
//! restricts. Everything else is 404.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// What a scrape answers: the exposition text, made when the scrape arrives.
pub type Render = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = String> + Send>> + Send + Sync>;

/// An answer of `GET /metrics`: `text` in the Prometheus text format.
pub fn response(text: String) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, super::CONTENT_TYPE)],
        text,
    )
        .into_response()
}

/// A router with `GET /metrics` answered by `render`.
pub fn router(render: Render) -> Router {
    Router::new().route(
        "/metrics",
        get(move || {
            let render = render.clone();
            async move { response(render().await) }
        }),
    )
}

/// Binds `addr` and serves [`router`] until `stop` is cancelled. Returns the task and the bound
/// address.
pub async fn bind(
    addr: &str,
    render: Render,
    stop: CancellationToken,
) -> std::io::Result<(JoinHandle<()>, SocketAddr)> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let app = router(render);
    let task = tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await;
        if let Err(e) = served {
            tracing::error!("the metrics listener stopped: {e}");
        }
    });
    Ok((task, local))
}
