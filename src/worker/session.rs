//! One connection of a worker: handshake, requests, results, re-sent results, heartbeats.

use super::pool::{Pool, Task};
use super::{Carry, End, WorkerConfig, WorkerError, WorkerSummary};
use crate::maths::kernel::Kernel;
use crate::wire::line::read_line;
use crate::wire::{
    self, AckStatus, ClientMessage, DoneReason, ErrorCode, ServerMessage, WorkResult, MAX_LINE,
    PROTOCOL_VERSION,
};
use std::collections::{HashSet, VecDeque};
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;

/// How long connecting, the TLS handshake and the welcome may each take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const WELCOME_TIMEOUT: Duration = Duration::from_secs(30);

type Read = Box<dyn AsyncRead + Unpin + Send>;
type Write = Box<dyn AsyncWrite + Unpin + Send>;

/// A sentence for a failed TLS handshake, with a hint at the usual cause.
fn tls_failure(e: &std::io::Error) -> String {
    let inner = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>());
    match inner {
        Some(rustls::Error::InvalidCertificate(why)) => format!(
            "the coordinator's certificate is not trusted ({why:?}): check that --tls-ca is the \
             certificate authority that signed it and that it names the host of --connect \
             (or --tls-server-name)"
        ),
        Some(other) => other.to_string(),
        None if matches!(
            e.kind(),
            std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::ConnectionReset
        ) =>
        {
            "the coordinator closed the connection during the TLS handshake (does it serve TLS? \
             it needs --tls-cert and --tls-key; or it is full)"
                .to_string()
        }
        None => e.to_string(),
    }
}

/// Connects (with TLS if configured) and returns the two halves.
async fn connect(config: &WorkerConfig) -> Result<(Read, Write), WorkerError> {
    let addr = config.connect.clone();
    let connect_err = |source| WorkerError::Connect {
        addr: addr.clone(),
        source,
    };
    let stream = match timeout(CONNECT_TIMEOUT, TcpStream::connect(&config.connect)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return Err(connect_err(e)),
        Err(_) => {
            return Err(connect_err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "connection timed out",
            )))
        }
    };
    let _ = stream.set_nodelay(true);
    let Some(tls) = &config.tls else {
        let (read, write) = stream.into_split();
        return Ok((Box::new(read), Box::new(write)));
    };
    let tls_error = |reason: String, transient: bool| WorkerError::Tls {
        addr: addr.clone(),
        reason,
        transient,
    };
    let name = crate::net::tls::server_name(&config.connect, config.tls_server_name.as_deref())
        .map_err(|reason| tls_error(reason, false))?;
    match timeout(CONNECT_TIMEOUT, tls.connect(name, stream)).await {
        Ok(Ok(stream)) => {
            let (read, write) = tokio::io::split(stream);
            Ok((Box::new(read), Box::new(write)))
        }
        Ok(Err(e)) => {
            let cut = !matches!(e.get_ref(), Some(i) if i.is::<rustls::Error>());
            Err(tls_error(tls_failure(&e), cut))
        }
        Err(_) => Err(tls_error("the TLS handshake timed out".into(), true)),
    }
}

/// Whether a welcome names the run that unacknowledged results belong to: the same `run_uid`
/// when both sides have one (run numbers restart at 1 in every store), else the same number.
pub(super) fn same_run(
    carried: Option<&(u64, Option<String>)>,
    run: u64,
    uid: Option<&str>,
) -> bool {
    match carried {
        None => false,
        Some((old, old_uid)) => match (old_uid.as_deref(), uid) {
            (Some(a), Some(b)) => a == b,
            _ => *old == run,
        },
    }
}

