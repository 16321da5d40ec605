//! Browser workers: the `/join` page, its scripts, and protocol v1 over a WebSocket.
//!
//! A phone or a laptop opens `/join` (from the link or the QR code the dashboard shows), and the
//! page computes intervals in Web Workers with `kernel.js` — bit-identical to the Rust kernel.
//! It talks to the coordinator over `GET /join/ws`: protocol v1 unchanged, one JSON message per
//! WebSocket text message. A browser session is a worker session like any other: the same
//! [`session`](crate::net::session) code runs it (handshake, token, prefetch, leases, heartbeats,
//! verification, strikes, idle timeout), admitted through the running server's
//! [`Gate`](crate::net::Gate), so it takes a place in the same connection budget.
//!
//! What is here: the routes outside the dashboard's token (a join link never carries the UI
//! token, and never grants control: everything under `/api` still requires it), the bridge
//! between WebSocket messages and the session's lines, and the join link itself: which address
//! other machines can reach ([`join_link`]), and its QR code as SVG.
//!
//! The worker token, when the server has one, travels in the link's fragment (`#token=…`), which
//! browsers never send in requests; the page puts it in its `hello`, like any worker.

use super::{page, AppState};
use crate::metrics::ConnectionKind;
use crate::net::session::run_session;
use crate::net::Gate;
use crate::wire::{self, ErrorCode, ServerMessage, MAX_LINE};
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

const JOIN_JS: &str = include_str!("assets/join.js");
const JOIN_WORKER_JS: &str = include_str!("assets/join-worker.js");
const JOIN_CSS: &str = include_str!("assets/join.css");
const KERNEL_JS: &str = include_str!("assets/kernel.js");

/// The largest WebSocket message (and frame) accepted: twice the protocol's line limit, so that a
/// message just over the limit still gets the protocol's `line_too_long`; a larger one is refused
/// by the WebSocket layer (close code 1009) before it is buffered.
pub const MAX_WS_MESSAGE: usize = 2 * MAX_LINE;

/// How long one message may take to reach a browser that does not read (as a TCP session's
/// write timeout).
const SEND_TIMEOUT: Duration = Duration::from_secs(30);

/// The path of the WebSocket endpoint.
pub const WS_PATH: &str = "/join/ws";

/// The routes of browser workers. They are served outside the dashboard's token check: the page
/// and its scripts are public (they hold no data), and the WebSocket authenticates like any
/// worker, with the worker token in its `hello`.
pub fn routes(state: AppState) -> Router {
    Router::new()
        .route("/join", get(page::join))
        .route("/join/join.js", get(|| asset("text/javascript", JOIN_JS)))
        .route(
            "/join/worker.js",
            get(|| asset("text/javascript", JOIN_WORKER_JS)),
        )
        .route(
            "/join/kernel.js",
            get(|| asset("text/javascript", KERNEL_JS)),
        )
        .route("/join/join.css", get(|| asset("text/css", JOIN_CSS)))
        .route("/join/favicon.svg", get(page::favicon))
        .route(WS_PATH, get(websocket))
        .layer(axum::middleware::map_response(
            |mut response: Response| async move {
                super::harden(response.headers_mut());
                response
            },
        ))
        .with_state(state)
}

/// A script or style of the page, revalidated on every visit (a phone keeps its cache for long,
/// and an old join.js against a new server would be a puzzle).
async fn asset(kind: &'static str, body: &'static str) -> Response {
    let mut response = page::asset(kind, body);
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("no-cache"),
    );
    response
}

