//! Boundary behaviour of every algorithm through the public API, on a mock clock:
//! exactly `limit` admitted, the next request denied with the exact retry-after, and the
//! instants one nanosecond either side of it.

use std::time::Duration;

use ratewarden::algorithm::Algorithm;
use ratewarden::{
    Anchor, CheckError, Clock, FixedWindow, Gcra, KeyedLimiter, Limiter, Rate, SlidingLog,
    SlidingWindow, UnkeyedLimiter,
};

const NS: Duration = Duration::from_nanos(1);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// A keyed limiter on a mock clock that never moves, for checks at explicit times.
fn keyed<A: Algorithm>(alg: A) -> KeyedLimiter<&'static str, A> {
    KeyedLimiter::with_clock(alg, Clock::mock().0)
}

#[test]
fn fixed_window_clock_anchor_admits_exactly_the_limit_per_window() {
    let (clock, mock) = Clock::mock();
    let limiter = KeyedLimiter::with_clock(FixedWindow::new(Rate::per_second(5).unwrap()), clock);
    // 250 ms into the window [10 s, 11 s)
    mock.increment(secs(10) + ms(250));
    for left in (0..5).rev() {
        let d = limiter.check("k", 1).unwrap();
        assert!(d.is_allowed());
        assert_eq!((d.limit(), d.remaining()), (5, left));
        assert_eq!(d.reset_after(), ms(750));
        assert_eq!(d.retry_after(), None);
    }
    let d = limiter.check("k", 1).unwrap();
    assert!(d.is_denied());
    assert_eq!(d.remaining(), 0);
    assert_eq!(d.retry_after(), Some(ms(750)));
    assert_eq!(d.reset_after(), ms(750));

    mock.increment(ms(750) - NS);
    assert_eq!(limiter.check("k", 1).unwrap().retry_after(), Some(NS));
    mock.increment(NS);
    let d = limiter.check("k", 1).unwrap();
    assert!(d.is_allowed());
    assert_eq!(d.remaining(), 4);
    assert_eq!(d.reset_after(), secs(1));
}

#[test]
fn fixed_window_first_request_anchor_opens_the_window_at_the_first_request() {
    let (clock, mock) = Clock::mock();
    let alg = FixedWindow::new(Rate::per_second(5).unwrap()).anchored(Anchor::FirstRequest);
    let limiter = KeyedLimiter::with_clock(alg, clock);
    // the window opens at 300 ms: [0.3 s, 1.3 s)
    mock.increment(ms(300));
    let d = limiter.check("k", 2).unwrap();
    assert_eq!((d.remaining(), d.reset_after()), (3, secs(1)));
    mock.increment(ms(200));
    assert_eq!(limiter.check("k", 3).unwrap().remaining(), 0);
    let d = limiter.check("k", 1).unwrap();
    assert!(d.is_denied());
    assert_eq!(d.retry_after(), Some(ms(800)));
    assert_eq!(d.reset_after(), ms(800));

    mock.increment(ms(800) - NS);
    assert_eq!(limiter.check("k", 1).unwrap().retry_after(), Some(NS));
    mock.increment(NS);
    let d = limiter.check("k", 5).unwrap();
    assert!(d.is_allowed());
    assert_eq!((d.remaining(), d.reset_after()), (0, secs(1)));

    // Once that window has ended, nothing is counted and no window is open: the next
    // request, whenever it comes, opens a full one.
    mock.increment(secs(3) + ms(7));
    assert_eq!(limiter.peek("k", 0).unwrap().reset_after(), Duration::ZERO);
    assert_eq!(limiter.peek("k", 0).unwrap().remaining(), 5);
    let d = limiter.check("k", 1).unwrap();
    assert_eq!((d.remaining(), d.reset_after()), (4, secs(1)));
}

