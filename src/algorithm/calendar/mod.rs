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
mod tests {
    use super::*;

    const S: u64 = NANOS_PER_SEC;

    /// An RFC 3339 time in nanoseconds.
    fn at(s: &str) -> Nanos {
        let ts: Timestamp = s.parse().unwrap();
        u64::try_from(ts.as_nanosecond()).unwrap()
    }

    fn run(alg: &CalendarQuota, s: &mut CalendarState, now: Nanos, cost: u64) -> Decision {
        let d = alg.decide(s, now, cost);
        if d.is_allowed() {
            alg.commit(s, now, cost);
        }
        d
    }

    fn monthly(day: u8) -> CalendarQuota {
        CalendarQuota::monthly(3)
            .unwrap()
            .anchored(CycleAnchor::new(day, 0, 0, 0).unwrap())
    }

    #[test]
    fn months_that_lack_the_anchor_day_reset_on_their_last_day() {
        let cases: &[(u8, &str, &str, &str)] = &[
            // anchor day, now, period start, period end
            (
                31,
                "2024-02-10T12:00:00Z",
                "2024-01-31T00:00:00Z",
                "2024-02-29T00:00:00Z",
            ),
            (
                31,
                "2023-02-10T12:00:00Z",
                "2023-01-31T00:00:00Z",
                "2023-02-28T00:00:00Z",
            ),
            (
                31,
                "2024-03-15T00:00:00Z",
                "2024-02-29T00:00:00Z",
                "2024-03-31T00:00:00Z",
            ),
            (
                31,
                "2024-04-30T00:00:00Z",
                "2024-04-30T00:00:00Z",
                "2024-05-31T00:00:00Z",
            ),
            (
                31,
                "2024-04-29T23:59:59.999999999Z",
                "2024-03-31T00:00:00Z",
                "2024-04-30T00:00:00Z",
            ),
            (
                30,
                "2024-02-15T00:00:00Z",
                "2024-01-30T00:00:00Z",
                "2024-02-29T00:00:00Z",
            ),
            (
                30,
                "2023-02-15T00:00:00Z",
                "2023-01-30T00:00:00Z",
                "2023-02-28T00:00:00Z",
            ),
            (
                30,
                "2024-03-15T00:00:00Z",
                "2024-02-29T00:00:00Z",
                "2024-03-30T00:00:00Z",
            ),
            (
                29,
                "2023-02-15T00:00:00Z",
                "2023-01-29T00:00:00Z",
                "2023-02-28T00:00:00Z",
            ),
            (
                29,
                "2024-02-15T00:00:00Z",
                "2024-01-29T00:00:00Z",
                "2024-02-29T00:00:00Z",
            ),
            (
                29,
                "2023-03-01T00:00:00Z",
                "2023-02-28T00:00:00Z",
                "2023-03-29T00:00:00Z",
            ),
            (
                29,
                "2024-03-01T00:00:00Z",
                "2024-02-29T00:00:00Z",
                "2024-03-29T00:00:00Z",
            ),
            // 2100 is not a leap year, 2000 is
            (
                29,
                "2100-02-28T00:00:00Z",
                "2100-02-28T00:00:00Z",
                "2100-03-29T00:00:00Z",
            ),
            (
                29,
                "2000-02-28T00:00:00Z",
                "2000-01-29T00:00:00Z",
                "2000-02-29T00:00:00Z",
            ),
            (
                1,
                "2024-12-31T23:59:59Z",
                "2024-12-01T00:00:00Z",
                "2025-01-01T00:00:00Z",
            ),
            (
                1,
                "2025-01-01T00:00:00Z",
                "2025-01-01T00:00:00Z",
                "2025-02-01T00:00:00Z",
            ),
        ];
        for &(day, now, start, end) in cases {
            assert_eq!(
                monthly(day).period_at(at(now)),
                (at(start), at(end)),
                "anchor {day}, at {now}"
            );
        }
    }