/// `GET /join/ws`: protocol v1 over a WebSocket, admitted like a TCP connection.
async fn websocket(
    State(state): State<AppState>,
    upgrade: WebSocketUpgrade,
    headers: HeaderMap,
    request: Request,
) -> Response {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0)
        .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)));
    // A page of another site may not make its visitors' browsers work for this server.
    if let Some(why) = super::cross_site(&headers) {
        if !state.join.origin_allowed(&headers) {
            tracing::warn!(%peer, "refused a WebSocket from another site: {}", why.en);
            return super::error_response(
                StatusCode::FORBIDDEN,
                &format!("cross-site WebSocket refused: {}", why.en),
            );
        }
    }
    let upgrade = upgrade
        .max_message_size(MAX_WS_MESSAGE)
        .max_frame_size(MAX_WS_MESSAGE);
    let gate = state.node.gate();
    upgrade.on_upgrade(move |socket| async move {
        // Refusals go on the wire as protocol errors, where the page can show them.
        let Some(gate) = gate else {
            refuse(
                socket,
                ErrorCode::Internal,
                "the server is stopped; try again when it is started",
            )
            .await;
            return;
        };
        let Some(admission) = gate.admit(ConnectionKind::WebSocket) else {
            tracing::warn!(%peer, "refused a WebSocket: the server holds its maximum of {} connections", gate.config.max_connections);
            refuse(
                socket,
                ErrorCode::TooManyConnections,
                "the server is full; try again later",
            )
            .await;
            return;
        };
        // Stopping the server waits for this session like for any other.
        let _tracked = gate.sessions.token();
        bridge(socket, peer, &gate).await;
        drop(admission);
    })
}

/// Sends one protocol error and closes.
async fn refuse(mut socket: WebSocket, code: ErrorCode, message: &str) {
    let mut line = Vec::new();
    wire::encode(&ServerMessage::error(code, message), &mut line);
    let text = String::from_utf8_lossy(line.trim_ascii_end()).into_owned();
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let _ = socket.send(Message::Text(text.into())).await;
        let _ = socket.send(Message::Close(None)).await;
    })
    .await;
}

/// Runs a protocol v1 session over `socket`: each text message becomes one line of the session's
/// input, each line the session writes becomes one text message. The session enforces every
/// limit (handshake and idle timeouts, line length, protocol errors) exactly as on TCP.
async fn bridge(mut socket: WebSocket, peer: SocketAddr, gate: &Gate) {
    // The session's side and ours, joined by an in-memory pipe as big as two lines: a session
    // that does not read stops this loop from reading the socket (back-pressure, no queue).
    let (session_side, our_side) = tokio::io::duplex(2 * MAX_LINE + 2);
    let (session_read, session_write) = tokio::io::split(session_side);
    let session = run_session(
        session_read,
        session_write,
        peer,
        gate.coordinator.clone(),
        &gate.config,
        gate.shutdown.clone(),
    );
    let pump = async {
        let (from_session, mut to_session) = tokio::io::split(our_side);
        let mut from_session = BufReader::new(from_session);
        let mut line = Vec::new();
        let mut input_open = true;
        loop {
            tokio::select! {
                // Cancel-safe: a partial line stays in `line` for the next turn.
                read = from_session.read_until(b'\n', &mut line) => {
                    match read {
                        Ok(0) | Err(_) => break,
                        Ok(_) if line.last() != Some(&b'\n') => break,
                        Ok(_) => {}
                    }
                    line.pop();
                    let text = String::from_utf8_lossy(&line).into_owned();
                    line.clear();
                    // A browser that stops reading is given up after the session's own write
                    // timeout: this task never waits on it for ever.
                    let sent = tokio::time::timeout(SEND_TIMEOUT, socket.send(Message::Text(text.into()))).await;
                    if !matches!(sent, Ok(Ok(()))) {
                        break;
                    }
                }
                message = socket.recv(), if input_open => {
                    let bytes = match message {
                        Some(Ok(Message::Text(text))) => text.as_str().as_bytes().to_vec(),
                        // Protocol v1 is text; the session answers a binary message like any
                        // line that is not JSON.
                        Some(Ok(Message::Binary(data))) => data.to_vec(),
                        Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                        Some(Ok(Message::Close(_))) | None | Some(Err(_)) => {
                            // The peer is gone: the session sees the end of its input.
                            input_open = false;
                            let _ = to_session.shutdown().await;
                            continue;
                        }
                    };
                    if to_session.write_all(&one_line(bytes)).await.is_err() {
                        break;
                    }
                }
            }
        }
        let _ =
            tokio::time::timeout(Duration::from_secs(1), socket.send(Message::Close(None))).await;
    };
    tokio::join!(session, pump);
}