#[test]
fn sliding_log_admits_exactly_the_limit_in_any_rolling_window() {
    let (clock, mock) = Clock::mock();
    let limiter = KeyedLimiter::with_clock(SlidingLog::new(Rate::per_second(5).unwrap()), clock);
    // one request every 100 ms from 0 to 400 ms
    for left in (0..5).rev() {
        let d = limiter.check("k", 1).unwrap();
        assert!(d.is_allowed());
        assert_eq!(d.remaining(), left);
        assert_eq!(d.reset_after(), secs(1));
        mock.increment(ms(100));
    }
    // at 500 ms: full; the entry from 0 ms expires at exactly 1 s
    let d = limiter.check("k", 1).unwrap();
    assert!(d.is_denied());
    assert_eq!(d.retry_after(), Some(ms(500)));
    assert_eq!(d.reset_after(), ms(900));
    // a cost of 3 needs the entries from 0, 100 and 200 ms gone
    assert_eq!(limiter.peek("k", 3).unwrap().retry_after(), Some(ms(700)));

    mock.increment(ms(500) - NS);
    assert_eq!(limiter.check("k", 1).unwrap().retry_after(), Some(NS));
    mock.increment(NS);
    let d = limiter.check("k", 1).unwrap();
    assert!(d.is_allowed());
    assert_eq!((d.remaining(), d.reset_after()), (0, secs(1)));
    // and the next one waits for the entry from 100 ms
    assert_eq!(limiter.check("k", 1).unwrap().retry_after(), Some(ms(100)));
}

#[test]
fn sliding_window_weighted_estimate_at_0_25_50_and_100_percent() {
    let (clock, mock) = Clock::mock();
    let limiter =
        KeyedLimiter::with_clock(SlidingWindow::new(Rate::per_minute(100).unwrap()), clock);
    // 80 admitted in the window [0, 60 s)
    mock.increment(secs(10));
    assert_eq!(limiter.check("k", 80).unwrap().remaining(), 20);

    // estimate = 80 × (W − e) / W in the next window [60 s, 120 s)
    mock.increment(secs(50));
    for (into, estimate) in [(0, 80), (15, 60), (30, 40)] {
        let d = limiter.peek("k", 0).unwrap();
        assert_eq!(d.remaining(), 100 - estimate, "{into} s into the window");
        assert!(limiter.peek("k", 100 - estimate).unwrap().is_allowed());
        assert!(limiter.peek("k", 101 - estimate).unwrap().is_denied());
        // fully replenished when the weighted window has slid past: at 120 s
        assert_eq!(d.reset_after(), secs(60 - into));
        mock.increment(secs(15));
    }
    // 1 ns before 100 %: a sliver of the previous window still counts
    mock.increment(secs(15) - NS);
    assert_eq!(limiter.peek("k", 0).unwrap().remaining(), 99);
    assert!(limiter.peek("k", 100).unwrap().is_denied());
    assert_eq!(limiter.peek("k", 100).unwrap().retry_after(), Some(NS));
    // at 100 %: nothing of it
    mock.increment(NS);
    let d = limiter.peek("k", 0).unwrap();
    assert_eq!((d.remaining(), d.reset_after()), (100, Duration::ZERO));
    assert!(limiter.peek("k", 100).unwrap().is_allowed());
}

#[test]
fn sliding_window_admits_exactly_the_limit_then_exact_retry() {
    let (clock, mock) = Clock::mock();
    let limiter =
        KeyedLimiter::with_clock(SlidingWindow::new(Rate::per_minute(100).unwrap()), clock);
    mock.increment(secs(10));
    limiter.check("k", 80).unwrap();
    // At 0 % into the next window the estimate is 80: exactly 20 more fit.
    mock.increment(secs(50));
    for _ in 0..20 {
        assert!(limiter.check("k", 1).unwrap().is_allowed());
    }
    let d = limiter.check("k", 1).unwrap();
    assert!(d.is_denied());
    assert_eq!(d.remaining(), 0);
    // 80 × (W − e)/W + 20 + 1 ≤ 100  ⇔  e ≥ W/80 = 750 ms
    assert_eq!(d.retry_after(), Some(ms(750)));
    // the 20 in this window weigh until the end of the next one
    assert_eq!(d.reset_after(), secs(120));
    mock.increment(ms(750) - NS);
    assert!(limiter.check("k", 1).unwrap().is_denied());
    mock.increment(NS);
    assert!(limiter.check("k", 1).unwrap().is_allowed());

    // A full window from scratch: the retry lies in the next window, where the 100 become
    // the weighted previous count: 100 × (W − e)/W ≤ 99  ⇔  e ≥ 600 ms.
    let limiter = keyed(SlidingWindow::new(Rate::per_minute(100).unwrap()));
    assert!(limiter.check_at(&"k", 100, 0).unwrap().is_allowed());
    let d = limiter.check_at(&"k", 1, 0).unwrap();
    assert_eq!(d.retry_after(), Some(secs(60) + ms(600)));
    let at = (secs(60) + ms(600)).as_nanos() as u64;
    assert!(limiter.check_at(&"k", 1, at - 1).unwrap().is_denied());
    assert!(limiter.check_at(&"k", 1, at).unwrap().is_allowed());
}

