//! The dashboard's JSON API, through the router itself (tower's `oneshot`), on a real node: a real
//! coordinator with its store, and real local clients over loopback TCP.

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use piswarm::commands::serve::ServeOptions;
use piswarm::job::Job;
use piswarm::node::Node;
use piswarm::wire::secret::Secret;
use serde_json::{json, Value};
use std::time::Duration;
use tokio::net::TcpListener;
use tower::ServiceExt;

struct Fixture {
    node: Node,
    app: Router,
    _dir: tempfile::TempDir,
}

async fn fixture(terms: Option<u64>, chunk: u64, token: Option<&str>) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let job = Job::new(terms, Some(chunk)).unwrap();
    let options = ServeOptions::new(job, dir.path().join("piswarm.db"), dir.path().to_path_buf());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let node = Node::start(options, listener, true).await.unwrap();
    let app = piswarm::web::router(node.clone(), token.map(Secret::new));
    Fixture {
        node,
        app,
        _dir: dir,
    }
}

async fn call(app: &Router, req: Request<Body>) -> (StatusCode, Value) {
    let res = app.clone().oneshot(req).await.unwrap();
    let status = res.status();
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (status, value)
}

fn get(path: &str) -> Request<Body> {
    Request::get(path)
        .header(header::HOST, "127.0.0.1:8080")
        .body(Body::empty())
        .unwrap()
}

fn post(path: &str, body: Value) -> Request<Body> {
    Request::post(path)
        .header(header::HOST, "127.0.0.1:8080")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .unwrap()
}

fn post_empty(path: &str) -> Request<Body> {
    Request::post(path)
        .header(header::HOST, "127.0.0.1:8080")
        .body(Body::empty())
        .unwrap()
}

