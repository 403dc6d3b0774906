//! Every algorithm against a small, obviously-correct reference model.
//!
//! The models keep the full history of admitted `(time, cost)` per key (minus refunds,
//! newest first) and count by filtering it; retry-after and reset-after are found by brute
//! force, scanning forward one nanosecond at a time for the first instant at which the
//! request would pass, or the key would be back to full, with no other traffic. GCRA is
//! modelled as a leaky bucket: a water level that drains one nanosecond per nanosecond.
//! Windows are tiny (tens to hundreds of nanoseconds) so that scans stay cheap.

use std::collections::HashMap;
use std::time::Duration;

use proptest::prelude::*;
use ratewarden::algorithm::Algorithm;
use ratewarden::{
    Anchor, CheckError, Clock, Decision, FixedWindow, Gcra, KeyedLimiter, Rate, SlidingLog,
    SlidingWindow,
};

/// What a check should return.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Expect {
    allowed: bool,
    limit: u64,
    remaining: u64,
    reset_after: u64,
    retry_after: Option<u64>,
}

fn observed(d: &Decision) -> Expect {
    Expect {
        allowed: d.is_allowed(),
        limit: d.limit(),
        remaining: d.remaining(),
        reset_after: d.reset_after_nanos(),
        retry_after: d.retry_after().map(|r| r.as_nanos() as u64),
    }
}

/// A reference model of one key.
trait Model: Clone {
    fn capacity(&self) -> u64;
    /// Units in use at `t` if nothing else happens, as an exact fraction `num / den`.
    fn used(&self, t: u64) -> (u128, u128);
    /// Whether a request of `cost` would pass at `t`.
    fn passes(&self, t: u64, cost: u64) -> bool;
    fn admit(&mut self, t: u64, cost: u64);
    fn refund(&mut self, t: u64, cost: u64);
    fn limit(&self) -> u64;
    /// How far ahead scans may have to look.
    fn horizon(&self) -> u64;

    fn remaining(&self, t: u64) -> u64 {
        let (num, den) = self.used(t);
        let limit = u128::from(self.limit());
        ((limit * den).saturating_sub(num) / den) as u64
    }

    fn decide(&mut self, now: u64, cost: u64, commit: bool) -> Result<Expect, CheckError> {
        if cost > self.capacity() {
            return Err(CheckError::CostExceedsCapacity {
                cost,
                capacity: self.capacity(),
            });
        }
        let allowed = self.passes(now, cost);
        let mut after = self.clone();
        if allowed {
            after.admit(now, cost);
        }
        let scan = |f: &dyn Fn(u64) -> bool| -> u64 {
            (now..=now + self.horizon())
                .find(|&t| f(t))
                .expect("within the horizon")
                - now
        };
        let reset_after = scan(&|t| after.used(t).0 == 0);
        let retry_after = (!allowed).then(|| scan(&|t| self.passes(t, cost)));
        let expect = Expect {
            allowed,
            limit: self.limit(),
            remaining: after.remaining(now),
            reset_after,
            retry_after,
        };
        if commit {
            *self = after;
        }
        Ok(expect)
    }
}

/// History of admitted requests, newest last.
#[derive(Clone, Debug, Default)]
struct History(Vec<(u64, u64)>);

impl History {
    fn sum(&self, keep: impl Fn(u64) -> bool) -> u64 {
        self.0
            .iter()
            .filter(|(t, _)| keep(*t))
            .map(|(_, c)| c)
            .sum()
    }

    /// Takes `cost` back from the newest entries that `live` accepts.
    fn refund(&mut self, mut cost: u64, live: impl Fn(u64) -> bool) {
        for (t, c) in self.0.iter_mut().rev() {
            if cost == 0 {
                break;
            }
            if live(*t) {
                let take = cost.min(*c);
                *c -= take;
                cost -= take;
            }
        }
        self.0.retain(|(_, c)| *c > 0);
    }
}

#[derive(Clone, Debug)]
struct FixedModel {
    n: u64,
    w: u64,
    h: History,
}

impl Model for FixedModel {
    fn capacity(&self) -> u64 {
        self.n
    }
    fn limit(&self) -> u64 {
        self.n
    }
    fn horizon(&self) -> u64 {
        2 * self.w
    }
    fn used(&self, t: u64) -> (u128, u128) {
        (self.h.sum(|s| s / self.w == t / self.w).into(), 1)
    }
    fn passes(&self, t: u64, cost: u64) -> bool {
        self.used(t).0 as u64 + cost <= self.n
    }
    fn admit(&mut self, t: u64, cost: u64) {
        self.h.0.push((t, cost));
    }
    fn refund(&mut self, t: u64, cost: u64) {
        let w = self.w;
        self.h.refund(cost, |s| s / w == t / w);
    }
}