    #[test]
    fn the_anchor_time_of_day_is_part_of_the_boundary() {
        let alg = CalendarQuota::monthly(1)
            .unwrap()
            .anchored(CycleAnchor::new(15, 9, 30, 0).unwrap());
        assert_eq!(
            alg.period_at(at("2025-01-15T09:29:59Z")),
            (at("2024-12-15T09:30:00Z"), at("2025-01-15T09:30:00Z"))
        );
        assert_eq!(
            alg.period_at(at("2025-01-15T09:30:00Z")),
            (at("2025-01-15T09:30:00Z"), at("2025-02-15T09:30:00Z"))
        );
    }

    #[test]
    fn daily_periods_turn_at_the_anchor_time_utc() {
        let midnight = CalendarQuota::daily(1000).unwrap();
        assert_eq!(
            midnight.period_at(at("2024-02-28T23:59:59.999999999Z")),
            (at("2024-02-28T00:00:00Z"), at("2024-02-29T00:00:00Z"))
        );
        assert_eq!(
            midnight.period_at(at("2024-02-29T00:00:00Z")),
            (at("2024-02-29T00:00:00Z"), at("2024-03-01T00:00:00Z"))
        );
        let five = midnight.anchored(CycleAnchor::new(1, 5, 0, 0).unwrap());
        assert_eq!(
            five.period_at(at("2024-03-01T04:00:00Z")),
            (at("2024-02-29T05:00:00Z"), at("2024-03-01T05:00:00Z"))
        );
        // before the first boundary after the epoch: the period starts at the epoch
        assert_eq!(five.period_at(0), (0, 5 * 3_600 * S));
        assert_eq!(monthly(15).period_at(0), (0, at("1970-01-15T00:00:00Z")));
    }

    /// An obviously-correct month length: the Gregorian leap rule, written out.
    fn days_in(year: i64, month: u8) -> u8 {
        let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
        match month {
            2 if leap => 29,
            2 => 28,
            4 | 6 | 9 | 11 => 30,
            _ => 31,
        }
    }

    #[test]
    fn periods_tile_time_and_start_on_the_clamped_day_for_every_anchor() {
        for day in 1..=31u8 {
            let alg = CalendarQuota::monthly(5)
                .unwrap()
                .anchored(CycleAnchor::new(day, 6, 0, 0).unwrap());
            let mut now = at("1999-12-20T00:00:00Z");
            let (mut start, mut end) = alg.period_at(now);
            for _ in 0..40 {
                assert!(start <= now && now < end);
                let (next_start, next_end) = alg.period_at(end);
                assert_eq!(next_start, end, "anchor {day}: periods are contiguous");
                // one nanosecond earlier is still the previous period
                assert_eq!(alg.period_at(end - 1), (start, end));
                let dt = Offset::UTC.to_datetime(Timestamp::from_nanosecond(end.into()).unwrap());
                let expect = day.min(days_in(dt.year().into(), dt.month().unsigned_abs()));
                assert_eq!(dt.day().unsigned_abs(), expect, "anchor {day}: {dt}");
                assert_eq!((dt.hour(), dt.minute(), dt.second()), (6, 0, 0));
                let len_days = (end - start) / DAY_NANOS;
                assert!((28..=31).contains(&len_days), "{len_days}");
                now = end;
                (start, end) = (next_start, next_end);
            }
        }
    }

    #[test]
    fn exactly_the_count_per_period_then_retry_at_the_reset() {
        let alg = monthly(31);
        let mut s = alg.fresh();
        let t0 = at("2023-02-10T00:00:00Z");
        let period = at("2023-02-28T00:00:00Z") - at("2023-01-31T00:00:00Z");
        let to_end = at("2023-02-28T00:00:00Z") - t0;
        for left in (0..3).rev() {
            let d = run(&alg, &mut s, t0, 1);
            assert!(d.is_allowed());
            assert_eq!(d.remaining(), left);
            assert_eq!(d.limit(), 3);
            assert_eq!(d.window_nanos(), period);
            assert_eq!(d.reset_after_nanos(), to_end);
        }
        let d = run(&alg, &mut s, t0 + S, 1);
        assert!(d.is_denied());
        assert_eq!(d.retry_after_nanos(), to_end - S);
        assert!(run(&alg, &mut s, at("2023-02-28T00:00:00Z") - 1, 1).is_denied());
        let d = run(&alg, &mut s, at("2023-02-28T00:00:00Z"), 2);
        assert!(d.is_allowed());
        assert_eq!(d.remaining(), 1);
        assert_eq!(
            d.window_nanos(),
            at("2023-03-31T00:00:00Z") - at("2023-02-28T00:00:00Z")
        );
    }

