//! Measures the dashboard with a large stored history, in Debian's headless Chromium: how long a
//! page of history takes to change and how long switching runs takes, as the page itself
//! measures them (`performance.now()` from the click to the rows drawn: the request, the store's
//! query, the JSON, the DOM, and the layout and paint of the frame that shows them); paging
//! through the whole history at 50 and at 250 rows a page (median, 90th percentile, maximum);
//! and how busy the page's main thread is while a stored run is in view and nothing happens
//! (Chromium's own task accounting, `Performance.getMetrics`). Prints one line per figure;
//! asserts nothing.
//!
//! ```text
//! cargo run --release --example dashboard_bench -- [RESULTS] [--idle] [--paging PAGES] [--trace] [--css FILE] [--shared-session]
//! ```
//! `--idle` measures only the page left alone (quick comparisons); `--paging PAGES` only PAGES
//! clicks on Next at 250 rows a page and at 50, with the part of each that is the page's script
//! writing its rows; `--trace` also traces each idle window (or each paging) and prints where
//! the main thread's time went, by Chromium's names for its work (and writes the whole trace, for
//! Perfetto, to the file `PISWARM_TRACE_OUT` names, if set); `--css FILE` adds a style sheet to
//! the page's own, to try a layout without a build. The browser is started in a session of its
//! own (`setsid`), as a desktop starts one, so that where the kernel's autogroup is on it is not
//! one thread among the threads of whatever this was started beside (a test suite started from
//! the same shell, say); `--shared-session` starts it in this process's session instead.
//! RESULTS defaults to 100 000. They are written straight into a fresh SQLite store through
//! the store's writer (one run of RESULTS intervals of 1000 terms, accepted in a shuffled order
//! from 40 worker names, with exact sums and π partials; and a small run of 1000 results to
//! switch to), then a node is started on that store with a new, empty current run and its TCP
//! server running (no worker connects), and the dashboard is served on loopback.

#[path = "../tests/it/chromium/mod.rs"]
mod chromium;

use headless_chrome::protocol::cdp::{types::Event, Emulation, Performance, Tracing, IO};
use headless_chrome::Tab;
use piswarm::commands::serve::ServeOptions;
use piswarm::coordinator::{RunState, Write};
use piswarm::job::Job;
use piswarm::maths::exact::ExactSum;
use piswarm::maths::{series, sums};
use piswarm::node::Node;
use piswarm::report::{now_iso8601, ResultRecord, Totals};
use piswarm::store::{writer, Location, Store};
use piswarm::wire::Dec;
use serde_json::Value;
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

const CHUNK: u64 = 1000;
const WORKERS: u64 = 40;

