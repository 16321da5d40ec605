//! The dashboard: one HTML page and the JSON API it uses, served over HTTP by axum in the same
//! process as the coordinator.
//!
//! What it owns: HTTP only — routing, the safety checks, rendering. It never touches a run's state:
//! it asks the `node` (start, stop, clients, new run), reads snapshots and asks the coordinator
//! for its coverage map, and reads history from the store on a pool of read connections.
//!
//! Safety, in [`guard`]: state-changing requests are POST only (the routes say so) and refused
//! when they come from another site (`Sec-Fetch-Site: cross-site`, or an `Origin` that is not the
//! `Host`); when a UI token is set (always, when bound beyond loopback), every request must carry
//! it — as `Authorization: Bearer`, the cookie set by a first visit with `?token=`, or `?token=`.
//! Malformed requests get a 4xx with a JSON `{"error": ...}`; internal failures are logged and
//! answered with a generic 500, never with details.
//!
//! Modules: `api` (the JSON handlers and the live stream), `page` (the HTML page, its
//! translations and its embedded assets), `ops` (`/healthz`, `/readyz` outside the guard, and
//! `/metrics` behind it).

mod api;
pub mod metrics;
mod ops;

mod page;

use crate::node::Node;
use crate::wire::secret::Secret;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The name of the cookie that carries the UI token after a visit with `?token=`.
pub const TOKEN_COOKIE: &str = "piswarm_token";

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub node: Node,
    token: Option<Arc<Secret>>,
    pages: Arc<page::Pages>,
}

/// An error as the API answers it: a status and a JSON body `{"error": message}`.
#[derive(Debug)]
pub enum AppError {
    /// The request was wrong: its message is shown to the caller.
    Client(StatusCode, String),
    /// Something failed inside: logged, and the caller only learns that it failed.
    Internal(String),
}

impl AppError {
    pub fn bad_request(msg: impl Into<String>) -> AppError {
        AppError::Client(StatusCode::BAD_REQUEST, msg.into())
    }
    pub fn not_found(msg: impl Into<String>) -> AppError {
        AppError::Client(StatusCode::NOT_FOUND, msg.into())
    }
    pub fn unprocessable(msg: impl Into<String>) -> AppError {
        AppError::Client(StatusCode::UNPROCESSABLE_ENTITY, msg.into())
    }
    pub fn internal(e: impl std::fmt::Display) -> AppError {
        AppError::Internal(e.to_string())
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        match self {
            AppError::Client(status, message) => error_response(status, &message),
            AppError::Internal(detail) => {
                tracing::error!("dashboard request failed: {detail}");
                error_response(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal error (see the server's log)",
                )
            }
        }
    }
}

impl From<crate::store::StoreError> for AppError {
    fn from(e: crate::store::StoreError) -> AppError {
        match e {
            crate::store::StoreError::NoSuchRun(id) => {
                AppError::not_found(format!("run {id} does not exist"))
            }
            other => AppError::internal(other),
        }
    }
}

impl From<crate::node::ControlError> for AppError {
    fn from(e: crate::node::ControlError) -> AppError {
        use crate::node::ControlError as C;
        match e {
            C::NotRunning
            | C::TlsOnly
            | C::Bind { .. }
            | C::TooManyClients { .. }
            | C::StoreFailed => AppError::Client(StatusCode::CONFLICT, e.to_string()),
            C::ShuttingDown => AppError::Client(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
            C::Store(_) | C::Coordinator(_) | C::Io(_) => AppError::internal(e),
        }
    }
}

pub(crate) fn error_response(status: StatusCode, message: &str) -> Response {
    (status, Json(serde_json::json!({ "error": message }))).into_response()
}

/// The dashboard's router (the page, its assets, the API), with the safety checks.
pub fn router(node: Node, token: Option<Secret>) -> Router {
    let state = AppState {
        node,
        token: token.map(Arc::new),
        pages: Arc::new(page::Pages::new()),
    };
    let api = Router::new()
        .route("/status", get(api::status))
        .route("/server/start", post(api::server_start))
        .route("/server/stop", post(api::server_stop))
        .route("/clients", post(api::create_clients))
        .route("/runs", get(api::list_runs).post(api::new_run))
        .route("/runs/{id}", get(api::run_info))
        .route("/runs/{id}/results", get(api::results))
        .route("/runs/{id}/final", get(api::final_report))
        .route("/runs/{id}/results.json", get(api::download_results_json))
        .route("/runs/{id}/results.csv", get(api::download_results_csv))
        .route("/runs/{id}/final.json", get(api::download_final_json))
        .route("/runs/{id}/coverage", get(api::coverage))
        .route("/runs/{id}/plots", get(api::plots))
        .route("/events", get(api::events))
        .route("/shutdown", post(api::shutdown))
        .route("/openapi.json", get(api::openapi))
        .fallback(api::not_found)
        .method_not_allowed_fallback(api::method_not_allowed);
    let guarded = Router::new()
        .route("/", get(page::index))
        .route("/assets/app.js", get(page::app_js))
        .route("/assets/style.css", get(page::style_css))
        .route("/metrics", get(ops::metrics))
        .nest("/api", api)
        .method_not_allowed_fallback(api::method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(state.clone(), guard))
        .with_state(state.clone());
    // Probes carry no token: these two are outside the guard.
    let probes = Router::new()
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .with_state(state);
    probes.merge(guarded)
}

/// Binds the dashboard on `addr` and serves it until `stop` is cancelled. A UI token is required
/// when one is given, and generated when the address is not loopback. Returns the server task and
/// the URL to open (with the token if it was generated; a token the user gave is never shown).
pub async fn bind(
    node: Node,
    addr: &str,
    token: Option<Secret>,
    stop: CancellationToken,
) -> std::io::Result<(JoinHandle<()>, String)> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    // A token made up here is printed in the URL (nobody else knows it); one the user gave is
    // never printed.
    let generated = match &token {
        None if !local.ip().is_loopback() => Some(Secret::new(generate_token()?)),
        _ => None,
    };
    let url = dashboard_url(local, generated.as_ref());
    let token = token.or(generated);
    let app = router(node, token);
    let task = tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await;
        if let Err(e) = served {
            tracing::error!("the dashboard stopped: {e}");
        }
    });
    Ok((task, url))
}

