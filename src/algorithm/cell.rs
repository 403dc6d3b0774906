//! How an unkeyed limiter shares its one algorithm state between threads. (A keyed
//! store keeps plain states under its shard locks, see `store.rs`.)
//!
//! Two cells: a `parking_lot::Mutex` for states that do not fit a word, and
//! [`AtomicCell`] for GCRA's single `u64`, which single checks update with a
//! compare-and-swap and never block on. Atomic multi-scope checks (policies) need to hold
//! a state across the evaluation of other scopes; [`StateCell::lock`] gives them that.

use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;

/// Interior-mutable storage for one per-key state.
pub trait StateCell: Send + Sync + 'static {
    /// The state kept.
    type State;
    /// A cell holding `state`.
    fn new(state: Self::State) -> Self;
    /// Runs `f` with exclusive access to the state, holding it until `f` returns.
    fn lock<R>(&self, f: impl FnOnce(&mut Self::State) -> R) -> R;
    /// Runs `f` on the state and stores any change; may run `f` more than once (on a
    /// lost race), so `f` must have no side effects besides the state it is given.
    fn update<R>(&self, f: impl FnMut(&mut Self::State) -> R) -> R;
    /// The state, through exclusive access to the cell.
    fn get_mut(&mut self) -> &mut Self::State;

    /// Whether [`update`](Self::update) reads without locking (a compare-and-swap cell),
    /// so that a read-only decision is cheaper through it than through
    /// [`lock`](Self::lock).
    const OPTIMISTIC: bool = false;
}

impl<S: Send + 'static> StateCell for Mutex<S> {
    type State = S;

    fn new(state: S) -> Self {
        Mutex::new(state)
    }

    #[inline]
    fn lock<R>(&self, f: impl FnOnce(&mut S) -> R) -> R {
        f(&mut Mutex::lock(self))
    }

    #[inline]
    fn update<R>(&self, mut f: impl FnMut(&mut S) -> R) -> R {
        f(&mut Mutex::lock(self))
    }

    fn get_mut(&mut self) -> &mut S {
        Mutex::get_mut(self)
    }
}

/// A `u64` state updated lock-free by compare-and-swap.
///
/// [`lock`](StateCell::lock) parks the value and writes a sentinel (`u64::MAX`, never a
/// real state) in its place; updaters that meet the sentinel spin, then yield, until the
/// value is put back. The value is put back even if the closure panics.
#[derive(Debug)]
pub struct AtomicCell(AtomicU64);

const LOCKED: u64 = u64::MAX;

struct Restore<'a> {
    cell: &'a AtomicU64,
    value: u64,
}

impl Drop for Restore<'_> {
    fn drop(&mut self) {
        self.cell.store(self.value, Ordering::Release);
    }
}

#[inline]
fn backoff(spins: &mut u32) {
    if *spins < 64 {
        std::hint::spin_loop();
        *spins += 1;
    } else {
        std::thread::yield_now();
    }
}

impl StateCell for AtomicCell {
    type State = u64;

    const OPTIMISTIC: bool = true;

    fn new(state: u64) -> Self {
        AtomicCell(AtomicU64::new(state))
    }

    fn lock<R>(&self, f: impl FnOnce(&mut u64) -> R) -> R {
        let mut spins = 0;
        let value = loop {
            let current = self.0.load(Ordering::Relaxed);
            if current != LOCKED
                && self
                    .0
                    .compare_exchange_weak(current, LOCKED, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
            {
                break current;
            }
            backoff(&mut spins);
        };
        let mut restore = Restore {
            cell: &self.0,
            value,
        };
        f(&mut restore.value)
    }

    #[inline]
    fn update<R>(&self, mut f: impl FnMut(&mut u64) -> R) -> R {
        let mut spins = 0;
        let mut current = self.0.load(Ordering::Acquire);
        loop {
            if current == LOCKED {
                backoff(&mut spins);
                current = self.0.load(Ordering::Acquire);
                continue;
            }
            let mut next = current;
            let result = f(&mut next);
            if next == current {
                return result;
            }
            match self
                .0
                .compare_exchange_weak(current, next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return result,
                Err(seen) => current = seen,
            }
        }
    }

    fn get_mut(&mut self) -> &mut u64 {
        self.0.get_mut()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn lock_excludes_updates_and_restores_after_panic() {
        let cell = Arc::new(AtomicCell::new(5));
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            cell.lock(|v| {
                *v = 7;
                panic!("boom");
            })
        }));
        assert!(result.is_err());
        assert_eq!(cell.update(|v| *v), 7);

        let threads: Vec<_> = (0..2)
            .map(|_| {
                let cell = cell.clone();
                std::thread::spawn(move || {
                    for i in 0..10_000 {
                        if i % 2 == 0 {
                            cell.lock(|v| *v += 1);
                        } else {
                            cell.update(|v| *v += 1);
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(cell.update(|v| *v), 20_007);
    }
}
