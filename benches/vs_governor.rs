//! ratewarden beside governor on the same work, in the same run.
//!
//! Workloads (identical quotas, keys generated outside the timed loop):
//! 1 unkeyed allowed · 2 unkeyed denied · 3 unkeyed, 2 threads · 4 keyed, one hot key ·
//! 5 keyed, 100 000 keys · 6 keyed, 1 000 000 keys, Zipf(1.1) · 7 keyed, 2 threads,
//! 100 000 keys · 8 three scopes: an atomic `Policy` against three limiters in sequence
//! (and, for scale, three ratewarden limiters in sequence sharing one clock reading, 8s,
//! the same three nested in each other's transactions, atomic without a policy, 8n, and
//! that nesting with a report per scope and statistics counted, 8t). Workloads 4–7 also
//! time a floor: the least a check over a sharded table behind `parking_lot` mutexes can
//! do.
//! 1c and 2c repeat 1 and 2 with ratewarden's opt-in coarse clock (`Clock::coarse`),
//! beside governor's default clock and governor's own coarse `QuantaUpkeepClock`.
//! ratewarden's algorithms alone are in `benches/algorithms.rs`.
//!
//! `cargo bench --bench vs_governor` measures each contender with criterion, one after
//! the other. `cargo bench --bench vs_governor -- --paired` measures them in alternation
//! instead: 21 rounds, each timing a batch of every contender of a workload (in an order
//! that turns each round), and prints per workload the median time per check and the
//! median and quartiles of the per-round ratios against governor. On a shared machine
//! whose speed drifts, contenders timed seconds apart can see different machines;
//! contenders timed milliseconds apart see the same one.

use std::hint::black_box;
use std::num::NonZeroU32;
use std::time::{Duration, Instant};

mod common;

use common::{cycle, keys, two_threads};
use criterion::Criterion;
use governor::clock::QuantaUpkeepClock;
use governor::{Quota, RateLimiter};
use ratewarden::{Clock, Gcra, KeyedLimiter, Policy, Rate, Scope, UnkeyedLimiter, COARSE_INTERVAL};

const MANY: u32 = 1_000_000_000;

fn nz(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n).unwrap()
}

/// Runs `iters` checks and returns the time they took.
type Runner = Box<dyn FnMut(u64) -> Duration>;

