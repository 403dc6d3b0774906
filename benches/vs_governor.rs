//! ratewarden beside governor on the same work, in the same run.
//!
//! Workloads (identical quotas, keys generated outside the timed loop):
//! 1 unkeyed allowed · 2 unkeyed denied · 3 unkeyed, 2 threads · 4 keyed, one hot key ·
//! 5 keyed, 100 000 keys · 6 keyed, 1 000 000 keys, Zipf(1.1) · 7 keyed, 2 threads,
//! 100 000 keys · 8 three scopes: an atomic `Policy` against three limiters in sequence.
//! 1c and 2c repeat 1 and 2 with ratewarden's opt-in coarse clock (`Clock::coarse`),
//! beside governor's default clock and governor's own coarse `QuantaUpkeepClock`.
//! ratewarden's algorithms alone are in `benches/algorithms.rs`.
//!
//! `cargo bench --bench vs_governor`

use std::hint::black_box;
use std::num::NonZeroU32;
use std::time::Duration;

mod common;

use common::{cycle, keys, two_threads};
use criterion::{criterion_group, criterion_main, Criterion};
use governor::clock::QuantaUpkeepClock;
use governor::{Quota, RateLimiter};
use ratewarden::{Clock, Gcra, KeyedLimiter, Policy, Rate, Scope, UnkeyedLimiter, COARSE_INTERVAL};

const MANY: u32 = 1_000_000_000;

fn nz(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n).unwrap()
}

/// `len` draws from `n` keys with Zipf(s) popularity (xorshift, inverse CDF).
fn zipf(n: usize, s: f64, len: usize) -> Vec<u64> {
    let mut cdf = Vec::with_capacity(n);
    let mut total = 0.0;
    for k in 1..=n {
        total += 1.0 / (k as f64).powf(s);
        cdf.push(total);
    }
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    let ids = keys(n as u64);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let u = (x >> 11) as f64 / (1u64 << 53) as f64 * total;
            ids[cdf.partition_point(|c| *c < u).min(n - 1)]
        })
        .collect()
}

fn unkeyed(c: &mut Criterion) {
    let mut g = c.benchmark_group("1_unkeyed_allowed");
    let rw = UnkeyedLimiter::new(Gcra::new(Rate::per_second(MANY as u64).unwrap()));
    let gov = RateLimiter::direct(Quota::per_second(nz(MANY)));
    g.bench_function("ratewarden", |b| {
        b.iter(|| black_box(rw.check(1).unwrap().is_allowed()))
    });
    g.bench_function("governor", |b| b.iter(|| black_box(gov.check().is_ok())));
    g.finish();

    let mut g = c.benchmark_group("2_unkeyed_denied");
    let rw = UnkeyedLimiter::new(Gcra::new(Rate::per_hour(1).unwrap()));
    let gov = RateLimiter::direct(Quota::per_hour(nz(1)));
    let _ = (rw.check(1), gov.check());
    g.bench_function("ratewarden", |b| {
        b.iter(|| black_box(rw.check(1).unwrap().is_allowed()))
    });
    g.bench_function("governor", |b| b.iter(|| black_box(gov.check().is_ok())));
    g.finish();

    // The opt-in coarse clock, against governor's default clock and its own coarse one.
    for (group, per_second) in [
        ("1c_unkeyed_allowed_coarse", MANY),
        ("2c_unkeyed_denied_coarse", 0),
    ] {
        let mut g = c.benchmark_group(group);
        let (rate, quota) = match per_second {
            0 => (Rate::per_hour(1).unwrap(), Quota::per_hour(nz(1))),
            n => (
                Rate::per_second(u64::from(n)).unwrap(),
                Quota::per_second(nz(n)),
            ),
        };
        let rw = UnkeyedLimiter::with_clock(Gcra::new(rate), Clock::coarse());
        let gov = RateLimiter::direct(quota);
        let gov_coarse = RateLimiter::direct_with_clock(
            quota,
            QuantaUpkeepClock::from_interval(COARSE_INTERVAL).unwrap(),
        );
        let _ = (rw.check(1), gov.check(), gov_coarse.check());
        g.bench_function("ratewarden_coarse", |b| {
            b.iter(|| black_box(rw.check(1).unwrap().is_allowed()))
        });
        g.bench_function("governor", |b| b.iter(|| black_box(gov.check().is_ok())));
        g.bench_function("governor_upkeep_clock", |b| {
            b.iter(|| black_box(gov_coarse.check().is_ok()))
        });
        g.finish();
    }

    let mut g = c.benchmark_group("3_unkeyed_2_threads");
    let rw = UnkeyedLimiter::new(Gcra::new(Rate::per_second(MANY as u64).unwrap()));
    let gov = RateLimiter::direct(Quota::per_second(nz(MANY)));
    g.bench_function("ratewarden", |b| {
        b.iter_custom(|n| {
            two_threads(n, |n, _| {
                (0..n).for_each(|_| {
                    black_box(rw.check(1)).ok();
                })
            })
        })
    });
    g.bench_function("governor", |b| {
        b.iter_custom(|n| two_threads(n, |n, _| (0..n).for_each(|_| drop(black_box(gov.check())))))
    });
    g.finish();
}

