//! Browser workers (`/join`): protocol v1 over the dashboard's WebSocket, and whole runs computed
//! by `/join` pages in headless Chromium beside a `piswarm worker`, against a real `piswarm serve`
//! process. Results are compared with `piswarm run --json` (and the sums with closed forms).
//!
//! Every wait has a deadline; every process is killed at the end (`Process`); traffic stays on
//! loopback.
//!
//! Set PISWARM_SCREENSHOT_JOIN=path and PISWARM_SCREENSHOT_QR=path to also save screenshots of a
//! phone-sized `/join` page and of the dashboard's join panel (docs/browser-workers.md).

use crate::common::*;
use crate::web_browser::{browser, eval, eval_json, viewport};
use headless_chrome::protocol::cdp::Page::CaptureScreenshotFormatOption;
use headless_chrome::Tab;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tungstenite::Message;

/// How long a whole scenario may wait for one condition.
const WAIT: Duration = Duration::from_secs(90);

/// A `piswarm serve` process with its dashboard, on ports it chose itself.
struct Served {
    process: Process,
    /// `http://127.0.0.1:PORT` (no trailing slash).
    http: String,
    /// The workers' TCP address.
    listen: String,
    dir: tempfile::TempDir,
    log: PathBuf,
}

impl Served {
    fn start(terms: &str, chunk: &str, extra: &[&str]) -> Served {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("serve.log");
        let db = dir.path().join("piswarm.db");
        let mut args = vec![
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--http",
            "127.0.0.1:0",
            "--quiet",
            "--max-prefetch",
            "4",
            "--terms",
            terms,
            "--chunk",
            chunk,
            "--db",
            db.to_str().unwrap(),
            "--out",
            dir.path().to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        let process = spawn_piswarm(&args, &log);
        let mut http = String::new();
        let mut listen = String::new();
        wait_until("serve to print its addresses", WAIT, || {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            for line in text.lines() {
                if let Some(rest) = line.split("dashboard at ").nth(1) {
                    let url = rest.split_whitespace().next().unwrap_or("");
                    http = url
                        .split("/?")
                        .next()
                        .unwrap()
                        .trim_end_matches('/')
                        .to_string();
                }
                if let Some(rest) = line.split("coordinator listening on ").nth(1) {
                    listen = rest.split_whitespace().next().unwrap_or("").to_string();
                }
            }
            !http.is_empty() && !listen.is_empty()
        });
        Served {
            process,
            http,
            listen,
            dir,
            log,
        }
    }

    fn ws_url(&self) -> String {
        format!("{}/join/ws", self.http.replacen("http://", "ws://", 1))
    }

    fn final_json(&self) -> Value {
        let text = std::fs::read_to_string(self.dir.path().join("final.json")).unwrap();
        serde_json::from_str(&text).unwrap()
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Stored results of run 1 per worker name.
    fn results_by_worker(&self) -> BTreeMap<String, u64> {
        results_by_worker(&self.dir.path().join("piswarm.db"))
    }
}

/// Stored results of run 1 per worker name, read with SQL from the store (read-only).
fn results_by_worker(db: &Path) -> BTreeMap<String, u64> {
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    let mut stmt = conn
        .prepare("SELECT worker, count(*) FROM results WHERE run_id = 1 GROUP BY worker")
        .unwrap();
    let rows = stmt
        .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, u64>(1)?)))
        .unwrap();
    rows.map(|r| r.unwrap()).collect()
}

fn assert_same_bits(got: &Value, want: &Value, terms: u64) {
    for field in [
        "terms",
        "chunk",
        "intervals",
        "even_sum",
        "odd_sum",
        "pi",
        "pi_bound",
    ] {
        assert_eq!(got[field], want[field], "{field}: {got} vs {want}");
    }
    // And the sums against closed forms, independently of both.
    assert_eq!(got["even_sum"], evens(0, terms - 1).to_string());
    assert_eq!(got["odd_sum"], odds(0, terms - 1).to_string());
}

