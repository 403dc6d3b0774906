//! The Redis script against the in-process algorithms, decision by decision.
//!
//! Both are driven through the same pseudo-random sequences of times (including window
//! boundaries ±1 µs and exact retry-afters), keys, costs (0 to beyond capacity), checks,
//! peeks and refunds; every field of every decision must match. The script is given the time
//! (in whole microseconds, the server clock's resolution) instead of reading the server's
//! clock; the times lie years ahead, so no key expires in real time during the test.
//! The one difference allowed: a sliding-window retry-after is the model's rounded up to a
//! whole microsecond (the first microsecond at which the request passes).

#[path = "common/redis_server.rs"]
mod redis_server;

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ratewarden::algorithm::Algorithm;
use ratewarden::redis::{RedisAlgorithm, RedisBackend, RedisCheckError, RedisPolicy, RedisScope};
use ratewarden::{
    Anchor, CheckError, Decision, FixedWindow, Gcra, Rate, SlidingLog, SlidingWindow,
};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn ceil_micros(nanos: u64) -> u64 {
    nanos.div_ceil(1_000) * 1_000
}

/// The fields both backends report, retry-after in whole microseconds.
fn fields(d: &Decision) -> (bool, u64, u64, u64, u64, Option<u64>) {
    (
        d.is_allowed(),
        d.limit(),
        d.remaining(),
        d.window_nanos(),
        d.reset_after_nanos(),
        d.retry_after().map(|r| ceil_micros(r.as_nanos() as u64)),
    )
}

/// A policy named `name` with one scope, `s`, running `alg` keyed by the request itself.
fn one_scope(name: &str, alg: impl Into<RedisAlgorithm>) -> RedisPolicy<u64> {
    RedisPolicy::builder()
        .name(name)
        .scope(RedisScope::keyed("s", alg, |k: &u64| Some(*k)))
        .build()
        .unwrap()
}

fn run<A: Algorithm + Into<RedisAlgorithm>>(redis: &RedisBackend, name: &str, alg: A, seed: u64) {
    let policy = one_scope(&format!("model-{name}-{seed}"), alg.clone());
    let w_us = alg.rate().window_nanos() / 1_000;
    let cap = alg.capacity();
    let mut states: HashMap<u64, A::State> = HashMap::new();
    let mut rng = Rng(seed | 1);
    // years ahead of now, on a whole second
    let year = 365 * 86_400 * 1_000_000u64;
    let real = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64;
    let mut now_us = (real + 3 * year) / 1_000_000 * 1_000_000 + rng.below(1_000_000);
    let mut last_retry_us = 0;
    for step in 0..600 {
        now_us += match rng.below(8) {
            0 | 1 => 0,
            2 => 1,
            3 => rng.below(w_us / 4 + 1),
            4 => w_us - now_us % w_us, // a clock-aligned boundary
            5 => (w_us - now_us % w_us).saturating_sub(1),
            6 => last_retry_us,
            _ => last_retry_us.saturating_sub(1),
        };
        let key = rng.below(3);
        let cost = match rng.below(10) {
            0 => 0,
            1 => cap,
            2 => cap + 1,
            3 | 4 => rng.below(cap) + 1,
            _ => 1,
        };
        let commit = rng.below(5) != 0;
        let now_ns = now_us * 1_000;
        let state = states.entry(key).or_insert_with(|| alg.fresh());
        if rng.below(8) == 0 {
            let back = rng.below(cap + 2);
            alg.refund(state, now_ns, back);
            policy
                .refund_at_micros(redis, &key, back, now_us)
                .unwrap_or_else(|e| panic!("{name} seed {seed} step {step}: refund: {e}"));
            continue;
        }
        let expected = if cost > cap {
            Err(CheckError::CostExceedsCapacity {
                cost,
                capacity: cap,
            })
        } else {
            let d = alg.decide(state, now_ns, cost);
            if commit && d.is_allowed() {
                alg.commit(state, now_ns, cost);
            }
            Ok(d)
        };
        let got = policy.check_at_micros(redis, &key, cost, commit, now_us);
        let what = format!(
            "{name} seed {seed} step {step}: t={now_us}µs key {key} cost {cost} commit {commit}"
        );
        match (expected, got) {
            (Ok(model), Ok(d)) => {
                let report = d.scope("s").expect("one scope").decision;
                assert_eq!(fields(&report), fields(&model), "{what}");
                assert_eq!(d.is_allowed(), model.is_allowed(), "{what}");
                last_retry_us = model
                    .retry_after()
                    .map_or(0, |r| ceil_micros(r.as_nanos() as u64) / 1_000);
            }
            (Err(model), Err(RedisCheckError::Policy(e))) => assert_eq!(e.error, model, "{what}"),
            (model, got) => panic!("{what}: model {model:?}, redis {got:?}"),
        }
    }
}

