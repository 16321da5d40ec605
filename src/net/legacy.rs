//! Sessions of the original system's clients, on a listener of their own, so that the original's
//! Python clients work unchanged against piswarm (framing: `wire::legacy`).
//!
//! Each session joins the coordinator as the worker `legacy@<peer address>`, asks for exactly one
//! interval, verifies the answer like any native result, and always leaves, so that whatever it
//! still holds goes back to the queue. A legacy session never changes the coordinator's rules: it
//! is one more worker. The format has no error messages, so a bad frame is logged and the
//! connection closed; and its `!ENCERRAR` (stop the server) is never obeyed, since nothing
//! authenticates it.

use super::limits::ServerConfig;
use crate::coordinator::{CoordinatorHandle, Event, Input, Joining, SessionId, WorkerKind};
use crate::job::verify::check_result_with;
use crate::report::now_iso8601;
use crate::wire::legacy::{
    encode_frame, interval_body, is_original_trapezoid, parse_client_body, read_frame, ClientFrame,
    FrameError, DISCONNECT_REPLY, SHUTDOWN,
};
use crate::wire::{Dec, ServerMessage, WorkResult};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::sync::{mpsc, Semaphore};
use tokio::time::{sleep_until, timeout, timeout_at, Instant};
use tokio_util::sync::CancellationToken;

/// The longest interval for which the original client's constant π is replaced by a computed
/// partial (the original handed out 1000 terms): longer ones with that constant are rejected.
pub const LEGACY_RECOMPUTE_MAX: u64 = 10_000;

/// Messages queued from the coordinator to one legacy session: one assignment, the answer to one
/// result, a `done` and a close fit many times over.
const OUTBOX_CAPACITY: usize = 16;
/// How long writing one frame may take before the client is considered stuck.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the coordinator may take to answer a result (it answers at once unless overloaded).
const ACK_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the goodbye reply and the closing handshake may take.
const REPLY_TIMEOUT: Duration = Duration::from_secs(1);

/// Runs one legacy session to its end: join, one interval, its result, the goodbye, leave.
pub async fn run_legacy_session<R, W>(
    read: R,
    mut write: W,
    peer: SocketAddr,
    coordinator: CoordinatorHandle,
    config: &ServerConfig,
    shutdown: CancellationToken,
    recompute: Arc<Semaphore>,
) where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let name = format!("legacy@{peer}");
    let (outbox, mut inbox) = mpsc::channel(OUTBOX_CAPACITY);
    let session = coordinator.new_session();
    let join = Event::Join {
        joining: Joining {
            session,
            name: name.clone(),
            peer: peer.to_string(),
            kind: WorkerKind::Legacy,
            agent: String::new(),
        },
        outbox,
    };
    tokio::select! {
        _ = shutdown.cancelled() => return,
        sent = coordinator.send(join) => if sent.is_err() { return },
    }
    // The welcome (or a refusal: an error, then the outbox closes).
    match timeout(ACK_TIMEOUT, inbox.recv()).await {
        Ok(Some(ServerMessage::Welcome { .. })) => {}
        Ok(Some(ServerMessage::Error { message, .. })) => {
            tracing::warn!(%peer, worker = %name, "legacy client refused by the coordinator: {message}");
            let _ = coordinator
                .send(Event::Input(Input::Leave { session }))
                .await;
            return;
        }
        Ok(Some(
            ServerMessage::Assign { .. } | ServerMessage::Ack { .. } | ServerMessage::Done { .. },
        ))
        | Ok(None)
        | Err(_) => {
            let _ = coordinator
                .send(Event::Input(Input::Leave { session }))
                .await;
            return;
        }
    }
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
        recompute,
    };
    let end = legacy.run().await;
    tracing::debug!(%peer, worker = %name, "legacy session ended: {end}");
    // Always leave, and before closing the socket: whatever the session still holds is back in
    // the queue before the client can see the connection end.
    let _ = coordinator
        .send(Event::Input(Input::Leave { session }))
        .await;
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
    inbox: &mut mpsc::Receiver<ServerMessage>,
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
            // Messages for the session while a frame is awaited (a legacy client is told
            // nothing in between): dropped.
            msg = inbox.recv() => match msg {
                Some(
                    ServerMessage::Welcome { .. }
                    | ServerMessage::Assign { .. }
                    | ServerMessage::Ack { .. }
                    | ServerMessage::Error { .. }
                    | ServerMessage::Done { .. },
                ) => {}
                None => return Next::Closed,
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
    inbox: &'a mut mpsc::Receiver<ServerMessage>,
    coordinator: &'a CoordinatorHandle,
    config: &'a ServerConfig,
    peer: SocketAddr,
    name: &'a str,
    session: SessionId,
    /// Permits to recompute a π partial on the blocking pool.
    recompute: Arc<Semaphore>,
}