/// Runs one connection. Sets `connected` once the coordinator has welcomed the worker.
pub(super) async fn run(
    config: &WorkerConfig,
    pool: &mut Pool,
    epoch: u64,
    carry: &mut Carry,
    summary: &mut WorkerSummary,
    connected: &mut bool,
    shutdown: &CancellationToken,
) -> Result<End, WorkerError> {
    let addr = config.connect.clone();
    let lost = || WorkerError::Lost { addr: addr.clone() };
    let (read, mut write) = connect(config).await?;
    let mut reader = BufReader::with_capacity(16 * 1024, read);
    let (mut line, mut complete) = (Vec::new(), false);

    let mut out = Vec::new();
    let hello = ClientMessage::Hello {
        version: PROTOCOL_VERSION,
        worker: config.name.clone(),
        token: config.token.clone(),
        agent: Some(format!("piswarm/{}", env!("CARGO_PKG_VERSION"))),
    };
    wire::encode(&hello, &mut out);
    write.write_all(&out).await.map_err(|_| lost())?;
    out.clear();

    let welcome = match timeout(
        WELCOME_TIMEOUT,
        read_line(&mut reader, &mut line, &mut complete, MAX_LINE),
    )
    .await
    {
        Ok(Ok(true)) => wire::decode_server(&line).map_err(|e| WorkerError::Protocol(e.message))?,
        _ => return Err(lost()),
    };
    let (run, run_uid, max_prefetch, heartbeat, kernel) = match welcome {
        ServerMessage::Welcome {
            run,
            run_uid,
            max_prefetch,
            heartbeat_s,
            kernel,
            ..
        } => (run, run_uid, max_prefetch, heartbeat_s, kernel),
        ServerMessage::Error { code, message, .. } => {
            return Err(WorkerError::Refused { code, message })
        }
        other => {
            return Err(WorkerError::Protocol(format!(
                "expected welcome, got {other:?}"
            )))
        }
    };
    let kernel = run_kernel(kernel)?;
    *connected = true;
    let metrics = &config.metrics;
    metrics.connected.set(1);
    pool.epoch.store(epoch, Ordering::Relaxed);
    if !same_run(carry.run.as_ref(), run, run_uid.as_deref()) {
        if !carry.unacked.is_empty() {
            let (old, old_uid) = carry.run.clone().unwrap_or_default();
            tracing::warn!(
                "the coordinator now serves run {run} ({}); {} unacknowledged results of run {old} ({}) are dropped, not sent again",
                run_uid.as_deref().unwrap_or("no run_uid"),
                carry.unacked.len(),
                old_uid.as_deref().unwrap_or("no run_uid"),
            );
        }
        carry.unacked.clear();
        carry.run = Some((run, run_uid));
    }
    let prefetch = if config.once {
        1
    } else {
        config
            .prefetch
            .unwrap_or(2 * config.threads.max(1) as u32)
            .clamp(1, max_prefetch.max(1))
    };
    wire::encode(&ClientMessage::Request { count: prefetch }, &mut out);
    // Work finished on an earlier connection and never acknowledged, sent again at most
    // `max_prefetch` at a time (the server answers at most that many at once).
    let window = max_prefetch.max(1) as usize;
    let mut to_resend: VecDeque<u64> = carry.unacked.keys().copied().collect();
    let mut resending: HashSet<u64> = HashSet::new();
    send_resends(
        config,
        carry,
        &mut to_resend,
        &mut resending,
        window,
        &mut out,
    );
    write.write_all(&out).await.map_err(|_| lost())?;
    out.clear();

    // A link that died silently (no FIN, no RST) is noticed when results stay unanswered for
    // twice the server's idle timeout (heartbeat_s is a third of it): the server answers every
    // result, so that long a silence means the connection is gone.
    let answer_timeout = Duration::from_secs_f64((heartbeat * 6.0).max(10.0));
    let heartbeat = Duration::from_secs_f64((heartbeat / 2.0).clamp(0.5, 60.0));
    let mut ticker = tokio::time::interval(heartbeat);
    ticker.tick().await;
    let mut reported = 0u64;
    let mut awaiting = 0u64;
    let mut last_heard = tokio::time::Instant::now();
    let end = loop {
        tokio::select! {
            r = read_line(&mut reader, &mut line, &mut complete, MAX_LINE) => {
                match r {
                    Ok(true) => {}
                    _ => break Err(lost()),
                }
                last_heard = tokio::time::Instant::now();
                let msg = match wire::decode_server(&line) {
                    Ok(m) => m,
                    Err(e) => break Err(WorkerError::Protocol(e.message)),
                };
                let answered = match msg {
                    ServerMessage::Assign { id, a, b, .. } => {
                        let task = Task { epoch, kernel, id: id.0, a: a.0, b: b.0 };
                        if !pool.submit(task) {
                            break Err(WorkerError::Protocol("compute threads stopped".into()));
                        }
                        None
                    }
                    ServerMessage::Ack { id, status } => {
                        match status {
                            AckStatus::Accepted => {
                                summary.accepted += 1;
                                metrics.results_accepted.inc();
                            }
                            AckStatus::Duplicate => {
                                summary.duplicates += 1;
                                metrics.results_duplicate.inc();
                            }
                        }
                        Some(id.0)
                    }
                    ServerMessage::Done { reason } => {
                        match reason {
                            DoneReason::JobComplete => {
                                tracing::info!("no more work: the job is complete");
                                break Ok(End::Finished);
                            }
                            DoneReason::ServerStopping => {
                                tracing::info!("the coordinator is stopping");
                                break Ok(End::Stopping);
                            }
                        }
                    }
                    ServerMessage::Error { code, message, id } => {
                        summary.errors += 1;
                        metrics.server_errors.inc();
                        tracing::warn!(?code, interval = ?id.map(|i| i.0), "server error: {message}");
                        if matches!(code, ErrorCode::Refused | ErrorCode::Unauthorized | ErrorCode::UnsupportedVersion | ErrorCode::TooManyConnections | ErrorCode::IdleTimeout | ErrorCode::LineTooLong | ErrorCode::TlsRequired | ErrorCode::Internal) {
                            break Err(WorkerError::Refused { code, message });
                        }
                        if config.once && id.is_some() {
                            break Err(WorkerError::Refused { code, message });
                        }
                        id.map(|i| i.0)
                    }
                    ServerMessage::Welcome { .. } => None,
                };
                if let Some(id) = answered {
                    carry.unacked.remove(&id);
                    if resending.remove(&id) {
                        send_resends(config, carry, &mut to_resend, &mut resending, window, &mut out);
                    } else {
                        awaiting = awaiting.saturating_sub(1);
                    }
                    if config.once && reported >= 1 && awaiting == 0 {
                        break Ok(End::Finished);
                    }
                }
            }
            computed = pool.results.recv() => {
                let mut next = computed;
                let mut fresh = 0;
                while let Some(c) = next {
                    let terms = c.result.b.0 - c.result.a.0 + 1;
                    summary.terms += terms;
                    metrics.terms_computed.inc_by(terms);
                    let id = c.result.id.0;
                    carry.unacked.insert(id, c.result.clone());
                    if c.epoch == epoch {
                        wire::encode(&ClientMessage::Result(c.result), &mut out);
                        metrics.results_sent.inc();
                        fresh += 1;
                    } else if !resending.contains(&id) && !to_resend.contains(&id) {
                        // Assigned on an earlier connection: it goes with the re-sent results.
                        to_resend.push_back(id);
                    }
                    next = pool.results.try_recv().ok();
                }
                send_resends(config, carry, &mut to_resend, &mut resending, window, &mut out);
                if fresh > 0 && !config.once {
                    wire::encode(&ClientMessage::Request { count: fresh }, &mut out);
                }
                reported += fresh as u64;
                awaiting += fresh as u64;
            }
            _ = ticker.tick() => {
                let unanswered = awaiting > 0 || !resending.is_empty();
                if unanswered && last_heard.elapsed() > answer_timeout {
                    tracing::warn!("no answer from the coordinator for {:?}; the connection is taken as lost", last_heard.elapsed());
                    break Err(lost());
                }
                wire::encode(&ClientMessage::Heartbeat {}, &mut out);
            }
            _ = shutdown.cancelled() => break Ok(End::Shutdown),
        }
        if !out.is_empty() {
            if write.write_all(&out).await.is_err() {
                break Err(lost());
            }
            out.clear();
        }
    };
    if end.is_ok() {
        out.clear();
        wire::encode(&ClientMessage::Bye {}, &mut out);
        let _ = timeout(Duration::from_secs(1), write.write_all(&out)).await;
        let _ = write.shutdown().await;
    }
    end
}

