//! The dashboard in a real browser: Debian's Chromium, headless, driven over the DevTools protocol
//! (`headless_chrome`), against a real node on loopback. Each scenario is bounded in time; every
//! wait polls a condition in the page with a deadline.
//!
//! Set PISWARM_SCREENSHOT=path (and PISWARM_SCREENSHOT_PHONE=path) to also save screenshots of
//! the dashboard during a run, at 1360 px and at 390×844 (that is how docs/dashboard.png and
//! docs/dashboard-phone.png are made).

use headless_chrome::protocol::cdp::Emulation;
use headless_chrome::protocol::cdp::Page::CaptureScreenshotFormatOption;
use headless_chrome::{Browser, Tab};
use piswarm::commands::serve::ServeOptions;
use piswarm::job::Job;
use piswarm::node::Node;
use serde_json::Value;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// How long one condition in the page (or a page load) may take to become true: a guard against
/// a hang, generous because two suites at once on a slow 2-core machine run several Chromiums
/// beside the workers (30 s was not enough there).
const WAIT: Duration = Duration::from_secs(90);

pub struct Dashboard {
    pub node: Node,
    pub url: String,
    pub stop: CancellationToken,
    pub server: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

pub async fn dashboard(job: Job, serving: bool) -> Dashboard {
    dashboard_with(job, serving, |_| {}).await
}

pub async fn dashboard_with(
    job: Job,
    serving: bool,
    tune: impl FnOnce(&mut ServeOptions),
) -> Dashboard {
    let dir = tempfile::tempdir().unwrap();
    let mut options =
        ServeOptions::new(job, dir.path().join("piswarm.db"), dir.path().to_path_buf());
    options.max_prefetch = 4;
    tune(&mut options);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let node = Node::start(options, listener, serving).await.unwrap();
    let stop = CancellationToken::new();
    let (server, url) = piswarm::web::bind(node.clone(), "127.0.0.1:0", None, stop.clone())
        .await
        .unwrap();
    Dashboard {
        node,
        url,
        stop,
        server,
        _dir: dir,
    }
}

impl Dashboard {
    pub async fn close(self) {
        self.stop.cancel();
        self.node.shutdown().await.unwrap();
        tokio::time::timeout(Duration::from_secs(20), self.server)
            .await
            .expect("the dashboard ends once stopped")
            .unwrap();
    }

