//! Deterministic simulation of the whole protocol, in the manner of FoundationDB's simulator and
//! TigerBeetle's VOPR.
//!
//! One seed decides everything: the job, the coordinator's settings, a crowd of simulated workers
//! (honest `piswarm worker`s, honest naive third-party clients, slow ones, liars, name squatters,
//! resenders of results they never held, hoarders that take work and never answer), message
//! delays, silent partitions, worker crashes and restarts, coordinator crashes and restarts from
//! what was durable, slow and failing commits, a full disk. The real coordinator core
//! (`piswarm::coordinator::core::Core`, with the real scheduler and verification) runs on
//! simulated time; the simulator plays the shell (sessions, idle timeouts), the network, the
//! store's writer (group commits of the same `Write`s), and the workers (following
//! docs/protocol.md and the reference worker, with its real reconnection policy
//! `worker::retry::Reconnect`).
//!
//! Its parts: `scenario.rs` what a seed draws, `rng.rs` the randomness, `world/` the world a
//! seed runs in (`world/mod.rs` its state and event loop; `coordinator.rs` the core and the
//! store's writer, `network.rs` the shell's side of connections, `actors.rs` the workers,
//! `faults.rs` crashes and partitions, `invariants.rs` the checks); this file the tests.
//!
//! After every step the invariants are checked (`world/invariants.rs` and `Core::check_invariants`):
//! each interval counted at most once, and at the end exactly once; every `ack accepted`
//! acknowledges a durable row; `done job_complete` only when everything is durable, and never
//! ahead of a session's replies; no honest worker ever struck, refused, giving up or starved while
//! work remains; no interval held past its lease; no interval taken from a live holder by someone
//! who never held it; memory bounded by the configuration; the final bits equal the clean run's
//! when only exact kernels contributed, and every stored result passes verification otherwise;
//! the coordinator's final report equal, field by field and bit for bit, to the report of the
//! stored rows.
//!
//! Defects the simulator must find are kept outside the product, in `mutants/`:
//! `scripts/mutants.sh` plants each in a copy of the tree and requires the sweep below to fail
//! (docs/reliability.md, "Mutation check").
//!
//! `PISWARM_SIM_SEED=N cargo test --release --test it simulation::replay` replays one seed and
//! prints its trace; `PISWARM_SIM_SEEDS=N` changes how many seeds the sweep runs (10 000).

mod rng;
mod scenario;
mod world;

use std::time::Duration;
use world::{Violation, World};

/// Simulated time.
type Time = Duration;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// The longest a seed may run (simulated): the job must be complete well before.
const SIM_LIMIT: Duration = Duration::from_secs(6 * 3600);
/// Steps after which a seed is declared stuck.
const MAX_STEPS: u64 = 2_000_000;

/// Runs `count` seeds from `first` on two threads; returns the violations found (at most a few).
fn sweep(first: u64, count: u64) -> Vec<Violation> {
    let threads = 2;
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                s.spawn(move || {
                    let mut found = Vec::new();
                    let mut seed = first + t;
                    while seed < first + count {
                        if let Err(v) = World::new(seed, false).run() {
                            found.push(v);
                            if found.len() >= 3 {
                                break;
                            }
                        }
                        seed += threads;
                    }
                    found
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("a simulation thread panicked"))
            .collect()
    })
}

fn seeds_from_env() -> u64 {
    std::env::var("PISWARM_SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000)
}

/// The sweep: every invariant holds on every seed.
#[test]
fn every_invariant_holds_on_ten_thousand_seeds() {
    let count = seeds_from_env();
    let found = sweep(0, count);
    if let Some(v) = found.first() {
        // Replay the first failure with its trace, for the report.
        let replayed = World::new(v.seed, true).run().expect_err("replays");
        panic!("{replayed}");
    }
}

/// Replays one crowd seed with its trace: `PISWARM_CROWD_SEED=N`.
#[test]
fn replay_crowd() {
    let Some(seed) = std::env::var("PISWARM_CROWD_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    else {
        return;
    };
    let mut world = World::crowd(seed, true);
    let outcome = world.run();
    let trace = match &outcome {
        Ok(()) => &world.trace,
        Err(v) => &v.trace,
    };
    for line in trace {
        println!("{line}");
    }
    println!("ideal {:?}, took {:?}", world.sc.ideal(), world.complete_at);
    if let Err(v) = outcome {
        panic!("{v}");
    }
}

/// Replays one seed with its trace: `PISWARM_SIM_SEED=N`.
#[test]
fn replay() {
    let Some(seed) = std::env::var("PISWARM_SIM_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    else {
        return;
    };
    let mut world = World::new(seed, true);
    match world.run() {
        Ok(()) => {
            for line in &world.trace {
                println!("{line}");
            }
        }
        Err(v) => {
            for line in &v.trace {
                println!("{line}");
            }
            panic!("{v}");
        }
    }
}

/// A crowd of honest workers whose speeds are spread over 100×, some of which vanish: with backup
/// copies at the tail and allowances by speed, every seed's makespan stays within
/// `1.5 × ideal + 1 s` (the ideal: the job over the summed speeds of those that stay, plus one
/// interval of the fastest), every invariant holds, and no honest worker is struck.
#[test]
fn a_crowd_finishes_within_a_bound_of_the_ideal() {
    let seeds = (seeds_from_env() / 10).max(50);
    let mut worst = (0.0f64, 0u64);
    let mut ratios = Vec::new();
    for seed in 0..seeds {
        let mut world = World::crowd(seed, false);
        if let Err(v) = world.run() {
            let replayed = World::crowd(v.seed, true).run().expect_err("replays");
            panic!("crowd seed {seed}: {replayed}");
        }
        let ideal = world.sc.ideal();
        let took = world.complete_at.expect("complete");
        let ratio = took.as_secs_f64() / ideal.as_secs_f64();
        if ratio > worst.0 {
            worst = (ratio, seed);
        }
        ratios.push(ratio);
        assert!(
            took <= ideal.mul_f64(1.5) + secs(1),
            "crowd seed {seed}: the job took {took:?}, the ideal is {ideal:?} ({ratio:.2}×): {:#?}",
            world.sc.specs
        );
    }
    ratios.sort_by(f64::total_cmp);
    eprintln!(
        "crowd: makespan / ideal over {seeds} seeds: median {:.2}, p90 {:.2}, worst {:.2} (seed {})",
        ratios[ratios.len() / 2],
        ratios[ratios.len() * 9 / 10],
        worst.0,
        worst.1
    );
}
