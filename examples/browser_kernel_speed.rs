//! Measures the JavaScript kernel's speed (src/web/assets/kernel.js): terms per second of
//! `PiswarmKernel.piPartial` in one Web Worker of Debian's headless Chromium, as tested by
//! tests/it/browser_kernel.rs. Prints one line per repetition and a summary; asserts nothing.
//!
//! ```text
//! cargo run --release --example browser_kernel_speed -- [TERMS] [REPETITIONS]
//! ```
//! Defaults: 10^8 terms, 9 timed repetitions (after one untimed warm-up), each over the interval
//! [2^40, 2^40 + TERMS − 1]. Then, for comparison under the same conditions, the Rust kernel in
//! this process on the same interval, single-threaded: with the instruction set `piswarm worker`
//! picks, and with the baseline one (plain SSE2 code on x86-64: the same arithmetic, at most two
//! doubles per instruction). `piswarm bench kernel --threads 1` gives the figure of the shipped
//! build.

#[path = "../tests/it/chromium/mod.rs"]
mod chromium;

use piswarm::maths::kernel::{self, Isa};
use serde_json::Value;
use std::hint::black_box;
use std::time::Instant;

fn main() {
    let mut args = std::env::args().skip(1);
    let terms: u64 = args
        .next()
        .map_or(100_000_000, |s| s.parse().expect("TERMS"));
    let reps: u32 = args.next().map_or(9, |s| s.parse().expect("REPETITIONS"));
    assert!(terms >= 1 && reps >= 1);
    let a: u64 = 1 << 40;
    let b = a + terms - 1;

    let (browser, _profile) = chromium::browser();
    let version = browser
        .get_version()
        .map(|v| format!("{} (V8 {})", v.product, v.js_version))
        .unwrap_or_default();
    let tab = browser.new_tab().unwrap();
    // Generous: 5·10^7 terms/s (some 40 times slower than this machine) for every call.
    let deadline_ms = 30_000 + (reps as u64 + 1) * terms / 50_000;
    assert!(
        (deadline_ms as u128) < chromium::CALL_DEADLINE.as_millis(),
        "too many terms for one bounded measurement"
    );
    assert_eq!(
        chromium::eval_string(&tab, &chromium::setup_js(deadline_ms)),
        "object"
    );
    // In the worker: one warm-up, then `reps` timed calls (performance.now, in the worker).
    let script = format!(
        r#"const a = '{a}', b = '{b}';
const pi = PiswarmKernel.piPartial(a, b);
const seconds = [];
for (let i = 0; i < {reps}; i++) {{
  const t0 = performance.now();
  const again = PiswarmKernel.piPartial(a, b);
  seconds.push((performance.now() - t0) / 1000);
  if (again !== pi) throw new Error('not deterministic');
}}
postMessage(JSON.stringify({{ pi, seconds }}));"#
    );
    let out = chromium::eval_string(
        &tab,
        &format!("kernelWorker({})", serde_json::to_string(&script).unwrap()),
    );
    drop(tab);
    drop(browser);

    let out: Value = serde_json::from_str(&out).unwrap();
    let pi = out["pi"].as_f64().unwrap();
    let rust = kernel::pi_partial(a, b).unwrap();
    let mut rates: Vec<f64> = out["seconds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| terms as f64 / s.as_f64().unwrap())
        .collect();
    println!("{version}, one Web Worker, piPartial over [{a}, {b}] ({terms} terms)");
    for (i, r) in rates.iter().enumerate() {
        println!("  repetition {}: {:.0} M terms/s", i + 1, r / 1e6);
    }
    println!(
        "JavaScript, one Web Worker: {}; result bit-identical to the Rust kernel: {}",
        summary(&mut rates),
        pi.to_bits() == rust.to_bits()
    );

    let best = Isa::detect();
    let isas = if best == Isa::Baseline {
        vec![best]
    } else {
        vec![best, Isa::Baseline]
    };
    for isa in isas {
        black_box(kernel::pi_partial_with(isa, a, b));
        let mut rates: Vec<f64> = (0..reps)
            .map(|_| {
                let start = Instant::now();
                black_box(kernel::pi_partial_with(isa, black_box(a), black_box(b)));
                terms as f64 / start.elapsed().as_secs_f64()
            })
            .collect();
        println!(
            "Rust kernel, one thread, {}: {}",
            isa.name(),
            summary(&mut rates)
        );
    }
}

/// Median, best and worst of `rates` (terms/s), in millions.
fn summary(rates: &mut [f64]) -> String {
    rates.sort_by(f64::total_cmp);
    format!(
        "median {:.0} M terms/s (best {:.0}, worst {:.0})",
        rates[rates.len() / 2] / 1e6,
        rates[rates.len() - 1] / 1e6,
        rates[0] / 1e6
    )
}
