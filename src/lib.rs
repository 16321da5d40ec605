//! piswarm: a distributed computation of the Leibniz series over TCP, done properly.
//!
//! ARCHITECTURE.md is the map. Layers, each using only those before it:
//! [`maths`] (pure numerics) · [`job`] (the interval grid) · [`wire`] (bytes on sockets, no I/O) ·
//! [`report`] (what a run produces) · [`store`] (SQLite) · [`coordinator`] (the run's state
//! machine and the task that drives it) · [`net`] (listeners and sessions) · [`worker`] (the
//! client) · [`node`] (what `serve` runs: start, stop, runs, local clients) · [`web`] (the
//! dashboard) · [`commands`] (one module per subcommand) · [`cli`] (flags).
//!
//! Beside the layers: [`metrics`], whose instruments (plain handles, depending on nothing of
//! piswarm) are handed down to the store's writer, the sessions and the worker, and whose
//! exposition reads a `node` at scrape time; and [`logging`], the log subscriber `cli` installs.

pub mod check;
pub mod cli;
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
