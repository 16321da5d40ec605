//! Deterministic simulation of the whole protocol, in the manner of FoundationDB's simulator and
//! TigerBeetle's VOPR.
//!
//! One seed decides everything: the job, the coordinator's settings, a crowd of simulated workers
//! (honest `piswarm worker`s, honest naive third-party clients, slow ones, liars, name squatters,
//! resenders of results they never held, hoarders that take work and never answer), message
//! delays, silent partitions, worker crashes and restarts, coordinator crashes and restarts from
//! what was durable, slow and failing commits, a full disk. The real coordinator core
//! (`piswarm::coordinator::core::Core`, with the real scheduler and verification) runs on
//! simulated time; this file plays the shell (sessions, idle timeouts), the network, the store's
//! writer (group commits of the same `Write`s), and the workers (following docs/protocol.md and
//! the reference worker, with its real reconnection policy `worker::retry::Reconnect`).
//!
//! After every step the invariants are checked (see [`World::check`] and `Core::check_invariants`):
//! each interval counted at most once, and at the end exactly once; every `ack accepted`
//! acknowledges a durable row; `done job_complete` only when everything is durable, and never
//! ahead of a session's replies; no honest worker ever struck, refused, giving up or starved while
//! work remains; no interval held past its lease; no interval taken from a live holder by someone
//! who never held it; memory bounded by the configuration; the final bits equal the clean run's
//! when only exact kernels contributed, and every stored result passes verification otherwise.
//!
//! `PISWARM_SIM_SEED=N cargo test --release --test it simulation::replay` replays one seed and
//! prints its trace; `PISWARM_SIM_SEEDS=N` changes how many seeds the sweep runs (10 000).

use piswarm::coordinator::core::{
    Core, CoreConfig, Input, Joining, LeasePolicy, Output, ResumeState, SessionId, WorkerKind,
    Write,
};
use piswarm::job::verify::check_result;
use piswarm::job::{IntervalId, Job};
use piswarm::maths::exact::ExactSum;
use piswarm::maths::{kernel, series, sums};
use piswarm::mutation::{self, Mutation};
use piswarm::report::ResultRecord;
use piswarm::store::verify_record;
use piswarm::wire::{
    AckStatus, ClientMessage, Dec, DoneReason, ErrorCode, ServerMessage, WorkResult,
    PROTOCOL_VERSION,
};
use piswarm::worker::retry::Reconnect;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, VecDeque};
use std::time::Duration;

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

// -------------------------------------------------------------------------------------------
// Randomness
// -------------------------------------------------------------------------------------------

/// SplitMix64: small, fast, and the same on every machine.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }
    fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn millis(&mut self, lo: u64, hi: u64) -> Duration {
        ms(self.range(lo, hi))
    }
}

// -------------------------------------------------------------------------------------------
// The scenario a seed draws
// -------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
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
    fn honest(self) -> bool {
        matches!(self, Kind::Piswarm | Kind::Naive | Kind::Slow)
    }
    fn exact(self) -> bool {
        matches!(self, Kind::Piswarm | Kind::Slow | Kind::Resender)
    }
}

#[derive(Debug, Clone)]
struct Spec {
    kind: Kind,
    name: String,
    threads: u32,
    prefetch: u32,
    retry_for: Option<Duration>,
    /// Compute time per interval, in milliseconds.
    compute: (u64, u64),
    /// When it starts.
    start: Time,
    /// When it goes silent for good (a phone locked, a laptop off the Wi-Fi): it stops computing
    /// and sending, and its connection is never closed by its side.
    vanish: Option<Time>,
}

#[derive(Debug, Clone)]
struct Scenario {
    job: Job,
    max_prefetch: u32,
    lease: LeasePolicy,
    idle: Duration,
    specs: Vec<Spec>,
    /// One-way network delay, milliseconds.
    delay: (u64, u64),
    commit_delay: (u64, u64),
    coordinator_crashes: Vec<Time>,
    worker_crashes: Vec<(Time, usize)>,
    partitions: Vec<(Time, usize, Duration)>,
    /// The n-th commit fails (then the coordinator is restarted by its operator).
    failing_commit: Option<u64>,
    /// Free disk runs out at this time (the coordinator stops accepting; its operator frees
    /// space and restarts it).
    disk_full_at: Option<Time>,
}

