//! The limits of the servers (connections, timeouts, line length), derived from the process's
//! file-descriptor limit, and the warning printed when workers can reach a server unprotected.

use crate::job::verify::Tolerance;
use crate::metrics::ServeInstruments;
use crate::net::tls::TlsServer;
use crate::wire::Secret;
use std::net::SocketAddr;
use std::time::Duration;

/// Limits and secrets of the TCP server. Its `Debug` shows neither the token nor key material.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub max_connections: usize,
    /// From accepting a connection to a complete `hello`, TLS handshake included.
    pub handshake_timeout: Duration,
    pub idle_timeout: Duration,
    /// Protocol errors (bad lines) a session may send before it is closed.
    pub max_protocol_errors: u32,
    pub token: Option<Secret>,
    /// Serve TLS only (`--tls-cert`, `--tls-key`).
    pub tls: Option<TlsServer>,
    /// How close to the reference a π partial must be (`--strict`: the kernel's bound).
    pub tolerance: Tolerance,
    /// Where sessions count connections and time verifications (for `/metrics`).
    pub metrics: ServeInstruments,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            // From the limit in force (without raising it: `serve` does that), and never below
            // the historical 10 000.
            max_connections: default_max_connections(current_fd_limit()).max(10_000),
            handshake_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_protocol_errors: 16,
            token: None,
            tls: None,
            tolerance: Tolerance::Honest,
            metrics: ServeInstruments::default(),
        }
    }
}

/// File descriptors kept back from `--max-connections` for everything else: the listeners,
/// results.json and final.json, a store, standard streams, the runtime.
pub const FD_RESERVE: u64 = 100;
/// The largest default connection limit, whatever the file-descriptor limit says.
const MAX_DEFAULT_CONNECTIONS: u64 = 1 << 20;

/// Raises this process's soft limit on open files (RLIMIT_NOFILE) to its hard limit, and returns
/// the soft limit now in force (`None` where it cannot be known). Best effort: a failure to raise
/// leaves the limit as it was.
pub fn raise_fd_limit() -> Option<u64> {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => Some(limit),
        Err(_) => current_fd_limit(),
    }
}

/// This process's soft limit on open files, if it can be known.
pub fn current_fd_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        rlimit::getrlimit(rlimit::Resource::NOFILE)
            .ok()
            .map(|(soft, _)| soft)
    }
    #[cfg(not(unix))]
    {
        None
    }
}

/// The default `--max-connections` for a file-descriptor limit: the limit less [`FD_RESERVE`]
/// (less half the limit when it is tiny), so that connections alone can never exhaust the
/// descriptors; 10 000 when the limit is unknown.
pub fn default_max_connections(fd_limit: Option<u64>) -> usize {
    let Some(limit) = fd_limit else {
        return 10_000;
    };
    let reserve = FD_RESERVE.min(limit / 2);
    let max = (limit - reserve).clamp(1, MAX_DEFAULT_CONNECTIONS);
    usize::try_from(max).unwrap_or(usize::MAX)
}

/// The warning printed when workers can reach the server over a network without a token, or see
/// the token in clear; `None` when there is nothing to warn about (a loopback address).
pub fn exposure_warning(addr: SocketAddr, token: bool, tls: bool) -> Option<String> {
    if addr.ip().is_loopback() {
        return None;
    }
    if !token {
        let rule = "=".repeat(78);
        let tls_advice = if tls {
            ""
        } else {
            ", preferably with TLS (--tls-cert, --tls-key)"
        };
        return Some(format!(
            "{rule}\n\
             WARNING: piswarm is serving on {addr}, which is not a loopback address, WITHOUT A TOKEN.\n\
             Anyone who can reach this address can join the run as a worker. Results are still\n\
             verified, so nobody can falsify the totals, but anybody can take work, hold\n\
             connections and watch the job.\n\
             Set a shared secret with --token or PISWARM_TOKEN (and give it to your workers){tls_advice},\n\
             or listen on 127.0.0.1.\n\
             {rule}"
        ));
    }
    if !tls {
        return Some(format!(
            "piswarm: warning: serving on {addr} without TLS: the token travels in clear; \
             consider --tls-cert and --tls-key"
        ));
    }
    None
}

/// The largest prefetch cap a server may be configured with.
pub const MAX_PREFETCH_CAP: u32 = 1024;

/// Messages queued from the coordinator to one session. The coordinator never queues more than
/// a session's credit in assignments (at most the prefetch cap), its replies (at most twice the
/// cap: answers to held intervals and to re-sent results) and a few final messages; a session
/// whose outbox still fills up is not reading, and is dropped.
pub const OUTBOX_CAPACITY: usize = 3 * MAX_PREFETCH_CAP as usize + 16;

/// A client-supplied string made safe for one line of a log: control and bidirectional-override
/// characters escaped, at most 200 characters.
pub fn for_log(s: &str) -> String {
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i == 200 {
            out.push('…');
            break;
        }
        if c.is_control() || is_bidi_control(c) {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    out
}

/// A worker name safe to print, store and show: control and bidirectional-override characters
/// replaced by `?`, at most 64 characters; `anonymous` if nothing is left.
pub fn printable(name: &str) -> String {
    let cleaned: String = name
        .chars()
        .take(64)
        .map(|c| {
            if c.is_control() || is_bidi_control(c) {
                '?'
            } else {
                c
            }
        })
        .collect();
    if cleaned.trim().is_empty() {
        "anonymous".to_string()
    } else {
        cleaned
    }
}

/// Unicode's bidirectional formatting characters, which can make a name display reversed.
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{200E}' | '\u{200F}' | '\u{061C}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_log_strings_are_neutralised() {
        assert_eq!(printable("a\nb\u{202E}c"), "a?b?c");
        assert_eq!(printable("  "), "anonymous");
        assert_eq!(printable(&"x".repeat(100)).len(), 64);
        assert_eq!(for_log("bad\nline"), "bad\\u{a}line");
        assert!(!for_log("\u{202E}evil").contains('\u{202E}'));
    }
}
