//! How an unkeyed limiter shares its one algorithm state between threads. (A keyed
//! store keeps plain states under its shard locks, see `store.rs`.)
//!
//! Two cells: a `parking_lot::Mutex` for states that do not fit a few words (the sliding
//! log's), and [`SeqCell`] for states that do (GCRA's arrival time, the windows'
//! start and counts). A `SeqCell` is read without writing anything — a check that
//! leaves the state as it was (most denials) costs no atomic read-modify-write — and a
//! change is one compare-and-swap of a version counter, which also proves that nothing
//! else wrote in between (a bare compare-and-swap of the value could not tell a state
//! that came back to the same value from one that never changed). Atomic multi-scope checks (policies)
//! need to hold a state across the evaluation of other scopes; [`StateCell::lock`] gives
//! them that.

use std::marker::PhantomData;
use std::sync::atomic::{fence, AtomicU64, Ordering};

use parking_lot::Mutex;

/// Interior-mutable storage for one state shared between threads.
pub trait StateCell: Send + Sync + 'static {
    /// The state kept.
    type State;
    /// A cell holding `state`.
    fn new(state: Self::State) -> Self;
    /// Runs `f` with exclusive access to the state, holding it until `f` returns.
    fn lock<R>(&self, f: impl FnOnce(&mut Self::State) -> R) -> R;
    /// Runs `f` on the state and stores any change, as if under [`lock`](Self::lock);
    /// may run `f` more than once (on a lost race), so `f` must have no side effects
    /// besides the state it is given, and what it reads must not change without the
    /// state's lock being taken.
    fn update<R>(&self, f: impl FnMut(&mut Self::State) -> R) -> R;
    /// [`update`](Self::update) where `f` also says whether it surely changed the state
    /// (`true`: store it without comparing it with the state read, so that the store
    /// waits on nothing but that flag; `false`: store it if it differs). Saying `true`
    /// of a state left as it was only costs a store. By default, `update` (the mark
    /// unused).
    fn update_marked<R>(&self, mut f: impl FnMut(&mut Self::State) -> (R, bool)) -> R {
        self.update(|state| f(state).0)
    }
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
}

/// A state that is a few `u64` words, so that a [`SeqCell`] can hold it.
pub trait Words: Copy + Send + Sync + 'static {
    /// How many of the three words the state uses.
    const LEN: usize;
    /// The state as words (unused words are 0).
    fn to_words(&self) -> [u64; 3];
    /// The state from words [`to_words`](Words::to_words) gave.
    fn from_words(words: [u64; 3]) -> Self;
}

impl Words for u64 {
    const LEN: usize = 1;
    fn to_words(&self) -> [u64; 3] {
        [*self, 0, 0]
    }
    fn from_words(words: [u64; 3]) -> u64 {
        words[0]
    }
}

/// A state of up to three words behind a version counter (a sequence lock).
///
/// Readers load the counter, the words and the counter again, and retry if a writer
/// was at work; they write nothing. Writers make the counter odd with a
/// compare-and-swap, store the words and make it even again: an
/// [`update`](StateCell::update) commits only if the counter still has the value it
/// read, so its change is computed on exactly the state it replaces.
/// [`lock`](StateCell::lock) holds the odd counter until its closure returns (the
/// state is written back even if the closure panics); updaters meeting it spin, then
/// yield.
pub struct SeqCell<S> {
    seq: AtomicU64,
    words: [AtomicU64; 3],
    state: PhantomData<fn() -> S>,
}

impl<S: Words + std::fmt::Debug> std::fmt::Debug for SeqCell<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("SeqCell")
            .field(&self.update(|s| *s))
            .finish()
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

/// Writes the state back (once it was read) and releases the counter, also when the
/// closure, or a state's `from_words`, panics.
struct Unlock<'a, S: Words> {
    cell: &'a SeqCell<S>,
    seq: u64,
    state: Option<S>,
}

impl<S: Words> Drop for Unlock<'_, S> {
    fn drop(&mut self) {
        if let Some(state) = &self.state {
            self.cell.store(state);
        }
        self.cell
            .seq
            .store(self.seq.wrapping_add(2), Ordering::Release);
    }
}

impl<S: Words> SeqCell<S> {
    /// The words, read by the holder of the odd counter or validated by the caller.
    #[inline]
    fn load(&self) -> [u64; 3] {
        // `LEN` is a constant: the words a state does not use are never touched.
        let word = |i: usize| {
            if i < S::LEN {
                self.words[i].load(Ordering::Relaxed)
            } else {
                0
            }
        };
        [word(0), word(1), word(2)]
    }

    #[inline]
    fn store(&self, state: &S) {
        let words = state.to_words();
        for (i, word) in words.into_iter().enumerate() {
            if i < S::LEN {
                self.words[i].store(word, Ordering::Relaxed);
            }
        }
    }

    /// Whether two states' words are equal, comparing only the words in use (one
    /// scalar comparison each, which a whole-array comparison is not always).
    #[inline]
    fn same(a: &[u64; 3], b: &[u64; 3]) -> bool {
        a[0] == b[0] && (S::LEN < 2 || a[1] == b[1]) && (S::LEN < 3 || a[2] == b[2])
    }

    /// Makes the counter odd, if it is still `seen`; then the words may be written.
    #[inline]
    fn try_acquire(&self, seen: u64) -> bool {
        let won = self
            .seq
            .compare_exchange_weak(
                seen,
                seen.wrapping_add(1),
                Ordering::Acquire,
                Ordering::Relaxed,
            )
            .is_ok();
        // Readers that see a word written after this must see the odd counter.
        fence(Ordering::Release);
        won
    }
}

impl<S: Words> StateCell for SeqCell<S> {
    type State = S;