impl Scenario {
    fn draw(rng: &mut Rng) -> Scenario {
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
    fn crowd(rng: &mut Rng) -> Scenario {
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
    fn ideal(&self) -> Duration {
        let stay = || self.specs.iter().filter(|s| s.vanish.is_none());
        let mean = |s: &Spec| (s.compute.0 + s.compute.1) as f64 / 2.0 / 1e3;
        let speed: f64 = stay().map(|s| f64::from(s.threads) / mean(s)).sum();
        let fastest = stay().map(mean).fold(f64::INFINITY, f64::min);
        Duration::from_secs_f64(self.job.intervals().unwrap() as f64 / speed + fastest)
    }
}

// -------------------------------------------------------------------------------------------
// The world
// -------------------------------------------------------------------------------------------

type ConnId = u64;

#[derive(Debug, Clone)]
enum Ev {
    ToServer(ConnId, ClientMessage),
    ToClient(ConnId, ServerMessage),
    /// The client sees its connection end.
    ClientEof(ConnId),
    /// The server sees the client's side end.
    ServerEof(ConnId),
    IdleCheck(ConnId),
    Computed {
        worker: usize,
        life: u32,
        epoch: u64,
        id: u64,
    },
    Heartbeat {
        worker: usize,
        life: u32,
        conn: ConnId,
    },
    /// The hostile resender's next lie.
    Resend {
        worker: usize,
        life: u32,
        conn: ConnId,
    },
    Connect {
        worker: usize,
        life: u32,
    },
    CoreTick(u32),
    Commit(u32),
    CrashCoordinator,
    RestartCoordinator,
    DiskFull,
    CrashWorker(usize),
    RestartWorker(usize),
    PartitionStart(usize, Duration),
    PartitionEnd(ConnId),
    /// The worker goes silent for good, its connection left open.
    Vanish(usize),
}

/// An event at a time; ties broken by order of scheduling (deterministic).
struct Scheduled(Time, u64, Ev);

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        (self.0, self.1) == (other.0, other.1)
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scheduled {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (other.0, other.1).cmp(&(self.0, self.1))
    }
}

struct Conn {
    worker: usize,
    life: u32,
    /// The coordinator process it belongs to.
    process: u32,
    /// The server still serves it (not closed, not left).
    server_open: bool,
    client_open: bool,
    last_line: Time,
    to_client_at: Time,
    to_server_at: Time,
    /// Messages held by a silent partition, delivered when it heals (TCP retransmits).
    partitioned: bool,
    held_to_client: Vec<ServerMessage>,
    held_to_server: Vec<ClientMessage>,
    /// Results the core received on it, and replies (ack or error with an id) it sent.
    results_in: u64,
    replies_out: u64,
    /// The client learns of the end after the partition heals.
    eof_pending: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WState {
    Idle,
    Welcoming,
    Active,
    Finished,
    GaveUp,
}

struct Worker {
    spec: Spec,
    life: u32,
    alive: bool,
    state: WState,
    conn: Option<ConnId>,
    epoch: u64,
    run: Option<u64>,
    unacked: BTreeMap<u64, WorkResult>,
    queue: VecDeque<(u64, u64, u64, u64)>,
    busy: u32,
    to_resend: VecDeque<u64>,
    resending: BTreeSet<u64>,
    window: usize,
    reconnect: Reconnect,
    /// Every interval ever assigned to this worker (any connection, any coordinator process).
    assigned_ever: BTreeSet<u64>,
    /// Since when it has had no coordinator (its start, or the end of its last welcomed
    /// connection).
    offline_since: Time,
}

/// Sums of stored rows, exact.
#[derive(Default)]
struct Sums {
    even: u128,
    odd: u128,
    terms: u64,
    pi: ExactSum,
    workers: BTreeSet<String>,
}

impl Sums {
    fn add(&mut self, r: &ResultRecord) {
        self.even += r.even_sum.0;
        self.odd += r.odd_sum.0;
        self.terms += r.b.0 - r.a.0 + 1;
        self.pi.add(r.pi).unwrap();
        self.workers.insert(r.worker.clone());
    }
}

#[derive(Default)]
struct Store {
    durable: BTreeMap<u64, ResultRecord>,
    /// What the durable rows add up to, kept as they are committed: every field the final
    /// report prints, computed independently of the coordinator.
    sums: Sums,
    issued_upto: u64,
    queue: Vec<Write>,
    queued_ids: BTreeSet<u64>,
    commit_scheduled: bool,
    commits: u64,
    failed: bool,
}

struct World {
    seed: u64,
    rng: Rng,
    sc: Scenario,
    now: Time,
    events: BinaryHeap<Scheduled>,
    next_event: u64,
    core: Option<Core>,
    /// Coordinator process number (bumped at each restart).
    process: u32,
    conns: BTreeMap<ConnId, Conn>,
    next_conn: ConnId,
    workers: Vec<Worker>,
    store: Store,
    /// Who holds an interval, by the assigns the core sent: connection and lease deadline.
    holders: BTreeMap<u64, (ConnId, Time)>,
    /// When the coordinator could take workers: from its start to its crash or store failure.
    up: Vec<(Time, Time)>,
    trace: Vec<String>,
    tracing: bool,
    steps: u64,
    reference: f64,
    /// When the last interval became durable.
    complete_at: Option<Time>,
}

/// A broken invariant, with the seed that replays it.
#[derive(Debug)]
struct Violation {
    seed: u64,
    at: Time,
    what: String,
    trace: Vec<String>,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "seed {} broke an invariant at {:?}: {}\n(replay: PISWARM_SIM_SEED={} cargo test --release --test it simulation::replay -- --nocapture)",
            self.seed, self.at, self.what, self.seed
        )?;
        for line in self.trace.iter().rev().take(40).rev() {
            write!(f, "\n  {line}")?;
        }
        Ok(())
    }
}

type Check = Result<(), String>;

impl World {
    fn new(seed: u64, tracing: bool) -> World {
        let mut rng = Rng(seed);
        let sc = Scenario::draw(&mut rng);
        World::with(seed, rng, sc, tracing)
    }

    /// A crowd seed (see [`Scenario::crowd`]).
    fn crowd(seed: u64, tracing: bool) -> World {
        let mut rng = Rng(seed ^ 0xC0FF_EE00_5EED);
        let sc = Scenario::crowd(&mut rng);
        World::with(seed, rng, sc, tracing)
    }

    fn with(seed: u64, rng: Rng, sc: Scenario, tracing: bool) -> World {
        let reference = {
            let mut s = ExactSum::new();
            for k in 0..sc.job.intervals().unwrap() {
                let i = sc.job.interval(IntervalId(k)).unwrap();
                s.add(kernel::pi_partial(i.a, i.b).unwrap()).unwrap();
            }
            s.value()
        };
        let workers = sc
            .specs
            .iter()
            .map(|spec| Worker {
                spec: spec.clone(),
                life: 0,
                alive: true,
                state: WState::Idle,
                conn: None,
                epoch: 0,
                run: None,
                unacked: BTreeMap::new(),
                queue: VecDeque::new(),
                busy: 0,
                to_resend: VecDeque::new(),
                resending: BTreeSet::new(),
                window: 1,
                reconnect: Reconnect::new(spec.retry_for, spec.start),
                assigned_ever: BTreeSet::new(),
                offline_since: spec.start,
            })
            .collect();
        let mut w = World {
            seed,
            rng,
            sc,
            now: Duration::ZERO,
            events: BinaryHeap::new(),
            next_event: 0,
            core: None,
            process: 0,
            conns: BTreeMap::new(),
            next_conn: 1,
            workers,
            store: Store::default(),
            holders: BTreeMap::new(),
            up: Vec::new(),
            trace: Vec::new(),
            tracing,
            steps: 0,
            reference,
            complete_at: None,
        };
        for (i, spec) in w.sc.specs.clone().iter().enumerate() {
            w.at(spec.start, Ev::Connect { worker: i, life: 0 });
        }
        for t in w.sc.coordinator_crashes.clone() {
            w.at(t, Ev::CrashCoordinator);
        }
        for (t, i) in w.sc.worker_crashes.clone() {
            w.at(t, Ev::CrashWorker(i));
        }
        for (t, i, d) in w.sc.partitions.clone() {
            w.at(t, Ev::PartitionStart(i, d));
        }
        if let Some(t) = w.sc.disk_full_at {
            w.at(t, Ev::DiskFull);
        }
        for (i, spec) in w.sc.specs.clone().iter().enumerate() {
            if let Some(t) = spec.vanish {
                w.at(t, Ev::Vanish(i));
            }
        }
        w
    }

