//! The keyed store's shard lock: one byte, taken with a compare-and-swap and released
//! with a plain store.
//!
//! A check holds its shard for a few dozen nanoseconds, so a waiter spins briefly
//! rather than parking. Releasing by a store instead of an atomic read-modify-write is
//! what this buys: a lock that parks its waiters must learn, as it releases, whether
//! anyone is parked (parking_lot's mutex does so with a second compare-and-swap), and
//! on a check that costs a few dozen nanoseconds that second atomic is a large share.
//!
//! A waiter that keeps finding the lock taken (its holder was preempted, or is a policy
//! check deciding its later scopes or running its admission hook) yields, then sleeps.
//! A sleeper alone could be starved by a holder that releases and retakes the lock back
//! to back while each hold lasts longer than the sleeper's wake-up takes to notice, so
//! after two sleeps a waiter claims the next turn: it sets a hand-off bit, which makes
//! every other attempt fail until it has taken the lock, and polls for the release
//! (yielding, then sleeping 50 µs at a time). A release keeps the bit; a claim that a
//! release overwrites is made again on the next poll, so it delays the claimant at
//! worst and never lets two threads in.

use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use parking_lot::lock_api;

/// A mutex over a shard's table, guarded by [`RawShardLock`].
pub(crate) type Mutex<T> = lock_api::Mutex<RawShardLock, T>;

/// Held.
const LOCKED: u8 = 1;
/// A waiter that has slept in vain claims the next turn: only it may take the lock.
const HANDOFF: u8 = 2;

/// Rounds a new waiter spins, then yields, before it sleeps.
const SPINS: u32 = 16;
const YIELDS: u32 = 4;
/// Sleeps (of 1 µs, then 2 µs: as long as the system makes them) after which a waiter
/// claims the next turn.
const SLEEPS_BEFORE_CLAIM: u32 = 2;
/// A claimant yields this many times, then polls every [`CLAIMANT_SLEEP`].
const CLAIMANT_YIELDS: u32 = 64;
const CLAIMANT_SLEEP: Duration = Duration::from_micros(50);

/// The byte behind [`Mutex`]: [`LOCKED`] while held, [`HANDOFF`] while a starved waiter
/// claims the next turn.
pub(crate) struct RawShardLock {
    state: AtomicU8,
}

// SAFETY: the lock is held by the one thread whose compare-and-swap set `LOCKED` in a
// state without it (`try_lock`, or a waiter in `lock_contended`); only that holder
// clears `LOCKED` (`unlock` is called by the holder alone, the trait's contract), and
// waiters only ever add `HANDOFF`, which no release or acquisition turns into `LOCKED`.
// So at most one thread holds the lock. The holder's release is a `Release` store and
// every acquisition an `Acquire` compare-and-swap reading it (or a later `HANDOFF` added
// to it, which continues its release sequence), so each holder sees every write its
// predecessors made while holding it.
unsafe impl lock_api::RawMutex for RawShardLock {
    #[allow(clippy::declare_interior_mutable_const)]
    const INIT: RawShardLock = RawShardLock {
        state: AtomicU8::new(0),
    };

    type GuardMarker = lock_api::GuardSend;

    #[inline]
    fn lock(&self) {
        if !self.try_lock() {
            self.lock_contended();
        }
    }

