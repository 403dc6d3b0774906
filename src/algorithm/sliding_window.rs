//! Sliding-window counter: a rolling window approximated from two fixed windows.
//!
//! Windows are aligned to the Unix epoch. With `e` the time into the current window,
//! the estimate is `prev × (W − e) / W + cur`; a request is allowed iff
//! `estimate + cost ≤ n`, computed exactly in integers
//! (`prev × (W − e) + (cur + cost) × W ≤ n × W`, in `u128`). O(1) memory per key, and the
//! approximation large CDNs use; it assumes the previous window's traffic was spread
//! evenly.

use super::{Algorithm, Packed, SeqCell, Words};
#[cfg(feature = "serde")]
use crate::snapshot::{AlgorithmKind, SnapshotError, StateSnapshot};
use crate::{Decision, Nanos, Rate};

/// Sliding-window-counter parameters.
///
/// ```
/// use ratewarden::{SlidingWindow, Rate, UnkeyedLimiter, Clock};
/// use std::time::Duration;
///
/// let (clock, mock) = Clock::mock();
/// let limiter = UnkeyedLimiter::with_clock(SlidingWindow::new(Rate::per_minute(10)?), clock);
/// assert!(limiter.check(10)?.is_allowed());
/// // Halfway into the next minute, half of the previous minute still counts.
/// mock.increment(Duration::from_secs(90));
/// assert_eq!(limiter.peek(1)?.remaining(), 4);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SlidingWindow {
    rate: Rate,
}

/// Per-key state: the current window's start and the previous and current counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct SlidingWindowState {
    /// Start of the window `cur` counts (nanoseconds since the Unix epoch).
    pub start: Nanos,
    /// Units admitted in the window before `start`.
    pub prev: u64,
    /// Units admitted in the window that starts at `start`.
    pub cur: u64,
}

impl Words for SlidingWindowState {
    const LEN: usize = 3;
    fn to_words(&self) -> [u64; 3] {
        [self.start, self.prev, self.cur]
    }
    fn from_words(words: [u64; 3]) -> SlidingWindowState {
        SlidingWindowState {
            start: words[0],
            prev: words[1],
            cur: words[2],
        }
    }
}

impl SlidingWindow {
    /// A sliding-window counter for `rate`.
    pub fn new(rate: Rate) -> SlidingWindow {
        SlidingWindow { rate }
    }

    /// The decision on a state already rolled to `now`'s window.
    #[inline]
    fn decide_rolled(&self, s: &SlidingWindowState, now: Nanos, cost: u64) -> Decision {
        let s = *s;
        let (n, w) = (self.rate.count(), self.rate.window_nanos());
        let now = now.max(s.start);
        let e = (now - s.start).min(w - 1);
        let (n128, w128) = (n as u128, w as u128);
        let weighted_prev = s.prev as u128 * (w - e) as u128;
        let budget = n128 * w128;
        let allowed = weighted_prev + (s.cur as u128 + cost as u128) * w128 <= budget;
        let cur = if allowed { s.cur + cost } else { s.cur };
        // remaining = floor(n - estimate) = floor((nW - prev(W-e) - cur W) / W)
        let slack = budget.saturating_sub(weighted_prev + cur as u128 * w128);
        let window_end = s.start.saturating_add(w);
        let reset_after = if cur > 0 {
            window_end.saturating_add(w) - now
        } else if s.prev > 0 {
            window_end - now
        } else {
            0
        };
        if allowed {
            // The remaining count is divided out only if someone reads it.
            return match u64::try_from(slack) {
                Ok(slack) => Decision::allow_scaled(n, slack, w, w, reset_after),
                Err(_) => Decision::allow(n, (slack / w128) as u64, w, reset_after),
            };
        }
        let remaining = (slack / w128) as u64;
        // Earliest time the same request passes, assuming no other traffic.
        let retry_at = if s.cur + cost <= n {
            // Still in this window: need prev × (W − e') ≤ (n − cur − cost) × W.
            let slack = (n - s.cur - cost) as u128 * w128 / s.prev.max(1) as u128;
            window_end - slack.min(w128) as u64
        } else {
            // In the next window, where cur becomes prev: cur × (W − e') ≤ (n − cost) × W.
            let slack = n.saturating_sub(cost) as u128 * w128 / s.cur.max(1) as u128;
            window_end.saturating_add(w) - slack.min(w128) as u64
        };
        Decision::deny(n, remaining, w, reset_after, retry_at.saturating_sub(now))
    }

