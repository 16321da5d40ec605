//! `GET /healthz` and `GET /readyz`: answered without the UI token (probes carry none), ready
//! only while the TCP server serves and the store is healthy.

use super::*;

const UI_TOKEN: &str = "health-test-ui-token-0123456789";

#[test]
fn probes_need_no_token_and_readiness_follows_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = serve(
        dir.path(),
        &["--http", "127.0.0.1:0", "--chunk", "1000", "--quiet"],
        &[("PISWARM_UI_TOKEN", UI_TOKEN)],
    );
    let addr = server.http.clone().unwrap();
    let json = |body: &str| -> serde_json::Value { serde_json::from_str(body).unwrap() };

    let (code, body) = http(&addr, "GET", "/healthz", None);
    assert_eq!((code, json(&body)["status"].as_str()), (200, Some("ok")));
    let (code, body) = http(&addr, "GET", "/readyz", None);
    assert_eq!(code, 200, "{body}");
    assert_eq!(json(&body)["ready"], true);
    // Everything else still needs the token.
    assert_eq!(http(&addr, "GET", "/api/status", None).0, 401);
    assert_eq!(http(&addr, "GET", "/metrics", None).0, 401);

    // Stopping the TCP server makes the process unready (but alive), with a reason.
    let (code, body) = http(&addr, "POST", "/api/server/stop", Some(UI_TOKEN));
    assert_eq!(code, 200, "{body}");
    let (code, body) = http(&addr, "GET", "/readyz", None);
    assert_eq!(code, 503, "{body}");
    let answer = json(&body);
    assert_eq!(answer["ready"], false);
    assert!(
        answer["reason"].as_str().unwrap().contains("stopped"),
        "{answer}"
    );
    assert_eq!(http(&addr, "GET", "/healthz", None).0, 200);

    // And ready again once it serves.
    let (code, body) = http(&addr, "POST", "/api/server/start", Some(UI_TOKEN));
    assert_eq!(code, 200, "{body}");
    assert_eq!(http(&addr, "GET", "/readyz", None).0, 200);
    // A token the user gave is never printed, not even in the dashboard's URL.
    assert!(!server.proc.stdout_so_far().contains(UI_TOKEN));
    assert!(server.proc.terminate().success());
}

/// A node whose store cannot make results durable (here: its disk has less free space than
/// `--min-free-disk`, which the coordinator checks every 5 s) is alive but not ready.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_store_makes_the_coordinator_unready() {
    use axum::body::Body;
    use axum::http::{header, Request};
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    let dir = tempfile::tempdir().unwrap();
    let job = piswarm::job::Job::new(None, Some(1000)).unwrap();
    let mut options = piswarm::node::ServeOptions::new(
        job,
        dir.path().join("piswarm.db"),
        dir.path().to_path_buf(),
    );
    options.min_free_disk = Some(u64::MAX);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let node = piswarm::node::Node::start(options, listener, true)
        .await
        .unwrap();
    let app = piswarm::web::router(node.clone(), Some(piswarm::wire::Secret::new(UI_TOKEN)));
    let probe = |path: &'static str| {
        let app = app.clone();
        async move {
            let request = Request::get(path)
                .header(header::HOST, "127.0.0.1:8080")
                .body(Body::empty())
                .unwrap();
            let response = app.oneshot(request).await.unwrap();
            let code = response.status().as_u16();
            let body = response.into_body().collect().await.unwrap().to_bytes();
            (
                code,
                serde_json::from_slice::<serde_json::Value>(&body).unwrap(),
            )
        }
    };
    let deadline = tokio::time::Instant::now() + DEADLINE;
    let answer = loop {
        let (code, answer) = probe("/readyz").await;
        if code == 503 {
            break answer;
        }
        assert_eq!(code, 200, "{answer}");
        assert!(
            tokio::time::Instant::now() < deadline,
            "still ready: {answer}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(answer["ready"], false);
    let reason = answer["reason"].as_str().unwrap();
    assert!(
        reason.contains("store failed") && reason.contains("--min-free-disk"),
        "{reason}"
    );
    assert_eq!(probe("/healthz").await.0, 200);
    node.shutdown().await.ok();
}
