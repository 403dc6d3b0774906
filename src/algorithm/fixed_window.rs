//! Fixed window: at most `n` units in each window of length `W`.
//!
//! Windows are aligned either to the Unix epoch ([`Anchor::Clock`], so an hourly window
//! resets on the hour) or to a key's own traffic ([`Anchor::FirstRequest`]): a window
//! opens at the first request of a key with nothing counted, and once it has ended the
//! next request opens a new one. The second form is the classic `INCR` + `EXPIRE` counter;
//! defined this way, a key whose window has ended is exactly a fresh key and can be
//! evicted without changing any later decision.
//!
//! A reading earlier than the start of the window a key is in (a thread that read the
//! clock just before another one opened the window) counts as no time passing: it falls
//! in that window, with its count, and waits are measured from the window's start.
//!
//! Exact per window; a client can get up to `2n` through across a window boundary.

use super::{Algorithm, Packed, SeqCell, Words};
#[cfg(feature = "serde")]
use crate::snapshot::{AlgorithmKind, SnapshotError, StateSnapshot};
use crate::{Decision, Nanos, Rate};

/// Where windows start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum Anchor {
    /// Windows are `[kW, (k+1)W)` in Unix time: an hourly window resets on the hour.
    #[default]
    Clock,
    /// A window opens at a key's first counted request.
    FirstRequest,
}

/// Fixed-window parameters.
///
/// ```
/// use ratewarden::{FixedWindow, Rate, UnkeyedLimiter, Clock};
/// use std::time::Duration;
///
/// let (clock, mock) = Clock::mock();
/// let limiter = UnkeyedLimiter::with_clock(FixedWindow::new(Rate::per_minute(2)?), clock);
/// assert!(limiter.check(1)?.is_allowed());
/// assert!(limiter.check(1)?.is_allowed());
/// let denied = limiter.check(1)?;
/// assert_eq!(denied.retry_after(), Some(Duration::from_secs(60)));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FixedWindow {
    rate: Rate,
    anchor: Anchor,
}

/// Per-key state: the current window's start and what it has counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct FixedWindowState {
    /// Start of the window `count` belongs to (nanoseconds since the Unix epoch).
    pub start: Nanos,
    /// Units admitted in that window.
    pub count: u64,
}

impl Words for FixedWindowState {
    const LEN: usize = 2;
    fn to_words(&self) -> [u64; 3] {
        [self.start, self.count, 0]
    }
    fn from_words(words: [u64; 3]) -> FixedWindowState {
        FixedWindowState {
            start: words[0],
            count: words[1],
        }
    }
}

impl FixedWindow {
    /// Windows aligned to the clock.
    pub fn new(rate: Rate) -> FixedWindow {
        FixedWindow {
            rate,
            anchor: Anchor::Clock,
        }
    }

    /// The same limit with windows anchored as given.
    pub fn anchored(self, anchor: Anchor) -> FixedWindow {
        FixedWindow { anchor, ..self }
    }

    /// Where windows start.
    pub fn anchor(&self) -> Anchor {
        self.anchor
    }

    /// The window `now` falls in, and what it has counted so far.
    fn current(&self, state: &FixedWindowState, now: Nanos) -> (Nanos, u64) {
        let w = self.rate.window_nanos();
        // A window with nothing counted is no window at all (see the module docs). A
        // reading earlier than the window's start (a thread that read the clock before
        // another one opened the window) counts as no time passing: it is in the window.
        if state.count > 0 && now < state.start.saturating_add(w) {
            return (state.start, state.count);
        }
        let start = match self.anchor {
            Anchor::Clock => now - now % w,
            Anchor::FirstRequest => now,
        };
        (start, 0)
    }
}

impl FixedWindow {
    /// The decision, the window `now` falls in, and its count if the request is admitted.
    #[inline]
    fn decide_in(&self, state: &FixedWindowState, now: Nanos, cost: u64) -> (Decision, Nanos, u64) {
        let (n, w) = (self.rate.count(), self.rate.window_nanos());
        let (start, count) = self.current(state, now);
        let until_end = start.saturating_add(w) - now.max(start);
        match count.checked_add(cost) {
            Some(used) if used <= n => {
                let reset = if used == 0 { 0 } else { until_end };
                (Decision::allow(n, n - used, w, reset), start, used)
            }
            // Beyond the limit (or beyond any count, for parameters no public
            // constructor makes).
            _ => {
                let decision = Decision::deny(n, n.saturating_sub(count), w, until_end, until_end);
                (decision, start, count)
            }
        }
    }
}

