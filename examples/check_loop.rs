//! One million checks of one kind, for instruction counts (`valgrind --tool=callgrind`)
//! and quick timings: ratewarden's GCRA or governor's, on the same quota and keys.
//!
//! ```text
//! cargo build --release --example check_loop
//! valgrind --tool=callgrind --collect-atstart=no --toggle-collect='*timed*' \
//!     target/release/examples/check_loop <who> <workload>
//! ```
//!
//! `who` is `ratewarden` or `governor`; `workload` is `allowed` or `denied` (unkeyed),
//! `keys=<n>` (keyed, `n` keys in turn) or `policy` (three keyed scopes over 100 000
//! requests: ratewarden's atomic policy against three governor limiters in sequence;
//! `policy=<n>` over `n` requests, e.g. `policy=1000000`, or `policy=1000` for tables
//! that stay in the cache). Set-up (building the
//! limiters, calibrating the clock, a first check of every key) happens before the timed
//! loop, which callgrind counts alone with the options above: divide by 1 000 000. The
//! program prints the time per check.

use std::hint::black_box;
use std::num::NonZeroU32;
use std::time::Instant;

use governor::{Quota, RateLimiter};
use ratewarden::{Gcra, KeyedLimiter, Policy, Rate, Scope, UnkeyedLimiter};

const CHECKS: u64 = 1_000_000;

/// The measured loop: `CHECKS` calls of `check`, timed.
#[inline(never)]
fn timed(mut check: impl FnMut(u64)) -> f64 {
    let start = Instant::now();
    for i in 0..CHECKS {
        check(i);
    }
    start.elapsed().as_nanos() as f64 / CHECKS as f64
}
const MANY: u32 = 1_000_000_000;

#[derive(Clone, Copy)]
struct Req {
    key: u64,
    org: u64,
    video: u64,
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(who), Some(workload)) = (args.get(1), args.get(2)) else {
        eprintln!("usage: check_loop <ratewarden|governor> <allowed|denied|keys=N|policy[=N]>");
        std::process::exit(2);
    };
    let rw = who == "ratewarden";
    let keys = |n: u64| -> Vec<u64> {
        (0..n.max(1))
            .map(|i| i.wrapping_mul(0x9E37_79B9_7F4A_7C15))
            .collect()
    };
    let per_hour = |n: u32| {
        (
            Rate::per_hour(u64::from(n)).expect("a valid rate"),
            Quota::per_hour(NonZeroU32::new(n).expect("not zero")),
        )
    };
    let per_check = match workload.as_str() {
        "allowed" | "denied" => {
            let (rate, quota) = per_hour(if workload == "denied" { 1 } else { MANY });
            if rw {
                let l = UnkeyedLimiter::new(Gcra::new(rate));
                let _ = l.check(1);
                timed(|_| {
                    black_box(l.check(1).map(|d| d.is_allowed()).ok());
                })
            } else {
                let l = RateLimiter::direct(quota);
                let _ = l.check();
                timed(|_| {
                    black_box(l.check().is_ok());
                })
            }
        }
        w if w == "policy" || w.starts_with("policy=") => {
            let n = match w.strip_prefix("policy=") {
                None => 100_000,
                Some(n) => n.parse().unwrap_or_else(|_| {
                    eprintln!("policy=<n>: {n:?} is not a number");
                    std::process::exit(2);
                }),
            };
            let (rate, quota) = per_hour(MANY);
            let reqs: Vec<Req> = keys(n)
                .into_iter()
                .enumerate()
                .map(|(i, k)| Req {
                    key: k,
                    org: k % 1_000,
                    video: k % (n / 2).max(1) + i as u64 % 3,
                })
                .collect();
            let nth = |i: u64| &reqs[(i % reqs.len() as u64) as usize];
            if rw {
                let policy = Policy::builder()
                    .scope(Scope::keyed("key", Gcra::new(rate), |r: &Req| Some(r.key)))
                    .scope(Scope::keyed("org", Gcra::new(rate), |r: &Req| Some(r.org)))
                    .scope(Scope::keyed("video", Gcra::new(rate), |r: &Req| {
                        Some(r.video)
                    }))
                    .build();
                for i in 0..reqs.len() as u64 {
                    let _ = policy.check(nth(i), 1);
                }
                timed(|i| {
                    black_box(policy.check(nth(i), 1).map(|d| d.is_allowed()).ok());
                })
            } else {
                let (a, o, v) = (
                    RateLimiter::keyed(quota),
                    RateLimiter::keyed(quota),
                    RateLimiter::keyed(quota),
                );
                let three = |i: u64| {
                    let r = nth(i);
                    a.check_key(&r.key).is_ok()
                        && o.check_key(&r.org).is_ok()
                        && v.check_key(&r.video).is_ok()
                };
                for i in 0..reqs.len() as u64 {
                    three(i);
                }
                timed(|i| {
                    black_box(three(i));
                })
            }
        }
        other => {
            let Some(n) = other.strip_prefix("keys=").and_then(|n| n.parse().ok()) else {
                eprintln!("unknown workload {other:?}");
                std::process::exit(2);
            };
            let ids = keys(n);
            let nth = |i: u64| &ids[(i % ids.len() as u64) as usize];
            let (rate, quota) = per_hour(MANY);
            if rw {
                let l: KeyedLimiter<u64> = KeyedLimiter::new(Gcra::new(rate));
                for id in &ids {
                    let _ = l.check(id, 1);
                }
                timed(|i| {
                    black_box(l.check(nth(i), 1).map(|d| d.is_allowed()).ok());
                })
            } else {
                let l = RateLimiter::keyed(quota);
                for id in &ids {
                    let _ = l.check_key(id);
                }
                timed(|i| {
                    black_box(l.check_key(nth(i)).is_ok());
                })
            }
        }
    };
    println!("{who} {workload}: {per_check:.1} ns per check");
}
