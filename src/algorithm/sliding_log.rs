//! Sliding log: an exact rolling window from the log of admitted requests.
//!
//! Every admitted request is logged as `(t, cost)`; it counts while `now < t + W`.
//! A request is allowed iff the logged sum plus its cost is at most `n`.
//!
//! Entries carry running totals, so the sum is one subtraction and the retry-after of a
//! denial is a binary search; pruning expired entries is amortised O(1) per check.
//! Requests at the same instant share one entry. Since every entry holds at least one
//! unit and the sum never exceeds `n`, a key's log holds at most `n` entries. The log's
//! buffer grows by doubling as a key's traffic fills it (amortised, never beyond what
//! `n` entries need) and is then reused: a key in steady traffic allocates nothing.

use std::collections::VecDeque;

use parking_lot::Mutex;

use super::{Algorithm, Packed};
#[cfg(feature = "serde")]
use crate::snapshot::{AlgorithmKind, SnapshotError, StateSnapshot};
use crate::{Decision, Nanos, Rate};

/// Sliding-log parameters.
///
/// ```
/// use ratewarden::{SlidingLog, Rate, UnkeyedLimiter, Clock};
/// use std::time::Duration;
///
/// let (clock, mock) = Clock::mock();
/// let limiter = UnkeyedLimiter::with_clock(SlidingLog::new(Rate::per_second(2)?), clock);
/// limiter.check(1)?;
/// mock.increment(Duration::from_millis(400));
/// limiter.check(1)?;
/// // The first entry expires at 1 s, 600 ms from now.
/// assert_eq!(limiter.check(1)?.retry_after(), Some(Duration::from_millis(600)));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SlidingLog {
    rate: Rate,
}

/// One log entry: when, and the running total of cost up to and including it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct LogEntry {
    /// When the request was admitted.
    pub at: Nanos,
    /// Sum of the costs of this entry and every earlier one still or once in the log.
    pub total: u64,
}

/// Per-key state: the entries still in the window.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct SlidingLogState {
    entries: VecDeque<LogEntry>,
    /// Running total of the last entry that expired (0 when the log last emptied).
    expired_total: u64,
}

impl SlidingLogState {
    /// The logged entries, oldest first.
    pub fn entries(&self) -> impl ExactSizeIterator<Item = (Nanos, u64)> + '_ {
        let mut before = self.expired_total;
        self.entries.iter().map(move |e| {
            let cost = e.total - before;
            before = e.total;
            (e.at, cost)
        })
    }

    /// The expired total and each entry's time and running total, as stored.
    #[cfg(feature = "serde")]
    pub(crate) fn raw(&self) -> (u64, impl ExactSizeIterator<Item = (Nanos, u64)> + '_) {
        (
            self.expired_total,
            self.entries.iter().map(|e| (e.at, e.total)),
        )
    }

    #[cfg(feature = "serde")]
    fn sum(&self) -> u64 {
        self.entries
            .back()
            .map_or(0, |last| last.total - self.expired_total)
    }

    /// The rules every operation relies on: times and running totals strictly increase
    /// (every entry holds at least one unit), and the log holds at most `most` units.
    #[cfg(feature = "serde")]
    fn validate(&self, most: u64) -> Result<(), String> {
        if self.entries.is_empty() && self.expired_total != 0 {
            return Err("an empty log with an expired total".to_owned());
        }
        let mut total = self.expired_total;
        let mut last_at = None;
        for e in &self.entries {
            if e.total <= total || last_at.is_some_and(|at| e.at <= at) {
                return Err("entries out of order".to_owned());
            }
            (total, last_at) = (e.total, Some(e.at));
        }
        // Running totals only grow while the log is never empty; half the range leaves
        // room for any cost that can follow.
        if total > u64::MAX / 2 {
            return Err("running totals out of range".to_owned());
        }
        if self.sum() > most {
            return Err(format!(
                "{} units logged, more than any limit of this window allows",
                self.sum()
            ));
        }
        Ok(())
    }

    fn prune(&mut self, now: Nanos, window: u64) {
        while let Some(first) = self.entries.front() {
            if first.at.saturating_add(window) > now {
                break;
            }
            self.expired_total = first.total;
            self.entries.pop_front();
        }
        if self.entries.is_empty() {
            self.expired_total = 0;
        }
    }
}

impl SlidingLog {
    /// A sliding log for `rate`.
    pub fn new(rate: Rate) -> SlidingLog {
        SlidingLog { rate }
    }

    /// The decision on the log's entries from index `first` on, those before it having
    /// expired.
    fn decide_from(
        &self,
        state: &SlidingLogState,
        first: usize,
        now: Nanos,
        cost: u64,
    ) -> Decision {
        let (n, w) = (self.rate.count(), self.rate.window_nanos());
        let base = match first.checked_sub(1) {
            Some(i) => state.entries[i].total,
            None => state.expired_total,
        };
        let newest = state.entries.back().filter(|_| first < state.entries.len());
        let sum = newest.map_or(0, |e| e.total - base);
        // The newest entry expires last; an allowed request becomes (or joins) it.
        let newest = newest.map(|e| e.at);
        let expiry = |at: Nanos| at.saturating_add(w).saturating_sub(now);
        if sum.saturating_add(cost) <= n {
            let reset = match (sum + cost, newest) {
                (0, _) => 0,
                (_, _) if cost > 0 => w,
                (_, Some(at)) => expiry(at),
                (_, None) => 0,
            };
            return Decision::allow(n, n - sum - cost, w, reset);
        }
        // Oldest entries must expire until the remaining sum is at most n - cost.
        let need = sum + cost - n;
        // Expired entries (totals up to `base`) count as needing to expire too.
        let i = state
            .entries
            .partition_point(|e| e.total.saturating_sub(base) < need);
        let retry = state.entries.get(i).map_or(w, |e| expiry(e.at));
        let reset = newest.map_or(0, expiry);
        Decision::deny(n, n.saturating_sub(sum), w, reset, retry)
    }
}

