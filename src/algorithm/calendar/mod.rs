//! Calendar quota: at most `n` units per calendar period — a UTC day, or a month that
//! starts on a billing day — such as "3 videos per month, resetting on the account's
//! billing date" or "1,000 per day, resetting at midnight UTC".
//!
//! A period starts at its [`CycleAnchor`]: a day of the month and a time of day, in UTC.
//! A monthly anchor on a day a month does not have (the 29th, 30th or 31st) starts that
//! month's period on its last day: an anchor on the 31st resets on 28 or 29 February, on
//! 30 April, and on 31 May again. Daily periods use only the anchor's time of day (Unix
//! time has no leap seconds, so a UTC day is always 86 400 s). Month lengths and leap years
//! come from `jiff`'s civil calendar, not from hand-written date arithmetic.
//!
//! The anchor is a parameter of the algorithm, so one [`CalendarQuota`] serves every key
//! that shares it (every account resetting at midnight UTC). For an anchor per key (each
//! account's own billing date) see [`CalendarLimiter`](crate::CalendarLimiter) and
//! [`Scope::calendar`](crate::Scope::calendar), which judge each key with its own anchor.
//!
//! The state records the period it counts for (start and end), so a key whose period has
//! ended is exactly a fresh key and can be evicted, whatever its anchor; and an anchor that
//! changes (an account that moves its billing date) takes effect when the current period
//! ends. A reading earlier than the start of the key's period counts as no time passing,
//! as for [`FixedWindow`](super::FixedWindow).
//!
//! **Rate.** [`Algorithm::rate`] reports a nominal window: one day for daily periods and
//! 30 days ([`NOMINAL_MONTH`]) for monthly ones, so `"3/30d"` for three a month. Decisions
//! report the real period: [`Decision::window`] is the current period's length (28 to 31
//! days) and `reset_after` / `retry_after` run to its real end. A per-plan limit changes
//! only the count; the period stays.
//!
//! Exact per period; like any fixed window, up to `2n` can pass around a reset.

mod anchor;

use std::time::Duration;

use jiff::civil::{Date, DateTime};
use jiff::tz::Offset;
use jiff::{Timestamp, ToSpan};
use parking_lot::Mutex;

pub use anchor::{AnchorError, CycleAnchor};

use super::{Algorithm, Packed};
#[cfg(feature = "serde")]
use crate::snapshot::{AlgorithmKind, SnapshotError, StateSnapshot};
use crate::{Decision, Nanos, Rate, RateError};

const NANOS_PER_SEC: u64 = 1_000_000_000;
const DAY_NANOS: u64 = 86_400 * NANOS_PER_SEC;

/// The window [`CalendarQuota::rate`](Algorithm::rate) reports for a monthly quota.
pub const NOMINAL_MONTH: Duration = Duration::from_secs(30 * 86_400);

/// How long each period of a [`CalendarQuota`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
#[non_exhaustive]
pub enum Period {
    /// A UTC day, starting at the anchor's time of day.
    Day,
    /// A calendar month, starting on the anchor's day (or the month's last day, if it is
    /// shorter) at the anchor's time of day.
    Month,
}

/// Calendar-quota parameters: `count` units per [`Period`], starting at a [`CycleAnchor`].
///
/// ```
/// use ratewarden::{CalendarQuota, Clock, CycleAnchor, UnkeyedLimiter};
/// use std::time::Duration;
///
/// let (clock, mock) = Clock::mock();
/// mock.increment(Duration::from_secs(1_706_745_600)); // 2024-02-01T00:00:00Z
/// // Three a month, resetting on the 31st (so on 29 February in 2024).
/// let quota = CalendarQuota::monthly(3)?.anchored(CycleAnchor::new(31, 0, 0, 0)?);
/// let limiter = UnkeyedLimiter::with_clock(quota, clock);
/// assert!(limiter.check(3)?.is_allowed());
/// let denied = limiter.check(1)?;
/// assert_eq!(denied.retry_after(), Some(Duration::from_secs(28 * 86_400)));
/// mock.increment(Duration::from_secs(28 * 86_400)); // 2024-02-29T00:00:00Z
/// assert!(limiter.check(1)?.is_allowed());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CalendarQuota {
    /// The count per nominal window (see the module docs).
    rate: Rate,
    period: Period,
    anchor: CycleAnchor,
}

