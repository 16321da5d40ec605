//! The original system's wire format, on a listener of its own, so that the original's Python
//! clients work unchanged against piswarm.
//!
//! # The format
//! A frame is a 256-byte header holding the body's length in ASCII decimal digits, padded on the
//! right with spaces, then the UTF-8 body. On connect the server sends the interval, `[a, b]`; the
//! client answers `[R]<evens>,<odds>,<pi>` and then `!DESCONECTADO`, to which the server answers
//! with the raw bytes `msg recebida corretamente` (no header) and closes. docs/legacy-protocol.md
//! is the specification for people.
//!
//! # What this module owns
//! The pure framing ([`decode_header`], [`encode_frame`], [`parse_client_body`]), the frame reader
//! ([`read_frame`]), and the legacy sessions: each one joins the coordinator as the worker
//! `legacy@<peer address>`, asks for exactly one interval, verifies the answer with
//! [`check_result`] like any native result, and always leaves, so that whatever it still holds goes
//! back to the queue. A legacy session never changes the coordinator's rules: it is one more
//! worker. The format has no error messages, so a bad frame is logged and the connection closed;
//! and its `!ENCERRAR` (stop the server) is never obeyed, since nothing authenticates it.

use crate::coordinator::{CoordinatorHandle, Event, Outbound, SessionId};
use crate::job::IntervalId;
use crate::protocol::{Dec, ServerMessage, WorkResult};
use crate::server::ServerConfig;
use crate::verify::check_result;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{
    AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader,
};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio::time::{sleep_until, timeout, timeout_at, Instant};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Length of every frame's header.
pub const HEADER_LEN: usize = 256;
/// The longest body this server reads (64 KiB); a header announcing more closes the connection.
pub const MAX_BODY: usize = 64 * 1024;
/// The body with which a client says goodbye.
pub const DISCONNECT: &str = "!DESCONECTADO";
/// The body with which the original let any client stop the server; piswarm ignores it.
pub const SHUTDOWN: &str = "!ENCERRAR";
/// The raw bytes (no header) answering a goodbye, as the original server sent them.
pub const DISCONNECT_REPLY: &[u8] = b"msg recebida corretamente";

/// Messages queued from the coordinator to one legacy session: one assignment, the answer to one
/// result, a `done` and a close fit many times over.
const OUTBOX_CAPACITY: usize = 16;
/// How long writing one frame may take before the client is considered stuck.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the coordinator may take to answer a result (it answers at once unless overloaded).
const ACK_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the goodbye reply and the closing handshake may take.
const REPLY_TIMEOUT: Duration = Duration::from_secs(1);

// ---------------------------------------------------------------------------------------------
// Pure framing
// ---------------------------------------------------------------------------------------------

/// A header that cannot be right, whatever follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    #[error("the header is not a decimal length padded on the right with spaces")]
    NotALength,
    #[error("the header announces a body longer than {MAX_BODY} bytes")]
    TooLong,
}