    /// The state rolled forward to the window `now` falls in.
    fn rolled(&self, s: &SlidingWindowState, now: Nanos) -> SlidingWindowState {
        let w = self.rate.window_nanos();
        // Without a division while `now` is in the state's window or the next one.
        let start = match now.checked_sub(s.start) {
            Some(e) if e < w => s.start,
            Some(e) if e - w < w => s.start + w,
            _ => now - now % w,
        };
        if start == s.start {
            *s
        } else if start == s.start.saturating_add(w) {
            SlidingWindowState {
                start,
                prev: s.cur,
                cur: 0,
            }
        } else if start < s.start {
            // Only reachable when a caller passes an earlier time than one already seen.
            *s
        } else {
            SlidingWindowState {
                start,
                prev: 0,
                cur: 0,
            }
        }
    }
}

impl Algorithm for SlidingWindow {
    fn pack(&self) -> Option<Packed> {
        Some([self.rate.count(), self.rate.window_nanos(), 0, 0, 0, 0])
    }

    fn unpack(w: &Packed) -> Option<Self> {
        Some(SlidingWindow {
            rate: Rate::from_parts(w[0], w[1])?,
        })
    }

    type State = SlidingWindowState;
    type Cell = SeqCell<SlidingWindowState>;

    fn rate(&self) -> Rate {
        self.rate
    }

    fn with_rate(&self, rate: Rate) -> Self {
        SlidingWindow { rate }
    }

    fn limit(&self) -> u64 {
        self.rate.count()
    }

    fn fresh(&self) -> SlidingWindowState {
        SlidingWindowState::default()
    }

    fn decide(&self, state: &mut SlidingWindowState, now: Nanos, cost: u64) -> Decision {
        *state = self.rolled(state, now);
        self.decide_rolled(state, now, cost)
    }

    /// One roll of the windows for the decision and the commit.
    #[inline]
    fn decide_and_commit(&self, state: &mut SlidingWindowState, now: Nanos, cost: u64) -> Decision {
        *state = self.rolled(state, now);
        let decision = self.decide_rolled(state, now, cost);
        if decision.is_allowed() {
            state.cur += cost;
        }
        decision
    }

    fn commit(&self, state: &mut SlidingWindowState, now: Nanos, cost: u64) {
        *state = self.rolled(state, now);
        state.cur += cost;
    }

    fn refund(&self, state: &mut SlidingWindowState, now: Nanos, cost: u64) {
        *state = self.rolled(state, now);
        let from_cur = cost.min(state.cur);
        state.cur -= from_cur;
        state.prev -= (cost - from_cur).min(state.prev);
    }

    fn is_idle(&self, state: &SlidingWindowState, now: Nanos) -> bool {
        let s = self.rolled(state, now);
        s.prev == 0 && s.cur == 0
    }

    /// Counts stay as they are when only the count changes. A new window length has
    /// another window grid, so the estimate in use now (rounded up) becomes the current
    /// count of the new window that `now` falls in.
    fn carry_over(&self, next: &SlidingWindow, state: &mut SlidingWindowState, now: Nanos) {
        let w = self.rate.window_nanos();
        if next.rate.window_nanos() == w {
            return;
        }
        let s = self.rolled(state, now);
        let e = (now.max(s.start) - s.start).min(w - 1);
        let used = u128::from(s.prev) * u128::from(w - e) + u128::from(s.cur) * u128::from(w);
        let used = u64::try_from(used.div_ceil(u128::from(w))).unwrap_or(u64::MAX);
        let next_w = next.rate.window_nanos();
        *state = SlidingWindowState {
            start: now - now % next_w,
            prev: 0,
            cur: used,
        };
    }

    #[cfg(feature = "serde")]
    fn snapshot_kind(&self) -> Option<AlgorithmKind> {
        Some(AlgorithmKind::SlidingWindow)
    }

    #[cfg(feature = "serde")]
    fn export_state(&self, state: &SlidingWindowState) -> Option<StateSnapshot> {
        Some(StateSnapshot::SlidingWindow(*state))
    }

    #[cfg(feature = "serde")]
    fn recorded(&self, kind: &AlgorithmKind, rate: Rate) -> Result<Self, SnapshotError> {
        match kind {
            AlgorithmKind::SlidingWindow => Ok(SlidingWindow { rate }),
            _ => Err(SnapshotError::AlgorithmMismatch {
                expected: "sliding_window",
                found: kind.name(),
            }),
        }
    }

    #[cfg(feature = "serde")]
    fn import_state(&self, state: &StateSnapshot) -> Result<SlidingWindowState, String> {
        let StateSnapshot::SlidingWindow(s) = *state else {
            return Err("not a sliding_window state".to_owned());
        };
        // Per-request limits (plan tiers) may count above the rate, never above one unit
        // per nanosecond of the window.
        let most = self.rate.window_nanos();
        if s.prev > most || s.cur > most {
            return Err(format!(
                "counts {}/{} are more than any limit of this window allows",
                s.prev, s.cur
            ));
        }
        if s.start % self.rate.window_nanos() != 0 {
            return Err(format!(
                "window start {} is not on the window grid",
                s.start
            ));
        }
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
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
}
