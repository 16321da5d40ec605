//! The scenario a seed draws: the job, the coordinator's settings, the crowd of workers and
//! their kinds, the network's delays and every fault, with their times.

use super::rng::Rng;
use super::{secs, Time};
use piswarm::coordinator::core::LeasePolicy;
use piswarm::job::Job;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    /// `piswarm worker`: the exact kernel, re-sends unacknowledged results after a reconnect.
    Piswarm,
    /// A third-party client following docs/protocol.md: a plain loop for π, no re-sending.
    Naive,
    /// An honest piswarm worker far slower than the leases.
    Slow,
    /// Sends a wrong result half of the time.
    Liar,
    /// Moves every π partial by most of what verification tolerates: accepted, and wrong.
    Shifter,
    /// Uses an honest worker's name, and lies.
    Squatter,
    /// Sends correct results, marked re-sent, for intervals it never held.
    Resender,
    /// Takes as much work as it may and never answers (but keeps its connection alive).
    Hoarder,
}

impl Kind {
    pub(super) fn honest(self) -> bool {
        matches!(self, Kind::Piswarm | Kind::Naive | Kind::Slow)
    }
    pub(super) fn exact(self) -> bool {
        matches!(self, Kind::Piswarm | Kind::Slow | Kind::Resender)
    }
}

#[derive(Debug, Clone)]
pub(super) struct Spec {
    pub(super) kind: Kind,
    pub(super) name: String,
    pub(super) threads: u32,
    pub(super) prefetch: u32,
    pub(super) retry_for: Option<Duration>,
    /// Compute time per interval, in milliseconds.
    pub(super) compute: (u64, u64),
    /// When it starts.
    pub(super) start: Time,
    /// When it goes silent for good (a phone locked, a laptop off the Wi-Fi): it stops computing
    /// and sending, and its connection is never closed by its side.
    pub(super) vanish: Option<Time>,
}

#[derive(Debug, Clone)]
pub(super) struct Scenario {
    pub(super) job: Job,
    pub(super) max_prefetch: u32,
    pub(super) lease: LeasePolicy,
    pub(super) idle: Duration,
    pub(super) specs: Vec<Spec>,
    /// One-way network delay, milliseconds.
    pub(super) delay: (u64, u64),
    pub(super) commit_delay: (u64, u64),
    pub(super) coordinator_crashes: Vec<Time>,
    pub(super) worker_crashes: Vec<(Time, usize)>,
    pub(super) partitions: Vec<(Time, usize, Duration)>,
    /// The n-th commit fails (then the coordinator is restarted by its operator).
    pub(super) failing_commit: Option<u64>,
    /// Free disk runs out at this time (the coordinator stops accepting; its operator frees
    /// space and restarts it).
    pub(super) disk_full_at: Option<Time>,
}