/// Reading one frame failed.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error(transparent)]
    Header(#[from] HeaderError),
    #[error("the connection closed in the middle of a frame")]
    Truncated,
    #[error("read error: {0}")]
    Io(#[from] std::io::Error),
}

/// Decodes a header from its first bytes, as they arrive.
///
/// `Ok(Some(len))` once [`HEADER_LEN`] bytes are there (later bytes are not looked at), `Ok(None)`
/// while the bytes so far can still start a valid header, and an error as soon as they cannot:
/// a valid header is one or more ASCII digits, then only spaces, announcing at most [`MAX_BODY`].
pub fn decode_header(bytes: &[u8]) -> Result<Option<usize>, HeaderError> {
    let bytes = &bytes[..bytes.len().min(HEADER_LEN)];
    let digits = bytes.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 && !bytes.is_empty() {
        return Err(HeaderError::NotALength);
    }
    if !bytes[digits..].iter().all(|&b| b == b' ') {
        return Err(HeaderError::NotALength);
    }
    let mut len: usize = 0;
    for &d in &bytes[..digits] {
        len = len * 10 + usize::from(d - b'0');
        if len > MAX_BODY {
            return Err(HeaderError::TooLong);
        }
    }
    Ok((bytes.len() == HEADER_LEN).then_some(len))
}

/// Encodes one frame: the header, then `body`. Written with a single `write_all`, so that a client
/// that reads the header with one `recv(256)` and the body with another gets each whole.
pub fn encode_frame(body: &[u8]) -> Vec<u8> {
    let mut frame = format!("{:<width$}", body.len(), width = HEADER_LEN).into_bytes();
    frame.extend_from_slice(body);
    frame
}

/// The body of the frame that hands out `[a, b]`, as the original wrote it.
pub fn interval_body(a: u64, b: u64) -> String {
    format!("[{a}, {b}]")
}

/// What a legacy client sent, once its frame is decoded.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ClientFrame {
    /// `[R]<evens>,<odds>,<pi>`.
    Result(LegacyResult),
    /// `!DESCONECTADO`.
    Disconnect,
    /// `!ENCERRAR`.
    Shutdown,
}

/// The three numbers of a `[R]` frame, in the order the client sends them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LegacyResult {
    pub even_sum: u128,
    pub odd_sum: u128,
    pub pi: f64,
}

/// A body that is none of the frames a legacy client may send.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BodyError(String);

/// Decodes the body of a frame from a legacy client.
///
/// Surrounding ASCII whitespace is ignored (in the body and in each field). The sums are decimal
/// integers; π is whatever Rust's correctly rounded `f64` parser reads, which covers every float
/// Python writes (`3.140592653839794`, `8.333332798032551e-05`, `-0.0`). A non-finite π parses
/// here and is refused by verification, like any other wrong π.
pub fn parse_client_body(body: &[u8]) -> Result<ClientFrame, BodyError> {
    let text = std::str::from_utf8(body)
        .map_err(|_| BodyError(format!("the body is not UTF-8: {}", shown(body))))?
        .trim_matches(|c: char| c.is_ascii_whitespace());
    if text == DISCONNECT {
        return Ok(ClientFrame::Disconnect);
    }
    if text == SHUTDOWN {
        return Ok(ClientFrame::Shutdown);
    }
    let Some(fields) = text.strip_prefix("[R]") else {
        return Err(BodyError(format!(
            "expected [R]<evens>,<odds>,<pi>, {DISCONNECT} or {SHUTDOWN}, got {}",
            shown(body)
        )));
    };
    let fields: Vec<&str> = fields
        .split(',')
        .map(|f| f.trim_matches(|c: char| c.is_ascii_whitespace()))
        .collect();
    let [even, odd, pi] = fields[..] else {
        return Err(BodyError(format!(
            "a result has three comma-separated fields, got {}: {}",
            fields.len(),
            shown(body)
        )));
    };
    let sum = |field: &str, what: &str| -> Result<u128, BodyError> {
        if field.is_empty() || !field.bytes().all(|b| b.is_ascii_digit()) {
            return Err(BodyError(format!(
                "the sum of the {what} is not a decimal integer: {}",
                shown(field.as_bytes())
            )));
        }
        field.parse().map_err(|_| {
            BodyError(format!(
                "the sum of the {what} is out of range: {}",
                shown(field.as_bytes())
            ))
        })
    };
    let even_sum = sum(even, "even numbers")?;
    let odd_sum = sum(odd, "odd numbers")?;
    let pi = pi.parse::<f64>().map_err(|_| {
        BodyError(format!(
            "the π partial is not a number: {}",
            shown(pi.as_bytes())
        ))
    })?;
    Ok(ClientFrame::Result(LegacyResult {
        even_sum,
        odd_sum,
        pi,
    }))
}

/// Up to 60 bytes of untrusted input, quoted and escaped, safe for a log line.
fn shown(bytes: &[u8]) -> String {
    let cut = &bytes[..bytes.len().min(60)];
    let more = if bytes.len() > cut.len() { "…" } else { "" };
    format!("{:?}{more}", String::from_utf8_lossy(cut))
}

