//! The invariants checked after every step and at the end (the rest are checked where the
//! core's outputs are carried out: `store_write`, `server_sends`, `connection_failed`).

use super::*;
use piswarm::coordinator::core::CoreConfig;
use piswarm::job::Job;
use piswarm::report::{certified_bound, FinalReport, Totals};
use piswarm::store::verify_record;
use piswarm::wire::Dec;

/// Sums of stored rows, exact: everything the final report is made of.
#[derive(Default)]
pub(super) struct Sums {
    even: u128,
    odd: u128,
    terms: u64,
    pi: ExactSum,
    /// The certified bounds of the rows, each found again by verifying the stored row.
    pi_bound: ExactSum,
    workers: BTreeSet<String>,
}

impl Sums {
    pub(super) fn add(&mut self, job: &Job, r: &ResultRecord) {
        self.even += r.even_sum.0;
        self.odd += r.odd_sum.0;
        self.terms += r.b.0 - r.a.0 + 1;
        self.pi.add(r.pi).unwrap();
        let bound = verify_record(job, r).expect("a committed row verifies");
        self.pi_bound.add(bound).unwrap();
        self.workers.insert(r.worker.clone());
    }
}

impl World {
    /// The invariants that must hold after every step (the rest are checked where the core's
    /// outputs are carried out).
    pub(super) fn check(&self) -> Check {
        let Some(core) = &self.core else {
            return Ok(());
        };
        core.check_invariants()?;
        let totals = core.totals();
        if totals.intervals_done != self.store.durable.len() as u64 {
            return Err(format!(
                "the coordinator counts {} intervals, the store holds {}",
                totals.intervals_done,
                self.store.durable.len()
            ));
        }
        // Every field the final report prints, exactly as the stored rows make it: the sums,
        // the terms, π and its certified bound (bit for bit), the worker count, and what is
        // derived from them (π's error, the correct digits, the corrected π when the rows are a
        // prefix, the rate). Only the elapsed time is the coordinator's own.
        let sums = &self.store.sums;
        let rows = self.store.durable.len() as u64;
        let prefix = self
            .store
            .durable
            .keys()
            .next_back()
            .map_or(true, |&last| last + 1 == rows);
        let stored = Totals {
            intervals_done: rows,
            terms_done: sums.terms,
            even_sum: Dec(sums.even),
            odd_sum: Dec(sums.odd),
            pi: sums.pi.value(),
            workers: sums.workers.len() as u64,
            elapsed_s: totals.elapsed_s,
            pi_bound: certified_bound(sums.pi_bound.value(), sums.pi.value()),
        };
        let kernel = CoreConfig::new(self.sc.job).kernel;
        let ours = FinalReport::new(&self.sc.job, kernel, &stored, prefix);
        let theirs = core.report();
        let bits = |r: &FinalReport| (r.pi.to_bits(), r.pi_bound.to_bits());
        if theirs != ours || bits(&theirs) != bits(&ours) {
            return Err(format!(
                "the coordinator's final report is not the stored rows': {}",
                report_differences(&theirs, &ours).join("; ")
            ));
        }
        Ok(())
    }

    pub(super) fn final_check(&self) -> Check {
        let mut pi = ExactSum::new();
        let mut exact_only = true;
        for (id, r) in &self.store.durable {
            if verify_record(&self.sc.job, r).is_none() {
                return Err(format!(
                    "stored result for interval {id} fails verification"
                ));
            }
            pi.add(r.pi).unwrap();
            let kernel = {
                let i = self.sc.job.interval(IntervalId(*id)).unwrap();
                kernel::pi_partial(i.a, i.b).unwrap()
            };
            exact_only &= r.pi.to_bits() == kernel.to_bits();
        }
        if let Some(core) = &self.core {
            let t = core.totals();
            // The certified bound contains the exact partial sum, whoever computed what.
            let exact = exact_partial(self.sc.job.terms.unwrap());
            if (t.pi - exact).abs() > t.pi_bound {
                return Err(format!(
                    "|π {} − exact partial sum {}| = {:e} exceeds the certified bound {:e}",
                    t.pi,
                    exact,
                    (t.pi - exact).abs(),
                    t.pi_bound
                ));
            }
            if t.pi.to_bits() != pi.value().to_bits() {
                return Err(format!(
                    "the coordinator's π {} is not the exact sum of the stored partials {}",
                    t.pi,
                    pi.value()
                ));
            }
        }
        if exact_only && pi.value().to_bits() != self.reference.to_bits() {
            return Err(format!(
                "final π {} differs from the clean run's {}",
                pi.value(),
                self.reference
            ));
        }
        Ok(())
    }
}

