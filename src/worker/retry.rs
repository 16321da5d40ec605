//! When a worker reconnects: the pure policy behind `--retry-for`, shared by the worker and the
//! simulator's workers.
//!
//! `--retry-for D` is the time the worker may spend *without a coordinator*: the clock starts
//! when a connection is lost (or at the first attempt), and a successful connection (a `welcome`)
//! stops it and resets the backoff. Between attempts the
//! worker waits a jittered, doubling backoff (from 100 ms up to 5 s), so that workers refused or
//! cut off together do not come back together. Without `--retry-for` nothing is retried.

use std::time::Duration;

/// The first wait before reconnecting.
pub const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// The longest wait between attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// The reconnection state of one worker. Times are durations since an origin of the caller's.
#[derive(Debug, Clone)]
pub struct Reconnect {
    retry_for: Option<Duration>,
    /// Give up if not connected again by then; `None` while connected.
    deadline: Option<Duration>,
    backoff: Duration,
}

impl Reconnect {
    pub fn new(retry_for: Option<Duration>, now: Duration) -> Reconnect {
        Reconnect {
            retry_for,
            deadline: retry_for.map(|d| now + d),
            backoff: FIRST_BACKOFF,
        }
    }

    /// A connection succeeded: the time without a coordinator starts again, and so does the
    /// backoff.
    pub fn connected(&mut self, now: Duration) {
        let _ = now;
        self.deadline = None;
        self.backoff = FIRST_BACKOFF;
    }

    /// The connection failed or ended in a way worth retrying: how long to wait before the next
    /// attempt (`jitter` is uniform in [0, 1)), or `None` to give up.
    pub fn next_wait(&mut self, now: Duration, jitter: f64) -> Option<Duration> {
        let retry_for = self.retry_for?;
        // The first failure after a connection starts the clock.
        let deadline = *self.deadline.get_or_insert(now + retry_for);
        let wait = self.backoff.mul_f64(0.5 + jitter.clamp(0.0, 1.0));
        if now + wait >= deadline {
            return None;
        }
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
        Some(wait)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clock_restarts_at_every_connection() {
        let s = Duration::from_secs;
        let mut r = Reconnect::new(Some(s(5)), s(0));
        // A long session, then the coordinator goes away at t = 100 s.
        r.connected(s(1));
        assert!(
            r.next_wait(s(100), 0.5).is_some(),
            "5 s without a coordinator, not since start"
        );
        // The backoff doubles while it fails, and restarts after a success.
        let first = r.next_wait(s(100), 0.5).unwrap();
        let second = r.next_wait(s(100), 0.5).unwrap();
        assert_eq!(second, first * 2);
        r.connected(s(101));
        assert_eq!(r.next_wait(s(200), 0.5), Some(FIRST_BACKOFF));
        // Past the time without a coordinator (5 s from the loss at 200 s) it gives up.
        assert!(r.next_wait(s(204), 0.5).is_some());
        assert_eq!(r.next_wait(s(206), 0.5), None);
        assert_eq!(Reconnect::new(None, s(0)).next_wait(s(0), 0.5), None);
    }
}