    /// Fails while the lock is held, and while a starved waiter claims the next turn.
    #[inline]
    fn try_lock(&self) -> bool {
        self.state
            .compare_exchange(0, LOCKED, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
    }

    #[inline]
    unsafe fn unlock(&self) {
        // Keeps a claim made while the lock was held. A claim landing between the load
        // and the store is lost, and its waiter makes it again.
        let state = self.state.load(Ordering::Relaxed);
        self.state.store(state & HANDOFF, Ordering::Release);
    }

    #[inline]
    fn is_locked(&self) -> bool {
        self.state.load(Ordering::Relaxed) & LOCKED != 0
    }
}

impl RawShardLock {
    #[cold]
    #[inline(never)]
    fn lock_contended(&self) {
        let mut rounds = 0u32;
        let mut sleeps = 0u32;
        let mut claimed = false;
        loop {
            // Read before trying, so that waiters do not pull the line away from the
            // holder with failing read-modify-writes.
            let state = self.state.load(Ordering::Relaxed);
            if state & LOCKED == 0 {
                // Free: anyone may take it unless a claimant waits; a claimant takes it
                // whatever the claims (clearing them: the others claim again).
                if (claimed || state == 0)
                    && self
                        .state
                        .compare_exchange(state, LOCKED, Ordering::Acquire, Ordering::Relaxed)
                        .is_ok()
                {
                    return;
                }
            } else if claimed && state & HANDOFF == 0 {
                self.state.fetch_or(HANDOFF, Ordering::Relaxed);
            }
            rounds = rounds.saturating_add(1);
            if rounds < SPINS {
                std::hint::spin_loop();
            } else if rounds < SPINS + YIELDS {
                std::thread::yield_now();
            } else if !claimed {
                std::thread::sleep(Duration::from_micros(1 << sleeps));
                sleeps += 1;
                if sleeps >= SLEEPS_BEFORE_CLAIM {
                    claimed = true;
                    rounds = SPINS + YIELDS;
                }
            } else if rounds < SPINS + YIELDS + CLAIMANT_YIELDS {
                std::thread::yield_now();
            } else {
                std::thread::sleep(CLAIMANT_SLEEP);
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

    /// Busy for `d` (holding the CPU, not giving up the thread's turn).
    fn busy(d: Duration) {
        let t = std::time::Instant::now();
        while t.elapsed() < d {
            std::hint::spin_loop();
        }
    }

    /// Holds of 200 µs that a holder takes back to back, at most: a waiter that is
    /// starved gets in only once the holders have stopped, after a second or more.
    const HOLDS: u64 = 5_000;

    #[test]
    fn a_waiter_gets_in_between_long_holds_taken_back_to_back() {
        // Each hold outlasts a sleeper's wake-up, and the holder retakes the lock at once:
        // without a hand-off the waiter would find it taken on (almost) every wake-up,
        // and get in only after the holder's last hold.
        let holds = Mutex::new(0u64);
        let stop = std::sync::atomic::AtomicBool::new(false);
        let holding = Barrier::new(2);
        let seen = std::thread::scope(|s| {
            s.spawn(|| {
                let mut first = true;
                while !stop.load(Ordering::Relaxed) {
                    let mut guard = holds.lock();
                    if *guard == HOLDS {
                        break;
                    }
                    if std::mem::take(&mut first) {
                        holding.wait();
                    }
                    busy(Duration::from_micros(200));
                    *guard += 1;
                }
            });
            holding.wait();
            let seen = *holds.lock();
            stop.store(true, Ordering::Relaxed);
            seen
        });
        assert!(seen < HOLDS, "got in only once the holder had stopped");
        assert!(!holds.is_locked());
    }

    #[test]
    fn a_claim_shuts_out_newcomers_and_outlives_a_release() {
        use lock_api::RawMutex as _;
        let raw = RawShardLock::INIT;
        // A holder, and a waiter that has claimed the next turn.
        assert!(raw.try_lock());
        raw.state.fetch_or(HANDOFF, Ordering::Relaxed);
        // SAFETY: this thread holds the lock (the `try_lock` above).
        unsafe { raw.unlock() };
        // Released, the claim kept: free, yet a newcomer cannot take it.
        assert!(!raw.is_locked());
        assert_eq!(raw.state.load(Ordering::Relaxed), HANDOFF);
        assert!(!raw.try_lock());
        // Once the claimant is in (taking the lock clears the claim), it is as ever.
        assert!(raw
            .state
            .compare_exchange(HANDOFF, LOCKED, Ordering::Acquire, Ordering::Relaxed)
            .is_ok());
        // SAFETY: this thread holds the lock (the compare-and-swap above).
        unsafe { raw.unlock() };
        assert!(raw.try_lock());
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

    #[test]
    fn every_thread_gets_in_among_several_holding_back_to_back() {
        // Four threads hold for 200 µs and retake the lock at once (each one claims the
        // next turn once it has waited through its sleeps); a probe locks now and then.
        // Claimants race for each release, so who goes next is random, but nobody is
        // shut out: every probe gets in while the others are still at it, and each of
        // them gets in too.
        let total = Mutex::new(0u64);
        let stop = std::sync::atomic::AtomicBool::new(false);
        let (probes, in_time) = std::thread::scope(|s| {
            let handles: Vec<_> = (0..4)
                .map(|_| {
                    s.spawn(|| {
                        // Whether this thread's first hold came while the probe was
                        // still at work (a starved thread gets in only after it).
                        let mut in_time = None;
                        while !stop.load(Ordering::Relaxed) {
                            let mut guard = total.lock();
                            if *guard == 4 * HOLDS {
                                break;
                            }
                            in_time.get_or_insert(!stop.load(Ordering::Relaxed));
                            busy(Duration::from_micros(200));
                            *guard += 1;
                        }
                        in_time == Some(true)
                    })
                })
                .collect();
            let probes: Vec<u64> = (0..40)
                .map(|_| {
                    std::thread::sleep(Duration::from_millis(5));
                    *total.lock()
                })
                .collect();
            stop.store(true, Ordering::Relaxed);
            let in_time: Vec<bool> = handles.into_iter().map(|h| h.join().unwrap()).collect();
            (probes, in_time)
        });
        assert!(
            probes.iter().all(|&seen| seen < 4 * HOLDS),
            "a probe got in only once the others had stopped: {probes:?}"
        );
        assert!(
            in_time.iter().all(|&t| t),
            "a thread got in only at the end: {in_time:?}"
        );
        assert!(!total.is_locked());
    }
}
