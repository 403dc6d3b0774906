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
mod tests;