/// One WebSocket message as one line: a JSON text has no raw line breaks inside its strings, so
/// replacing them by spaces keeps a pretty-printed message valid and one message one line.
fn one_line(mut bytes: Vec<u8>) -> Vec<u8> {
    for b in bytes.iter_mut() {
        if *b == b'\n' || *b == b'\r' {
            *b = b' ';
        }
    }
    bytes.push(b'\n');
    bytes
}

/// The address other machines use to join, as the dashboard shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinLink {
    /// The dashboard's base URL, without a trailing slash (`http://192.168.1.20:8080`).
    pub base: String,
    /// Other machines can reach it (not a loopback address).
    pub reachable: bool,
    /// Allowed `Origin` for the WebSocket besides the request's own `Host` (the public URL's).
    public_origin: Option<String>,
}

impl JoinLink {
    /// The link to `/join`, with the worker token in its fragment when there is one.
    pub fn url(&self, worker_token: Option<&str>) -> String {
        match worker_token {
            Some(t) => format!("{}/join#token={}", self.base, fragment_escape(t)),
            None => format!("{}/join", self.base),
        }
    }

    fn origin_allowed(&self, headers: &HeaderMap) -> bool {
        let origin = headers
            .get(header::ORIGIN)
            .and_then(|o| o.to_str().ok())
            .map(|o| o.trim_end_matches('/').to_ascii_lowercase());
        match (&self.public_origin, origin) {
            (Some(allowed), Some(origin)) => *allowed == origin,
            _ => false,
        }
    }
}

/// A token in a URL fragment: unreserved characters as they are, anything else percent-encoded.
fn fragment_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The join link for a dashboard bound to `bound`: `public_url` when given; else the bound
/// address; else, for an address that listens on every interface (`0.0.0.0`, `::`), the first
/// of `interfaces` that other machines can use (a private IPv4 address first, then any other
/// non-loopback IPv4, then a global IPv6). A loopback address gives a link only this machine can
/// open (`reachable: false`).
pub fn join_link(public_url: Option<&str>, bound: SocketAddr, interfaces: &[IpAddr]) -> JoinLink {
    if let Some(url) = public_url {
        let base = url.trim_end_matches('/').to_string();
        return JoinLink {
            public_origin: Some(origin_of(&base).to_ascii_lowercase()),
            base,
            reachable: true,
        };
    }
    let port = bound.port();
    let host = |ip: IpAddr| match ip {
        IpAddr::V4(v4) => format!("http://{v4}:{port}"),
        IpAddr::V6(v6) => format!("http://[{v6}]:{port}"),
    };
    let ip = bound.ip();
    if ip.is_unspecified() {
        let v4 = |private: bool| {
            interfaces.iter().copied().find(|a| match a {
                IpAddr::V4(v4) => {
                    !v4.is_loopback()
                        && !v4.is_unspecified()
                        && !v4.is_link_local()
                        && v4.is_private() == private
                }
                IpAddr::V6(_) => false,
            })
        };
        let v6 = interfaces.iter().copied().find(|a| match a {
            IpAddr::V6(v6) => {
                !v6.is_loopback() && !v6.is_unspecified() && (v6.segments()[0] & 0xffc0) != 0xfe80
            }
            IpAddr::V4(_) => false,
        });
        return match v4(true).or_else(|| v4(false)).or(v6) {
            Some(a) => JoinLink {
                base: host(a),
                reachable: true,
                public_origin: None,
            },
            None => JoinLink {
                base: host(IpAddr::from([127, 0, 0, 1])),
                reachable: false,
                public_origin: None,
            },
        };
    }
    JoinLink {
        base: host(ip),
        reachable: !ip.is_loopback(),
        public_origin: None,
    }
}

/// `scheme://host[:port]` of a URL.
fn origin_of(url: &str) -> &str {
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    match url[after_scheme..].find('/') {
        Some(i) => &url[..after_scheme + i],
        None => url,
    }
}

/// The addresses of this machine's network interfaces (empty if they cannot be listed).
pub fn interface_addresses() -> Vec<IpAddr> {
    if_addrs::get_if_addrs()
        .map(|list| list.into_iter().map(|i| i.ip()).collect())
        .unwrap_or_default()
}

