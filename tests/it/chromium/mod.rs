//! Headless Chromium for the JavaScript kernel: launching it, and running kernel.js in a Web
//! Worker. Shared by tests/it/browser_kernel.rs and examples/browser_kernel_speed.rs (through
//! `#[path]`), so that what is measured is what is tested.
#![allow(dead_code)]

use headless_chrome::{Browser, LaunchOptions, Tab};
use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::Duration;

pub const CHROMIUM: &str = "/usr/bin/chromium";

/// The script under test, as the dashboard will serve it.
pub const KERNEL_JS: &str = include_str!("../../../src/web/assets/kernel.js");

/// The longest one DevTools call may take (it also bounds how long the browser may stay silent).
pub const CALL_DEADLINE: Duration = Duration::from_secs(120);

/// A headless Chromium with a fresh profile (kept alive by the returned directory), with
/// Chromium's default window.
pub fn browser() -> (Browser, tempfile::TempDir) {
    browser_sized(None)
}

/// A headless Chromium with a fresh profile (kept alive by the returned directory) and, if
/// given, its window's size in pixels: the one launcher of every browser test and bench.
pub fn browser_sized(window: Option<(u32, u32)>) -> (Browser, tempfile::TempDir) {
    launch(window, false)
}

/// A headless Chromium as [`browser_sized`] makes, started in a session of its own (`setsid`),
/// as a desktop starts a browser: where the kernel's autogroup is on, Linux then shares the CPU
/// between the browser's session and the one that started it (a terminal's, running tests,
/// say) before sharing it between their threads. For benchmarks of the page as a user sees it.
pub fn browser_in_own_session(window: Option<(u32, u32)>) -> (Browser, tempfile::TempDir) {
    launch(window, true)
}

fn launch(window: Option<(u32, u32)>, own_session: bool) -> (Browser, tempfile::TempDir) {
    assert!(
        std::path::Path::new(CHROMIUM).exists(),
        "the browser tests need Debian's chromium at {CHROMIUM} (apt-get install chromium; .ci/run does)"
    );
    let profile = tempfile::tempdir().unwrap();
    // The launcher runs the path it is given with its arguments; `setsid` (util-linux) makes a
    // new session and runs Chromium in it, in the same process (the launcher's child leads no
    // process group), so the launcher still holds Chromium's own process.
    let path = if own_session {
        let script = profile.path().join("chromium-in-own-session");
        std::fs::write(
            &script,
            format!("#!/bin/sh\nexec setsid {CHROMIUM} \"$@\"\n"),
        )
        .unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        script
    } else {
        PathBuf::from(CHROMIUM)
    };
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
        .path(Some(path))
        .sandbox(false)
        .headless(true)
        .window_size(window)
        .user_data_dir(Some(profile.path().to_path_buf()))
        .args(args.iter().map(|a| a.as_os_str()).collect())
        .idle_browser_timeout(CALL_DEADLINE)
        .build()
        .unwrap();
    (Browser::new(options).unwrap(), profile)
}

/// Evaluates `js`, an expression whose value is a promise of a string, and returns the string.
/// The call is bounded by [`CALL_DEADLINE`]; a rejected promise or a thrown error panics with its
/// description.
pub fn eval_string(tab: &Tab, js: &str) -> String {
    let result = tab
        .evaluate(js, true)
        .unwrap_or_else(|e| panic!("evaluating in the page failed: {e}"));
    match result.value {
        Some(serde_json::Value::String(s)) => s,
        _ => panic!(
            "the page gave no string but {:?}: {}",
            result.value,
            result.description.unwrap_or_default()
        ),
    }
}

/// A JavaScript expression that defines `self.PiswarmKernel` in the page (evaluating kernel.js as
/// a classic script) and `self.kernelWorker(script)`: a promise of the value posted back by a new
/// Web Worker that loads kernel.js with `importScripts` (from a Blob URL) and then runs `script`,
/// which must call `postMessage` once. The worker is terminated afterwards; an error in it
/// rejects the promise, and so does silence for longer than `deadline_ms`.
pub fn setup_js(deadline_ms: u64) -> String {
    let source = serde_json::to_string(KERNEL_JS).unwrap();
    format!(
        r#"(() => {{
  const source = {source};
  (0, eval)(source);
  const kernelUrl = URL.createObjectURL(new Blob([source], {{ type: 'text/javascript' }}));
  self.kernelWorker = (script) => new Promise((resolve, reject) => {{
    const body = 'importScripts(' + JSON.stringify(kernelUrl) + ');\n' + script;
    const url = URL.createObjectURL(new Blob([body], {{ type: 'text/javascript' }}));
    const worker = new Worker(url);
    const done = (f, v) => {{ clearTimeout(timer); worker.terminate(); URL.revokeObjectURL(url); f(v); }};
    const timer = setTimeout(() => done(reject, new Error('the worker took longer than {deadline_ms} ms')), {deadline_ms});
    worker.onmessage = (e) => done(resolve, e.data);
    worker.onerror = (e) => {{ e.preventDefault(); done(reject, new Error('worker error: ' + e.message)); }};
  }});
  return Promise.resolve(typeof self.PiswarmKernel);
}})()"#
    )
}
