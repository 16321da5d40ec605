//! A protocol v1 session: one task per connection.
//!
//! A session owns its socket and nothing else. It enforces the limits (line length, handshake and
//! idle timeouts), decodes messages, verifies results (`job::verify`, here, on whichever
//! core runs the task), forwards events to the coordinator and writes the coordinator's answers
//! back. A broken or hostile peer only ever ends its own session; the server goes on.

use super::limits::{for_log, printable, ServerConfig, OUTBOX_CAPACITY};
use super::tls::TLS_HANDSHAKE_RECORD;
use crate::coordinator::{CoordinatorHandle, Event, Input, Joining, WorkerKind};
use crate::job::verify::check_result_with;
use crate::report::now_iso8601;
use crate::wire::line::{read_line, LineError};
use crate::wire::{self, ClientMessage, ErrorCode, ServerMessage, MAX_LINE, PROTOCOL_VERSION};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::{sleep_until, timeout, timeout_at, Instant};
use tokio_util::sync::CancellationToken;

/// Read buffer per connection: small, because idle connections are many and lines are short
/// (a longer line is still read whole, up to the line limit, into its own growing buffer).
const READ_BUFFER: usize = 2048;
/// How long a session may take to write one batch of messages before it is considered stuck.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// After the coordinator says `done`, how long the session waits for the worker to leave.
const GOODBYE_GRACE: Duration = Duration::from_secs(5);

/// One accepted connection, in its own task: tells TLS from plaintext by the first byte, runs the
/// TLS handshake if the server has TLS, then the session. Everything up to the `hello` must be done
/// by `deadline` (the handshake timeout after accepting).
pub(super) async fn serve_connection(
    mut stream: TcpStream,
    peer: SocketAddr,
    coordinator: CoordinatorHandle,
    config: &ServerConfig,
    shutdown: CancellationToken,
) {
    let deadline = Instant::now() + config.handshake_timeout;
    let mut first = [0u8; 1];
    let peeked = tokio::select! {
        _ = shutdown.cancelled() => return,
        r = timeout_at(deadline, stream.peek(&mut first)) => r,
    };
    match peeked {
        Err(_) => {
            tracing::info!(%peer, "handshake timeout: nothing received");
            if config.tls.is_none() {
                refuse(
                    &mut stream,
                    ErrorCode::HandshakeTimeout,
                    "no hello within the handshake timeout",
                )
                .await;
            }
            return;
        }
        Ok(Ok(0)) | Ok(Err(_)) => return,
        Ok(Ok(_)) => {}
    }
    let tls_hello = first[0] == TLS_HANDSHAKE_RECORD;
    match (&config.tls, tls_hello) {
        (None, false) => {
            let (read, write) = stream.into_split();
            run_session_until(read, write, peer, coordinator, config, shutdown, deadline).await;
        }
        (None, true) => {
            // A JSON error line would only confuse a TLS client: close, and say why in the log.
            tracing::warn!(%peer, "a TLS client connected, but this server does not serve TLS (no --tls-cert); closing");
            close_draining(stream).await;
        }
        (Some(_), false) => {
            tracing::warn!(%peer, "a plaintext client connected, but this server serves TLS only; closing");
            refuse(
                &mut stream,
                ErrorCode::TlsRequired,
                "this server accepts TLS connections only (piswarm worker --tls-ca CA.pem)",
            )
            .await;
            close_draining(stream).await;
        }
        (Some(tls), true) => {
            let handshake = tokio::select! {
                _ = shutdown.cancelled() => return,
                r = timeout_at(deadline, tls.acceptor().accept(stream)) => r,
            };
            match handshake {
                Ok(Ok(tls_stream)) => {
                    let (read, write) = tokio::io::split(tls_stream);
                    run_session_until(read, write, peer, coordinator, config, shutdown, deadline)
                        .await;
                }
                Ok(Err(e)) => tracing::warn!(%peer, "TLS handshake failed: {e}"),
                Err(_) => tracing::info!(%peer, "handshake timeout during the TLS handshake"),
            }
        }
    }
}