/// Queues re-sent results while fewer than `window` are awaiting their answers.
fn send_resends(
    config: &WorkerConfig,
    carry: &Carry,
    to_resend: &mut VecDeque<u64>,
    resending: &mut HashSet<u64>,
    window: usize,
    out: &mut Vec<u8>,
) {
    while resending.len() < window {
        let Some(id) = to_resend.pop_front() else {
            break;
        };
        let Some(result) = carry.unacked.get(&id) else {
            continue;
        };
        let resent = WorkResult {
            resend: true,
            ..result.clone()
        };
        wire::encode(&ClientMessage::Result(resent), out);
        config.metrics.results_sent.inc();
        config.metrics.results_resent.inc();
        resending.insert(id);
    }
}

/// The run's kernel, from `welcome.kernel`: every result of a run is computed the same way
/// (bit-identity is promised per job and kernel). Servers older than the field run the quad
/// kernel. Every client of the protocol in piswarm (the worker, `bench`, `fleet`) goes by this.
pub fn run_kernel(name: Option<String>) -> Result<Kernel, WorkerError> {
    match name {
        None => Ok(Kernel::Quad),
        Some(name) => Kernel::from_name(&name).ok_or(WorkerError::UnknownKernel(name)),
    }
}

#[cfg(test)]
mod tests {
    use super::same_run;

    #[test]
    fn results_are_carried_to_the_same_run_only() {
        let uid = |s: &str| Some(s.to_string());
        // Nothing carried yet.
        assert!(!same_run(None, 1, Some("a")));
        // Both sides have a run_uid: it decides, whatever the numbers say.
        assert!(same_run(Some(&(1, uid("a"))), 1, Some("a")));
        assert!(
            !same_run(Some(&(1, uid("a"))), 1, Some("b")),
            "a replaced store's run 1"
        );
        assert!(same_run(Some(&(1, uid("a"))), 7, Some("a")));
        // An older server sends none: the run number decides.
        assert!(same_run(Some(&(1, uid("a"))), 1, None));
        assert!(!same_run(Some(&(1, None)), 2, None));
        assert!(same_run(Some(&(3, None)), 3, Some("c")));
    }
}
