//! Every algorithm against a naive reference model.
//!
//! Random sequences of operations (advance the mock clock; check, peek or refund some cost
//! for one of a few keys) are run through real limiters and through a model written here
//! from DESIGN.md's "Exact semantics", and every decision must match field for field.
//!
//! The models share nothing with the crate's arithmetic. Each keeps the full history of a
//! key (what was admitted, when) and answers a single question: *would a request of this
//! cost pass at instant `t`, given this history and nothing else?* Everything else follows
//! from that question by brute force:
//!
//! - `remaining` is the largest cost that would pass right now;
//! - `retry_after` is the first instant after now, scanned one nanosecond at a time, at
//!   which the denied request would pass;
//! - `reset_after` is the first instant from now, scanned the same way, at which a request
//!   of the full capacity would pass (the key is back to fresh).
//!
//! Windows are tiny (tens to a couple of thousand nanoseconds) so the scans stay cheap.

use std::fmt::Debug;
use std::time::Duration;

use proptest::prelude::*;
use ratewarden::algorithm::Algorithm;
use ratewarden::{
    Anchor, CheckError, Clock, Decision, FixedWindow, Gcra, KeyedLimiter, Nanos, Rate, SlidingLog,
    SlidingWindow, UnkeyedLimiter,
};

/// How many distinct keys the operations spread over.
const KEYS: u8 = 3;

/// The observable part of a decision, as the model computes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Outcome {
    allowed: bool,
    limit: u64,
    remaining: u64,
    window: u64,
    reset_after: u64,
    retry_after: Option<u64>,
}

impl From<Decision> for Outcome {
    fn from(d: Decision) -> Outcome {
        Outcome {
            allowed: d.is_allowed(),
            limit: d.limit(),
            remaining: d.remaining(),
            window: d.window_nanos(),
            reset_after: d.reset_after_nanos(),
            retry_after: d
                .retry_after()
                .map(|r| u64::try_from(r.as_nanos()).unwrap()),
        }
    }
}

/// One thing that happened to a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Event {
    /// `cost` units were admitted at `at`.
    Admit { at: Nanos, cost: u64 },
    /// `cost` units were refunded at `at` (only the GCRA model records refunds as events;
    /// the others edit the admissions they give back).
    Refund { at: Nanos, cost: u64 },
}

/// The admissions in a history, oldest first.
fn admissions(history: &[Event]) -> impl Iterator<Item = (Nanos, u64)> + '_ {
    history.iter().filter_map(|e| match *e {
        Event::Admit { at, cost } => Some((at, cost)),
        Event::Refund { .. } => None,
    })
}

/// Takes back up to `cost` units from the newest admissions for which `counts(at)` holds,
/// dropping admissions that are given back entirely.
fn take_back_newest(history: &mut Vec<Event>, mut cost: u64, counts: impl Fn(Nanos) -> bool) {
    for event in history.iter_mut().rev() {
        if cost == 0 {
            break;
        }
        if let Event::Admit { at, cost: admitted } = event {
            if counts(*at) {
                let take = cost.min(*admitted);
                *admitted -= take;
                cost -= take;
            }
        }
    }
    history.retain(|e| !matches!(e, Event::Admit { cost: 0, .. }));
}

/// A reference model of one algorithm, for one key.
trait Model: Debug {
    /// The limit reported in decisions; also the largest cost a request may have.
    fn limit(&self) -> u64;
    /// The rate's window, reported in decisions.
    fn window(&self) -> u64;
    /// Whether a request of `cost` at `t` would be admitted, given `history` and nothing
    /// else. `t` is never earlier than the last event.
    fn fits(&self, history: &[Event], t: Nanos, cost: u64) -> bool;
    /// Gives back up to `cost` at `t`.
    fn refund(&self, history: &mut Vec<Event>, t: Nanos, cost: u64);
    /// No answer of this model lies further than this from now.
    fn horizon(&self) -> u64;
}