/// A `piswarm worker` with one thread, named `native`.
fn native_worker(listen: &str, log: &Path) -> Process {
    spawn_piswarm(
        &[
            "worker",
            "--connect",
            listen,
            "--name",
            "native",
            "--threads",
            "1",
        ],
        log,
    )
}

/// Waits until `js` (an expression) is true in the page.
fn page_until(tab: &Tab, what: &str, js: &str) {
    let deadline = Instant::now() + WAIT;
    loop {
        if eval(tab, js) == Value::Bool(true) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what} ({js}); the page says {}",
            eval_json(tab, "window.piswarmJoin ? piswarmJoin.state() : null")
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn join_state(tab: &Tab) -> Value {
    eval_json(tab, "piswarmJoin.state()")
}

fn open_join(tab: &Tab, url: &str) {
    crate::web_browser::navigate(tab, url);
    page_until(
        tab,
        "the join page",
        "typeof window.piswarmJoin === 'object'",
    );
}

/// Runs a browser scenario on a blocking thread, bounded in time.
fn in_chromium<T: Send + 'static>(
    f: impl FnOnce(&headless_chrome::Browser) -> T + Send + 'static,
) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    let handle = std::thread::spawn(move || {
        let (browser, _profile) = browser();
        let out = f(&browser);
        let _ = tx.send(());
        out
    });
    // A panic in the scenario drops the sender: join to report it.
    if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
        rx.recv_timeout(Duration::from_secs(300))
    {
        panic!("the browser scenario took longer than 300 s");
    }
    handle
        .join()
        .unwrap_or_else(|e| std::panic::resume_unwind(e))
}

/// The text of the QR code in a `size`×`size` picture given as one '1' (dark) or '0' per pixel.
fn decode_qr(pixels: &str, size: usize) -> String {
    let bits = pixels.as_bytes();
    assert_eq!(bits.len(), size * size);
    let mut image = rqrr::PreparedImage::prepare_from_greyscale(size, size, |x, y| {
        if bits[y * size + x] == b'1' {
            0
        } else {
            255
        }
    });
    let grids = image.detect_grids();
    assert_eq!(grids.len(), 1, "one QR code in the picture");
    grids[0].decode().expect("a readable QR code").1
}

fn screenshot(tab: &Tab, path: &str) {
    let png = tab
        .capture_screenshot(CaptureScreenshotFormatOption::Png, None, None, true)
        .unwrap();
    std::fs::write(path, png).unwrap();
}

// ------------------------------------------------------------------------------------------
// Protocol v1 over the WebSocket, without a browser
// ------------------------------------------------------------------------------------------

type Ws = tungstenite::WebSocket<tungstenite::stream::MaybeTlsStream<TcpStream>>;

fn ws_connect(url: &str) -> Ws {
    let (ws, _) = tungstenite::connect(url).unwrap();
    if let tungstenite::stream::MaybeTlsStream::Plain(s) = ws.get_ref() {
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    }
    ws
}

fn ws_send(ws: &mut Ws, v: Value) {
    ws.send(Message::text(v.to_string())).unwrap();
}

/// The next text message as JSON (`None` once the server closed).
fn ws_recv(ws: &mut Ws) -> Option<Value> {
    loop {
        match ws.read() {
            Ok(Message::Text(t)) => return Some(serde_json::from_str(t.as_str()).unwrap()),
            Ok(Message::Close(_)) | Err(_) => return None,
            Ok(_) => continue,
        }
    }
}

fn hello(token: Option<&str>) -> Value {
    json!({"type": "hello", "version": 1, "worker": "ws-test", "token": token, "agent": "browser/Test 1 · Linux"})
}

