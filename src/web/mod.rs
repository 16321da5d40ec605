//! The dashboard: one HTML page and the JSON API it uses, served over HTTP by axum in the same
//! process as the coordinator.
//!
//! What it owns: HTTP only — routing, the safety checks, rendering, and read-side caches of
//! stored runs ([`digest`]). It never touches a run's state: it asks the `node` (start, stop,
//! clients, new run), reads snapshots, asks the coordinator for its coverage map and worker
//! table, and reads history from the store on a pool of read connections.
//!
//! Safety, in [`guard`]: state-changing requests are POST only (the routes say so) and refused
//! when they come from another site (`Sec-Fetch-Site: cross-site`, or an `Origin` that is not the
//! `Host`). Without a UI token (loopback only), a request whose `Host` is not a loopback name or
//! the bound address is refused: a page of another site that rebinds its DNS name to 127.0.0.1
//! still sends its own name. When a UI token is set (always, when bound beyond loopback), every
//! request must carry it — as `Authorization: Bearer`, the cookie set by a first visit with
//! `?token=`, or `?token=`. Malformed requests get a 4xx with a JSON `{"error": ...}` in the
//! caller's language; internal failures are logged and answered with a generic 500.
//!
//! Shutdown: the event streams end when the dashboard's stop token is cancelled, so that axum's
//! graceful shutdown completes however many tabs are open.
//!
//! Modules: `api` (the JSON handlers and the live stream), `digest` (per-run aggregates for the
//! plots and the final report), `i18n` (languages and strings), `page` (the page and its assets),
//! `ops` (`/healthz`, `/readyz` outside the guard, `/metrics` behind it), `metrics` (the
//! Prometheus exposition of a node, also served by `serve --metrics`) and `join` (browser
//! workers: `/join` and its WebSocket, outside the guard: joining never grants control).

mod api;
mod api_types;
mod digest;
pub mod i18n;
pub mod join;
mod live;
pub mod metrics;
mod ops;
mod page;

pub use api::ApiDoc;

use crate::node::Node;
use crate::wire::secret::Secret;
use axum::extract::{Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use axum_extra::extract::cookie::CookieJar;
use i18n::{Lang, Message};
use std::net::{IpAddr, SocketAddr};
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
    /// The address the dashboard is bound to (a `Host` naming it is accepted).
    bound: Option<SocketAddr>,
    /// Cancelled when the dashboard stops: the event streams end.
    stop: CancellationToken,
    pages: Arc<page::Pages>,
    digests: Arc<digest::Digests>,
    openapi: Arc<String>,
    /// Where other machines join (`/join`), for the dashboard's join panel.
    join: Arc<join::JoinLink>,
}

/// How the dashboard is served.
#[derive(Debug, Clone, Default)]
pub struct WebOptions {
    /// The token every request must carry (`None`: loopback only, no token).
    pub token: Option<Secret>,
    /// The address the dashboard is bound to.
    pub bound: Option<SocketAddr>,
    /// Ends the event streams when cancelled.
    pub stop: CancellationToken,
}

/// An error as the API answers it: a status and a JSON body `{"error": message}`.
#[derive(Debug)]
pub enum AppError {
    /// The request was wrong: its message is shown to the caller, in its language.
    Client(StatusCode, Message),
    /// Something failed inside: logged, and the caller only learns that it failed.
    Internal(String),
}

impl AppError {
    pub fn internal(e: impl std::fmt::Display) -> AppError {
        AppError::Internal(e.to_string())
    }
}

/// An error response's message in both languages, for [`guard`] to answer in the caller's.
#[derive(Debug, Clone)]
struct Localised(StatusCode, Message);

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let (status, message) = match self {
            AppError::Client(status, message) => (status, message),
            AppError::Internal(detail) => {
                tracing::error!("dashboard request failed: {detail}");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    Message::new(i18n::INTERNAL_EN, i18n::INTERNAL_PT),
                )
            }
        };
        let mut response = error_response(status, &message.en);
        response.extensions_mut().insert(Localised(status, message));
        response
    }
}

impl From<crate::store::StoreError> for AppError {
    fn from(e: crate::store::StoreError) -> AppError {
        match e {
            crate::store::StoreError::NoSuchRun(id) => {
                AppError::Client(StatusCode::NOT_FOUND, Message::no_such_run(id))
            }
            other => AppError::internal(other),
        }
    }
}

