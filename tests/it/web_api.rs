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
    wait_for_long(app, Duration::from_secs(30), what).await
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
    // Terms covered have one name and one type on every path: `done_terms`, a decimal string.
    let (_, run) = call(&f.app, get("/api/runs/current")).await;
    let (_, status) = call(&f.app, get("/api/status")).await;
    let points = plots["error"].as_array().unwrap();
    let workers = plots["workers"].as_array().unwrap();
    for (what, value) in [("status", &status["run"]), ("run", &run)]
        .into_iter()
        .chain(points.iter().map(|p| ("error point", p)))
        .chain(workers.iter().map(|w| ("worker", w)))
    {
        let terms = value["done_terms"].as_str();
        assert!(
            terms.is_some_and(|t| t.parse::<u64>().is_ok()),
            "{what}: {value}"
        );
        assert!(value.get("terms_done").is_none(), "{what}: {value}");
    }
    assert_eq!(points.last().unwrap()["done_terms"], json!("5000"));

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
    for asset in ["/assets/style.css", "/api/openapi.json"] {
        let res = f.app.clone().oneshot(get(asset)).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK, "{asset}");
    }
    // Every script the page loads, and every module those import, is served as JavaScript.
    let res = f.app.clone().oneshot(get("/")).await.unwrap();
    let html =
        String::from_utf8(res.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
    let mut todo: Vec<String> = quoted_after(&html, "<script type=\"module\" src=\"");
    assert_eq!(todo, ["/assets/app.js"], "the page's one script");
    let mut served = Vec::new();
    while let Some(path) = todo.pop() {
        if served.contains(&path) {
            continue;
        }
        let res = f.app.clone().oneshot(get(&path)).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK, "{path}");
        assert_eq!(
            res.headers()[header::CONTENT_TYPE],
            "text/javascript; charset=utf-8",
            "{path}"
        );
        let text = String::from_utf8(res.into_body().collect().await.unwrap().to_bytes().to_vec())
            .unwrap();
        todo.extend(
            quoted_after(&text, " from \"./")
                .into_iter()
                .map(|name| format!("/assets/{name}")),
        );
        served.push(path);
    }
    served.sort();
    assert_eq!(
        served,
        ["/assets/app.js", "/assets/format.js", "/assets/plots.js"]
    );
    f.node.shutdown().await.unwrap();
}

/// Each text between `prefix` and the next `"` in `text`.
fn quoted_after(text: &str, prefix: &str) -> Vec<String> {
    text.split(prefix)
        .skip(1)
        .map(|rest| rest.split('"').next().unwrap().to_string())
        .collect()
}

/// A JSON Schema validator for one schema of the OpenAPI document: the document's components
/// sit in the root, so that `#/components/schemas/...` references resolve.
fn validator(doc: &Value, schema: &Value) -> jsonschema::Validator {
    let root = json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "components": doc["components"],
        "allOf": [schema],
    });
    jsonschema::draft202012::new(&root).unwrap_or_else(|e| panic!("schema {schema}: {e}"))
}

fn assert_valid(doc: &Value, schema: &Value, body: &Value, what: &str) {
    let v = validator(doc, schema);
    let errors: Vec<String> = v
        .iter_errors(body)
        .map(|e| format!("{e} at {}", e.instance_path))
        .collect();
    assert!(errors.is_empty(), "{what}: {errors:?}\nbody: {body}");
}

/// The response schema of `method path` for `status`, and its content type.
fn response_schema(doc: &Value, path: &str, method: &str, status: &str) -> (String, Value) {
    let content = doc["paths"][path][method]["responses"][status]["content"]
        .as_object()
        .unwrap_or_else(|| panic!("{method} {path} {status} has content"));
    let (ct, media) = content.iter().next().unwrap();
    (ct.clone(), media["schema"].clone())
}

