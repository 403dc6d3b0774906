//! Each algorithm's `check`: unkeyed, one hot key, 100 000 keys, and 100 000 keys from
//! two threads; then `SlidingLog` at limits of 10, 1 000 and 100 000 with a steady full
//! window (its per-check cost must not grow with the limit).
//!
//! `cargo bench --bench algorithms`

use std::hint::black_box;
use std::time::Duration;

mod common;

use common::{cycle, keys, two_threads};
use criterion::{criterion_group, criterion_main, Criterion};
use ratewarden::algorithm::Algorithm;
use ratewarden::{
    FixedWindow, Gcra, KeyedLimiter, Rate, SlidingLog, SlidingWindow, UnkeyedLimiter,
};

const MANY: u64 = 1_000_000_000;

fn algorithms(c: &mut Criterion) {
    let rate = Rate::per_second(MANY).unwrap();
    let many = keys(100_000);
    fn run<A: Algorithm>(c: &mut Criterion, name: &str, alg: A, many: &[u64]) {
        let mut g = c.benchmark_group(format!("algorithm_{name}"));
        let unkeyed = UnkeyedLimiter::new(alg.clone());
        g.bench_function("1_unkeyed", |b| {
            b.iter(|| black_box(unkeyed.check(1).unwrap().is_allowed()))
        });
        let keyed: KeyedLimiter<u64, A> = KeyedLimiter::new(alg.clone());
        g.bench_function("4_keyed_hot_key", |b| {
            b.iter(|| black_box(keyed.check(&7, 1).unwrap().is_allowed()))
        });
        let mut next = cycle(many);
        g.bench_function("5_keyed_100k", |b| {
            b.iter(|| black_box(keyed.check(next(), 1).unwrap().is_allowed()))
        });
        g.bench_function("7_keyed_2_threads_100k", |b| {
            b.iter_custom(|n| {
                two_threads(n, |n, t| {
                    let mut next = cycle(&many[t * 25_000..t * 25_000 + 75_000]);
                    (0..n).for_each(|_| {
                        black_box(keyed.check(next(), 1)).ok();
                    })
                })
            })
        });
        g.finish();
    }
    run(c, "gcra", Gcra::new(rate), &many);
    run(c, "fixed_window", FixedWindow::new(rate), &many);
    run(c, "sliding_window", SlidingWindow::new(rate), &many);
    run(c, "sliding_log", SlidingLog::new(rate), &many);

    // A steady full window: one request per W/n, so the log holds n entries and every
    // check prunes one and appends one.
    let mut g = c.benchmark_group("sliding_log_limit");
    for limit in [10u64, 1_000, 100_000] {
        let rate = Rate::new(limit, Duration::from_secs(1)).unwrap();
        let limiter = UnkeyedLimiter::new(SlidingLog::new(rate));
        let step = 1_000_000_000 / limit;
        let mut now = 1_000_000_000u64;
        for _ in 0..limit {
            now += step;
            limiter.check_at(1, now).unwrap();
        }
        g.bench_function(limit.to_string(), |b| {
            b.iter(|| {
                now += step;
                black_box(limiter.check_at(1, now).unwrap().is_allowed())
            })
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = algorithms
}
criterion_main!(benches);