fn dashboard_url(addr: SocketAddr, token: Option<&Secret>) -> String {
    let host = if addr.ip().is_unspecified() {
        "127.0.0.1".to_string()
    } else if addr.is_ipv6() {
        format!("[{}]", addr.ip())
    } else {
        addr.ip().to_string()
    };
    match token {
        Some(t) => format!("http://{host}:{}/?token={}", addr.port(), t.expose()),
        None => format!("http://{host}:{}/", addr.port()),
    }
}

/// 128 random bits from the operating system, as hex.
fn generate_token() -> std::io::Result<String> {
    use std::io::Read;
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// The safety checks in front of every route (see the module's documentation).
async fn guard(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let headers = request.headers();
    if !matches!(method, Method::GET | Method::HEAD | Method::OPTIONS) {
        if let Some(why) = cross_site(headers) {
            tracing::warn!(
                "refused a cross-site {method} {}: {why}",
                request.uri().path()
            );
            return error_response(
                StatusCode::FORBIDDEN,
                &format!("cross-site request refused: {why}"),
            );
        }
    }
    let mut set_cookie = None;
    if let Some(expected) = &state.token {
        let query_token = request
            .uri()
            .query()
            .and_then(|q| query_param(q, "token"))
            .filter(|t| expected.matches(t.as_bytes()));
        let header_ok = bearer(headers).is_some_and(|t| expected.matches(t.as_bytes()))
            || cookie(headers, TOKEN_COOKIE).is_some_and(|t| expected.matches(t.as_bytes()));
        if query_token.is_some() && !header_ok {
            set_cookie = HeaderValue::from_str(&format!(
                "{TOKEN_COOKIE}={}; Path=/; HttpOnly; SameSite=Strict",
                expected.expose()
            ))
            .ok();
        }
        if !header_ok && query_token.is_none() {
            return error_response(
                StatusCode::UNAUTHORIZED,
                "this dashboard requires its token: open the URL printed by piswarm serve, or send Authorization: Bearer TOKEN",
            );
        }
    }
    let mut response = next.run(request).await;
    if let Some(cookie) = set_cookie {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    let h = response.headers_mut();
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    h.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    response
}

/// Why a state-changing request is cross-site, or `None` if it is not.
fn cross_site(headers: &HeaderMap) -> Option<String> {
    let text = |name: header::HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
    if headers
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("cross-site"))
    {
        return Some("Sec-Fetch-Site is cross-site".into());
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let Some(origin) = origin.to_str().ok() else {
            return Some("unreadable Origin".into());
        };
        let origin_host = origin
            .split_once("://")
            .map(|(_, rest)| rest.trim_end_matches('/'))
            .unwrap_or("");
        let host = text(header::HOST).unwrap_or("");
        if origin_host.is_empty() || !origin_host.eq_ignore_ascii_case(host) {
            return Some(format!("Origin {origin} is not this dashboard"));
        }
    }
    None
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

pub(crate) fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

pub(crate) fn query_param(query: &str, name: &str) -> Option<String> {
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cross_site_detection() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("127.0.0.1:8080"));
        assert!(cross_site(&h).is_none());
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://127.0.0.1:8080"),
        );
        assert!(cross_site(&h).is_none());
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://evil.example"),
        );
        assert!(cross_site(&h).is_some());
        h.insert(header::ORIGIN, HeaderValue::from_static("null"));
        assert!(cross_site(&h).is_some());
        let mut h = HeaderMap::new();
        h.insert("sec-fetch-site", HeaderValue::from_static("cross-site"));
        assert!(cross_site(&h).is_some());
    }

    #[test]
    fn urls() {
        let a: SocketAddr = "0.0.0.0:8080".parse().unwrap();
        assert_eq!(dashboard_url(a, None), "http://127.0.0.1:8080/");
        let t = Secret::new("abc");
        let a: SocketAddr = "10.0.0.1:80".parse().unwrap();
        assert_eq!(dashboard_url(a, Some(&t)), "http://10.0.0.1:80/?token=abc");
        assert_eq!(generate_token().unwrap().len(), 32);
    }
}
