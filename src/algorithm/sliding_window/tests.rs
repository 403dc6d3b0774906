use super::*;
use std::time::Duration;

const S: u64 = 1_000_000_000;

fn run(alg: &SlidingWindow, s: &mut SlidingWindowState, now: Nanos, cost: u64) -> Decision {
    let d = alg.decide(s, now, cost);
    if d.is_allowed() {
        alg.commit(s, now, cost);
    }
    d
}

#[test]
fn weighted_estimate_at_0_25_50_100_percent() {
    let alg = SlidingWindow::new(Rate::per_minute(100).unwrap());
    let mut s = alg.fresh();
    assert!(run(&alg, &mut s, 0, 80).is_allowed());
    // next window: prev = 80 weighted by (W − e)/W
    for (at, remaining) in [(60, 20), (75, 40), (90, 60), (120, 100)] {
        let d = alg.decide(&mut s.clone(), at * S, 0);
        assert_eq!(d.remaining(), remaining, "at {at}s");
    }
    // At 25 %: estimate 60; a cost of 40 fits, 41 does not.
    let at = 75 * S;
    assert!(alg.decide(&mut s.clone(), at, 40).is_allowed());
    let d = alg.decide(&mut s.clone(), at, 41);
    assert!(d.is_denied());
    // 80 × (W − e)/W ≤ 59 ⇔ e ≥ W × 21/80 = 15.75 s into the window
    assert_eq!(d.retry_after(), Some(Duration::from_millis(750)));
}

#[test]
fn retry_can_lie_in_the_next_window() {
    let alg = SlidingWindow::new(Rate::per_second(10).unwrap());
    let mut s = alg.fresh();
    assert!(run(&alg, &mut s, S / 2, 10).is_allowed());
    let d = run(&alg, &mut s, S / 2, 1);
    // next window: 10 × (W − e)/W ≤ 9 ⇔ e ≥ 0.1 s, so at 1.1 s
    assert_eq!(d.retry_after(), Some(Duration::from_millis(600)));
    assert_eq!(d.reset_after(), Duration::from_millis(1_500));
    assert!(run(&alg, &mut s, S + S / 10 - 1, 1).is_denied());
    assert!(run(&alg, &mut s, S + S / 10, 1).is_allowed());
}

#[test]
fn refund_and_idle() {
    let alg = SlidingWindow::new(Rate::per_second(10).unwrap());
    let mut s = alg.fresh();
    run(&alg, &mut s, 0, 4);
    alg.refund(&mut s, S, 3); // rolled: prev = 4 -> 1
    assert_eq!((s.prev, s.cur), (1, 0));
    assert!(!alg.is_idle(&s, S));
    assert!(alg.is_idle(&s, 2 * S));
}

/// `rolled` before it avoided the division (e00b66a).
fn rolled_by_division(
    alg: &SlidingWindow,
    s: &SlidingWindowState,
    now: Nanos,
) -> SlidingWindowState {
    let w = alg.rate.window_nanos();
    let start = now - now % w;
    if start == s.start {
        *s
    } else if start == s.start.saturating_add(w) {
        SlidingWindowState {
            start,
            prev: s.cur,
            cur: 0,
        }
    } else if start < s.start {
        *s
    } else {
        SlidingWindowState {
            start,
            prev: 0,
            cur: 0,
        }
    }
}

/// The fused check against decide-then-commit with the division, for states on the
/// window grid (the only ones the limiters and snapshots make), times before, in and
/// after the state's window, near u64::MAX, and per-request limits.
#[test]
fn fused_check_matches_decide_then_commit_on_grid_states() {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for round in 0..200_000u64 {
        let (n, w) =
            [(10, 60 * S), (1, 1), (3, 7), (1000, S), (5, u64::MAX / 3)][(round % 5) as usize];
        let alg = SlidingWindow::new(Rate::from_parts(n, w).unwrap());
        let alg = if round % 7 == 0 {
            alg.with_rate(Rate::from_parts(n * 3 + 1, w).unwrap_or(alg.rate))
        } else {
            alg
        };
        let k = match round % 3 {
            0 => (next() % 1000).min(u64::MAX / w),
            1 => u64::MAX / w - next() % 3,
            _ => next() / w,
        };
        let start = k * w;
        let m = alg.rate.count();
        let s = SlidingWindowState {
            start,
            prev: next() % (m + 2),
            cur: next() % (m + 2),
        };
        let now = match next() % 6 {
            0 => start.saturating_sub(next() % (2 * w)),
            1 => start.saturating_add(next() % w),
            2 => start.saturating_add(w).saturating_add(next() % w),
            3 => start.saturating_add(2 * w).saturating_add(next() % w),
            4 => next(),
            _ => u64::MAX - next() % 4,
        };
        let cost = next() % (m + 1);
        assert_eq!(
            alg.rolled(&s, now),
            rolled_by_division(&alg, &s, now),
            "{s:?} {now} {w}"
        );
        let mut old = rolled_by_division(&alg, &s, now);
        let before = alg.decide_rolled(&old, now, cost);
        if before.is_allowed() {
            old.cur += cost;
        }
        let mut new = s;
        let d = alg.decide_and_commit(&mut new, now, cost);
        assert_eq!((d, new), (before, old), "{s:?} {now} {cost} {n}/{w}");
    }
}

/// States off the grid (which only hand-made states and a check racing a change of
/// window length can have) are rolled differently: the division moved them to the
/// grid, dropping their counts.
#[test]
fn off_grid_states_now_keep_their_own_window() {
    let alg = SlidingWindow::new(Rate::per_second(10).unwrap());
    let s = SlidingWindowState {
        start: 2 * S + S / 10,
        prev: 0,
        cur: 10,
    };
    assert_eq!(
        rolled_by_division(&alg, &s, 3 * S),
        SlidingWindowState {
            start: 3 * S,
            prev: 0,
            cur: 0
        }
    );
    assert_eq!(alg.rolled(&s, 3 * S), s);
}