fn keyed(c: &mut Criterion) {
    let rate = Rate::per_second(MANY as u64).unwrap();
    let quota = Quota::per_second(nz(MANY));

    let mut g = c.benchmark_group("4_keyed_hot_key");
    let rw: KeyedLimiter<u64> = KeyedLimiter::new(Gcra::new(rate));
    let gov = RateLimiter::keyed(quota);
    g.bench_function("ratewarden", |b| {
        b.iter(|| black_box(rw.check(&7, 1).unwrap().is_allowed()))
    });
    g.bench_function("governor", |b| {
        b.iter(|| black_box(gov.check_key(&7).is_ok()))
    });
    g.finish();

    let many = keys(100_000);
    let mut g = c.benchmark_group("5_keyed_100k");
    let rw: KeyedLimiter<u64> = KeyedLimiter::new(Gcra::new(rate));
    let gov = RateLimiter::keyed(quota);
    let mut next = cycle(&many);
    g.bench_function("ratewarden", |b| {
        b.iter(|| black_box(rw.check(next(), 1).unwrap().is_allowed()))
    });
    let mut next = cycle(&many);
    g.bench_function("governor", |b| {
        b.iter(|| black_box(gov.check_key(next()).is_ok()))
    });
    g.finish();

    let draws = zipf(1_000_000, 1.1, 4_000_000);
    let mut g = c.benchmark_group("6_keyed_zipf_1m");
    let rw: KeyedLimiter<u64> = KeyedLimiter::new(Gcra::new(rate));
    let gov = RateLimiter::keyed(quota);
    let mut next = cycle(&draws);
    g.bench_function("ratewarden", |b| {
        b.iter(|| black_box(rw.check(next(), 1).unwrap().is_allowed()))
    });
    let mut next = cycle(&draws);
    g.bench_function("governor", |b| {
        b.iter(|| black_box(gov.check_key(next()).is_ok()))
    });
    g.finish();

    let mut g = c.benchmark_group("7_keyed_2_threads_100k");
    let rw: KeyedLimiter<u64> = KeyedLimiter::new(Gcra::new(rate));
    let gov = RateLimiter::keyed(quota);
    g.bench_function("ratewarden", |b| {
        b.iter_custom(|n| {
            two_threads(n, |n, t| {
                let mut next = cycle(&many[t * 25_000..t * 25_000 + 75_000]);
                (0..n).for_each(|_| {
                    black_box(rw.check(next(), 1)).ok();
                })
            })
        })
    });
    g.bench_function("governor", |b| {
        b.iter_custom(|n| {
            two_threads(n, |n, t| {
                let mut next = cycle(&many[t * 25_000..t * 25_000 + 75_000]);
                (0..n).for_each(|_| drop(black_box(gov.check_key(next()))))
            })
        })
    });
    g.finish();
}

#[derive(Clone, Copy)]
struct Req {
    key: u64,
    org: u64,
    video: u64,
}

fn three_scopes(c: &mut Criterion) {
    let rate = Rate::per_second(MANY as u64).unwrap();
    let quota = Quota::per_second(nz(MANY));
    let reqs: Vec<Req> = keys(100_000)
        .iter()
        .enumerate()
        .map(|(i, &k)| Req {
            key: k,
            org: k % 1_000,
            video: k % 50_000 + i as u64 % 3,
        })
        .collect();
    let mut g = c.benchmark_group("8_three_scopes");
    let policy = Policy::builder()
        .scope(Scope::keyed("key", Gcra::new(rate), |r: &Req| Some(r.key)))
        .scope(Scope::keyed("org", Gcra::new(rate), |r: &Req| Some(r.org)))
        .scope(Scope::keyed("video", Gcra::new(rate), |r: &Req| {
            Some(r.video)
        }))
        .build();
    let mut i = 0;
    g.bench_function("ratewarden_policy", |b| {
        b.iter(|| {
            i = (i + 1) % reqs.len();
            black_box(policy.check(&reqs[i], 1).unwrap().is_allowed())
        })
    });
    let (a, o, v) = (
        RateLimiter::keyed(quota),
        RateLimiter::keyed(quota),
        RateLimiter::keyed(quota),
    );
    let mut i = 0;
    g.bench_function("governor_sequential", |b| {
        b.iter(|| {
            i = (i + 1) % reqs.len();
            let r = &reqs[i];
            black_box(
                a.check_key(&r.key).is_ok()
                    && o.check_key(&r.org).is_ok()
                    && v.check_key(&r.video).is_ok(),
            )
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = unkeyed, keyed, three_scopes
}
criterion_main!(benches);
