//! `GET /metrics`: real output parsed with a Prometheus text-format parser, and its counts equal
//! to `/api/status` after a run.

use super::*;
use crate::common::TestServer;
use piswarm::job::Job;
use piswarm::worker::{run_worker, WorkerConfig};
use std::collections::BTreeMap;

const UI_TOKEN: &str = "metrics-test-ui-token-0123456789";

#[test]
fn metrics_agree_exactly_with_the_status_after_a_run() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = serve(
        dir.path(),
        &[
            "--http",
            "127.0.0.1:0",
            "--metrics",
            "127.0.0.1:0",
            "--terms",
            "2e7",
            "--chunk",
            "1e5",
            "--quiet",
        ],
        &[("PISWARM_UI_TOKEN", UI_TOKEN)],
    );
    let (http_addr, metrics_addr) = (
        server.http.clone().unwrap(),
        server.metrics.clone().unwrap(),
    );
    let mut workers: Vec<Proc> = (0..2)
        .map(|i| {
            Proc::start(
                dir.path(),
                &format!("worker{i}"),
                &[
                    "worker",
                    "--connect",
                    &server.listen,
                    "--threads",
                    "1",
                    "--name",
                    &format!("w{i}"),
                ],
                &[],
            )
        })
        .collect();
    for w in &mut workers {
        assert!(w.wait().success(), "worker failed: {}", w.stderr());
    }
    // Once the run is complete and both sessions have ended, nothing changes any more but the
    // store's commits (below): the status and the scrapes read the same frozen numbers.
    let scrape = poll("a complete run with no connection left", || {
        let (code, body) = http(&metrics_addr, "GET", "/metrics", None);
        assert_eq!(code, 200, "{body}");
        let s = Scrape::parse(&body);
        let open: f64 = s.family("piswarm_connections").iter().map(|(_, v)| v).sum();
        let workers: f64 = s.family("piswarm_workers").iter().map(|(_, v)| v).sum();
        (s.get("piswarm_run_complete") == 1.0 && open == 0.0 && workers == 0.0).then_some(s)
    });
    let (code, body) = http(&http_addr, "GET", "/api/status", Some(UI_TOKEN));
    assert_eq!(code, 200, "{body}");
    let status: serde_json::Value = serde_json::from_str(&body).unwrap();
    let run = &status["run"];

    let intervals = run["intervals_done"].as_u64().unwrap();
    assert_eq!(intervals, 200);
    assert_eq!(scrape.get("piswarm_intervals_done"), intervals as f64);
    assert_eq!(
        scrape.get("piswarm_intervals"),
        run["intervals_total"].as_u64().unwrap() as f64
    );
    assert_eq!(
        scrape.get("piswarm_intervals_in_flight"),
        run["in_flight"].as_u64().unwrap() as f64
    );
    let terms: u64 = run["done_terms"].as_str().unwrap().parse().unwrap();
    assert_eq!(scrape.get("piswarm_terms_done_total"), terms as f64);
    assert_eq!(
        scrape.get("piswarm_results_total{status=\"accepted\"}"),
        intervals as f64
    );
    // Duplicates come only from backup copies at the tail (both workers are honest).
    let duplicates = scrape.get("piswarm_results_total{status=\"duplicate\"}");
    assert_eq!(
        duplicates,
        run["results_duplicate"].as_u64().unwrap() as f64
    );
    assert!(duplicates <= scrape.get("piswarm_backups_issued_total"));
    assert_eq!(
        scrape.get("piswarm_backups_issued_total"),
        run["backups_issued"].as_u64().unwrap() as f64
    );
    assert_eq!(
        scrape.get("piswarm_backups_won_total"),
        run["backups_won"].as_u64().unwrap() as f64
    );
    let backup_terms: u64 = run["backup_terms"].as_str().unwrap().parse().unwrap();
    assert_eq!(
        scrape.get("piswarm_backup_terms_total"),
        backup_terms as f64
    );
    assert_eq!(
        scrape.get("piswarm_results_total{status=\"rejected\"}"),
        0.0
    );
    assert_eq!(scrape.get("piswarm_leases_expired_total"), 0.0);
    assert_eq!(scrape.get("piswarm_sessions_total"), 2.0);
    let clients = status["server"]["clients"].as_u64().unwrap() as f64;
    let workers: f64 = scrape
        .family("piswarm_workers")
        .iter()
        .map(|(_, v)| v)
        .sum();
    assert_eq!(workers, clients);
    for kind in ["piswarm", "legacy", "browser", "other"] {
        scrape.get(&format!("piswarm_workers{{kind=\"{kind}\"}}"));
    }
    for kind in ["v1", "legacy", "websocket"] {
        assert_eq!(
            scrape.get(&format!("piswarm_connections{{kind=\"{kind}\"}}")),
            0.0
        );
    }
    assert_eq!(scrape.get("piswarm_connections_refused_total"), 0.0);
    let info = format!(
        "piswarm_run_info{{chunk=\"{}\",run=\"{}\",terms=\"{}\"}}",
        run["chunk"], run["id"], run["terms"]
    );
    assert_eq!(scrape.get(&info), 1.0);
    assert_eq!(
        scrape.get("piswarm_run_complete"),
        f64::from(u8::from(run["complete"].as_bool().unwrap()))
    );
    assert_eq!(
        scrape.get("piswarm_serving"),
        f64::from(u8::from(status["server"]["running"].as_bool().unwrap()))
    );
    assert_eq!(scrape.get("piswarm_store_healthy"), 1.0);
    // Every result received was verified once, whatever its verdict: the accepted ones and the
    // duplicates (a backup copy's loser; none is rejected).
    assert_eq!(
        scrape.get("piswarm_result_verify_seconds_count"),
        intervals as f64 + duplicates
    );
    assert_eq!(
        scrape.get("piswarm_result_verify_seconds"),
        intervals as f64 + duplicates
    );
    assert!(scrape.get("piswarm_store_commit_seconds_count") >= 1.0);
    for (name, kind) in [
        ("piswarm_results_total", "counter"),
        ("piswarm_terms_done_total", "counter"),
        ("piswarm_leases_expired_total", "counter"),
        ("piswarm_intervals_done", "gauge"),
        ("piswarm_intervals_in_flight", "gauge"),
        ("piswarm_workers", "gauge"),
        ("piswarm_connections", "gauge"),
        ("piswarm_run_info", "gauge"),
        ("piswarm_store_commit_seconds", "histogram"),
        ("piswarm_result_verify_seconds", "histogram"),
    ] {
        assert_eq!(
            scrape.types.get(name).map(String::as_str),
            Some(kind),
            "{name}"
        );
    }

    // The dashboard serves the same numbers, behind its token.
    let (code, _) = http(&http_addr, "GET", "/metrics", None);
    assert_eq!(code, 401, "/metrics on the dashboard needs the UI token");
    // Every sample the same but the store's commits: the run's totals are written at most a
    // second after its last result (`TOTALS_EVERY`), which may fall between the two scrapes on a
    // busy machine, so those only grow.
    let (code, body) = http(&http_addr, "GET", "/metrics", Some(UI_TOKEN));
    assert_eq!(code, 200);
    let again = Scrape::parse(&body);
    let commits = "piswarm_store_commit_seconds";
    let frozen = |s: &Scrape| -> BTreeMap<String, f64> {
        s.samples
            .iter()
            .filter(|(k, _)| !k.starts_with(commits))
            .map(|(k, v)| (k.clone(), *v))
            .collect()
    };
    assert_eq!(frozen(&again), frozen(&scrape));
    let count = format!("{commits}_count");
    assert!(
        again.get(&count) >= scrape.get(&count),
        "{} then {}",
        scrape.get(&count),
        again.get(&count)
    );

    assert!(server.proc.terminate().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workers_own_metrics_count_what_it_did() {
    let server = TestServer::start(Job::new(Some(4_000_000), Some(100_000)).unwrap()).await;
    let mut config = WorkerConfig::new(server.addr.to_string());
    config.threads = 2;
    let metrics = config.metrics.clone();
    let summary = tokio::time::timeout(DEADLINE, run_worker(config, Default::default()))
        .await
        .unwrap()
        .unwrap();
    let scrape = Scrape::parse(&metrics.render("w"));
    assert_eq!(summary.accepted, 40);
    assert_eq!(
        scrape.get("piswarm_worker_results_accepted_total"),
        summary.accepted as f64
    );
    assert_eq!(
        scrape.get("piswarm_worker_results_duplicate_total"),
        summary.duplicates as f64
    );
    assert_eq!(
        scrape.get("piswarm_worker_results_sent_total"),
        (summary.accepted + summary.duplicates) as f64
    );
    assert_eq!(scrape.get("piswarm_worker_results_resent_total"), 0.0);
    assert_eq!(
        scrape.get("piswarm_worker_terms_computed_total"),
        summary.terms as f64
    );
    assert_eq!(scrape.get("piswarm_worker_connection_attempts_total"), 1.0);
    assert_eq!(scrape.get("piswarm_worker_reconnects_total"), 0.0);
    assert_eq!(scrape.get("piswarm_worker_connected"), 0.0);
    assert_eq!(scrape.get("piswarm_worker_threads"), 2.0);
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(
        scrape.get(&format!(
            "piswarm_worker_info{{name=\"w\",version=\"{version}\"}}"
        )),
        1.0
    );
    server.stop().await;
}

#[test]
fn worker_metrics_flag_serves_them_while_it_works() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = serve(dir.path(), &["--no-http", "--chunk", "1e6", "--quiet"], &[]);
    let mut worker = Proc::start(
        dir.path(),
        "worker",
        &[
            "worker",
            "--connect",
            &server.listen,
            "--threads",
            "1",
            "--metrics",
            "127.0.0.1:0",
        ],
        &[],
    );
    let addr = worker.wait_for_word_after("metrics at http://");
    let addr = addr.split('/').next().unwrap().to_string();
    let scrape = poll("a connected worker with accepted results", || {
        let (code, body) = http(&addr, "GET", "/metrics", None);
        assert_eq!(code, 200);
        let s = Scrape::parse(&body);
        (s.get("piswarm_worker_connected") == 1.0
            && s.get("piswarm_worker_results_accepted_total") > 0.0)
            .then_some(s)
    });
    assert!(scrape.get("piswarm_worker_terms_computed_total") >= 1e6);
    let (code, _) = http(&addr, "GET", "/", None);
    assert_eq!(code, 404, "the metrics listener serves /metrics only");
    assert!(worker.terminate().success(), "{}", worker.stderr());
    assert!(server.proc.terminate().success());
}
