//! piswarm: a distributed computation of the Leibniz series over TCP, done properly.
//!
//! ARCHITECTURE.md is the map. Layers, each using only those before it:
//! [`maths`] (pure numerics) · [`wire`] (bytes on sockets, no I/O) · [`job`] (the interval grid) ·
//! [`report`] (what a run produces) · [`coordinator`] (the run's state machine, which owns its
//! vocabulary, and the task that drives it) · [`store`] (SQLite; it consumes the coordinator's
//! writes) · [`net`] (listeners and sessions) · [`client`] (the client side of protocol v1: one
//! connection) · [`worker`] (the worker) · [`node`] (what `serve` runs: start, stop, runs,
//! local clients; a coordinator wired to its store) · [`web`] (the dashboard) · [`commands`]
//! (one module per subcommand) · [`cli`] (flags).
//!
//! Beside the layers: [`metrics`], whose instruments (plain handles; of piswarm they know only
//! the store's `CommitObserver`, the closure type the writer calls) are handed down to the store's writer, the sessions and the worker, and whose
//! exposition reads a `node` at scrape time; and [`logging`], the log subscriber `cli` installs.

pub mod check;
pub mod cli;
pub mod client;
pub mod commands;
pub mod coordinator;
pub mod job;
pub mod logging;
pub mod maths;
pub mod metrics;
#[doc(hidden)]
pub mod net;
pub mod node;
pub mod report;
pub mod store;
pub mod web;
pub mod wire;
pub mod worker;