#[test]
fn protocol_v1_over_the_websocket() {
    let s = Served::start("4000", "1000", &["--token", "w0rker"]);
    // No token: the protocol's refusal, as a text message, then the close.
    let mut ws = ws_connect(&s.ws_url());
    ws_send(&mut ws, hello(None));
    let refusal = ws_recv(&mut ws).unwrap();
    assert_eq!(refusal["type"], "error");
    assert_eq!(refusal["code"], "unauthorized");
    assert_eq!(ws_recv(&mut ws), None);

    // With the token: a whole session, one message per WebSocket message; a pretty-printed
    // message (line breaks inside) is one message too.
    let mut ws = ws_connect(&s.ws_url());
    ws_send(&mut ws, hello(Some("w0rker")));
    let welcome = ws_recv(&mut ws).unwrap();
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    assert_eq!(welcome["chunk"], "1000");
    ws.send(Message::text("{\"type\":\n  \"request\",\n  \"count\": 4}"))
        .unwrap();
    let mut answered = 0;
    let mut done = false;
    while !done {
        let m = ws_recv(&mut ws).expect("the server answers");
        match m["type"].as_str().unwrap() {
            "assign" => {
                let (a, b): (u64, u64) = (
                    m["a"].as_str().unwrap().parse().unwrap(),
                    m["b"].as_str().unwrap().parse().unwrap(),
                );
                let r = piswarm::worker::compute(m["id"].as_str().unwrap().parse().unwrap(), a, b);
                let mut v = serde_json::to_value(&r).unwrap();
                v["type"] = json!("result");
                ws_send(&mut ws, v);
                ws_send(&mut ws, json!({"type": "request", "count": 1}));
            }
            "ack" => {
                assert_eq!(m["status"], "accepted");
                answered += 1;
            }
            "done" => {
                assert_eq!(m["reason"], "job_complete");
                done = true;
            }
            other => panic!("unexpected {other}: {m}"),
        }
    }
    assert_eq!(answered, 4);
    ws_send(&mut ws, json!({"type": "bye"}));
    // The result files agree with the oracle.
    wait_until("final.json", WAIT, || {
        s.dir.path().join("final.json").exists()
    });
    let got = s.final_json();
    assert_same_bits(&got, &run_json("4000", "1000"), 4000);
    assert_eq!(s.results_by_worker()["ws-test"], 4);
}

#[test]
fn the_websocket_enforces_the_protocols_limits() {
    let s = Served::start("1e6", "1000", &["--idle-timeout", "2s"]);
    // A line over the limit (in one message under the WebSocket's own limit): line_too_long.
    let mut ws = ws_connect(&s.ws_url());
    ws_send(&mut ws, hello(None));
    assert_eq!(ws_recv(&mut ws).unwrap()["type"], "welcome");
    let long = format!(
        "{{\"type\":\"heartbeat\",\"x\":\"{}\"}}",
        "a".repeat(70_000)
    );
    ws.send(Message::text(long)).unwrap();
    let m = ws_recv(&mut ws).unwrap();
    assert_eq!(m["code"], "line_too_long", "{m}");
    assert_eq!(ws_recv(&mut ws), None);

    // Bad messages are answered like on TCP; a message before hello is out of order.
    let mut ws = ws_connect(&s.ws_url());
    ws_send(&mut ws, json!({"type": "request", "count": 1}));
    assert_eq!(ws_recv(&mut ws).unwrap()["code"], "out_of_order");
    let mut ws = ws_connect(&s.ws_url());
    ws.send(Message::text("not json")).unwrap();
    assert_eq!(ws_recv(&mut ws).unwrap()["code"], "bad_json");

    // A session that says nothing after its hello ends at the idle timeout, with the error.
    let mut ws = ws_connect(&s.ws_url());
    ws_send(&mut ws, hello(None));
    assert_eq!(ws_recv(&mut ws).unwrap()["type"], "welcome");
    let m = ws_recv(&mut ws).unwrap();
    assert_eq!(m["code"], "idle_timeout", "{m}");

    // A message beyond the WebSocket's own limit (twice the line limit) closes the socket
    // before it is buffered; the server goes on serving.
    let mut ws = ws_connect(&s.ws_url());
    ws_send(&mut ws, hello(None));
    assert_eq!(ws_recv(&mut ws).unwrap()["type"], "welcome");
    let _ = ws.send(Message::text("x".repeat(200_000)));
    assert_eq!(ws_recv(&mut ws), None);
    let mut ws = ws_connect(&s.ws_url());
    ws_send(&mut ws, hello(None));
    assert_eq!(ws_recv(&mut ws).unwrap()["type"], "welcome");
    assert!(s.log_text().contains("line too long"));
}

