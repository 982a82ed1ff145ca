//! One process-wide limit on password hashing and verification.
//!
//! Every Argon2id hash and every verification of a stored hash (the pool's own, an imported
//! one, or the dummy hash verified for unknown users) runs through [`run`]. At most
//! [`slots`] run at once across the whole process — each server worker has its own runtime, so
//! the limit is a static, not per runtime — on that many long-lived hashing threads of its own
//! (not tokio's blocking pool: a few threads that live on also keep the allocator from holding
//! on to a 19 MiB buffer per short-lived thread). A hash holds its slot until it is done, even
//! when the request that asked for it has gone. A few more requests
//! ([`queue_len`]) may wait for a slot, for at most [`MAX_WAIT`]; anything beyond is refused at
//! once with [`Busy`], which the pages answer with **503** and `Retry-After`. So a flood of
//! sign-ins costs at most `slots` hashes' memory (19 MiB each for the pool's own parameters, at
//! most 64 MiB for an imported hash) and `slots` threads, never an unbounded queue.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use tokio::sync::Semaphore;

/// How long a request may wait for a hashing slot before it is refused.
pub const MAX_WAIT: Duration = Duration::from_secs(2);

/// The `Retry-After` (seconds) sent with a refusal.
pub const RETRY_AFTER_SECONDS: u64 = 1;

/// Adds `Retry-After` to a 503 answered because the limit is full.
pub fn retry_later<B>(r: &mut http::Response<B>) {
    r.headers_mut().insert(
        http::header::RETRY_AFTER,
        http::HeaderValue::from(RETRY_AFTER_SECONDS),
    );
}

/// The limit is full: try again shortly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("password hashing is at capacity; try again shortly")]
pub struct Busy;

type Job = Box<dyn FnOnce() + Send + 'static>;

struct Limiter {
    slots: usize,
    queue: usize,
    permits: Semaphore,
    waiting: AtomicUsize,
    /// To the hashing threads; holds at most `slots` jobs (each holds a permit).
    jobs: SyncSender<Job>,
}

static LIMITER: LazyLock<Limiter> = LazyLock::new(|| {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    Limiter::new((2 * cores).clamp(2, 64))
});

/// Hashes that may run at once in this process (twice the cores, at least 2, at most 64).
pub fn slots() -> usize {
    LIMITER.slots
}

/// Requests that may wait for a slot beyond those running.
pub fn queue_len() -> usize {
    LIMITER.queue
}

/// Leaves the queue however the wait ends (a slot, a timeout, or the request dropped).
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Runs `work` (a hash or a verification) on a blocking thread under the process-wide limit.
pub async fn run<T, F>(work: F) -> Result<T, Busy>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    LIMITER.run(work).await
}

impl Limiter {
    fn new(slots: usize) -> Limiter {
        let (jobs, rx) = std::sync::mpsc::sync_channel::<Job>(slots);
        let rx = Arc::new(Mutex::new(rx));
        // Only as many slots as threads that started: a slot without a thread would leave its
        // request waiting for ever (with none, every request is refused after `MAX_WAIT`).
        let mut running = 0;
        for i in 0..slots {
            let rx = rx.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("pool-hash-{i}"))
                .spawn(move || worker(&rx));
            match spawned {
                Ok(_) => running += 1,
                Err(e) => tracing::error!(error = %e, "cannot start a password-hashing thread"),
            }
        }
        Limiter {
            slots,
            queue: 4 * slots,
            permits: Semaphore::new(running),
            waiting: AtomicUsize::new(0),
            jobs,
        }
    }

    async fn run<T, F>(&'static self, work: F) -> Result<T, Busy>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let l = self;
        let permit = match l.permits.try_acquire() {
            Ok(p) => p,
            Err(_) => {
                if l.waiting.fetch_add(1, Ordering::AcqRel) >= l.queue {
                    l.waiting.fetch_sub(1, Ordering::AcqRel);
                    return Err(Busy);
                }
                let _queued = Waiting(&l.waiting);
                match tokio::time::timeout(MAX_WAIT, l.permits.acquire()).await {
                    Ok(Ok(p)) => p,
                    _ => return Err(Busy),
                }
            }
        };
        // The slot moves into the job: a request dropped mid-hash does not free it early.
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            let _slot = permit;
            let _ = tx.send(work());
        });
        self.jobs.send(job).map_err(|_| Busy)?;
        rx.await.map_err(|_| Busy)
    }
}

/// One hashing thread: runs jobs until the limiter is gone; a job that panics is dropped
/// (its caller sees [`Busy`]) and the thread carries on.
fn worker(rx: &Mutex<Receiver<Job>>) {
    loop {
        let job = {
            let guard = match rx.lock() {
                Ok(g) => g,
                Err(poisoned) => poisoned.into_inner(),
            };
            guard.recv()
        };
        match job {
            Ok(job) => {
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
            }
            Err(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn never_more_than_the_slots_run_and_the_overflow_is_refused() {
        // A limiter of its own, so other tests hashing meanwhile neither disturb nor see it.
        let l: &'static Limiter = Box::leak(Box::new(Limiter::new(3)));
        let running = std::sync::Arc::new(AtomicUsize::new(0));
        let peak = std::sync::Arc::new(AtomicUsize::new(0));
        let n = l.slots + l.queue + 40;
        let mut tasks = Vec::new();
        for _ in 0..n {
            let (running, peak) = (running.clone(), peak.clone());
            tasks.push(tokio::spawn(l.run(move || {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(now, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(50));
                running.fetch_sub(1, Ordering::SeqCst);
            })));
        }
        let mut busy = 0;
        for t in tasks {
            if t.await.unwrap().is_err() {
                busy += 1;
            }
        }
        assert!(
            peak.load(Ordering::SeqCst) <= l.slots,
            "more than the slots ran"
        );
        assert!(
            busy >= 40,
            "only {busy} of {n} refused beyond slots + queue"
        );
        // Afterwards the limiter is free again.
        assert_eq!(l.run(|| 7).await, Ok(7));
    }
}