/// Reads one frame: exactly [`HEADER_LEN`] header bytes, then exactly the announced body, however
/// the stream splits them. `Ok(None)` on a clean end of stream before a frame.
///
/// A bad header is refused as soon as it cannot be valid, without waiting for its 256 bytes. Not
/// cancel-safe: callers keep the future alive across `select!` iterations (see [`next_frame`]).
pub async fn read_frame<R: AsyncRead + Unpin>(
    reader: &mut R,
) -> Result<Option<Vec<u8>>, FrameError> {
    let mut header = [0u8; HEADER_LEN];
    let mut filled = 0;
    let len = loop {
        let n = reader.read(&mut header[filled..]).await?;
        if n == 0 {
            return if filled == 0 {
                Ok(None)
            } else {
                Err(FrameError::Truncated)
            };
        }
        filled += n;
        if let Some(len) = decode_header(&header[..filled])? {
            break len;
        }
    };
    let mut body = vec![0u8; len];
    match reader.read_exact(&mut body).await {
        Ok(_) => Ok(Some(body)),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Err(FrameError::Truncated),
        Err(e) => Err(e.into()),
    }
}

// ---------------------------------------------------------------------------------------------
// The listener and its sessions
// ---------------------------------------------------------------------------------------------

/// Accepts legacy clients until `shutdown` is cancelled, with a connection limit of its own
/// (`config.max_connections`). Sessions are tracked by `tracker`, like native ones, so the caller
/// stops both the same way: cancel, drain the coordinator, wait for the tracker.
pub async fn serve_legacy(
    listener: TcpListener,
    coordinator: CoordinatorHandle,
    config: ServerConfig,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) {
    let permits = Arc::new(Semaphore::new(config.max_connections));
    let config = Arc::new(config);
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                // Typically EMFILE: wait a little rather than spin.
                tracing::warn!("legacy accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            // The format has no error message: closing is all a legacy client can be told.
            tracing::warn!(%peer, "legacy client refused: the legacy listener holds its maximum of {} connections", config.max_connections);
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let coordinator = coordinator.clone();
        let config = config.clone();
        let shutdown = shutdown.clone();
        tracker.spawn(async move {
            let (read, write) = stream.into_split();
            run_legacy_session(read, write, peer, coordinator, &config, shutdown).await;
            drop(permit);
        });
    }
}

/// Runs one legacy session to its end: join, one interval, its result, the goodbye, leave.
pub async fn run_legacy_session<R, W>(
    read: R,
    mut write: W,
    peer: SocketAddr,
    coordinator: CoordinatorHandle,
    config: &ServerConfig,
    shutdown: CancellationToken,
) where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let name = format!("legacy@{peer}");
    let (outbox, mut inbox) = mpsc::channel(OUTBOX_CAPACITY);
    let (reply, joined) = oneshot::channel();
    let join = Event::Join {
        name: name.clone(),
        peer: peer.to_string(),
        outbox,
        reply,
    };
    let joined = tokio::select! {
        _ = shutdown.cancelled() => return,
        sent = coordinator.send(join) => match sent {
            Ok(()) => joined.await,
            Err(_) => return,
        },
    };
    let session = match joined {
        Ok(Ok((session, _welcome))) => session,
        Ok(Err(refusal)) => {
            tracing::warn!(%peer, worker = %name, "legacy client refused by the coordinator: {refusal:?}");
            return;
        }
        Err(_) => return,
    };
    let mut reader = BufReader::with_capacity(8 * 1024, read);
    let mut legacy = Session {
        reader: &mut reader,
        write: &mut write,
        inbox: &mut inbox,
        coordinator: &coordinator,
        config,
        peer,
        name: &name,
        session,
    };
    let end = legacy.run().await;
    tracing::debug!(%peer, worker = %name, "legacy session ended: {end}");
    // Always leave, and before closing the socket: whatever the session still holds is back in
    // the queue before the client can see the connection end.
    let _ = coordinator.send(Event::Leave { session }).await;
    let _ = timeout(REPLY_TIMEOUT, write.shutdown()).await;
}

