//! Everything that travels on a socket, as pure data and pure functions: no sockets, no state.
//!
//! * [`message`]: protocol v1 — newline-delimited JSON messages and their encoding
//!   (docs/protocol.md is its specification for people);
//! * [`line`]: reading lines with a hard length limit, cancel-safe;
//! * [`legacy`]: the original Python system's 256-byte-header frames;
//! * [`secret`]: the shared token, a type that cannot be printed by accident.

pub mod fuzzing;
pub mod legacy;
pub mod line;
pub mod message;
pub mod secret;

pub use message::*;
pub use secret::Secret;