/// Runs one session to its end: handshake, then messages both ways. The `hello` must arrive
/// within the handshake timeout.
pub async fn run_session<R, W>(
    read: R,
    write: W,
    peer: SocketAddr,
    coordinator: CoordinatorHandle,
    config: &ServerConfig,
    shutdown: CancellationToken,
) where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let deadline = Instant::now() + config.handshake_timeout;
    run_session_until(read, write, peer, coordinator, config, shutdown, deadline).await;
}

/// [`run_session`], with the `hello` due by `handshake_deadline`.
async fn run_session_until<R, W>(
    read: R,
    mut write: W,
    peer: SocketAddr,
    coordinator: CoordinatorHandle,
    config: &ServerConfig,
    shutdown: CancellationToken,
    handshake_deadline: Instant,
) where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut reader = BufReader::with_capacity(READ_BUFFER, read);
    let mut line = Vec::new();
    let mut complete = false;
    let mut out = Vec::new();

    // Handshake: one complete hello line by the deadline. Bytes trickling in do not extend it.
    let first = tokio::select! {
        _ = shutdown.cancelled() => return,
        r = timeout_at(handshake_deadline, read_line(&mut reader, &mut line, &mut complete, MAX_LINE)) => r,
    };
    let hello = match first {
        Err(_) => {
            tracing::info!(%peer, "handshake timeout");
            return refuse(
                &mut write,
                ErrorCode::HandshakeTimeout,
                "no hello within the handshake timeout",
            )
            .await;
        }
        Ok(Ok(true)) => wire::decode_client(&line),
        Ok(Ok(false)) | Ok(Err(LineError::Truncated)) | Ok(Err(LineError::Io(_))) => return,
        Ok(Err(LineError::TooLong(max))) => {
            tracing::warn!(%peer, "line too long during handshake");
            return refuse(
                &mut write,
                ErrorCode::LineTooLong,
                &format!("lines are limited to {max} bytes"),
            )
            .await;
        }
    };
    let (name, token, agent) = match hello {
        Ok(ClientMessage::Hello {
            version,
            worker,
            token,
            agent,
        }) => {
            if version != PROTOCOL_VERSION {
                tracing::warn!(%peer, version, "unsupported protocol version");
                let msg = format!("protocol version {version} is not supported; this server speaks {PROTOCOL_VERSION}");
                return refuse(&mut write, ErrorCode::UnsupportedVersion, &msg).await;
            }
            (worker, token, agent)
        }
        Ok(_) => {
            tracing::warn!(%peer, "message before hello");
            return refuse(
                &mut write,
                ErrorCode::OutOfOrder,
                "the first message must be a hello",
            )
            .await;
        }
        Err(e) => {
            tracing::warn!(%peer, "bad hello: {}", for_log(&e.message));
            return refuse(&mut write, e.code, &e.message).await;
        }
    };
    if let Some(expected) = &config.token {
        let given = token.as_ref().map_or(&b""[..], |t| t.expose().as_bytes());
        if !expected.matches(given) {
            // Neither token is logged, not even the wrong one (it may be a near miss).
            let why = if token.is_some() {
                "wrong token"
            } else {
                "no token"
            };
            tracing::warn!(%peer, worker = %printable(&name), "unauthorized: {why}");
            return refuse(
                &mut write,
                ErrorCode::Unauthorized,
                "missing or wrong token (give the coordinator's token with --token or PISWARM_TOKEN)",
            )
            .await;
        }
    }
    let name = printable(&name);
    let (kind, agent) = client_kind(agent.as_deref());
    // The coordinator answers on the outbox: a welcome (then work), or an error and a close.
    let (outbox, mut inbox) = mpsc::channel(OUTBOX_CAPACITY);
    let session = coordinator.new_session();
    let join = Event::Join {
        joining: Joining {
            session,
            name: name.clone(),
            peer: peer.to_string(),
            kind,
            agent,
        },
        outbox,
    };
    if coordinator.send(join).await.is_err() {
        return refuse(
            &mut write,
            ErrorCode::Internal,
            "the server is shutting down",
        )
        .await;
    }

    let (job, kernel) = (coordinator.job(), coordinator.kernel());
    let mut idle_deadline = Instant::now() + config.idle_timeout;
    let mut goodbye_deadline: Option<Instant> = None;
    let mut protocol_errors = 0;
    let end = loop {
        let deadline = goodbye_deadline.map_or(idle_deadline, |g| g.min(idle_deadline));
        tokio::select! {
            biased;
            msg = inbox.recv() => {
                let mut close = false;
                let mut next = msg;
                // Batch everything already queued into one write.
                loop {
                    match next {
                        Some(m) => {
                            if matches!(m, ServerMessage::Done { .. }) {
                                goodbye_deadline = Some(Instant::now() + GOODBYE_GRACE);
                            }
                            if let ServerMessage::Error { code, message, id } = &m {
                                match id {
                                    Some(id) => tracing::warn!(%peer, worker = %name, ?code, interval = id.0, "rejected result: {message}"),
                                    None => tracing::warn!(%peer, worker = %name, ?code, "{message}"),
                                }
                            }
                            wire::encode(&m, &mut out);
                        }
                        None => { close = true; break; }
                    }
                    match inbox.try_recv() {
                        Ok(m) => next = Some(m),
                        Err(_) => break,
                    }
                }
                if timeout(WRITE_TIMEOUT, write.write_all(&out)).await.map_or(true, |r| r.is_err()) {
                    break "write failed or timed out";
                }
                out.clear();
                if close {
                    break "closed by the coordinator";
                }
            }
            r = read_line(&mut reader, &mut line, &mut complete, MAX_LINE) => {
                match r {
                    Ok(true) => {}
                    Ok(false) => break "peer closed the connection",
                    Err(LineError::TooLong(max)) => {
                        tracing::warn!(%peer, worker = %name, "line too long");
                        send_now(&mut write, ServerMessage::error(ErrorCode::LineTooLong, format!("lines are limited to {max} bytes"))).await;
                        break "line too long";
                    }
                    Err(LineError::Truncated) => break "connection cut mid-line",
                    Err(LineError::Io(_)) => break "read error",
                }
                // Only a complete line proves the peer alive: bytes of an unfinished line (a client
                // trickling one byte a second) do not move the idle deadline.
                idle_deadline = Instant::now() + config.idle_timeout;
                match wire::decode_client(&line) {
                    Ok(ClientMessage::Request { count }) => {
                        if coordinator.send(Event::Input(Input::Request { session, count })).await.is_err() { break "coordinator gone"; }
                    }
                    Ok(ClientMessage::Result(result)) => {
                        let verdict = config.metrics.time_verify(|| check_result_with(&job, kernel, &result, config.tolerance));
                        let event = Event::Input(Input::Result { session, result, verdict, received_at: now_iso8601() });
                        if coordinator.send(event).await.is_err() { break "coordinator gone"; }
                    }
                    Ok(ClientMessage::Heartbeat {}) => {}
                    Ok(ClientMessage::Bye {}) => break "worker said bye",
                    Ok(ClientMessage::Hello { .. }) => {
                        protocol_errors += 1;
                        tracing::warn!(%peer, worker = %name, "out of order: hello was already received");
                        wire::encode(&ServerMessage::error(ErrorCode::OutOfOrder, "hello was already received"), &mut out);
                    }
                    Err(e) => {
                        protocol_errors += 1;
                        tracing::warn!(%peer, worker = %name, code = ?e.code, "bad message: {}", for_log(&e.message));
                        wire::encode(&ServerMessage::error(e.code, e.message), &mut out);
                    }
                }
                if !out.is_empty() {
                    if protocol_errors >= config.max_protocol_errors {
                        tracing::warn!(%peer, worker = %name, "too many bad messages ({protocol_errors}); closing");
                        wire::encode(&ServerMessage::error(ErrorCode::BadMessage, "too many bad messages; closing"), &mut out);
                    }
                    if timeout(WRITE_TIMEOUT, write.write_all(&out)).await.map_or(true, |r| r.is_err()) {
                        break "write failed or timed out";
                    }
                    out.clear();
                    if protocol_errors >= config.max_protocol_errors {
                        break "too many bad messages";
                    }
                }
            }
            _ = sleep_until(deadline) => {
                if goodbye_deadline.is_some_and(|g| g <= Instant::now()) {
                    break "worker did not leave after done";
                }
                tracing::info!(%peer, worker = %name, "idle timeout");
                send_now(&mut write, ServerMessage::error(ErrorCode::IdleTimeout, "nothing received within the idle timeout")).await;
                break "idle timeout";
            }
        }
    };
    tracing::debug!(%peer, worker = %name, "session ended: {end}");
    let _ = coordinator
        .send(Event::Input(Input::Leave { session }))
        .await;
    let _ = write.shutdown().await;
    // What the peer still sends is read and dropped for a moment: closing with unread input
    // makes the kernel answer with a reset, which can destroy our last lines (a `done`, an
    // error) before the peer reads them.
    // (Reused from the line buffer: an array here would sit in every idle session's state.)
    line.clear();
    line.resize(4096, 0);
    let mut budget = 64 * 1024usize;
    let _ = timeout(Duration::from_secs(1), async {
        while budget > 0 {
            match reader.read(&mut line).await {
                Ok(0) | Err(_) => break,
                Ok(n) => budget = budget.saturating_sub(n),
            }
        }
    })
    .await;
}