impl Algorithm for FixedWindow {
    fn pack(&self) -> Option<Packed> {
        let anchor = match self.anchor {
            Anchor::Clock => 0,
            Anchor::FirstRequest => 1,
        };
        Some([self.rate.count(), self.rate.window_nanos(), anchor, 0, 0, 0])
    }

    fn unpack(w: &Packed) -> Option<Self> {
        Some(FixedWindow {
            rate: Rate::from_parts(w[0], w[1])?,
            anchor: match w[2] {
                0 => Anchor::Clock,
                _ => Anchor::FirstRequest,
            },
        })
    }

    type State = FixedWindowState;
    type Cell = SeqCell<FixedWindowState>;

    fn rate(&self) -> Rate {
        self.rate
    }

    fn with_rate(&self, rate: Rate) -> Self {
        FixedWindow { rate, ..*self }
    }

    fn limit(&self) -> u64 {
        self.rate.count()
    }

    fn fresh(&self) -> FixedWindowState {
        FixedWindowState::default()
    }

    #[inline]
    fn decide(&self, state: &mut FixedWindowState, now: Nanos, cost: u64) -> Decision {
        self.decide_in(state, now, cost).0
    }

    /// One look at the window for both: what a check decides, and the count it leaves.
    #[inline]
    fn decide_and_commit(&self, state: &mut FixedWindowState, now: Nanos, cost: u64) -> Decision {
        let (decision, start, used) = self.decide_in(state, now, cost);
        if decision.is_allowed() && cost > 0 {
            *state = FixedWindowState { start, count: used };
        }
        decision
    }

    fn commit(&self, state: &mut FixedWindowState, now: Nanos, cost: u64) {
        if cost == 0 {
            return;
        }
        let (start, count) = self.current(state, now);
        *state = FixedWindowState {
            start,
            count: count + cost,
        };
    }

    fn refund(&self, state: &mut FixedWindowState, now: Nanos, cost: u64) {
        let (start, count) = self.current(state, now);
        *state = FixedWindowState {
            start,
            count: count.saturating_sub(cost),
        };
    }

    fn is_idle(&self, state: &FixedWindowState, now: Nanos) -> bool {
        // Not `current(…)`: for a time before the window's start that reports "no window",
        // yet the state still counts from `start` on.
        state.count == 0 || now >= state.start.saturating_add(self.rate.window_nanos())
    }

    #[cfg(feature = "serde")]
    fn snapshot_kind(&self) -> Option<AlgorithmKind> {
        Some(AlgorithmKind::FixedWindow {
            anchor: self.anchor,
        })
    }

    #[cfg(feature = "serde")]
    fn export_state(&self, state: &FixedWindowState) -> Option<StateSnapshot> {
        Some(StateSnapshot::FixedWindow(*state))
    }

    #[cfg(feature = "serde")]
    fn recorded(&self, kind: &AlgorithmKind, rate: Rate) -> Result<Self, SnapshotError> {
        match *kind {
            AlgorithmKind::FixedWindow { anchor } => Ok(FixedWindow { rate, anchor }),
            _ => Err(SnapshotError::AlgorithmMismatch {
                expected: "fixed_window",
                found: kind.name(),
            }),
        }
    }

    #[cfg(feature = "serde")]
    fn import_state(&self, state: &StateSnapshot) -> Result<FixedWindowState, String> {
        match *state {
            // Per-request limits (plan tiers) may count above the rate, never above one
            // unit per nanosecond of the window.
            StateSnapshot::FixedWindow(s) if s.count <= self.rate.window_nanos() => Ok(s),
            StateSnapshot::FixedWindow(s) => Err(format!(
                "count {} is more than any limit of this window allows",
                s.count
            )),
            _ => Err("not a fixed_window state".to_owned()),
        }
    }
}

#[cfg(test)]
mod tests {
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
}
