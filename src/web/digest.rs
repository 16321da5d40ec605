//! Digests of stored runs: what the plots, the final report and the coverage map of a run need,
//! accumulated from its results once and then only from the new ones.
//!
//! A run's history only grows (results are appended in `seq` order), so a digest remembers the
//! last `seq` it read and reads only what came after. Viewing a run of a million results thus
//! reads them once (warmed in the background when the dashboard starts); every later view costs
//! a few milliseconds. A digest is a cache of the store, never a source of truth: dropping it
//! loses nothing.

use crate::coordinator::CoverageMap;
use crate::coordinator::RunId;
use crate::maths::exact::ExactSum;
use crate::node::ReadPool;
use crate::report::{FinalReport, Totals};
use crate::store::{RunRow, Store, StoreError};
use crate::wire::Dec;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Rows read from the store at a time while a digest catches up.
const BATCH: usize = 50_000;
/// Digests kept in memory (the least recently used goes first).
const KEPT: usize = 6;
/// Growth between two samples of the error plot: about 470 samples for a million results.
const GRID_RATIO: f64 = 1.03;

/// One worker name's share of a run.
#[derive(Debug, Clone, Default)]
pub struct WorkerShare {
    pub results: u64,
    pub terms: u64,
    /// Sum of the durations it reported.
    pub seconds: f64,
}

impl WorkerShare {
    pub fn terms_per_s(&self) -> f64 {
        if self.seconds > 0.0 {
            self.terms as f64 / self.seconds
        } else {
            0.0
        }
    }
}

/// The estimate after some of a run's results, in acceptance order.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    /// Terms covered by the results so far.
    pub terms: u64,
    /// Their π partials, summed exactly and rounded once.
    pub pi: f64,
    /// Whether they cover exactly [0, terms − 1] (the truncation correction applies).
    pub prefix: bool,
}

/// Aggregates of one run's results up to `last_seq`.
#[derive(Debug, Default)]
pub struct RunDigest {
    last_seq: Option<i64>,
    pub count: u64,
    terms: u64,
    even: u128,
    odd: u128,
    pi: ExactSum,
    pi_bound: ExactSum,
    max_b: Option<u64>,
    max_id: Option<u64>,
    pub workers: HashMap<String, WorkerShare>,
    done_ids: Vec<u64>,
    samples: Vec<Sample>,
    next_sample: f64,
}

impl RunDigest {
    /// Reads the results accepted since the last update.
    fn update(&mut self, store: &Store, run: RunId) -> Result<(), StoreError> {
        loop {
            let rows = store.results_after(run, self.last_seq, BATCH)?;
            for stored in &rows {
                let r = &stored.record;
                let (a, b, id) = (r.a.0, r.b.0, r.id.0);
                self.count += 1;
                let terms = b.saturating_sub(a) + 1;
                self.terms += terms;
                self.even += r.even_sum.0;
                self.odd += r.odd_sum.0;
                // A non-finite partial never passes verification; ignore it rather than poison
                // the sum.
                let _ = self.pi.add(r.pi);
                let _ = self.pi_bound.add(crate::job::verify::pi_bound(a, b, r.pi));
                self.max_b = Some(self.max_b.map_or(b, |m| m.max(b)));
                self.max_id = Some(self.max_id.map_or(id, |m| m.max(id)));
                let share = self.workers.entry(r.worker.clone()).or_default();
                share.results += 1;
                share.terms += terms;
                share.seconds += r.duration_s;
                self.done_ids.push(id);
                if self.count as f64 >= self.next_sample {
                    self.samples.push(self.sample());
                    self.next_sample = (self.next_sample * GRID_RATIO).max(self.count as f64 + 1.0);
                }
                self.last_seq = Some(stored.seq);
            }
            if rows.len() < BATCH {
                return Ok(());
            }
        }
    }

    fn sample(&self) -> Sample {
        Sample {
            terms: self.terms,
            pi: self.pi.value(),
            prefix: self.max_b.is_some_and(|b| b + 1 == self.terms),
        }
    }