/// Per-key state: the period counted and what it has counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct CalendarState {
    /// Start of the period `count` belongs to (nanoseconds since the Unix epoch).
    pub start: Nanos,
    /// End of that period (exclusive).
    pub end: Nanos,
    /// Units admitted in that period.
    pub count: u64,
}

impl CalendarQuota {
    /// `count` per period, anchored at [`CycleAnchor::MIDNIGHT`]. Rejects a count of 0.
    pub fn new(count: u64, period: Period) -> Result<CalendarQuota, RateError> {
        Ok(CalendarQuota {
            rate: Rate::new(count, nominal_window(period))?,
            period,
            anchor: CycleAnchor::MIDNIGHT,
        })
    }

    /// `count` per UTC day, resetting at midnight UTC.
    pub fn daily(count: u64) -> Result<CalendarQuota, RateError> {
        CalendarQuota::new(count, Period::Day)
    }

    /// `count` per calendar month, resetting on the 1st at midnight UTC.
    pub fn monthly(count: u64) -> Result<CalendarQuota, RateError> {
        CalendarQuota::new(count, Period::Month)
    }

    /// The same quota with periods starting at `anchor`.
    pub fn anchored(self, anchor: CycleAnchor) -> CalendarQuota {
        CalendarQuota { anchor, ..self }
    }

    /// Units admitted per period.
    pub fn count(&self) -> u64 {
        self.rate.count()
    }

    /// The period length.
    pub fn period(&self) -> Period {
        self.period
    }

    /// Where periods start.
    pub fn anchor(&self) -> CycleAnchor {
        self.anchor
    }

    /// The period `[start, end)` that contains `now`.
    pub fn period_at(&self, now: Nanos) -> (Nanos, Nanos) {
        match self.period {
            Period::Day => {
                let offset = u64::from(self.anchor.second_of_day) * NANOS_PER_SEC;
                if now < offset {
                    return (0, offset);
                }
                let start = now - (now - offset) % DAY_NANOS;
                (start, start.saturating_add(DAY_NANOS))
            }
            Period::Month => self.month_at(now).unwrap_or((now, Nanos::MAX)),
        }
    }

    /// `None` only outside the calendar's range (never for a `u64` time).
    fn month_at(&self, now: Nanos) -> Option<(Nanos, Nanos)> {
        let ts = Timestamp::from_nanosecond(i128::from(now)).ok()?;
        let dt = Offset::UTC.to_datetime(ts);
        let this_month = dt.date().first_of_month();
        let here = self.start_in(this_month)?;
        let (start, end) = if dt >= here {
            (
                here,
                self.start_in(this_month.checked_add(1.month()).ok()?)?,
            )
        } else {
            (
                self.start_in(this_month.checked_sub(1.month()).ok()?)?,
                here,
            )
        };
        Some((to_nanos(start)?, to_nanos(end)?))
    }

    /// Where the period that starts in the month of `first` (its 1st) starts.
    fn start_in(&self, first: Date) -> Option<DateTime> {
        let day = i8::try_from(self.anchor.day)
            .ok()?
            .min(first.days_in_month());
        Some(
            first
                .with()
                .day(day)
                .build()
                .ok()?
                .to_datetime(self.anchor.time()),
        )
    }

    /// The period `now` falls in, and what it has counted so far.
    fn current(&self, state: &CalendarState, now: Nanos) -> (Nanos, Nanos, u64) {
        // As for FixedWindow: an empty period is no period, and a reading earlier than the
        // period's start counts as no time passing.
        // A state whose period is not a period (restored from damaged data) is stale.
        if state.count > 0 && now < state.end && state.start < state.end {
            return (state.start, state.end, state.count);
        }
        let (start, end) = self.period_at(now);
        (start, end, 0)
    }
}

/// The window a period's [`Rate`] is written with.
fn nominal_window(period: Period) -> Duration {
    match period {
        Period::Day => Duration::from_nanos(DAY_NANOS),
        Period::Month => NOMINAL_MONTH,
    }
}

/// A time as `Nanos`, clamped to the `u64` range (before 1970: 0; past 2554: the maximum).
fn to_nanos(dt: DateTime) -> Option<Nanos> {
    let ns = Offset::UTC.to_timestamp(dt).ok()?.as_nanosecond();
    Some(u64::try_from(ns.max(0)).unwrap_or(Nanos::MAX))
}