/// What ended the wait for a frame.
enum Next {
    Frame(Vec<u8>),
    Eof,
    Bad(FrameError),
    TimedOut,
    /// The coordinator closed the session (stopping, or the session was dropped).
    Closed,
}

/// Reads one frame before `deadline`, while watching the outbox for the coordinator closing the
/// session; other messages (a `done` once the job is complete) do not interrupt the read. A frame
/// already received wins over a close, so that a goodbye sent right after the run's last result
/// is still answered when the server stops at once.
async fn next_frame<R: AsyncRead + Unpin>(
    reader: &mut R,
    inbox: &mut mpsc::Receiver<Outbound>,
    deadline: Instant,
) -> Next {
    let read = read_frame(reader);
    tokio::pin!(read);
    loop {
        tokio::select! {
            biased;
            r = &mut read => return match r {
                Ok(Some(body)) => Next::Frame(body),
                Ok(None) => Next::Eof,
                Err(e) => Next::Bad(e),
            },
            msg = inbox.recv() => match msg {
                Some(Outbound::Message(_)) => {}
                Some(Outbound::Close) | None => return Next::Closed,
            },
            _ = sleep_until(deadline) => return Next::TimedOut,
        }
    }
}

/// Whether the peer closed its side: cancel-safe, and consumes nothing.
async fn peer_closed<R: AsyncBufRead + Unpin>(reader: &mut R) -> std::io::Result<bool> {
    Ok(reader.fill_buf().await?.is_empty())
}

/// One joined legacy session.
struct Session<'a, R, W> {
    reader: &'a mut BufReader<R>,
    write: &'a mut W,
    inbox: &'a mut mpsc::Receiver<Outbound>,
    coordinator: &'a CoordinatorHandle,
    config: &'a ServerConfig,
    peer: SocketAddr,
    name: &'a str,
    session: SessionId,
}

