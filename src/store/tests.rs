//! The store's unit tests: sweeps and layout, then what happens to a key met for the
//! first time (its slot under the key cap, when it is stored, what it counts).

use super::*;
use crate::{Clock, FixedWindow, Gcra, KeyedLimiter, Rate, SlidingLog, SlidingWindow};
use std::time::Duration;

#[test]
fn a_trickle_of_traffic_reclaims_a_crowd_of_idle_keys() {
    let (clock, mock) = Clock::mock();
    let limiter: KeyedLimiter<u64> =
        KeyedLimiter::builder(Gcra::new(Rate::per_second(1_000).unwrap()))
            .clock(clock)
            .shards(1)
            .build();
    for key in 0..10_000u64 {
        limiter.check(&key, 1).unwrap();
    }
    // A sweep while the crowd is still active: it keeps every key and starts the
    // operation count afresh.
    mock.increment(Duration::from_millis(300));
    limiter.check(&0, 1).unwrap();
    assert_eq!(limiter.len(), 10_000);
    // The crowd goes idle; far fewer operations than its size follow, spread over
    // a few seconds.
    let active = 10u64;
    for _ in 0..30 {
        mock.increment(Duration::from_millis(100));
        for key in 0..active {
            limiter.check(&(100_000 + key), 1).unwrap();
        }
    }
    assert_eq!(limiter.len() as u64, active, "idle keys still tracked");
    assert_eq!(limiter.evictions(), 10_000);
}

/// Whether every shard's prefetch hint holds its table's mask and places each of its
/// keys where the table keeps it.
fn hints_match<K, A: Algorithm>(store: &Store<K, A>) -> bool {
    store.shards.iter().all(|shard| {
        let table = shard.0.lock();
        let entries = &table.keys.entries;
        let mask = entries.num_buckets() - 1;
        entries.iter_buckets().all(|index| {
            let actual = entries.get_bucket(index).map(|e| e as *const _ as usize);
            let (hinted, _, hinted_mask) = shard.1.predict::<Entry<K, A::State>>(index, 0);
            actual == Some(hinted) && hinted_mask == mask
        })
    })
}

/// How many of `keys` lie in the cache lines `Store::prefetch` loads for them (found in
/// whichever shard holds them, independently of the store's own choice of shard).
fn prefetched<A: Algorithm>(store: &Store<u64, A>, keys: impl Iterator<Item = u64>) -> usize {
    let line = |address: usize| address / 64;
    keys.filter(|key| {
        let Some([_, first, fourth]) = store.prefetch_targets(key) else {
            return false;
        };
        let hash = store.hasher.hash_one(key);
        store.shards.iter().any(|shard| {
            let table = shard.0.lock();
            let found = table.keys.entries.find(hash, |e| e.key == *key);
            found.is_some_and(|e| {
                let at = line(e as *const _ as usize);
                at == line(first) || at == line(fourth)
            })
        })
    })
    .count()
}

#[test]
fn the_prefetch_hint_follows_the_table_as_it_grows_and_shrinks() {
    let (clock, mock) = Clock::mock();
    let limiter: KeyedLimiter<u64> =
        KeyedLimiter::builder(Gcra::new(Rate::per_second(1_000).unwrap()))
            .clock(clock)
            .shards(2)
            .build();
    assert!(!limiter.store.worth_prefetching());
    let crowd = 40_000u64;
    for key in 0..crowd {
        limiter.check(&key, 1).unwrap();
        if key % 5_000 == 0 {
            assert!(hints_match(&limiter.store), "after {key} keys");
        }
    }
    assert!(hints_match(&limiter.store));
    assert!(limiter.store.worth_prefetching());
    // Most keys lie in the lines their prefetch loads (a key sits in one of the first
    // four buckets of its probe nearly nine times in ten).
    let hits = prefetched(&limiter.store, 0..crowd);
    assert!(hits * 10 >= crowd as usize * 7, "{hits} of {crowd}");
    let buckets = |l: &KeyedLimiter<u64>| -> usize {
        let shards = l.store.shards.iter();
        shards.map(|s| s.0.lock().keys.entries.num_buckets()).sum()
    };
    let grown = buckets(&limiter);
    // The crowd goes idle; a few keys' traffic sweeps it away and shrinks the tables.
    for _ in 0..40 {
        mock.increment(Duration::from_millis(100));
        for key in 0..100u64 {
            limiter.check(&(1_000_000 + key), 1).unwrap();
        }
    }
    assert_eq!(limiter.len(), 100);
    assert!(buckets(&limiter) < grown / 8, "tables did not shrink");
    assert!(hints_match(&limiter.store), "hint left on the old tables");
    assert!(!limiter.store.worth_prefetching());
}