    /// Runs one worker that computes until the job is done.
    pub async fn work(&self, name: &str, threads: usize) {
        let mut config = piswarm::worker::WorkerConfig::new(self.node.view().listen);
        config.name = name.to_string();
        config.threads = threads;
        config.prefetch = Some(64);
        piswarm::worker::run_worker(config, CancellationToken::new())
            .await
            .unwrap();
    }
}

/// A headless Chromium with a fresh profile (kept alive by the returned directory), its window
/// 1360 × 2000.
pub fn browser() -> (Browser, tempfile::TempDir) {
    crate::chromium::browser_sized(Some((1360, 2000)))
}

pub fn eval(tab: &Tab, js: &str) -> Value {
    tab.evaluate(js, false)
        .unwrap_or_else(|e| panic!("evaluating {js}: {e}"))
        .value
        .unwrap_or(Value::Null)
}

/// Evaluates an expression whose value is an array or an object, as JSON.
pub fn eval_json(tab: &Tab, js: &str) -> Value {
    let text = eval(tab, &format!("JSON.stringify({js})"));
    serde_json::from_str(text.as_str().unwrap_or("null")).unwrap()
}

/// Evaluates an expression whose value is a promise.
pub fn eval_async(tab: &Tab, js: &str) -> Value {
    tab.evaluate(js, true)
        .unwrap_or_else(|e| panic!("evaluating {js}: {e}"))
        .value
        .unwrap_or(Value::Null)
}

/// Waits until `js` evaluates to true in the page.
pub fn wait_until(tab: &Tab, js: &str) {
    let deadline = Instant::now() + WAIT;
    loop {
        if eval(tab, js) == Value::Bool(true) {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {js}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub fn text(tab: &Tab, id: &str) -> String {
    eval(tab, &format!("document.getElementById('{id}').textContent"))
        .as_str()
        .unwrap_or_default()
        .to_string()
}

pub fn click(tab: &Tab, id: &str) {
    wait_until(tab, &format!("!document.getElementById('{id}').disabled"));
    eval(
        tab,
        &format!("document.getElementById('{id}').click(), true"),
    );
}

pub fn set_value(tab: &Tab, id: &str, value: &str) {
    let v = serde_json::to_string(value).unwrap();
    eval(
        tab,
        &format!("(() => {{ const e = document.getElementById('{id}'); e.value = {v}; e.dispatchEvent(new Event('change')); return true; }})()"),
    );
}

/// Sets the viewport (CSS pixels); `mobile` as a phone would.
pub fn viewport(tab: &Tab, width: u32, height: u32, mobile: bool) {
    tab.call_method(Emulation::SetDeviceMetricsOverride {
        width,
        height,
        device_scale_factor: 1.0,
        mobile,
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
}

/// Loads `url` in `tab` and waits, with a deadline, until the new document is complete.
///
/// Not `wait_until_navigated`: headless_chrome raises its "navigating" flag only once
/// `Page.navigate` has returned, and lowers it on the page's `networkAlmostIdle`; on a loaded
/// machine that event can come first, the flag then stays up and the wait fails ("The event
/// waited for never came") on a page that loaded long ago — seen with two suites at once. So the
/// old document is marked, and the wait is for a complete document without the mark.
pub fn navigate(tab: &Tab, url: &str) {
    // A tab still opening may refuse the mark: its about:blank is excluded by its protocol.
    let _ = tab.evaluate("window.__piswarmLeaving = true", false);
    tab.navigate_to(url)
        .unwrap_or_else(|e| panic!("navigating to {url}: {e}"));
    crate::common::wait_until(&format!("{url} to load"), WAIT, || {
        // Evaluating while the documents change may fail: that is "not yet".
        tab.evaluate(
            "!window.__piswarmLeaving && location.protocol !== 'about:' && document.readyState === 'complete'",
            false,
        )
        .ok()
        .and_then(|r| r.value)
            == Some(Value::Bool(true))
    });
}

pub fn open(tab: &Tab, url: &str) {
    navigate(tab, url);
    wait_until(tab, "document.getElementById('live').textContent !== '' && !document.getElementById('live').classList.contains('off')");
}

/// Runs browser code (blocking) beside the async node.
pub async fn in_browser<T: Send + 'static>(f: impl FnOnce(Arc<Tab>) -> T + Send + 'static) -> T {
    tokio::time::timeout(
        Duration::from_secs(600),
        tokio::task::spawn_blocking(move || {
            let (browser, _profile) = browser();
            let tab = browser.new_tab().unwrap();
            f(tab)
        }),
    )
    .await
    .expect("the browser scenario took too long")
    .unwrap()
}

fn rows(tab: &Tab, body: &str) -> usize {
    eval(
        tab,
        &format!("document.querySelectorAll('#{body} tr').length"),
    )
    .as_u64()
    .unwrap() as usize
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn start_create_five_clients_watch_results_stop() {
    let d = dashboard(Job::new(Some(5_000), Some(1000)).unwrap(), false).await;
    let url = d.url.clone();
    let listen = in_browser(move |tab| {
        open(&tab, &url);
        wait_until(
            &tab,
            "document.getElementById('server-state').dataset.state === 'stopped'",
        );
        // A mark that a reload would erase.
        eval(&tab, "window.__noReload = 42, true");
        // A request pending disables its button at once.
        assert_eq!(
            eval(
                &tab,
                "(() => { const b = document.getElementById('start'); b.click(); return b.disabled; })()"
            ),
            Value::Bool(true)
        );
        wait_until(
            &tab,
            "document.getElementById('server-state').dataset.state === 'running'",
        );
        set_value(&tab, "client-count", "5");
        set_value(&tab, "client-mode", "once");
        click(&tab, "create-clients");
        // Create says how many started.
        wait_until(
            &tab,
            "document.getElementById('clients-feedback').textContent.includes('5 clients started')",
        );
        wait_until(
            &tab,
            "document.querySelectorAll('#history-body tr[data-id]').length === 5 && window.piswarmHooks.unwritten === 0",
        );
        wait_until(
            &tab,
            "document.getElementById('f-intervals').textContent === '5'",
        );
        assert_eq!(text(&tab, "f-even"), "6,247,500");
        // A result's time is the local clock time it arrived (it does not move on by itself),
        // with the UTC value on hover.
        let time = eval_json(
            &tab,
            "(() => { const td = document.querySelector('#history-body tr td:last-child'); return [td.textContent, td.title, /^\\d{1,2}:\\d{2}:\\d{2}/.test(td.textContent)]; })()",
        );
        assert_eq!(time[2], true, "a clock time: {time}");
        assert!(time[1].as_str().unwrap().ends_with('Z'), "{time}");
        // The runs list says what its numbers are.
        let run = eval(&tab, "document.querySelector('#runs li').textContent");
        assert!(run.as_str().unwrap().contains("5,000 terms · chunk 1,000"), "{run}");
        assert_eq!(text(&tab, "f-odd"), "6,250,000");
        assert!(
            text(&tab, "f-pi").starts_with("3.14"),
            "{}",
            text(&tab, "f-pi")
        );
        assert_eq!(
            eval(&tab, "window.__noReload"),
            Value::from(42),
            "the page was not reloaded"
        );
        let listen = text(&tab, "server-listen");
        click(&tab, "stop");
        wait_until(
            &tab,
            "document.getElementById('server-state').dataset.state === 'stopped'",
        );
        assert_eq!(eval(&tab, "window.__noReload"), Value::from(42));
        listen
    })
    .await;
    assert!(
        tokio::net::TcpStream::connect(&listen).await.is_err(),
        "the stopped server no longer accepts connections on {listen}"
    );
    d.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hostile_and_right_to_left_names_are_shown_as_text() {
    let d = dashboard(Job::new(Some(3_000), Some(1000)).unwrap(), true).await;
    let hostile = "<img src=x onerror=alert(1)>";
    let listen = d.node.view().listen;
    for name in [hostile, "\u{202E}evil"] {
        let mut config = piswarm::worker::WorkerConfig::new(listen.clone());
        config.name = name.to_string();
        config.once = true;
        piswarm::worker::run_worker(config, CancellationToken::new())
            .await
            .unwrap();
    }
    let url = d.url.clone();
    in_browser(move |tab| {
        open(&tab, &url);
        wait_until(
            &tab,
            "document.querySelectorAll('#history-body tr[data-id]').length === 2 && window.piswarmHooks.unwritten === 0",
        );
        let cells = eval_json(
            &tab,
            "[...document.querySelectorAll('#history-body td.name')].map(td => td.textContent).sort()",
        );
        // The override character never reaches the page: the server replaces it ('?') and the
        // page would show any that a store holds as its code ("[U+202E]").
        let cells: Vec<String> = serde_json::from_value(cells).unwrap();
        assert_eq!(cells[0], hostile);
        assert!(cells[1].ends_with("evil") && cells[1].len() > 4, "{cells:?}");
        wait_until(
            &tab,
            "document.querySelectorAll('#throughput-plot text').length > 0",
        );
        assert_eq!(
            // (The only image is the join link's QR code, drawn by the server.)
            eval(&tab, "document.querySelectorAll('img:not(#join-qr)').length"),
            Value::from(0)
        );
        assert_eq!(
            eval(&tab, "document.body.innerText.includes('<img src=x onerror=alert(1)>')"),
            Value::Bool(true),
            "the name is visible as text"
        );
        // No override character reaches the page's text, plots included.
        assert_eq!(
            eval(
                &tab,
                "/[\\u202A-\\u202E\\u2066-\\u2069]/.test(document.body.innerText + [...document.querySelectorAll('svg text, svg title')].map(e => e.textContent).join(''))"
            ),
            Value::Bool(false)
        );
    })
    .await;
    d.close().await;
}

/// Every view in Portuguese: no English string of the page's own list shows anywhere (text,
/// tooltips, placeholders, plots), numbers are written the Brazilian way, and the API's errors
/// come in Portuguese.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_view_in_portuguese() {
    // A cap of 10 local clients, so that asking for 1 000 below is refused (and says why).
    let d = dashboard_with(Job::new(Some(20_000), Some(1000)).unwrap(), true, |o| {
        o.max_local_clients = 10;
    })
    .await;
    d.work("w1", 1).await;
    // A second run, so that there is an earlier one to view.
    d.node
        .new_run(Job::new(Some(1_000_000_000_000), Some(1000)).unwrap())
        .await
        .unwrap();
    // A raw session that holds two intervals and never answers: in flight, in the worker table.
    let mut idle = crate::common::RawClient::connect(d.node.view().listen.parse().unwrap()).await;
    idle.hello("parado").await;
    idle.send(r#"{"type":"request","count":2}"#).await;
    idle.recv().await;
    let base = d.url.clone();
    in_browser(move |tab| {
        // The English strings, from the page itself.
        navigate(&tab, &format!("{base}?lang=en"));
        let en: Value = serde_json::from_str(
            eval(&tab, "document.getElementById('strings').textContent")
                .as_str()
                .unwrap(),
        )
        .unwrap();
        open(&tab, &format!("{base}?lang=pt-BR"));
        let pt: Value = serde_json::from_str(
            eval(&tab, "document.getElementById('strings').textContent")
                .as_str()
                .unwrap(),
        )
        .unwrap();
        assert_eq!(eval(&tab, "document.documentElement.lang"), Value::from("pt-BR"));
        assert_eq!(text(&tab, "start"), "Iniciar");
        // English phrases that differ from their translation, as whole words.
        let english: Vec<String> = en
            .as_object()
            .unwrap()
            .iter()
            .filter(|(k, v)| pt[k.as_str()] != **v)
            .flat_map(|(_, v)| {
                v.as_str()
                    .unwrap()
                    .split(['{', '}', '(', ')', ':', ',', '—', '·', '…', '+'])
                    .map(|p| p.trim().to_string())
                    .filter(|p| p.chars().filter(|c| c.is_alphabetic()).count() >= 4)
                    .collect::<Vec<_>>()
            })
            // Words both languages share ("piswarm") are not English.
            .filter(|p| !pt.as_object().unwrap().values().any(|v| contains_words(v.as_str().unwrap(), p)))
            .collect();
        let everything = "(() => [document.body.innerText, ...[...document.querySelectorAll('[title]')].map(e => e.title), \
            ...[...document.querySelectorAll('[placeholder]')].map(e => e.placeholder), \
            ...[...document.querySelectorAll('svg text, svg title, option')].map(e => e.textContent)].join('\\n'))()";
        let check = |tab: &Tab, view: &str| {
            let all = eval(tab, everything).as_str().unwrap().to_string();
            for phrase in &english {
                if let Some(at) = find_words(&all, phrase) {
                    let lower = all.to_lowercase();
                    let around: String = lower[at..].chars().take(80).collect();
                    panic!("{view}: English '{phrase}' in the Portuguese page: …{around}…");
                }
            }
        };
        wait_until(&tab, "document.querySelectorAll('#runs li').length === 2");
        wait_until(&tab, "document.querySelectorAll('#workers-body tr[data-session]').length === 1");
        check(&tab, "the current run");
        // In flight.
        set_value(&tab, "history-state", "in_flight");
        wait_until(&tab, "document.querySelectorAll('#history-body tr[data-id]').length === 2");
        check(&tab, "in flight");
        // The earlier run, its plots and its history by interval.
        eval(&tab, "document.querySelector('#runs li:last-child').click(), true");
        wait_until(&tab, "document.querySelectorAll('#history-body tr[data-id]').length === 20");
        wait_until(&tab, "document.querySelectorAll('#error-plot path').length > 0");
        set_value(&tab, "history-sort", "interval:asc");
        wait_until(&tab, "document.querySelector('#history-body tr').dataset.id === '0'");
        assert_eq!(text(&tab, "f-even"), "99.990.000", "numbers written the Brazilian way");
        assert!(text(&tab, "f-pi").starts_with("3,14"), "{}", text(&tab, "f-pi"));
        check(&tab, "an earlier run");
        // A failed action says why, in Portuguese.
        click(&tab, "back-current");
        set_value(&tab, "client-count", "1000");
        click(&tab, "create-clients");
        wait_until(&tab, "document.getElementById('clients-feedback').classList.contains('bad')");
        let why = text(&tab, "clients-feedback");
        assert!(why.contains("clientes locais"), "{why}");
        check(&tab, "an error");
    })
    .await;
    drop(idle);
    d.close().await;
}

/// Where `phrase` occurs in `text` as whole words, ignoring case (a flag such as
/// `--max-local-clients` is one word).
fn find_words(text: &str, phrase: &str) -> Option<usize> {
    let hay = text.to_lowercase();
    let needle = phrase.to_lowercase();
    let is_word = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '-' || c == '_');
    hay.match_indices(&needle)
        .find(|(i, m)| {
            !is_word(hay[..*i].chars().next_back()) && !is_word(hay[i + m.len()..].chars().next())
        })
        .map(|(i, _)| i)
}

fn contains_words(text: &str, phrase: &str) -> bool {
    find_words(text, phrase).is_some()
}

/// A run watched live, with two "until done" clients: progress, plots with hover values, an ETA
/// that agrees with the server's own progress; saves screenshots if asked to.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_run_watched_live() {
    let d = dashboard(
        Job::new(Some(100_000_000_000), Some(100_000_000)).unwrap(),
        true,
    )
    .await;
    let url = d.url.clone();
    let screenshot = std::env::var_os("PISWARM_SCREENSHOT").map(PathBuf::from);
    let phone = std::env::var_os("PISWARM_SCREENSHOT_PHONE").map(PathBuf::from);
    in_browser(move |tab| {
        open(&tab, &url);
        wait_until(
            &tab,
            "document.getElementById('server-state').dataset.state === 'running'",
        );
        // Before any progress there is no estimate.
        assert_eq!(text(&tab, "eta"), "estimating…");
        set_value(&tab, "client-count", "2");
        set_value(&tab, "client-mode", "until_done");
        click(&tab, "create-clients");
        wait_until(
            &tab,
            "document.querySelectorAll('#history-body tr[data-id]').length >= 20",
        );
        wait_until(&tab, "document.getElementById('progress').value > 0.05");
        wait_until(
            &tab,
            "document.querySelectorAll('#coverage-map rect.cov-done').length > 0",
        );
        wait_until(
            &tab,
            "document.querySelectorAll('#error-plot path').length > 0",
        );
        wait_until(&tab, "document.querySelectorAll('#workers-body tr[data-session]').length === 2");
        // Hover values on every plot.
        for sel in ["#error-plot circle title", "#throughput-plot rect title", "#coverage-map rect title"] {
            assert!(
                eval(&tab, &format!("document.querySelectorAll('{sel}').length > 0")) == Value::Bool(true),
                "{sel}"
            );
        }
        // The ETA, once shown, agrees with the remaining time the server's own progress implies:
        // its rate between two status reads 5 s apart — the window of the page's own rate, so
        // that both measure the same stretch of a rate that moves with the machine's load.
        wait_until(&tab, "document.getElementById('eta').dataset.etaS !== undefined");
        eval_async(
            &tab,
            "fetch('/api/status').then(r => r.json()).then(s => { window.__first = [performance.now(), Number(s.run.done_terms), s.run.progress]; return true; })",
        );
        wait_until(&tab, "performance.now() - window.__first[0] >= 5000 || document.getElementById('run-state').textContent === 'complete'");
        let v = eval_async(
            &tab,
            "fetch('/api/status').then(r => r.json()).then(s => { const [t0, d0] = window.__first; const rate = (Number(s.run.done_terms) - d0) / ((performance.now() - t0) / 1000); return JSON.stringify([Number(document.getElementById('eta').dataset.etaS), (s.run.terms - Number(s.run.done_terms)) / rate, s.run.complete]); })",
        );
        let v: Vec<Value> = serde_json::from_str(v.as_str().unwrap()).unwrap();
        let (page_eta, server_eta, complete) = (
            v[0].as_f64().unwrap_or(0.0),
            v[1].as_f64().unwrap_or(0.0),
            v[2] == Value::Bool(true),
        );
        eprintln!("time left: the page's {page_eta:.1} s, the server's progress {server_eta:.1} s (complete: {complete})");
        assert!(
            complete || (page_eta - server_eta).abs() <= 0.5 * server_eta + 2.0,
            "the page's estimate {page_eta} s against the server's progress {server_eta} s"
        );
        if let Some(path) = screenshot {
            // The whole page, down to the history's pager.
            let height = eval(&tab, "document.documentElement.scrollHeight").as_u64().unwrap();
            viewport(&tab, 1360, height as u32, false);
            eval(&tab, "window.scrollTo(0, 0), true");
            wait_until(&tab, "[...document.querySelectorAll('#history-body tr')].slice(0, 15).every((tr) => !tr.hidden)");
            let png = tab
                .capture_screenshot(CaptureScreenshotFormatOption::Png, None, None, true)
                .unwrap();
            std::fs::write(path, png).unwrap();
        }
        if let Some(path) = phone {
            viewport(&tab, 390, 844, true);
            // At a moment when the results form a prefix of the job, so that the corrected
            // estimate has a value.
            wait_until(&tab, "document.getElementById('f-corrected').textContent !== '–'");
            // The plots are redrawn at the new width.
            wait_until(&tab, "(() => { const s = document.getElementById('error-plot'); return Math.abs(s.viewBox.baseVal.width - Math.max(280, s.clientWidth)) < 2; })()");
            let png = tab
                .capture_screenshot(CaptureScreenshotFormatOption::Png, None, None, false)
                .unwrap();
            std::fs::write(path, png).unwrap();
        }
        // At the end the estimate is zero.
        wait_until(&tab, "document.getElementById('run-state').textContent === 'complete'");
        wait_until(&tab, "document.getElementById('eta').dataset.etaS === '0'");
    })
    .await;
    d.close().await;
}

/// 5 000 results in about a second: the page learns of every one (its live head reaches the
/// server's, counting each result once), the first page shows exactly the newest ones, and paging
/// through the history finds all of them, with a table that never grows beyond one page.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_flood_of_results_reaches_the_page_without_a_gap() {
    let d = dashboard_with(Job::new(Some(5_000_000), Some(1000)).unwrap(), true, |o| {
        o.max_prefetch = 256;
    })
    .await;
    let url = d.url.clone();
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let (flooded_tx, flooded_rx) = std::sync::mpsc::channel::<()>();
    let browser = tokio::spawn(in_browser(move |tab| {
        open(&tab, &url);
        wait_until(
            &tab,
            "document.getElementById('history').dataset.liveHead === '0'",
        );
        // The page's long tasks while the results stream in: printed, for docs/performance.md.
        eval(&tab, "(() => { const long = []; document.body.dataset.longTasks = '[]'; new PerformanceObserver(l => { l.getEntries().forEach(e => long.push(Math.round(e.duration))); document.body.dataset.longTasks = JSON.stringify(long); }).observe({type: 'longtask'}); return true; })()");
        ready_tx.send(()).unwrap();
        flooded_rx.recv_timeout(WAIT).unwrap();
        let head = eval_async(
            &tab,
            "fetch('/api/runs/current/results?limit=1').then(r => r.json()).then(p => String(p.results[0].seq))",
        );
        wait_until(
            &tab,
            &format!("document.getElementById('history').dataset.liveHead === {head}"),
        );
        assert_eq!(
            eval(&tab, "document.getElementById('history').dataset.received"),
            Value::from("5000")
        );
        eprintln!(
            "long tasks (> 50 ms) of the page while 5000 results streamed in: {}",
            eval(&tab, "document.body.dataset.longTasks")
        );
        assert_eq!(text(&tab, "history-total"), "5,000");
        // The first page is the newest 50, in order.
        let seqs = eval_json(
            &tab,
            "[...document.querySelectorAll('#history-body tr')].map(tr => Number(tr.dataset.seq))",
        );
        let seqs: Vec<i64> = serde_json::from_value(seqs).unwrap();
        let head: i64 = head.as_str().unwrap().parse().unwrap();
        assert_eq!(seqs, (head - 49..=head).rev().collect::<Vec<_>>());
        // Every result, page by page (250 a page), in a table of constant size.
        set_value(&tab, "history-page-size", "250");
        wait_until(
            &tab,
            "document.querySelectorAll('#history-body tr').length === 250",
        );
        let mut ids = std::collections::BTreeSet::new();
        for page in 0..20 {
            let got: Vec<String> = serde_json::from_value(eval_json(
                &tab,
                "[...document.querySelectorAll('#history-body tr')].map(tr => tr.dataset.id)",
            ))
            .unwrap();
            assert_eq!(got.len(), 250, "page {page}");
            ids.extend(got);
            // One page of rows, nine cells each once written (rows out of view are written
            // when the page is left alone), whatever the page: never more.
            let elements = eval(&tab, "document.querySelectorAll('#history-body *').length")
                .as_u64()
                .unwrap();
            assert!(
                elements <= 2500,
                "page {page}: {elements} elements in the rows"
            );
            if page == 19 {
                wait_until(&tab, "window.piswarmHooks.unwritten === 0");
                assert_eq!(
                    eval(&tab, "document.querySelectorAll('#history-body *').length"),
                    Value::from(2500)
                );
            }
            let all = eval(&tab, "document.getElementsByTagName('*').length")
                .as_u64()
                .unwrap();
            assert!(all < 6000, "{all} elements in the page");
            if page < 19 {
                let first = eval(
                    &tab,
                    "document.querySelector('#history-body tr').dataset.seq",
                );
                click(&tab, "history-next");
                wait_until(
                    &tab,
                    &format!("document.querySelector('#history-body tr').dataset.seq !== {first}"),
                );
            }
        }
        assert!(
            eval(&tab, "document.getElementById('history-next').disabled") == Value::Bool(true)
        );
        ids.len()
    }));
    ready_rx.await.unwrap();
    // 5 000 intervals of 1000 terms: one worker of two threads delivers them in about a second.
    let mut config = piswarm::worker::WorkerConfig::new(d.node.view().listen);
    config.name = "flood".into();
    config.threads = 2;
    config.prefetch = Some(256);
    let stop = CancellationToken::new();
    let snapshot = d.node.current_run().snapshot;
    let worker = tokio::spawn(piswarm::worker::run_worker(config, stop.clone()));
    let mut snap = snapshot.clone();
    tokio::time::timeout(WAIT, snap.wait_for(|s| s.totals.intervals_done >= 5000))
        .await
        .unwrap()
        .unwrap();
    stop.cancel();
    let _ = worker.await;
    flooded_tx.send(()).unwrap();
    assert_eq!(browser.await.unwrap(), 5000, "every result is on some page");
    d.close().await;
}

/// Installed before the page's own script: lets a test hold the page's live stream. While
/// `window.__hold` is true the page is given no `update` (as if it had missed them), so the first
/// one it gets afterwards spans everything that arrived meanwhile, in one step — what a burst of
/// more than 100 results in one update does (the update says `more`, and the page fetches the
/// range). `window.__steps` lists the `[after, head]` of the updates the page was given.
const HOLD_STREAM: &str = "(() => { const Real = window.EventSource; window.__hold = false; window.__steps = []; \
    window.EventSource = function (url, init) { const es = new Real(url, init); const add = es.addEventListener.bind(es); \
    es.addEventListener = (type, f, o) => add(type, (ev) => { if (type === 'update') { if (window.__hold) return; \
    const u = JSON.parse(ev.data); window.__steps.push([u.after, u.head]); } f(ev); }, o); return es; }; })()";

/// More than a page of results in one update, into a run that had none (200, then 500 in a new
/// run): the page shows the newest 50 "of 200" (of 500) with Next and Last enabled — its paging
/// comes from the server's count, not from how many rows were merged — and Next, page by page,
/// and Last both reach the oldest result.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_burst_of_several_pages_is_paged_to_the_oldest() {
    let d = dashboard_with(Job::new(Some(200_000), Some(1000)).unwrap(), true, |o| {
        o.max_prefetch = 256;
    })
    .await;
    let url = d.url.clone();
    // Rust → page: the run to follow, then "flooded"; page → Rust: "holding", then "checked".
    let (to_page, from_rust) = std::sync::mpsc::channel::<piswarm::coordinator::RunId>();
    let (held_tx, mut held_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let browser = tokio::spawn(in_browser(move |tab| {
        tab.call_method(
            headless_chrome::protocol::cdp::Page::AddScriptToEvaluateOnNewDocument {
                source: HOLD_STREAM.to_string(),
                world_name: None,
                include_command_line_api: None,
                run_immediately: None,
            },
        )
        .unwrap();
        open(&tab, &url);
        let seqs = |tab: &Tab| -> Vec<i64> {
            serde_json::from_value::<Vec<String>>(eval_json(
                tab,
                "[...document.querySelectorAll('#history-body tr')].map(tr => tr.dataset.seq)",
            ))
            .unwrap()
            .iter()
            .map(|s| s.parse().unwrap())
            .collect()
        };
        for n in [200u64, 500] {
            let run = from_rust.recv_timeout(WAIT).unwrap();
            let api = |tab: &Tab, query: &str| -> Value {
                let text = eval_async(
                    tab,
                    &format!("fetch('/api/runs/{run}/results?{query}').then(r => r.text())"),
                );
                serde_json::from_str(text.as_str().unwrap()).unwrap()
            };
            // Following the run, which has no result yet.
            wait_until(
                &tab,
                &format!("document.getElementById('view-run').textContent === '{run}' && document.getElementById('history').dataset.liveHead === '0' && document.getElementById('history-body').children.length === 0"),
            );
            eval(&tab, "window.__hold = true, window.__steps = [], true");
            held_tx.send(()).unwrap();
            assert_eq!(from_rust.recv_timeout(WAIT).unwrap(), run);
            crate::common::wait_until("every result stored", WAIT, || {
                api(&tab, "limit=1")["total"] == n
            });
            eval(&tab, "window.__hold = false, true");
            let head = api(&tab, "limit=1")["results"][0]["seq"].as_i64().unwrap();
            wait_until(
                &tab,
                &format!("document.getElementById('history').dataset.liveHead === '{head}'"),
            );
            // The whole burst came in the first update the page was given.
            let first = eval_json(&tab, "window.__steps[0]");
            assert_eq!(first[1], Value::from(head), "{first}");
            assert_eq!(
                eval(&tab, "document.getElementById('history').dataset.received"),
                Value::from(n.to_string())
            );
            // The newest page, "50 of n", with the older pages reachable.
            let newest: Vec<i64> = api(&tab, "limit=50")["results"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["seq"].as_i64().unwrap())
                .collect();
            assert_eq!(seqs(&tab), newest);
            assert_eq!(text(&tab, "history-range"), format!("50 of {n}"));
            for id in ["history-next", "history-last"] {
                assert_eq!(
                    eval(&tab, &format!("document.getElementById('{id}').disabled")),
                    Value::Bool(false),
                    "{id} after a burst of {n}"
                );
            }
            let oldest = &api(&tab, "sort=arrival&order=asc&limit=1")["results"][0];
            let (oldest_seq, oldest_id) = (
                oldest["seq"].as_i64().unwrap(),
                oldest["id"].as_str().unwrap().to_string(),
            );
            // Last: the oldest result ends the last page.
            click(&tab, "history-last");
            wait_until(
                &tab,
                &format!("document.querySelector('#history-body tr:last-child').dataset.seq === '{oldest_seq}'"),
            );
            assert_eq!(
                eval(
                    &tab,
                    "document.querySelector('#history-body tr:last-child').dataset.id"
                ),
                Value::from(oldest_id.clone())
            );
            assert_eq!(
                eval(&tab, "document.getElementById('history-next').disabled"),
                Value::Bool(true)
            );
            // Next, page by page from the newest: every result once, the oldest last.
            click(&tab, "history-first");
            wait_until(
                &tab,
                &format!("document.querySelector('#history-body tr').dataset.seq === '{head}'"),
            );
            let mut seen = std::collections::BTreeSet::new();
            for page in 0..n / 50 {
                let got = seqs(&tab);
                assert_eq!(got.len(), 50, "page {page} of the burst of {n}");
                seen.extend(got.iter().copied());
                if page + 1 < n / 50 {
                    click(&tab, "history-next");
                    wait_until(
                        &tab,
                        &format!(
                            "document.querySelector('#history-body tr').dataset.seq !== '{}'",
                            got[0]
                        ),
                    );
                }
            }
            assert_eq!(seen.len() as u64, n);
            assert_eq!(seqs(&tab).last(), Some(&oldest_seq));
            assert_eq!(
                eval(
                    &tab,
                    "document.querySelector('#history-body tr:last-child').dataset.id"
                ),
                Value::from(oldest_id)
            );
            assert_eq!(
                eval(&tab, "document.getElementById('history-next').disabled"),
                Value::Bool(true)
            );
            held_tx.send(()).unwrap();
        }
    }));
    for n in [200u64, 500] {
        if n == 500 {
            d.node
                .new_run(Job::new(Some(500_000), Some(1000)).unwrap())
                .await
                .unwrap();
        }
        let run = d.node.current_run().id;
        to_page.send(run).unwrap();
        tokio::time::timeout(WAIT, held_rx.recv())
            .await
            .unwrap()
            .unwrap();
        d.work("burst", 2).await;
        assert_eq!(
            d.node.current_run().snapshot.borrow().totals.intervals_done,
            n
        );
        to_page.send(run).unwrap();
        tokio::time::timeout(WAIT, held_rx.recv())
            .await
            .unwrap()
            .unwrap();
    }
    browser.await.unwrap();
    d.close().await;
}

/// Watches the history's rows: `window.__added`, the rows put into the table; `window.__written`,
/// the rows whose cells or attributes were written (the time column included: a result's time is
/// a clock time, written once).
const WATCH_ROWS: &str = "(() => { window.__added = new Set(); window.__written = new Set(); \
    const body = document.getElementById('history-body'); if (window.__rows) window.__rows.disconnect(); \
    window.__onRows = (ms) => { for (const m of ms) { \
      if (m.type === 'childList' && m.target === body) { m.addedNodes.forEach((n) => window.__added.add(n)); continue; } \
      const node = m.target.nodeType === 3 ? m.target.parentNode : m.target; \
      const tr = node.closest('tr'); if (tr) window.__written.add(tr); } }; \
    window.__rows = new MutationObserver(window.__onRows); \
    window.__rows.observe(body, { subtree: true, childList: true, characterData: true, attributes: true }); return true; })()";

/// `[rows added, rows written, rows written that were not added]` since [`WATCH_ROWS`].
const ROWS_TOUCHED: &str = "(() => { window.__onRows(window.__rows.takeRecords()); window.__rows.disconnect(); \
    return [window.__added.size, window.__written.size, [...window.__written].filter((r) => !window.__added.has(r)).length]; })()";

/// Nothing new, nothing redrawn: the history is not redrawn, and nothing on the page is written,
/// while the page receives updates that bring no result (the current run is finished); the
/// history is not redrawn while a stored run is in view and results
/// of the current run stream in. Counted by the page's own hooks (`data-renders`, `window.piswarmHooks.updates`).
/// Following the live head, an update writes only its new rows (the oldest rows, rewritten and
/// moved to the top): the rows still shown are left as they are. A stored run's next page is read
/// ahead: Next shows it without a request.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_history_is_not_redrawn_when_nothing_is_new() {
    let d = dashboard(Job::new(Some(100_000), Some(1000)).unwrap(), true).await;
    d.work("first", 1).await;
    let first = d.node.current_run().id;
    let url = d.url.clone();
    let (idle_tx, idle_rx) = tokio::sync::oneshot::channel::<()>();
    let (run_tx, run_rx) = std::sync::mpsc::channel::<piswarm::coordinator::RunId>();
    let page = tokio::spawn(in_browser(move |tab| {
        // Waits until 8 more updates have been handled (and, if `moving`, results of the current
        // run have arrived meanwhile), then checks that the history was not redrawn.
        let no_redraw = |tab: &Tab, what: &str, moving: bool| {
            let hooks = "(() => { const h = document.getElementById('history').dataset; return [Number(h.renders), window.piswarmHooks.updates, Number(h.liveHead)]; })()";
            let before = eval_json(tab, hooks);
            let (renders, updates, head) = (
                before[0].as_i64().unwrap(),
                before[1].as_i64().unwrap(),
                before[2].as_i64().unwrap(),
            );
            let moved = if moving {
                format!(" && Number(document.getElementById('history').dataset.liveHead) > {head}")
            } else {
                String::new()
            };
            wait_until(
                tab,
                &format!("window.piswarmHooks.updates >= {}{moved}", updates + 8),
            );
            let after = eval_json(tab, hooks);
            assert_eq!(
                after[0].as_i64().unwrap(),
                renders,
                "{what}: the history was redrawn while nothing new was shown ({before} → {after})"
            );
        };
        open(&tab, &url);
        // The finished current run, its first page loaded and an update handled.
        wait_until(&tab, "document.getElementById('history').dataset.total === '100' && document.querySelectorAll('#history-body tr').length === 50 && window.piswarmHooks.updates >= 1 && window.piswarmHooks.unwritten === 0");
        // Nothing is written to the page meanwhile (no clock ticking, no list rebuilt):
        // a write costs a frame, and a frame of a page with a long history costs milliseconds.
        eval(&tab, "window.__pageWrites = []; window.__onPage = (ms) => { for (const m of ms) { let e = m.target.nodeType === 1 ? m.target : m.target.parentElement; while (e && !e.id) e = e.parentElement; window.__pageWrites.push((e ? e.id : '?') + ':' + m.type); } }; window.__page = new MutationObserver(window.__onPage); window.__page.observe(document.body, { subtree: true, childList: true, attributes: true, characterData: true }), true");
        no_redraw(&tab, "the finished current run", false);
        let writes = eval(&tab, "(() => { window.__onPage(window.__page.takeRecords()); window.__page.disconnect(); return window.__pageWrites.join(' '); })()");
        // The one exception: the server's uptime, written once a minute (if a minute ended
        // meanwhile).
        let writes = writes.as_str().unwrap();
        let other: Vec<_> = writes
            .split_whitespace()
            .filter(|w| *w != "server-uptime:characterData")
            .collect();
        assert!(
            other.is_empty() && writes.split_whitespace().count() <= 1,
            "the page was written to while nothing happened: {writes}"
        );
        idle_tx.send(()).unwrap();
        // A new run, with results streaming in: the page follows it…
        let run = run_rx.recv_timeout(WAIT).unwrap();
        wait_until(
            &tab,
            &format!("document.getElementById('view-run').textContent === '{run}' && Number(document.getElementById('history').dataset.received) > 0"),
        );
        // Live: a full first page, then a few updates with new results; the whole page on
        // screen, so that every row is written with its update (rows out of view are written
        // once the history is left alone, which it is not while results stream in).
        viewport(&tab, 1360, 1800, false);
        eval(
            &tab,
            "document.getElementById('history').scrollIntoView(), true",
        );
        wait_until(
            &tab,
            "document.querySelectorAll('#history-body tr').length === 50",
        );
        // Watched from a moment when every row is written: a row written later was added
        // meanwhile.
        wait_until(
            &tab,
            &format!("window.piswarmHooks.unwritten === 0 && {WATCH_ROWS}"),
        );
        let renders = eval(
            &tab,
            "Number(document.getElementById('history').dataset.renders)",
        )
        .as_i64()
        .unwrap();
        wait_until(
            &tab,
            &format!(
                "Number(document.getElementById('history').dataset.renders) >= {}",
                renders + 3
            ),
        );
        let touched = eval_json(&tab, ROWS_TOUCHED);
        assert!(
            touched[0].as_u64().unwrap() > 0,
            "new rows were shown: {touched}"
        );
        assert_eq!(
            touched[2],
            Value::from(0),
            "only the new rows were written (added, written, written but not added): {touched}"
        );
        // … until the earlier run is shown.
        let switches = eval(
            &tab,
            "Number(document.getElementById('final-card').dataset.switches || 0)",
        )
        .as_i64()
        .unwrap();
        eval(
            &tab,
            &format!("document.querySelector('#runs li[data-run=\"{first}\"]').click(), true"),
        );
        wait_until(
            &tab,
            &format!("Number(document.getElementById('final-card').dataset.switches) === {} && document.getElementById('view-run').textContent === '{first}' && document.getElementById('history').dataset.total === '100' && window.piswarmHooks.unwritten === 0", switches + 1),
        );
        eval(&tab, WATCH_ROWS);
        no_redraw(&tab, "a stored run in view", true);
        let touched = eval_json(&tab, ROWS_TOUCHED);
        assert_eq!(
            (&touched[0], &touched[1]),
            (&Value::from(0), &Value::from(0)),
            "a stored run in view: no row added or written (added, written, …): {touched}"
        );
        assert_eq!(rows(&tab, "history-body"), 50);
        assert_eq!(
            eval(&tab, "document.getElementById('history-new').hidden"),
            Value::Bool(true)
        );
        // A stored run's next page was read ahead when its first was shown: Next shows it
        // without asking the server again (newest first: results 50 down to 1).
        eval(&tab, "performance.setResourceTimingBufferSize(100000), performance.clearResourceTimings(), true");
        let pages = eval(
            &tab,
            "Number(document.getElementById('history').dataset.pages)",
        );
        eval(
            &tab,
            "document.getElementById('history-next').click(), true",
        );
        wait_until(
            &tab,
            &format!("Number(document.getElementById('history').dataset.pages) > {pages}"),
        );
        assert_eq!(
            eval(
                &tab,
                "document.querySelector('#history-body tr').dataset.seq"
            ),
            Value::from("50")
        );
        assert_eq!(rows(&tab, "history-body"), 50);
        assert_eq!(
            eval(&tab, "performance.getEntriesByType('resource').filter((e) => e.name.includes('/results?')).map((e) => e.name).join(' ')"),
            Value::from(""),
            "the next page of a stored run was asked for again"
        );
    }));
    idle_rx.await.unwrap();
    // An open-ended run and one worker of one thread: results keep coming.
    let run = d
        .node
        .new_run(Job::new(None, Some(100_000_000)).unwrap())
        .await
        .unwrap();
    let mut config = piswarm::worker::WorkerConfig::new(d.node.view().listen);
    config.name = "second".into();
    config.threads = 1;
    let stop = CancellationToken::new();
    let worker = tokio::spawn(piswarm::worker::run_worker(config, stop.clone()));
    run_tx.send(run).unwrap();
    page.await.unwrap();
    stop.cancel();
    let _ = worker.await;
    d.close().await;
}

/// History at any size: sort by interval or arrival, filter by worker and state, jump to an
/// interval id or a term index, first/previous/next/last pages.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn history_sorts_filters_jumps_and_pages() {
    let d = dashboard(Job::new(Some(300_000), Some(1000)).unwrap(), true).await;
    // Two workers; results in arrival order are not in interval order.
    tokio::join!(d.work("alpha", 1), d.work("beta", 1));
    let url = d.url.clone();
    in_browser(move |tab| {
        open(&tab, &url);
        wait_until(&tab, "document.getElementById('history').dataset.total === '300'");
        let ids = |tab: &Tab| -> Vec<u64> {
            serde_json::from_value::<Vec<String>>(eval_json(
                tab,
                "[...document.querySelectorAll('#history-body tr')].map(tr => tr.dataset.id)",
            ))
            .unwrap()
            .iter()
            .map(|s| s.parse().unwrap())
            .collect()
        };
        set_value(&tab, "history-sort", "interval:asc");
        wait_until(&tab, "document.querySelector('#history-body tr').dataset.id === '0'");
        assert_eq!(ids(&tab), (0..50).collect::<Vec<_>>());
        click(&tab, "history-next");
        wait_until(&tab, "document.querySelector('#history-body tr').dataset.id === '50'");
        click(&tab, "history-prev");
        wait_until(&tab, "document.querySelector('#history-body tr').dataset.id === '0'");
        click(&tab, "history-last");
        wait_until(&tab, "document.querySelector('#history-body tr').dataset.id === '250'");
        assert_eq!(ids(&tab), (250..300).collect::<Vec<_>>());
        assert!(eval(&tab, "document.getElementById('history-next').disabled") == Value::Bool(true));
        set_value(&tab, "history-sort", "interval:desc");
        wait_until(&tab, "document.querySelector('#history-body tr').dataset.id === '299'");
        // Jump to an interval id, then to a term index (term 123 456 is in interval 123).
        set_value(&tab, "history-jump-kind", "interval");
        set_value(&tab, "history-jump", "777");
        click(&tab, "history-go");
        wait_until(&tab, "document.getElementById('history-body').children.length === 0");
        set_value(&tab, "history-jump", "201");
        click(&tab, "history-go");
        wait_until(&tab, "document.querySelector('#history-body tr').dataset.id === '201'");
        assert_eq!(eval(&tab, "document.querySelector('#history-body tr').classList.contains('hit')"), Value::Bool(true));
        set_value(&tab, "history-jump-kind", "term");
        set_value(&tab, "history-jump", "123456");
        click(&tab, "history-go");
        wait_until(&tab, "document.querySelector('#history-body tr').dataset.id === '123'");
        // Filter by worker: only alpha's rows, and their count.
        set_value(&tab, "history-sort", "arrival:desc");
        set_value(&tab, "history-worker", "alpha");
        wait_until(&tab, "[...document.querySelectorAll('#history-body td.name')].every(td => td.textContent === 'alpha') && document.querySelectorAll('#history-body tr').length > 0 && window.piswarmHooks.unwritten === 0");
        let alpha: u64 = eval(&tab, "document.getElementById('history').dataset.total")
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        set_value(&tab, "history-worker", "beta");
        wait_until(&tab, "[...document.querySelectorAll('#history-body td.name')].every(td => td.textContent === 'beta') && document.querySelectorAll('#history-body tr').length > 0 && window.piswarmHooks.unwritten === 0");
        let beta: u64 = eval(&tab, "document.getElementById('history').dataset.total")
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(alpha + beta, 300);
        // State: nothing is in flight once the job is done.
        set_value(&tab, "history-worker", "");
        set_value(&tab, "history-state", "in_flight");
        wait_until(&tab, "document.getElementById('history').dataset.total === '0'");
        assert_eq!(rows(&tab, "history-body"), 0);
    })
    .await;
    d.close().await;
}

/// A page of 250 rows writes and shows, with the page, only the rows on screen and four rows
/// around them: the others are hidden until found (their height kept) and written once the page
/// is left alone; a scroll shows the rows it brings near, and every row ends up with its
/// result's text (checked against the API's page); printed, the page shows every row.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_long_page_shows_the_rows_on_screen_first() {
    let d = dashboard(Job::new(Some(300_000), Some(1000)).unwrap(), true).await;
    d.work("alpha", 1).await;
    let url = d.url.clone();
    let api = format!(
        "{}/api/runs/{}/results?sort=interval&order=asc&limit=250",
        url.trim_end_matches('/'),
        d.node.current_run().id
    );
    in_browser(move |tab| {
        // The page's rows, from the API: id and worker.
        let page: Value = serde_json::from_str(
            &ureq::get(&api)
                .call()
                .unwrap()
                .body_mut()
                .read_to_string()
                .unwrap(),
        )
        .unwrap();
        let expected: Vec<(String, String)> = page["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| (r["id"].to_string().trim_matches('"').to_string(), r["worker"].as_str().unwrap().to_string()))
            .collect();
        assert_eq!(expected.len(), 250);
        viewport(&tab, 1360, 900, false);
        open(&tab, &url);
        wait_until(&tab, "document.getElementById('history').dataset.total === '300'");
        set_value(&tab, "history-sort", "interval:asc");
        wait_until(&tab, "document.querySelector('#history-body tr').dataset.id === '0'");
        // The table's header at the top of the screen, then a page of 250 rows.
        eval(&tab, "document.getElementById('history').scrollIntoView(), true");
        let pages = eval(&tab, "Number(document.getElementById('history').dataset.pages)");
        set_value(&tab, "history-page-size", "250");
        wait_until(&tab, &format!("Number(document.getElementById('history').dataset.pages) > {pages} && document.querySelectorAll('#history-body tr').length === 250"));
        // The history scrolls in a box of its own, the pager below it in view.
        assert_eq!(
            eval(&tab, "(() => { const box = document.getElementById('history-box'); const pager = document.getElementById('history-last').getBoundingClientRect(); return box.scrollHeight > box.clientHeight && getComputedStyle(box).overflowY === 'auto' && pager.bottom <= innerHeight; })()"),
            Value::Bool(true),
            "the history scrolls in its box, the pager in view"
        );
        // Shown: the rows from the top of the box to four rows below its bottom (a box of 512 px
        // at this size, 24 px rows below its header: 21, and 4), and no other.
        let shown = |tab: &Tab| -> Vec<u64> {
            serde_json::from_value::<Vec<u64>>(eval_json(
                tab,
                "[...document.querySelectorAll('#history-body tr')].map((tr, i) => [tr, i]).filter(([tr]) => !tr.hidden).map(([, i]) => i)",
            ))
            .unwrap()
        };
        let first = shown(&tab);
        assert!(
            first.len() >= 24 && first.len() <= 26 && first == (0..first.len() as u64).collect::<Vec<_>>(),
            "the rows shown with the page: {first:?}"
        );
        assert_eq!(
            eval(&tab, "[...document.querySelectorAll('#history-body tr')].filter((tr) => tr.hidden).every((tr) => tr.hidden === 'until-found' && tr.getBoundingClientRect().height === document.querySelector('#history thead tr').getBoundingClientRect().height)"),
            Value::Bool(true),
            "the other rows are hidden until found, with the height of a row"
        );
        // Every row is written once the page is idle, each with its result.
        wait_until(&tab, "window.piswarmHooks.unwritten === 0");
        let cells = |tab: &Tab| -> Vec<(String, String)> {
            serde_json::from_value(eval_json(
                tab,
                "[...document.querySelectorAll('#history-body tr')].map((tr) => [tr.children[0].textContent.replace(/\\D/g, ''), tr.children[1].textContent])",
            ))
            .unwrap()
        };
        assert_eq!(cells(&tab), expected);
        // A scroll to the end of the page shows the rows it brings into the box.
        eval(&tab, "document.querySelector('#history-body tr:last-child').scrollIntoView({ block: 'end' }), true");
        wait_until(&tab, "(() => { const box = document.getElementById('history-box').getBoundingClientRect(); const rows = [...document.querySelectorAll('#history-body tr')].filter((tr) => { const r = tr.getBoundingClientRect(); return r.bottom > Math.max(box.top, 0) && r.top < Math.min(box.bottom, innerHeight); }); return rows.length >= 20 && rows.every((tr) => !tr.hidden && tr.children.length === 9); })()");
        assert!(shown(&tab).contains(&249));
        assert_eq!(cells(&tab), expected);
        // Printed, the page shows every row.
        assert!(shown(&tab).len() < 250);
        tab.print_to_pdf(None).unwrap();
        assert_eq!(shown(&tab).len(), 250, "every row shown to be printed");
    })
    .await;
    d.close().await;
}

/// The worker table: one row per session, live, sorted by any column, paged beyond 100 rows; the
/// throughput plot shows the fastest 20 and says how many more there are.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_worker_table_is_live_sorted_and_paged() {
    let d = dashboard_with(Job::new(None, Some(1000)).unwrap(), true, |o| {
        o.max_prefetch = 4;
        // The 130 sessions below stay silent on purpose: on a loaded machine the scenario can
        // outlast the default 60 s idle timeout, which would empty the table under the test.
        o.server.idle_timeout = Duration::from_secs(3600);
    })
    .await;
    let addr: std::net::SocketAddr = d.node.view().listen.parse().unwrap();
    // 130 sessions: each takes and answers nothing; 25 worker names have results.
    let mut clients = Vec::new();
    for i in 0..130 {
        let mut c = crate::common::RawClient::connect(addr).await;
        c.hello(&format!("w{i:03}")).await;
        clients.push(c);
    }
    for i in 0..25 {
        let mut config = piswarm::worker::WorkerConfig::new(addr.to_string());
        config.name = format!("once-{i:02}");
        config.once = true;
        piswarm::worker::run_worker(config, CancellationToken::new())
            .await
            .unwrap();
    }
    let url = d.url.clone();
    in_browser(move |tab| {
        open(&tab, &url);
        wait_until(&tab, "document.getElementById('workers-count').textContent === '130'");
        assert_eq!(rows(&tab, "workers-body"), 100, "100 rows a page");
        click(&tab, "workers-next");
        wait_until(&tab, "document.querySelectorAll('#workers-body tr[data-session]').length === 30");
        click(&tab, "workers-prev");
        wait_until(&tab, "document.querySelectorAll('#workers-body tr[data-session]').length === 100");
        click(&tab, "workers-sort-name");
        wait_until(&tab, "document.querySelector('#workers-body td.name').textContent === 'w000'");
        click(&tab, "workers-sort-name");
        wait_until(&tab, "document.querySelector('#workers-body td.name').textContent === 'w129'");
        // Live: the throughput plot has the once-clients, fastest first, 20 at most, "+5 more".
        wait_until(&tab, "document.querySelectorAll('#throughput-plot rect').length === 20");
        assert_eq!(text(&tab, "throughput-more"), "+5 more");
        let shown = eval_json(&tab, "[...document.querySelectorAll('#throughput-plot rect')].map(r => Number(r.getAttribute('width')))");
        let widths: Vec<f64> = serde_json::from_value(shown).unwrap();
        assert!(widths.windows(2).all(|w| w[0] >= w[1]), "fastest first: {widths:?}");
    })
    .await;
    drop(clients);
    d.close().await;
}

/// From a 360 px phone to a 1360 px screen, the page never scrolls sideways, with results,
/// workers and plots on it; the final result's numbers stay on one line each on a phone, plot
/// text keeps its size, the first row uses the width; the colours follow the system's scheme.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_horizontal_scrolling_from_phone_to_projector() {
    let d = dashboard(Job::new(Some(259_000), Some(1000)).unwrap(), true).await;
    d.work("a-rather-long-worker-name-for-a-small-screen", 1)
        .await;
    let url = d.url.clone();
    in_browser(move |tab| {
        for (w, h, mobile) in [(360, 740, true), (390, 844, true), (768, 1024, true), (1360, 900, false)] {
            viewport(&tab, w, h, mobile);
            open(&tab, &url);
            wait_until(&tab, "document.querySelectorAll('#history-body tr[data-id]').length === 50");
            wait_until(&tab, "document.querySelectorAll('#error-plot path').length > 0");
            let (sw, iw) = (
                eval(&tab, "document.documentElement.scrollWidth").as_u64().unwrap(),
                eval(&tab, "innerWidth").as_u64().unwrap(),
            );
            assert!(sw <= iw, "{w} px: the page is {sw} px wide in a {iw} px window");
            if w >= 1360 {
                // The first row is three equal cards across the whole width (no empty quarter).
                let cards = eval_json(&tab, "['server-card', 'clients-card', 'job-card'].map(id => { const r = document.getElementById(id).getBoundingClientRect(); return [r.top, r.width, r.right]; })");
                let main = eval(&tab, "document.querySelector('main').getBoundingClientRect().right").as_f64().unwrap();
                let c: Vec<Vec<f64>> = serde_json::from_value(cards).unwrap();
                assert!(c.iter().all(|x| (x[0] - c[0][0]).abs() < 1.0 && (x[1] - c[0][1]).abs() < 1.0), "{c:?}");
                assert!(main - c[2][2] < 40.0, "the last card reaches the right: {c:?} in {main}");
            }
            // The sum of evens fits its line (no digit-per-line column).
            let lines = eval(&tab, "(() => { const e = document.getElementById('f-even'); return Math.round(e.getBoundingClientRect().height / parseFloat(getComputedStyle(e).lineHeight)); })()");
            assert!(lines.as_u64().unwrap() <= 2, "{w} px: the sum of evens takes {lines} lines");
            // Plot text is drawn at its real size (at least 11 CSS px).
            let font = eval(&tab, "(() => { const t = document.querySelector('#error-plot text'); const svg = t.ownerSVGElement; return parseFloat(getComputedStyle(t).fontSize) * svg.clientWidth / svg.viewBox.baseVal.width; })()");
            assert!(font.as_f64().unwrap() >= 11.0, "{w} px: plot text of {font} px");
        }
        // Light or dark, as the system says.
        let background = |tab: &Tab| eval(tab, "getComputedStyle(document.body).backgroundColor");
        let light = background(&tab);
        tab.call_method(Emulation::SetEmulatedMedia {
            media: None,
            features: Some(vec![Emulation::MediaFeature {
                name: "prefers-color-scheme".into(),
                value: "dark".into(),
            }]),
        })
        .unwrap();
        let dark = background(&tab);
        assert_eq!(light, Value::from("rgb(245, 246, 248)"));
        assert_eq!(dark, Value::from("rgb(18, 21, 27)"));
    })
    .await;
    d.close().await;
}

