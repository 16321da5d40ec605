//! The network side of the coordinator: listeners, the connection budget, sessions, TLS.
//!
//! * [`accept`]: the one accept loop, for protocol v1 and the legacy format, with one budget;
//! * [`session`]: a protocol v1 session; [`legacy`]: a session of the original's clients;
//! * [`limits`]: the limits, derived from the descriptor limit, and names made safe to log;
//! * [`tls`]: rustls configurations from PEM files.
//!
//! A session owns its socket and nothing else: it enforces the limits, decodes messages, verifies
//! results, forwards events to the coordinator and writes the coordinator's answers back. A broken
//! or hostile peer only ever ends its own session; the server goes on.

pub mod accept;
pub mod legacy;
pub mod limits;
pub mod session;
pub mod tls;

pub use accept::{bind, serve, serve_gate, Admission, Gate, Listeners};
pub use limits::ServerConfig;
