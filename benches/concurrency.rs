//! Acquire and release a concurrency permit: one hot key, and 100 000 keys.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use ratewarden::ConcurrencyLimiter;

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("concurrency_permit");
    let jobs: ConcurrencyLimiter<u64> = ConcurrencyLimiter::new(8).unwrap();
    group.bench_function("one_key", |b| {
        b.iter(|| drop(black_box(jobs.try_acquire(&7).unwrap())))
    });
    let keys: Vec<u64> = (0..100_000u64)
        .map(|i| i.wrapping_mul(0x9E37_79B9_7F4A_7C15))
        .collect();
    let mut i = 0;
    group.bench_function("100k_keys", |b| {
        b.iter(|| {
            i = (i + 1) % keys.len();
            drop(black_box(jobs.try_acquire(&keys[i]).unwrap()))
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