/// Start and Stop say why they failed, errors do not cover anything, the local-client cap is
/// explained, and the controls are disabled (saying why) while the dashboard cannot be reached.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn honest_feedback_and_an_outage() {
    let d = dashboard_with(Job::new(None, Some(1000)).unwrap(), true, |o| {
        o.max_local_clients = 3;
    })
    .await;
    let url = d.url.clone();
    let listen = d.node.view().listen;
    let node = d.node.clone();
    let (stopped_tx, stopped_rx) = tokio::sync::oneshot::channel::<()>();
    let (blocked_tx, blocked_rx) = std::sync::mpsc::channel::<()>();
    let (outage_tx, outage_rx) = tokio::sync::oneshot::channel::<()>();
    let (down_tx, down_rx) = std::sync::mpsc::channel::<()>();
    let page = tokio::spawn(in_browser(move |tab| {
        open(&tab, &url);
        // Beyond the cap: the error says so, next to the control, and covers nothing.
        set_value(&tab, "client-count", "5");
        click(&tab, "create-clients");
        wait_until(
            &tab,
            "document.getElementById('clients-feedback').classList.contains('bad')",
        );
        assert!(
            text(&tab, "clients-feedback").contains("the most allowed is 3"),
            "{}",
            text(&tab, "clients-feedback")
        );
        assert_eq!(
            eval(&tab, "(() => { const r = document.getElementById('runs').getBoundingClientRect(); const e = document.elementFromPoint(r.left + 5, r.top + 5); return document.getElementById('job-card').contains(e); })()"),
            Value::Bool(true)
        );
        assert_eq!(text(&tab, "clients-cap"), "at most 3 at once");
        // Stop, then Start while something else holds the port: the reason is shown.
        click(&tab, "stop");
        wait_until(
            &tab,
            "document.getElementById('server-state').dataset.state === 'stopped'",
        );
        stopped_tx.send(()).unwrap();
        blocked_rx.recv_timeout(WAIT).unwrap();
        click(&tab, "start");
        wait_until(
            &tab,
            "document.getElementById('server-feedback').classList.contains('bad')",
        );
        assert!(
            text(&tab, "server-feedback").contains("cannot listen on"),
            "{}",
            text(&tab, "server-feedback")
        );
        assert_eq!(
            eval(&tab, "document.getElementById('start').disabled"),
            Value::Bool(false)
        );
        // The dashboard goes away: the controls are disabled and say why.
        outage_tx.send(()).unwrap();
        down_rx.recv_timeout(WAIT).unwrap();
        wait_until(
            &tab,
            "document.getElementById('live').classList.contains('off')",
        );
        assert_eq!(
            eval(&tab, "document.getElementById('start').disabled"),
            Value::Bool(true)
        );
        assert!(eval(&tab, "document.getElementById('start').title")
            .as_str()
            .unwrap()
            .contains("cannot be reached"));
    }));
    stopped_rx.await.unwrap();
    let blocker = std::net::TcpListener::bind(&listen).unwrap();
    blocked_tx.send(()).unwrap();
    outage_rx.await.unwrap();
    d.stop.cancel();
    tokio::time::timeout(WAIT, d.server).await.unwrap().unwrap();
    down_tx.send(()).unwrap();
    page.await.unwrap();
    drop(blocker);
    node.shutdown().await.unwrap();
}