/// Reads a streaming body until one whole SSE event arrived; returns its data.
async fn first_event(body: axum::body::Body) -> (Value, axum::body::Body) {
    let mut body = body;
    let mut text = String::new();
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(10), body.frame())
            .await
            .expect("an event within 10 s")
            .expect("the stream is open")
            .unwrap();
        if let Ok(data) = frame.into_data() {
            text.push_str(std::str::from_utf8(&data).unwrap());
        }
        if let Some(end) = text.find("\n\n") {
            let event = &text[..end];
            if let Some(data) = event.lines().find_map(|l| l.strip_prefix("data: ")) {
                return (serde_json::from_str(data).unwrap(), body);
            }
            text.drain(..end + 2);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_response_matches_the_generated_openapi_document() {
    let f = fixture(Some(20_000), 1000, None).await;
    let (code, c) = call(
        &f.app,
        post("/api/clients", json!({"count": 5, "mode": "once"})),
    )
    .await;
    assert_eq!(code, StatusCode::CREATED, "{c}");
    wait_for(&f.app, |s| s["run"]["intervals_done"] == json!(5)).await;
    // A session that holds intervals: rows for the worker table and the in-flight list.
    let listen: std::net::SocketAddr = f.node.view().listen.parse().unwrap();
    let mut held = crate::common::RawClient::connect(listen).await;
    held.hello("holder").await;
    held.send(r#"{"type":"request","count":2}"#).await;
    held.recv().await;
    let (code, doc) = call(&f.app, get("/api/openapi.json")).await;
    assert_eq!(code, StatusCode::OK);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    // Every response of every path carries a schema.
    let paths = doc["paths"].as_object().unwrap();
    for (path, item) in paths {
        for (method, op) in item.as_object().unwrap() {
            for (status, response) in op["responses"].as_object().unwrap() {
                let content = response["content"].as_object();
                assert!(
                    content.is_some_and(|c| c.values().all(|m| m.get("schema").is_some())),
                    "{method} {path} {status} has a schema"
                );
            }
        }
    }
    // Every GET, called for real, answers what its schema says (with a few query variants).
    let run = wait_for(&f.app, |_| true).await["run"]["id"]
        .as_i64()
        .unwrap();
    let mut checked = 0;
    for (path, item) in paths {
        if item.get("get").is_none() || path == "/api/events" {
            continue;
        }
        let concrete = path.replace("{id}", &run.to_string());
        let mut urls = vec![concrete.clone()];
        match path.as_str() {
            "/api/runs/{id}/results" => urls.extend([
                format!("{concrete}?sort=interval&limit=2"),
                format!("{concrete}?sort=interval&order=desc&from=3&limit=2"),
                format!("{concrete}?last=true&limit=2"),
                format!("{concrete}?worker=local-1"),
            ]),
            "/api/workers" => urls.push("/api/workers?sort=name&order=asc&limit=1".into()),
            "/api/runs/{id}/final" => urls.push(path.replace("{id}", "current")),
            _ => {}
        }
        let (ct, schema) = response_schema(&doc, path, "get", "200");
        for url in urls {
            let res = f.app.clone().oneshot(get(&url)).await.unwrap();
            assert_eq!(res.status(), StatusCode::OK, "{url}");
            let bytes = res.into_body().collect().await.unwrap().to_bytes();
            let body = if ct == "application/json" {
                serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{url}: {e}"))
            } else {
                Value::String(String::from_utf8(bytes.to_vec()).unwrap())
            };
            assert_valid(&doc, &schema, &body, &url);
            checked += 1;
        }
    }
    assert!(checked >= 18, "{checked} responses checked");
    // The check has teeth: a status with a field of the wrong type, or without one, fails it.
    let (_, schema) = response_schema(&doc, "/api/status", "get", "200");
    let (_, status) = call(&f.app, get("/api/status")).await;
    let status_validator = validator(&doc, &schema);
    assert!(status_validator.is_valid(&status));
    let mut bad = status.clone();
    bad["run"]["done_terms"] = json!(12);
    assert!(!status_validator.is_valid(&bad));
    let mut bad = status;
    bad["server"].as_object_mut().unwrap().remove("running");
    assert!(!status_validator.is_valid(&bad));
    // Errors too.
    for (url, path) in [
        ("/api/runs/999", "/api/runs/{id}"),
        ("/api/runs/999/results", "/api/runs/{id}/results"),
    ] {
        let (code, body) = call(&f.app, get(url)).await;
        assert_eq!(code, StatusCode::NOT_FOUND);
        let (_, schema) = response_schema(&doc, path, "get", "404");
        assert_valid(&doc, &schema, &body, url);
    }
    // The live stream's events are LiveUpdates.
    let res = f.app.clone().oneshot(get("/api/events")).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let (event, _) = first_event(res.into_body()).await;
    assert_valid(
        &doc,
        &json!({"$ref": "#/components/schemas/LiveUpdate"}),
        &event,
        "/api/events",
    );
    assert_eq!(event["run"], json!(run));
    assert_eq!(event["after"], Value::Null, "the first update of a stream");
    drop(held);
    f.node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_event_stream_ends_when_the_dashboard_stops() {
    let dir = tempfile::tempdir().unwrap();
    let job = Job::new(Some(10_000), Some(1000)).unwrap();
    let options = ServeOptions::new(job, dir.path().join("piswarm.db"), dir.path().to_path_buf());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let node = Node::start(options, listener, true).await.unwrap();
    let stop = tokio_util::sync::CancellationToken::new();
    let app = piswarm::web::router_with(
        node.clone(),
        piswarm::web::WebOptions {
            stop: stop.clone(),
            ..Default::default()
        },
    );
    let mut streams = Vec::new();
    for _ in 0..3 {
        let res = app.clone().oneshot(get("/api/events")).await.unwrap();
        let (_, body) = first_event(res.into_body()).await;
        streams.push(body);
    }
    stop.cancel();
    for body in streams {
        // The rest of the stream is finite: it ends once the token is cancelled.
        tokio::time::timeout(Duration::from_secs(10), body.collect())
            .await
            .expect("the stream ends")
            .unwrap();
    }
    node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_foreign_host_is_refused_without_a_token() {
    // DNS rebinding: a page of evil.example whose name now resolves to 127.0.0.1 sends its own
    // name as Host (and the Origin matches it).
    let f = fixture(Some(10_000), 1000, None).await;
    for (method, path) in [
        ("GET", "/api/status"),
        ("POST", "/api/shutdown"),
        ("POST", "/api/runs"),
        ("POST", "/api/clients"),
        ("GET", "/"),
    ] {
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, "evil.example:8080")
            .header(header::ORIGIN, "http://evil.example:8080")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(r#"{"count": 1, "mode": "once"}"#))
            .unwrap();
        let (code, body) = call(&f.app, req).await;
        assert_eq!(code, StatusCode::FORBIDDEN, "{method} {path}");
        assert!(body["error"].as_str().unwrap().contains("evil.example"));
    }
    assert!(!f.node.exit_requested().is_cancelled(), "nothing was done");
    assert_eq!(f.node.local_clients(), 0);
    for host in ["localhost:8080", "127.0.0.1:8080", "[::1]:8080"] {
        let req = Request::get("/api/status")
            .header(header::HOST, host)
            .body(Body::empty())
            .unwrap();
        assert_eq!(call(&f.app, req).await.0, StatusCode::OK, "{host}");
    }
    f.node.shutdown().await.unwrap();
    // With a token, the token is what protects the dashboard (any name may reach it).
    let f = fixture(Some(10_000), 1000, Some("s3cret")).await;
    let req = Request::get("/api/status")
        .header(header::HOST, "piswarm.lab.example:8080")
        .header(header::AUTHORIZATION, "Bearer s3cret")
        .body(Body::empty())
        .unwrap();
    assert_eq!(call(&f.app, req).await.0, StatusCode::OK);
    f.node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn errors_speak_the_callers_language() {
    let f = fixture(Some(10_000), 1000, None).await;
    let (_, _) = call(&f.app, post_empty("/api/server/stop")).await;
    let pt = |mut req: Request<Body>| {
        req.headers_mut()
            .insert(header::ACCEPT_LANGUAGE, "pt-BR,pt;q=0.9".parse().unwrap());
        req
    };
    let (code, e) = call(
        &f.app,
        pt(post("/api/clients", json!({"count": 1, "mode": "once"}))),
    )
    .await;
    assert_eq!(code, StatusCode::CONFLICT);
    assert_eq!(
        e["error"],
        json!("o servidor TCP não está em execução: inicie-o primeiro")
    );
    let (code, e) = call(&f.app, pt(get("/api/runs/999"))).await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    assert_eq!(e["error"], json!("a execução 999 não existe"));
    let (code, e) = call(&f.app, pt(post("/api/runs", json!({"terms": 0})))).await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        e["error"],
        json!("o número de termos deve ser pelo menos 1")
    );
    let (_, e) = call(&f.app, pt(get("/api/nowhere"))).await;
    assert!(e["error"]
        .as_str()
        .unwrap()
        .starts_with("caminho inexistente"));
    // The toggle's cookie chooses too; English otherwise.
    let mut req = get("/api/runs/999");
    req.headers_mut()
        .insert(header::COOKIE, "lang=pt-BR".parse().unwrap());
    assert_eq!(
        call(&f.app, req).await.1["error"],
        json!("a execução 999 não existe")
    );
    assert_eq!(
        call(&f.app, get("/api/runs/999")).await.1["error"],
        json!("run 999 does not exist")
    );
    f.node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn history_pages_by_arrival_or_interval_and_jumps() {
    let f = fixture(Some(30_000), 1000, None).await;
    let (code, _) = call(
        &f.app,
        post("/api/clients", json!({"count": 2, "mode": "until_done"})),
    )
    .await;
    assert_eq!(code, StatusCode::CREATED);
    wait_for(&f.app, |s| s["run"]["complete"] == json!(true)).await;
    let page = |q: &str| {
        let app = f.app.clone();
        let url = format!("/api/runs/current/results?{q}");
        async move {
            let (code, p) = call(&app, get(&url)).await;
            assert_eq!(code, StatusCode::OK, "{url}: {p}");
            p
        }
    };
    let ids = |p: &Value| -> Vec<u64> {
        p["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_str().unwrap().parse().unwrap())
            .collect()
    };
    // Interval order, page by page, forwards and back.
    let p1 = page("sort=interval&limit=10").await;
    assert_eq!(ids(&p1), (0..10).collect::<Vec<_>>());
    assert_eq!(p1["total"], json!(30));
    assert_eq!(p1["prev_cursor"], Value::Null);
    let p2 = page(&format!(
        "sort=interval&limit=10&cursor={}",
        p1["next_cursor"]
    ))
    .await;
    assert_eq!(ids(&p2), (10..20).collect::<Vec<_>>());
    let back = page(&format!(
        "sort=interval&limit=10&before={}",
        p2["prev_cursor"]
    ))
    .await;
    assert_eq!(ids(&back), ids(&p1));
    let last = page("sort=interval&limit=10&last=true").await;
    assert_eq!(ids(&last), (20..30).collect::<Vec<_>>());
    assert_eq!(last["next_cursor"], Value::Null);
    // A jump, in either order.
    let jump = page("sort=interval&limit=3&from=17").await;
    assert_eq!(ids(&jump), [17, 18, 19]);
    assert!(jump["prev_cursor"].is_i64());
    let jump = page("sort=interval&order=desc&limit=3&from=17").await;
    assert_eq!(ids(&jump), [17, 16, 15]);
    // Arrival order: seq strictly decreasing, and the same 30 results in all.
    let all = page("limit=1000").await;
    let seqs: Vec<i64> = all["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["seq"].as_i64().unwrap())
        .collect();
    assert!(seqs.windows(2).all(|w| w[0] > w[1]));
    let mut sorted = ids(&all);
    sorted.sort();
    assert_eq!(sorted, (0..30).collect::<Vec<_>>());
    // One worker's results, and their count.
    let name = all["results"][0]["worker"].as_str().unwrap().to_string();
    let mine = page(&format!("worker={name}&limit=1000")).await;
    assert!(mine["results"]
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["worker"] == json!(name)));
    assert_eq!(
        mine["total"],
        json!(mine["results"].as_array().unwrap().len())
    );
    let (code, _) = call(&f.app, get("/api/runs/current/results?cursor=1&from=2")).await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    f.node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_worker_table_and_the_intervals_in_flight() {
    let f = fixture(None, 1000, None).await;
    let listen: std::net::SocketAddr = f.node.view().listen.parse().unwrap();
    let mut a = crate::common::RawClient::connect(listen).await;
    a.hello("zeta").await;
    a.send(r#"{"type":"request","count":3}"#).await;
    for _ in 0..3 {
        a.recv().await;
    }
    let mut b = crate::common::RawClient::connect(listen).await;
    b.hello("alpha").await;
    let (code, w) = call(&f.app, get("/api/workers?sort=name&order=asc")).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(w["total"], json!(2));
    let rows = w["workers"].as_array().unwrap();
    assert_eq!(rows[0]["name"], json!("alpha"));
    assert_eq!(rows[1]["name"], json!("zeta"));
    assert_eq!(rows[1]["in_hand"], json!(3));
    assert_eq!(rows[1]["kind"], json!("other"));
    assert!(rows[1]["connected_at"].as_str().unwrap().ends_with('Z'));
    let (_, w) = call(&f.app, get("/api/workers?sort=in_hand&offset=1&limit=1")).await;
    assert_eq!(w["workers"].as_array().unwrap().len(), 1);
    assert_eq!(w["workers"][0]["name"], json!("alpha"));
    let (code, held) = call(&f.app, get("/api/in-flight")).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(held["total"], json!(3));
    let first = &held["intervals"][0];
    assert_eq!(first["worker"], json!("zeta"));
    assert_eq!(first["a"], json!("0"));
    assert_eq!(first["b"], json!("999"));
    let (_, held) = call(&f.app, get("/api/in-flight?worker=alpha")).await;
    assert_eq!(held["total"], json!(0));
    let (code, _) = call(&f.app, get("/api/workers?sort=shoe")).await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    drop((a, b));
    f.node.shutdown().await.unwrap();
}

/// A local client is a connection on one shared pool of compute threads, not a thread: the
/// default cap allows 1 000 at once, and 259 (the original's whole demo) and then 1 000
/// one-interval clients created through the API all complete, with exact sums.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_thousand_local_clients_complete_exactly() {
    // 1 259 intervals of 1 000 terms: one for each client of both crowds.
    let f = fixture(Some(1_259_000), 1000, None).await;
    let (_, s) = call(&f.app, get("/api/status")).await;
    assert!(
        s["server"]["max_local_clients"].as_u64().unwrap() >= 1000,
        "{s}"
    );
    let threads_before = process_threads();
    let mut done = 0;
    for crowd in [259u64, 1000] {
        let (code, c) = call(
            &f.app,
            post("/api/clients", json!({"count": crowd, "mode": "once"})),
        )
        .await;
        assert_eq!(code, StatusCode::CREATED, "{c}");
        assert_eq!(c["created"], json!(crowd));
        if crowd == 1000 {
            // A thousand clients at once add no thread each (the shared pool is one per core).
            // The count is the whole test process's, where other tests run their own threads
            // meanwhile (11 more than before was seen once): a bound far below one per client.
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
            let added = process_threads().saturating_sub(threads_before);
            assert!(
                added <= cores + 48,
                "{added} threads more with 1 000 local clients running"
            );
        }
        done += crowd;
        let want = json!(done);
        let s = wait_for_long(&f.app, Duration::from_secs(120), |s| {
            s["run"]["intervals_done"] == want && s["server"]["local_clients"] == json!(0)
        })
        .await;
        // Exact sums of [0, 1000·done − 1]: the evens are 2·(0 + … + (m − 1)) = m(m − 1), the odds
        // m², with m = 500·done.
        let m = 500 * u128::from(done);
        assert_eq!(
            s["run"]["even_sum"],
            json!((m * (m - 1)).to_string()),
            "{s}"
        );
        assert_eq!(s["run"]["odd_sum"], json!((m * m).to_string()), "{s}");
        assert_eq!(s["run"]["results_rejected"], json!(0), "{s}");
    }
    let (_, s) = call(&f.app, get("/api/status")).await;
    assert_eq!(s["run"]["complete"], json!(true), "{s}");
    f.node.shutdown().await.unwrap();
}

/// Threads of this process (Linux).
fn process_threads() -> usize {
    std::fs::read_dir("/proc/self/task").map_or(0, |d| d.count())
}

async fn wait_for_long(app: &Router, limit: Duration, what: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let (_, status) = call(app, get("/api/status")).await;
        if what(&status) {
            return status;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out; last status {status}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
