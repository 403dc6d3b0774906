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
        let (_, Some([_, first, fourth])) = store.prefetch_targets(key) else {
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

/// A hash given with a key (a policy's prefetch pass computes it from its own extraction
/// of the key) is used as is when it finds the key; when it finds nothing and is not
/// the key's, the key is looked up again with its own hash, so that another key's hash
/// neither makes a tracked key look new nor stores a new key where lookups miss it.
#[test]
fn a_hash_given_with_a_key_is_checked_before_the_key_is_taken_as_new() {
    let store: Store<u64, Gcra> = Store::new(
        &Gcra::new(Rate::per_hour(10).unwrap()),
        4,
        usize::MAX,
        OnFull::Reject,
    );
    let consume = |alg: &Gcra, state: &mut u64| Ok((alg.decide_and_commit(state, 0, 1), true));
    let remaining = |d: crate::Decision| d.remaining();
    let check = |key: u64, hashed: Option<u64>| {
        store
            .with_state_hashed(&key, hashed, 0, |_| Ok(()), consume)
            .map(remaining)
            .unwrap()
    };
    let (a, b) = (7u64, 8u64);
    let (hash_a, hash_b) = (store.hasher.hash_one(a), store.hasher.hash_one(b));
    // New key, another key's hash: stored under its own.
    assert_eq!(check(a, Some(hash_b)), 9);
    // Found with its own hash, with none, and again with the wrong one.
    assert_eq!(check(a, Some(hash_a)), 8);
    assert_eq!(check(a, None), 7);
    assert_eq!(check(a, Some(hash_b)), 6);
    assert_eq!(store.len(), 1);
    let tracked: usize = store.shard_lens().iter().sum();
    assert_eq!(tracked, 1, "one entry for the key");
    // Peeks: the wrong hash finds the tracked key too.
    let peek = |hashed| store.with_existing_hashed(&a, hashed, |_, s| s.copied());
    assert_eq!(peek(Some(hash_b)), peek(None));
    assert!(peek(None).is_some());
    // An untracked key stays untracked whatever the hash.
    assert!(!store.with_existing_hashed(&b, Some(hash_a), |_, s| s.is_some()));
}

mod new_keys;