#[test]
fn websocket_sessions_share_the_connection_budget() {
    let s = Served::start("1e6", "1000", &["--max-connections", "1"]);
    // One TCP worker takes the only place...
    let mut tcp = TcpStream::connect(&s.listen).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    use std::io::{BufRead, Write};
    tcp.write_all(b"{\"type\":\"hello\",\"version\":1,\"worker\":\"tcp\"}\n")
        .unwrap();
    let mut reader = std::io::BufReader::new(tcp.try_clone().unwrap());
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    assert!(line.contains("welcome"), "{line}");
    // ...so a browser is told the server is full, in the protocol's words.
    let mut ws = ws_connect(&s.ws_url());
    let m = ws_recv(&mut ws).unwrap();
    assert_eq!(m["code"], "too_many_connections", "{m}");
    // Once the TCP worker leaves, the browser gets in.
    drop(reader);
    drop(tcp);
    let mut admitted = false;
    wait_until("a place in the budget", WAIT, || {
        let mut ws = ws_connect(&s.ws_url());
        ws_send(&mut ws, hello(None));
        admitted = ws_recv(&mut ws).is_some_and(|m| m["type"] == "welcome");
        admitted
    });
}

// ------------------------------------------------------------------------------------------
// In Chromium
// ------------------------------------------------------------------------------------------

const RUN_TERMS: &str = "2e10";
const RUN_CHUNK: &str = "1e8";
const RUN_N: u64 = 20_000_000_000;

