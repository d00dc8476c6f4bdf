//! How libraries report progress: they never print or draw. A long-running library
//! function takes an `&dyn Observer<E>` for its own typed event `E` (a training step, an
//! evaluated case, a harvested report) and calls it as work advances; the `radlens`
//! binary turns events into progress bars and log lines, the server into job status, and
//! tests into assertions. [`Silent`] ignores everything.
//!
//! Observers are `Sync` because libraries may report from worker threads.

/// Receives a library's progress events of type `E`.
pub trait Observer<E>: Sync {
    fn observe(&self, event: &E);
}

/// Any `Fn(&E)` closure that may be shared between threads is an observer.
impl<E, F: Fn(&E) + Sync> Observer<E> for F {
    fn observe(&self, event: &E) {
        self(event)
    }
}

/// An observer that ignores every event.
#[derive(Debug, Clone, Copy, Default)]
pub struct Silent;

impl<E> Observer<E> for Silent {
    fn observe(&self, _: &E) {}
}

/// Progress through a counted piece of work (cases loaded, shards read, reports run).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Count {
    pub done: u64,
    pub total: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    fn count_to(n: u64, obs: &dyn Observer<Count>) {
        for done in 1..=n {
            obs.observe(&Count { done, total: n });
        }
    }

    #[test]
    fn closures_and_silent_observe() {
        let seen = Mutex::new(Vec::new());
        count_to(3, &|c: &Count| seen.lock().unwrap().push(c.done));
        assert_eq!(*seen.lock().unwrap(), [1, 2, 3]);
        count_to(3, &Silent);
    }
}
