//! piswarm: a distributed computation of the Leibniz series over TCP, done properly.
//!
//! See ARCHITECTURE.md for the map. In short: [`maths`] is the pure core, [`protocol`] the wire
//! format, [`coordinator`] owns a run's state, [`server`] accepts workers, [`worker`] computes.

pub mod count;
pub mod job;
pub mod maths;
pub mod protocol;
