//! The keyed store's shard lock: one flag, taken with a compare-and-swap and released
//! with a plain store.
//!
//! A check holds its shard for a few dozen nanoseconds, so a waiter spins briefly
//! rather than parking. Releasing by a store instead of an atomic read-modify-write is
//! what this buys: a lock that parks its waiters must learn, as it releases, whether
//! anyone is parked (parking_lot's mutex does so with a second compare-and-swap), and
//! on a check that costs a few dozen nanoseconds that second atomic is a large share.
//! A waiter that keeps finding the lock taken (its holder was preempted, or is a policy
//! check deciding its later scopes or running its admission hook) gives up its time
//! slice, then sleeps for growing pauses, so a long hold costs waiters little CPU.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use parking_lot::lock_api::{self, RawMutex as _};

/// A mutex over a shard's table, guarded by [`RawShardLock`].
pub(crate) type Mutex<T> = lock_api::Mutex<RawShardLock, T>;

/// Spins before yielding, and yields before sleeping.
const SPINS: u32 = 16;
const YIELDS: u32 = 4;
/// The longest pause between two attempts of a waiter that sleeps.
const LONGEST_SLEEP: Duration = Duration::from_millis(1);

/// The flag behind [`Mutex`]: `true` while held.
pub(crate) struct RawShardLock {
    locked: AtomicBool,
}

// SAFETY: `lock` and `try_lock` return holding the lock only after this thread changed
// `locked` from `false` to `true` with an acquiring compare-and-swap, which succeeds for
// one thread at a time; `unlock` is called only by the holder (the trait's contract)
// and sets it back with a releasing store. So at most one thread holds the lock, and
// each holder sees every write its predecessors made while holding it.
unsafe impl lock_api::RawMutex for RawShardLock {
    #[allow(clippy::declare_interior_mutable_const)]
    const INIT: RawShardLock = RawShardLock {
        locked: AtomicBool::new(false),
    };

    type GuardMarker = lock_api::GuardSend;

    #[inline]
    fn lock(&self) {
        if !self.try_lock() {
            self.lock_contended();
        }
    }

    #[inline]
    fn try_lock(&self) -> bool {
        self.locked
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
    }

    #[inline]
    unsafe fn unlock(&self) {
        self.locked.store(false, Ordering::Release);
    }

    #[inline]
    fn is_locked(&self) -> bool {
        self.locked.load(Ordering::Relaxed)
    }
}

impl RawShardLock {
    #[cold]
    #[inline(never)]
    fn lock_contended(&self) {
        let mut attempts = 0u32;
        loop {
            // Wait for the flag to read free before trying again, so that waiters do not
            // pull the line away from the holder with failing read-modify-writes.
            if !self.locked.load(Ordering::Relaxed) && self.try_lock() {
                return;
            }
            attempts = attempts.saturating_add(1);
            if attempts < SPINS {
                std::hint::spin_loop();
            } else if attempts < SPINS + YIELDS {
                std::thread::yield_now();
            } else {
                let doublings = (attempts - SPINS - YIELDS).min(10);
                let pause = Duration::from_micros(1 << doublings);
                std::thread::sleep(pause.min(LONGEST_SLEEP));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU64;
    use std::sync::Barrier;

    #[test]
    fn one_holder_at_a_time_across_threads() {
        // A non-atomic read-modify-write under the lock: any overlap of two holders
        // loses an increment, and the total comes out short.
        let counter = Mutex::new(0u64);
        let inside = AtomicU64::new(0);
        let threads = 4;
        let rounds = 50_000;
        let start = Barrier::new(threads);
        std::thread::scope(|s| {
            for _ in 0..threads {
                s.spawn(|| {
                    start.wait();
                    for _ in 0..rounds {
                        let mut c = counter.lock();
                        assert_eq!(inside.fetch_add(1, Ordering::Relaxed), 0, "two holders");
                        let seen = *c;
                        std::hint::black_box(&seen);
                        *c = seen + 1;
                        inside.fetch_sub(1, Ordering::Relaxed);
                    }
                });
            }
        });
        assert_eq!(*counter.lock(), threads as u64 * rounds);
    }

    #[test]
    fn a_long_hold_is_waited_out_and_then_released() {
        let shared = Mutex::new(Vec::new());
        let held = Barrier::new(2);
        std::thread::scope(|s| {
            let holder = s.spawn(|| {
                let mut guard = shared.lock();
                held.wait();
                // Long enough for the waiter to pass its spins and yields into sleeps.
                std::thread::sleep(Duration::from_millis(30));
                guard.push("holder");
            });
            held.wait();
            assert!(shared.try_lock().is_none(), "held by the other thread");
            shared.lock().push("waiter");
            holder.join().unwrap();
        });
        assert_eq!(*shared.lock(), ["holder", "waiter"]);
        assert!(!shared.is_locked());
    }

    #[test]
    fn a_panicking_holder_releases_the_lock() {
        let shared = Mutex::new(1u32);
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let mut guard = shared.lock();
            *guard = 2;
            panic!("while holding");
        }));
        assert!(outcome.is_err());
        assert!(!shared.is_locked());
        assert_eq!(*shared.lock(), 2);
    }
}