#[test]
fn two_join_pages_and_a_worker_compute_a_run_bit_for_bit() {
    let s = Served::start(RUN_TERMS, RUN_CHUNK, &[]);
    let join = format!("{}/join?auto=1&threads=1", s.http);
    let listen = s.listen.clone();
    let log = s.dir.path().join("worker.log");
    let http = s.http.clone();
    let (states, kinds) = in_chromium(move |browser| {
        let a = browser.new_tab().unwrap();
        let b = browser.new_tab().unwrap();
        open_join(&a, &format!("{join}&name=page-a"));
        open_join(&b, &format!("{join}&name=page-b"));
        for (tab, name) in [(&a, "page-a"), (&b, "page-b")] {
            page_until(
                tab,
                &format!("{name} computing"),
                "piswarmJoin.state().accepted >= 2",
            );
        }
        // The dashboard's worker table shows them as browsers, with their short name.
        let kinds = http_get_json(&format!("{http}/api/workers"))["workers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| json!([w["name"], w["kind"], w["agent"]]))
            .collect::<Vec<_>>();
        // Then a native worker joins, and the three finish the run.
        let _worker = native_worker(&listen, &log);
        for tab in [&a, &b] {
            page_until(
                tab,
                "the run's end",
                "piswarmJoin.state().complete === true",
            );
        }
        (vec![join_state(&a), join_state(&b)], kinds)
    });
    for st in &states {
        assert_eq!(st["state"], "complete", "{st}");
        assert_eq!(st["rejected"], 0, "{st}");
    }
    for name in ["page-a", "page-b"] {
        let row = kinds
            .iter()
            .find(|r| r[0] == name)
            .unwrap_or_else(|| panic!("{name} in {kinds:?}"));
        assert_eq!(row[1], "browser");
        assert!(row[2].as_str().unwrap().contains("Chrome"), "{row}");
    }
    wait_until("final.json", WAIT, || {
        s.dir.path().join("final.json").exists()
    });
    let got = s.final_json();
    assert_same_bits(&got, &run_json(RUN_TERMS, RUN_CHUNK), RUN_N);
    let by_worker = s.results_by_worker();
    for name in ["page-a", "page-b", "native"] {
        assert!(
            by_worker.get(name).copied().unwrap_or(0) >= 1,
            "{name}: {by_worker:?}"
        );
    }
    assert_eq!(by_worker.values().sum::<u64>(), 200);
}

#[test]
fn a_page_closed_mid_run_loses_nothing() {
    let s = Served::start(RUN_TERMS, RUN_CHUNK, &[]);
    let join = format!("{}/join?auto=1&threads=1", s.http);
    let listen = s.listen.clone();
    let log = s.dir.path().join("worker.log");
    let http = s.http.clone();
    in_chromium(move |browser| {
        let a = browser.new_tab().unwrap();
        let b = browser.new_tab().unwrap();
        open_join(&a, &format!("{join}&name=closed"));
        open_join(&b, &format!("{join}&name=stays"));
        // Page a is closed while it holds intervals (assigned, computing or queued).
        page_until(
            &a,
            "page a holding work",
            "piswarmJoin.state().accepted >= 2 && piswarmJoin.state().computing + piswarmJoin.state().queued > 0",
        );
        a.close(true).unwrap();
        page_until(&b, "page b going on", "piswarmJoin.state().accepted >= 2");
        // Page b pauses: it leaves (its intervals go back at once) and its Web Workers stop;
        // then it resumes with a fresh session and computes again.
        crate::web_browser::click(&b, "pause");
        page_until(
            &b,
            "page b paused",
            "piswarmJoin.state().state === 'paused' && piswarmJoin.state().threads === 0",
        );
        wait_until("page b to leave the worker table", WAIT, || {
            !http_get_json(&format!("{http}/api/workers"))["workers"]
                .as_array()
                .unwrap()
                .iter()
                .any(|w| w["name"] == "stays")
        });
        let before = join_state(&b)["accepted"].as_u64().unwrap();
        assert_eq!(
            eval(&b, "document.getElementById('start').textContent"),
            Value::from("Resume")
        );
        crate::web_browser::click(&b, "start");
        page_until(
            &b,
            "page b resumed",
            &format!("piswarmJoin.state().accepted > {before}"),
        );
        let _worker = native_worker(&listen, &log);
        page_until(&b, "the run's end", "piswarmJoin.state().complete === true");
    });
    wait_until("final.json", WAIT, || {
        s.dir.path().join("final.json").exists()
    });
    assert_same_bits(&s.final_json(), &run_json(RUN_TERMS, RUN_CHUNK), RUN_N);
    let by_worker = s.results_by_worker();
    assert!(by_worker["closed"] >= 2, "{by_worker:?}");
    assert_eq!(by_worker.values().sum::<u64>(), 200, "every interval once");
}

#[test]
fn a_page_cut_off_resends_what_it_computed_and_it_counts_once() {
    // The server stops (its workers are told) while the page computes, and starts again: the
    // page reconnects by itself and re-sends what was not acknowledged.
    let s = Served::start(RUN_TERMS, RUN_CHUNK, &["--ui-token", "ui-secret"]);
    let join = format!("{}/join?auto=1&threads=2&name=phone", s.http);
    let http = s.http.clone();
    let listen = s.listen.clone();
    let log = s.dir.path().join("worker.log");
    in_chromium(move |browser| {
        let page = browser.new_tab().unwrap();
        open_join(&page, &join);
        page_until(
            &page,
            "the page computing",
            "piswarmJoin.state().accepted >= 3",
        );
        let control = |path: &str| {
            ureq_post(&format!("{http}{path}"), "ui-secret");
        };
        control("/api/server/stop");
        page_until(
            &page,
            "the page noticing",
            "['reconnecting', 'stopping'].includes(piswarmJoin.state().state)",
        );
        control("/api/server/start");
        page_until(
            &page,
            "the page back",
            "piswarmJoin.state().state === 'computing' || piswarmJoin.state().state === 'waiting'",
        );
        let _worker = native_worker(&listen, &log);
        page_until(
            &page,
            "the run's end",
            "piswarmJoin.state().complete === true",
        );
        let state = join_state(&page);
        assert_eq!(state["rejected"], 0, "{state}");
        // Its Web Workers went on while it was cut off, and what they computed was re-sent.
        assert!(state["resent"].as_u64().unwrap() >= 1, "{state}");
    });
    wait_until("final.json", WAIT, || {
        s.dir.path().join("final.json").exists()
    });
    assert_same_bits(&s.final_json(), &run_json(RUN_TERMS, RUN_CHUNK), RUN_N);
    assert_eq!(s.results_by_worker().values().sum::<u64>(), 200);
}

/// `POST url` with the dashboard's token; panics unless it answers 200.
fn ureq_post(url: &str, token: &str) {
    let response = ureq::post(url)
        .header("Authorization", format!("Bearer {token}"))
        .send_empty()
        .unwrap_or_else(|e| panic!("POST {url}: {e}"));
    assert_eq!(response.status(), 200, "{url}");
}

/// `GET url` (no token) as JSON.
fn http_get_json(url: &str) -> Value {
    let mut response = ureq::get(url)
        .call()
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    serde_json::from_str(&response.body_mut().read_to_string().unwrap()).unwrap()
}

#[test]
fn tokens_the_join_link_and_the_qr_code() {
    let s = Served::start(
        "1e13",
        "1e8",
        &["--token", "w0rker-token", "--ui-token", "ui-token-1"],
    );
    let http = s.http.clone();
    let shots = (
        std::env::var("PISWARM_SCREENSHOT_JOIN").ok(),
        std::env::var("PISWARM_SCREENSHOT_QR").ok(),
    );
    let (link, decoded, refused, probes, joined) = in_chromium(move |browser| {
        // The dashboard (with its token) shows the join link, carrying the worker token in its
        // fragment and never the dashboard's, and its QR code.
        let dash = browser.new_tab().unwrap();
        crate::web_browser::navigate(&dash, &format!("{http}/?token=ui-token-1"));
        crate::web_browser::wait_until(
            &dash,
            "document.getElementById('join-link').textContent.includes('/join') && document.getElementById('join-qr').complete && document.getElementById('join-qr').naturalWidth > 0",
        );
        let link = eval(&dash, "document.getElementById('join-link').href")
            .as_str()
            .unwrap()
            .to_string();
        // The QR code, as the browser draws it, read back by an independent decoder.
        let pixels = eval(
            &dash,
            "(() => { const img = document.getElementById('join-qr'); const n = 400; const c = document.createElement('canvas'); c.width = c.height = n; const g = c.getContext('2d'); g.fillStyle = '#fff'; g.fillRect(0, 0, n, n); g.drawImage(img, 0, 0, n, n); const d = g.getImageData(0, 0, n, n).data; let s = ''; for (let i = 0; i < d.length; i += 4) s += d[i] < 128 ? '1' : '0'; return s; })()",
        );
        let decoded = decode_qr(pixels.as_str().unwrap(), 400);
        if let Some(path) = &shots.1 {
            viewport(&dash, 900, 1400, false);
            let rect = eval_json(
                &dash,
                "(() => { const e = document.getElementById('join-card'); e.scrollIntoView(); const r = e.getBoundingClientRect(); return [r.left + scrollX, r.top + scrollY, r.width, r.height]; })()",
            );
            let r: Vec<f64> = serde_json::from_value(rect).unwrap();
            let clip = headless_chrome::protocol::cdp::Page::Viewport {
                x: r[0],
                y: r[1],
                width: r[2],
                height: r[3],
                scale: 1.0,
            };
            let png = dash
                .capture_screenshot(CaptureScreenshotFormatOption::Png, None, Some(clip), true)
                .unwrap();
            std::fs::write(path, png).unwrap();
        }

        // Another device (a browser that never saw the dashboard's token).
        let (phone, _profile) = crate::web_browser::browser();
        let browser = &phone;
        // /join without the token is refused on the WebSocket with `unauthorized`.
        let bare = browser.new_tab().unwrap();
        open_join(&bare, &format!("{http}/join?auto=1&threads=1"));
        page_until(
            &bare,
            "the refusal",
            "piswarmJoin.state().state === 'refused_token'",
        );
        let refused = join_state(&bare);

        // The link itself joins (the token is in its fragment), and from that page the control
        // plane stays closed: the join link grants no dashboard access.
        let page = browser.new_tab().unwrap();
        // A phone's screen.
        viewport(&page, 360, 740, true);
        open_join(
            &page,
            &link.replacen("/join#", "/join?auto=1&threads=2&name=linked#", 1),
        );
        page_until(
            &page,
            "the linked page computing",
            "piswarmJoin.state().accepted >= 1",
        );
        assert_eq!(
            eval(
                &page,
                "document.documentElement.scrollWidth <= window.innerWidth"
            ),
            Value::Bool(true),
            "no horizontal scrolling at 360 px"
        );
        if let Some(path) = &shots.0 {
            screenshot(&page, path);
        }
        let probes = crate::web_browser::eval_async(
            &page,
            "Promise.all([['POST', '/api/server/stop'], ['GET', '/api/runs'], ['POST', '/api/clients'], ['POST', '/api/runs'], ['GET', '/api/status'], ['GET', '/api/join']].map(([m, p]) => fetch(p, {method: m, credentials: 'include', headers: {'Content-Type': 'application/json'}, body: m === 'POST' ? '{}' : undefined}).then(r => [m + ' ' + p, r.status]))).then(JSON.stringify)",
        );
        let probes: Value = serde_json::from_str(probes.as_str().unwrap()).unwrap();
        let joined = join_state(&page);
        (link, decoded, refused, probes, joined)
    });
    assert_eq!(decoded, link, "the QR code says the join link");
    assert!(link.ends_with("/join#token=w0rker-token"), "{link}");
    assert!(!link.contains("ui-token-1"), "{link}");
    assert_eq!(refused["state"], "refused_token", "{refused}");
    assert_eq!(refused["accepted"], 0);
    assert!(joined["accepted"].as_u64().unwrap() >= 1, "{joined}");
    for probe in probes.as_array().unwrap() {
        assert_eq!(probe[1], 401, "{probe} from a joined page");
    }
    assert!(
        s.log_text().contains("unauthorized: no token"),
        "{}",
        s.log_text()
    );
}

#[test]
fn the_join_page_is_self_contained_public_and_in_both_languages() {
    let s = Served::start("1e6", "1000", &["--ui-token", "ui-only"]);
    let get = |path: &str, lang: &str| {
        let mut r = ureq::get(&format!("{}{path}", s.http))
            .header("Accept-Language", lang)
            .call()
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        let headers = r.headers().clone();
        (headers, r.body_mut().read_to_string().unwrap())
    };
    // No dashboard token needed for the page and its scripts; no token cookie set.
    let (headers, en) = get("/join", "en");
    assert!(en.contains("Join the computation") && en.contains("lang=\"en\""));
    let csp = headers["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("worker-src 'self'") && csp.contains("connect-src 'self'"),
        "{csp}"
    );
    assert!(headers.get("set-cookie").is_none());
    let (_, pt) = get("/join", "pt-BR,pt;q=0.9");
    assert!(pt.contains("Participe do cálculo") && pt.contains("lang=\"pt-BR\""));
    // Every asset comes from the server itself: no absolute URL in a src or an href.
    for page in [&en, &pt] {
        for attr in ["src=\"", "href=\""] {
            for value in page.split(attr).skip(1) {
                let value = value.split('"').next().unwrap();
                assert!(!value.contains("//"), "an external asset: {value}");
            }
        }
    }
    for (path, kind) in [
        ("/join/join.js", "text/javascript"),
        ("/join/worker.js", "text/javascript"),
        ("/join/kernel.js", "text/javascript"),
        ("/join/join.css", "text/css"),
        ("/join/favicon.svg", "image/svg+xml"),
    ] {
        let (headers, body) = get(path, "en");
        assert!(!body.is_empty(), "{path}");
        assert!(
            headers["content-type"].to_str().unwrap().starts_with(kind),
            "{path}"
        );
    }
    // The scripts reach nothing but their own origin.
    for path in ["/join/join.js", "/join/worker.js", "/join/kernel.js"] {
        let (_, body) = get(path, "en");
        assert!(
            !body.contains("http://") && !body.contains("https://"),
            "{path}"
        );
    }
    // The API still wants the dashboard's token.
    let status = ureq::get(&format!("{}/api/status", s.http)).call();
    assert!(
        matches!(status, Err(ureq::Error::StatusCode(401))),
        "{status:?}"
    );
}

#[test]
fn the_public_url_names_the_join_link_and_the_origin_it_accepts() {
    let s = Served::start(
        "1e6",
        "1000",
        &[
            "--public-url",
            "https://pi.example.org/swarm/",
            "--token",
            "t0k",
        ],
    );
    let join = http_get_json(&format!("{}/api/join", s.http));
    assert_eq!(join["url"], "https://pi.example.org/swarm/join#token=t0k");
    assert_eq!(join["reachable"], true);
    assert_eq!(join["token_in_link"], true);
    // Behind the proxy, pages come from the public origin: accepted. Another site's page: 403.
    use tungstenite::client::IntoClientRequest;
    let with_origin = |origin: &str| {
        let mut request = s.ws_url().into_client_request().unwrap();
        request
            .headers_mut()
            .insert("Origin", origin.parse().unwrap());
        tungstenite::connect(request)
    };
    let (mut ws, _) = with_origin("https://pi.example.org").expect("the public origin");
    ws_send(
        &mut ws,
        json!({"type": "hello", "version": 1, "worker": "proxied", "token": "t0k"}),
    );
    assert_eq!(ws_recv(&mut ws).unwrap()["type"], "welcome");
    match with_origin("https://evil.example") {
        Err(tungstenite::Error::Http(response)) => assert_eq!(response.status(), 403),
        other => panic!("a page of another site got {other:?}"),
    }
    // A bad --public-url is a usage error.
    let out = std::process::Command::new(bin())
        .args(["serve", "--public-url", "pi.example.org", "--no-http"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("must start with http"));
}

/// A phone that locks its screen: the page is frozen (no script runs, its socket goes quiet),
/// the coordinator drops the session at the idle timeout and hands its intervals to others; the
/// page, thawed, starts a fresh session and computes again; the result is unchanged.
#[test]
fn a_frozen_page_gives_its_intervals_back_and_comes_back() {
    use headless_chrome::protocol::cdp::Page::{
        SetWebLifecycleState, SetWebLifecycleStateStateOption,
    };
    let s = Served::start(RUN_TERMS, RUN_CHUNK, &["--idle-timeout", "3s"]);
    let join = format!("{}/join?auto=1&threads=1&name=sleepy", s.http);
    let http = s.http.clone();
    let listen = s.listen.clone();
    let log = s.dir.path().join("worker.log");
    let listed = move |name: &str| {
        http_get_json(&format!("{http}/api/workers"))["workers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|w| w["name"] == name)
    };
    in_chromium(move |browser| {
        let page = browser.new_tab().unwrap();
        open_join(&page, &join);
        page_until(
            &page,
            "the page computing",
            "piswarmJoin.state().accepted >= 2",
        );
        page.call_method(SetWebLifecycleState {
            state: SetWebLifecycleStateStateOption::Frozen,
        })
        .unwrap();
        // The coordinator notices the silence at its idle timeout and lets the session go.
        wait_until("the frozen page's session to be dropped", WAIT, || {
            !listed("sleepy")
        });
        page.call_method(SetWebLifecycleState {
            state: SetWebLifecycleStateStateOption::Active,
        })
        .unwrap();
        wait_until("the page's fresh session", WAIT, || listed("sleepy"));
        let before = join_state(&page)["accepted"].as_u64().unwrap();
        page_until(
            &page,
            "the page computing again",
            &format!("piswarmJoin.state().accepted > {before}"),
        );
        let _worker = native_worker(&listen, &log);
        page_until(
            &page,
            "the run's end",
            "piswarmJoin.state().complete === true",
        );
        assert_eq!(join_state(&page)["rejected"], 0);
    });
    wait_until("final.json", WAIT, || {
        s.dir.path().join("final.json").exists()
    });
    assert_same_bits(&s.final_json(), &run_json(RUN_TERMS, RUN_CHUNK), RUN_N);
    assert_eq!(s.results_by_worker().values().sum::<u64>(), 200);
    assert!(
        s.log_text().contains("idle timeout"),
        "the coordinator said why it dropped the page"
    );
}
