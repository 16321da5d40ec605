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