    fn at(&mut self, t: Time, ev: Ev) {
        self.next_event += 1;
        self.events
            .push(Scheduled(t.max(self.now), self.next_event, ev));
    }

    fn note(&mut self, line: impl FnOnce() -> String) {
        if self.tracing {
            let line = line();
            self.trace.push(format!("{:>12?} {line}", self.now));
        }
    }

    fn intervals(&self) -> u64 {
        self.sc.job.intervals().unwrap()
    }

    // --- the coordinator and its store -------------------------------------------------------

    fn start_coordinator(&mut self) -> Check {
        self.process += 1;
        let mut config = CoreConfig::new(self.sc.job);
        config.max_prefetch = self.sc.max_prefetch;
        config.lease = self.sc.lease;
        config.heartbeat = self.sc.idle / 3;
        let resume = if self.process == 1 {
            None
        } else {
            let mut pi = ExactSum::new();
            let mut pi_bound = ExactSum::new();
            let (mut even, mut odd, mut terms) = (0u128, 0u128, 0u64);
            let mut names = BTreeSet::new();
            for r in self.store.durable.values() {
                pi.add(r.pi).unwrap();
                pi_bound
                    .add(verify_record(&self.sc.job, r).expect("stored results verify"))
                    .unwrap();
                even += r.even_sum.0;
                odd += r.odd_sum.0;
                terms += r.b.0 - r.a.0 + 1;
                names.insert(r.worker.clone());
            }
            Some(ResumeState {
                done_ids: self.store.durable.keys().copied().collect(),
                issued_upto: self.store.issued_upto,
                pi,
                even_sum: even,
                odd_sum: odd,
                terms_done: terms,
                worker_names: names.into_iter().collect(),
                elapsed_s: 0.0,
                pi_bound,
            })
        };
        self.note(|| "coordinator starts".into());
        self.core = Some(Core::new(config, resume));
        self.up.push((self.now, Duration::MAX));
        self.store.failed = false;
        self.store.queue.clear();
        self.store.queued_ids.clear();
        self.store.commit_scheduled = false;
        self.holders.clear();
        self.pump()
    }

    fn input(&mut self, input: Input) -> Check {
        let now = self.now;
        let Some(core) = self.core.as_mut() else {
            return Ok(());
        };
        core.handle(now, input);
        self.pump()
    }

    /// Carries out the core's outputs, checking what they promise.
    fn pump(&mut self) -> Check {
        loop {
            let Some(core) = self.core.as_mut() else {
                return Ok(());
            };
            let Some(out) = core.poll_output() else {
                break;
            };
            match out {
                Output::Send { session, message } => self.server_sends(session, message)?,
                Output::Close { session } => {
                    self.note(|| format!("core closes session {session}"));
                    self.server_closes(session, false)?;
                    if let Some(core) = self.core.as_mut() {
                        core.handle(self.now, Input::Leave { session });
                    }
                }
                Output::Write(w) => self.store_write(w)?,
                Output::Durable(_) => {}
            }
        }
        if let Some(core) = &self.core {
            if let Some(t) = core.poll_timeout() {
                let p = self.process;
                self.at(t, Ev::CoreTick(p));
            }
        }
        Ok(())
    }

    fn store_write(&mut self, w: Write) -> Check {
        if let Write::Result { record, .. } = &w {
            let id = record.id.0;
            if self.store.durable.contains_key(&id) || self.store.queued_ids.contains(&id) {
                return Err(format!(
                    "interval {id} counted twice (a second result written)"
                ));
            }
            // Nobody may take an interval from a live holder whose lease runs, unless it held
            // the interval itself at some point.
            if let Some(&(holder, deadline)) = self.holders.get(&id) {
                let live = self.conns.get(&holder).is_some_and(|c| c.server_open);
                let writer = self
                    .workers
                    .iter()
                    .position(|w| w.spec.name == record.worker && w.assigned_ever.contains(&id));
                let by_holder = self
                    .conns
                    .get(&holder)
                    .is_some_and(|c| self.workers[c.worker].spec.name == record.worker);
                if live && self.now < deadline && writer.is_none() && !by_holder {
                    return Err(format!(
                        "interval {id} taken from its live holder (connection {holder}) by {}, which never held it",
                        record.worker
                    ));
                }
            }
            self.store.queued_ids.insert(id);
        }
        self.store.queue.push(w);
        if !self.store.commit_scheduled && !self.store.failed {
            self.store.commit_scheduled = true;
            let d = self
                .rng
                .millis(self.sc.commit_delay.0, self.sc.commit_delay.1);
            let p = self.process;
            self.at(self.now + d, Ev::Commit(p));
        }
        Ok(())
    }

