//! `check server --results FILE`: the server's own results checked exactly against the intervals
//! the scripted clients saw counted.
//!
//! FILE is either an array of per-interval records (piswarm's results.json or `piswarm export`;
//! any objects with `a`, `b`, `even_sum`, `odd_sum` and `pi`, numbers or decimal strings) or one
//! object of totals (final.json, `run --json`: `even_sum`, `odd_sum`, `pi`). A server may write
//! it only when it stops, so the check waits (up to its timeout) for a version of the file
//! written after the check started that covers every interval it saw counted.

use super::server::{counted, Record};
use super::{Clause, Tally};
use crate::maths::{series, sums};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, SystemTime};

/// The largest results file read.
const MAX_FILE: u64 = 256 * 1024 * 1024;

/// What the file claims.
enum Claimed {
    Records(Vec<(u64, u64, u128, u128, f64)>),
    Totals {
        even: u128,
        odd: u128,
        pi: Option<f64>,
    },
}

fn number(v: &Value) -> Option<u128> {
    match v {
        Value::String(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => {
            s.parse().ok()
        }
        Value::Number(n) => n.as_u64().map(u128::from),
        _ => None,
    }
}

fn parse(text: &str) -> Result<Claimed, String> {
    let value: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    let list = match &value {
        Value::Array(list) => Some(list),
        Value::Object(o) => o.get("results").and_then(Value::as_array),
        _ => None,
    };
    if let Some(list) = list {
        let mut out = Vec::with_capacity(list.len());
        for (i, r) in list.iter().enumerate() {
            let field = |name: &str| r.get(name).and_then(number);
            match (field("a"), field("b"), field("even_sum"), field("odd_sum")) {
                (Some(a), Some(b), Some(e), Some(o)) => out.push((
                    u64::try_from(a).map_err(|_| format!("record {i}: a out of range"))?,
                    u64::try_from(b).map_err(|_| format!("record {i}: b out of range"))?,
                    e,
                    o,
                    r.get("pi").and_then(Value::as_f64).unwrap_or(f64::NAN),
                )),
                _ => {
                    return Err(format!(
                        "record {i} lacks a, b, even_sum or odd_sum as integers"
                    ))
                }
            }
        }
        return Ok(Claimed::Records(out));
    }
    match (
        value.get("even_sum").and_then(number),
        value.get("odd_sum").and_then(number),
    ) {
        (Some(even), Some(odd)) => Ok(Claimed::Totals {
            even,
            odd,
            pi: value.get("pi").and_then(Value::as_f64),
        }),
        _ => Err("neither an array of results nor an object with even_sum and odd_sum".into()),
    }
}

/// Reads FILE if it was written after `since`.
fn read_fresh(path: &Path, since: SystemTime) -> Result<Claimed, String> {
    let meta =
        std::fs::metadata(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if meta.modified().is_ok_and(|m| m < since) {
        return Err(format!(
            "{} was last written before the check started",
            path.display()
        ));
    }
    if meta.len() > MAX_FILE {
        return Err(format!(
            "{} is larger than {MAX_FILE} bytes",
            path.display()
        ));
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    parse(&text)
}

pub(crate) async fn judge(
    path: &Path,
    records: &[Record],
    timeout: Duration,
    started: std::time::Instant,
) -> Clause {
    let mut t = Tally::new(
        "results_totals",
        "the server's own results match, exactly, what its clients computed",
    );
    let expected = counted(records);
    let since = SystemTime::now() - started.elapsed() - Duration::from_secs(1);
    let deadline = tokio::time::Instant::now() + timeout;
    let claimed = loop {
        let attempt = read_fresh(path, since);
        let covers = match &attempt {
            Ok(Claimed::Records(list)) => expected
                .keys()
                .all(|k| list.iter().any(|r| (r.0, r.1) == *k)),
            Ok(Claimed::Totals { .. }) => true,
            Err(_) => false,
        };
        if covers || tokio::time::Instant::now() >= deadline {
            break attempt;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let claimed = match claimed {
        Ok(c) => c,
        Err(e) => {
            t.fail(format!("{e} (waited {timeout:?})"), &[]);
            return t.finish();
        }
    };
    let exact = |a: u64, b: u64| (sums::even_sum(a, b), sums::odd_sum(a, b));
    let (want_even, want_odd) = expected
        .keys()
        .map(|&(a, b)| exact(a, b))
        .fold((0u128, 0u128), |acc, s| (acc.0 + s.0, acc.1 + s.1));
    match claimed {
        Claimed::Records(list) => {
            let mut seen: BTreeMap<(u64, u64), usize> = BTreeMap::new();
            for &(a, b, even, odd, pi) in &list {
                *seen.entry((a, b)).or_default() += 1;
                let (e, o) = exact(a, b);
                let shown = format!(
                    "{{\"a\":{a},\"b\":{b},\"even_sum\":{even},\"odd_sum\":{odd},\"pi\":{pi}}}"
                );
                if (even, odd) == (o, e) && e != o {
                    t.fail(format!("evens and odds swapped in {} for [{a}, {b}]: even_sum must be {e}, odd_sum {o}", path.display()), &[shown]);
                } else if (even, odd) != (e, o) {
                    t.fail(format!("wrong sums in {} for [{a}, {b}]: {even} and {odd}, expected {e} and {o}", path.display()), &[shown]);
                } else if a <= b
                    && b < crate::maths::MAX_TERMS
                    && !series::pi_partial_plausible(a, b, pi)
                {
                    t.fail(
                        format!("the π partial stored for [{a}, {b}] is not within the tolerance"),
                        &[shown],
                    );
                }
            }
            for ((a, b), count) in &seen {
                if *count > 1 {
                    t.fail(
                        format!("[{a}, {b}] is counted {count} times in {}", path.display()),
                        &[],
                    );
                } else if !expected.contains_key(&(*a, *b)) {
                    t.fail(format!("{} has [{a}, {b}], which none of the check's clients saw counted (was another client connected?)", path.display()), &[]);
                }
            }
            for ((a, b), name) in &expected {
                if !seen.contains_key(&(*a, *b)) {
                    t.fail(
                        format!(
                            "[{a}, {b}] was acknowledged to {name} but is missing from {}",
                            path.display()
                        ),
                        &[],
                    );
                }
            }
            let (even, odd) = list
                .iter()
                .fold((0u128, 0u128), |acc, r| (acc.0 + r.2, acc.1 + r.3));
            t.pass(
                format!("{} records, each exact, one per interval the clients saw counted; totals {even} and {odd}", list.len()),
                &[],
            );
        }
        Claimed::Totals { even, odd, pi } => {
            if (even, odd) == (want_odd, want_even) && even != odd {
                t.fail(format!("the totals in {} have evens and odds swapped: even_sum must be {want_even}, odd_sum {want_odd}", path.display()), &[]);
            } else if (even, odd) != (want_even, want_odd) {
                t.fail(
                    format!(
                        "totals in {}: {even} and {odd}; the {} intervals the clients saw counted sum to {want_even} and {want_odd}",
                        path.display(),
                        expected.len()
                    ),
                    &[],
                );
            }
            if let Some(pi) = pi {
                let (reference, tolerance) = expected.keys().fold((0.0, 0.0), |acc, &(a, b)| {
                    let r = series::pi_partial_reference(a, b);
                    (acc.0 + r, acc.1 + series::pi_partial_tolerance(a, b, r))
                });
                if (pi - reference).abs() > tolerance + 1e-15 * reference.abs() + 1e-300 {
                    t.fail(format!("the π total in {} is {pi}, the counted intervals sum to {reference} (tolerance {tolerance:.1e})", path.display()), &[]);
                }
            }
            t.pass(format!("totals {even} and {odd} are exactly those of the {} intervals the clients saw counted", expected.len()), &[]);
        }
    }
    t.finish()
}
