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
mod tests;
