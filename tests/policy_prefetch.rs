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

/// Two threads check a crowd of keys that goes idle, is swept and shrinks the tables
/// (moving them) while the other thread's prefetches read the old hints: every check
/// still counts exactly once.
#[test]
fn tables_moving_under_prefetches_lose_and_invent_no_unit() {
    let (clock, mock) = Clock::mock();
    let calls = Arc::new(AtomicU64::new(0));
    let policy = counted_policy(clock, calls, 1_000_000);
    let allowed = AtomicU64::new(0);
    let rounds = 6u64;
    let barrier = Barrier::new(2);
    std::thread::scope(|s| {
        for t in 0..2u64 {
            let (policy, allowed, mock, barrier) = (&policy, &allowed, &mock, &barrier);
            s.spawn(move || {
                for round in 0..rounds {
                    // A new crowd each round, the last one idle by now.
                    let base = (round * 2 + t) * 3 * MANY;
                    for key in base..base + 2 * MANY {
                        let org = key % 1_000 + round * 10_000;
                        if policy.check(&(key, org), 1).unwrap().is_allowed() {
                            allowed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    barrier.wait();
                    if t == 0 {
                        mock.increment(Duration::from_millis(1_500));
                    }
                    barrier.wait();
                }
            });
        }
    });
    let stats = policy.stats();
    let total = stats.allowed + stats.denied;
    assert_eq!(total, rounds * 2 * 2 * MANY);
    assert_eq!(stats.allowed, allowed.load(Ordering::Relaxed));
    // Every key is new to its round and allowed by "key"; "org" (3 an hour) allows
    // exactly three requests of each of a round's 1 000 orgs, shared by both threads.
    assert_eq!(stats.scopes[0].denied, 0);
    assert_eq!(stats.scopes[1].denied, stats.denied);
    assert_eq!(stats.allowed, rounds * 1_000 * 3);
    // The idle crowds were swept while the next ones came in.
    assert!(stats.scopes[0].evictions > 0);
    assert!(stats.scopes[0].tracked_keys < (rounds * 4 * MANY) as usize);
}