impl<R: AsyncRead + Unpin, W: AsyncWrite + Unpin> Session<'_, R, W> {
    /// The exchange; returns why it ended. The caller leaves the coordinator afterwards.
    async fn run(&mut self) -> &'static str {
        let (peer, name) = (self.peer, self.name);
        let request = Event::Input(Input::Request {
            session: self.session,
            count: 1,
        });
        if self.coordinator.send(request).await.is_err() {
            return "the coordinator stopped";
        }

        // 1. Wait for an interval. A client that hangs up meanwhile ends the session; one that
        //    speaks first keeps its bytes buffered for the frame reader.
        let mut watch_peer = true;
        let (id, a, b) = loop {
            tokio::select! {
                msg = self.inbox.recv() => match msg {
                    Some(ServerMessage::Assign { id, a, b, .. }) => break (id.0, a.0, b.0),
                    Some(ServerMessage::Done { .. }) => return "no work to hand out: the job is complete or the server is stopping",
                    // Nothing else concerns a legacy client waiting for its interval.
                    Some(ServerMessage::Welcome { .. } | ServerMessage::Ack { .. } | ServerMessage::Error { .. }) => {}
                    None => return "closed by the coordinator",
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
        if is_original_trapezoid(sent.pi)
            && b - a < LEGACY_RECOMPUTE_MAX
            && !crate::maths::series::pi_partial_plausible(a, b, sent.pi)
        {
            // The original client sends ∫₀¹ 4/(1+x²) dx by the trapezoidal rule, the same value for
            // every interval, instead of the interval's partial sum. Its sums are still checked
            // exactly; the partial is computed here instead (on the blocking pool, a few at a
            // time, and only for intervals of the original's size), so that the run stays exact.
            static NOTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
            if !NOTED.swap(true, std::sync::atomic::Ordering::Relaxed) {
                tracing::info!(%peer, worker = %name, "original client: it sends the trapezoidal integral {} for every interval, not the partial sum; piswarm computes the partial itself", sent.pi);
            }
            let Ok(_permit) = self.recompute.clone().acquire_owned().await else {
                return "the server is stopping";
            };
            let kernel = self.coordinator.kernel();
            let computed = tokio::task::spawn_blocking(move || kernel.pi_partial(a, b)).await;
            sent.pi = match computed {
                Ok(Ok(pi)) => pi,
                _ => f64::NAN,
            };
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
        let (job, kernel) = (self.coordinator.job(), self.coordinator.kernel());
        let tolerance = self.config.tolerance;
        let verdict = self
            .config
            .metrics
            .time_verify(|| check_result_with(&job, kernel, &result, tolerance));
        if let Err(refusal) = &verdict {
            // The coordinator logs the rejection, with the peer, at warn level.
            tracing::debug!(%peer, worker = %name, interval = id, code = ?refusal.code, "wrong legacy result: {}; closing the connection", refusal.message);
        }
        let wrong = verdict.is_err();
        let event = Event::Input(Input::Result {
            session: self.session,
            result,
            verdict,
            received_at: now_iso8601(),
        });
        if self.coordinator.send(event).await.is_err() {
            return "the coordinator stopped";
        }
        if wrong {
            return "wrong result";
        }
        let ack_deadline = Instant::now() + ACK_TIMEOUT;
        loop {
            match timeout_at(ack_deadline, self.inbox.recv()).await {
                Ok(Some(ServerMessage::Ack { id: acked, status })) if acked.0 == id => {
                    tracing::debug!(%peer, worker = %name, interval = id, ?status, "legacy result acknowledged");
                    break;
                }
                Ok(Some(ServerMessage::Error {
                    code,
                    message,
                    id: Some(about),
                })) if about.0 == id => {
                    tracing::info!(%peer, worker = %name, interval = id, ?code, "legacy result not counted: {message}");
                    break;
                }
                // A `done` (the job is complete) or anything else: keep waiting for the answer.
                Ok(Some(
                    ServerMessage::Ack { .. }
                    | ServerMessage::Error { .. }
                    | ServerMessage::Done { .. }
                    | ServerMessage::Assign { .. }
                    | ServerMessage::Welcome { .. },
                )) => {}
                Ok(None) => return "closed by the coordinator",
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