impl Scenario {
    pub(super) fn draw(rng: &mut Rng) -> Scenario {
        let chunk = rng.range(8, 400);
        let intervals = rng.range(6, 60);
        let job = Job::new(Some(chunk * intervals - rng.below(chunk)), Some(chunk)).unwrap();
        let max_prefetch = rng.range(1, 8) as u32;
        let lease = if rng.chance(0.5) {
            LeasePolicy::Fixed(rng.millis(2_000, 60_000))
        } else {
            LeasePolicy::Observed {
                floor: rng.millis(2_000, 30_000),
                ceiling: secs(600),
            }
        };
        let idle = rng.millis(20_000, 90_000);
        let mut specs = Vec::new();
        let honest = rng.range(1, 4);
        for i in 0..honest {
            let kind = match rng.below(6) {
                0 => Kind::Naive,
                1 => Kind::Slow,
                _ => Kind::Piswarm,
            };
            let compute = match kind {
                Kind::Slow => (20_000, 240_000),
                _ => (5, rng.range(10, 3_000)),
            };
            specs.push(Spec {
                kind,
                name: format!("honest-{i}"),
                threads: rng.range(1, 3) as u32,
                prefetch: rng.range(1, 8) as u32,
                // Honest workers ride out coordinator restarts (most outages are shorter).
                retry_for: Some(rng.millis(150_000, 400_000)),
                compute,
                start: rng.millis(0, 5_000),
                vanish: None,
            });
        }
        let hostile = rng.below(4);
        for i in 0..hostile {
            let kind = match rng.below(6) {
                0 => Kind::Liar,
                1 => Kind::Squatter,
                2 => Kind::Resender,
                3 => Kind::Shifter,
                _ => Kind::Hoarder,
            };
            let name = if kind == Kind::Squatter {
                "honest-0".to_string()
            } else {
                format!("hostile-{i}")
            };
            specs.push(Spec {
                kind,
                name,
                threads: 1,
                prefetch: max_prefetch,
                retry_for: Some(secs(600)),
                compute: (5, 500),
                start: rng.millis(0, 5_000),
                vanish: None,
            });
        }
        let mut coordinator_crashes: Vec<Time> = (0..rng.below(3))
            .map(|_| rng.millis(1_000, 400_000))
            .collect();
        coordinator_crashes.sort();
        let worker_crashes = (0..rng.below(4))
            .map(|_| {
                (
                    rng.millis(500, 300_000),
                    rng.below(specs.len() as u64) as usize,
                )
            })
            .collect();
        let partitions = (0..rng.below(3))
            .map(|_| {
                (
                    rng.millis(500, 300_000),
                    rng.below(specs.len() as u64) as usize,
                    rng.millis(1_000, 150_000),
                )
            })
            .collect();
        let slow_store = rng.chance(0.2);
        Scenario {
            job,
            max_prefetch,
            lease,
            idle,
            specs,
            delay: if rng.chance(0.3) { (0, 2_000) } else { (0, 50) },
            commit_delay: if slow_store { (100, 5_000) } else { (0, 20) },
            coordinator_crashes,
            worker_crashes,
            partitions,
            failing_commit: rng.chance(0.1).then(|| rng.range(1, 40)),
            disk_full_at: rng.chance(0.05).then(|| rng.millis(1_000, 200_000)),
        }
    }

    /// A crowd without faults of the coordinator's: honest piswarm workers whose speeds are
    /// spread over 100× (some asking for far more than they can finish soon), some of which go
    /// silent for good part-way. What is measured is the makespan against the ideal.
    pub(super) fn crowd(rng: &mut Rng) -> Scenario {
        let chunk = 1_000;
        let intervals = rng.range(100, 400);
        let job = Job::new(Some(chunk * intervals), Some(chunk)).unwrap();
        let max_prefetch = rng.range(4, 33) as u32;
        let count = rng.range(3, 9);
        let mut specs = Vec::new();
        for i in 0..count {
            // Mean time per interval from 10 ms to 1 s, log-uniform: 100× between the extremes.
            let mean = (10.0 * 100f64.powf(rng.unit())) as u64;
            let threads = rng.range(1, 3) as u32;
            specs.push(Spec {
                kind: Kind::Piswarm,
                name: format!("crowd-{i}"),
                threads,
                // At least the reference worker's 2 × threads (a worker that asks for no more than
                // it computes at once waits a round trip between intervals: its own choice).
                prefetch: rng.range(2 * threads as u64, max_prefetch.max(2 * threads) as u64 + 1)
                    as u32,
                retry_for: Some(secs(300)),
                compute: (mean * 4 / 5, mean * 6 / 5 + 1),
                start: rng.millis(0, 50),
                // The first worker always stays; a quarter of the others vanish early on.
                vanish: (i > 0 && rng.chance(0.25)).then(|| rng.millis(100, 3_000)),
            });
        }
        Scenario {
            job,
            max_prefetch,
            lease: LeasePolicy::default(),
            idle: secs(60),
            specs,
            delay: (0, 10),
            commit_delay: (0, 10),
            coordinator_crashes: Vec::new(),
            worker_crashes: Vec::new(),
            partitions: Vec::new(),
            failing_commit: None,
            disk_full_at: None,
        }
    }

    /// The crowd's ideal makespan: the job over the summed speeds of the workers that stay (each
    /// `threads` intervals per mean compute time), plus one interval of the fastest of them.
    pub(super) fn ideal(&self) -> Duration {
        let stay = || self.specs.iter().filter(|s| s.vanish.is_none());
        let mean = |s: &Spec| (s.compute.0 + s.compute.1) as f64 / 2.0 / 1e3;
        let speed: f64 = stay().map(|s| f64::from(s.threads) / mean(s)).sum();
        let fastest = stay().map(mean).fold(f64::INFINITY, f64::min);
        Duration::from_secs_f64(self.job.intervals().unwrap() as f64 / speed + fastest)
    }
}
