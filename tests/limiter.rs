//! The limiters as a user sees them: threads, eviction, the key cap and bad input.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ratewarden::algorithm::Algorithm;
use ratewarden::{
    Anchor, CheckError, Clock, Decision, FixedWindow, Gcra, KeyedLimiter, OnFull, Rate, SlidingLog,
    SlidingWindow, UnkeyedLimiter, IDLE_GRACE,
};

fn rate(s: &str) -> Rate {
    s.parse().unwrap()
}

/// Every algorithm at the given rate.
fn each_algorithm(
    r: Rate,
    mut f: impl FnMut(&str, &dyn Fn() -> Box<dyn Fn(u64) -> bool + Send + Sync>),
) {
    fn keyed<A: Algorithm>(alg: A) -> Box<dyn Fn() -> Box<dyn Fn(u64) -> bool + Send + Sync>> {
        Box::new(move || {
            let (clock, _mock) = Clock::mock();
            let limiter = Arc::new(KeyedLimiter::<u64, A>::with_clock(alg.clone(), clock));
            Box::new(move |key| limiter.check(&key, 1).unwrap().is_allowed())
        })
    }
    let _ = &mut f;
    f("fixed", &*keyed(FixedWindow::new(r)));
    f(
        "fixed-first",
        &*keyed(FixedWindow::new(r).anchored(Anchor::FirstRequest)),
    );
    f("log", &*keyed(SlidingLog::new(r)));
    f("counter", &*keyed(SlidingWindow::new(r)));
    f("gcra", &*keyed(Gcra::new(r)));
}

