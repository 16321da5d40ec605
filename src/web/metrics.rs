//! What `GET /metrics` of a `serve` process says: the current run's counts, read from the
//! coordinator's snapshot and worker table when the scrape arrives, and the instruments of
//! [`super::ServeInstruments`].
//!
//! The run's counts are the coordinator's own (the numbers `/api/status` shows), never counted a
//! second time here. They belong to the run being served: a new run starts them again from zero
//! (Prometheus treats that as a counter reset), while `piswarm_run_info` says which run they are of.

use crate::coordinator::{Snapshot, WorkerKind, WorkerRow};
use crate::metrics::{counter, gauge};
use crate::node::Node;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::time::Duration;

/// How long a scrape waits for the coordinator's worker table.
const WORKERS_TIMEOUT: Duration = Duration::from_secs(2);

/// The kinds of worker, as the `kind` label of `piswarm_workers` says them.
const WORKER_KINDS: [(WorkerKind, &str); 4] = [
    (WorkerKind::Piswarm, "piswarm"),
    (WorkerKind::Legacy, "legacy"),
    (WorkerKind::Browser, "browser"),
    (WorkerKind::Other, "other"),
];

type Labels = Vec<(&'static str, String)>;

/// The whole exposition of a `serve` process, in the Prometheus text format.
pub async fn render(node: &Node) -> String {
    let run = node.current_run();
    let snapshot = run.snapshot.borrow().clone();
    let workers = match node.coordinator() {
        Some(c) => tokio::time::timeout(WORKERS_TIMEOUT, c.workers())
            .await
            .ok()
            .and_then(Result::ok),
        None => None,
    };
    let view = node.view();
    let mut registry = Registry::default();
    register_run(&mut registry, &snapshot, workers.as_deref(), view.running);
    node.options().server.metrics.register(&mut registry);
    crate::metrics::encode(&registry)
}

/// Registers the run's counts, as read from its snapshot and worker table (`None` when the
/// coordinator did not answer in time: `piswarm_workers` is then left out rather than wrong).
fn register_run(
    registry: &mut Registry,
    snap: &Snapshot,
    workers: Option<&[WorkerRow]>,
    serving: bool,
) {
    let results = Family::<Labels, prometheus_client::metrics::counter::Counter>::default();
    for (status, value) in [
        ("accepted", snap.results_accepted),
        ("duplicate", snap.results_duplicate),
        ("rejected", snap.results_rejected),
    ] {
        results
            .get_or_create(&vec![("status", status.to_string())])
            .inc_by(value);
    }
    registry.register(
        "piswarm_results",
        "Results received in this run, by verdict: accepted (verified, counted), duplicate (an interval already counted), rejected (failed verification or not held)",
        results,
    );
    registry.register(
        "piswarm_intervals_done",
        "Intervals whose results are verified and durable",
        gauge(snap.totals.intervals_done),
    );
    registry.register(
        "piswarm_intervals_in_flight",
        "Intervals handed out and not yet answered",
        gauge(snap.in_flight as u64),
    );
    registry.register(
        "piswarm_results_pending",
        "Accepted results not yet durable (waiting for the store's next commit)",
        gauge(snap.pending as u64),
    );
    if let Some(total) = snap.job.intervals() {
        registry.register(
            "piswarm_intervals",
            "Intervals of the job (bounded jobs only)",
            gauge(total),
        );
    }
    registry.register(
        "piswarm_terms_done",
        "Terms of the series covered by durable results",
        counter(snap.totals.terms_done),
    );
    registry.register(
        "piswarm_leases_expired",
        "Assignments taken back because their lease expired",
        counter(snap.leases_expired),
    );
    registry.register(
        "piswarm_backups_issued",
        "Backup copies handed out: an interval in flight given to a second, faster session as well",
        counter(snap.backups_issued),
    );
    registry.register(
        "piswarm_backups_won",
        "Backup copies whose result counted first",
        counter(snap.backups_won),
    );
    registry.register(
        "piswarm_backup_terms",
        "Terms covered by the backup copies handed out (at most this many terms are computed twice)",
        counter(snap.backup_terms),
    );
    registry.register(
        "piswarm_sessions",
        "Worker sessions (handshaken connections) since the run's coordinator started",
        counter(snap.sessions_seen),
    );
    if let Some(rows) = workers {
        let by_kind = Family::<Labels, Gauge>::default();
        for (kind, label) in WORKER_KINDS {
            let n = rows.iter().filter(|r| r.kind == kind).count();
            by_kind
                .get_or_create(&vec![("kind", label.to_string())])
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
        registry.register(
            "piswarm_workers",
            "Connected workers (sessions that completed their handshake), by kind of client",
            by_kind,
        );
    }
    registry.register(
        "piswarm_serving",
        "1 while the TCP server accepts workers",
        gauge(u64::from(serving && snap.serving)),
    );
    registry.register(
        "piswarm_store_healthy",
        "1 while the store makes results durable, 0 once it failed (disk full, I/O error)",
        gauge(u64::from(snap.store_failed.is_none())),
    );
    registry.register(
        "piswarm_run_complete",
        "1 once every interval of a bounded job is durable",
        gauge(u64::from(snap.complete)),
    );
    let info = Family::<Labels, Gauge>::default();
    info.get_or_create(&vec![
        ("run", snap.run_id.to_string()),
        // Empty for an open-ended job.
        (
            "terms",
            snap.job.terms.map_or(String::new(), |n| n.to_string()),
        ),
        ("chunk", snap.job.chunk.to_string()),
    ])
    .set(1);
    registry.register(
        "piswarm_run_info",
        "The run being served: its number in the store, its terms (empty: open-ended) and chunk",
        info,
    );
}