    fn commit(&mut self) -> Check {
        self.store.commit_scheduled = false;
        if self.store.failed || self.store.queue.is_empty() {
            return Ok(());
        }
        self.store.commits += 1;
        if Some(self.store.commits) == self.sc.failing_commit {
            self.note(|| "commit fails".into());
            self.down();
            self.store.failed = true;
            self.store.queue.clear();
            self.store.queued_ids.clear();
            self.input(Input::StoreFailed {
                reason: "simulated I/O error".into(),
            })?;
            // Its operator restarts it a little later.
            let d = self.rng.millis(5_000, 60_000);
            self.at(self.now + d, Ev::CrashCoordinator);
            return Ok(());
        }
        let mut through = 0;
        for w in std::mem::take(&mut self.store.queue) {
            through = through.max(w.seq());
            match w {
                Write::Result { record, .. } => {
                    self.store.queued_ids.remove(&record.id.0);
                    self.store.sums.add(&record);
                    self.store.durable.insert(record.id.0, record);
                }
                Write::Reserve { upto, .. } => {
                    self.store.issued_upto = self.store.issued_upto.max(upto)
                }
                Write::Totals { .. } => {}
            }
        }
        self.note(|| format!("commit through {through}"));
        self.input(Input::Committed { through })
    }

    // --- the shell's side of connections -----------------------------------------------------

    fn delay(&mut self) -> Duration {
        self.rng.millis(self.sc.delay.0, self.sc.delay.1)
    }

    /// The core writes a message to a session: check what it promises, then send it.
    fn server_sends(&mut self, session: SessionId, message: ServerMessage) -> Check {
        // An answer to a result ends its sender's hold of the interval.
        if let ServerMessage::Ack { id, .. } | ServerMessage::Error { id: Some(id), .. } = &message
        {
            if self.holders.get(&id.0).is_some_and(|h| h.0 == session) {
                self.holders.remove(&id.0);
            }
        }
        let Some(conn) = self.conns.get_mut(&session) else {
            return Ok(());
        };
        let worker = conn.worker;
        let honest = self.workers[worker].spec.kind.honest();
        match &message {
            ServerMessage::Ack {
                id,
                status: AckStatus::Accepted,
            } => {
                conn.replies_out += 1;
                if !self.store.durable.contains_key(&id.0) {
                    return Err(format!(
                        "ack accepted for interval {} before its result is durable",
                        id.0
                    ));
                }
            }
            ServerMessage::Ack { .. } => conn.replies_out += 1,
            ServerMessage::Error {
                code,
                id: Some(i),
                message,
                ..
            } => {
                conn.replies_out += 1;
                if honest {
                    return Err(format!(
                        "honest worker {} struck: {code:?} for interval {}: {message}",
                        self.workers[worker].spec.name, i.0
                    ));
                }
            }
            ServerMessage::Error {
                code: ErrorCode::Refused,
                ..
            } if honest => {
                return Err(format!(
                    "honest worker {} refused",
                    self.workers[worker].spec.name
                ));
            }
            ServerMessage::Done {
                reason: DoneReason::JobComplete,
            } => {
                let missing = self.sc.job.intervals().unwrap() - self.store.durable.len() as u64;
                if missing > 0 {
                    return Err(format!(
                        "done job_complete while {missing} intervals are not durable"
                    ));
                }
                if conn.replies_out < conn.results_in {
                    return Err(format!(
                        "done job_complete overtakes {} replies on session {session}",
                        conn.results_in - conn.replies_out
                    ));
                }
            }
            ServerMessage::Assign { id, lease_s, .. } => {
                let deadline = self.now + Duration::from_secs_f64(*lease_s);
                self.holders.insert(id.0, (session, deadline));
                self.workers[worker].assigned_ever.insert(id.0);
            }
            _ => {}
        }
        let Some(conn) = self.conns.get_mut(&session) else {
            return Ok(());
        };
        if !conn.server_open {
            return Ok(());
        }
        if conn.partitioned {
            conn.held_to_client.push(message);
            return Ok(());
        }
        let d = self.rng.millis(self.sc.delay.0, self.sc.delay.1);
        let conn = self.conns.get_mut(&session).unwrap();
        conn.to_client_at = conn.to_client_at.max(self.now + d);
        let t = conn.to_client_at;
        self.note(|| format!("→ {session}: {message:?}"));
        self.at(t, Ev::ToClient(session, message));
        Ok(())
    }

    /// The server side ends a connection: the client learns it after what was sent.
    fn server_closes(&mut self, id: ConnId, reset: bool) -> Check {
        let Some(conn) = self.conns.get_mut(&id) else {
            return Ok(());
        };
        if !conn.server_open {
            return Ok(());
        }
        conn.server_open = false;
        if conn.partitioned {
            conn.eof_pending = true;
            return Ok(());
        }
        let t = if reset {
            self.now
        } else {
            conn.to_client_at.max(self.now)
        };
        self.at(t + ms(1), Ev::ClientEof(id));
        Ok(())
    }

    /// A message reaches the server.
    fn server_receives(&mut self, id: ConnId, msg: ClientMessage) -> Check {
        let Some(conn) = self.conns.get_mut(&id) else {
            return Ok(());
        };
        if !conn.server_open || conn.process != self.process {
            return Ok(());
        }
        conn.last_line = self.now;
        let worker = conn.worker;
        self.note(|| format!("← {id}: {msg:?}"));
        match msg {
            ClientMessage::Hello { worker: name, .. } => {
                let kind = match self.workers[worker].spec.kind {
                    Kind::Naive => WorkerKind::Other,
                    _ => WorkerKind::Piswarm,
                };
                let idle = self.sc.idle;
                self.at(self.now + idle, Ev::IdleCheck(id));
                self.input(Input::Join(Joining {
                    session: id,
                    name,
                    peer: format!("sim:{worker}"),
                    kind,
                    agent: String::new(),
                }))
            }
            ClientMessage::Request { count } => self.input(Input::Request { session: id, count }),
            ClientMessage::Result(result) => {
                self.conns.get_mut(&id).unwrap().results_in += 1;
                // A result from the holder ends its hold (accepted: pending; refused: given back).
                if self.holders.get(&result.id.0).is_some_and(|h| h.0 == id) {
                    self.holders.remove(&result.id.0);
                }
                let verdict = check_result(&self.sc.job, &result);
                self.input(Input::Result {
                    session: id,
                    result,
                    verdict,
                    received_at: "sim".into(),
                })
            }
            ClientMessage::Heartbeat {} => Ok(()),
            ClientMessage::Bye {} => {
                self.server_closes(id, false)?;
                self.input(Input::Leave { session: id })
            }
        }
    }