#[test]
fn gcra_burst_then_steady_rate() {
    let (clock, mock) = Clock::mock();
    // 10 per second (T = 100 ms), bursts of 4
    let gcra = Gcra::new(Rate::per_second(10).unwrap())
        .with_burst(4)
        .unwrap();
    let limiter = KeyedLimiter::with_clock(gcra, clock);
    mock.increment(secs(100));
    for left in (0..4).rev() {
        let d = limiter.check("k", 1).unwrap();
        assert!(d.is_allowed());
        assert_eq!((d.limit(), d.remaining()), (4, left));
        assert_eq!(d.reset_after(), ms(100 * (4 - left)));
    }
    let d = limiter.check("k", 1).unwrap();
    assert!(d.is_denied());
    assert_eq!(d.retry_after(), Some(ms(100)));
    assert_eq!(d.reset_after(), ms(400));
    // then exactly one every 100 ms, never two
    for _ in 0..10 {
        mock.increment(ms(100) - NS);
        assert_eq!(limiter.check("k", 1).unwrap().retry_after(), Some(NS));
        mock.increment(NS);
        let d = limiter.check("k", 1).unwrap();
        assert!(d.is_allowed());
        assert_eq!(d.remaining(), 0);
        assert!(limiter.check("k", 1).unwrap().is_denied());
    }
    // idle for the whole tolerance: the full burst again
    mock.increment(ms(400));
    assert_eq!(limiter.peek("k", 0).unwrap().reset_after(), Duration::ZERO);
    assert!(limiter.check("k", 4).unwrap().is_allowed());
    assert!(limiter.check("k", 1).unwrap().is_denied());
}

#[test]
fn gcra_default_burst_is_the_rate_count() {
    let limiter = keyed(Gcra::new(Rate::per_second(10).unwrap()));
    for _ in 0..10 {
        assert!(limiter.check_at(&"k", 1, 0).unwrap().is_allowed());
    }
    let d = limiter.check_at(&"k", 1, 0).unwrap();
    assert_eq!(d.limit(), 10);
    assert_eq!(d.retry_after(), Some(ms(100)));
    assert_eq!(d.reset_after(), secs(1));
}

/// Runs `f` on a fresh limiter of each algorithm (both fixed-window anchors, GCRA with
/// and without an explicit burst), all with the same rate.
fn for_each_algorithm(rate: Rate, f: &mut dyn FnMut(&str, &dyn Limiter<&'static str>)) {
    fn on<A: Algorithm>(alg: A) -> KeyedLimiter<&'static str, A> {
        keyed(alg)
    }
    f("fixed window", &on(FixedWindow::new(rate)));
    let first_request = FixedWindow::new(rate).anchored(Anchor::FirstRequest);
    f("fixed window, first request", &on(first_request));
    f("sliding log", &on(SlidingLog::new(rate)));
    f("sliding window", &on(SlidingWindow::new(rate)));
    f("gcra", &on(Gcra::new(rate)));
    let burst = Gcra::new(rate).with_burst(rate.count()).unwrap();
    f("gcra, burst set explicitly", &on(burst));
}