    #[test]
    fn an_untouched_key_reports_no_reset_and_zero_cost_consumes_nothing() {
        let alg = CalendarQuota::daily(10).unwrap();
        let mut s = alg.fresh();
        let d = run(&alg, &mut s, 5 * S, 0);
        assert_eq!((d.remaining(), d.reset_after_nanos()), (10, 0));
        assert_eq!(s, CalendarState::default());
        assert!(alg.is_idle(&s, 0));
    }

    #[test]
    fn an_earlier_reading_stays_in_the_keys_period() {
        let alg = CalendarQuota::daily(2).unwrap();
        let mut s = alg.fresh();
        let midnight = at("2024-06-02T00:00:00Z");
        assert!(run(&alg, &mut s, midnight + 1, 2).is_allowed());
        // a thread that read the clock just before midnight, then took the lock
        let d = run(&alg, &mut s, midnight - 1, 1);
        assert!(d.is_denied());
        assert_eq!(d.retry_after_nanos(), DAY_NANOS);
        assert!(!alg.is_idle(&s, midnight - 1));
        alg.refund(&mut s, midnight - 1, 1);
        assert_eq!(s.count, 1);
        assert_eq!(s.start, midnight);
    }

    #[test]
    fn idle_once_the_period_ends_and_refund_never_goes_below_fresh() {
        let alg = monthly(1);
        let mut s = alg.fresh();
        let t = at("2024-02-10T00:00:00Z");
        run(&alg, &mut s, t, 3);
        alg.refund(&mut s, t, 1);
        assert_eq!(s.count, 2);
        assert!(!alg.is_idle(&s, at("2024-02-29T23:59:59Z")));
        assert!(alg.is_idle(&s, at("2024-03-01T00:00:00Z")));
        alg.refund(&mut s, t, 50);
        assert_eq!(s.count, 0);
        assert!(alg.is_idle(&s, t));
        // a refund after the period ended does not reach back into it
        run(&alg, &mut s, t, 3);
        alg.refund(&mut s, at("2024-03-02T00:00:00Z"), 2);
        assert_eq!(s.count, 0);
    }

    #[test]
    fn rate_is_the_count_per_nominal_window_and_with_rate_keeps_the_calendar() {
        let alg = monthly(31);
        assert_eq!(alg.rate().to_string(), "3/30d");
        assert_eq!(
            CalendarQuota::daily(1000).unwrap().rate().to_string(),
            "1000/day"
        );
        let pro = alg.with_rate("150/min".parse().unwrap());
        assert_eq!(
            (pro.count(), pro.period(), pro.anchor()),
            (150, Period::Month, alg.anchor())
        );
        assert_eq!(pro.rate().to_string(), "150/30d");
        assert_eq!(CalendarQuota::monthly(0), Err(RateError::ZeroCount));
    }

    #[test]
    fn a_damaged_state_is_stale_never_a_panic() {
        let alg = CalendarQuota::daily(10).unwrap();
        for mut s in [
            CalendarState {
                start: 200,
                end: 100,
                count: 1,
            },
            CalendarState {
                start: 100,
                end: 100,
                count: 3,
            },
            CalendarState {
                start: 0,
                end: u64::MAX,
                count: u64::MAX,
            },
        ] {
            let before = s;
            let d = alg.decide(&mut s.clone(), 50, 1);
            if before.start >= before.end {
                // Judged as a fresh period.
                assert_eq!(d.remaining(), 9, "{before:?}");
            } else {
                assert!(d.is_denied());
            }
            alg.commit(&mut s, 50, 1);
            alg.refund(&mut s, 50, 1);
            let _ = alg.is_idle(&s, 50);
        }
    }
}