    fn idle_check(&mut self, id: ConnId) -> Check {
        let idle = self.sc.idle;
        let Some(conn) = self.conns.get(&id) else {
            return Ok(());
        };
        if !conn.server_open || conn.process != self.process {
            return Ok(());
        }
        if self.now >= conn.last_line + idle {
            self.note(|| format!("session {id} idle timeout"));
            self.server_sends(
                id,
                ServerMessage::error(ErrorCode::IdleTimeout, "nothing received"),
            )?;
            self.server_closes(id, false)?;
            self.input(Input::Leave { session: id })
        } else {
            let t = conn.last_line + idle;
            self.at(t, Ev::IdleCheck(id));
            Ok(())
        }
    }

    // --- workers -----------------------------------------------------------------------------

    fn send(&mut self, id: ConnId, msg: ClientMessage) {
        let d = self.delay();
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        if !conn.client_open {
            return;
        }
        if conn.partitioned {
            conn.held_to_server.push(msg);
            return;
        }
        conn.to_server_at = conn.to_server_at.max(self.now + d);
        let t = conn.to_server_at;
        self.at(t, Ev::ToServer(id, msg));
    }

    fn connect(&mut self, wi: usize, life: u32) -> Check {
        let w = &self.workers[wi];
        if !w.alive
            || w.life != life
            || w.conn.is_some()
            || matches!(w.state, WState::Finished | WState::GaveUp)
        {
            return Ok(());
        }
        if self.core.is_none() {
            // Connection refused: the coordinator is down.
            return self.connection_failed(wi);
        }
        let id = self.next_conn;
        self.next_conn += 1;
        self.conns.insert(
            id,
            Conn {
                worker: wi,
                life,
                process: self.process,
                server_open: true,
                client_open: true,
                last_line: self.now,
                to_client_at: self.now,
                to_server_at: self.now,
                partitioned: false,
                held_to_client: Vec::new(),
                held_to_server: Vec::new(),
                results_in: 0,
                replies_out: 0,
                eof_pending: false,
            },
        );
        let w = &mut self.workers[wi];
        w.conn = Some(id);
        w.epoch += 1;
        w.state = WState::Welcoming;
        let name = w.spec.name.clone();
        self.note(|| format!("worker {name} connects as {id}"));
        self.send(
            id,
            ClientMessage::Hello {
                version: PROTOCOL_VERSION,
                worker: name,
                token: None,
                agent: Some("piswarm/sim".into()),
            },
        );
        Ok(())
    }

    /// The connection could not be made or was lost: retry by the worker's policy, or give up.
    fn connection_failed(&mut self, wi: usize) -> Check {
        let jitter = self.rng.unit();
        let now = self.now;
        let w = &mut self.workers[wi];
        if w.state == WState::Active {
            w.offline_since = now;
        }
        w.conn = None;
        w.state = WState::Idle;
        match w.reconnect.next_wait(now, jitter) {
            Some(wait) => {
                let life = w.life;
                self.at(now + wait, Ev::Connect { worker: wi, life });
                Ok(())
            }
            None => {
                w.state = WState::GaveUp;
                if !w.spec.kind.honest() {
                    return Ok(());
                }
                let (since, retry_for) = (w.offline_since, w.spec.retry_for.unwrap_or_default());
                // It may give up once it has been without a coordinator for --retry-for (less
                // its last backoff), and only if the coordinator was not there to take it.
                if now + secs(8) < since + retry_for {
                    return Err(format!(
                        "honest worker {} gave up after {:?} without a coordinator, before its --retry-for {retry_for:?}",
                        w.spec.name,
                        now - since
                    ));
                }
                let reachable = self
                    .up
                    .iter()
                    .map(|&(a, b)| (a.max(since), b.min(now)))
                    .any(|(a, b)| b > a && b - a >= secs(15));
                if reachable {
                    return Err(format!(
                        "honest worker {} gave up although the coordinator could be reached for 15 s in its last {:?}",
                        w.spec.name,
                        now - since
                    ));
                }
                Ok(())
            }
        }
    }

    fn client_eof(&mut self, id: ConnId) -> Check {
        let Some(conn) = self.conns.get_mut(&id) else {
            return Ok(());
        };
        if !conn.client_open {
            return Ok(());
        }
        conn.client_open = false;
        let (wi, life) = (conn.worker, conn.life);
        let w = &self.workers[wi];
        if !w.alive || w.life != life || w.conn != Some(id) {
            return Ok(());
        }
        if matches!(w.state, WState::Finished) {
            return Ok(());
        }
        self.note(|| format!("worker {wi} lost connection {id}"));
        self.connection_failed(wi)
    }

