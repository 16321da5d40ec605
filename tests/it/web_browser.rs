//! The dashboard in a real browser: Debian's Chromium, headless, driven over the DevTools protocol
//! (`headless_chrome`), against a real node on loopback. Each scenario is bounded in time.
//!
//! Set PISWARM_SCREENSHOT=path to also save a screenshot of the dashboard during a run (that is
//! how docs/dashboard.png is made).

use headless_chrome::protocol::cdp::Page::CaptureScreenshotFormatOption;
use headless_chrome::{Browser, LaunchOptions, Tab};
use piswarm::commands::serve::ServeOptions;
use piswarm::job::Job;
use piswarm::node::Node;
use serde_json::Value;
use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

const CHROMIUM: &str = "/usr/bin/chromium";
/// How long one condition in the page may take to become true.
const WAIT: Duration = Duration::from_secs(30);

struct Dashboard {
    node: Node,
    url: String,
    stop: CancellationToken,
    _dir: tempfile::TempDir,
}

async fn dashboard(job: Job, serving: bool) -> Dashboard {
    let dir = tempfile::tempdir().unwrap();
    let mut options =
        ServeOptions::new(job, dir.path().join("piswarm.db"), dir.path().to_path_buf());
    options.max_prefetch = 4;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let node = Node::start(options, listener, serving).await.unwrap();
    let stop = CancellationToken::new();
    let (_task, url) = piswarm::web::bind(node.clone(), "127.0.0.1:0", None, stop.clone())
        .await
        .unwrap();
    Dashboard {
        node,
        url,
        stop,
        _dir: dir,
    }
}

impl Dashboard {
    async fn close(self) {
        self.node.shutdown().await.unwrap();
        self.stop.cancel();
    }
}

/// A headless Chromium with a fresh profile (kept alive by the returned directory).
fn browser() -> (Browser, tempfile::TempDir) {
    assert!(
        std::path::Path::new(CHROMIUM).exists(),
        "the browser tests need Debian's chromium at {CHROMIUM} (apt-get install chromium; .ci/run does)"
    );
    let profile = tempfile::tempdir().unwrap();
    let args: Vec<OsString> = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
    ]
    .iter()
    .map(OsString::from)
    .collect();
    let options = LaunchOptions::default_builder()
        .path(Some(PathBuf::from(CHROMIUM)))
        .sandbox(false)
        .headless(true)
        .window_size(Some((1400, 2000)))
        .user_data_dir(Some(profile.path().to_path_buf()))
        .args(args.iter().map(|a| a.as_os_str()).collect())
        .idle_browser_timeout(Duration::from_secs(120))
        .build()
        .unwrap();
    (Browser::new(options).unwrap(), profile)
}

fn eval(tab: &Tab, js: &str) -> Value {
    tab.evaluate(js, false)
        .unwrap_or_else(|e| panic!("evaluating {js}: {e}"))
        .value
        .unwrap_or(Value::Null)
}