/// The first instant in `from..=from + horizon` at which `pass` holds.
fn first_instant(from: Nanos, horizon: u64, pass: impl Fn(Nanos) -> bool) -> Nanos {
    (from..=from + horizon)
        .find(|&t| pass(t))
        .unwrap_or_else(|| panic!("nothing passes within {horizon} ns of {from}"))
}

/// What a check of `cost` at `now` returns according to the model, and whether it admits.
fn expected<M: Model>(
    model: &M,
    history: &[Event],
    now: Nanos,
    cost: u64,
) -> Result<Outcome, CheckError> {
    let n = model.limit();
    if cost > n {
        return Err(CheckError::CostExceedsCapacity { cost, capacity: n });
    }
    let horizon = model.horizon();
    let remaining = |h: &[Event]| (0..=n).rev().find(|&r| model.fits(h, now, r)).unwrap();
    let reset_after = |h: &[Event]| first_instant(now, horizon, |t| model.fits(h, t, n)) - now;
    if model.fits(history, now, cost) {
        let mut after = history.to_vec();
        if cost > 0 {
            after.push(Event::Admit { at: now, cost });
        }
        Ok(Outcome {
            allowed: true,
            limit: n,
            remaining: remaining(&after),
            window: model.window(),
            reset_after: reset_after(&after),
            retry_after: None,
        })
    } else {
        let retry_at = first_instant(now + 1, horizon, |t| model.fits(history, t, cost));
        Ok(Outcome {
            allowed: false,
            limit: n,
            remaining: remaining(history),
            window: model.window(),
            reset_after: reset_after(history),
            retry_after: Some(retry_at - now),
        })
    }
}

/// Fixed windows of `w`: `[kW, (k+1)W)` for the clock anchor; for the first-request anchor
/// a window opens at an admission that falls in no open window.
#[derive(Debug)]
struct FixedWindowModel {
    n: u64,
    w: u64,
    anchor: Anchor,
}

impl FixedWindowModel {
    /// The window that `t` falls in, as a range of admission times; `None` when no window
    /// is open (first-request anchor only).
    fn window_of(&self, history: &[Event], t: Nanos) -> Option<std::ops::Range<Nanos>> {
        match self.anchor {
            Anchor::Clock => {
                let k = t / self.w;
                Some(k * self.w..(k + 1) * self.w)
            }
            Anchor::FirstRequest => {
                let mut open: Option<std::ops::Range<Nanos>> = None;
                for (at, _) in admissions(history) {
                    if !open.as_ref().is_some_and(|win| win.contains(&at)) {
                        open = Some(at..at + self.w);
                    }
                }
                open.filter(|win| win.contains(&t))
            }
        }
    }

    fn count(&self, history: &[Event], t: Nanos) -> u64 {
        let Some(win) = self.window_of(history, t) else {
            return 0;
        };
        admissions(history)
            .filter(|(at, _)| win.contains(at))
            .map(|(_, cost)| cost)
            .sum()
    }
}

impl Model for FixedWindowModel {
    fn limit(&self) -> u64 {
        self.n
    }
    fn window(&self) -> u64 {
        self.w
    }
    fn fits(&self, history: &[Event], t: Nanos, cost: u64) -> bool {
        self.count(history, t) + cost <= self.n
    }
    fn refund(&self, history: &mut Vec<Event>, t: Nanos, cost: u64) {
        if let Some(win) = self.window_of(history, t) {
            take_back_newest(history, cost, |at| win.contains(&at));
        }
    }
    fn horizon(&self) -> u64 {
        self.w + 1
    }
}

/// Admissions count while `at <= t < at + W`.
#[derive(Debug)]
struct SlidingLogModel {
    n: u64,
    w: u64,
}

impl Model for SlidingLogModel {
    fn limit(&self) -> u64 {
        self.n
    }
    fn window(&self) -> u64 {
        self.w
    }
    fn fits(&self, history: &[Event], t: Nanos, cost: u64) -> bool {
        let in_window: u64 = admissions(history)
            .filter(|&(at, _)| at <= t && t < at + self.w)
            .map(|(_, cost)| cost)
            .sum();
        in_window + cost <= self.n
    }
    fn refund(&self, history: &mut Vec<Event>, t: Nanos, cost: u64) {
        take_back_newest(history, cost, |at| t < at + self.w);
    }
    fn horizon(&self) -> u64 {
        self.w + 1
    }
}