    fn client_receives(&mut self, id: ConnId, msg: ServerMessage) -> Check {
        let Some(conn) = self.conns.get(&id) else {
            return Ok(());
        };
        if !conn.client_open {
            return Ok(());
        }
        let wi = conn.worker;
        if self.workers[wi].conn != Some(id) || !self.workers[wi].alive {
            return Ok(());
        }
        let kind = self.workers[wi].spec.kind;
        match msg {
            ServerMessage::Welcome {
                run, max_prefetch, ..
            } => {
                let now = self.now;
                let w = &mut self.workers[wi];
                // (Hostile clients keep backing off: a liar refused again and again comes back
                // every few seconds rather than at once, which only keeps the seed short.)
                if kind.honest() {
                    w.reconnect.connected(now);
                }
                w.state = WState::Active;
                if w.run != Some(run) || kind == Kind::Naive {
                    w.unacked.clear();
                    w.run = Some(run);
                }
                w.window = max_prefetch.max(1) as usize;
                w.resending.clear();
                w.to_resend = w.unacked.keys().copied().collect();
                let prefetch = match kind {
                    Kind::Hoarder => max_prefetch,
                    Kind::Resender => 0,
                    _ => w.spec.prefetch.clamp(1, max_prefetch.max(1)),
                };
                let life = w.life;
                if prefetch > 0 {
                    self.send(id, ClientMessage::Request { count: prefetch });
                }
                self.send_resends(wi, id);
                let beat = self.sc.idle / 6;
                self.at(
                    self.now + beat,
                    Ev::Heartbeat {
                        worker: wi,
                        life,
                        conn: id,
                    },
                );
                if kind == Kind::Resender {
                    let t = self.rng.millis(100, 5_000);
                    self.at(
                        self.now + t,
                        Ev::Resend {
                            worker: wi,
                            life,
                            conn: id,
                        },
                    );
                }
            }
            ServerMessage::Assign { id: i, a, b, .. } => {
                if kind == Kind::Hoarder {
                    return Ok(());
                }
                let w = &mut self.workers[wi];
                w.queue.push_back((w.epoch, i.0, a.0, b.0));
                self.start_computing(wi);
            }
            ServerMessage::Ack { id: i, .. } => self.answered(wi, id, i.0),
            ServerMessage::Error {
                id: Some(i), code, ..
            } => {
                self.answered(wi, id, i.0);
                if code == ErrorCode::Refused {
                    return self.drop_connection(wi, id);
                }
            }
            ServerMessage::Error { .. } => return self.drop_connection(wi, id),
            ServerMessage::Done { reason } => {
                self.send(id, ClientMessage::Bye {});
                self.close_client(id);
                let retry = self.workers[wi].spec.retry_for.is_some();
                match reason {
                    DoneReason::JobComplete => {
                        self.workers[wi].state = WState::Finished;
                        self.workers[wi].conn = None;
                    }
                    DoneReason::ServerStopping if retry => return self.connection_failed(wi),
                    DoneReason::ServerStopping => {
                        self.workers[wi].state = WState::Finished;
                        self.workers[wi].conn = None;
                    }
                }
            }
        }
        Ok(())
    }

    fn drop_connection(&mut self, wi: usize, id: ConnId) -> Check {
        self.close_client(id);
        self.connection_failed(wi)
    }

    /// The client closes its side: the server sees it after what the client sent.
    fn close_client(&mut self, id: ConnId) {
        if let Some(conn) = self.conns.get_mut(&id) {
            if conn.client_open {
                conn.client_open = false;
                let t = conn.to_server_at.max(self.now) + ms(1);
                if conn.partitioned {
                    conn.eof_pending = true;
                } else {
                    self.at(t, Ev::ServerEof(id));
                }
            }
        }
    }

    fn answered(&mut self, wi: usize, conn: ConnId, id: u64) {
        let w = &mut self.workers[wi];
        w.unacked.remove(&id);
        if w.resending.remove(&id) {
            self.send_resends(wi, conn);
        }
    }

    fn send_resends(&mut self, wi: usize, conn: ConnId) {
        let mut out = Vec::new();
        let w = &mut self.workers[wi];
        while w.resending.len() < w.window {
            let Some(id) = w.to_resend.pop_front() else {
                break;
            };
            let Some(r) = w.unacked.get(&id) else {
                continue;
            };
            out.push(WorkResult {
                resend: true,
                ..r.clone()
            });
            w.resending.insert(id);
        }
        for r in out {
            self.send(conn, ClientMessage::Result(r));
        }
    }

    fn start_computing(&mut self, wi: usize) {
        loop {
            let w = &mut self.workers[wi];
            if w.busy >= w.spec.threads {
                return;
            }
            let Some((epoch, id, _, _)) = w.queue.pop_front() else {
                return;
            };
            // Tasks of an earlier connection that have not started are skipped (the pool does).
            if epoch != w.epoch {
                continue;
            }
            w.busy += 1;
            let (life, (lo, hi)) = (w.life, w.spec.compute);
            let d = self.rng.millis(lo, hi);
            self.at(
                self.now + d,
                Ev::Computed {
                    worker: wi,
                    life,
                    epoch,
                    id,
                },
            );
        }
    }

    fn computed(&mut self, wi: usize, life: u32, epoch: u64, id: u64) -> Check {
        let kind = self.workers[wi].spec.kind;
        {
            let w = &mut self.workers[wi];
            if !w.alive || w.life != life {
                return Ok(());
            }
            w.busy -= 1;
        }
        let lie = match kind {
            Kind::Squatter => true,
            Kind::Liar => self.rng.chance(0.5),
            _ => false,
        };
        let mut result = honest_result(&self.sc.job, id, kind == Kind::Naive, lie);
        if kind == Kind::Shifter {
            let (a, b) = (result.a.0, result.b.0);
            let reference = series::pi_partial_reference(a, b);
            let shift = 0.9 * series::pi_partial_tolerance(a, b, reference);
            result.pi = reference + if id % 2 == 0 { shift } else { -shift };
        }
        let w = &mut self.workers[wi];
        w.unacked.insert(id, result.clone());
        if let (Some(conn), WState::Active) = (w.conn, w.state) {
            if epoch == w.epoch {
                self.send(conn, ClientMessage::Result(result));
                self.send(conn, ClientMessage::Request { count: 1 });
            } else if kind != Kind::Naive {
                if !w.resending.contains(&id) && !w.to_resend.contains(&id) {
                    w.to_resend.push_back(id);
                }
                self.send_resends(wi, conn);
            }
        }
        self.start_computing(wi);
        Ok(())
    }

