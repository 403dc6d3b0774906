//! A three-scope `Policy` check against the same three limiters checked one after another
//! (the non-atomic way: each check reads the clock, and a later denial leaks the earlier
//! scopes' budget).

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use ratewarden::{FixedWindow, Gcra, KeyedLimiter, Policy, Rate, Scope, SlidingWindow};

#[derive(Clone, Copy)]
struct Req {
    key: u64,
    org: u64,
    video: u64,
}

fn rate(s: &str) -> Rate {
    s.parse().unwrap()
}

fn requests() -> Vec<Req> {
    (0..10_000u64)
        .map(|i| Req {
            key: i % 1_000,
            org: i % 100,
            video: i % 5_000,
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let reqs = requests();
    let mut group = c.benchmark_group("three_scopes");

    // Rates high enough that every check is allowed: the cost measured is the machinery.
    let policy = Policy::builder()
        .scope(Scope::keyed(
            "api_key",
            Gcra::new(rate("1000000000/s")),
            |r: &Req| Some(r.key),
        ))
        .scope(Scope::keyed(
            "org",
            SlidingWindow::new(rate("1000000000/s")),
            |r: &Req| Some(r.org),
        ))
        .scope(Scope::keyed(
            "video",
            FixedWindow::new(rate("1000000000/s")),
            |r: &Req| Some(r.video),
        ))
        .build();
    let mut i = 0;
    group.bench_function("policy_atomic", |b| {
        b.iter(|| {
            i = (i + 1) % reqs.len();
            black_box(policy.check(&reqs[i], 1).unwrap().is_allowed())
        })
    });

    let by_key: KeyedLimiter<u64, Gcra> = KeyedLimiter::new(Gcra::new(rate("1000000000/s")));
    let by_org: KeyedLimiter<u64, SlidingWindow> =
        KeyedLimiter::new(SlidingWindow::new(rate("1000000000/s")));
    let by_video: KeyedLimiter<u64, FixedWindow> =
        KeyedLimiter::new(FixedWindow::new(rate("1000000000/s")));
    let mut i = 0;
    group.bench_function("sequential_checks", |b| {
        b.iter(|| {
            i = (i + 1) % reqs.len();
            let r = &reqs[i];
            black_box(
                by_key.check(&r.key, 1).unwrap().is_allowed()
                    && by_org.check(&r.org, 1).unwrap().is_allowed()
                    && by_video.check(&r.video, 1).unwrap().is_allowed(),
            )
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