/// `4·Σₙ₌₀ᴺ⁻¹ (−1)ⁿ/(2n+1)`, independently of the library: every term and every addition in
/// double-double (Knuth's two-sum, and the quotient's exact remainder by a fused multiply-add),
/// about 30 digits — far below any bound in question.
fn exact_partial(n: u64) -> f64 {
    fn two_sum(a: f64, b: f64) -> (f64, f64) {
        let s = a + b;
        let bb = s - a;
        (s, (a - (s - bb)) + (b - bb))
    }
    let (mut hi, mut lo) = (0.0f64, 0.0f64);
    for k in (0..n).rev() {
        let d = (2 * k + 1) as f64;
        let q = 4.0 / d;
        let r = (-q).mul_add(d, 4.0) / d; // 4/d = q + r, to double-double precision
        let (q, r) = if k % 2 == 0 { (q, r) } else { (-q, -r) };
        let (s, e) = two_sum(hi, q);
        let (s2, e2) = two_sum(s, lo + r + e);
        hi = s2;
        lo = e2;
    }
    hi + lo
}

/// The fields in which the coordinator's report differs from the stored rows' ("field: the
/// coordinator's value, rows: theirs"), compared as exactly as they print (`{:?}` of a float is
/// its shortest round-trip form: equal strings, equal bits). The pattern names every field, so a
/// field added to the report is a compile error here until it is compared.
fn report_differences(theirs: &FinalReport, ours: &FinalReport) -> Vec<String> {
    let FinalReport {
        terms,
        chunk,
        intervals,
        even_sum,
        odd_sum,
        pi,
        pi_error,
        pi_bound,
        correct_digits,
        pi_corrected,
        workers,
        elapsed_s,
        terms_per_s,
        kernel,
    } = theirs;
    let mut out = Vec::new();
    let mut compare = |name: &str, theirs: String, ours: String| {
        if theirs != ours {
            out.push(format!("{name}: {theirs}, rows: {ours}"));
        }
    };
    compare("terms", format!("{terms:?}"), format!("{:?}", ours.terms));
    compare("chunk", format!("{chunk:?}"), format!("{:?}", ours.chunk));
    compare(
        "intervals",
        format!("{intervals:?}"),
        format!("{:?}", ours.intervals),
    );
    compare(
        "even_sum",
        format!("{even_sum:?}"),
        format!("{:?}", ours.even_sum),
    );
    compare(
        "odd_sum",
        format!("{odd_sum:?}"),
        format!("{:?}", ours.odd_sum),
    );
    compare("pi", format!("{pi:?}"), format!("{:?}", ours.pi));
    compare(
        "pi_error",
        format!("{pi_error:?}"),
        format!("{:?}", ours.pi_error),
    );
    compare(
        "pi_bound",
        format!("{pi_bound:?}"),
        format!("{:?}", ours.pi_bound),
    );
    compare(
        "correct_digits",
        format!("{correct_digits:?}"),
        format!("{:?}", ours.correct_digits),
    );
    compare(
        "pi_corrected",
        format!("{pi_corrected:?}"),
        format!("{:?}", ours.pi_corrected),
    );
    compare(
        "workers",
        format!("{workers:?}"),
        format!("{:?}", ours.workers),
    );
    compare(
        "elapsed_s",
        format!("{elapsed_s:?}"),
        format!("{:?}", ours.elapsed_s),
    );
    compare(
        "terms_per_s",
        format!("{terms_per_s:?}"),
        format!("{:?}", ours.terms_per_s),
    );
    compare(
        "kernel",
        format!("{kernel:?}"),
        format!("{:?}", ours.kernel),
    );
    if out.is_empty() {
        out.push(format!("{theirs:?} vs {ours:?}"));
    }
    out
}