/// The page loads with no failed request (the favicon included) and no console error.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_page_loads_cleanly_with_its_favicon() {
    let d = dashboard(Job::new(Some(5_000), Some(1000)).unwrap(), true).await;
    let url = d.url.clone();
    in_browser(move |tab| {
        let failures = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
        let sink = failures.clone();
        tab.enable_log().unwrap();
        tab.enable_runtime().unwrap();
        tab.add_event_listener(Arc::new(
            move |event: &headless_chrome::protocol::cdp::types::Event| {
                use headless_chrome::protocol::cdp::types::Event;
                match event {
                    Event::LogEntryAdded(e)
                        if format!("{:?}", e.params.entry.level).contains("Error") =>
                    {
                        sink.lock().unwrap().push(e.params.entry.text.clone());
                    }
                    Event::RuntimeExceptionThrown(e) => {
                        sink.lock()
                            .unwrap()
                            .push(format!("{:?}", e.params.exception_details.text));
                    }
                    _ => {}
                }
            },
        ))
        .unwrap();
        open(&tab, &url);
        assert_eq!(
            eval_async(
                &tab,
                "fetch('/favicon.ico').then(r => r.status + ' ' + r.headers.get('content-type'))"
            ),
            Value::from("200 image/svg+xml")
        );
        // A full round of the page's own requests: runs, plots, coverage, workers.
        wait_until(&tab, "document.querySelectorAll('#runs li').length === 1");
        wait_until(
            &tab,
            "document.querySelectorAll('#coverage-map rect').length > 0",
        );
        wait_until(
            &tab,
            "document.getElementById('workers-count').textContent === '0'",
        );
        let failures = failures.lock().unwrap().clone();
        assert!(failures.is_empty(), "{failures:?}");
    })
    .await;
    d.close().await;
}

