//! `GET /api/status`: the TCP server and the current run (also the live stream's `status`, and
//! the answer of the control requests).

use super::runs::RunState;
use super::ApiResult;
use crate::maths::series;
use crate::web::AppState;
use axum::extract::State;
use axum::Json;
use serde::Serialize;
use std::time::Duration;
use utoipa::ToSchema;

/// `GET /api/status`: the TCP server and the current run.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Status {
    pub server: ServerStatus,
    pub run: RunStatus,
}

/// The TCP server.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ServerStatus {
    pub running: bool,
    /// The TCP address workers connect to.
    pub listen: String,
    pub legacy_listen: Option<String>,
    /// Connected sessions (clients that completed their handshake).
    pub clients: usize,
    /// Local clients (created by the dashboard) still running.
    pub local_clients: usize,
    /// The most local clients allowed at once (`--max-local-clients`).
    pub max_local_clients: usize,
    /// Seconds since the TCP server was (last) started; 0 when stopped.
    pub uptime_s: f64,
    pub process_uptime_s: f64,
}

/// The current run.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RunStatus {
    pub id: u64,
    pub state: RunState,
    /// Null for an open-ended job.
    pub terms: Option<u64>,
    pub chunk: u64,
    /// Null for an open-ended job.
    pub intervals_total: Option<u64>,
    pub intervals_done: u64,
    pub in_flight: usize,
    #[schema(pattern = "^[0-9]+$")]
    pub done_terms: String,
    #[schema(pattern = "^[0-9]+$")]
    pub even_sum: String,
    #[schema(pattern = "^[0-9]+$")]
    pub odd_sum: String,
    /// Null before the first result.
    pub pi: Option<f64>,
    pub pi_error: Option<f64>,
    pub correct_digits: Option<u32>,
    /// Null unless the accepted intervals form a prefix [0, done_terms − 1].
    pub pi_corrected: Option<f64>,
    pub workers: u64,
    pub elapsed_s: Option<f64>,
    /// Terms per second over the last seconds.
    pub rate_terms_per_s: f64,
    /// Seconds left at that rate; null for open-ended jobs or before a rate is known.
    pub eta_s: Option<f64>,
    /// `done_terms / terms`; null for open-ended jobs.
    pub progress: Option<f64>,
    pub complete: bool,
    pub store_failed: Option<String>,
    pub results_accepted: u64,
    pub results_duplicate: u64,
    pub results_rejected: u64,
    pub leases_expired: u64,
    /// Backup copies handed out at the tail of the job (an interval in flight given to a second,
    /// faster session as well), how many of them counted first, and the terms they covered.
    pub backups_issued: u64,
    pub backups_won: u64,
    /// A decimal string, like every term count.
    pub backup_terms: String,
}

#[utoipa::path(get, path = "/api/status", tag = "status",
    responses((status = 200, description = "The server and the current run", body = Status)))]
pub async fn status(State(state): State<AppState>) -> ApiResult<Json<Status>> {
    Ok(Json(status_value(&state).await))
}

/// The status: the server and the current run.
pub(crate) async fn status_value(state: &AppState) -> Status {
    let node = &state.node;
    let view = node.view();
    let run = node.current_run();
    let snap = run.snapshot.borrow().clone();
    let report = match node.coordinator() {
        Some(c) => tokio::time::timeout(Duration::from_secs(2), c.report())
            .await
            .ok()
            .and_then(Result::ok),
        None => None,
    };
    let rate = node.rate(run.id, &snap);
    let job = run.job;
    let done = snap.totals.terms_done;
    let remaining = job.terms.map(|n| n.saturating_sub(done));
    let eta_s = match remaining {
        Some(0) => Some(0.0),
        Some(r) if rate > 0.0 => Some(r as f64 / rate),
        _ => None,
    };
    let run_state = if snap.complete {
        RunState::Complete
    } else if view.running {
        RunState::Running
    } else {
        RunState::Stopped
    };
    let has_terms = done > 0;
    Status {
        server: ServerStatus {
            running: view.running,
            listen: view.listen,
            legacy_listen: view.legacy_listen,
            clients: snap.sessions,
            local_clients: node.local_clients(),
            max_local_clients: node.max_local_clients(),
            uptime_s: view.server_since.map_or(0.0, |s| s.elapsed().as_secs_f64()),
            process_uptime_s: node.uptime().as_secs_f64(),
        },
        run: RunStatus {
            id: run.id.0,
            state: run_state,
            terms: job.terms,
            chunk: job.chunk,
            intervals_total: job.intervals(),
            intervals_done: snap.totals.intervals_done,
            in_flight: snap.in_flight,
            done_terms: done.to_string(),
            even_sum: snap.totals.even_sum.0.to_string(),
            odd_sum: snap.totals.odd_sum.0.to_string(),
            pi: has_terms.then_some(snap.totals.pi),
            pi_error: has_terms.then(|| series::pi_error(snap.totals.pi)),
            correct_digits: has_terms.then(|| series::correct_digits(snap.totals.pi)),
            pi_corrected: report
                .as_ref()
                .filter(|_| has_terms)
                .and_then(|r| r.pi_corrected),
            workers: snap.totals.workers,
            elapsed_s: report.as_ref().map(|r| r.elapsed_s),
            rate_terms_per_s: rate,
            eta_s,
            progress: job.terms.map(|n| (done as f64 / n.max(1) as f64).min(1.0)),
            complete: snap.complete,
            store_failed: snap.store_failed.clone(),
            results_accepted: snap.results_accepted,
            results_duplicate: snap.results_duplicate,
            results_rejected: snap.results_rejected,
            leases_expired: snap.leases_expired,
            backups_issued: snap.backups_issued,
            backups_won: snap.backups_won,
            backup_terms: snap.backup_terms.to_string(),
        },
    }
}