/// Windows open at the first counted request and close `w` later, or when refunds
/// leave nothing counted.
#[derive(Clone, Debug)]
struct FirstRequestModel {
    n: u64,
    w: u64,
    open: Option<(u64, u64)>,
}

impl FirstRequestModel {
    fn window_at(&self, t: u64) -> Option<(u64, u64)> {
        self.open
            .filter(|&(start, count)| count > 0 && t >= start && t < start + self.w)
    }
}

impl Model for FirstRequestModel {
    fn capacity(&self) -> u64 {
        self.n
    }
    fn limit(&self) -> u64 {
        self.n
    }
    fn horizon(&self) -> u64 {
        2 * self.w
    }
    fn used(&self, t: u64) -> (u128, u128) {
        (self.window_at(t).map_or(0, |(_, c)| c).into(), 1)
    }
    fn passes(&self, t: u64, cost: u64) -> bool {
        self.used(t).0 as u64 + cost <= self.n
    }
    fn admit(&mut self, t: u64, cost: u64) {
        if cost == 0 {
            return;
        }
        self.open = Some(match self.window_at(t) {
            Some((start, count)) => (start, count + cost),
            None => (t, cost),
        });
    }
    fn refund(&mut self, t: u64, cost: u64) {
        self.open = self.window_at(t).map(|(s, c)| (s, c.saturating_sub(cost)));
    }
}

#[derive(Clone, Debug)]
struct LogModel {
    n: u64,
    w: u64,
    h: History,
}

impl Model for LogModel {
    fn capacity(&self) -> u64 {
        self.n
    }
    fn limit(&self) -> u64 {
        self.n
    }
    fn horizon(&self) -> u64 {
        self.w + 1
    }
    fn used(&self, t: u64) -> (u128, u128) {
        (self.h.sum(|s| s <= t && t < s + self.w).into(), 1)
    }
    fn passes(&self, t: u64, cost: u64) -> bool {
        self.used(t).0 as u64 + cost <= self.n
    }
    fn admit(&mut self, t: u64, cost: u64) {
        self.h.0.push((t, cost));
    }
    fn refund(&mut self, t: u64, cost: u64) {
        let w = self.w;
        self.h.refund(cost, |s| s <= t && t < s + w);
    }
}

/// Estimate = prev × (W − e) / W + cur, from the history's counts per aligned window.
#[derive(Clone, Debug)]
struct CounterModel {
    n: u64,
    w: u64,
    h: History,
}

impl Model for CounterModel {
    fn capacity(&self) -> u64 {
        self.n
    }
    fn limit(&self) -> u64 {
        self.n
    }
    fn horizon(&self) -> u64 {
        2 * self.w + 1
    }
    fn used(&self, t: u64) -> (u128, u128) {
        let k = t / self.w;
        let cur = self.h.sum(|s| s / self.w == k) as u128;
        let prev = self.h.sum(|s| s / self.w + 1 == k) as u128;
        let e = (t % self.w) as u128;
        let w = self.w as u128;
        (prev * (w - e) + cur * w, w)
    }
    fn passes(&self, t: u64, cost: u64) -> bool {
        let (num, den) = self.used(t);
        num + cost as u128 * den <= self.n as u128 * den
    }
    fn admit(&mut self, t: u64, cost: u64) {
        self.h.0.push((t, cost));
    }
    fn refund(&mut self, t: u64, cost: u64) {
        let w = self.w;
        // the current window first, then the previous one
        let in_cur = self.h.sum(|s| s / w == t / w);
        self.h.refund(cost, |s| s / w == t / w);
        self.h
            .refund(cost.saturating_sub(in_cur), |s| s / w + 1 == t / w);
    }
}

/// A leaky bucket: `level` nanoseconds of work that drains in real time; a request adds
/// `cost × T` and must keep the level within `burst × T`.
#[derive(Clone, Debug)]
struct BucketModel {
    t: u64,
    burst: u64,
    level: u64,
    at: u64,
}

impl BucketModel {
    fn level_at(&self, t: u64) -> u64 {
        self.level.saturating_sub(t.saturating_sub(self.at))
    }
}