/// Epoch-aligned windows; the previous window's admissions count in proportion to how much
/// of it still overlaps the rolling window ending at `t`.
#[derive(Debug)]
struct SlidingWindowModel {
    n: u64,
    w: u64,
}

impl SlidingWindowModel {
    /// Units admitted in the `k`-th window `[kW, (k+1)W)`.
    fn admitted_in(&self, history: &[Event], k: u64) -> u64 {
        admissions(history)
            .filter(|(at, _)| at / self.w == k)
            .map(|(_, cost)| cost)
            .sum()
    }
}

impl Model for SlidingWindowModel {
    fn limit(&self) -> u64 {
        self.n
    }
    fn window(&self) -> u64 {
        self.w
    }
    fn fits(&self, history: &[Event], t: Nanos, cost: u64) -> bool {
        let k = t / self.w;
        let into = t - k * self.w;
        let prev = k.checked_sub(1).map_or(0, |p| self.admitted_in(history, p));
        let cur = self.admitted_in(history, k);
        // estimate + cost <= n, everything multiplied by W to stay in integers
        prev * (self.w - into) + (cur + cost) * self.w <= self.n * self.w
    }
    fn refund(&self, history: &mut Vec<Event>, t: Nanos, cost: u64) {
        let k = t / self.w;
        take_back_newest(history, cost, |at| at / self.w + 1 >= k);
    }
    fn horizon(&self) -> u64 {
        2 * self.w + 1
    }
}

/// A leaky bucket: each admitted unit pours `T` nanoseconds of water in, the bucket drains
/// one nanosecond of water per nanosecond and holds at most `b × T`; a refund pours water
/// back out (never below empty).
#[derive(Debug)]
struct LeakyBucketModel {
    b: u64,
    w: u64,
    /// The emission interval: the smallest `T` with `n × T >= W`.
    t: u64,
}

impl LeakyBucketModel {
    fn new(n: u64, w: u64, b: u64) -> LeakyBucketModel {
        let t = (1..).find(|t| n * t >= w).unwrap();
        LeakyBucketModel { b, w, t }
    }

    /// Water in the bucket at `t`.
    fn level(&self, history: &[Event], t: Nanos) -> u64 {
        let (mut level, mut last) = (0u64, 0u64);
        for event in history {
            let (at, poured) = match *event {
                Event::Admit { at, cost } => (at, cost as i64),
                Event::Refund { at, cost } => (at, -(cost as i64)),
            };
            level = level.saturating_sub(at - last);
            last = at;
            level = level.saturating_add_signed(poured * self.t as i64);
        }
        level.saturating_sub(t - last)
    }
}

impl Model for LeakyBucketModel {
    fn limit(&self) -> u64 {
        self.b
    }
    fn window(&self) -> u64 {
        self.w
    }
    fn fits(&self, history: &[Event], t: Nanos, cost: u64) -> bool {
        self.level(history, t) + cost * self.t <= self.b * self.t
    }
    fn refund(&self, history: &mut Vec<Event>, t: Nanos, cost: u64) {
        history.push(Event::Refund { at: t, cost });
    }
    fn horizon(&self) -> u64 {
        self.b * self.t + 1
    }
}

/// How far the clock moves before an operation.
#[derive(Debug, Clone, Copy)]
enum Advance {
    /// Not at all.
    Zero,
    /// A few nanoseconds.
    Nanos(u64),
    /// A fraction of the window, in thousandths (up to 3.5 windows).
    Permille(u64),
    /// To the next multiple of the window, give or take a nanosecond.
    ToBoundary(i64),
    /// By the last denial's retry-after, give or take a nanosecond.
    ByLastRetry(i64),
    /// Hundreds of windows at once.
    Far(u64),
    /// Backwards: the limiters' clock must treat this as no time passing.
    Back(u64),
}