#[test]
fn every_algorithm_rejects_a_cost_above_capacity_and_admits_a_cost_of_zero() {
    let rate = Rate::new(4, secs(1)).unwrap();
    for_each_algorithm(rate, &mut |name, limiter| {
        let err = CheckError::CostExceedsCapacity {
            cost: 5,
            capacity: 4,
        };
        assert_eq!(limiter.check_at(&"k", 5, 0), Err(err), "{name}");
        assert_eq!(limiter.peek_at(&"k", 5, 0), Err(err), "{name}");
        // nothing in use: nothing to wait for
        let d = limiter.check_at(&"k", 0, 0).unwrap();
        assert!(d.is_allowed(), "{name}");
        assert_eq!(
            (d.remaining(), d.reset_after()),
            (4, Duration::ZERO),
            "{name}"
        );
        // exhausted: a cost of 0 still passes and takes nothing
        assert!(limiter.check_at(&"k", 4, 0).unwrap().is_allowed(), "{name}");
        for _ in 0..3 {
            let d = limiter.check_at(&"k", 0, 0).unwrap();
            assert!(d.is_allowed(), "{name}");
            assert_eq!(d.remaining(), 0, "{name}");
        }
        assert!(limiter.check_at(&"k", 1, 0).unwrap().is_denied(), "{name}");
        // the capacity itself fits once the key is fresh again
        let later = 2_000_000_000;
        assert!(
            limiter.check_at(&"k", 4, later).unwrap().is_allowed(),
            "{name}"
        );
    });
}

#[test]
fn every_algorithm_refunds_at_most_what_was_consumed() {
    let rate = Rate::new(4, secs(1)).unwrap();
    for_each_algorithm(rate, &mut |name, limiter| {
        assert!(limiter.check_at(&"k", 3, 0).unwrap().is_allowed(), "{name}");
        limiter.refund_at(&"k", 2, 0);
        assert_eq!(
            limiter.peek_at(&"k", 0, 0).unwrap().remaining(),
            3,
            "{name}"
        );
        // refunding more than is in use leaves the key exactly fresh, not fuller
        limiter.refund_at(&"k", 100, 0);
        let d = limiter.peek_at(&"k", 0, 0).unwrap();
        assert_eq!(
            (d.remaining(), d.reset_after()),
            (4, Duration::ZERO),
            "{name}"
        );
        assert!(limiter.check_at(&"k", 4, 0).unwrap().is_allowed(), "{name}");
        assert!(limiter.check_at(&"k", 1, 0).unwrap().is_denied(), "{name}");
        // a refund for a key never seen changes nothing
        limiter.refund_at(&"other", 3, 0);
        assert!(
            limiter.check_at(&"other", 4, 0).unwrap().is_allowed(),
            "{name}"
        );
        assert!(
            limiter.check_at(&"other", 1, 0).unwrap().is_denied(),
            "{name}"
        );
    });
}

#[test]
fn every_algorithm_denies_a_late_arriving_earlier_reading_once_full() {
    // Threads read the clock, then take the key's lock: a reading can reach the state
    // after a later one. It must not find a fresh budget.
    let rate = Rate::new(3, Duration::from_nanos(100)).unwrap();
    for start in [0, 50, 99, 100, 150] {
        for_each_algorithm(rate, &mut |name, limiter| {
            assert!(limiter.check_at(&"k", 3, start + 10).unwrap().is_allowed());
            for earlier in [start + 9, start, start.saturating_sub(1), 0] {
                let d = limiter.check_at(&"k", 1, earlier).unwrap();
                assert!(
                    d.is_denied(),
                    "{name}: full at {}, checked at {earlier}",
                    start + 10
                );
                // nor may a refund of nothing at that reading reset anything
                limiter.refund_at(&"k", 0, earlier);
                assert!(
                    limiter.check_at(&"k", 1, start + 10).unwrap().is_denied(),
                    "{name}"
                );
            }
        });
    }
}

#[test]
fn unkeyed_limiter_agrees_with_a_keyed_one() {
    let (clock, mock) = Clock::mock();
    let alg = SlidingLog::new(Rate::new(3, ms(10)).unwrap());
    let unkeyed = UnkeyedLimiter::with_clock(alg, clock.clone());
    let keyed = KeyedLimiter::with_clock(alg, clock);
    for step in [0, 1, 2, 3, 4, 9, 0, 1, 7, 11, 0, 0] {
        mock.increment(ms(step));
        assert_eq!(unkeyed.check(1), keyed.check("k", 1), "after {step} ms");
        assert_eq!(unkeyed.peek(2), keyed.peek("k", 2), "after {step} ms");
    }
}