#[test]
fn threads_hammering_one_key_get_exactly_the_limit() {
    each_algorithm(rate("1000/min"), |name, make| {
        let check: Arc<dyn Fn(u64) -> bool + Send + Sync> = Arc::from(make());
        let admitted = Arc::new(AtomicU64::new(0));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let (check, admitted) = (check.clone(), admitted.clone());
                std::thread::spawn(move || {
                    for _ in 0..1_000 {
                        if check(7) {
                            admitted.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(admitted.load(Ordering::Relaxed), 1_000, "{name}");
    });
}

#[test]
fn threads_on_many_overlapping_keys_get_exactly_the_limit_per_key() {
    each_algorithm(rate("50/hour"), |name, make| {
        let check: Arc<dyn Fn(u64) -> bool + Send + Sync> = Arc::from(make());
        let per_key: Arc<Vec<AtomicU64>> = Arc::new((0..200).map(|_| AtomicU64::new(0)).collect());
        let threads: Vec<_> = (0..4u64)
            .map(|t| {
                let (check, per_key) = (check.clone(), per_key.clone());
                std::thread::spawn(move || {
                    for i in 0..20_000u64 {
                        let key = (i * 7 + t * 13) % 200;
                        if check(key) {
                            per_key[key as usize].fetch_add(1, Ordering::Relaxed);
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        for (key, n) in per_key.iter().enumerate() {
            assert_eq!(n.load(Ordering::Relaxed), 50, "{name} key {key}");
        }
    });
}

/// Four threads race on one unkeyed limiter at a frozen instant, with costs of 1 to 3:
/// exactly the limit is admitted, whatever the cell (GCRA's and the windows' version
/// counted words, the sliding log's mutex).
fn unkeyed_is_exact_under_threads<A: ratewarden::algorithm::Algorithm>(name: &str, alg: A) {
    let limit = alg.limit();
    let (clock, _mock) = Clock::mock();
    let limiter = Arc::new(UnkeyedLimiter::with_clock(alg, clock));
    let admitted = Arc::new(AtomicU64::new(0));
    let start = Arc::new(std::sync::Barrier::new(4));
    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            let (limiter, admitted, start) = (limiter.clone(), admitted.clone(), start.clone());
            std::thread::spawn(move || {
                start.wait();
                for i in 0..10_000u64 {
                    // Ones at the end, so that the last units are fought over one by one.
                    let cost = if i < 6_000 { 1 + (i + t) % 3 } else { 1 };
                    if limiter.check(cost).unwrap().is_allowed() {
                        admitted.fetch_add(cost, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(admitted.load(Ordering::Relaxed), limit, "{name}");
    assert_eq!(limiter.peek(0).unwrap().remaining(), 0, "{name}");
}

#[test]
fn unkeyed_limiters_are_exact_under_threads() {
    let r = rate("20000/s");
    unkeyed_is_exact_under_threads("gcra", Gcra::new(r));
    unkeyed_is_exact_under_threads("fixed window", FixedWindow::new(r));
    unkeyed_is_exact_under_threads("sliding window", SlidingWindow::new(r));
    unkeyed_is_exact_under_threads("sliding log", SlidingLog::new(r));
}

#[test]
fn a_million_idle_keys_are_evicted_by_traffic_alone() {
    let (clock, mock) = Clock::mock();
    let limiter: KeyedLimiter<u64> = KeyedLimiter::with_clock(Gcra::new(rate("10/s")), clock);
    for key in 0..1_000_000u64 {
        limiter.check(&key, 1).unwrap();
    }
    assert_eq!(limiter.len(), 1_000_000);
    // One emission interval later every one of those keys is fully replenished; past the
    // eviction grace period they may be dropped.
    mock.increment(Duration::from_millis(100) + IDLE_GRACE);
    let active = 1_000u64;
    for round in 0..800u64 {
        for key in 0..active {
            limiter.check(&(2_000_000 + key), 1).unwrap();
        }
        if round % 100 == 99 {
            mock.increment(Duration::from_millis(100));
        }
    }
    assert!(
        limiter.len() <= 2 * active as usize,
        "{} keys still tracked",
        limiter.len()
    );
    // The active keys kept their state: all of them are mid-window.
    assert!(limiter.peek(&2_000_000, 1).unwrap().remaining() < 9);
}

#[test]
fn eviction_only_drops_what_a_fresh_key_would_equal() {
    let (clock, mock) = Clock::mock();
    let limiter: KeyedLimiter<u64, SlidingLog> =
        KeyedLimiter::with_clock(SlidingLog::new(rate("3/min")), clock);
    for _ in 0..3 {
        limiter.check(&1, 1).unwrap();
    }
    // Plenty of traffic on other keys within the minute: key 1 is not idle.
    for i in 0..50_000u64 {
        limiter.check(&(10 + i % 500), 1).unwrap();
    }
    assert!(limiter.check(&1, 1).unwrap().is_denied());
    mock.increment(Duration::from_secs(60));
    assert!(limiter.check(&1, 1).unwrap().is_allowed());
}

#[test]
fn key_cap_rejects_new_keys_and_keeps_existing_state() {
    let (clock, mock) = Clock::mock();
    let limiter: KeyedLimiter<u64, FixedWindow> =
        KeyedLimiter::builder(FixedWindow::new(rate("2/min")))
            .clock(clock)
            .max_keys(100)
            .build();
    for key in 0..100u64 {
        limiter.check(&key, 2).unwrap();
    }
    for key in 100..10_000u64 {
        assert_eq!(
            limiter.check(&key, 1),
            Err(CheckError::KeyCapReached { max_keys: 100 })
        );
    }
    assert_eq!(limiter.len(), 100);
    // the sprayed keys did not reset anyone's budget
    assert!(limiter.check(&5, 1).unwrap().is_denied());
    // Once the tracked keys are idle, continued traffic reclaims their slots: sweeps at
    // the cap follow the amortised schedule, so within a bounded number of attempts new
    // keys fill all 100 slots again, and never more.
    mock.increment(Duration::from_secs(60) + IDLE_GRACE);
    let admitted = (50_000..51_000u64)
        .filter(|key| limiter.check(key, 1).is_ok_and(|d| d.is_allowed()))
        .count();
    assert_eq!(admitted, 100);
    assert_eq!(limiter.len(), 100);
}

#[test]
fn key_cap_can_fail_open_without_tracking() {
    let (clock, _mock) = Clock::mock();
    let limiter: KeyedLimiter<u64, Gcra> = KeyedLimiter::builder(Gcra::new(rate("2/min")))
        .clock(clock)
        .max_keys(10)
        .on_full(OnFull::AllowUntracked)
        .build();
    for key in 0..10u64 {
        limiter.check(&key, 2).unwrap();
    }
    for _ in 0..5 {
        assert!(limiter.check(&99, 2).unwrap().is_allowed());
    }
    assert_eq!(limiter.len(), 10);
    assert!(limiter.check(&3, 1).unwrap().is_denied());
}

#[test]
fn costs_zero_huge_and_above_capacity() {
    let (clock, _mock) = Clock::mock();
    let limiter: KeyedLimiter<String, SlidingWindow> =
        KeyedLimiter::with_clock(SlidingWindow::new(rate("10/s")), clock);
    // cost 0: allowed, consumes nothing, tracks nothing
    let d = limiter.check("a", 0).unwrap();
    assert!(d.is_allowed());
    assert_eq!(d.remaining(), 10);
    assert_eq!(limiter.len(), 0);
    for cost in [11, u64::MAX] {
        assert_eq!(
            limiter.check("a", cost),
            Err(CheckError::CostExceedsCapacity { cost, capacity: 10 })
        );
        assert_eq!(
            limiter.peek("a", cost),
            Err(CheckError::CostExceedsCapacity { cost, capacity: 10 })
        );
    }
    limiter.refund("a", u64::MAX); // nothing to refund: no effect, no panic
    assert_eq!(limiter.check("a", 10).unwrap().remaining(), 0);
}

#[test]
fn windows_of_years_and_huge_costs_do_not_overflow() {
    let year = Duration::from_secs(365 * 86_400);
    let (clock, mock) = Clock::mock();
    mock.increment(Duration::from_secs(1_800_000_000)); // 2027
    let big = 1_000_000_000_000_000_000; // 10^18 units in 90 years
    let r = Rate::new(big, year * 90).unwrap();
    for_all(r, clock.clone(), |name, check| {
        let d = check(big).unwrap();
        assert!(d.is_allowed(), "{name}");
        let d = check(1).unwrap();
        assert!(d.is_denied(), "{name}");
        assert!(d.retry_after().unwrap() <= year * 90, "{name}");
    });
}

fn for_all(
    r: Rate,
    clock: Clock,
    mut f: impl FnMut(&str, &dyn Fn(u64) -> Result<ratewarden::Decision, CheckError>),
) {
    let fixed = UnkeyedLimiter::with_clock(FixedWindow::new(r), clock.clone());
    f("fixed", &|c| fixed.check(c));
    let log = UnkeyedLimiter::with_clock(SlidingLog::new(r), clock.clone());
    f("log", &|c| log.check(c));
    let counter = UnkeyedLimiter::with_clock(SlidingWindow::new(r), clock.clone());
    f("counter", &|c| counter.check(c));
    let gcra = UnkeyedLimiter::with_clock(Gcra::new(r), clock);
    f("gcra", &|c| gcra.check(c));
}

#[test]
fn a_clock_going_backwards_counts_as_no_time_passing() {
    let (clock, mock) = Clock::mock();
    mock.increment(Duration::from_secs(100));
    for_all(rate("2/s"), clock.clone(), |name, check| {
        assert!(check(2).unwrap().is_allowed(), "{name}");
        let before = check(1).unwrap();
        mock.decrement(Duration::from_secs(50));
        let after = check(1).unwrap();
        assert_eq!(before, after, "{name}");
        mock.increment(Duration::from_secs(50));
    });
}

#[test]
fn explicit_times_at_the_end_of_the_clock_neither_panic_nor_wedge() {
    let r = rate("3/s");
    let near_end = u64::MAX - 5;
    fn drive<A: Algorithm>(alg: A, at: u64) -> Vec<bool> {
        let limiter: KeyedLimiter<u8, A> = KeyedLimiter::new(alg);
        let mut seen = Vec::new();
        for t in [0, at, at + 2, u64::MAX, 1] {
            for _ in 0..4 {
                seen.push(limiter.check_at(&1, 1, t).unwrap().is_allowed());
            }
            limiter.refund_at(&1, 1, t);
            let _ = limiter.peek_at(&1, 3, t).unwrap();
        }
        seen
    }
    for admitted in [
        drive(FixedWindow::new(r), near_end),
        drive(FixedWindow::new(r).anchored(Anchor::FirstRequest), near_end),
        drive(SlidingLog::new(r), near_end),
        drive(SlidingWindow::new(r), near_end),
        drive(Gcra::new(r), near_end),
    ] {
        // the first burst is exact; nothing later admits more than a full window's worth
        assert_eq!(&admitted[..4], &[true, true, true, false]);
        assert!(admitted.iter().filter(|a| **a).count() <= 3 * 5);
    }
}

#[test]
fn a_per_request_limit_keeps_the_window_and_rejects_impossible_counts() {
    use ratewarden::Limiter;
    let (clock, _mock) = Clock::mock();
    let limiter: KeyedLimiter<u8, SlidingLog> =
        KeyedLimiter::with_clock(SlidingLog::new(rate("2/min")), clock);
    let mut commit = |_: &ratewarden::Decision| true;
    for _ in 0..5 {
        assert!(Limiter::transact(&limiter, &1, 1, 0, Some(5), &mut commit)
            .unwrap()
            .is_allowed());
    }
    let d = Limiter::transact(&limiter, &1, 1, 0, Some(5), &mut commit).unwrap();
    assert!(d.is_denied());
    assert_eq!(d.retry_after(), Some(Duration::from_secs(60)));
    // back on the scope's own limit of 2, the key is well over it
    assert_eq!(limiter.peek_at(&1, 1, 0).unwrap().remaining(), 0);
    for bad in [0, u64::MAX] {
        assert_eq!(
            Limiter::transact(&limiter, &1, 1, 0, Some(bad), &mut commit),
            Err(CheckError::InvalidLimit { count: bad })
        );
    }
}

#[test]
fn chosen_key_patterns_do_not_collapse_the_store_onto_one_shard() {
    let (clock, _mock) = Clock::mock();
    let limiter: KeyedLimiter<u64> = KeyedLimiter::with_clock(Gcra::new(rate("10/s")), clock);
    // Keys that differ only in the bits a naive `hash = key` scheme would shard by.
    for i in 0..64_000u64 {
        limiter.check(&(i << 40), 1).unwrap();
    }
    let lens = limiter.shard_lens();
    let mean = 64_000 / lens.len();
    let max = *lens.iter().max().unwrap();
    assert!(max < mean * 3 / 2, "max shard {max}, mean {mean}");
    assert!(lens.iter().all(|&n| n > mean / 2));
}

/// Sweeps ask whether a key was idle a grace period ago; a key used since then is not.
#[test]
fn no_algorithm_calls_a_key_idle_before_its_own_requests() {
    fn check<A: Algorithm>(alg: A) {
        let t = 3_600_000_000_000u64 + 250_000_000;
        let mut state = alg.fresh();
        let d = alg.decide(&mut state, t, 1);
        assert!(d.is_allowed());
        alg.commit(&mut state, t, 1);
        for earlier in [0, t - 1_000_000_000, t - 1] {
            assert!(!alg.is_idle(&state, earlier), "{alg:?} at {earlier}");
        }
        assert!(!alg.is_idle(&state, t));
    }
    let r = rate("5/min");
    check(FixedWindow::new(r));
    check(FixedWindow::new(r).anchored(Anchor::FirstRequest));
    check(SlidingLog::new(r));
    check(SlidingWindow::new(r));
    check(Gcra::new(r));
}

/// The checks of a sliding window and a sliding log (10/min) one second after both were
/// filled at `t0` are denied: the 10 still fill the minute, whatever `what` asked about a
/// later time in between. `who` starts the failure messages.
fn assert_still_full(window: Decision, log: Decision, who: &str, what: &str) {
    assert!(
        window.is_denied(),
        "{who}sliding window: the {what} emptied the window: {window:?}"
    );
    assert!(
        log.is_denied(),
        "{who}sliding log: the {what} emptied the log: {log:?}"
    );
}

/// `peek` changes nothing: a peek at a later time (what would happen then?) must not
/// move an unkeyed limiter's windows, or a check at the present time no longer counts
/// what the present window holds.
#[test]
fn an_unkeyed_peek_at_a_later_time_changes_nothing() {
    const S: u64 = 1_000_000_000;
    let t0 = 600 * S;
    let (clock, _mock) = Clock::mock();
    let window = UnkeyedLimiter::with_clock(SlidingWindow::new(rate("10/min")), clock.clone());
    let log = UnkeyedLimiter::with_clock(SlidingLog::new(rate("10/min")), clock);
    assert!(window.check_at(10, t0).unwrap().is_allowed());
    assert!(log.check_at(10, t0).unwrap().is_allowed());
    // Three minutes on, everything will have expired.
    assert!(window.peek_at(1, t0 + 180 * S).unwrap().is_allowed());
    assert!(log.peek_at(1, t0 + 180 * S).unwrap().is_allowed());
    // One second after t0, the 10 admitted at t0 still fill the minute.
    assert_still_full(
        window.check_at(1, t0 + S).unwrap(),
        log.check_at(1, t0 + S).unwrap(),
        "",
        "peek",
    );
}

/// The keyed counterpart of `an_unkeyed_peek_at_a_later_time_changes_nothing`, and the
/// same through a policy's peek.
#[test]
fn a_keyed_or_policy_peek_at_a_later_time_changes_nothing() {
    const S: u64 = 1_000_000_000;
    let t0 = 600 * S;
    let (clock, _mock) = Clock::mock();
    let window =
        KeyedLimiter::<u64, _>::with_clock(SlidingWindow::new(rate("10/min")), clock.clone());
    let log = KeyedLimiter::<u64, _>::with_clock(SlidingLog::new(rate("10/min")), clock.clone());
    assert!(window.check_at(&1, 10, t0).unwrap().is_allowed());
    assert!(log.check_at(&1, 10, t0).unwrap().is_allowed());
    assert!(window.peek_at(&1, 1, t0 + 180 * S).unwrap().is_allowed());
    assert!(log.peek_at(&1, 1, t0 + 180 * S).unwrap().is_allowed());
    assert_still_full(
        window.check_at(&1, 1, t0 + S).unwrap(),
        log.check_at(&1, 1, t0 + S).unwrap(),
        "",
        "peek",
    );

    let policy = ratewarden::Policy::builder()
        .clock(clock)
        .scope(ratewarden::Scope::keyed(
            "w",
            SlidingWindow::new(rate("10/min")),
            |k: &u64| Some(*k),
        ))
        .scope(ratewarden::Scope::keyed(
            "l",
            SlidingLog::new(rate("10/min")),
            |k: &u64| Some(*k),
        ))
        .build();
    assert!(policy.check_at(&1, 10, t0).unwrap().is_allowed());
    assert!(policy.peek_at(&1, 1, t0 + 180 * S).unwrap().is_allowed());
    let d = policy.check_at(&1, 1, t0 + S).unwrap();
    assert!(d.is_denied(), "policy: the peek emptied its scopes: {d:?}");
    assert_eq!(d.denials().count(), 2);
}

/// A check of cost 0 "consumes nothing and reports the current state" (the `Limiter`
/// semantics), like a peek: a keyed limiter answers it with a peek, so it changes
/// nothing whatever time it asks about. An unkeyed limiter and a policy must not either:
/// a cost-0 check at a later time used to roll a sliding window, prune a log or move
/// GCRA's arrival time, so that a check at the present time no longer counted what the
/// window still held (over-admission) or owed a backlog that was never consumed.
#[test]
fn a_check_of_cost_zero_at_a_later_time_changes_nothing() {
    const S: u64 = 1_000_000_000;
    let t0 = 600 * S;
    let later = t0 + 3_600 * S;
    let (clock, _mock) = Clock::mock();

    // Keyed: already a peek.
    let keyed =
        KeyedLimiter::<u64, _>::with_clock(SlidingWindow::new(rate("10/min")), clock.clone());
    assert!(keyed.check_at(&1, 10, t0).unwrap().is_allowed());
    assert!(keyed.check_at(&1, 0, later).unwrap().is_allowed());
    assert!(keyed.check_at(&1, 1, t0 + S).unwrap().is_denied());

    // Unkeyed.
    let window = UnkeyedLimiter::with_clock(SlidingWindow::new(rate("10/min")), clock.clone());
    let log = UnkeyedLimiter::with_clock(SlidingLog::new(rate("10/min")), clock.clone());
    assert!(window.check_at(10, t0).unwrap().is_allowed());
    assert!(log.check_at(10, t0).unwrap().is_allowed());
    assert!(window.check_at(0, later).unwrap().is_allowed());
    assert!(log.check_at(0, later).unwrap().is_allowed());
    assert_still_full(
        window.check_at(1, t0 + S).unwrap(),
        log.check_at(1, t0 + S).unwrap(),
        "unkeyed ",
        "cost-0 check",
    );

    // Policy.
    let policy = ratewarden::Policy::builder()
        .clock(clock)
        .scope(ratewarden::Scope::keyed(
            "w",
            SlidingWindow::new(rate("10/min")),
            |k: &u64| Some(*k),
        ))
        .scope(ratewarden::Scope::keyed(
            "g",
            Gcra::new(rate("10/min")),
            |k: &u64| (*k == 2).then_some(*k),
        ))
        .build();
    assert!(policy.check_at(&1, 10, t0).unwrap().is_allowed());
    assert!(policy.check_at(&1, 0, later).unwrap().is_allowed());
    let d = policy.check_at(&1, 1, t0 + S).unwrap();
    assert!(
        d.is_denied(),
        "policy: the cost-0 check emptied the sliding window: {d:?}"
    );
    // A fresh GCRA key, asked about an hour from now at cost 0, owes nothing at t0.
    assert!(policy.check_at(&2, 0, later).unwrap().is_allowed());
    let d = policy.check_at(&2, 1, t0).unwrap();
    assert!(
        d.scope("g").unwrap().decision.is_allowed(),
        "policy: the cost-0 check moved GCRA's arrival time an hour ahead: {d:?}"
    );
}

thread_local! {
    /// How many times a [`Counted`] key was hashed on this thread.
    static HASHES: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// A key that counts its hashing.
#[derive(Clone, PartialEq, Eq, Debug)]
struct Counted(u64);

impl std::hash::Hash for Counted {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        HASHES.with(|h| h.set(h.get() + 1));
        self.0.hash(state);
    }
}

/// Hashes of `Counted` keys while `f` runs.
fn hashes_in(f: impl FnOnce()) -> usize {
    let before = HASHES.with(|h| h.get());
    f();
    HASHES.with(|h| h.get()) - before
}

#[test]
fn a_check_hashes_its_key_once_and_a_policy_each_scopes_key_once() {
    use ratewarden::{Policy, Scope};

    let limiter: KeyedLimiter<Counted> = KeyedLimiter::new(Gcra::new(rate("100/s")));
    limiter.check(&Counted(1), 1).unwrap();
    assert_eq!(
        hashes_in(|| assert!(limiter.check(&Counted(1), 1).is_ok())),
        1
    );
    assert_eq!(
        hashes_in(|| assert!(limiter.peek(&Counted(1), 1).is_ok())),
        1
    );
    assert_eq!(hashes_in(|| limiter.refund(&Counted(1), 1)), 1);

    struct Req {
        user: u64,
        org: u64,
        video: u64,
    }
    let policy = Policy::builder()
        .scope(Scope::keyed("user", Gcra::new(rate("100/s")), |r: &Req| {
            Some(Counted(r.user))
        }))
        .scope(Scope::keyed(
            "org",
            FixedWindow::new(rate("100/s")),
            |r: &Req| Some(Counted(r.org)),
        ))
        .scope(Scope::keyed(
            "video",
            SlidingWindow::new(rate("100/s")),
            |r: &Req| Some(Counted(r.video)),
        ))
        .build();
    let req = Req {
        user: 1,
        org: 2,
        video: 3,
    };
    policy.check(&req, 1).unwrap();
    assert_eq!(hashes_in(|| assert!(policy.check(&req, 1).is_ok())), 3);
    assert_eq!(hashes_in(|| assert!(policy.peek(&req, 1).is_ok())), 3);
}