impl Algorithm for CalendarQuota {
    fn pack(&self) -> Option<Packed> {
        let period = match self.period {
            Period::Day => 0,
            Period::Month => 1,
        };
        Some([
            self.rate.count(),
            self.rate.window_nanos(),
            period,
            u64::from(self.anchor.day),
            u64::from(self.anchor.second_of_day),
            0,
        ])
    }

    fn unpack(w: &Packed) -> Option<Self> {
        Some(CalendarQuota {
            rate: Rate::from_parts(w[0], w[1])?,
            period: match w[2] {
                0 => Period::Day,
                _ => Period::Month,
            },
            anchor: CycleAnchor {
                day: u8::try_from(w[3]).ok()?,
                second_of_day: u32::try_from(w[4]).ok()?,
            },
        })
    }

    type State = CalendarState;
    type Cell = Mutex<CalendarState>;

    /// The count per nominal window: a day, or [`NOMINAL_MONTH`].
    fn rate(&self) -> Rate {
        self.rate
    }

    /// Takes the rate's count; the period and anchor stay.
    fn with_rate(&self, rate: Rate) -> Self {
        CalendarQuota {
            // A count the nominal window cannot hold (more than one per nanosecond) keeps
            // the given rate as it is: decisions use only the count.
            rate: Rate::new(rate.count(), nominal_window(self.period)).unwrap_or(rate),
            ..*self
        }
    }

    fn limit(&self) -> u64 {
        self.rate.count()
    }

    fn fresh(&self) -> CalendarState {
        CalendarState::default()
    }

    fn decide(&self, state: &mut CalendarState, now: Nanos, cost: u64) -> Decision {
        let n = self.rate.count();
        let (start, end, count) = self.current(state, now);
        let window = end - start;
        let until_end = end - now.max(start);
        if count.saturating_add(cost) <= n {
            let used = count + cost;
            let reset = if used == 0 { 0 } else { until_end };
            Decision::allow(n, n - used, window, reset)
        } else {
            Decision::deny(n, n.saturating_sub(count), window, until_end, until_end)
        }
    }

    fn commit(&self, state: &mut CalendarState, now: Nanos, cost: u64) {
        if cost == 0 {
            return;
        }
        let (start, end, count) = self.current(state, now);
        *state = CalendarState {
            start,
            end,
            count: count.saturating_add(cost),
        };
    }

    fn refund(&self, state: &mut CalendarState, now: Nanos, cost: u64) {
        let (start, end, count) = self.current(state, now);
        *state = CalendarState {
            start,
            end,
            count: count.saturating_sub(cost),
        };
    }

    fn is_idle(&self, state: &CalendarState, now: Nanos) -> bool {
        state.count == 0 || now >= state.end
    }

    #[cfg(feature = "serde")]
    fn snapshot_kind(&self) -> Option<AlgorithmKind> {
        Some(AlgorithmKind::Calendar {
            period: self.period,
            anchor: self.anchor,
        })
    }

    #[cfg(feature = "serde")]
    fn export_state(&self, state: &CalendarState) -> Option<StateSnapshot> {
        Some(StateSnapshot::Calendar(*state))
    }

    /// Any period and anchor: a state records its own period, and a changed period or
    /// anchor takes effect when that period ends.
    #[cfg(feature = "serde")]
    fn recorded(&self, kind: &AlgorithmKind, rate: Rate) -> Result<Self, SnapshotError> {
        match *kind {
            AlgorithmKind::Calendar { period, anchor } => CalendarQuota::new(rate.count(), period)
                .map(|quota| quota.anchored(anchor))
                .map_err(|e| SnapshotError::Corrupted {
                    what: "calendar parameters".to_owned(),
                    reason: e.to_string(),
                }),
            _ => Err(SnapshotError::AlgorithmMismatch {
                expected: "calendar",
                found: kind.name(),
            }),
        }
    }

    #[cfg(feature = "serde")]
    fn import_state(&self, state: &StateSnapshot) -> Result<CalendarState, String> {
        let StateSnapshot::Calendar(s) = *state else {
            return Err("not a calendar state".to_owned());
        };
        if s.count > 0 && s.start >= s.end {
            return Err(format!("period [{}, {}) is empty", s.start, s.end));
        }
        // Per-request limits (plan tiers) may count above the quota, never above one
        // unit per nanosecond of the nominal window.
        if s.count > self.rate.window_nanos() {
            return Err(format!(
                "count {} is more than any limit of this period allows",
                s.count
            ));
        }
        Ok(s)
    }
}

#[cfg(test)]
mod tests;
