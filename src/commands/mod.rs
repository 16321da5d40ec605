//! One module per subcommand: each wires the library's parts together for one use. This is the
//! only layer (with `cli`) that uses `anyhow`: below it, every module has its own error type.

pub mod bench;
pub mod cert;
pub mod check;
pub mod child;
pub mod crowd;
pub mod export;
pub mod fleet;
pub mod run;
pub mod serve;
pub mod status;
pub mod worker;
