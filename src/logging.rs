//! The log subscriber of the binary: `tracing` events to standard error, as lines for people
//! (`--log-format human`, the default) or as one JSON object per line (`--log-format json`), at
//! the levels `PISWARM_LOG` selects (an `EnvFilter`: `info`, `debug`, `piswarm=debug,warn`, …).
//!
//! The JSON fields are stable and documented in docs/deployment.md ("Logs"): `timestamp` (RFC
//! 3339, UTC), `level`, `target`, `message`, then the event's own fields (`peer`, `worker`,
//! `interval`, `code`, …) at the top level, never nested.
//!
//! The same module writes what the program says to the person who started it ([`say`] on
//! standard output, [`warn`] and [`error`] on standard error): plain sentences in the human
//! format, and in the JSON format one JSON object per line with the same fields as the log
//! events, so that a log collector reading both streams sees nothing but JSON.
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

/// The format chosen at start: set once by [`init`], for the whole process.
static FORMAT: std::sync::OnceLock<LogFormat> = std::sync::OnceLock::new();

/// The format in force ([`LogFormat::Human`] until [`init`] says otherwise).
pub fn format() -> LogFormat {
    FORMAT.get().copied().unwrap_or_default()
}

/// One line of the JSON format: `timestamp`, `level`, `target`, `message`, and the members of
/// `fields` (an object; other values are ignored) at the top level, never replacing those four.
pub fn json_line(level: &str, target: &str, message: &str, fields: serde_json::Value) -> String {
    let mut line = serde_json::Map::new();
    line.insert(
        "timestamp".into(),
        humantime::format_rfc3339_micros(std::time::SystemTime::now())
            .to_string()
            .into(),
    );
    line.insert("level".into(), level.into());
    line.insert("message".into(), message.into());
    if let serde_json::Value::Object(fields) = fields {
        for (key, value) in fields {
            line.entry(key).or_insert(value);
        }
    }
    line.insert("target".into(), target.into());
    serde_json::Value::Object(line).to_string()
}

/// Tells the person who started the process something (an address it listens on, that it
/// stops): `piswarm: MESSAGE` on standard output, or a JSON line at level INFO.
pub fn say(message: impl std::fmt::Display) {
    say_with(message, serde_json::Value::Null);
}

/// [`say`], with `fields` added to the JSON line (the human line shows only the message).
pub fn say_with(message: impl std::fmt::Display, fields: serde_json::Value) {
    match format() {
        LogFormat::Human => println!("piswarm: {message}"),
        LogFormat::Json => println!(
            "{}",
            json_line("INFO", "piswarm", &message.to_string(), fields)
        ),
    }
}

/// A warning for that person: `piswarm: warning: MESSAGE` on standard error, or a JSON line at
/// level WARN. A message of several lines (a boxed warning) becomes one line in JSON.
pub fn warn(message: impl std::fmt::Display) {
    match format() {
        LogFormat::Human => eprintln!("piswarm: warning: {message}"),
        LogFormat::Json => eprintln!(
            "{}",
            json_line(
                "WARN",
                "piswarm",
                &one_line(&message.to_string()),
                serde_json::Value::Null
            )
        ),
    }
}

/// Why the command failed: `WHO: MESSAGE` on standard error, or a JSON line at level ERROR.
pub fn error(who: &str, message: impl std::fmt::Display) {
    match format() {
        LogFormat::Human => eprintln!("{who}: {message}"),
        LogFormat::Json => eprintln!(
            "{}",
            json_line(
                "ERROR",
                &who.replace(' ', "::"),
                &one_line(&message.to_string()),
                serde_json::Value::Null
            )
        ),
    }
}

/// The lines of `text` without rules (`====`), joined by spaces.
fn one_line(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.chars().all(|c| c == '='))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Installs the process's log subscriber (once; later calls do nothing). `default_level` applies
/// when `PISWARM_LOG` is unset or invalid.
pub fn init(format: LogFormat, default_level: &str) {
    let _ = FORMAT.set(format);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_lines_have_the_documented_fields_first() {
        let line = json_line(
            "INFO",
            "piswarm",
            "hello",
            serde_json::json!({"listen": "127.0.0.1:5050", "message": "not this one"}),
        );
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["level"], "INFO");
        assert_eq!(v["target"], "piswarm");
        assert_eq!(v["message"], "hello");
        assert_eq!(v["listen"], "127.0.0.1:5050");
        assert!(v["timestamp"].as_str().unwrap().ends_with('Z'));
        assert!(!line.contains('\n'));
    }

    #[test]
    fn boxed_warnings_become_one_line() {
        assert_eq!(one_line("=====\nWARNING: a\n  b\n=====\n"), "WARNING: a b");
    }
}
