//! A policy whose scopes track many keys prefetches their entries before taking any
//! lock: the extractor runs once more, and nothing else about a check changes, while
//! tables grow, shrink and move under other threads.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use ratewarden::{Clock, Gcra, Policy, Rate, Scope};

/// Enough keys for a GCRA scope's table to be prefetched (256 KiB of 16-byte entries).
const MANY: u64 = 16_384;

fn counted_policy(clock: Clock, calls: Arc<AtomicU64>, per_hour: u64) -> Policy<(u64, u64)> {
    let rate = Rate::per_hour(per_hour).unwrap();
    Policy::builder()
        .clock(clock)
        .scope(Scope::keyed(
            "key",
            Gcra::new(rate),
            move |r: &(u64, u64)| {
                calls.fetch_add(1, Ordering::Relaxed);
                Some(r.0)
            },
        ))
        .scope(Scope::keyed(
            "org",
            Gcra::new(Rate::per_hour(3).unwrap()),
            |r: &(u64, u64)| Some(r.1),
        ))
        .build()
}

#[test]
fn a_large_scopes_extractor_runs_once_more_and_decisions_do_not_change() {
    let (clock, _mock) = Clock::mock();
    let calls = Arc::new(AtomicU64::new(0));
    let policy = counted_policy(clock, calls.clone(), 2);
    // Below the size: one call per check.
    policy.check(&(0, 0), 1).unwrap();
    assert_eq!(calls.swap(0, Ordering::Relaxed), 1);
    for key in 1..MANY {
        assert!(policy.check(&(key, key), 1).unwrap().is_allowed());
    }
    calls.store(0, Ordering::Relaxed);
    // Now prefetched: twice per check, and the limits hold exactly as before.
    let org = 1 << 40;
    assert!(policy.check(&(7, org), 1).unwrap().is_allowed()); // key 7's second unit
    assert_eq!(calls.swap(0, Ordering::Relaxed), 2);
    let third = policy.check(&(7, org), 1).unwrap();
    assert!(third.is_denied());
    assert_eq!(third.denials().next().map(|s| s.name), Some("key"));
    // A denial by the second scope consumes nothing in the first.
    let fresh = MANY + 1;
    for _ in 0..2 {
        assert!(policy.check(&(fresh + 1, org), 1).unwrap().is_allowed());
    }
    let denied = policy.check(&(fresh, org), 1).unwrap();
    assert_eq!(denied.denials().next().map(|s| s.name), Some("org"));
    let peek = policy.peek(&(fresh, org + 1), 1).unwrap();
    assert_eq!(peek.scope("key").map(|r| r.decision.remaining()), Some(1));
}

/// Two threads check crowds of keys that go idle, are swept and shrink the tables
/// (moving them) while the other thread's prefetches read the hints: every key still
/// gets exactly its one unit.
#[test]
fn tables_moving_under_prefetches_lose_and_invent_no_unit() {
    let (clock, mock) = Clock::mock();
    let calls = Arc::new(AtomicU64::new(0));
    let counted = calls.clone();
    // One unit per key and second; "org" never denies.
    let policy = Policy::builder()
        .clock(clock)
        .scope(Scope::keyed(
            "key",
            Gcra::new(Rate::per_second(1).unwrap()),
            move |r: &u64| {
                counted.fetch_add(1, Ordering::Relaxed);
                Some(*r)
            },
        ))
        .scope(Scope::keyed(
            "org",
            Gcra::new(Rate::per_second(1_000_000_000).unwrap()),
            |r: &u64| Some(r % 1_000),
        ))
        .build();
    let (rounds, per_round) = (5u64, 2 * MANY);
    let barrier = Barrier::new(2);
    std::thread::scope(|s| {
        for t in 0..2u64 {
            let (policy, mock, barrier) = (&policy, &mock, &barrier);
            s.spawn(move || {
                for round in 0..rounds {
                    // A new crowd each round; the ones before it idle by now.
                    let base = (round * 2 + t) * per_round;
                    for key in base..base + per_round {
                        assert!(policy.check(&key, 1).unwrap().is_allowed(), "{key}");
                        assert!(policy.check(&key, 1).unwrap().is_denied(), "{key}");
                    }
                    barrier.wait();
                    if t == 0 {
                        mock.increment(Duration::from_millis(2_500));
                    }
                    barrier.wait();
                }
            });
        }
    });
    let checks = rounds * 2 * per_round * 2;
    // The prefetch ran (a second extractor call per check once "key" was large).
    assert!(calls.load(Ordering::Relaxed) > checks + checks / 2);
    let stats = policy.stats();
    assert_eq!(stats.allowed, checks / 2);
    assert_eq!(stats.scopes[0].denied, checks / 2);
    // The idle crowds were swept while the next ones came in.
    assert!(stats.scopes[0].evictions > 0);
    assert!(stats.scopes[0].tracked_keys < (rounds * 2 * per_round) as usize);
}

#[test]
fn with_prefetch_off_the_extractor_runs_once_however_large_the_scope() {
    let calls = Arc::new(AtomicU64::new(0));
    let counted = calls.clone();
    let policy = Policy::builder()
        .scope(
            Scope::keyed(
                "key",
                Gcra::new(Rate::per_hour(1_000).unwrap()),
                move |r: &u64| {
                    counted.fetch_add(1, Ordering::Relaxed);
                    Some(*r)
                },
            )
            .prefetch(false),
        )
        .build();
    for key in 0..2 * MANY {
        assert!(policy.check(&key, 1).unwrap().is_allowed());
    }
    assert_eq!(calls.load(Ordering::Relaxed), 2 * MANY);
    assert_eq!(policy.stats().scopes[0].tracked_keys, 2 * MANY as usize);
}
