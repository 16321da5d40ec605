//! piswarm: a distributed computation of the Leibniz series over TCP, done properly.
//!
//! See ARCHITECTURE.md for the map. In short: [`maths`] is the pure core, [`protocol`] the wire
//! format, [`coordinator`] owns a run's state and [`scheduler`] its intervals, [`server`] accepts
//! workers, [`worker`] computes, [`run`] and [`serve`] are the commands of the same names, [`node`] the
//! lifecycle that `serve` runs and [`web`] its dashboard.

pub mod bench;
pub mod cli;
pub mod connection;
pub mod coordinator;
pub mod count;
pub mod export;
#[doc(hidden)]
pub mod fuzzing;
pub mod job;
pub mod legacy;
pub mod maths;
pub mod node;
pub mod protocol;
pub mod report;
pub mod run;
pub mod scheduler;
pub mod secret;
pub mod serve;
pub mod server;
pub mod store;
pub mod tls;
pub mod verify;
pub mod web;
pub mod worker;