    fn new(state: S) -> Self {
        let cell = SeqCell {
            seq: AtomicU64::new(0),
            words: Default::default(),
            state: PhantomData,
        };
        cell.store(&state);
        cell
    }

    fn lock<R>(&self, f: impl FnOnce(&mut S) -> R) -> R {
        let mut spins = 0;
        let seq = loop {
            let seq = self.seq.load(Ordering::Relaxed);
            if seq & 1 == 0 && self.try_acquire(seq) {
                break seq;
            }
            backoff(&mut spins);
        };
        let mut unlock = Unlock {
            cell: self,
            seq,
            state: None,
        };
        f(unlock.state.insert(S::from_words(self.load())))
    }

    #[inline]
    fn update<R>(&self, mut f: impl FnMut(&mut S) -> R) -> R {
        self.update_marked(|state| (f(state), false))
    }

    #[inline]
    fn update_marked<R>(&self, mut f: impl FnMut(&mut S) -> (R, bool)) -> R {
        let mut spins = 0;
        loop {
            let seen = self.seq.load(Ordering::Acquire);
            if seen & 1 == 0 {
                let words = self.load();
                fence(Ordering::Acquire);
                if self.seq.load(Ordering::Relaxed) == seen {
                    let mut state = S::from_words(words);
                    let (result, changed) = f(&mut state);
                    if !changed && Self::same(&state.to_words(), &words) {
                        // Nothing to write, but `f` may have read what a lock holder
                        // changes along with the state (an unkeyed limiter's live
                        // parameters): its result stands only if nobody took the cell
                        // while it ran. Whatever `f` read that such a holder wrote after
                        // making the counter odd, this fence makes the counter's odd (or
                        // later) value visible to the load below.
                        fence(Ordering::Acquire);
                        if self.seq.load(Ordering::Relaxed) == seen {
                            return result;
                        }
                    } else if self.try_acquire(seen) {
                        self.store(&state);
                        self.seq.store(seen.wrapping_add(2), Ordering::Release);
                        return result;
                    }
                }
                // Another update got in first: try again at once, as a bare
                // compare-and-swap loop would.
                continue;
            }
            // A writer holds the counter: wait for it.
            backoff(&mut spins);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;
    use std::sync::{Arc, Barrier};

    #[test]
    fn lock_excludes_updates_and_restores_after_panic() {
        let cell = Arc::new(SeqCell::new(5u64));
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

    /// Three words that must always be equal.
    #[derive(Clone, Copy, Debug, PartialEq)]
    struct Triple(u64);

    impl Words for Triple {
        const LEN: usize = 3;
        fn to_words(&self) -> [u64; 3] {
            [self.0, self.0 ^ 0x5555, !self.0]
        }
        fn from_words(words: [u64; 3]) -> Triple {
            assert!(
                words[1] == words[0] ^ 0x5555 && words[2] == !words[0],
                "torn read: {words:?}"
            );
            Triple(words[0])
        }
    }

    #[test]
    fn readers_never_use_a_torn_state_and_no_update_is_lost() {
        let cell = SeqCell::new(Triple(0));
        std::thread::scope(|s| {
            for _ in 0..2 {
                s.spawn(|| {
                    for i in 0..20_000 {
                        match i % 3 {
                            0 => cell.lock(|t| t.0 += 1),
                            1 => cell.update(|t| t.0 += 1),
                            _ => assert!(cell.update(|t| t.0) <= 40_000),
                        }
                    }
                });
            }
        });
        // 2 threads × (6 667 locks + 6 667 updates).
        assert_eq!(cell.update(|t| t.0), 2 * (6_667 + 6_667));
    }

    /// A state whose words a panicking `from_words` refuses.
    #[derive(Clone, Copy, Debug)]
    struct Picky(u64);

    impl Words for Picky {
        const LEN: usize = 1;
        fn to_words(&self) -> [u64; 3] {
            [self.0, 0, 0]
        }
        fn from_words(words: [u64; 3]) -> Picky {
            // Refuses 13 once.
            static REFUSED: std::sync::atomic::AtomicBool =
                std::sync::atomic::AtomicBool::new(false);
            assert!(
                words[0] != 13 || REFUSED.swap(true, Ordering::SeqCst),
                "unlucky"
            );
            Picky(words[0])
        }
    }

    #[test]
    fn a_panicking_from_words_under_lock_releases_the_cell() {
        let cell = SeqCell::new(Picky(13));
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            cell.lock(|p| p.0 += 1);
        }));
        assert!(result.is_err());
        // Not left locked (the next lock would spin for ever), and the state is the one
        // the failed lock found.
        let cell = Arc::new(cell);
        let (done, finished) = std::sync::mpsc::channel();
        let other = cell.clone();
        std::thread::spawn(move || {
            other.lock(|p| *p = Picky(p.0 + 1));
            let _ = done.send(other.update(|p| p.0));
        });
        let seen = finished.recv_timeout(std::time::Duration::from_secs(10));
        assert_eq!(seen, Ok(14), "the cell stayed locked");
    }

    #[test]
    fn an_update_racing_a_lock_that_writes_the_same_value_computes_again() {
        // A bare compare-and-swap of the value would let the first computation land.
        let cell = SeqCell::new(1u64);
        let runs = AtomicU32::new(0);
        let (read, locked) = (Barrier::new(2), Barrier::new(2));
        std::thread::scope(|s| {
            s.spawn(|| {
                cell.update(|v| {
                    if runs.fetch_add(1, Ordering::SeqCst) == 0 {
                        read.wait();
                        locked.wait();
                    }
                    *v += 1;
                })
            });
            read.wait();
            cell.lock(|v| *v = 1);
            locked.wait();
        });
        assert_eq!(runs.load(Ordering::SeqCst), 2);
        assert_eq!(cell.update(|v| *v), 2);
    }
}
