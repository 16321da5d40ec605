//! When the live stream (`GET /api/events`) speaks: every tick that brings something new, and
//! once a second when only the clocks moved, so that a page left alone is woken once a second
//! rather than at every tick.

use serde_json::Value;
use std::time::Duration;
use tokio::time::Instant;

/// How often the stream sends an update when nothing but the clocks changed.
pub const QUIET_UPDATE_EVERY: Duration = Duration::from_secs(1);

/// The fields of a status that move with time alone: the uptimes, a run's elapsed time and ETA.
const CLOCKS: [(&str, &str); 4] = [
    ("server", "uptime_s"),
    ("server", "process_uptime_s"),
    ("run", "elapsed_s"),
    ("run", "eta_s"),
];

/// A status (as JSON) with its clocks left out: what tells whether anything but time changed.
pub fn without_clocks(mut status: Value) -> Value {
    for (part, key) in CLOCKS {
        if let Some(o) = status.get_mut(part).and_then(Value::as_object_mut) {
            o.remove(key);
        }
    }
    status
}

/// Decides, tick by tick, whether an update is worth sending.
#[derive(Debug, Default)]
pub struct QuietGate {
    /// The last status sent, clocks left out, and when.
    last: Option<(Value, Instant)>,
}

impl QuietGate {
    /// Whether to send the update of this tick: always if it brings `news` (results, a gap, a
    /// new run) or a status that changed in more than its clocks; otherwise only if the last
    /// update is [`QUIET_UPDATE_EVERY`] old. `status` is the whole status, as JSON.
    pub fn admit(&mut self, news: bool, status: Value, now: Instant) -> bool {
        let still = without_clocks(status);
        if !news {
            if let Some((last, at)) = &self.last {
                if *last == still && now.duration_since(*at) < QUIET_UPDATE_EVERY {
                    return false;
                }
            }
        }
        self.last = Some((still, now));
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn status(uptime: f64, clients: u64) -> Value {
        json!({"server": {"uptime_s": uptime, "process_uptime_s": uptime + 1.0, "clients": clients},
               "run": {"elapsed_s": uptime, "eta_s": null, "intervals_done": 3}})
    }

    #[test]
    fn only_the_clocks_moved_once_a_second() {
        let mut gate = QuietGate::default();
        let t0 = Instant::now();
        let tick = Duration::from_millis(250);
        assert!(
            gate.admit(false, status(0.0, 0), t0),
            "the first update is sent"
        );
        // Three ticks where only the clocks moved: nothing sent; the fourth, a second on: sent.
        for k in 1..4 {
            assert!(!gate.admit(false, status(0.25 * k as f64, 0), t0 + tick * k));
        }
        assert!(gate.admit(false, status(1.0, 0), t0 + tick * 4));
        assert!(!gate.admit(false, status(1.25, 0), t0 + tick * 5));
    }

    #[test]
    fn anything_else_is_sent_at_once() {
        let mut gate = QuietGate::default();
        let t0 = Instant::now();
        let tick = Duration::from_millis(250);
        assert!(gate.admit(false, status(0.0, 0), t0));
        // A client connected: the status changed beyond its clocks.
        assert!(gate.admit(false, status(0.25, 1), t0 + tick));
        // Results (or a gap to fetch): sent whatever the status.
        assert!(gate.admit(true, status(0.5, 1), t0 + tick * 2));
        assert!(gate.admit(true, status(0.5, 1), t0 + tick * 3));
        // And quiet again after it.
        assert!(!gate.admit(false, status(1.0, 1), t0 + tick * 4));
    }

    #[test]
    fn the_clocks_are_left_out_and_nothing_else() {
        let v = without_clocks(status(5.0, 2));
        assert_eq!(
            v,
            json!({"server": {"clients": 2}, "run": {"intervals_done": 3}})
        );
    }
}
