//! Printing one line per durable result, on a thread of its own, and what that line says
//! ([`printed`]: the human line, or a JSON object with `--log-format json`).
//!
//! The coordinator's task never writes to the terminal: it hands lines to [`Printer::print`],
//! which queues them (bounded) for a dedicated thread. When the terminal (or a pipe nobody reads)
//! is slower than the run, lines are dropped and counted, and the thread says how many once it
//! catches up — the run itself never waits for stdout.

use super::core::DurableLine;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::Arc;

/// Lines queued for the printing thread.
const QUEUE: usize = 4096;

/// The sending side; dropping it ends the thread once its queue is written.
#[derive(Debug)]
pub struct Printer {
    lines: SyncSender<String>,
    dropped: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Printer {
    /// Prints to standard output.
    pub fn stdout() -> std::io::Result<Printer> {
        Printer::new(Box::new(std::io::stdout()))
    }

    /// Prints to `out` (tests pass a deliberately slow writer).
    pub fn new(mut out: Box<dyn Write + Send>) -> std::io::Result<Printer> {
        let (lines, rx) = sync_channel::<String>(QUEUE);
        let dropped = Arc::new(AtomicU64::new(0));
        let counter = dropped.clone();
        let thread = std::thread::Builder::new()
            .name("piswarm-print".into())
            .spawn(move || {
                let mut reported = 0;
                while let Ok(line) = rx.recv() {
                    let mut ok = writeln!(out, "{line}").is_ok();
                    // Write whatever else is queued before flushing.
                    while let Ok(line) = rx.try_recv() {
                        ok &= writeln!(out, "{line}").is_ok();
                    }
                    let lost = counter.load(Ordering::Relaxed);
                    if lost > reported {
                        let _ = writeln!(
                            out,
                            "[piswarm: {} result lines not printed: the terminal was slower than the run; all are stored]",
                            lost - reported
                        );
                        reported = lost;
                    }
                    if !(ok && out.flush().is_ok()) {
                        // Standard output is gone (a closed pipe): keep draining, print nothing.
                        while rx.recv().is_ok() {}
                        return;
                    }
                }
            })?;
        Ok(Printer {
            lines,
            dropped,
            thread: Some(thread),
        })
    }

    /// Queues a line; drops it (and counts it) if the queue is full. Never blocks.
    pub fn print(&self, line: String) {
        match self.lines.try_send(line) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Lines dropped so far.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// A counter of dropped lines that outlives the printer.
    pub fn dropped_counter(&self) -> Arc<AtomicU64> {
        self.dropped.clone()
    }
}

impl Drop for Printer {
    fn drop(&mut self) {
        // Closing the channel ends the thread after its queue; do not wait for a stuck terminal.
        let (dead, _) = sync_channel(0);
        self.lines = dead;
        drop(self.thread.take());
    }
}

/// A durable result as printed: the human line, or with `--log-format json` a JSON line (fields
/// in docs/deployment.md, "Logs").
pub fn printed(line: &DurableLine) -> String {
    match crate::logging::format() {
        crate::logging::LogFormat::Human => human(line),
        crate::logging::LogFormat::Json => crate::logging::json_line(
            "INFO",
            "piswarm::result",
            "result",
            serde_json::json!({
                "result": line.record,
                "intervals_done": line.intervals_done,
                "terms_done": line.terms_done,
                "pi_total": line.pi,
            }),
        ),
    }
}

/// The human line: the result, then the totals after it.
fn human(line: &DurableLine) -> String {
    let r = &line.record;
    format!(
        "[{:>6}] {} {} [{}, {}] evens={} odds={} pi={:e} {:.3}ms | total: {} intervals, {} terms, π≈{:.15}",
        r.id.0,
        r.worker,
        r.peer,
        r.a.0,
        r.b.0,
        r.even_sum.0,
        r.odd_sum.0,
        r.pi,
        r.duration_s * 1e3,
        line.intervals_done,
        line.terms_done,
        line.pi,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Condvar, Mutex};
    use std::time::{Duration, Instant};

    /// A terminal that writes nothing until its gate opens.
    #[derive(Clone, Default)]
    pub(crate) struct GatedTerminal {
        gate: Arc<(Mutex<bool>, Condvar)>,
        written: Arc<Mutex<Vec<u8>>>,
    }

    impl GatedTerminal {
        fn open(&self) {
            *self.gate.0.lock().unwrap() = true;
            self.gate.1.notify_all();
        }
        fn text(&self) -> String {
            String::from_utf8_lossy(&self.written.lock().unwrap()).into_owned()
        }
    }

    impl Write for GatedTerminal {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let mut open = self.gate.0.lock().unwrap();
            while !*open {
                open = self.gate.1.wait(open).unwrap();
            }
            self.written.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_stuck_terminal_never_blocks_the_caller_and_drops_are_counted_then_reported() {
        let terminal = GatedTerminal::default();
        let printer = Printer::new(Box::new(terminal.clone())).unwrap();
        // The terminal accepts nothing: every call still returns at once.
        for i in 0..10_000 {
            printer.print(format!("line {i}"));
        }
        let dropped = printer.dropped();
        assert!(dropped >= 10_000 - QUEUE as u64 - 1, "{dropped} dropped");
        terminal.open();
        let deadline = Instant::now() + Duration::from_secs(30);
        while !terminal.text().contains("result lines not printed") {
            assert!(Instant::now() < deadline, "no report of the dropped lines");
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(terminal
            .text()
            .contains(&format!("{dropped} result lines not printed")));
    }
}