/// A restore inserts through its own path (`upsert`): the hint follows it too.
#[cfg(feature = "serde")]
#[test]
fn the_prefetch_hint_follows_a_restore() {
    let (clock, _mock) = Clock::mock();
    let build = || {
        KeyedLimiter::<u64>::builder(Gcra::new(Rate::per_second(1_000).unwrap()))
            .clock(clock.clone())
            .shards(2)
            .build()
    };
    let from = build();
    for key in 0..20_000u64 {
        from.check(&key, 1).unwrap();
    }
    let to = build();
    to.restore(&from.snapshot().unwrap()).unwrap();
    assert_eq!(to.len(), 20_000);
    assert!(hints_match(&to.store));
    let hits = prefetched(&to.store, 0..20_000);
    assert!(hits * 10 >= 20_000 * 7, "{hits}");
}

/// Where a field lies from the start of its shard, in bytes.
fn offset<K, A: Algorithm, T>(shard: &Shard<K, A>, field: &T) -> usize {
    field as *const T as usize - shard as *const Shard<K, A> as usize
}

#[test]
fn what_a_check_writes_has_the_shards_first_cache_line_to_itself() {
    fn check<A: Algorithm>(alg: A) {
        let store: Store<u64, A> = Store::new(&alg, 1, usize::MAX, OnFull::Reject);
        let shard = &store.shards[0];
        let lock = offset(shard, &shard.0);
        let table = shard.0.lock();
        let ops = offset(shard, &table.ops);
        let swept_at = offset(shard, &table.swept_at);
        assert!(lock < 64 && ops + 8 <= 64, "lock at {lock}, ops at {ops}");
        assert!(swept_at + 8 <= 64, "swept_at at {swept_at}");
        // The read-mostly header and parameters start on another line: a line pair
        // further on where `usize` and `u64` are 8-byte aligned.
        let header = offset(shard, &table.keys.entries);
        let params = offset(shard, &table.keys.alg);
        assert!(
            header >= 64 && params >= 64,
            "header {header}, params {params}"
        );
        // Other cores read the prefetch hint without the lock: not on the lock's lines.
        let hint = offset(shard, &shard.1);
        assert!(hint >= 128, "hint at {hint}");
        #[cfg(target_pointer_width = "64")]
        assert!(header >= 128, "header {header}");
        assert_eq!(shard as *const Shard<u64, A> as usize % 128, 0);
    }
    check(Gcra::new(Rate::per_second(10).unwrap()));
    check(FixedWindow::new(Rate::per_second(10).unwrap()));
    check(SlidingWindow::new(Rate::per_second(10).unwrap()));
    check(SlidingLog::new(Rate::per_second(10).unwrap()));
}

/// A new key's path through `with_state`, against the store directly.
mod new_keys {
    use super::*;
    use crate::{Gcra, Rate};
    use std::cell::RefCell;
    use std::panic::{catch_unwind, AssertUnwindSafe};

    fn gcra() -> Gcra {
        Gcra::new(Rate::per_second(10).unwrap())
    }

    fn store(max_keys: usize, on_full: OnFull) -> Store<Owned, Gcra> {
        Store::new(&gcra(), 1, max_keys, on_full)
    }

    fn ops(s: &Store<Owned, Gcra>) -> usize {
        s.shards[0].0.lock().ops
    }

    fn tracked(s: &Store<Owned, Gcra>) -> usize {
        s.shards[0].0.lock().keys.entries.len()
    }