/// What a user sees, at 360 and 1 360 px, in English and in Portuguese, once a run is done: the
/// coverage bar of a finished run is one solid stretch; each legend square stays on the line of
/// its label; the corrected error's line stays above the bottom axis; a very wide worker name
/// ends before its bar; on a 1 360 × 900 screen the final result is above the fold (the join
/// panel below it) with the two sums side by side; durations never read "0 ms"; and an invalid
/// job's error names its field in the page's language.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_finished_run_reads_well_at_360_and_1360_px_in_both_languages() {
    let d = dashboard(Job::new(Some(259_000), Some(1000)).unwrap(), true).await;
    let wide = "W".repeat(48);
    d.work(&wide, 1).await;
    let url = d.url.clone();
    in_browser(move |tab| {
        for lang in ["en", "pt-BR"] {
            for (w, h, mobile) in [(360, 740, true), (1360, 900, false)] {
                let at = format!("{lang}, {w} px");
                viewport(&tab, w, h, mobile);
                open(&tab, &format!("{url}?lang={lang}"));
                wait_until(&tab, "document.getElementById('history').dataset.total === '259' && document.querySelectorAll('#history-body tr').length === 50 && window.piswarmHooks.unwritten === 0");
                wait_until(&tab, "document.querySelectorAll('#error-plot path.corrected').length > 0 && document.querySelectorAll('#throughput-plot rect').length === 1");
                // Done: one solid bar across the whole map.
                wait_until(&tab, "document.querySelectorAll('#coverage-map rect').length > 0");
                let bar = eval_json(&tab, "[...document.querySelectorAll('#coverage-map rect')].map((r) => [r.getAttribute('class'), r.getAttribute('x'), r.getAttribute('width')])");
                assert_eq!(bar, serde_json::json!([["cov-done", "0", "1000"]]), "{at}");
                // Each legend square on the line of its label.
                let keys = eval_json(&tab, "[...document.querySelectorAll('figcaption .key')].map((k) => [k.textContent, k.getClientRects().length])");
                for key in keys.as_array().unwrap() {
                    assert_eq!(key[1], Value::from(1), "{at}: the key {key} is cut across lines");
                }
                // The corrected error's line is above the bottom axis (the first line drawn).
                let gap = eval(&tab, "(() => { const svg = document.getElementById('error-plot'); const axis = Number(svg.querySelector('line.axis').getAttribute('y1')); const b = svg.querySelector('path.corrected').getBBox(); return axis - (b.y + b.height); })()").as_f64().unwrap();
                assert!(gap >= 8.0, "{at}: the corrected line is {gap} px above the axis");
                // Names end before their bar; the wide one is cut by its width, whole on hover.
                let names = eval_json(&tab, "(() => { const svg = document.getElementById('throughput-plot'); const bar = Number(svg.querySelector('rect').getAttribute('x')); return [...svg.querySelectorAll('text')].filter((t) => t.getAttribute('x') === '4').map((t) => [t.textContent, bar - t.getBBox().x - t.getBBox().width]); })()");
                let names = names.as_array().unwrap();
                assert_eq!(names.len(), 1, "{at}: {names:?}");
                for name in names {
                    assert!(name[1].as_f64().unwrap() >= 2.0, "{at}: {name} runs into its bar");
                }
                assert!(names.iter().any(|n| n[0].as_str().unwrap().ends_with('…')), "{at}: {names:?}");
                assert_eq!(
                    eval(&tab, &format!("[...document.querySelectorAll('#throughput-plot rect title')].some((t) => t.textContent.startsWith('{wide}'))")),
                    Value::Bool(true),
                    "{at}"
                );
                // Durations: never "0 ms".
                let durations = eval_json(&tab, "[...document.querySelectorAll('#history-body tr')].map((tr) => tr.children[7].textContent)");
                for t in durations.as_array().unwrap() {
                    let t = t.as_str().unwrap();
                    assert!(!t.is_empty() && !t.starts_with("0 ") && t != "0ms", "{at}: a duration of {t:?}");
                }
                // The final result comes before the join panel.
                let order = eval_json(&tab, "['final-card', 'join-card'].map((id) => document.getElementById(id).getBoundingClientRect().top)");
                assert!(order[0].as_f64() < order[1].as_f64(), "{at}: {order}");
                if w == 1360 {
                    eval(&tab, "window.scrollTo(0, 0), true");
                    let bottom = eval(&tab, "document.getElementById('final').getBoundingClientRect().bottom").as_f64().unwrap();
                    assert!(bottom <= 900.0, "{at}: the final result ends at {bottom} px, below the fold");
                    let rows = eval_json(&tab, "['f-even', 'f-odd'].map((id) => Math.round(document.getElementById(id).parentElement.getBoundingClientRect().top))");
                    assert_eq!(rows[0], rows[1], "{at}: the sums are on one row");
                }
            }
            // An invalid job: its field is named in the page's language.
            set_value(&tab, "run-terms", "abc");
            click(&tab, "new-run");
            wait_until(&tab, "document.getElementById('run-feedback').classList.contains('bad')");
            let why = text(&tab, "run-feedback");
            let expected = if lang == "en" { "terms: " } else { "termos: número inválido 'abc'" };
            assert!(why.contains(expected), "{lang}: {why}");
            if lang != "en" {
                assert!(!contains_words(&why, "terms"), "{lang}: {why}");
            }
        }
    })
    .await;
    d.close().await;
}