    /// The error plot's samples: at most `points`, spread on a log scale of the result count,
    /// the latest included.
    pub fn samples(&self, points: usize) -> Vec<Sample> {
        if self.count == 0 {
            return Vec::new();
        }
        let points = points.max(2);
        let step = self.samples.len().div_ceil(points - 1).max(1);
        let mut out: Vec<Sample> = self.samples.iter().step_by(step).copied().collect();
        if out.last().map(|s| s.terms) != Some(self.terms) {
            out.push(self.sample());
        }
        out
    }

    /// The final report, as `Store::final_report` computes it from the same results.
    pub fn final_report(&self, row: &RunRow) -> FinalReport {
        let totals = Totals {
            intervals_done: self.count,
            terms_done: self.terms,
            even_sum: Dec(self.even),
            odd_sum: Dec(self.odd),
            pi: self.pi.value(),
            workers: self.workers.len() as u64,
            elapsed_s: row.totals.elapsed_s,
            pi_bound: crate::report::certified_bound(self.pi_bound.value(), self.pi.value()),
        };
        // Interval ids are unique within a run: they are [0, n) exactly when the largest is n − 1.
        let prefix = self.max_id.map_or(true, |m| m + 1 == self.count);
        FinalReport::new(&row.job(), row.kernel, &totals, prefix)
    }

    /// The coverage map of a run that is not being served: done or not started.
    pub fn coverage(&self, row: &RunRow, buckets: u32) -> CoverageMap {
        let job = row.job();
        let span = job
            .intervals()
            .unwrap_or_else(|| self.max_id.map_or(0, |m| m + 1));
        let mut map = CoverageMap::empty(span, job.chunk, buckets);
        if map.buckets.is_empty() {
            return map;
        }
        let mut done = vec![0u64; map.buckets.len()];
        for &id in &self.done_ids {
            if let Some(d) = done.get_mut((id / map.width.max(1)) as usize) {
                *d += 1;
            }
        }
        for (k, n) in done.into_iter().enumerate() {
            map.mark_done(k as u64, n);
        }
        map
    }
}

/// The digests of the runs viewed lately.
pub struct Digests {
    reads: Arc<ReadPool>,
    /// Run → digest, most recently used last.
    kept: Mutex<Vec<(RunId, Arc<Mutex<RunDigest>>)>>,
}

impl Digests {
    pub fn new(reads: Arc<ReadPool>) -> Digests {
        Digests {
            reads,
            kept: Mutex::new(Vec::new()),
        }
    }

    fn slot(&self, run: RunId) -> Arc<Mutex<RunDigest>> {
        let mut kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
        let slot = match kept.iter().position(|(r, _)| *r == run) {
            Some(i) => kept.remove(i).1,
            None => Arc::new(Mutex::new(RunDigest::default())),
        };
        kept.push((run, slot.clone()));
        if kept.len() > KEPT {
            kept.remove(0);
        }
        slot
    }

    /// Brings run `run`'s digest up to date and reads it with `f`, with the run's row, on a
    /// blocking thread.
    pub async fn with<R: Send + 'static>(
        &self,
        run: RunId,
        f: impl FnOnce(&RunDigest, &RunRow) -> R + Send + 'static,
    ) -> Result<R, StoreError> {
        let slot = self.slot(run);
        self.reads
            .with(move |store| {
                let row = store.run(run)?;
                // Held on a blocking thread only: two views of one run read its results once.
                let mut digest = slot.lock().unwrap_or_else(|p| p.into_inner());
                digest.update(store, run)?;
                Ok(f(&digest, &row))
            })
            .await
    }

    /// Reads the newest runs' digests, so that the first view of each is as fast as the next.
    pub async fn warm(&self, runs: usize) {
        let ids = match self.reads.with(|s| s.runs()).await {
            Ok(rows) => rows
                .into_iter()
                .map(|r| r.id)
                .take(runs.min(KEPT))
                .collect(),
            Err(e) => {
                tracing::warn!("could not list the runs to warm the dashboard's digests: {e}");
                Vec::new()
            }
        };
        for id in ids.into_iter().rev() {
            if let Err(e) = self.with(id, |_, _| ()).await {
                tracing::warn!("could not read run {id} for the dashboard: {e}");
            }
        }
    }
}
