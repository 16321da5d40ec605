//! The coordinator: the state machine that owns a run, and the one task that drives it.
//!
//! * [`core`]: the sans-I/O state machine — assignments, leases, strikes, acknowledgements and
//!   completion, as a function of inputs and time. Everything that decides is there.
//! * [`scheduler`]: the bookkeeping of intervals (fresh, in flight, given back, pending, done).
//! * [`coverage`]: the coverage map of the grid, for the dashboard.
//! * [`shell`]: the tokio task around the core: it receives [`Event`]s from sessions over a
//!   bounded channel, writes the core's messages into per-session outboxes, forwards its writes to
//!   the store's writer and the writer's commits back, runs its timers, prints durable results on
//!   a thread of their own ([`printer`]) and publishes [`Snapshot`]s.

pub mod core;
pub mod coverage;
pub mod printer;
pub mod scheduler;
pub mod shell;

pub use self::core::{
    CoreConfig as CoordinatorConfig, HeldRow, Input, LeasePolicy, Output, SessionId, Snapshot,
    WorkerKind, WorkerRow,
};
pub use coverage::{CoverageBucket, CoverageMap};
pub use shell::{
    spawn, spawn_with, start_run, CoordinatorGone, CoordinatorHandle, Event, Outbound, RunOptions,
    RunningRun, StoreLink,
};
