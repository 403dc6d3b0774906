//! Waiting for a keyed shard: a check is never starved by another thread that holds the
//! shard for a while (a `transact` continuation, a policy's admission hook doing real
//! work) and takes it again straight after each release.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use ratewarden::{ConcurrencyLimiter, Gcra, KeyedLimiter, Policy, Rate, Scope};

/// Holds the CPU (not the thread's turn) for `d`, as a busy continuation does.
fn busy(d: Duration) {
    let t = Instant::now();
    while t.elapsed() < d {
        std::hint::spin_loop();
    }
}

/// The slowest of five `probe` calls while `hot` runs back to back on another thread
/// (which gives up after 8 s, so that a starved probe fails the test instead of hanging
/// it).
fn worst_wait(hot: impl Fn() + Sync, probe: impl Fn()) -> Duration {
    let stop = AtomicBool::new(false);
    let running = AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            let started = Instant::now();
            while !stop.load(Ordering::Relaxed) && started.elapsed() < Duration::from_secs(8) {
                hot();
                running.store(true, Ordering::Relaxed);
            }
        });
        while !running.load(Ordering::Relaxed) {
            std::hint::spin_loop();
        }
        let mut worst = Duration::ZERO;
        for _ in 0..5 {
            let t = Instant::now();
            probe();
            worst = worst.max(t.elapsed());
            std::thread::sleep(Duration::from_millis(2));
        }
        stop.store(true, Ordering::Relaxed);
        worst
    })
}

fn fast_rate() -> Gcra {
    Gcra::new(Rate::per_second(1_000_000_000).unwrap())
}

#[test]
fn a_check_on_the_hot_key_gets_in_between_back_to_back_transactions() {
    let limiter: KeyedLimiter<u64> = KeyedLimiter::new(fast_rate());
    let worst = worst_wait(
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
    assert!(worst < Duration::from_millis(100), "waited {worst:?}");
}

#[test]
fn another_clients_check_gets_in_between_back_to_back_policy_hooks() {
    // One shard, so that both clients' keys share it (with 64 shards two keys do so one
    // time in 64; a hot key always does).
    let limiter: KeyedLimiter<u64> = KeyedLimiter::builder(fast_rate()).shards(1).build();
    let policy = Policy::builder()
        .scope(Scope::with_limiter("per-client", limiter, |k: &u64| {
            Some(*k)
        }))
        .build();
    let jobs = ConcurrencyLimiter::new(1_000_000).unwrap();
    let worst = worst_wait(
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
    assert!(worst < Duration::from_millis(100), "waited {worst:?}");
}