impl<R: AsyncRead + Unpin, W: AsyncWrite + Unpin> Session<'_, R, W> {
    /// The exchange; returns why it ended. The caller leaves the coordinator afterwards.
    async fn run(&mut self) -> &'static str {
        let (peer, name) = (self.peer, self.name);
        let request = Event::Request {
            session: self.session,
            count: 1,
        };
        if self.coordinator.send(request).await.is_err() {
            return "the coordinator stopped";
        }

        // 1. Wait for an interval. A client that hangs up meanwhile ends the session; one that
        //    speaks first keeps its bytes buffered for the frame reader.
        let mut watch_peer = true;
        let (id, a, b) = loop {
            tokio::select! {
                msg = self.inbox.recv() => match msg {
                    Some(Outbound::Message(ServerMessage::Assign { id, a, b, .. })) => break (id.0, a.0, b.0),
                    Some(Outbound::Message(ServerMessage::Done { .. })) => return "no work to hand out: the job is complete or the server is stopping",
                    Some(Outbound::Message(_)) => {}
                    Some(Outbound::Close) | None => return "closed by the coordinator",
                },
                closed = peer_closed(self.reader), if watch_peer => match closed {
                    Ok(false) => watch_peer = false,
                    Ok(true) | Err(_) => return "the client left before receiving an interval",
                },
            }
        };

        // 2. Hand it out, header and body in one write.
        let frame = encode_frame(interval_body(a, b).as_bytes());
        if !matches!(
            timeout(WRITE_TIMEOUT, self.write.write_all(&frame)).await,
            Ok(Ok(()))
        ) {
            return "could not write the interval";
        }
        let sent_at = Instant::now();

        // 3. Its result, within the idle timeout.
        let body = match next_frame(self.reader, self.inbox, sent_at + self.config.idle_timeout)
            .await
        {
            Next::Frame(body) => body,
            Next::Eof => {
                tracing::info!(%peer, worker = %name, interval = id, "legacy client closed the connection without a result");
                return "the client left without a result";
            }
            Next::Bad(e) => return self.bad_frame(&e, id),
            Next::TimedOut => {
                tracing::info!(%peer, worker = %name, interval = id, "legacy client sent no result within the idle timeout ({:?}); closing", self.config.idle_timeout);
                return "idle timeout";
            }
            Next::Closed => return "closed by the coordinator",
        };
        let duration = sent_at.elapsed();
        let sent = match parse_client_body(&body) {
            Ok(ClientFrame::Result(r)) => r,
            Ok(ClientFrame::Disconnect) => {
                self.reply_goodbye().await;
                return "the client said goodbye without a result";
            }
            Ok(ClientFrame::Shutdown) => {
                self.shutdown_ignored();
                self.reply_goodbye().await;
                return "shutdown request ignored; treated as a goodbye";
            }
            Err(e) => {
                tracing::warn!(%peer, worker = %name, interval = id, "malformed legacy result: {e}; closing the connection");
                return "malformed result";
            }
        };

        // 4. Verify it like any result, and wait for the coordinator to count it.
        let mut sent = sent;
        if !crate::maths::series::pi_partial_plausible(a, b, sent.pi)
            && is_original_trapezoid(sent.pi)
        {
            // The original client sends ∫₀¹ 4/(1+x²) dx by the trapezoidal rule, the same value for
            // every interval, instead of the interval's partial sum. Its sums are still checked
            // exactly; the partial is computed here instead, so that the run stays exact.
            static NOTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
            if !NOTED.swap(true, std::sync::atomic::Ordering::Relaxed) {
                tracing::info!(%peer, worker = %name, "original client: it sends the trapezoidal integral {} for every interval, not the partial sum; piswarm computes the partial itself", sent.pi);
            }
            sent.pi = crate::maths::kernel::pi_partial(a, b).unwrap_or(f64::NAN);
        }
        let result = WorkResult {
            id: Dec(id),
            a: Dec(a),
            b: Dec(b),
            even_sum: Dec(sent.even_sum),
            odd_sum: Dec(sent.odd_sum),
            pi: sent.pi,
            duration_s: duration.as_secs_f64(),
            resend: false,
        };
        let job = self.coordinator.job();
        if let Err(refusal) = check_result(&job, &result) {
            // The coordinator logs the rejection, with the peer, at warn level.
            tracing::debug!(%peer, worker = %name, interval = id, code = ?refusal.code, "wrong legacy result: {}; closing the connection", refusal.message);
            let rejected = Event::Rejected {
                session: self.session,
                id: IntervalId(id),
                code: refusal.code,
                message: refusal.message,
            };
            let _ = self.coordinator.send(rejected).await;
            return "wrong result";
        }
        let event = Event::Result {
            session: self.session,
            result,
        };
        if self.coordinator.send(event).await.is_err() {
            return "the coordinator stopped";
        }
        let ack_deadline = Instant::now() + ACK_TIMEOUT;
        loop {
            match timeout_at(ack_deadline, self.inbox.recv()).await {
                Ok(Some(Outbound::Message(ServerMessage::Ack { id: acked, status })))
                    if acked.0 == id =>
                {
                    tracing::debug!(%peer, worker = %name, interval = id, ?status, "legacy result acknowledged");
                    break;
                }
                Ok(Some(Outbound::Message(ServerMessage::Error {
                    code,
                    message,
                    id: Some(about),
                }))) if about.0 == id => {
                    tracing::info!(%peer, worker = %name, interval = id, ?code, "legacy result not counted: {message}");
                    break;
                }
                // A `done` (the job is complete) or anything else: keep waiting for the answer.
                Ok(Some(Outbound::Message(_))) => {}
                Ok(Some(Outbound::Close)) | Ok(None) => return "closed by the coordinator",
                Err(_) => return "the coordinator did not answer the result",
            }
        }

        // 5. The goodbye, within the handshake timeout: the client sends it right away.
        let deadline = Instant::now() + self.config.handshake_timeout;
        match next_frame(self.reader, self.inbox, deadline).await {
            Next::Frame(body) => match parse_client_body(&body) {
                Ok(ClientFrame::Disconnect) => {
                    self.reply_goodbye().await;
                    "served"
                }
                Ok(ClientFrame::Shutdown) => {
                    self.shutdown_ignored();
                    self.reply_goodbye().await;
                    "served; shutdown request ignored"
                }
                Ok(ClientFrame::Result(_)) => {
                    tracing::warn!(%peer, worker = %name, "legacy client sent a second result without an interval; closing the connection");
                    "second result"
                }
                Err(e) => {
                    tracing::warn!(%peer, worker = %name, "malformed legacy frame after the result: {e}; closing the connection");
                    "malformed goodbye"
                }
            },
            Next::Eof => "served; the client closed without a goodbye",
            Next::Bad(e) => self.bad_frame(&e, id),
            Next::TimedOut => "served; no goodbye within the handshake timeout",
            Next::Closed => "served; closed by the coordinator",
        }
    }

    fn bad_frame(&self, e: &FrameError, id: u64) -> &'static str {
        let (peer, name) = (self.peer, self.name);
        match e {
            FrameError::Io(e) => {
                tracing::info!(%peer, worker = %name, interval = id, "legacy connection failed: {e}");
                "read error"
            }
            e => {
                tracing::warn!(%peer, worker = %name, interval = id, "malformed legacy frame: {e}; closing the connection");
                "malformed frame"
            }
        }
    }

    fn shutdown_ignored(&self) {
        tracing::warn!(peer = %self.peer, worker = %self.name, "ignored an unauthenticated shutdown request ({SHUTDOWN}) from a legacy client; treating it as a goodbye");
    }

    /// The original's answer to a goodbye: raw bytes, no header. The client may already be gone.
    async fn reply_goodbye(&mut self) {
        let _ = timeout(REPLY_TIMEOUT, self.write.write_all(DISCONNECT_REPLY)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    fn header(text: &str) -> Vec<u8> {
        format!("{text:<256}").into_bytes()
    }

    #[test]
    fn headers() {
        assert_eq!(decode_header(&header("12")), Ok(Some(12)));
        assert_eq!(decode_header(&header("0")), Ok(Some(0)));
        assert_eq!(decode_header(&header("000065536")), Ok(Some(MAX_BODY)));
        assert_eq!(decode_header(&header("65537")), Err(HeaderError::TooLong));
        assert_eq!(
            decode_header(&header(&"9".repeat(256))),
            Err(HeaderError::TooLong)
        );
        assert_eq!(decode_header(&header("")), Err(HeaderError::NotALength));
        assert_eq!(decode_header(&header(" 12")), Err(HeaderError::NotALength));
        assert_eq!(decode_header(&header("12 3")), Err(HeaderError::NotALength));
        assert_eq!(decode_header(&header("-1")), Err(HeaderError::NotALength));
        assert_eq!(decode_header(&header("12\t")), Err(HeaderError::NotALength));
        assert_eq!(decode_header(&header("abc")), Err(HeaderError::NotALength));
        // Prefixes: undecided while they can still be valid, refused as soon as they cannot.
        assert_eq!(decode_header(b""), Ok(None));
        assert_eq!(decode_header(b"12  "), Ok(None));
        assert_eq!(decode_header(b"12  x"), Err(HeaderError::NotALength));
        assert_eq!(decode_header(b"1000000"), Err(HeaderError::TooLong));
        // Only the header is looked at.
        let mut long = header("3");
        long.extend_from_slice(b"abc");
        assert_eq!(decode_header(&long), Ok(Some(3)));
    }

    #[test]
    fn frames_are_encoded_as_the_original_did() {
        let frame = encode_frame(interval_body(0, 999).as_bytes());
        assert_eq!(frame.len(), 256 + 8);
        assert_eq!(&frame[..3], b"8  ");
        assert!(frame[1..256].iter().all(|&b| b == b' '));
        assert_eq!(&frame[256..], b"[0, 999]");
        assert_eq!(decode_header(&frame), Ok(Some(8)));
    }

    #[test]
    fn bodies() {
        let result = |even, odd, pi| {
            Ok(ClientFrame::Result(LegacyResult {
                even_sum: even,
                odd_sum: odd,
                pi,
            }))
        };
        assert_eq!(
            parse_client_body(b"[R]249500,250000,3.140592653839794"),
            result(249500, 250000, 3.140592653839794)
        );
        assert_eq!(
            parse_client_body(b"[R]12,34,8.333332798032551e-05"),
            result(12, 34, 8.333332798032551e-05)
        );
        assert_eq!(
            parse_client_body(b"[R]0,1,-8.3e-05\n"),
            result(0, 1, -8.3e-05)
        );
        assert_eq!(parse_client_body(b"[R] 2 , 3 , 1.0 "), result(2, 3, 1.0));
        let max = format!("[R]{},0,0.5", u128::MAX);
        assert_eq!(parse_client_body(max.as_bytes()), result(u128::MAX, 0, 0.5));
        // inf and nan parse; verification refuses them as a wrong π.
        assert!(matches!(
            parse_client_body(b"[R]1,2,nan"),
            Ok(ClientFrame::Result(r)) if r.pi.is_nan()
        ));
        assert_eq!(
            parse_client_body(b"!DESCONECTADO"),
            Ok(ClientFrame::Disconnect)
        );
        assert_eq!(parse_client_body(b"!ENCERRAR"), Ok(ClientFrame::Shutdown));
        for bad in [
            &b""[..],
            b"hello",
            b"[R]",
            b"[R]1,2",
            b"[R]1,2,3,4",
            b"[R]-1,2,3.0",
            b"[R]+1,2,3.0",
            b"[R]1,2,pi",
            b"[R]1.5,2,3.0",
            b"[R],2,3.0",
            b"[R]1,2,",
            b"[r]1,2,3.0",
            b"[R]1,2,3.0\xff",
            b"!desconectado",
        ] {
            assert!(
                parse_client_body(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let overflow = format!("[R]{}0,0,0.5", u128::MAX);
        assert!(parse_client_body(overflow.as_bytes()).is_err());
    }

    /// A reader that hands out at most `step` bytes per read, as a slow network would.
    struct Trickle<'a> {
        data: &'a [u8],
        step: usize,
    }

    impl AsyncRead for Trickle<'_> {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &mut tokio::io::ReadBuf<'_>,
        ) -> Poll<std::io::Result<()>> {
            let n = self.step.min(self.data.len()).min(buf.remaining());
            buf.put_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Poll::Ready(Ok(()))
        }
    }

    fn read_all(data: &[u8], step: usize) -> Vec<Result<Vec<u8>, String>> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            let mut reader = Trickle { data, step };
            let mut frames = Vec::new();
            loop {
                match read_frame(&mut reader).await {
                    Ok(Some(body)) => frames.push(Ok(body)),
                    Ok(None) => break,
                    Err(e) => {
                        frames.push(Err(e.to_string()));
                        break;
                    }
                }
            }
            frames
        })
    }

    #[test]
    fn reading_frames_from_a_stream() {
        let mut stream = encode_frame(b"[R]1,2,3.0");
        stream.extend(encode_frame(b"!DESCONECTADO"));
        for step in [1, 7, 256, 4096] {
            assert_eq!(
                read_all(&stream, step),
                vec![Ok(b"[R]1,2,3.0".to_vec()), Ok(b"!DESCONECTADO".to_vec())]
            );
        }
        let truncated = &stream[..256 + 4];
        assert_eq!(
            read_all(truncated, 1000),
            vec![Err("the connection closed in the middle of a frame".into())]
        );
        assert_eq!(
            read_all(&stream[..100], 1000),
            vec![Err("the connection closed in the middle of a frame".into())]
        );
        // A bad header is refused without waiting for the rest.
        assert_eq!(
            read_all(b"GET / HTTP/1.1\r\n", 1000),
            vec![Err(HeaderError::NotALength.to_string())]
        );
        assert_eq!(read_all(b"", 1), vec![]);
    }

    proptest! {
        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600), step in 1usize..300) {
            let _ = decode_header(&bytes);
            let _ = parse_client_body(&bytes);
            let _ = read_all(&bytes, step);
        }

        #[test]
        fn decoding_plausible_frames_never_panics(
            digits in "[0-9]{0,7}",
            spaces in 0usize..300,
            tail in proptest::collection::vec(any::<u8>(), 0..400),
            step in 1usize..300,
        ) {
            let mut bytes = digits.into_bytes();
            bytes.resize(bytes.len() + spaces, b' ');
            bytes.extend(tail);
            let _ = decode_header(&bytes);
            let _ = read_all(&bytes, step);
            if bytes.len() > HEADER_LEN {
                let _ = parse_client_body(&bytes[HEADER_LEN..]);
            }
        }

        #[test]
        fn headers_of_digits_and_spaces(len in 0usize..=2 * MAX_BODY) {
            let h = header(&len.to_string());
            let decoded = decode_header(&h);
            if len <= MAX_BODY {
                prop_assert_eq!(decoded, Ok(Some(len)));
            } else {
                prop_assert_eq!(decoded, Err(HeaderError::TooLong));
            }
        }

        #[test]
        fn frames_round_trip(body in proptest::collection::vec(any::<u8>(), 0..2000), step in 1usize..600) {
            let frame = encode_frame(&body);
            prop_assert_eq!(read_all(&frame, step), vec![Ok(body)]);
        }

        #[test]
        fn results_round_trip(even in any::<u128>(), odd in any::<u128>(), pi in any::<f64>().prop_filter("finite", |x| x.is_finite())) {
            // Rust's shortest round-trip forms, both plain and scientific, read back exactly.
            for text in [format!("[R]{even},{odd},{pi}"), format!("[R]{even},{odd},{pi:e}")] {
                prop_assert_eq!(
                    parse_client_body(text.as_bytes()),
                    Ok(ClientFrame::Result(LegacyResult { even_sum: even, odd_sum: odd, pi }))
                );
            }
        }
    }
}