impl Algorithm for SlidingLog {
    fn pack(&self) -> Option<Packed> {
        Some([self.rate.count(), self.rate.window_nanos(), 0, 0, 0, 0])
    }

    fn unpack(w: &Packed) -> Option<Self> {
        Some(SlidingLog {
            rate: Rate::from_parts(w[0], w[1])?,
        })
    }

    type State = SlidingLogState;
    type Cell = Mutex<SlidingLogState>;

    fn rate(&self) -> Rate {
        self.rate
    }

    fn with_rate(&self, rate: Rate) -> Self {
        SlidingLog { rate }
    }

    fn limit(&self) -> u64 {
        self.rate.count()
    }

    fn fresh(&self) -> SlidingLogState {
        SlidingLogState::default()
    }

    fn decide(&self, state: &mut SlidingLogState, now: Nanos, cost: u64) -> Decision {
        state.prune(now, self.rate.window_nanos());
        self.decide_from(state, 0, now, cost)
    }

    /// Without pruning: the expired entries at the front are skipped by a galloping
    /// search, O(log k) for k of them (one or none in steady traffic).
    fn peek(&self, state: &SlidingLogState, now: Nanos, cost: u64) -> Decision {
        let w = self.rate.window_nanos();
        let expired = |i: usize| state.entries[i].at.saturating_add(w) <= now;
        let len = state.entries.len();
        // `first`: the first entry still in the window. Entries before `a` have expired;
        // entry `b` has not (or `b` is the end).
        let (mut a, mut b) = (0, 0);
        if len > 0 && expired(0) {
            let (mut known, mut next) = (0, 1);
            while next < len && expired(next) {
                known = next;
                next = (next * 2).min(len);
            }
            (a, b) = (known + 1, next);
        }
        while a < b {
            let mid = a + (b - a) / 2;
            if expired(mid) {
                a = mid + 1;
            } else {
                b = mid;
            }
        }
        let first = a;
        self.decide_from(state, first, now, cost)
    }
    fn commit(&self, state: &mut SlidingLogState, now: Nanos, cost: u64) {
        if cost == 0 {
            return;
        }
        state.prune(now, self.rate.window_nanos());
        let before = state
            .entries
            .back()
            .map_or(state.expired_total, |e| e.total);
        match state.entries.back_mut() {
            Some(last) if last.at >= now => last.total += cost,
            _ => state.entries.push_back(LogEntry {
                at: now,
                total: before + cost,
            }),
        }
    }

    fn refund(&self, state: &mut SlidingLogState, now: Nanos, cost: u64) {
        state.prune(now, self.rate.window_nanos());
        let mut left = cost;
        while left > 0 {
            let Some(last) = state.entries.back().copied() else {
                break;
            };
            let len = state.entries.len();
            let before = if len >= 2 {
                state.entries[len - 2].total
            } else {
                state.expired_total
            };
            let take = left.min(last.total - before);
            left -= take;
            if take == last.total - before {
                state.entries.pop_back();
            } else if let Some(back) = state.entries.back_mut() {
                back.total -= take;
            }
        }
        if state.entries.is_empty() {
            state.expired_total = 0;
        }
    }

    fn is_idle(&self, state: &SlidingLogState, now: Nanos) -> bool {
        state
            .entries
            .back()
            .is_none_or(|e| e.at.saturating_add(self.rate.window_nanos()) <= now)
    }

    #[cfg(feature = "serde")]
    fn snapshot_kind(&self) -> Option<AlgorithmKind> {
        Some(AlgorithmKind::SlidingLog)
    }

    #[cfg(feature = "serde")]
    fn export_state(&self, state: &SlidingLogState) -> Option<StateSnapshot> {
        Some(StateSnapshot::SlidingLog(state.clone()))
    }

    #[cfg(feature = "serde")]
    fn recorded(&self, kind: &AlgorithmKind, rate: Rate) -> Result<Self, SnapshotError> {
        match kind {
            AlgorithmKind::SlidingLog => Ok(SlidingLog { rate }),
            _ => Err(SnapshotError::AlgorithmMismatch {
                expected: "sliding_log",
                found: kind.name(),
            }),
        }
    }

    #[cfg(feature = "serde")]
    fn import_state(&self, state: &StateSnapshot) -> Result<SlidingLogState, String> {
        let StateSnapshot::SlidingLog(s) = state else {
            return Err("not a sliding_log state".to_owned());
        };
        // Per-request limits (plan tiers) may log more than the rate's count, never more
        // than one unit per nanosecond of the window.
        s.validate(self.rate.window_nanos())?;
        Ok(s.clone())
    }
}

#[cfg(test)]
mod tests;