async fn wait_for(app: &Router, what: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (_, status) = call(app, get("/api/status")).await;
        if what(&status) {
            return status;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out; last status {status}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn status_has_the_documented_shape() {
    let f = fixture(Some(10_000), 1000, None).await;
    let (code, s) = call(&f.app, get("/api/status")).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(s["server"]["running"], json!(true));
    assert!(s["server"]["listen"]
        .as_str()
        .unwrap()
        .starts_with("127.0.0.1:"));
    assert!(s["server"]["clients"].is_u64());
    assert!(s["server"]["uptime_s"].is_f64());
    assert!(s["run"]["id"].is_i64());
    assert_eq!(s["run"]["terms"], json!(10_000));
    assert_eq!(s["run"]["chunk"], json!(1000));
    assert_eq!(s["run"]["done_terms"], json!("0"));
    assert_eq!(s["run"]["intervals_done"], json!(0));
    assert_eq!(s["run"]["intervals_total"], json!(10));
    f.node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn start_stop_clients_and_results() {
    let f = fixture(Some(5_000), 1000, None).await;
    let (code, s) = call(&f.app, post_empty("/api/server/stop")).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(s["server"]["running"], json!(false));
    let listen = s["server"]["listen"].as_str().unwrap().to_string();
    assert!(
        tokio::net::TcpStream::connect(&listen).await.is_err(),
        "a stopped server accepts no connection"
    );
    // Clients need a running server.
    let (code, e) = call(
        &f.app,
        post("/api/clients", json!({"count": 5, "mode": "once"})),
    )
    .await;
    assert_eq!(code, StatusCode::CONFLICT);
    assert!(e["error"].is_string());
    let (code, s) = call(&f.app, post_empty("/api/server/start")).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(s["server"]["running"], json!(true));
    assert_eq!(
        s["server"]["listen"].as_str().unwrap(),
        listen,
        "same address after a restart"
    );
    let (code, c) = call(
        &f.app,
        post("/api/clients", json!({"count": 5, "mode": "once"})),
    )
    .await;
    assert_eq!(code, StatusCode::CREATED, "{c}");
    assert_eq!(c["created"], json!(5));
    let s = wait_for(&f.app, |s| s["run"]["complete"] == json!(true)).await;
    assert_eq!(s["run"]["intervals_done"], json!(5));
    // Even numbers of [0, 4999]: 2·(0 + … + 2499) = 2499·2500; odd: 2500².
    assert_eq!(s["run"]["even_sum"], json!("6247500"));
    assert_eq!(s["run"]["odd_sum"], json!("6250000"));

    // The history, newest first, with cursor paging; `current` is accepted.
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let (_, p) = call(&f.app, get("/api/runs/current/results?limit=10")).await;
            if p["results"].as_array().unwrap().len() == 5 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap();
    let (code, p1) = call(&f.app, get("/api/runs/current/results?limit=2")).await;
    assert_eq!(code, StatusCode::OK);
    let rows = p1["results"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    assert!(rows[0]["seq"].as_i64() > rows[1]["seq"].as_i64());
    let cursor = p1["next_cursor"].as_i64().unwrap();
    let (_, p2) = call(
        &f.app,
        get(&format!(
            "/api/runs/current/results?limit=2&cursor={cursor}"
        )),
    )
    .await;
    let (_, p3) = call(
        &f.app,
        get(&format!(
            "/api/runs/current/results?limit=2&cursor={}",
            p2["next_cursor"].as_i64().unwrap()
        )),
    )
    .await;
    assert_eq!(p3["results"].as_array().unwrap().len(), 1);
    assert_eq!(p3["next_cursor"], Value::Null);
    let mut ids: Vec<String> = [&p1, &p2, &p3]
        .iter()
        .flat_map(|p| p["results"].as_array().unwrap().clone())
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    assert_eq!(ids, ["0", "1", "2", "3", "4"]);

    let run = s["run"]["id"].as_i64().unwrap();
    let (code, fin) = call(&f.app, get(&format!("/api/runs/{run}/final"))).await;
    assert_eq!(code, StatusCode::OK);
    for field in [
        "terms",
        "chunk",
        "intervals",
        "even_sum",
        "odd_sum",
        "pi",
        "pi_error",
        "correct_digits",
        "pi_corrected",
        "workers",
        "elapsed_s",
        "terms_per_s",
    ] {
        assert!(fin.get(field).is_some(), "final has {field}: {fin}");
    }
    assert_eq!(fin["even_sum"], json!("6247500"));

    let (code, cov) = call(&f.app, get("/api/runs/current/coverage?buckets=5")).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(cov["span"], json!(5));
    assert!(cov["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .all(|b| b["done"] == json!(1)));
    let (code, plots) = call(&f.app, get("/api/runs/current/plots")).await;
    assert_eq!(code, StatusCode::OK);
    assert!(!plots["error"].as_array().unwrap().is_empty());
    assert!(!plots["workers"].as_array().unwrap().is_empty());

    let res = f
        .app
        .clone()
        .oneshot(get("/api/runs/current/results.csv"))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.headers()[header::CONTENT_DISPOSITION]
        .to_str()
        .unwrap()
        .starts_with("attachment"));
    let csv = res.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(
        csv.split(|&b| b == b'\n').filter(|l| !l.is_empty()).count(),
        6
    );

    let (code, s) = call(&f.app, post_empty("/api/server/stop")).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(s["server"]["running"], json!(false));
    f.node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn runs_are_created_and_listed() {
    let f = fixture(None, 1000, None).await;
    let (_, s) = call(&f.app, get("/api/status")).await;
    let first = s["run"]["id"].as_i64().unwrap();
    let (code, run) = call(
        &f.app,
        post("/api/runs", json!({"terms": 20_000, "chunk": 1000})),
    )
    .await;
    assert_eq!(code, StatusCode::CREATED, "{run}");
    let second = run["id"].as_i64().unwrap();
    assert!(second > first);
    assert_eq!(run["terms"], json!(20_000));
    let (_, s) = call(&f.app, get("/api/status")).await;
    assert_eq!(s["run"]["id"], json!(second));
    assert_eq!(
        s["server"]["running"],
        json!(true),
        "the server keeps running"
    );
    let (code, list) = call(&f.app, get("/api/runs")).await;
    assert_eq!(code, StatusCode::OK);
    let list = list.as_array().unwrap();
    assert_eq!(list[0]["id"], json!(second));
    assert_eq!(list[0]["current"], json!(true));
    assert_eq!(list[1]["id"], json!(first));
    assert_eq!(list[1]["state"], json!("stopped"));
    // The earlier run stays viewable.
    let (code, _) = call(&f.app, get(&format!("/api/runs/{first}/final"))).await;
    assert_eq!(code, StatusCode::OK);
    let (code, _) = call(&f.app, get(&format!("/api/runs/{first}/coverage"))).await;
    assert_eq!(code, StatusCode::OK);
    // Bad jobs.
    let (code, e) = call(
        &f.app,
        post("/api/runs", json!({"terms": 0, "chunk": 1000})),
    )
    .await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(e["error"].is_string());
    let (code, _) = call(&f.app, post("/api/runs", json!({"terms": "lots"}))).await;
    assert!(code.is_client_error());
    let (code, _) = call(&f.app, post("/api/runs", json!({"terms": -5}))).await;
    assert!(code.is_client_error());
    // Counts written like on the command line.
    let (code, run) = call(
        &f.app,
        post("/api/runs", json!({"terms": "1e10", "chunk": "10^7"})),
    )
    .await;
    assert_eq!(code, StatusCode::CREATED, "{run}");
    assert_eq!(run["terms"], json!(10_000_000_000u64));
    assert_eq!(run["chunk"], json!(10_000_000));
    f.node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn malformed_and_refused_requests_get_json_4xx() {
    let f = fixture(Some(10_000), 1000, None).await;
    let cases: Vec<(Request<Body>, StatusCode)> = vec![
        (
            post("/api/clients", json!({"count": 0, "mode": "once"})),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            post("/api/clients", json!({"count": 1001, "mode": "once"})),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            post("/api/clients", json!({"count": 5, "mode": "forever"})),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            post("/api/clients", json!({"count": -1, "mode": "once"})),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            post("/api/clients", json!("five")),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            Request::post("/api/clients")
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from("{\"count\": 5,"))
                .unwrap(),
            StatusCode::BAD_REQUEST,
        ),
        (
            Request::post("/api/clients")
                .body(Body::from("count=5"))
                .unwrap(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        (get("/api/runs/999/results"), StatusCode::NOT_FOUND),
        (get("/api/runs/999/final"), StatusCode::NOT_FOUND),
        (get("/api/runs/nope/final"), StatusCode::NOT_FOUND),
        (
            get("/api/runs/current/results?cursor=abc"),
            StatusCode::BAD_REQUEST,
        ),
        (
            get("/api/runs/current/results?limit=0"),
            StatusCode::BAD_REQUEST,
        ),
        (get("/api/no/such/path"), StatusCode::NOT_FOUND),
        (get("/api/server/stop"), StatusCode::METHOD_NOT_ALLOWED),
        (get("/api/clients"), StatusCode::METHOD_NOT_ALLOWED),
    ];
    for (req, expected) in cases {
        let what = format!("{} {}", req.method(), req.uri());
        let (code, body) = call(&f.app, req).await;
        assert_eq!(code, expected, "{what}: {body}");
        assert!(
            body["error"].is_string(),
            "{what}: JSON error body, got {body}"
        );
    }
    // Cross-site state changes are refused, and change nothing.
    let mut req = post_empty("/api/server/stop");
    req.headers_mut()
        .insert(header::ORIGIN, "http://evil.example".parse().unwrap());
    let (code, body) = call(&f.app, req).await;
    assert_eq!(code, StatusCode::FORBIDDEN);
    assert!(body["error"].is_string());
    let mut req = post("/api/clients", json!({"count": 1, "mode": "once"}));
    req.headers_mut()
        .insert("sec-fetch-site", "cross-site".parse().unwrap());
    let (code, _) = call(&f.app, req).await;
    assert_eq!(code, StatusCode::FORBIDDEN);
    let (_, s) = call(&f.app, get("/api/status")).await;
    assert_eq!(s["server"]["running"], json!(true));
    // Same-origin is fine.
    let mut req = post_empty("/api/server/stop");
    req.headers_mut()
        .insert(header::ORIGIN, "http://127.0.0.1:8080".parse().unwrap());
    let (code, _) = call(&f.app, req).await;
    assert_eq!(code, StatusCode::OK);
    f.node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_ui_token_is_required_when_set() {
    let f = fixture(Some(10_000), 1000, Some("s3cret")).await;
    let (code, body) = call(&f.app, get("/api/status")).await;
    assert_eq!(code, StatusCode::UNAUTHORIZED);
    assert!(body["error"].is_string());
    let mut req = get("/api/status");
    req.headers_mut()
        .insert(header::AUTHORIZATION, "Bearer wrong".parse().unwrap());
    assert_eq!(call(&f.app, req).await.0, StatusCode::UNAUTHORIZED);
    let mut req = get("/api/status");
    req.headers_mut()
        .insert(header::AUTHORIZATION, "Bearer s3cret".parse().unwrap());
    assert_eq!(call(&f.app, req).await.0, StatusCode::OK);
    // ?token= once sets a cookie that works afterwards.
    let res = f.app.clone().oneshot(get("/?token=s3cret")).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let cookie = res.headers()[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .to_string();
    assert!(cookie.contains("HttpOnly"));
    let pair = cookie.split(';').next().unwrap().to_string();
    let mut req = get("/api/status");
    req.headers_mut()
        .insert(header::COOKIE, pair.parse().unwrap());
    assert_eq!(call(&f.app, req).await.0, StatusCode::OK);
    f.node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_page_is_english_or_portuguese() {
    let f = fixture(None, 1000, None).await;
    let page = |lang: Option<&str>, q: &str| {
        let mut b = Request::get(format!("/{q}"));
        if let Some(l) = lang {
            b = b.header(header::ACCEPT_LANGUAGE, l);
        }
        b.body(Body::empty()).unwrap()
    };
    for (lang, q, expect) in [
        (None, "", "Start"),
        (Some("pt-BR,pt;q=0.9"), "", "Iniciar"),
        (Some("en-US"), "?lang=pt-BR", "Iniciar"),
        (Some("pt-BR"), "?lang=en", "Start"),
    ] {
        let res = f.app.clone().oneshot(page(lang, q)).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        let html = String::from_utf8(res.into_body().collect().await.unwrap().to_bytes().to_vec())
            .unwrap();
        assert!(html.contains(expect), "{lang:?} {q}: {expect}");
        assert!(
            !html.contains("http://") && !html.contains("https://"),
            "no external resources"
        );
    }
    for asset in ["/assets/app.js", "/assets/style.css", "/api/openapi.json"] {
        let res = f.app.clone().oneshot(get(asset)).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK, "{asset}");
    }
    f.node.shutdown().await.unwrap();
}
