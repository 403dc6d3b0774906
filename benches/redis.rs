//! Policy checks per second against a `redis-server` on loopback (started by the bench),
//! blocking and async, one connection shared by every thread or task.
//!
//! The policy has two scopes (GCRA per key, fixed window per organization) over 1000 keys
//! in 100 organizations, with limits high enough that every check is allowed and writes.
//! Without a `redis-server` binary on PATH the bench says so and measures nothing.

#[path = "../tests/common/redis_server.rs"]
mod redis_server;

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ratewarden::redis::{AsyncRedisBackend, RedisBackend, RedisPolicy, RedisScope};
use ratewarden::{FixedWindow, Gcra};

struct Req {
    key: u64,
    org: u64,
}

fn policy() -> RedisPolicy<Req> {
    RedisPolicy::builder()
        .name("bench")
        .hash_tag(|r: &Req| Some(r.org.to_string()))
        .scope(RedisScope::keyed(
            "key",
            Gcra::new("1000000000/hour".parse().unwrap()),
            |r: &Req| Some(r.key),
        ))
        .scope(RedisScope::unkeyed(
            "org",
            FixedWindow::new("1000000000000/hour".parse().unwrap()),
        ))
        .cluster()
        .build()
        .unwrap()
}

fn req(i: u64) -> Req {
    Req {
        key: i % 1_000,
        org: i % 100,
    }
}

fn bench(c: &mut Criterion) {
    let Some(server) = redis_server::RedisServer::start() else {
        return;
    };
    let policy = Arc::new(policy());
    let mut group = c.benchmark_group("redis");
    group.throughput(Throughput::Elements(1));

    let sync = RedisBackend::open(&server.url())
        .unwrap()
        .with_deadline(Duration::from_secs(5));
    group.bench_function("sync/1 thread", |b| {
        let mut i = 0;
        b.iter(|| {
            i += 1;
            black_box(policy.check(&sync, &req(i), 1).unwrap().is_allowed())
        })
    });
    let pooled = RedisBackend::open(&server.url())
        .unwrap()
        .with_deadline(Duration::from_secs(5))
        .with_connections(4);
    for (threads, sync, conns) in [
        (4u64, &sync, "one connection"),
        (16, &sync, "one connection"),
        (16, &pooled, "4 connections"),
    ] {
        group.bench_function(format!("sync/{threads} threads, {conns}"), |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                std::thread::scope(|s| {
                    for t in 0..threads {
                        let policy = &policy;
                        s.spawn(move || {
                            for i in 0..iters.div_ceil(threads) {
                                let r = req(i * threads + t);
                                black_box(policy.check(sync, &r, 1).unwrap().is_allowed());
                            }
                        });
                    }
                });
                start.elapsed()
            })
        });
    }

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let conn = rt.block_on(async {
        AsyncRedisBackend::open_with_deadline(&server.url(), Duration::from_secs(5)).unwrap()
    });
    for tasks in [1u64, 64] {
        group.bench_function(format!("async/{tasks} tasks, one connection"), |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                rt.block_on(async {
                    let handles: Vec<_> = (0..tasks)
                        .map(|t| {
                            let (conn, policy) = (conn.clone(), policy.clone());
                            tokio::spawn(async move {
                                for i in 0..iters.div_ceil(tasks) {
                                    let r = req(i * tasks + t);
                                    let d = policy.check_async(&conn, &r, 1).await.unwrap();
                                    black_box(d.is_allowed());
                                }
                            })
                        })
                        .collect();
                    for h in handles {
                        h.await.unwrap();
                    }
                });
                start.elapsed()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
