//! A fleet of worker sessions joining at once (`piswarm bench fleet`, smaller than the 5 000 of
//! docs/performance.md): every session is served, and the only refusals are those the connection
//! limit explains, each retried with the worker's jittered backoff.

use super::*;

fn fleet(args: &[&str]) -> serde_json::Value {
    let dir = tempfile::tempdir().unwrap();
    let mut all = vec!["bench", "fleet", "--json"];
    all.extend_from_slice(args);
    let mut bench = Proc::start(dir.path(), "fleet", &all, &[]);
    let status = bench.wait();
    assert!(status.success(), "{}", bench.stderr());
    let out = bench.stdout_to_end();
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"))
}

#[test]
fn five_hundred_sessions_joining_at_once_are_all_served() {
    let r = fleet(&["--sessions", "500", "--within", "0s"]);
    assert_eq!(r["served"], 500, "{r}");
    assert_eq!(r["failed"], 0, "{r}");
    assert_eq!(r["refusals"], 0, "{r}");
    assert_eq!(
        r["peak_connected"], 500,
        "all 500 held a connection at once: {r}"
    );
    assert_eq!(r["results_accepted"], 500, "{r}");
    assert_eq!(r["server"]["results_accepted"], 500, "{r}");
    assert_eq!(r["server"]["results_rejected"], 0, "{r}");
    assert_eq!(r["server"]["sessions"], 500, "{r}");
}

#[test]
fn a_fleet_beyond_the_connection_limit_is_served_after_jittered_retries() {
    let r = fleet(&[
        "--sessions",
        "300",
        "--within",
        "0s",
        "--max-connections",
        "100",
        "--hold",
        "100ms",
    ]);
    assert_eq!(r["served"], 300, "{r}");
    assert_eq!(r["failed"], 0, "only the limit refuses anyone: {r}");
    assert_eq!(r["server"]["results_accepted"], 300, "{r}");
    // Every refusal the fleet saw is one the server counted, and nothing else was refused.
    assert_eq!(r["refusals"], r["server"]["connections_refused"], "{r}");
    assert!(r["peak_connected"].as_u64().unwrap() <= 300, "{r}");
}

/// A real worker refused with `too_many_connections` waits (jittered backoff) and tries again
/// until a place frees up; each failed attempt is exactly one refusal the server counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_worker_retries_until_it_gets_in() {
    use crate::common::{RawClient, TestServer};
    use piswarm::coordinator::CoreConfig;
    use piswarm::job::Job;
    use piswarm::net::ServerConfig;
    use piswarm::worker::{run_worker, WorkerConfig};

    let config = ServerConfig {
        max_connections: 1,
        ..ServerConfig::default()
    };
    let server_metrics = config.metrics.clone();
    let job = Job::new(Some(1_000_000), Some(100_000)).unwrap();
    let server = TestServer::start_with(CoreConfig::new(job), config).await;
    // One idle, handshaken session holds the only place.
    let mut holder = RawClient::connect(server.addr).await;
    holder.hello("holder").await;

    let mut patient = WorkerConfig::new(server.addr.to_string());
    patient.retry_for = Some(Duration::from_secs(60));
    let worker_metrics = patient.metrics.clone();
    let worker = tokio::spawn(run_worker(patient, Default::default()));
    // Wait until it has been refused twice (three attempts), then free the place.
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while worker_metrics.connection_attempts.get() < 3 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the worker did not retry"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    drop(holder);
    let summary = tokio::time::timeout(DEADLINE, worker)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(summary.accepted, 10);
    let attempts = worker_metrics.connection_attempts.get();
    assert_eq!(server_metrics.connections_refused.get(), attempts - 1);
    assert_eq!(worker_metrics.reconnects.get(), 0, "welcomed once");
    server.stop().await;
}