impl From<crate::node::ControlError> for AppError {
    fn from(e: crate::node::ControlError) -> AppError {
        use crate::node::ControlError as C;
        let status = match e {
            C::NotRunning
            | C::TlsOnly
            | C::Bind { .. }
            | C::TooManyClients { .. }
            | C::StoreFailed => StatusCode::CONFLICT,
            C::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
            C::Store(_) | C::Coordinator(_) | C::Io(_) => return AppError::internal(e),
        };
        AppError::Client(status, Message::from(&e))
    }
}

/// The body of every error: `{"error": "one sentence"}`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// One sentence, in English or Portuguese by `Accept-Language` (or the `lang` cookie).
    pub error: String,
}

pub(crate) fn error_response(status: StatusCode, message: &str) -> Response {
    (
        status,
        Json(ErrorBody {
            error: message.to_string(),
        }),
    )
        .into_response()
}

/// The dashboard's router (the page, its assets, the API), with the safety checks; no token,
/// event streams that end only with their clients. See [`router_with`].
pub fn router(node: Node, token: Option<Secret>) -> Router {
    router_with(
        node,
        WebOptions {
            token,
            ..WebOptions::default()
        },
    )
}

/// The dashboard's router with its options.
pub fn router_with(node: Node, options: WebOptions) -> Router {
    build(node, options).0
}

fn build(node: Node, options: WebOptions) -> (Router, AppState) {
    let (api, openapi) = api::routes();
    let openapi = serde_json::to_string_pretty(&openapi).unwrap_or_else(|_| "{}".into());
    let join = join::join_link(
        node.options().public_url.as_deref(),
        options
            .bound
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0))),
        &join::interface_addresses(),
    );
    let state = AppState {
        join: Arc::new(join),
        digests: Arc::new(digest::Digests::new(node.reads())),
        node,
        token: options.token.map(Arc::new),
        bound: options.bound,
        stop: options.stop,
        pages: Arc::new(page::Pages::new()),
        openapi: Arc::new(openapi),
    };
    let scripts = page::SCRIPTS
        .into_iter()
        .fold(Router::new(), |router, (path, body)| {
            router.route(path, get(move || async move { page::script(body) }))
        });
    let router = Router::new()
        .route("/", get(page::index))
        .merge(scripts)
        .route("/assets/style.css", get(page::style_css))
        .route("/favicon.svg", get(page::favicon))
        .route("/favicon.ico", get(page::favicon))
        .route("/metrics", get(ops::metrics))
        .merge(api)
        .fallback(api::not_found)
        .method_not_allowed_fallback(api::method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(state.clone(), guard))
        .with_state(state.clone());
    // Probes carry no token: these two are outside the guard. So is joining as a worker: the
    // page holds no data, and its WebSocket authenticates like any worker.
    let probes = Router::new()
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .with_state(state.clone());
    (
        probes.merge(join::routes(state.clone())).merge(router),
        state,
    )
}