    fn hostile_resend(&mut self, wi: usize, life: u32, conn: ConnId) {
        let w = &self.workers[wi];
        if !w.alive || w.life != life || w.conn != Some(conn) || w.state != WState::Active {
            return;
        }
        // Any interval of the grid: held by someone, given back, done, or not handed out yet.
        let id = self.rng.below(self.intervals());
        let r = WorkResult {
            resend: true,
            ..honest_result(&self.sc.job, id, false, false)
        };
        self.send(conn, ClientMessage::Result(r));
        let t = self.rng.millis(100, 5_000);
        self.at(
            self.now + t,
            Ev::Resend {
                worker: wi,
                life,
                conn,
            },
        );
    }

    // --- faults ------------------------------------------------------------------------------

    /// The coordinator stops taking workers (a crash, or its store failed).
    fn down(&mut self) {
        if let Some(last) = self.up.last_mut() {
            last.1 = last.1.min(self.now);
        }
    }

    fn crash_coordinator(&mut self) -> Check {
        if self.core.is_none() {
            return Ok(());
        }
        self.note(|| "coordinator crashes".into());
        self.down();
        self.core = None;
        // What was not committed is lost.
        self.store.queue.clear();
        self.store.queued_ids.clear();
        self.store.commit_scheduled = false;
        let open: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| c.server_open)
            .map(|(&id, _)| id)
            .collect();
        for id in open {
            self.server_closes(id, true)?;
        }
        let d = self.rng.millis(500, 90_000);
        self.at(self.now + d, Ev::RestartCoordinator);
        Ok(())
    }

    fn crash_worker(&mut self, wi: usize) -> Check {
        let w = &self.workers[wi];
        if !w.alive || matches!(w.state, WState::Finished | WState::GaveUp) {
            return Ok(());
        }
        self.note(|| format!("worker {wi} crashes"));
        let w = &mut self.workers[wi];
        w.alive = false;
        if let Some(conn) = w.conn.take() {
            self.close_client(conn);
        }
        let d = self.rng.millis(500, 60_000);
        self.at(self.now + d, Ev::RestartWorker(wi));
        Ok(())
    }

    fn restart_worker(&mut self, wi: usize) {
        let now = self.now;
        let w = &mut self.workers[wi];
        w.life += 1;
        w.alive = true;
        w.state = WState::Idle;
        w.conn = None;
        w.run = None;
        w.unacked.clear();
        w.queue.clear();
        w.busy = 0;
        w.to_resend.clear();
        w.resending.clear();
        w.reconnect = Reconnect::new(w.spec.retry_for, now);
        w.offline_since = now;
        let life = w.life;
        self.at(now, Ev::Connect { worker: wi, life });
    }

    fn partition(&mut self, wi: usize, length: Duration) {
        let Some(id) = self.workers[wi].conn else {
            return;
        };
        if self.conns.get(&id).is_some_and(|c| !c.partitioned) {
            self.note(|| format!("connection {id} silently partitioned for {length:?}"));
            self.conns.get_mut(&id).unwrap().partitioned = true;
            self.at(self.now + length, Ev::PartitionEnd(id));
        }
    }

    fn heal(&mut self, id: ConnId) -> Check {
        let Some(conn) = self.conns.get_mut(&id) else {
            return Ok(());
        };
        conn.partitioned = false;
        let to_client = std::mem::take(&mut conn.held_to_client);
        let to_server = std::mem::take(&mut conn.held_to_server);
        let eof = std::mem::take(&mut conn.eof_pending);
        let (server_open, client_open) = (conn.server_open, conn.client_open);
        self.note(|| format!("connection {id} heals"));
        if client_open {
            for m in to_client {
                let d = self.delay();
                self.at(self.now + d, Ev::ToClient(id, m));
            }
        }
        if server_open {
            for m in to_server {
                let d = self.delay();
                self.at(self.now + d, Ev::ToServer(id, m));
            }
        }
        if eof {
            if !server_open {
                self.at(self.now + ms(2_000), Ev::ClientEof(id));
            }
            if !client_open {
                self.at(self.now + ms(2_000), Ev::ServerEof(id));
            }
        }
        Ok(())
    }

    // --- the loop ----------------------------------------------------------------------------

    fn step(&mut self, ev: Ev) -> Check {
        match ev {
            Ev::ToServer(id, msg) => self.server_receives(id, msg),
            Ev::ToClient(id, msg) => self.client_receives(id, msg),
            Ev::ClientEof(id) => self.client_eof(id),
            Ev::ServerEof(id) => {
                let Some(conn) = self.conns.get(&id) else {
                    return Ok(());
                };
                if conn.server_open && conn.process == self.process {
                    self.conns.get_mut(&id).unwrap().server_open = false;
                    self.input(Input::Leave { session: id })
                } else {
                    Ok(())
                }
            }
            Ev::IdleCheck(id) => self.idle_check(id),
            Ev::Computed {
                worker,
                life,
                epoch,
                id,
            } => self.computed(worker, life, epoch, id),
            Ev::Heartbeat { worker, life, conn } => {
                let w = &self.workers[worker];
                if w.alive && w.life == life && w.conn == Some(conn) {
                    self.send(conn, ClientMessage::Heartbeat {});
                    let beat = self.sc.idle / 6;
                    self.at(self.now + beat, Ev::Heartbeat { worker, life, conn });
                }
                Ok(())
            }
            Ev::Resend { worker, life, conn } => {
                self.hostile_resend(worker, life, conn);
                Ok(())
            }
            Ev::Connect { worker, life } => self.connect(worker, life),
            Ev::CoreTick(p) => {
                if p == self.process {
                    self.input(Input::Tick)
                } else {
                    Ok(())
                }
            }
            Ev::Commit(p) => {
                if p == self.process && self.core.is_some() {
                    self.commit()
                } else {
                    Ok(())
                }
            }
            Ev::CrashCoordinator => self.crash_coordinator(),
            Ev::RestartCoordinator => {
                if self.core.is_none() {
                    self.start_coordinator()
                } else {
                    Ok(())
                }
            }
            Ev::DiskFull => {
                if self.core.is_some() {
                    self.down();
                    self.input(Input::StoreFailed {
                        reason: "the disk is full".into(),
                    })?;
                    self.store.failed = true;
                    let d = self.rng.millis(5_000, 60_000);
                    self.at(self.now + d, Ev::CrashCoordinator);
                }
                Ok(())
            }
            Ev::CrashWorker(i) => self.crash_worker(i),
            Ev::RestartWorker(i) => {
                self.restart_worker(i);
                Ok(())
            }
            Ev::PartitionStart(i, d) => {
                self.partition(i, d);
                Ok(())
            }
            Ev::PartitionEnd(id) => self.heal(id),
            Ev::Vanish(i) => {
                self.note(|| format!("worker {i} goes silent for good"));
                self.workers[i].alive = false;
                Ok(())
            }
        }
    }

    /// The invariants that must hold after every step (the rest are checked where the core's
    /// outputs are carried out).
    fn check(&self) -> Check {
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
        // Every total the final report prints, exactly as the stored rows add up.
        let sums = &self.store.sums;
        let theirs = (
            totals.even_sum.0,
            totals.odd_sum.0,
            totals.terms_done,
            totals.pi.to_bits(),
            totals.workers,
        );
        let ours = (
            sums.even,
            sums.odd,
            sums.terms,
            sums.pi.value().to_bits(),
            sums.workers.len() as u64,
        );
        if theirs != ours {
            return Err(format!(
                "the coordinator's totals (evens, odds, terms, π bits, workers) {theirs:?} are not the stored rows' {ours:?}"
            ));
        }
        Ok(())
    }

    fn done(&self) -> bool {
        self.store.durable.len() as u64 == self.intervals()
            && self.workers.iter().all(|w| {
                !w.spec.kind.honest()
                    || !w.alive
                    || matches!(w.state, WState::Finished | WState::GaveUp)
            })
    }

    /// Runs the seed to its end; checks the final state.
    fn run(&mut self) -> Result<(), Violation> {
        if self.tracing {
            let sc = format!("{:#?}", self.sc);
            self.note(|| format!("scenario {sc}"));
        }
        let started = self.start_coordinator();
        let mut result = started;
        while result.is_ok() {
            if self.done() {
                break;
            }
            let Some(Scheduled(t, _, ev)) = self.events.pop() else {
                let states: Vec<String> = self
                    .workers
                    .iter()
                    .map(|w| {
                        format!(
                            "{} {:?} {:?} alive={}",
                            w.spec.name, w.spec.kind, w.state, w.alive
                        )
                    })
                    .collect();
                result = Err(format!(
                    "nothing left to happen, and the job is not complete ({} of {} durable; coordinator up: {}; workers: {})",
                    self.store.durable.len(),
                    self.intervals(),
                    self.core.is_some(),
                    states.join(", ")
                ));
                break;
            };
            self.now = t;
            self.steps += 1;
            if t > SIM_LIMIT || self.steps > MAX_STEPS {
                result = Err(format!(
                    "not complete after {t:?} ({} of {} intervals durable)",
                    self.store.durable.len(),
                    self.intervals()
                ));
                break;
            }
            result = self.step(ev).and_then(|()| self.check());
            if self.complete_at.is_none() && self.store.durable.len() as u64 == self.intervals() {
                self.complete_at = Some(self.now);
            }
        }
        let result = result.and_then(|()| self.final_check());
        result.map_err(|what| Violation {
            seed: self.seed,
            at: self.now,
            what,
            trace: std::mem::take(&mut self.trace),
        })
    }

    fn final_check(&self) -> Check {
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

/// The result an honest worker computes (exact kernel, or the plain loop of a naive client); a
/// liar's wrong sums.
fn honest_result(job: &Job, id: u64, naive: bool, lie: bool) -> WorkResult {
    let i = job.interval(IntervalId(id)).expect("in the grid");
    let pi = if naive {
        kernel::pi_partial_naive(i.a, i.b)
    } else {
        kernel::pi_partial(i.a, i.b).unwrap()
    };
    WorkResult {
        id: Dec(id),
        a: Dec(i.a),
        b: Dec(i.b),
        even_sum: Dec(sums::even_sum(i.a, i.b) + u128::from(lie) * 2),
        odd_sum: Dec(sums::odd_sum(i.a, i.b)),
        pi,
        duration_s: 0.01,
        resend: false,
    }
}

/// Runs `count` seeds from `first` on two threads; returns the violations found (at most a few).
fn sweep(first: u64, count: u64, mutation: Option<Mutation>) -> Vec<Violation> {
    let threads = 2;
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                s.spawn(move || {
                    let run = || {
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
                    };
                    match mutation {
                        Some(m) => mutation::with(m, run),
                        None => run(),
                    }
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
    let found = sweep(0, count, None);
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

/// Each defect the simulator was built against, reintroduced, is found.
fn finds(m: Mutation, expected: &str) {
    let found = sweep(1_000_000, 4_000, Some(m));
    let v = found
        .iter()
        .find(|v| v.what.contains(expected))
        .unwrap_or_else(|| {
            panic!(
                "{m:?} reintroduced, but no seed broke '{expected}' (found: {:?})",
                found.iter().map(|v| &v.what).collect::<Vec<_>>()
            )
        });
    eprintln!("{m:?}: seed {} — {}", v.seed, v.what);
}

#[test]
fn finds_defect_1_done_and_acks_before_durability() {
    finds(Mutation::DoneBeforeDurable, "before its result is durable");
}

#[test]
fn finds_defect_2_honest_worker_struck_for_an_interval_held_twice() {
    finds(Mutation::ResendConsumesHold, "struck");
}

#[test]
fn finds_defect_3_retry_for_counted_from_start() {
    finds(Mutation::RetryFromStart, "gave up");
}

#[test]
fn finds_defect_4_resend_without_the_assignment_check() {
    finds(Mutation::ResendUnchecked, "taken from its live holder");
}
