//! The worker's compute threads: plain OS threads running the kernel, fed through a shared queue.

use crate::maths::{kernel, sums};
use crate::wire::{Dec, WorkResult};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc as std_mpsc, Arc, Mutex};
use std::time::Instant;
use tokio::sync::mpsc;

/// One interval to compute, tagged with the connection it was assigned on.
pub(super) struct Task {
    pub epoch: u64,
    pub id: u64,
    pub a: u64,
    pub b: u64,
}

/// A computed interval and the connection it was assigned on.
pub(super) struct Computed {
    pub epoch: u64,
    pub result: WorkResult,
}

/// A pool of compute threads fed through a shared queue.
pub(super) struct Pool {
    pub tasks: std_mpsc::Sender<Task>,
    pub results: mpsc::Receiver<Computed>,
    /// The current connection: queued tasks of an earlier one are skipped (the server took
    /// those intervals back when it ended).
    pub epoch: Arc<AtomicU64>,
}

impl Pool {
    /// Starts `threads` compute threads.
    pub fn new(threads: usize) -> std::io::Result<Pool> {
        let (task_tx, task_rx) = std_mpsc::channel::<Task>();
        let task_rx = Arc::new(Mutex::new(task_rx));
        let (result_tx, results) = mpsc::channel(1024);
        let epoch = Arc::new(AtomicU64::new(0));
        for i in 0..threads.max(1) {
            let task_rx = task_rx.clone();
            let result_tx = result_tx.clone();
            let current = epoch.clone();
            std::thread::Builder::new()
                .name(format!("piswarm-compute-{i}"))
                .spawn(move || loop {
                    // The lock is held only while waiting for the next task.
                    let next = match task_rx.lock() {
                        Ok(rx) => rx.recv(),
                        Err(_) => return,
                    };
                    let Ok(task) = next else { return };
                    if task.epoch != current.load(Ordering::Relaxed) {
                        continue;
                    }
                    let result = compute(task.id, task.a, task.b);
                    if result_tx
                        .blocking_send(Computed {
                            epoch: task.epoch,
                            result,
                        })
                        .is_err()
                    {
                        return;
                    }
                })?;
        }
        Ok(Pool {
            tasks: task_tx,
            results,
            epoch,
        })
    }
}

/// Computes one interval: the even and odd sums and the π partial.
pub fn compute(id: u64, a: u64, b: u64) -> WorkResult {
    let start = Instant::now();
    // The server only hands out intervals inside the supported range; a hostile server that does
    // not gets a NaN, which it will reject.
    let pi = kernel::pi_partial(a, b).unwrap_or(f64::NAN);
    WorkResult {
        id: Dec(id),
        a: Dec(a),
        b: Dec(b),
        even_sum: Dec(sums::even_sum(a, b)),
        odd_sum: Dec(sums::odd_sum(a, b)),
        pi,
        duration_s: start.elapsed().as_secs_f64(),
        resend: false,
    }
}