impl Model for BucketModel {
    fn capacity(&self) -> u64 {
        self.burst
    }
    fn limit(&self) -> u64 {
        self.burst
    }
    fn horizon(&self) -> u64 {
        2 * self.burst * self.t + 1
    }
    fn used(&self, t: u64) -> (u128, u128) {
        // ceil(level / T) units are still in the bucket
        (self.level_at(t).div_ceil(self.t).into(), 1)
    }
    fn remaining(&self, t: u64) -> u64 {
        (self.burst * self.t - self.level_at(t).min(self.burst * self.t)) / self.t
    }
    fn passes(&self, t: u64, cost: u64) -> bool {
        self.level_at(t) + cost * self.t <= self.burst * self.t
    }
    fn admit(&mut self, t: u64, cost: u64) {
        self.level = self.level_at(t) + cost * self.t;
        self.at = t;
    }
    fn refund(&mut self, t: u64, cost: u64) {
        self.level = self.level_at(t).saturating_sub(cost * self.t);
        self.at = t;
    }
}

#[derive(Debug, Clone)]
enum Op {
    Advance(u64),
    Check(u8, u64),
    Peek(u8, u64),
    Refund(u8, u64),
}

fn ops(max_cost: u64, max_step: u64) -> impl Strategy<Value = Vec<Op>> {
    let op = prop_oneof![
        2 => (0..=max_step).prop_map(Op::Advance),
        5 => (0u8..3, 0..=max_cost).prop_map(|(k, c)| Op::Check(k, c)),
        1 => (0u8..3, 0..=max_cost).prop_map(|(k, c)| Op::Peek(k, c)),
        1 => (0u8..3, 0..=max_cost).prop_map(|(k, c)| Op::Refund(k, c)),
    ];
    prop::collection::vec(op, 1..120)
}

/// Drives the same operations through a keyed limiter and one model per key.
fn run<A: Algorithm, M: Model>(alg: A, model: M, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let (clock, mock) = Clock::mock();
    mock.increment(Duration::from_nanos(1_000_003));
    let limiter: KeyedLimiter<u8, A> = KeyedLimiter::with_clock(alg, clock.clone());
    let mut models: HashMap<u8, M> = HashMap::new();
    for op in ops {
        let now = clock.now();
        match op {
            Op::Advance(n) => mock.increment(Duration::from_nanos(n)),
            Op::Check(k, c) | Op::Peek(k, c) => {
                let commit = matches!(op, Op::Check(..));
                let m = models.entry(k).or_insert_with(|| model.clone());
                let want = m.decide(now, c, commit);
                let got = if commit {
                    limiter.check(&k, c)
                } else {
                    limiter.peek(&k, c)
                };
                prop_assert_eq!(got.map(|d| observed(&d)), want, "{:?} at {}", op, now);
            }
            Op::Refund(k, c) => {
                limiter.refund(&k, c);
                if let Some(m) = models.get_mut(&k) {
                    m.refund(now, c);
                }
            }
        }
    }
    Ok(())
}

fn rate(n: u64, w: u64) -> Rate {
    Rate::new(n, Duration::from_nanos(w)).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn fixed_window_clock_aligned(n in 1u64..6, w in 10u64..120, ops in ops(7, 150)) {
        run(FixedWindow::new(rate(n, w)), FixedModel { n, w, h: History::default() }, ops)?;
    }

    #[test]
    fn fixed_window_first_request(n in 1u64..6, w in 10u64..120, ops in ops(7, 150)) {
        run(
            FixedWindow::new(rate(n, w)).anchored(Anchor::FirstRequest),
            FirstRequestModel { n, w, open: None },
            ops,
        )?;
    }

    #[test]
    fn sliding_log(n in 1u64..6, w in 10u64..120, ops in ops(7, 150)) {
        run(SlidingLog::new(rate(n, w)), LogModel { n, w, h: History::default() }, ops)?;
    }

    #[test]
    fn sliding_window_counter(n in 1u64..6, w in 10u64..120, ops in ops(7, 150)) {
        run(SlidingWindow::new(rate(n, w)), CounterModel { n, w, h: History::default() }, ops)?;
    }

    #[test]
    fn gcra_default_burst(n in 1u64..6, w in 10u64..120, ops in ops(7, 150)) {
        let alg = Gcra::new(rate(n, w));
        let t = alg.interval_nanos();
        run(alg, BucketModel { t, burst: n, level: 0, at: 0 }, ops)?;
    }

    #[test]
    fn gcra_explicit_burst(n in 1u64..6, w in 10u64..120, burst in 1u64..9, ops in ops(10, 150)) {
        let alg = Gcra::new(rate(n, w)).with_burst(burst).unwrap();
        let t = alg.interval_nanos();
        run(alg, BucketModel { t, burst, level: 0, at: 0 }, ops)?;
    }
}