/// How much an operation costs.
#[derive(Debug, Clone, Copy)]
enum Cost {
    Exactly(u64),
    /// Anything from 0 to one above the capacity.
    Any(u8),
}

#[derive(Debug, Clone, Copy)]
enum Action {
    Check,
    Peek,
    Refund,
}

#[derive(Debug, Clone, Copy)]
struct Op {
    advance: Advance,
    key: u8,
    cost: Cost,
    action: Action,
}

fn op() -> impl Strategy<Value = Op> {
    let advance = prop_oneof![
        4 => Just(Advance::Zero),
        2 => (1u64..=5).prop_map(Advance::Nanos),
        3 => (0u64..=3_500).prop_map(Advance::Permille),
        1 => (-1i64..=1).prop_map(Advance::ToBoundary),
        2 => (-1i64..=1).prop_map(Advance::ByLastRetry),
        1 => (100u64..=1_000).prop_map(Advance::Far),
        1 => (1u64..=3_000).prop_map(Advance::Back),
    ];
    let cost = prop_oneof![
        4 => Just(Cost::Exactly(1)),
        1 => Just(Cost::Exactly(0)),
        3 => any::<u8>().prop_map(Cost::Any),
    ];
    let action = prop_oneof![
        6 => Just(Action::Check),
        2 => Just(Action::Peek),
        1 => Just(Action::Refund),
    ];
    (advance, 0..KEYS, cost, action).prop_map(|(advance, key, cost, action)| Op {
        advance,
        key,
        cost,
        action,
    })
}

fn ops() -> impl Strategy<Value = Vec<Op>> {
    prop::collection::vec(op(), 1..120)
}

/// A window length: mostly short, sometimes up to 2 000 ns.
fn window() -> impl Strategy<Value = u64> {
    prop_oneof![3 => 10u64..=100, 1 => 100u64..=2_000]
}

/// Runs `ops` through a keyed limiter, a keyed limiter with a single shard (so idle keys
/// are swept often), and an unkeyed limiter standing in for key 0, all on one mock clock,
/// and checks each decision against `model`.
fn run<A: Algorithm, M: Model>(alg: A, model: &M, ops: &[Op]) -> Result<(), TestCaseError> {
    let (clock, mock) = Clock::mock();
    let keyed: KeyedLimiter<u8, A> = KeyedLimiter::with_clock(alg.clone(), clock.clone());
    let swept: KeyedLimiter<u8, A> = KeyedLimiter::builder(alg.clone())
        .clock(clock.clone())
        .shards(1)
        .build();
    let unkeyed = UnkeyedLimiter::with_clock(alg, clock.clone());
    let mut histories = vec![Vec::new(); usize::from(KEYS)];
    let (w, cap) = (model.window(), model.limit());
    let mut last_retry = 0u64;
    // What the mock reads (it can go backwards) and what the limiters' clock should read:
    // the latest reading so far.
    let (mut raw, mut now) = (0u64, 0u64);

    for (i, op) in ops.iter().enumerate() {
        // Plain steps move the mock, so after a step back the clock stands still for a
        // while; the two exact targets are reached from the clock's reading.
        let target = |delta: u64, d: i64| (now + delta).saturating_add_signed(d).max(raw);
        match op.advance {
            Advance::Zero => {}
            Advance::Nanos(n) => raw += n,
            Advance::Permille(p) => raw += w * p / 1_000,
            Advance::Far(windows) => raw += windows * w + 1,
            Advance::ToBoundary(d) => raw = target((now / w + 1) * w - now, d),
            Advance::ByLastRetry(d) => raw = target(last_retry, d),
            // quanta's mock does not go below its own zero
            Advance::Back(back) => raw -= back.min(raw),
        }
        let read = mock.value();
        if raw >= read {
            mock.increment(Duration::from_nanos(raw - read));
        } else {
            mock.decrement(Duration::from_nanos(read - raw));
        }
        now = now.max(raw);
        prop_assert_eq!(clock.now(), now);

        let key = op.key;
        let cost = match op.cost {
            Cost::Exactly(c) => c,
            Cost::Any(c) => u64::from(c) % (cap + 2),
        };
        let history = &mut histories[usize::from(key)];
        let ctx = format!("op #{i} {op:?} (cost {cost}) at {now}; history {history:?}");

        match op.action {
            Action::Refund => {
                keyed.refund(&key, cost);
                swept.refund(&key, cost);
                if key == 0 {
                    unkeyed.refund(cost);
                }
                model.refund(history, now, cost);
            }
            Action::Check | Action::Peek => {
                let want = expected(model, history, now, cost);
                let check = matches!(op.action, Action::Check);
                let got = if check {
                    keyed.check(&key, cost)
                } else {
                    keyed.peek(&key, cost)
                };
                prop_assert_eq!(got.map(Outcome::from), want, "keyed: {}", ctx);
                let got = if check {
                    swept.check(&key, cost)
                } else {
                    swept.peek(&key, cost)
                };
                prop_assert_eq!(got.map(Outcome::from), want, "one shard: {}", ctx);
                if key == 0 {
                    let got = if check {
                        unkeyed.check(cost)
                    } else {
                        unkeyed.peek(cost)
                    };
                    prop_assert_eq!(got.map(Outcome::from), want, "unkeyed: {}", ctx);
                }
                if let Ok(outcome) = want {
                    if check && outcome.allowed && cost > 0 {
                        history.push(Event::Admit { at: now, cost });
                    }
                    if let Some(retry) = outcome.retry_after {
                        last_retry = retry;
                    }
                }
            }
        }
    }
    Ok(())
}

