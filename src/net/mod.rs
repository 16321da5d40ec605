//! The network side of the coordinator: listeners, connection budget, sessions, TLS.
//!
//! A session owns its socket and nothing else: it enforces the limits, decodes messages, verifies
//! results, forwards events to the coordinator and writes the coordinator's answers back. A broken
//! or hostile peer only ever ends its own session; the server goes on.

pub mod legacy;
pub mod session;
pub mod tls;
