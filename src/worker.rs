//! Which request worker the current thread is. A leaf module: per-worker state (session caches,
//! metrics shards, upstream pools, request-id counters) is indexed by [`index`], and nothing
//! that uses it needs to know about the server that sets it.

thread_local! {
    /// Which request worker this thread is (0: not a worker, e.g. the admin runtime).
    static WORKER: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// The current thread's worker index (1..=workers), or 0 off the request workers.
pub fn index() -> usize {
    WORKER.with(|w| w.get())
}

/// Marks the current thread as request worker `i` (called once by the server per worker).
pub fn set_index(i: usize) {
    WORKER.with(|w| w.set(i));
}

/// Per-worker values: slot 0 serves every thread that is not a request worker.
pub struct PerWorker<T> {
    slots: Vec<T>,
}

impl<T> PerWorker<T> {
    pub fn new(workers: usize, mut make: impl FnMut() -> T) -> PerWorker<T> {
        PerWorker {
            slots: (0..=workers.max(1)).map(|_| make()).collect(),
        }
    }

    /// This thread's value.
    pub fn get(&self) -> &T {
        let w = index();
        &self.slots[if w < self.slots.len() { w } else { 0 }]
    }

    pub fn all(&self) -> impl Iterator<Item = &T> {
        self.slots.iter()
    }
}
