//! Waiting for a keyed shard: a check is never starved by another thread that holds the
//! shard for a while (a `transact` continuation, a policy's admission hook doing real
//! work) and takes it again straight after each release.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ratewarden::{ConcurrencyLimiter, Gcra, KeyedLimiter, Policy, Rate, Scope};

/// Holds the CPU (not the thread's turn) for `d`, as a busy continuation does.
fn busy(d: Duration) {
    let t = Instant::now();
    while t.elapsed() < d {
        std::hint::spin_loop();
    }
}

/// Runs `hot` back to back on another thread — at most [`HOT_ROUNDS`] times, a second
/// or more — and `probe` five times meanwhile; the most rounds of `hot` that one probe
/// waited through. (A probe that is let in waits through one or two; a starved one,
/// through thousands.)
fn rounds_waited(hot: impl Fn() + Sync, probe: impl Fn()) -> u64 {
    let stop = AtomicBool::new(false);
    let rounds = AtomicU64::new(0);
    std::thread::scope(|s| {
        s.spawn(|| {
            for _ in 0..HOT_ROUNDS {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                hot();
                rounds.fetch_add(1, Ordering::Relaxed);
            }
        });
        while rounds.load(Ordering::Relaxed) == 0 {
            std::hint::spin_loop();
        }
        let mut most = 0;
        for _ in 0..5 {
            let before = rounds.load(Ordering::Relaxed);
            probe();
            most = most.max(rounds.load(Ordering::Relaxed) - before);
            std::thread::sleep(Duration::from_millis(2));
        }
        stop.store(true, Ordering::Relaxed);
        most
    })
}

/// Rounds of about 200 µs that the busy thread runs at most.
const HOT_ROUNDS: u64 = 5_000;

/// Rounds a probe may wait through: far more than the claim on the next turn lets
/// pass, even with the probe's thread descheduled for a while.
const FAIR: u64 = 1_000;

fn fast_rate() -> Gcra {
    Gcra::new(Rate::per_second(1_000_000_000).unwrap())
}

#[test]
fn a_check_on_the_hot_key_gets_in_between_back_to_back_transactions() {
    let limiter: KeyedLimiter<u64> = KeyedLimiter::new(fast_rate());
    let waited = rounds_waited(
        || {
            let now = limiter.clock().now();
            let _ = limiter.transact(&1, 1, now, None, &mut |_| {
                busy(Duration::from_micros(200));
                true
            });
        },
        || {
            assert!(limiter.check(&1, 1).unwrap().is_allowed());
        },
    );
    assert!(waited < FAIR, "a probe waited through {waited} rounds");
}

#[test]
fn another_clients_check_gets_in_between_back_to_back_policy_hooks() {
    // One shard, so that both clients' keys share it (with n shards two keys do so one
    // time in n; a hot key always does).
    let limiter: KeyedLimiter<u64> = KeyedLimiter::builder(fast_rate()).shards(1).build();
    let policy = Policy::builder()
        .scope(Scope::with_limiter("per-client", limiter, |k: &u64| {
            Some(*k)
        }))
        .build();
    let jobs = ConcurrencyLimiter::new(1_000_000).unwrap();
    let waited = rounds_waited(
        || {
            // The admission takes ~200 µs while the client's shard is held.
            let _ = policy.check_with(&1, 1, || {
                busy(Duration::from_micros(200));
                jobs.try_acquire(&1)
            });
        },
        || {
            assert!(policy.check(&2, 1).unwrap().is_allowed());
        },
    );
    assert!(waited < FAIR, "a probe waited through {waited} rounds");
}