#[test]
fn the_script_decides_exactly_as_the_in_process_algorithms() {
    let Some(server) = redis_server::RedisServer::start() else {
        return;
    };
    let redis = server.backend(Duration::from_secs(5));
    let ms = Duration::from_millis;
    for seed in [1u64, 7, 42, 1_234_567, 99, 2_024, 31_337, 8_675_309] {
        run(
            &redis,
            "fixed",
            FixedWindow::new(Rate::new(5, ms(1_000)).unwrap()),
            seed,
        );
        run(
            &redis,
            "fixed-first",
            FixedWindow::new(Rate::new(3, ms(10)).unwrap()).anchored(Anchor::FirstRequest),
            seed,
        );
        run(
            &redis,
            "sliding",
            SlidingWindow::new(Rate::new(7, ms(700)).unwrap()),
            seed,
        );
        run(
            &redis,
            "log",
            SlidingLog::new(Rate::new(6, ms(500)).unwrap()),
            seed,
        );
        run(
            &redis,
            "gcra",
            Gcra::new(Rate::new(4, ms(1)).unwrap())
                .with_burst(6)
                .unwrap(),
            seed,
        );
    }
}

/// Refunds that take part of the newest of several log entries, then checks: the
/// scripted sequence the random one reaches too rarely.
#[test]
fn partial_refunds_of_a_sliding_log_match_the_model() {
    let Some(server) = redis_server::RedisServer::start() else {
        return;
    };
    let redis = server.backend(Duration::from_secs(5));
    let alg = SlidingLog::new(Rate::new(10, Duration::from_secs(1)).unwrap());
    let policy = one_scope("partial-refunds", alg);
    let mut state = alg.fresh();
    let t0 = 4_000_000_000_000_000u64; // µs, far ahead
    let ops: [(u64, Option<u64>, u64); 8] = [
        (0, None, 2),
        (1_000, None, 3),
        (2_000, None, 4),
        (2_000, Some(2), 0), // part of the newest entry
        (3_000, None, 3),
        (3_000, Some(4), 0), // all of the newest and part of the one before
        (1_001_000, None, 4),
        (1_500_000, None, 10),
    ];
    for (at, refund, cost) in ops {
        let (now_us, now_ns) = (t0 + at, (t0 + at) * 1_000);
        if let Some(back) = refund {
            alg.refund(&mut state, now_ns, back);
            policy.refund_at_micros(&redis, &7, back, now_us).unwrap();
        }
        let model = alg.decide(&mut state, now_ns, cost);
        if model.is_allowed() {
            alg.commit(&mut state, now_ns, cost);
        }
        let d = policy
            .check_at_micros(&redis, &7, cost, true, now_us)
            .unwrap();
        assert_eq!(
            fields(&d.scope("s").unwrap().decision),
            fields(&model),
            "at {at}"
        );
    }
}

/// A key that never goes idle carries its log's running totals far: past 2^53 doubles
/// would stop counting units. The script rebases them first; decisions stay exact.
#[test]
fn sliding_log_totals_stay_exact_past_two_to_the_53() {
    let Some(server) = redis_server::RedisServer::start() else {
        return;
    };
    let redis = server.backend(Duration::from_secs(5));
    let n = 1u64 << 52;
    let w = Duration::from_secs(60 * 86_400);
    let alg = SlidingLog::new(Rate::new(n, w).unwrap());
    let policy = one_scope("big-totals", alg);
    let w_us = w.as_micros() as u64;
    let t0 = 4_000_000_000_000_000u64;
    let mut state = alg.fresh();
    let half = n / 2;
    let mut ops = vec![
        (t0, half),
        (t0 + w_us / 2, half),
        (t0 + w_us, half),
        (t0 + 3 * w_us / 2, half),
    ];
    ops.extend((0..6).map(|i| (t0 + 2 * w_us + i, 1)));
    ops.extend([(t0 + 2 * w_us + 9, 0), (t0 + 5 * w_us / 2, half)]);
    for (i, (at, cost)) in ops.into_iter().enumerate() {
        let model = alg.decide(&mut state, at * 1_000, cost);
        if model.is_allowed() {
            alg.commit(&mut state, at * 1_000, cost);
        }
        let d = policy.check_at_micros(&redis, &1, cost, true, at).unwrap();
        assert_eq!(
            fields(&d.scope("s").unwrap().decision),
            fields(&model),
            "op {i}"
        );
    }
}
