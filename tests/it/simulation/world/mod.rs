//! The world a seed runs in: the real coordinator core on simulated time, and everything around
//! it played by the simulator — the store's writer (`coordinator.rs`), the shell's side of the
//! connections and the network (`network.rs`), the workers (`actors.rs`) and the faults
//! (`faults.rs`); the invariants are checked after every step (`invariants.rs`).

mod actors;
mod coordinator;
mod faults;
mod invariants;
mod network;

use super::rng::Rng;
use super::scenario::{Scenario, Spec};
use super::{Time, MAX_STEPS, SIM_LIMIT};
use invariants::Sums;
use piswarm::coordinator::core::{Core, Input, Write};
use piswarm::job::IntervalId;
use piswarm::maths::exact::ExactSum;
use piswarm::maths::kernel;
use piswarm::report::ResultRecord;
use piswarm::wire::{ClientMessage, ServerMessage, WorkResult};
use piswarm::worker::retry::Reconnect;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, VecDeque};
use std::time::Duration;

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

pub(super) struct World {
    seed: u64,
    rng: Rng,
    pub(super) sc: Scenario,
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
    pub(super) trace: Vec<String>,
    tracing: bool,
    steps: u64,
    reference: f64,
    /// When the last interval became durable.
    pub(super) complete_at: Option<Time>,
}

/// A broken invariant, with the seed that replays it.
#[derive(Debug)]
pub(super) struct Violation {
    pub(super) seed: u64,
    pub(super) at: Time,
    pub(super) what: String,
    pub(super) trace: Vec<String>,
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
    pub(super) fn new(seed: u64, tracing: bool) -> World {
        let mut rng = Rng(seed);
        let sc = Scenario::draw(&mut rng);
        World::with(seed, rng, sc, tracing)
    }

    /// A crowd seed (see [`Scenario::crowd`]).
    pub(super) fn crowd(seed: u64, tracing: bool) -> World {
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

    fn done(&self) -> bool {
        self.store.durable.len() as u64 == self.intervals()
            && self.workers.iter().all(|w| {
                !w.spec.kind.honest()
                    || !w.alive
                    || matches!(w.state, WState::Finished | WState::GaveUp)
            })
    }

    /// Runs the seed to its end; checks the final state.
    pub(super) fn run(&mut self) -> Result<(), Violation> {
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
}