/// 256 cases per property by default; `PROPTEST_CASES=N` runs more.
fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    ProptestConfig {
        cases,
        max_shrink_iters: 4_096,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn fixed_window_clock_anchor_matches_model(n in 1u64..=6, w in window(), ops in ops()) {
        let alg = FixedWindow::new(Rate::new(n, Duration::from_nanos(w)).unwrap());
        run(alg, &FixedWindowModel { n, w, anchor: Anchor::Clock }, &ops)?;
    }

    #[test]
    fn fixed_window_first_request_anchor_matches_model(
        n in 1u64..=6,
        w in window(),
        ops in ops(),
    ) {
        let alg = FixedWindow::new(Rate::new(n, Duration::from_nanos(w)).unwrap())
            .anchored(Anchor::FirstRequest);
        run(alg, &FixedWindowModel { n, w, anchor: Anchor::FirstRequest }, &ops)?;
    }

    #[test]
    fn sliding_log_matches_model(n in 1u64..=6, w in window(), ops in ops()) {
        let alg = SlidingLog::new(Rate::new(n, Duration::from_nanos(w)).unwrap());
        run(alg, &SlidingLogModel { n, w }, &ops)?;
    }

    #[test]
    fn sliding_window_matches_model(n in 1u64..=6, w in window(), ops in ops()) {
        let alg = SlidingWindow::new(Rate::new(n, Duration::from_nanos(w)).unwrap());
        run(alg, &SlidingWindowModel { n, w }, &ops)?;
    }

    #[test]
    fn gcra_default_burst_matches_model(n in 1u64..=6, w in window(), ops in ops()) {
        let alg = Gcra::new(Rate::new(n, Duration::from_nanos(w)).unwrap());
        prop_assert_eq!(alg.limit(), n);
        run(alg, &LeakyBucketModel::new(n, w, n), &ops)?;
    }

    #[test]
    fn gcra_explicit_burst_matches_model(
        n in 1u64..=6,
        b in 1u64..=10,
        w in window(),
        ops in ops(),
    ) {
        let alg = Gcra::new(Rate::new(n, Duration::from_nanos(w)).unwrap())
            .with_burst(b)
            .unwrap();
        run(alg, &LeakyBucketModel::new(n, w, b), &ops)?;
    }
}
