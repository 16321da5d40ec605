//! A worker's own metrics (`piswarm worker --metrics ADDR`): what it computed, sent and had
//! acknowledged, and how its connection fares. Updated by the worker's session task as things
//! happen; read by a scrape.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// The instruments of one worker. Cheap to clone: every clone updates the same values.
#[derive(Debug, Clone, Default)]
pub struct WorkerInstruments {
    /// Results written to the coordinator (first sendings and re-sendings).
    pub results_sent: Counter,
    /// Of those, re-sent after a reconnection (not acknowledged on an earlier connection).
    pub results_resent: Counter,
    /// Acknowledged as accepted (counted by the coordinator).
    pub results_accepted: Counter,
    /// Acknowledged as duplicates (the interval was already counted).
    pub results_duplicate: Counter,
    /// `error` messages from the coordinator (a rejected result, a refused line).
    pub server_errors: Counter,
    /// Terms computed by the compute threads.
    pub terms_computed: Counter,
    /// 1 while a coordinator has welcomed this worker and the connection lasts.
    pub connected: Gauge,
    /// Attempts to connect (including the first).
    pub connection_attempts: Counter,
    /// Connections welcomed by a coordinator after the first one.
    pub reconnects: Counter,
    /// Compute threads.
    pub threads: Gauge,
}

impl WorkerInstruments {
    /// The exposition of these instruments, with the worker's name as an info metric.
    pub fn render(&self, name: &str) -> String {
        let mut registry = Registry::default();
        let counters = [
            (
                "piswarm_worker_results_sent",
                "Results sent to the coordinator (including re-sent ones)",
                &self.results_sent,
            ),
            (
                "piswarm_worker_results_resent",
                "Results sent again after a reconnection",
                &self.results_resent,
            ),
            (
                "piswarm_worker_results_accepted",
                "Results the coordinator acknowledged as accepted",
                &self.results_accepted,
            ),
            (
                "piswarm_worker_results_duplicate",
                "Results the coordinator acknowledged as duplicates",
                &self.results_duplicate,
            ),
            (
                "piswarm_worker_server_errors",
                "Error messages received from the coordinator",
                &self.server_errors,
            ),
            (
                "piswarm_worker_terms_computed",
                "Terms of the series computed",
                &self.terms_computed,
            ),
            (
                "piswarm_worker_connection_attempts",
                "Attempts to connect to the coordinator",
                &self.connection_attempts,
            ),
            (
                "piswarm_worker_reconnects",
                "Connections welcomed by the coordinator after the first",
                &self.reconnects,
            ),
        ];
        for (name, help, c) in counters {
            registry.register(name, help, c.clone());
        }
        registry.register(
            "piswarm_worker_connected",
            "1 while connected to a coordinator that welcomed this worker",
            self.connected.clone(),
        );
        registry.register(
            "piswarm_worker_threads",
            "Compute threads",
            self.threads.clone(),
        );
        let info = Family::<Vec<(&'static str, String)>, Gauge>::default();
        info.get_or_create(&vec![
            ("name", name.to_string()),
            ("version", env!("CARGO_PKG_VERSION").to_string()),
        ])
        .set(1);
        registry.register(
            "piswarm_worker_info",
            "This worker's name and version",
            info,
        );
        super::encode(&registry)
    }
}