    thread_local! { static LOG: RefCell<Vec<&'static str>> = const { RefCell::new(Vec::new()) }; }
    fn log(e: &'static str) {
        LOG.with(|l| l.borrow_mut().push(e));
    }
    fn take_log() -> Vec<&'static str> {
        LOG.with(|l| std::mem::take(&mut *l.borrow_mut()))
    }

    /// A borrowed key whose `to_owned` is logged (so the order "owned before decided"
    /// is observable).
    #[derive(Hash, PartialEq, Eq)]
    struct Borrowed(u64);
    #[derive(Hash, PartialEq, Eq)]
    struct Owned(Borrowed);
    impl std::borrow::Borrow<Borrowed> for Owned {
        fn borrow(&self) -> &Borrowed {
            &self.0
        }
    }
    impl ToOwned for Borrowed {
        type Owned = Owned;
        fn to_owned(&self) -> Owned {
            log("to_owned");
            assert_ne!(self.0, 666, "to_owned panics");
            Owned(Borrowed(self.0))
        }
    }

    type F = fn(&Gcra, &mut <Gcra as Algorithm>::State) -> Result<((), bool), CheckError>;
    fn run(s: &Store<Owned, Gcra>, key: u64, f: F) -> Result<(), CheckError> {
        s.with_state(
            &Borrowed(key),
            10,
            |_| {
                log("admit");
                Ok(())
            },
            f,
        )
    }
    fn consume(_: &Gcra, s: &mut <Gcra as Algorithm>::State) -> Result<((), bool), CheckError> {
        log("f");
        *s = 1 << 60; // in use: never swept
        Ok(((), true))
    }
    fn decline(_: &Gcra, _: &mut <Gcra as Algorithm>::State) -> Result<((), bool), CheckError> {
        log("f");
        Ok(((), false))
    }
    fn fail(_: &Gcra, _: &mut <Gcra as Algorithm>::State) -> Result<((), bool), CheckError> {
        log("f");
        Err(CheckError::InvalidLimit { count: 0 })
    }

    #[test]
    fn new_key_consumed_is_stored_owned_first_and_ticks() {
        let s = store(10, OnFull::Reject);
        take_log();
        run(&s, 1, consume).unwrap();
        assert_eq!(take_log(), ["admit", "to_owned", "f"]);
        assert_eq!((s.len(), tracked(&s), ops(&s)), (1, 1, 1));
        // Known key now: no admit, no to_owned; ticks on consume only.
        run(&s, 1, consume).unwrap();
        assert_eq!(take_log(), ["f"]);
        assert_eq!((s.len(), tracked(&s), ops(&s)), (1, 1, 2));
        run(&s, 1, decline).unwrap();
        assert_eq!((s.len(), tracked(&s), ops(&s)), (1, 1, 2));
        assert!(run(&s, 1, fail).is_err());
        assert_eq!((s.len(), tracked(&s), ops(&s)), (1, 1, 2));
    }

    #[test]
    fn new_key_declined_failed_or_panicking_gives_slot_back_and_does_not_tick() {
        let s = store(1, OnFull::Reject);
        take_log();
        run(&s, 1, decline).unwrap();
        assert_eq!(take_log(), ["admit", "to_owned", "f"]);
        assert_eq!((s.len(), tracked(&s), ops(&s)), (0, 0, 0));
        assert!(run(&s, 1, fail).is_err());
        assert_eq!((s.len(), tracked(&s), ops(&s)), (0, 0, 0));
        let r = catch_unwind(AssertUnwindSafe(|| {
            s.with_state(
                &Borrowed(1),
                10,
                |_| Ok(()),
                |_, _| -> Result<((), bool), CheckError> { panic!("bug") },
            )
        }));
        assert!(r.is_err());
        // The shard lock was released and the slot given back.
        assert_eq!((s.len(), tracked(&s), ops(&s)), (0, 0, 0));
        run(&s, 2, consume).unwrap();
        assert_eq!((s.len(), tracked(&s)), (1, 1));
    }

