//! The JavaScript kernel (src/web/assets/kernel.js), run by Debian's headless Chromium in a Web
//! Worker and in a page, gives bit for bit the Rust kernel's results: the exact even and odd sums
//! and the π partial, on over a thousand intervals spread over the whole supported range, with
//! each kernel (oct and quad).
//!
//! Every DevTools call is bounded (`chromium::CALL_DEADLINE`), the worker has a deadline of its
//! own, and a watchdog bounds the whole scenario.

use crate::chromium;

use piswarm::maths::kernel::Kernel;
use piswarm::maths::{check_interval, sums, MAX_TERMS};
use serde_json::Value;
use std::sync::mpsc;
use std::time::Duration;

/// The whole browser scenario (launch, compute, close) must finish within this.
const SCENARIO_DEADLINE: Duration = Duration::from_secs(300);

/// SplitMix64: a small fixed-seed generator, so that every run checks the same intervals.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A uniform integer of `bits` bits at most (0 for `bits = 0`).
    fn bits(&mut self, bits: u32) -> u64 {
        if bits == 0 {
            0
        } else {
            self.next() >> (64 - bits)
        }
    }
}

/// The interval of `len` terms starting at `a`, moved down if it would pass the top of the range.
fn interval(a: u64, len: u64) -> (u64, u64) {
    let a = a.min(MAX_TERMS - len);
    (a, a + len - 1)
}

/// Edge cases, then random intervals: starts on a log scale over [0, 2^52), lengths on a log scale
/// from 1 term to 2^20 ≈ 10^6 terms.
fn intervals() -> Vec<(u64, u64)> {
    let top = MAX_TERMS - 1;
    // Lengths around a block (4·LANES = 128 terms for quad, 8·LANES = 256 for oct), a group (4
    // or 8), a lane row (32), and longer ones.
    let lengths = [
        1u64, 2, 3, 4, 5, 6, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65, 127, 128, 129, 255, 256,
        257, 383, 384, 385, 511, 512, 513, 767, 768, 769, 1000, 4096, 4097,
    ];
    let starts = [
        0u64,
        1,
        2,
        3,
        4,
        999,
        1000,
        1_000_003,
        (1 << 32) - 1,
        1 << 32,
        1 << 40,
        (1 << 40) + 1,
        (1 << 51) + 12_345,
        top - 5_000_000,
        top - 5_000_001,
    ];
    let mut out = Vec::new();
    for &a in &starts {
        for &len in &lengths {
            out.push(interval(a, len));
        }
    }
    // Intervals ending at the last supported index, b = 2^52 − 1, with odd and even a.
    for &len in lengths.iter().chain(&[999_999, 1_000_000]) {
        out.push((top + 1 - len, top));
    }
    out.push((0, 999_999));
    out.push((1, 1_000_000));
    out.push((0, 1 << 20));

    let mut rng = SplitMix64(0x5049_5357_4152_4d31); // "PISWARM1"
    for _ in 0..1200 {
        let a_bits = (rng.next() % 53) as u32;
        let a = rng.bits(a_bits);
        let len_bits = (rng.next() % 21) as u32;
        let len = 1 + rng.bits(len_bits);
        out.push(interval(a, len));
    }
    for &(a, b) in &out {
        check_interval(a, b).unwrap();
    }
    out
}

/// JavaScript: a function of an array of [a, b, kernel] strings computing each interval with
/// `PiswarmKernel.compute`, adding the bits of pi as hex (read through a DataView).
const RUN: &str = r#"(intervals) => {
  const view = new DataView(new ArrayBuffer(8));
  return intervals.map(([a, b, kernel], i) => {
    const r = PiswarmKernel.compute(String(i), a, b, kernel);
    view.setFloat64(0, r.pi);
    r.bits = view.getBigUint64(0).toString(16);
    return r;
  });
}"#;

struct Expected {
    even: String,
    odd: String,
    bits: u64,
}

fn check(where_: &str, results: &Value, intervals: &[(u64, u64)], expected: &[Expected]) {
    let results = results
        .as_array()
        .unwrap_or_else(|| panic!("{where_}: {results}"));
    assert_eq!(results.len(), intervals.len(), "{where_}: result count");
    let mut mismatches = Vec::new();
    for (i, ((r, &(a, b)), e)) in results.iter().zip(intervals).zip(expected).enumerate() {
        let field = |k: &str| {
            r[k].as_str()
                .unwrap_or_else(|| panic!("{where_}: {r}"))
                .to_string()
        };
        assert_eq!(field("id"), i.to_string(), "{where_}: {r}");
        assert_eq!(field("a"), a.to_string(), "{where_}: {r}");
        assert_eq!(field("b"), b.to_string(), "{where_}: {r}");
        let bits = u64::from_str_radix(&field("bits"), 16).unwrap();
        // pi also travels as a JSON number (as in a protocol `result` message): shortest
        // round-trip digits in JavaScript, parsed exactly by serde_json (float_roundtrip).
        let json_bits = r["pi"].as_f64().map(f64::to_bits);
        assert!(r["duration_s"].as_f64().is_some_and(|d| d >= 0.0), "{r}");
        if field("even_sum") != e.even
            || field("odd_sum") != e.odd
            || bits != e.bits
            || json_bits != Some(bits)
        {
            mismatches.push(format!(
                "[{a}, {b}]: browser even {} odd {} pi {:e} ({bits:016x}, JSON {}); \
                 Rust even {} odd {} pi {:e} ({:016x})",
                field("even_sum"),
                field("odd_sum"),
                f64::from_bits(bits),
                r["pi"],
                e.even,
                e.odd,
                f64::from_bits(e.bits),
                e.bits
            ));
        }
    }
    assert!(
        mismatches.is_empty(),
        "{where_}: {} of {} intervals differ:\n{}",
        mismatches.len(),
        intervals.len(),
        mismatches.join("\n")
    );
}

