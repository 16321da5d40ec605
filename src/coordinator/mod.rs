//! The coordinator: the state machine that owns a run, and the one task that drives it.
//!
//! * [`core`]: the sans-I/O state machine — assignments, leases, strikes, acknowledgements and
//!   completion, as a function of inputs and time. Everything that decides is there.
//! * [`scheduler`]: the bookkeeping of intervals (fresh, in flight, given back, pending, done).
//! * [`coverage`]: the coverage map of the grid, for the dashboard.
//! * [`shell`]: the tokio task around the core: it receives [`Event`]s (the core's [`Input`]s
//!   from sessions, and the program's requests) over a bounded channel, writes the core's
//!   messages into per-session outboxes, forwards its [`Write`]s to the store's writer (through a
//!   [`StoreLink`]) and the writer's commits back, runs its timers, prints durable results on a
//!   thread of their own ([`printer`]) and publishes [`Snapshot`]s.
//!
//! The coordinator owns its vocabulary: the store consumes its [`Write`]s and [`RunState`], the
//! web layer maps its views to API types. It imports nothing from `store`, `web` or `utoipa`.

pub mod core;
pub mod coverage;
pub mod printer;
pub mod scheduler;
pub mod shell;

pub use self::core::{
    CoreConfig, HeldRow, Input, Joining, LeasePolicy, Output, ResumeState, RunId, RunState,
    SessionId, Snapshot, WorkerKind, WorkerRow, Write,
};
pub use coverage::{CoverageBucket, CoverageMap};
pub use shell::{
    spawn, spawn_with, CoordinatorGone, CoordinatorHandle, Durability, Event, Outbound, StoreLink,
};