    #[test]
    fn a_panicking_to_owned_gives_the_slot_back_and_decides_nothing() {
        let s = store(1, OnFull::Reject);
        take_log();
        assert!(catch_unwind(AssertUnwindSafe(|| run(&s, 666, consume))).is_err());
        assert_eq!(take_log(), ["admit", "to_owned"]);
        assert_eq!((s.len(), tracked(&s), ops(&s)), (0, 0, 0));
        run(&s, 1, consume).unwrap();
        assert_eq!((s.len(), tracked(&s)), (1, 1));
    }

    #[test]
    fn admit_refusal_decides_nothing_and_reserves_nothing() {
        let s = store(1, OnFull::Reject);
        take_log();
        let r = s.with_state(
            &Borrowed(1),
            10,
            |_| Err(CheckError::InvalidLimit { count: 9 }),
            consume as F,
        );
        assert!(r.is_err());
        assert_eq!(take_log(), Vec::<&str>::new());
        assert_eq!((s.len(), tracked(&s), ops(&s)), (0, 0, 0));
    }

    /// A store at its cap of 4 (all in use), its operation count reset, so that the
    /// next two refused keys do not trigger a sweep (ops <= len / 2).
    fn full(on_full: OnFull) -> Store<Owned, Gcra> {
        let s = store(4, on_full);
        for k in 0..4 {
            run(&s, k, consume).unwrap();
        }
        s.shards[0].0.lock().ops = 0;
        take_log();
        s
    }

    #[test]
    fn reject_at_the_cap_decides_nothing() {
        let s = full(OnFull::Reject);
        assert_eq!(
            run(&s, 9, consume),
            Err(CheckError::KeyCapReached { max_keys: 4 })
        );
        assert_eq!(take_log(), ["admit"]);
        // reserve_slot counts the refused key (pre-existing behaviour), nothing else.
        assert_eq!((s.len(), tracked(&s), ops(&s)), (4, 4, 1));
    }

    #[test]
    fn allow_untracked_at_the_cap_decides_on_fresh_never_stores_never_ticks() {
        let s = full(OnFull::AllowUntracked);
        s.with_state(
            &Borrowed(9),
            10,
            |_| Ok(()),
            |_, st| {
                assert_eq!(*st, 0, "fresh state");
                consume(&gcra(), st)
            },
        )
        .unwrap();
        // Not owned: nothing to store.
        assert_eq!(take_log(), ["f"]);
        // Only reserve_slot's count of the refused key: the consuming decision on an
        // untracked key does not tick.
        assert_eq!((s.len(), tracked(&s), ops(&s)), (4, 4, 1));
        run(&s, 9, decline).unwrap();
        assert_eq!((s.len(), tracked(&s), ops(&s)), (4, 4, 2));
        assert!(run(&s, 9, fail).is_err());
        let r = catch_unwind(AssertUnwindSafe(|| {
            s.with_state(
                &Borrowed(9),
                10,
                |_| Ok(()),
                |_, _| -> Result<((), bool), CheckError> { panic!("bug") },
            )
        }));
        assert!(r.is_err());
        assert_eq!((s.len(), tracked(&s)), (4, 4));
    }

    /// `f` re-enters another store (a policy's later scope) while a new key's slot in
    /// this one is reserved: the reservation is visible to nobody else's cap, and
    /// nothing of this store is held beyond its shard.
    #[test]
    fn reentrant_later_scope_sees_this_stores_reservation_only_in_this_store() {
        let a = store(1, OnFull::Reject);
        let b = store(1, OnFull::Reject);
        a.with_state(
            &Borrowed(1),
            10,
            |_| Ok(()),
            |_, _| {
                assert_eq!(a.len(), 1, "slot reserved during the decision");
                b.with_state(&Borrowed(1), 10, |_| Ok(()), consume as F)?;
                Ok(((), false))
            },
        )
        .unwrap();
        assert_eq!((a.len(), tracked(&a)), (0, 0));
        assert_eq!((b.len(), tracked(&b)), (1, 1));
    }
}