/// Binds the dashboard on `addr` and serves it until `stop` is cancelled. A UI token is required
/// when one is given, and generated when the address is not loopback. Returns the server task and
/// the URL to open (with the token, if any).
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
    let (app, state) = build(
        node,
        WebOptions {
            token,
            bound: Some(local),
            stop: stop.clone(),
        },
    );
    // The first view of a big stored run then costs no more than the next.
    let digests = state.digests.clone();
    tokio::spawn(async move { digests.warm(4).await });
    let task = tokio::spawn(async move {
        let served = axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
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
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| std::io::Error::other(e.to_string()))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

#[derive(serde::Deserialize)]
struct TokenQuery {
    token: Option<String>,
}

/// The safety checks in front of every route (see the module's documentation), and the
/// translation of error messages into the caller's language.
async fn guard(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let (lang, _) = Lang::choose(request.uri(), request.headers());
    let refuse = |status: StatusCode, message: Message| error_response(status, message.get(lang));
    let method = request.method().clone();
    let headers = request.headers();
    if state.token.is_none() {
        if let Some(host) = foreign_host(headers, state.bound) {
            tracing::warn!(
                "refused {method} {} for Host {host} (not this dashboard's name)",
                request.uri().path()
            );
            return refuse(StatusCode::FORBIDDEN, Message::foreign_host(&host));
        }
    }
    if !matches!(method, Method::GET | Method::HEAD | Method::OPTIONS) {
        if let Some(why) = cross_site(headers) {
            tracing::warn!(
                "refused a cross-site {method} {}: {}",
                request.uri().path(),
                why.en
            );
            return refuse(
                StatusCode::FORBIDDEN,
                Message::new(
                    format!("cross-site request refused: {}", why.en),
                    format!("pedido de outro site recusado: {}", why.pt),
                ),
            );
        }
    }
    let mut set_cookie = None;
    if let Some(expected) = &state.token {
        let query_token = Query::<TokenQuery>::try_from_uri(request.uri())
            .ok()
            .and_then(|Query(q)| q.token)
            .filter(|t| expected.matches(t.as_bytes()));
        let jar = CookieJar::from_headers(headers);
        let header_ok = bearer(headers).is_some_and(|t| expected.matches(t.as_bytes()))
            || jar
                .get(TOKEN_COOKIE)
                .is_some_and(|c| expected.matches(c.value().as_bytes()));
        if query_token.is_some() && !header_ok {
            set_cookie = HeaderValue::from_str(&format!(
                "{TOKEN_COOKIE}={}; Path=/; HttpOnly; SameSite=Strict",
                expected.expose()
            ))
            .ok();
        }
        if !header_ok && query_token.is_none() {
            return refuse(StatusCode::UNAUTHORIZED, Message::token_required());
        }
    }
    let mut response = next.run(request).await;
    if lang == Lang::PtBr {
        if let Some(Localised(status, message)) = response.extensions().get::<Localised>().cloned()
        {
            response = error_response(status, &message.pt);
        }
    }
    if let Some(cookie) = set_cookie {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    harden(response.headers_mut());
    response
}

/// The headers every response of the dashboard's server carries: no type sniffing, no framing,
/// no referrer (a URL with `?token=` must not leak).
fn harden(h: &mut HeaderMap) {
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    h.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
}

/// The `Host` of a request when it names neither a loopback host nor the bound address (a
/// request without `Host` comes from no browser and passes).
fn foreign_host(headers: &HeaderMap, bound: Option<SocketAddr>) -> Option<String> {
    let host = headers.get(header::HOST)?;
    let Ok(host) = host.to_str() else {
        return Some("(unreadable)".into());
    };
    let name = host_name(host);
    let loopback_name =
        name.eq_ignore_ascii_case("localhost") || name.to_ascii_lowercase().ends_with(".localhost");
    let ip = name
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
        .ok();
    let allowed = loopback_name
        || ip.is_some_and(|ip| ip.is_loopback() || bound.is_some_and(|b| b.ip() == ip));
    (!allowed).then(|| host.to_string())
}

/// The name part of a `Host` value (without the port).
fn host_name(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        // [v6]:port
        return rest.split(']').next().unwrap_or("");
    }
    host.rsplit_once(':').map_or(host, |(name, _)| name)
}

/// Why a state-changing request is cross-site, or `None` if it is not.
fn cross_site(headers: &HeaderMap) -> Option<Message> {
    let text = |name: header::HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
    if headers
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("cross-site"))
    {
        return Some(Message::cross_site_fetch());
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let Some(origin) = origin.to_str().ok() else {
            return Some(Message::unreadable_origin());
        };
        let origin_host = origin
            .split_once("://")
            .map(|(_, rest)| rest.trim_end_matches('/'))
            .unwrap_or("");
        let host = text(header::HOST).unwrap_or("");
        if origin_host.is_empty() || !origin_host.eq_ignore_ascii_case(host) {
            return Some(Message::foreign_origin(origin));
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
    fn hosts_of_a_loopback_dashboard() {
        let bound: SocketAddr = "127.0.0.2:8080".parse().unwrap();
        let check = |host: &'static str| {
            let mut h = HeaderMap::new();
            h.insert(header::HOST, HeaderValue::from_static(host));
            foreign_host(&h, Some(bound))
        };
        for ok in [
            "127.0.0.1:8080",
            "127.0.0.2:8080",
            "localhost:8080",
            "LOCALHOST",
            "app.localhost:1",
            "[::1]:8080",
        ] {
            assert_eq!(check(ok), None, "{ok}");
        }
        for bad in [
            "evil.example:8080",
            "evil.example",
            "10.0.0.1:8080",
            "localhost.evil.example",
        ] {
            assert!(check(bad).is_some(), "{bad}");
        }
        assert_eq!(foreign_host(&HeaderMap::new(), None), None);
    }

    #[test]
    fn urls() {
        let a: SocketAddr = "0.0.0.0:8080".parse().unwrap();
        assert_eq!(dashboard_url(a, None), "http://127.0.0.1:8080/");
        let t = Secret::new("abc");
        let a: SocketAddr = "10.0.0.1:80".parse().unwrap();
        assert_eq!(dashboard_url(a, Some(&t)), "http://10.0.0.1:80/?token=abc");
        let token = generate_token().unwrap();
        assert_eq!(token.len(), 32);
        assert_ne!(token, generate_token().unwrap());
    }
}