/// One workload: ratewarden first, then governor (the peer ratios are taken against),
/// then any other contender.
struct Workload {
    name: &'static str,
    contenders: Vec<(&'static str, Runner)>,
}

/// `check` called `iters` times in a loop, timed.
fn timed(mut check: impl FnMut() + 'static) -> Runner {
    Box::new(move |iters| {
        let start = Instant::now();
        for _ in 0..iters {
            check();
        }
        start.elapsed()
    })
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

/// An endless walk over keys the closure owns.
fn owned_cycle(keys: Vec<u64>) -> impl FnMut() -> u64 {
    let mut i = 0;
    move || {
        i = (i + 1) % keys.len();
        keys[i]
    }
}

fn unkeyed() -> Vec<Workload> {
    let mut out = Vec::new();
    for (name, rate, quota) in [
        (
            "1_unkeyed_allowed",
            Rate::per_second(u64::from(MANY)).unwrap(),
            Quota::per_second(nz(MANY)),
        ),
        (
            "2_unkeyed_denied",
            Rate::per_hour(1).unwrap(),
            Quota::per_hour(nz(1)),
        ),
    ] {
        let rw = UnkeyedLimiter::new(Gcra::new(rate));
        let gov = RateLimiter::direct(quota);
        let _ = (rw.check(1), gov.check());
        out.push(Workload {
            name,
            contenders: vec![
                (
                    "ratewarden",
                    timed(move || {
                        black_box(rw.check(1).unwrap().is_allowed());
                    }),
                ),
                (
                    "governor",
                    timed(move || {
                        black_box(gov.check().is_ok());
                    }),
                ),
            ],
        });
    }

    // The opt-in coarse clock, against governor's default clock and its own coarse one
    // (one upkeep thread at a time).
    let upkeep = QuantaUpkeepClock::from_interval(COARSE_INTERVAL).unwrap();
    for (name, per_second) in [
        ("1c_unkeyed_allowed_coarse", MANY),
        ("2c_unkeyed_denied_coarse", 0),
    ] {
        let (rate, quota) = match per_second {
            0 => (Rate::per_hour(1).unwrap(), Quota::per_hour(nz(1))),
            n => (
                Rate::per_second(u64::from(n)).unwrap(),
                Quota::per_second(nz(n)),
            ),
        };
        let rw = UnkeyedLimiter::with_clock(Gcra::new(rate), Clock::coarse());
        let gov = RateLimiter::direct(quota);
        let gov_coarse = RateLimiter::direct_with_clock(quota, upkeep.clone());
        let _ = (rw.check(1), gov.check(), gov_coarse.check());
        out.push(Workload {
            name,
            contenders: vec![
                (
                    "ratewarden_coarse",
                    timed(move || {
                        black_box(rw.check(1).unwrap().is_allowed());
                    }),
                ),
                (
                    "governor",
                    timed(move || {
                        black_box(gov.check().is_ok());
                    }),
                ),
                (
                    "governor_upkeep_clock",
                    timed(move || {
                        black_box(gov_coarse.check().is_ok());
                    }),
                ),
            ],
        });
    }

    let rw = UnkeyedLimiter::new(Gcra::new(Rate::per_second(u64::from(MANY)).unwrap()));
    let gov = RateLimiter::direct(Quota::per_second(nz(MANY)));
    out.push(Workload {
        name: "3_unkeyed_2_threads",
        contenders: vec![
            (
                "ratewarden",
                Box::new(move |n| {
                    two_threads(n, |n, _| {
                        (0..n).for_each(|_| {
                            black_box(rw.check(1)).ok();
                        })
                    })
                }),
            ),
            (
                "governor",
                Box::new(move |n| {
                    two_threads(n, |n, _| (0..n).for_each(|_| drop(black_box(gov.check()))))
                }),
            ),
        ],
    });
    out
}

fn keyed() -> Vec<Workload> {
    let rate = Rate::per_second(u64::from(MANY)).unwrap();
    let quota = Quota::per_second(nz(MANY));
    let mut out = Vec::new();

    let rw: KeyedLimiter<u64> = KeyedLimiter::new(Gcra::new(rate));
    let gov = RateLimiter::keyed(quota);
    let floor = Floor::new();
    out.push(Workload {
        name: "4_keyed_hot_key",
        contenders: vec![
            (
                "ratewarden",
                timed(move || {
                    black_box(rw.check(&7, 1).unwrap().is_allowed());
                }),
            ),
            (
                "governor",
                timed(move || {
                    black_box(gov.check_key(&7).is_ok());
                }),
            ),
            (
                "floor_parking_lot_table",
                timed(move || {
                    black_box(floor.check(7));
                }),
            ),
        ],
    });

    for (name, draws) in [
        ("5_keyed_100k", keys(100_000)),
        ("6_keyed_zipf_1m", zipf(1_000_000, 1.1, 4_000_000)),
    ] {
        let rw: KeyedLimiter<u64> = KeyedLimiter::new(Gcra::new(rate));
        let gov = RateLimiter::keyed(quota);
        let floor = Floor::new();
        let mut floor_next = owned_cycle(draws.clone());
        let (mut rw_next, mut gov_next) = (owned_cycle(draws.clone()), owned_cycle(draws));
        out.push(Workload {
            name,
            contenders: vec![
                (
                    "ratewarden",
                    timed(move || {
                        black_box(rw.check(&rw_next(), 1).unwrap().is_allowed());
                    }),
                ),
                (
                    "governor",
                    timed(move || {
                        black_box(gov.check_key(&gov_next()).is_ok());
                    }),
                ),
                (
                    "floor_parking_lot_table",
                    timed(move || {
                        black_box(floor.check(floor_next()));
                    }),
                ),
            ],
        });
    }

    let many = keys(100_000);
    let rw: KeyedLimiter<u64> = KeyedLimiter::new(Gcra::new(rate));
    let gov = RateLimiter::keyed(quota);
    let gov_keys = many.clone();
    let floor = Floor::new();
    let floor_keys = many.clone();
    out.push(Workload {
        name: "7_keyed_2_threads_100k",
        contenders: vec![
            (
                "ratewarden",
                Box::new(move |n| {
                    two_threads(n, |n, t| {
                        let mut next = cycle(&many[t * 25_000..t * 25_000 + 75_000]);
                        (0..n).for_each(|_| {
                            black_box(rw.check(next(), 1)).ok();
                        })
                    })
                }),
            ),
            (
                "governor",
                Box::new(move |n| {
                    two_threads(n, |n, t| {
                        let mut next = cycle(&gov_keys[t * 25_000..t * 25_000 + 75_000]);
                        (0..n).for_each(|_| drop(black_box(gov.check_key(next()))))
                    })
                }),
            ),
            (
                "floor_parking_lot_table",
                Box::new(move |n| {
                    two_threads(n, |n, t| {
                        let mut next = cycle(&floor_keys[t * 25_000..t * 25_000 + 75_000]);
                        (0..n).for_each(|_| {
                            black_box(floor.check(*next()));
                        })
                    })
                }),
            ),
        ],
    });
    out
}

/// The least a keyed check over a sharded hash table behind `parking_lot` mutexes can
/// do: one clock reading, one hash, one shard lock, one probe, one 8-byte update (a
/// GCRA-like theoretical arrival time), one unlock. No capacity check, decision,
/// eviction or live parameters: the floor of the store layout ratewarden used before its
/// shard lock (`src/shard_lock.rs`), which a check now goes below. As many shards as
/// ratewarden's default (eight per core, a power of two, at most 64).
struct Floor {
    shards: Box<[Padded]>,
    mask: usize,
    hasher: ahash::RandomState,
    clock: quanta::Clock,
}

#[repr(align(128))]
struct Padded(parking_lot::Mutex<hashbrown::HashTable<(u64, u64)>>);

impl Floor {
    fn new() -> Floor {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        let shards = (cores.min(8) * 8).next_power_of_two();
        Floor {
            shards: (0..shards)
                .map(|_| Padded(parking_lot::Mutex::new(hashbrown::HashTable::new())))
                .collect(),
            mask: shards - 1,
            hasher: ahash::RandomState::new(),
            clock: quanta::Clock::new(),
        }
    }

    /// Allowed if the key's arrival time is not more than a second ahead of now.
    #[inline]
    fn check(&self, key: u64) -> bool {
        let now = self.clock.raw();
        let hash = self.hasher.hash_one(key);
        let mut table = self.shards[(hash >> 40) as usize & self.mask].0.lock();
        let entry = table
            .entry(hash, |e| e.0 == key, |e| self.hasher.hash_one(e.0))
            .or_insert((key, now))
            .into_mut();
        let tat = entry.1.max(now) + 1;
        let allowed = tat <= now + 1_000_000_000;
        if allowed {
            entry.1 = tat;
        }
        allowed
    }
}

#[derive(Clone, Copy)]
struct Req {
    key: u64,
    org: u64,
    video: u64,
}

fn three_scopes() -> Vec<Workload> {
    let rate = Rate::per_second(u64::from(MANY)).unwrap();
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
    let walk = |reqs: &Vec<Req>| {
        let reqs = reqs.clone();
        let mut i = 0;
        move || {
            i = (i + 1) % reqs.len();
            reqs[i]
        }
    };
    let policy = Policy::builder()
        .scope(Scope::keyed("key", Gcra::new(rate), |r: &Req| Some(r.key)))
        .scope(Scope::keyed("org", Gcra::new(rate), |r: &Req| Some(r.org)))
        .scope(Scope::keyed("video", Gcra::new(rate), |r: &Req| {
            Some(r.video)
        }))
        .build();
    let mut policy_next = walk(&reqs);
    let three = || -> [KeyedLimiter<u64>; 3] {
        std::array::from_fn(|_| KeyedLimiter::new(Gcra::new(rate)))
    };
    // Not atomic, for scale: what the policy's walk adds to its three lookups.
    let [a, o, v] = three();
    let clock = Clock::new();
    let mut seq_next = walk(&reqs);
    // Atomic like the policy, with the three limiters' types known: what holding each
    // key while the next is decided costs without the policy's type erasure and reports.
    let [na, no, nv] = three();
    let nested_clock = Clock::new();
    let mut nested_next = walk(&reqs);
    // The same, also doing what the policy records: a report per scope, and statistics
    // (a count per outcome, per scope and near the limit) in counters this thread alone
    // writes.
    let [ta, to, tv] = three();
    let typed_clock = Clock::new();
    let mut typed_next = walk(&reqs);
    let counts: Vec<std::sync::atomic::AtomicU64> = (0..16)
        .map(|_| std::sync::atomic::AtomicU64::new(0))
        .collect();
    let (ga, go, gv) = (
        RateLimiter::keyed(quota),
        RateLimiter::keyed(quota),
        RateLimiter::keyed(quota),
    );
    let mut gov_next = walk(&reqs);
    vec![Workload {
        name: "8_three_scopes",
        contenders: vec![
            (
                "ratewarden_policy",
                timed(move || {
                    black_box(policy.check(&policy_next(), 1).unwrap().is_allowed());
                }),
            ),
            (
                "governor_sequential",
                timed(move || {
                    let r = gov_next();
                    black_box(
                        ga.check_key(&r.key).is_ok()
                            && go.check_key(&r.org).is_ok()
                            && gv.check_key(&r.video).is_ok(),
                    );
                }),
            ),
            (
                "ratewarden_sequential_one_clock_read",
                timed(move || {
                    let (r, now) = (seq_next(), clock.now());
                    black_box(
                        a.check_at(&r.key, 1, now).unwrap().is_allowed()
                            && o.check_at(&r.org, 1, now).unwrap().is_allowed()
                            && v.check_at(&r.video, 1, now).unwrap().is_allowed(),
                    );
                }),
            ),
            (
                "ratewarden_nested_transactions",
                timed(move || {
                    let (r, now) = (nested_next(), nested_clock.now());
                    let mut allowed = true;
                    let _ = na.transact(&r.key, 1, now, None, &mut |a| {
                        let _ = no.transact(&r.org, 1, now, None, &mut |o| {
                            let _ = nv.transact(&r.video, 1, now, None, &mut |v| {
                                allowed = a.is_allowed() && o.is_allowed() && v.is_allowed();
                                allowed
                            });
                            allowed
                        });
                        allowed
                    });
                    black_box(allowed);
                }),
            ),
            (
                "ratewarden_nested_reports_counts",
                timed(move || {
                    use std::sync::atomic::Ordering::Relaxed;
                    let (r, now) = (typed_next(), typed_clock.now());
                    let mut allowed = true;
                    let mut reports = [None::<ratewarden::Decision>; 3];
                    let _ = ta.transact(&r.key, 1, now, None, &mut |a| {
                        allowed &= a.is_allowed();
                        let _ = to.transact(&r.org, 1, now, None, &mut |o| {
                            allowed &= o.is_allowed();
                            let _ = tv.transact(&r.video, 1, now, None, &mut |v| {
                                allowed &= v.is_allowed();
                                reports[2] = Some(*v);
                                allowed
                            });
                            reports[1] = Some(*o);
                            allowed
                        });
                        reports[0] = Some(*a);
                        allowed
                    });
                    let bump =
                        |c: &std::sync::atomic::AtomicU64| c.store(c.load(Relaxed) + 1, Relaxed);
                    bump(&counts[usize::from(!allowed)]);
                    for (i, d) in reports.iter().enumerate() {
                        if let Some(d) = d {
                            bump(&counts[2 + 4 * i + usize::from(d.is_denied())]);
                            if d.used_at_least_percent(80) {
                                bump(&counts[2 + 4 * i + 3]);
                            }
                        }
                    }
                    black_box((allowed, &reports));
                }),
            ),
        ],
    }]
}

fn workloads() -> Vec<Workload> {
    let mut all = unkeyed();
    all.extend(keyed());
    all.extend(three_scopes());
    all
}

/// Criterion, one contender after another.
fn with_criterion() {
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .configure_from_args();
    for mut workload in workloads() {
        let mut g = c.benchmark_group(workload.name);
        for (who, run) in workload.contenders.iter_mut() {
            g.bench_function(*who, |b| b.iter_custom(&mut *run));
        }
        g.finish();
    }
    c.final_summary();
}

/// The median and the quartiles of `values`.
fn quartiles(mut values: Vec<f64>) -> (f64, f64, f64) {
    values.sort_by(f64::total_cmp);
    let at = |q: f64| values[((values.len() - 1) as f64 * q).round() as usize];
    (at(0.25), at(0.5), at(0.75))
}

/// Contenders in alternation, `ROUNDS` batches of `CHECKS` checks each: a batch long
/// enough that the caches the other contenders left cold are a small part of it.
fn paired(filter: Option<&str>) {
    const ROUNDS: usize = 21;
    const CHECKS: u64 = 1_000_000;
    println!("workload / contender: median ns per check; ratio to governor: median [quartiles]");
    let chosen = workloads()
        .into_iter()
        .filter(|w| filter.is_none_or(|f| w.name.contains(f)));
    for mut workload in chosen {
        let k = workload.contenders.len();
        for (_, run) in workload.contenders.iter_mut() {
            run(CHECKS); // warm up
        }
        let mut nanos = vec![Vec::with_capacity(ROUNDS); k];
        for round in 0..ROUNDS {
            for j in 0..k {
                let c = (round + j) % k;
                let elapsed = (workload.contenders[c].1)(CHECKS);
                nanos[c].push(elapsed.as_nanos() as f64 / CHECKS as f64);
            }
        }
        println!("{}", workload.name);
        for (c, (who, _)) in workload.contenders.iter().enumerate() {
            let (_, median, _) = quartiles(nanos[c].clone());
            let ratios = nanos[c].iter().zip(&nanos[1]).map(|(a, b)| a / b).collect();
            let (q1, ratio, q3) = quartiles(ratios);
            println!("  {who:<38} {median:>8.1} ns   {ratio:.2} [{q1:.2}–{q3:.2}]");
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(at) = args.iter().position(|a| a == "--paired") {
        // The first argument after `--paired` that is not an option picks workloads by name.
        let filter = args[at + 1..].iter().find(|a| !a.starts_with('-'));
        paired(filter.map(String::as_str));
    } else {
        with_criterion();
    }
}