/// Writes a complete run of `n` intervals into the store, in a shuffled order; returns its id.
async fn write_run(db: &Path, n: u64) -> piswarm::coordinator::RunId {
    let store = Store::open(&Location::File(db.to_path_buf())).unwrap();
    let run = store
        .create_run(Job::new(Some(n * CHUNK), Some(CHUNK)).unwrap())
        .unwrap();
    let (writes, mut durable, thread) = writer::start(store, run, None).unwrap();
    let (mut even, mut odd, mut pi, mut terms) = (0u128, 0u128, ExactSum::new(), 0u64);
    let stamp = now_iso8601();
    // A step coprime with n visits every interval once, out of order.
    let step = (1..).map(|k| 7919 * k).find(|s| gcd(*s, n) == 1).unwrap() % n.max(1);
    let mut id = 0u64;
    for seq in 1..=n {
        let (a, b) = (id * CHUNK, id * CHUNK + CHUNK - 1);
        let record = ResultRecord {
            id: Dec(id),
            a: Dec(a),
            b: Dec(b),
            worker: format!("bench-{:02}", id % WORKERS),
            peer: "127.0.0.1:40000".into(),
            even_sum: Dec(sums::even_sum(a, b)),
            odd_sum: Dec(sums::odd_sum(a, b)),
            pi: series::pi_partial_reference(a, b),
            duration_s: 1e-4 * (1 + id % 7) as f64,
            timestamp: stamp.clone(),
        };
        even += record.even_sum.0;
        odd += record.odd_sum.0;
        pi.add(record.pi).unwrap();
        terms += CHUNK;
        assert!(writes.send(Write::Result { seq, record }).await.is_ok());
        id = (id + step.max(1)) % n;
    }
    let totals = Totals {
        intervals_done: n,
        terms_done: terms,
        even_sum: Dec(even),
        odd_sum: Dec(odd),
        pi: pi.value(),
        workers: WORKERS.min(n),
        elapsed_s: 60.0,
        // The partials are the references themselves: each bounds its error by the reference's.
        pi_bound: 0.0,
    };
    let last = n + 1;
    assert!(writes
        .send(Write::Totals {
            seq: last,
            totals,
            pi_exact: Box::new(pi),
            state: RunState::Complete,
        })
        .await
        .is_ok());
    durable.wait_for(|d| d.committed >= last).await.unwrap();
    drop(writes);
    thread.join().unwrap();
    run
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

fn eval(tab: &Tab, js: &str) -> Value {
    tab.evaluate(js, false)
        .unwrap_or_else(|e| panic!("{js}: {e}"))
        .value
        .unwrap_or(Value::Null)
}

fn wait_until(tab: &Tab, js: &str) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while eval(tab, js) != Value::Bool(true) {
        assert!(Instant::now() < deadline, "timed out waiting for {js}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn counter(tab: &Tab, id: &str, key: &str) -> u64 {
    eval(
        tab,
        &format!("Number(document.getElementById('{id}').dataset.{key} || 0)"),
    )
    .as_u64()
    .unwrap_or(0)
}

/// Runs `action` (JavaScript) and waits in the page for the page change it causes: its own
/// measure of it (`data-page-ms`, from its request) and the time from `action` to the rows drawn
/// (`data-drawn-at`). One request to the browser that the page answers when done, not a poll:
/// measuring adds no work to the page measured.
fn page_change_times(tab: &Tab, action: &str) -> (f64, f64) {
    let js = format!(
        "new Promise((done, fail) => {{ \
           const h = document.getElementById('history'), before = h.dataset.pages, t0 = performance.now(); \
           const timer = setTimeout(() => {{ watch.disconnect(); fail(new Error('no page change in 60 s')); }}, 60000); \
           const watch = new MutationObserver(() => {{ if (h.dataset.pages === before) return; \
             watch.disconnect(); clearTimeout(timer); \
             done(JSON.stringify([Number(h.dataset.pageMs), Number(h.dataset.drawnAt) - t0])); }}); \
           watch.observe(h, {{ attributes: true, attributeFilter: ['data-pages'] }}); \
           {action}; }})"
    );
    let out = tab
        .evaluate(&js, true)
        .unwrap_or_else(|e| panic!("{action}: {e}"))
        .value
        .unwrap_or(Value::Null);
    let times: (f64, f64) = serde_json::from_str(out.as_str().expect("the page's times")).unwrap();
    times
}

/// Runs `action` (JavaScript) and returns the page's own measure of the page change it causes.
fn page_change(tab: &Tab, action: &str) -> f64 {
    page_change_times(tab, action).0
}

fn switch_to(tab: &Tab, run: piswarm::coordinator::RunId) -> f64 {
    let before = counter(tab, "final-card", "switches");
    eval(
        tab,
        &format!("document.querySelector('#runs li[data-run=\"{run}\"]').click(), true"),
    );
    wait_until(
        tab,
        &format!("Number(document.getElementById('final-card').dataset.switches) > {before}"),
    );
    eval(
        tab,
        "Number(document.getElementById('final-card').dataset.switchMs)",
    )
    .as_f64()
    .unwrap()
}

fn summary(what: &str, mut ms: Vec<f64>) {
    ms.sort_by(f64::total_cmp);
    let median = ms[ms.len() / 2];
    let p90 = ms[(ms.len() * 9 / 10).min(ms.len() - 1)];
    let max = ms[ms.len() - 1];
    println!(
        "{what:<58} n={:<4} median {median:7.1} ms  p90 {p90:7.1} ms  max {max:7.1} ms",
        ms.len()
    );
}

/// Clicks `id` and returns the time from the click to the rows drawn, in the page's clock.
fn click_to_drawn(tab: &Tab, id: &str) -> f64 {
    page_change_times(tab, &format!("document.getElementById('{id}').click()")).1
}

/// Pages through the history of the shown run, newest first, `size` rows a page, `pages` times
/// at most (or to its end): the click-to-drawn time of every Next.
fn page_through(tab: &Tab, size: u32, pages: usize) -> Vec<f64> {
    page_change(tab, &set_value("history-sort", "arrival:desc"));
    page_change(tab, &set_value("history-page-size", &size.to_string()));
    eval(
        tab,
        "document.getElementById('history').scrollIntoView(), true",
    );
    let mut times = Vec::new();
    let (mut fetches, mut scripts) = (Vec::new(), Vec::new());
    while times.len() < pages
        && eval(tab, "document.getElementById('history-next').disabled") == Value::Bool(false)
    {
        times.push(click_to_drawn(tab, "history-next"));
        let both = eval(
            tab,
            "JSON.stringify([Number(document.getElementById('history').dataset.fetchMs), Number(document.getElementById('history').dataset.renderMs)])",
        );
        let [fetch, script]: [f64; 2] =
            serde_json::from_str(both.as_str().expect("two numbers")).unwrap();
        fetches.push(fetch);
        scripts.push(script);
    }
    summary(
        &format!("  of which waiting for the page of {size} rows"),
        fetches,
    );
    summary(
        &format!("  of which the script writing {size} rows"),
        scripts,
    );
    times
}

/// Chromium's accounting of the page's main thread, in seconds: `TaskDuration` (all the work
/// of its tasks), `ScriptDuration`, `LayoutDuration`, `RecalcStyleDuration`.
fn metrics(tab: &Tab) -> [f64; 4] {
    let all = tab
        .call_method(Performance::GetMetrics(None))
        .unwrap()
        .metrics;
    let get = |name: &str| all.iter().find(|m| m.name == name).map_or(0.0, |m| m.value);
    [
        get("TaskDuration"),
        get("ScriptDuration"),
        get("LayoutDuration"),
        get("RecalcStyleDuration"),
    ]
}

/// Starts a Chromium trace of the page (what its main thread does, task by task).
fn start_trace(tab: &Tab) -> Arc<Mutex<Option<String>>> {
    let stream = Arc::new(Mutex::new(None));
    let handle = stream.clone();
    tab.add_event_listener(Arc::new(move |event: &Event| {
        if let Event::TracingComplete(done) = event {
            *handle.lock().unwrap() = done.params.stream.clone();
        }
    }))
    .unwrap();
    tab.call_method(Tracing::Start {
        categories: Some("devtools.timeline,toplevel,blink,v8,cc,loading".into()),
        options: None,
        buffer_usage_reporting_interval: None,
        transfer_mode: Some(Tracing::StartTransfer_modeOption::ReturnAsStream),
        stream_format: None,
        stream_compression: None,
        trace_config: None,
        perfetto_config: None,
        tracing_backend: None,
    })
    .unwrap();
    stream
}

/// Ends the trace and prints where the renderer's main thread spent its time, per second of
/// `elapsed`: the costliest kinds of work, by Chromium's names (nested: a frame's `Paint` is
/// also in its `ProxyMain::BeginMainFrame`).
fn end_trace(tab: &Tab, stream: Arc<Mutex<Option<String>>>, elapsed: f64, per: &str) {
    tab.call_method(Tracing::End(None)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let handle = loop {
        if let Some(handle) = stream.lock().unwrap().clone() {
            break handle;
        }
        assert!(Instant::now() < deadline, "the trace never completed");
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut json = String::new();
    loop {
        let chunk = tab
            .call_method(IO::Read {
                handle: handle.clone(),
                offset: None,
                size: Some(1 << 20),
            })
            .unwrap();
        json.push_str(&chunk.data);
        if chunk.eof {
            break;
        }
    }
    if let Ok(path) = std::env::var("PISWARM_TRACE_OUT") {
        // The whole trace, for Perfetto or chrome://tracing.
        std::fs::write(&path, &json).unwrap();
    }
    let trace: Value = serde_json::from_str(&json).unwrap();
    let events = trace["traceEvents"].as_array().cloned().unwrap_or_default();
    let thread = |e: &Value| (e["pid"].as_u64(), e["tid"].as_u64());
    let main: Vec<_> = events
        .iter()
        .filter(|e| e["name"] == "thread_name" && e["args"]["name"] == "CrRendererMain")
        .map(thread)
        .collect();
    let mut by_name: HashMap<&str, (f64, u32)> = HashMap::new();
    for e in &events {
        if e["ph"] == "X" && main.contains(&thread(e)) {
            let entry = by_name
                .entry(e["name"].as_str().unwrap_or("?"))
                .or_default();
            entry.0 += e["dur"].as_f64().unwrap_or(0.0) / 1000.0;
            entry.1 += 1;
        }
    }
    let mut costliest: Vec<_> = by_name.into_iter().collect();
    costliest.sort_by(|a, b| b.1 .0.total_cmp(&a.1 .0));
    println!("  the main thread, traced (ms/{per}, times/{per}, what):");
    for (name, (ms, times)) in costliest.into_iter().take(45) {
        println!(
            "    {:6.2} {:6.1}  {name}",
            ms / elapsed,
            f64::from(times) / elapsed
        );
    }
}

/// How busy the page's main thread is over `seconds` with nothing done to it, per second, and
/// how many times it redrew its history meanwhile; with `trace`, where that time went.
fn idle(tab: &Tab, what: &str, seconds: u64, trace: bool) {
    // What the page changes before left to do (the garbage of hundreds of pages collected) is
    // not counted: it settles for 15 s first.
    std::thread::sleep(Duration::from_secs(15));
    let renders = counter(tab, "history", "renders");
    // What the page writes meanwhile, by element: the DOM changes that can cost a frame.
    eval(
        tab,
        "window.__writes = {}; window.__observer = new MutationObserver((ms) => { for (const m of ms) { let e = m.target.nodeType === 1 ? m.target : m.target.parentElement; while (e && !e.id) e = e.parentElement; const k = (e ? e.id : '?') + ':' + m.type + (m.attributeName ? '.' + m.attributeName : ''); window.__writes[k] = (window.__writes[k] || 0) + 1; } }); window.__observer.observe(document.body, { subtree: true, childList: true, attributes: true, characterData: true }), true",
    );
    // The trace, if asked for, covers the same window (and adds a little work of its own).
    let stream = trace.then(|| start_trace(tab));
    let before = metrics(tab);
    let t = Instant::now();
    std::thread::sleep(Duration::from_secs(seconds));
    let after = metrics(tab);
    let elapsed = t.elapsed().as_secs_f64();
    let traced = stream.map(|stream| (stream, elapsed));
    let per_s = |i: usize| 1000.0 * (after[i] - before[i]) / elapsed;
    println!(
        "{what:<58} main thread busy {:5.2} ms/s (script {:5.2}, layout {:5.2}, style {:5.2}), history redraws {}",
        per_s(0),
        per_s(1),
        per_s(2),
        per_s(3),
        counter(tab, "history", "renders") - renders
    );
    let writes = eval(
        tab,
        "window.__observer.disconnect(), JSON.stringify(Object.entries(window.__writes).sort((a, b) => b[1] - a[1]))",
    );
    println!(
        "  DOM writes meanwhile (element with an id: kind, count): {}",
        writes.as_str().unwrap_or("?")
    );
    if let Some((stream, elapsed)) = traced {
        end_trace(tab, stream, elapsed, "s");
    }
}

fn set_value(id: &str, value: &str) -> String {
    format!(
        "(() => {{ const e = document.getElementById('{id}'); e.value = '{value}'; e.dispatchEvent(new Event('change')); return true; }})()"
    )
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // `--idle`: only the idle measurement (the page left alone), for quick comparisons.
    let only_idle = args.iter().any(|a| a == "--idle");
    // `--trace`: also trace each idle window and print where the main thread's time went.
    let trace = args.iter().any(|a| a == "--trace");
    // `--paging P`: only P page changes at 250 rows and at 50 (traced with `--trace`).
    let paging: Option<usize> = args.iter().position(|a| a == "--paging").map(|i| {
        args.get(i + 1)
            .and_then(|p| p.parse().ok())
            .expect("--paging PAGES")
    });
    // `--css FILE`: a style sheet added to the page's own (for trying layouts without a build).
    let css: Option<String> = args.iter().position(|a| a == "--css").map(|i| {
        std::fs::read_to_string(args.get(i + 1).expect("--css FILE")).expect("--css FILE")
    });
    // `--shared-session`: the browser in this process's session, not one of its own (see
    // chromium::browser_in_own_session).
    let shared_session = args.iter().any(|a| a == "--shared-session");
    println!(
        "the browser runs in {}",
        if shared_session {
            "this process's session (--shared-session)"
        } else {
            "a session of its own, as a desktop starts it (--shared-session: in this one)"
        }
    );
    let n: u64 = args
        .iter()
        .enumerate()
        .find(|(i, a)| {
            !a.starts_with("--")
                && (*i == 0 || !["--paging", "--css"].contains(&args[i - 1].as_str()))
        })
        .map(|(_, a)| a)
        .map_or(100_000, |s| s.parse().expect("RESULTS"));
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("piswarm.db");
    let t = Instant::now();
    let big = write_run(&db, n).await;
    let small = write_run(&db, 1000).await;
    println!(
        "wrote {n} + 1000 results in {:.1} s ({} MB)",
        t.elapsed().as_secs_f64(),
        std::fs::metadata(&db).map_or(0, |m| m.len()) >> 20
    );

    let mut options = ServeOptions::new(
        Job::new(Some(1_000_000), Some(CHUNK)).unwrap(),
        db.clone(),
        dir.path().to_path_buf(),
    );
    options.new_run = true;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    // The TCP server running, as for anyone watching a stored run while `serve` waits for
    // workers (its uptime shown; no worker connects).
    let node = Node::start(options, listener, true).await.unwrap();
    let stop = CancellationToken::new();
    let t = Instant::now();
    let (server, url) = piswarm::web::bind(node.clone(), "127.0.0.1:0", None, stop.clone())
        .await
        .unwrap();
    // The dashboard reads the stored runs' digests in the background as it starts: a first read
    // of the big run waits for that.
    let http = url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    let cold = tokio::task::spawn_blocking(move || {
        let t = Instant::now();
        let body = ureq::get(&format!("http://{http}/api/runs/{big}/final"))
            .call()
            .unwrap()
            .body_mut()
            .read_to_string()
            .unwrap();
        assert!(body.contains("even_sum"));
        t.elapsed()
    })
    .await
    .unwrap();
    println!(
        "first read of the {n}-result run's report as the dashboard starts (its digest): {:.0} ms",
        cold.as_secs_f64() * 1000.0
    );
    let report = tokio::task::spawn_blocking(move || {
        let (browser, _profile) = if shared_session {
            chromium::browser_sized(None)
        } else {
            chromium::browser_in_own_session(None)
        };
        let tab = browser.new_tab().unwrap();
        // A 1360 × 900 screen.
        tab.call_method(Emulation::SetDeviceMetricsOverride {
            width: 1360,
            height: 900,
            device_scale_factor: 1.0,
            mobile: false,
            scale: None,
            screen_width: None,
            screen_height: None,
            position_x: None,
            position_y: None,
            dont_set_visible_size: None,
            screen_orientation: None,
            viewport: None,
            display_feature: None,
            device_posture: None,
        })
        .unwrap();
        tab.navigate_to(&url).unwrap().wait_until_navigated().unwrap();
        wait_until(&tab, "document.querySelectorAll('#runs li').length === 3");
        if let Some(css) = &css {
            // The page's CSP refuses a <style> element; a constructed sheet is not refused.
            let css = serde_json::to_string(css).unwrap();
            eval(
                &tab,
                &format!("(() => {{ const s = new CSSStyleSheet(); s.replaceSync({css}); document.adoptedStyleSheets = [...document.adoptedStyleSheets, s]; return true; }})()"),
            );
        }
        // The history in view, as for someone paging (rows out of view are neither laid out nor
        // painted): its top at the top of the screen.
        eval(
            &tab,
            "document.getElementById('history').scrollIntoView(), true",
        );
        let first = switch_to(&tab, big);
        eval(
            &tab,
            "document.getElementById('history').scrollIntoView(), true",
        );
        println!(
            "first switch to the {n}-result run, {:.1} s after the dashboard started: {first:.1} ms",
            t.elapsed().as_secs_f64()
        );
        if let Some(pages) = paging {
            for size in [250, 50] {
                let stream = trace.then(|| start_trace(&tab));
                let times = page_through(&tab, size, pages);
                let count = times.len();
                summary(&format!("{count} pages of {size} rows, Next: click to drawn"), times);
                if let Some(stream) = stream {
                    end_trace(&tab, stream, count as f64, "page change");
                }
            }
            return;
        }
        if !only_idle {
            let mut switches = Vec::new();
            for _ in 0..10 {
                switches.push(switch_to(&tab, small));
                switches.push(switch_to(&tab, big));
            }
            summary(&format!("switch runs (1000 ↔ {n} results)"), switches);

            let next = "document.getElementById('history-next').click(), true";
            let prev = "document.getElementById('history-prev').click(), true";
            let mut pages = Vec::new();
            for _ in 0..20 {
                pages.push(page_change(&tab, next));
            }
            summary("next page, newest first, 50 rows", pages);
            let mut pages = vec![page_change(&tab, &set_value("history-page-size", "250"))];
            for _ in 0..10 {
                pages.push(page_change(&tab, next));
            }
            summary("next page, newest first, 250 rows", pages);
            page_change(&tab, &set_value("history-page-size", "50"));
            let mut pages = vec![page_change(&tab, &set_value("history-sort", "interval:asc"))];
            for _ in 0..10 {
                pages.push(page_change(&tab, next));
            }
            summary("sort by interval, then next page", pages);
            let jump = format!(
                "(() => {{ document.getElementById('history-jump').value = '{}'; document.getElementById('history-go').click(); return true; }})()",
                n / 2
            );
            let mut pages = Vec::new();
            for _ in 0..5 {
                pages.push(page_change(&tab, &jump));
                pages.push(page_change(&tab, prev));
            }
            summary("jump to the middle interval, previous page", pages);
            let mut pages = Vec::new();
            for _ in 0..5 {
                pages.push(page_change(&tab, "document.getElementById('history-last').click(), true"));
                pages.push(page_change(&tab, "document.getElementById('history-first').click(), true"));
            }
            summary("last page, first page (by interval)", pages);
            page_change(&tab, &set_value("history-sort", "arrival:desc"));
            let mut pages = vec![page_change(&tab, &set_value("history-worker", "bench-07"))];
            for _ in 0..10 {
                pages.push(page_change(&tab, next));
            }
            summary("one worker's results (1 in 40), next page", pages);
            let nodes = eval(&tab, "document.getElementsByTagName('*').length");
            println!("elements in the page: {nodes}");

            // The whole history page by page at 250 rows, and as many pages (400 for 100 000
            // results) at 50 rows; then the page left alone with the stored run in view.
            page_change(&tab, &set_value("history-worker", ""));
            let pages = (n as usize).div_ceil(250);
            for size in [50, 250] {
                let times = page_through(&tab, size, pages);
                summary(
                    &format!("{} pages of {size} rows, Next: click to drawn", times.len()),
                    times,
                );
            }
        }
        let nodes = eval(&tab, "document.getElementsByTagName('*').length");
        println!("elements in the page at 250 rows: {nodes}");
        tab.call_method(Performance::Enable { time_domain: None })
            .unwrap();
        for size in [250, 50] {
            page_change(&tab, &set_value("history-page-size", &size.to_string()));
            idle(
                &tab,
                &format!("stored run in view, {size} rows, nothing happening (10 s)"),
                10,
                trace,
            );
        }
    })
    .await;
    stop.cancel();
    let _ = server.await;
    node.shutdown().await.unwrap();
    report.unwrap();
}