/// π as the original Python client computes it: the trapezoidal rule for ∫₀¹ 4/(1+x²) dx with `n`
/// steps, operation for operation as its `trapezio(0, 1, n)`, so that the bits match.
pub fn original_trapezoid(n: u32) -> f64 {
    let f = |x: f64| 4.0 / (1.0 + x * x);
    let h = 1.0 / f64::from(n);
    let mut s = f(0.0) + f(1.0);
    for i in 1..n {
        s += 2.0 * f(f64::from(i) * h);
    }
    (h / 2.0) * s
}

/// Whether `pi` is exactly what a version of the original client sends (n = 1000 or 10000).
pub fn is_original_trapezoid(pi: f64) -> bool {
    static KNOWN: std::sync::OnceLock<[u64; 2]> = std::sync::OnceLock::new();
    KNOWN
        .get_or_init(|| {
            [
                original_trapezoid(1000).to_bits(),
                original_trapezoid(10_000).to_bits(),
            ]
        })
        .contains(&pi.to_bits())
}

#[cfg(test)]
mod trapezoid_tests {
    const PY_10000: f64 = 3.14159265192314;
    const PY_1000: f64 = 3.1415924869231246;

    #[test]
    fn matches_the_values_python_prints() {
        // repr(trapezio(0, 1, 10000)) and repr(trapezio(0, 1, 1000)) in CPython 3.11.
        assert_eq!(super::original_trapezoid(10_000), PY_10000);
        assert_eq!(super::original_trapezoid(1000), PY_1000);
        assert!(super::is_original_trapezoid(PY_10000));
        assert!(!super::is_original_trapezoid(std::f64::consts::PI));
    }
}
