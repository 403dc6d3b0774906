use super::*;
use std::time::Duration;

const S: u64 = 1_000_000_000;

fn run(alg: &FixedWindow, s: &mut FixedWindowState, now: Nanos, cost: u64) -> Decision {
    let d = alg.decide(s, now, cost);
    if d.is_allowed() {
        alg.commit(s, now, cost);
    }
    d
}

#[test]
fn exactly_the_limit_per_clock_window_then_exact_retry() {
    let alg = FixedWindow::new(Rate::per_minute(3).unwrap());
    let mut s = alg.fresh();
    let t0 = 3_600 * S + 15 * S; // 15 s into a minute
    for left in (0..3).rev() {
        let d = run(&alg, &mut s, t0, 1);
        assert!(d.is_allowed());
        assert_eq!(d.remaining(), left);
        assert_eq!(d.reset_after(), Duration::from_secs(45));
    }
    let d = run(&alg, &mut s, t0 + S, 1);
    assert!(d.is_denied());
    assert_eq!(d.retry_after(), Some(Duration::from_secs(44)));
    assert_eq!(d.remaining(), 0);
    // one nanosecond before the boundary: still denied; at it: allowed
    assert!(run(&alg, &mut s, t0 + 45 * S - 1, 1).is_denied());
    let d = run(&alg, &mut s, t0 + 45 * S, 1);
    assert!(d.is_allowed());
    assert_eq!(d.remaining(), 2);
}

#[test]
fn first_request_anchor_opens_windows_on_traffic() {
    let alg = FixedWindow::new(Rate::per_minute(2).unwrap()).anchored(Anchor::FirstRequest);
    let mut s = alg.fresh();
    assert!(run(&alg, &mut s, 7 * S, 2).is_allowed());
    let d = run(&alg, &mut s, 30 * S, 1);
    assert_eq!(d.retry_after(), Some(Duration::from_secs(37)));
    // The window ends at 67 s; the next request at 90 s opens [90, 150).
    let d = run(&alg, &mut s, 90 * S, 1);
    assert_eq!(d.reset_after(), Duration::from_secs(60));
    assert!(!alg.is_idle(&s, 149 * S));
    assert!(alg.is_idle(&s, 150 * S));
}

#[test]
fn not_idle_at_a_time_before_its_window() {
    for anchor in [Anchor::Clock, Anchor::FirstRequest] {
        let alg = FixedWindow::new(Rate::per_minute(5).unwrap()).anchored(anchor);
        let mut s = alg.fresh();
        run(&alg, &mut s, 120 * S, 1);
        // a sweep asks about a moment one grace period ago
        assert!(!alg.is_idle(&s, 119 * S), "{anchor:?}");
        assert!(!alg.is_idle(&s, 179 * S), "{anchor:?}");
        assert!(alg.is_idle(&s, 180 * S), "{anchor:?}");
    }
}

#[test]
fn an_earlier_reading_than_the_window_start_counts_as_no_time_passing() {
    // Two threads read the clock at 9 and 11 ns; the one at 11 ns takes the lock first.
    // The late one must land in the window the first one opened, not open (or, with
    // the clock anchor, reopen an older) window with nothing counted.
    let rate = Rate::new(2, Duration::from_nanos(10)).unwrap();
    for anchor in [Anchor::Clock, Anchor::FirstRequest] {
        let alg = FixedWindow::new(rate).anchored(anchor);
        let mut s = alg.fresh();
        assert!(run(&alg, &mut s, 11, 2).is_allowed());
        let start = s.start;
        let d = run(&alg, &mut s, 9, 1);
        assert!(d.is_denied(), "{anchor:?}");
        assert_eq!(d.remaining(), 0, "{anchor:?}");
        // measured from the window's start, the earliest time the reading can mean
        assert_eq!(
            d.retry_after(),
            Some(Duration::from_nanos(10)),
            "{anchor:?}"
        );
        assert_eq!(d.reset_after(), Duration::from_nanos(10), "{anchor:?}");
        assert!(!alg.is_idle(&s, 0), "{anchor:?}");
        // a refund at an earlier reading gives back one unit, not the whole window
        alg.refund(&mut s, 0, 1);
        assert_eq!(s, FixedWindowState { start, count: 1 }, "{anchor:?}");
        // and the window still ends where it did
        assert!(run(&alg, &mut s, start + 9, 1).is_allowed(), "{anchor:?}");
        assert!(run(&alg, &mut s, start + 9, 1).is_denied(), "{anchor:?}");
        assert!(run(&alg, &mut s, start + 10, 1).is_allowed(), "{anchor:?}");
    }
}

#[test]
fn weighted_costs_and_refund() {
    let alg = FixedWindow::new(Rate::per_second(10).unwrap());
    let mut s = alg.fresh();
    assert!(run(&alg, &mut s, 0, 7).is_allowed());
    let d = run(&alg, &mut s, 0, 4);
    assert!(d.is_denied());
    assert_eq!(d.remaining(), 3);
    alg.refund(&mut s, 1, 5);
    assert_eq!(s.count, 2);
    alg.refund(&mut s, 1, 50);
    assert_eq!(s.count, 0);
    assert!(alg.is_idle(&s, 1));
}

#[test]
fn a_fused_check_equals_deciding_then_committing() {
    // `decide_and_commit` against `decide`, then `commit` if allowed (the trait's
    // default), on a grid of edge values: both anchors, counts at and beyond the
    // limit, times before, in and after the window, costs of 0 and beyond the limit,
    // values near the ends of `u64`.
    let values = [0, 1, 2, 9, 10, 11, 1_000, u64::MAX - 1, u64::MAX];
    let mut compared = 0;
    for n in [1, 10, u64::MAX] {
        for w in [1, 10, 1_000, u64::MAX] {
            for anchor in [Anchor::Clock, Anchor::FirstRequest] {
                let Some(rate) = Rate::from_parts(n, w) else {
                    continue;
                };
                let alg = FixedWindow::new(rate).anchored(anchor);
                for start in values {
                    for count in values {
                        for now in values {
                            for cost in values {
                                let before = FixedWindowState { start, count };
                                let (mut fused, mut split) = (before, before);
                                let decided = alg.decide_and_commit(&mut fused, now, cost);
                                let expected = alg.decide(&mut split, now, cost);
                                if expected.is_allowed() {
                                    alg.commit(&mut split, now, cost);
                                }
                                assert_eq!(
                                    (decided, fused),
                                    (expected, split),
                                    "{alg:?} from {before:?} at {now}, cost {cost}"
                                );
                                compared += 1;
                            }
                        }
                    }
                }
            }
        }
    }
    assert_eq!(compared, 3 * 4 * 2 * values.len().pow(4));
}

#[test]
fn a_count_that_would_pass_u64_max_is_denied_not_wrapped() {
    // A limit of `u64::MAX` per `u64::MAX` ns, which no public constructor makes
    // (windows stop at `MAX_WINDOW`, a limit at one per nanosecond), and which the
    // grid above holds to: the count cannot grow past u64.
    let alg = FixedWindow::new(Rate::from_parts(u64::MAX, u64::MAX).unwrap());
    let mut s = FixedWindowState {
        start: 0,
        count: u64::MAX - 1,
    };
    let d = alg.decide_and_commit(&mut s, 5, 2);
    assert!(d.is_denied());
    assert_eq!(d.remaining(), 1);
    assert_eq!(s.count, u64::MAX - 1);
    assert!(alg.decide_and_commit(&mut s, 5, 1).is_allowed());
    assert_eq!(s.count, u64::MAX);
}