/// `--public-url`: an `http://` or `https://` URL with a host, and neither query nor fragment
/// (the join page's path is added to it). A trailing `/` is dropped.
pub fn parse_public_url(s: &str) -> Result<String, String> {
    let s = s.trim();
    let rest = s
        .strip_prefix("http://")
        .or_else(|| s.strip_prefix("https://"))
        .ok_or_else(|| format!("{s}: the public URL must start with http:// or https://"))?;
    let host = rest.split('/').next().unwrap_or("");
    if host.is_empty() || host.starts_with(':') {
        return Err(format!("{s}: the public URL names no host"));
    }
    if s.contains(['?', '#']) || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "{s}: the public URL may not have a query, a fragment or spaces"
        ));
    }
    Ok(s.trim_end_matches('/').to_string())
}

/// The join link's QR code, as an SVG document (dark modules on white, with the quiet zone).
pub fn qr_svg(text: &str) -> Result<String, qrcode::types::QrError> {
    let code = qrcode::QrCode::with_error_correction_level(text, qrcode::EcLevel::M)?;
    Ok(code
        .render::<qrcode::render::svg::Color<'_>>()
        .min_dimensions(240, 240)
        .dark_color(qrcode::render::svg::Color("#000000"))
        .light_color(qrcode::render::svg::Color("#ffffff"))
        .quiet_zone(true)
        .build())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn the_link_names_an_address_others_can_reach() {
        let ifs: Vec<IpAddr> = ["127.0.0.1", "169.254.3.4", "203.0.113.9", "192.168.1.20"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        let l = join_link(None, addr("0.0.0.0:8080"), &ifs);
        assert_eq!(l.base, "http://192.168.1.20:8080");
        assert!(l.reachable);
        let l = join_link(None, addr("0.0.0.0:8080"), &ifs[..3]);
        assert_eq!(l.base, "http://203.0.113.9:8080");
        let v6: Vec<IpAddr> = vec![
            "::1".parse().unwrap(),
            "fe80::1".parse().unwrap(),
            "2001:db8::5".parse().unwrap(),
        ];
        let l = join_link(None, addr("[::]:8080"), &v6);
        assert_eq!(l.base, "http://[2001:db8::5]:8080");
        let l = join_link(None, addr("0.0.0.0:8080"), &ifs[..1]);
        assert!(!l.reachable);
        let l = join_link(None, addr("127.0.0.1:8080"), &ifs);
        assert_eq!(
            (l.base.as_str(), l.reachable),
            ("http://127.0.0.1:8080", false)
        );
        let l = join_link(None, addr("10.1.2.3:80"), &ifs);
        assert_eq!((l.base.as_str(), l.reachable), ("http://10.1.2.3:80", true));
        let l = join_link(
            Some("https://pi.example.org/swarm/"),
            addr("127.0.0.1:8080"),
            &ifs,
        );
        assert_eq!(l.url(None), "https://pi.example.org/swarm/join");
        assert_eq!(l.public_origin.as_deref(), Some("https://pi.example.org"));
        assert_eq!(
            l.url(Some("s3cr3t+/=")),
            "https://pi.example.org/swarm/join#token=s3cr3t%2B%2F%3D"
        );
    }

    #[test]
    fn public_urls() {
        assert_eq!(
            parse_public_url("https://pi.example.org/").unwrap(),
            "https://pi.example.org"
        );
        assert_eq!(
            parse_public_url("http://203.0.113.7:8080").unwrap(),
            "http://203.0.113.7:8080"
        );
        for bad in [
            "pi.example.org",
            "ftp://x",
            "http://",
            "http://:80",
            "http://x/?a=1",
            "http://x/#t",
            "http://a b",
        ] {
            assert!(parse_public_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn messages_become_lines() {
        assert_eq!(
            one_line(b"{\"type\":\n\"bye\"}\r".to_vec()),
            b"{\"type\": \"bye\"} \n"
        );
    }

    #[test]
    fn the_qr_code_is_an_svg_of_the_link() {
        let svg = qr_svg("http://192.168.1.20:8080/join#token=abc").unwrap();
        assert!(svg.starts_with("<?xml") && svg.contains("<svg") && svg.contains("#000000"));
    }
}
