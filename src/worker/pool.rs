//! The worker's compute threads: plain OS threads running the kernel, fed through a shared queue.

use crate::maths::kernel::Kernel;
use crate::maths::sums;
use crate::wire::{Dec, WorkResult};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc as std_mpsc, Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// One interval to compute, tagged with the connection it was assigned on.
pub(super) struct Task {
    pub epoch: u64,
    /// The run's π kernel (named in the welcome).
    pub kernel: Kernel,
    pub id: u64,
    pub a: u64,
    pub b: u64,
}

/// A computed interval and the connection it was assigned on.
pub(super) struct Computed {
    pub epoch: u64,
    pub result: WorkResult,
}

/// A task on the threads' queue: the task, the current connection of the worker that sent it,
/// and where its result goes.
struct Queued {
    task: Task,
    current: Arc<AtomicU64>,
    results: mpsc::Sender<Computed>,
}

/// Compute threads running the kernel, shared by any number of workers (a worker's own, or the
/// one pool of a node's local clients): a local client is then a connection, not a thread.
#[derive(Clone)]
pub struct ComputePool {
    queue: std_mpsc::Sender<Queued>,
    threads: usize,
}

impl std::fmt::Debug for ComputePool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ComputePool")
            .field("threads", &self.threads)
            .finish()
    }
}

impl ComputePool {
    /// Starts `threads` compute threads; they end when the last handle is dropped.
    pub fn new(threads: usize) -> std::io::Result<ComputePool> {
        ComputePool::paced(threads, None)
    }

    /// Threads that wait `pace` after each interval before handing its result over (a slow
    /// machine, emulated).
    pub fn paced(threads: usize, pace: Option<Duration>) -> std::io::Result<ComputePool> {
        let (queue, rx) = std_mpsc::channel::<Queued>();
        let rx = Arc::new(Mutex::new(rx));
        let threads = threads.max(1);
        for i in 0..threads {
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("piswarm-compute-{i}"))
                .spawn(move || loop {
                    // The lock is held only while waiting for the next task.
                    let next = match rx.lock() {
                        Ok(rx) => rx.recv(),
                        Err(_) => return,
                    };
                    let Ok(Queued {
                        task,
                        current,
                        results,
                    }) = next
                    else {
                        return;
                    };
                    // Tasks of a connection that ended are skipped (the server took those
                    // intervals back when it ended).
                    if task.epoch != current.load(Ordering::Relaxed) || results.is_closed() {
                        continue;
                    }
                    let result = compute_with(task.kernel, task.id, task.a, task.b);
                    if let Some(pace) = pace {
                        std::thread::sleep(pace);
                    }
                    // A worker that is gone no longer wants it; the threads go on for the others.
                    let _ = results.blocking_send(Computed {
                        epoch: task.epoch,
                        result,
                    });
                })?;
        }
        Ok(ComputePool { queue, threads })
    }

    /// How many threads compute.
    pub fn threads(&self) -> usize {
        self.threads
    }
}

/// One worker's access to compute threads: its own or a shared pool.
pub(super) struct Pool {
    pool: ComputePool,
    reply: mpsc::Sender<Computed>,
    pub results: mpsc::Receiver<Computed>,
    /// The current connection: queued tasks of an earlier one are skipped.
    pub epoch: Arc<AtomicU64>,
}

impl Pool {
    /// A worker's own pool of `threads` compute threads.
    pub fn new(threads: usize, pace: Option<Duration>) -> std::io::Result<Pool> {
        Ok(Pool::shared(&ComputePool::paced(threads, pace)?))
    }

    /// A worker's access to a pool it shares with others.
    pub fn shared(pool: &ComputePool) -> Pool {
        let (reply, results) = mpsc::channel(1024);
        Pool {
            pool: pool.clone(),
            reply,
            results,
            epoch: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Queues a task; false if the pool's threads are gone.
    pub fn submit(&self, task: Task) -> bool {
        self.pool
            .queue
            .send(Queued {
                task,
                current: self.epoch.clone(),
                results: self.reply.clone(),
            })
            .is_ok()
    }
}

/// Computes one interval with the current kernel: the even and odd sums and the π partial.
pub fn compute(id: u64, a: u64, b: u64) -> WorkResult {
    compute_with(Kernel::CURRENT, id, a, b)
}

/// Computes one interval with the run's kernel: the even and odd sums and the π partial.
pub fn compute_with(kernel: Kernel, id: u64, a: u64, b: u64) -> WorkResult {
    let start = Instant::now();
    // The server only hands out intervals inside the supported range; a hostile server that does
    // not gets a NaN, which it will reject.
    let pi = kernel.pi_partial(a, b).unwrap_or(f64::NAN);
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
