//! One connection of a worker: handshake, requests, results, re-sent results, heartbeats.

use super::pool::{Pool, Task};
use super::{Carry, End, WorkerConfig, WorkerError, WorkerSummary};
use crate::client::{self, ClientError, Connection, Hello, Welcome};
use crate::wire::{AckStatus, ClientMessage, DoneReason, ErrorCode, ServerMessage, WorkResult};
use std::collections::{HashSet, VecDeque};
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The worker's sentence for a connection that failed: a connection that ends, cannot be read
/// or written, or stays silent is lost (and worth another try with `--retry-for`).
fn worker_error(addr: &str, e: ClientError) -> WorkerError {
    match e {
        ClientError::Connect { addr, source } => WorkerError::Connect { addr, source },
        ClientError::Tls {
            addr,
            reason,
            transient,
        } => WorkerError::Tls {
            addr,
            reason,
            transient,
        },
        ClientError::Closed
        | ClientError::Read(_)
        | ClientError::Write(_)
        | ClientError::Timeout(_) => WorkerError::Lost {
            addr: addr.to_string(),
        },
        ClientError::Refused { code, message } => WorkerError::Refused { code, message },
        ClientError::UnknownKernel(k) => WorkerError::UnknownKernel(k),
        e @ (ClientError::Decode(_) | ClientError::NotWelcome(_)) => {
            WorkerError::Protocol(e.to_string())
        }
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
    let addr = config.connect.as_str();
    let lost = || WorkerError::Lost {
        addr: addr.to_string(),
    };
    let failed = |e| worker_error(addr, e);
    let tls = config.tls.as_ref().map(|tls| client::Tls {
        config: tls,
        server_name: config.tls_server_name.as_deref(),
    });
    let mut conn = Connection::connect(addr, tls).await.map_err(failed)?;
    let hello = Hello {
        worker: config.name.clone(),
        token: config.token.clone(),
        agent: Some(format!("piswarm/{}", env!("CARGO_PKG_VERSION"))),
    };
    let Welcome {
        run,
        run_uid,
        max_prefetch,
        heartbeat_s: heartbeat,
        kernel,
        ..
    } = conn.handshake(hello).await.map_err(failed)?;
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
    conn.queue(&ClientMessage::Request { count: prefetch });
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
        &mut conn,
    );
    conn.flush().await.map_err(failed)?;

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
            received = conn.recv() => {
                let msg = match received {
                    Ok(m) => m,
                    Err(e) => break Err(failed(e)),
                };
                last_heard = tokio::time::Instant::now();
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
                        send_resends(config, carry, &mut to_resend, &mut resending, window, &mut conn);
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
                        conn.queue(&ClientMessage::Result(c.result));
                        metrics.results_sent.inc();
                        fresh += 1;
                    } else if !resending.contains(&id) && !to_resend.contains(&id) {
                        // Assigned on an earlier connection: it goes with the re-sent results.
                        to_resend.push_back(id);
                    }
                    next = pool.results.try_recv().ok();
                }
                send_resends(config, carry, &mut to_resend, &mut resending, window, &mut conn);
                if fresh > 0 && !config.once {
                    conn.queue(&ClientMessage::Request { count: fresh });
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
                conn.queue(&ClientMessage::Heartbeat {});
            }
            _ = shutdown.cancelled() => break Ok(End::Shutdown),
        }
        if let Err(e) = conn.flush().await {
            break Err(failed(e));
        }
    };
    if end.is_ok() {
        conn.close().await;
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
    conn: &mut Connection,
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
        conn.queue(&ClientMessage::Result(resent));
        config.metrics.results_sent.inc();
        config.metrics.results_resent.inc();
        resending.insert(id);
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