/// Waits until `js` evaluates to true in the page.
fn wait_until(tab: &Tab, js: &str) {
    let deadline = Instant::now() + WAIT;
    loop {
        if eval(tab, js) == Value::Bool(true) {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {js}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn text(tab: &Tab, id: &str) -> String {
    eval(tab, &format!("document.getElementById('{id}').textContent"))
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn click(tab: &Tab, id: &str) {
    wait_until(tab, &format!("!document.getElementById('{id}').disabled"));
    eval(
        tab,
        &format!("document.getElementById('{id}').click(), true"),
    );
}

/// Runs browser code (blocking) beside the async node.
async fn in_browser<T: Send + 'static>(f: impl FnOnce(Arc<Tab>) -> T + Send + 'static) -> T {
    tokio::time::timeout(
        Duration::from_secs(180),
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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn start_create_five_clients_watch_results_stop() {
    let d = dashboard(Job::new(Some(5_000), Some(1000)).unwrap(), false).await;
    let url = d.url.clone();
    let listen = in_browser(move |tab| {
        tab.navigate_to(&url)
            .unwrap()
            .wait_until_navigated()
            .unwrap();
        wait_until(
            &tab,
            "document.getElementById('server-state').dataset.state === 'stopped'",
        );
        // A mark that a reload would erase.
        eval(&tab, "window.__noReload = 42, true");
        click(&tab, "start");
        wait_until(
            &tab,
            "document.getElementById('server-state').dataset.state === 'running'",
        );
        eval(
            &tab,
            "document.getElementById('client-count').value = '5', true",
        );
        eval(
            &tab,
            "document.getElementById('client-mode').value = 'once', true",
        );
        click(&tab, "create-clients");
        wait_until(
            &tab,
            "document.querySelectorAll('#history-body tr').length === 5",
        );
        wait_until(
            &tab,
            "document.getElementById('f-intervals').textContent === '5'",
        );
        assert_eq!(text(&tab, "f-even"), "6247500");
        assert_eq!(text(&tab, "f-odd"), "6250000");
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
async fn a_hostile_worker_name_is_shown_as_text() {
    let d = dashboard(Job::new(Some(3_000), Some(1000)).unwrap(), true).await;
    let hostile = "<img src=x onerror=alert(1)>";
    let listen = d.node.view().listen;
    let mut config = piswarm::worker::WorkerConfig::new(listen);
    config.name = hostile.to_string();
    config.once = true;
    piswarm::worker::run_worker(config, CancellationToken::new())
        .await
        .unwrap();
    let url = d.url.clone();
    in_browser(move |tab| {
        tab.navigate_to(&url)
            .unwrap()
            .wait_until_navigated()
            .unwrap();
        wait_until(
            &tab,
            "document.querySelectorAll('#history-body tr').length === 1",
        );
        let cell = eval(
            &tab,
            "document.querySelector('#history-body td.worker').textContent",
        );
        assert_eq!(cell, Value::from(hostile));
        wait_until(
            &tab,
            "document.querySelectorAll('#throughput-plot text').length > 0",
        );
        assert_eq!(
            eval(&tab, "document.querySelectorAll('img').length"),
            Value::from(0)
        );
        let visible = eval(
            &tab,
            "document.body.innerText.includes('<img src=x onerror=alert(1)>')",
        );
        assert_eq!(visible, Value::Bool(true), "the name is visible as text");
    })
    .await;
    d.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_page_in_portuguese() {
    let d = dashboard(Job::new(None, Some(1000)).unwrap(), true).await;
    let url = format!("{}?lang=pt-BR", d.url);
    in_browser(move |tab| {
        tab.navigate_to(&url)
            .unwrap()
            .wait_until_navigated()
            .unwrap();
        assert_eq!(
            eval(&tab, "document.documentElement.lang"),
            Value::from("pt-BR")
        );
        assert_eq!(text(&tab, "start"), "Iniciar");
        wait_until(
            &tab,
            "document.getElementById('server-state').textContent === 'em execução'",
        );
    })
    .await;
    d.close().await;
}

/// A run watched live, with two "until done" clients; saves a screenshot if asked to.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_run_watched_live() {
    let d = dashboard(
        Job::new(Some(40_000_000_000), Some(100_000_000)).unwrap(),
        true,
    )
    .await;
    let url = d.url.clone();
    let screenshot = std::env::var_os("PISWARM_SCREENSHOT").map(PathBuf::from);
    in_browser(move |tab| {
        tab.navigate_to(&url)
            .unwrap()
            .wait_until_navigated()
            .unwrap();
        wait_until(
            &tab,
            "document.getElementById('server-state').dataset.state === 'running'",
        );
        eval(
            &tab,
            "document.getElementById('client-count').value = '2', true",
        );
        eval(
            &tab,
            "document.getElementById('client-mode').value = 'until_done', true",
        );
        click(&tab, "create-clients");
        // Results arrive and the progress bar moves, without a reload.
        wait_until(
            &tab,
            "document.querySelectorAll('#history-body tr').length >= 20",
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
        if let Some(path) = screenshot {
            let png = tab
                .capture_screenshot(CaptureScreenshotFormatOption::Png, None, None, true)
                .unwrap();
            std::fs::write(path, png).unwrap();
        }
    })
    .await;
    d.close().await;
}
