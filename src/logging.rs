//! The log subscriber of the binary: `tracing` events to standard error, as lines for people
//! (`--log-format human`, the default) or as one JSON object per line (`--log-format json`), at
//! the levels `PISWARM_LOG` selects (an `EnvFilter`: `info`, `debug`, `piswarm=debug,warn`, …).
//!
//! The JSON fields are stable and documented in docs/deployment.md ("Logs"): `timestamp` (RFC
//! 3339, UTC), `level`, `target`, `message`, then the event's own fields (`peer`, `worker`,
//! `interval`, `code`, …) at the top level, never nested.
//!
//! What it must never do: log a secret. Nothing here filters; secrets are kept out at the source
//! (`wire::Secret` has no `Display` and a redacting `Debug`), and tests/it/ops/logs.rs checks the
//! logs of a real `serve` and `worker` at debug level.

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// Lines for people: `2026-01-01T00:00:00.000000Z  INFO message key=value`.
    #[default]
    Human,
    /// One JSON object per line: timestamp, level, target, message and the event's fields.
    Json,
}

/// The environment variable that selects log levels.
pub const LEVEL_VARIABLE: &str = "PISWARM_LOG";

/// Installs the process's log subscriber (once; later calls do nothing). `default_level` applies
/// when `PISWARM_LOG` is unset or invalid.
pub fn init(format: LogFormat, default_level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env(LEVEL_VARIABLE)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Human => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .with_target(false)
            .try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .with_target(true)
            .try_init(),
    };
}
