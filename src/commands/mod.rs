//! One module per subcommand: each wires the library's parts together for one use.

pub mod bench;
pub mod run;
pub mod serve;
pub mod status;