/// Runs `f` on a thread of its own and fails if it takes longer than `deadline`.
fn with_deadline<T: Send + 'static>(
    deadline: Duration,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = mpsc::channel();
    let thread = std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(deadline) {
        Ok(v) => {
            thread.join().unwrap();
            v
        }
        // The thread panicked (and dropped the sender): report its panic.
        Err(mpsc::RecvTimeoutError::Disconnected) => match thread.join() {
            Err(panic) => std::panic::resume_unwind(panic),
            Ok(()) => unreachable!(),
        },
        Err(mpsc::RecvTimeoutError::Timeout) => {
            panic!("the browser scenario took longer than {deadline:?}")
        }
    }
}

#[test]
fn kernel_js_in_chromium_is_bit_identical_to_the_rust_kernel() {
    let single = intervals();
    assert!(single.len() >= 1000);
    // Every interval with every kernel.
    let cases: Vec<(u64, u64, Kernel)> = Kernel::ALL
        .into_iter()
        .flat_map(|k| single.iter().map(move |&(a, b)| (a, b, k)))
        .collect();
    let intervals: Vec<(u64, u64)> = cases.iter().map(|&(a, b, _)| (a, b)).collect();
    let expected: Vec<Expected> = cases
        .iter()
        .map(|&(a, b, k)| Expected {
            even: sums::even_sum(a, b).to_string(),
            odd: sums::odd_sum(a, b).to_string(),
            bits: k.pi_partial(a, b).unwrap().to_bits(),
        })
        .collect();
    let decimal: Vec<[String; 3]> = cases
        .iter()
        .map(|&(a, b, k)| [a.to_string(), b.to_string(), k.name().to_string()])
        .collect();
    let intervals_json = serde_json::to_string(&decimal).unwrap();

    let (results, refusals) = with_deadline(SCENARIO_DEADLINE, move || {
        let (browser, _profile) = chromium::browser();
        let tab = browser.new_tab().unwrap();
        assert_eq!(
            chromium::eval_string(&tab, &chromium::setup_js(60_000)),
            "object",
            "kernel.js did not define self.PiswarmKernel"
        );
        let worker_script = format!("postMessage(JSON.stringify(({RUN})({intervals_json})));");
        let results = chromium::eval_string(
            &tab,
            &format!(
                "kernelWorker({}).then((w) => JSON.stringify({{ worker: JSON.parse(w), page: ({RUN})({intervals_json}) }}))",
                serde_json::to_string(&worker_script).unwrap()
            ),
        );
        // Intervals the Rust kernel refuses (check_interval): piPartial throws a RangeError,
        // compute reports pi = NaN (null in JSON) with the exact sums, like worker::compute.
        let refusals = chromium::eval_string(
            &tab,
            r#"Promise.resolve(JSON.stringify([['0', '4503599627370496'], ['5', '3'], ['4503599627370496', '4503599627370497']].map(([a, b]) => {
                 let thrown;
                 try { PiswarmKernel.piPartial(a, b, 'oct'); thrown = 'nothing'; } catch (e) { thrown = e.name; }
                 const r = PiswarmKernel.compute('1', a, b);
                 return [thrown, r.pi, r.even_sum, r.odd_sum];
               })))"#,
        );
        drop(tab);
        drop(browser);
        (results, refusals)
    });

    let results: Value = serde_json::from_str(&results).unwrap();
    check("Web Worker", &results["worker"], &intervals, &expected);
    check("page", &results["page"], &intervals, &expected);

    let refusals: Value = serde_json::from_str(&refusals).unwrap();
    for (r, (a, b)) in refusals.as_array().unwrap().iter().zip([
        (0, MAX_TERMS),
        (5, 3),
        (MAX_TERMS, MAX_TERMS + 1),
    ]) {
        assert!(check_interval(a, b).is_err());
        assert_eq!(
            r,
            &serde_json::json!([
                "RangeError",
                null,
                sums::even_sum(a, b).to_string(),
                sums::odd_sum(a, b).to_string()
            ]),
            "[{a}, {b}]"
        );
    }
    eprintln!(
        "{} intervals × {} kernels bit-identical in a Web Worker and in a page",
        single.len(),
        Kernel::ALL.len()
    );
}
