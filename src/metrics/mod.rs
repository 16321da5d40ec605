//! Prometheus metrics: the instruments the program updates as things happen, and their exposition
//! in the Prometheus text format (version 0.0.4) with the `prometheus-client` crate.
//!
//! Two halves, deliberately apart:
//!
//! * The instruments ([`ServeInstruments`] here, [`worker::WorkerInstruments`]) are plain handles
//!   (atomics and `prometheus-client` histograms behind an `Arc`) that depend on nothing else in
//!   piswarm. They are handed down to the parts that observe events nobody else sees: the store's
//!   writer thread times each commit (through a [`crate::store::CommitObserver`] closure, so the
//!   store does not know this module), sessions time each result's verification and count their
//!   connections, the worker counts what it sends and what is acknowledged.
//! * Everything the coordinator already counts (results accepted, duplicates, rejections,
//!   intervals, terms, sessions, leases) is **not** counted twice: `web::metrics::render` reads the
//!   coordinator's published snapshot and its worker table when a scrape arrives, so `/metrics`
//!   and `/api/status` report the very same numbers.
//!
//! This module never decides anything and never blocks the coordinator: a scrape reads a
//! snapshot (a `watch` borrow) and asks for the worker table like the dashboard does.
//!
//! Metric names and labels are stable; docs/deployment.md lists them.

pub mod listener;

pub mod worker;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The `Content-Type` of what `/metrics` answers.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// Encodes a registry in the Prometheus text format.
pub fn encode(registry: &Registry) -> String {
    let mut text = String::new();
    // Writing into a String cannot fail; an encoding error would be a bug in a metric's name.
    if let Err(e) = prometheus_client::encoding::prometheus_text::encode(&mut text, registry) {
        tracing::error!("could not encode the metrics: {e}");
    }
    text
}

/// Which listener a connection came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionKind {
    /// Protocol v1 (plaintext or TLS).
    V1,
    /// The original's wire format (`--legacy-listen`).
    Legacy,
    /// Protocol v1 over the dashboard's WebSocket (`/join` pages).
    WebSocket,
}

impl ConnectionKind {
    pub const ALL: [ConnectionKind; 3] = [
        ConnectionKind::V1,
        ConnectionKind::Legacy,
        ConnectionKind::WebSocket,
    ];

    /// The value of the `kind` label.
    pub fn label(self) -> &'static str {
        match self {
            ConnectionKind::V1 => "v1",
            ConnectionKind::Legacy => "legacy",
            ConnectionKind::WebSocket => "websocket",
        }
    }
}

/// The instruments of a `serve` process (see the module's documentation). Cheap to clone: every
/// clone updates the same values.
#[derive(Debug, Clone)]
pub struct ServeInstruments {
    /// Seconds per store commit (one transaction of a group commit), timed in the writer thread.
    pub store_commit_seconds: Histogram,
    /// Seconds per result verification (`check_result`), timed in the sessions.
    pub result_verify_seconds: Histogram,
    /// Open connections per listener, handshaken or not.
    connections: Arc<[Gauge; 3]>,
    /// Connections closed at once because the server held `--max-connections`.
    pub connections_refused: Counter,
}

impl Default for ServeInstruments {
    fn default() -> Self {
        ServeInstruments {
            // 50 µs … about 3.3 s: a commit of one result takes well under a millisecond, a
            // group commit of thousands some milliseconds, a slow disk seconds.
            store_commit_seconds: Histogram::new(exponential_buckets(50e-6, 2.0, 17)),
            // 100 ns … about 0.4 ms: the check is O(1), a few microseconds.
            result_verify_seconds: Histogram::new(exponential_buckets(100e-9, 2.0, 13)),
            connections: Arc::new([Gauge::default(), Gauge::default(), Gauge::default()]),
            connections_refused: Counter::default(),
        }
    }
}

impl ServeInstruments {
    /// Counts a connection of `kind` as open until the returned guard is dropped.
    pub fn connection(&self, kind: ConnectionKind) -> ConnectionGuard {
        let gauge = self.connections[kind as usize].clone();
        gauge.inc();
        ConnectionGuard { gauge }
    }

    /// Open connections of `kind`.
    pub fn connections(&self, kind: ConnectionKind) -> i64 {
        self.connections[kind as usize].get()
    }

    /// Runs `check` and records how long it took in `result_verify_seconds`.
    pub fn time_verify<T>(&self, check: impl FnOnce() -> T) -> T {
        let start = Instant::now();
        let verdict = check();
        self.result_verify_seconds
            .observe(start.elapsed().as_secs_f64());
        verdict
    }

    /// Registers the instruments (clones of the same handles) in `registry`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "piswarm_store_commit_seconds",
            "Seconds per store commit (one SQLite transaction of a group commit)",
            self.store_commit_seconds.clone(),
        );
        registry.register(
            "piswarm_result_verify_seconds",
            "Seconds per result verification (the O(1) exact check)",
            self.result_verify_seconds.clone(),
        );
        let open = Family::<[(&'static str, &'static str); 1], Gauge>::default();
        for kind in ConnectionKind::ALL {
            open.get_or_create(&[("kind", kind.label())])
                .set(self.connections(kind));
        }
        registry.register(
            "piswarm_connections",
            "Open connections of workers, by transport (v1: protocol v1 over TCP, legacy: the original's format, websocket: protocol v1 over the dashboard's WebSocket)",
            open,
        );
        registry.register(
            "piswarm_connections_refused",
            "Connections closed at once because the server held --max-connections",
            self.connections_refused.clone(),
        );
    }

    /// The closure the store's writer calls after each commit.
    pub fn commit_observer(&self) -> crate::store::CommitObserver {
        let histogram = self.store_commit_seconds.clone();
        Arc::new(move |took: Duration| histogram.observe(took.as_secs_f64()))
    }
}

/// An open connection, counted in its listener's gauge until dropped.
#[derive(Debug)]
pub struct ConnectionGuard {
    gauge: Gauge,
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.gauge.dec();
    }
}

/// A gauge holding `value` (for values read at scrape time).
pub(crate) fn gauge(value: u64) -> Gauge {
    let g = Gauge::default();
    g.set(i64::try_from(value).unwrap_or(i64::MAX));
    g
}

/// A counter holding `value` (for counts kept elsewhere, read at scrape time).
pub(crate) fn counter(value: u64) -> Counter {
    let c = Counter::default();
    c.inc_by(value);
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_guards_count_open_connections() {
        let m = ServeInstruments::default();
        let a = m.connection(ConnectionKind::V1);
        let b = m.clone().connection(ConnectionKind::V1);
        let c = m.connection(ConnectionKind::Legacy);
        assert_eq!(m.connections(ConnectionKind::V1), 2);
        assert_eq!(m.connections(ConnectionKind::Legacy), 1);
        drop((a, b, c));
        assert_eq!(m.connections(ConnectionKind::V1), 0);
        assert_eq!(m.connections(ConnectionKind::Legacy), 0);
    }

    #[test]
    fn verification_and_commits_are_timed() {
        let m = ServeInstruments::default();
        assert_eq!(m.time_verify(|| 7), 7);
        (m.commit_observer())(Duration::from_millis(3));
        let mut registry = Registry::default();
        m.register(&mut registry);
        let text = encode(&registry);
        assert!(
            text.contains("piswarm_result_verify_seconds_count 1\n"),
            "{text}"
        );
        assert!(
            text.contains("piswarm_store_commit_seconds_count 1\n"),
            "{text}"
        );
        assert!(
            text.contains("piswarm_store_commit_seconds_sum 0.003\n"),
            "{text}"
        );
    }
}