/// What a client is, from its `hello.agent`: its kind, and what the worker table shows of it
/// (the browser's short name for `browser/…`, the version for `piswarm/…`; printable, at most
/// [`AGENT_MAX`] characters, empty when it said nothing).
fn client_kind(agent: Option<&str>) -> (WorkerKind, String) {
    let shown = |s: &str| -> String {
        let s: String = s.chars().take(AGENT_MAX).collect();
        if s.trim().is_empty() {
            String::new()
        } else {
            printable(&s)
        }
    };
    match agent {
        Some(a) if a.starts_with("piswarm/") => (WorkerKind::Piswarm, shown(a)),
        Some(a) if a.starts_with("browser/") => {
            (WorkerKind::Browser, shown(&a["browser/".len()..]))
        }
        Some(a) => (WorkerKind::Other, shown(a)),
        None => (WorkerKind::Other, String::new()),
    }
}

/// The longest agent description the worker table shows.
const AGENT_MAX: usize = 40;

/// Ends a connection whose peer has sent bytes that were not read (it is still talking): our side
/// is already shut down or is now (FIN), then what the peer sends is read and dropped for a moment
/// (at most 1 s and 64 KiB). Closing with unread input would make the kernel answer with a reset,
/// which can destroy the error just written before the peer reads it.
async fn close_draining(mut stream: TcpStream) {
    let _ = stream.shutdown().await;
    let mut buf = [0u8; 4096];
    let mut budget = 64 * 1024usize;
    let _ = timeout(Duration::from_secs(1), async {
        while budget > 0 {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => budget = budget.saturating_sub(n),
            }
        }
    })
    .await;
}

async fn send_now<W: AsyncWrite + Unpin>(write: &mut W, msg: ServerMessage) {
    let mut buf = Vec::new();
    wire::encode(&msg, &mut buf);
    let _ = timeout(Duration::from_secs(1), write.write_all(&buf)).await;
}

async fn refuse<W: AsyncWrite + Unpin>(write: &mut W, code: ErrorCode, message: &str) {
    send_now(write, ServerMessage::error(code, message)).await;
    let _ = write.shutdown().await;
}
