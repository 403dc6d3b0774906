//! [`CycleAnchor`]: where the periods of a [`CalendarQuota`](super::CalendarQuota) start.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use jiff::civil::{DateTime, Time};
use jiff::tz::Offset;
use jiff::Timestamp;

/// Why a [`CycleAnchor`] was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AnchorError {
    /// Days of the month run from 1 to 31.
    #[error("anchor day {day} is not a day of the month (1 to 31)")]
    Day {
        /// The day that was given.
        day: u8,
    },
    /// Hours run to 23, minutes and seconds to 59.
    #[error("anchor time {hour:02}:{minute:02}:{second:02} is not a time of day")]
    Time {
        /// The hour that was given.
        hour: u8,
        /// The minute that was given.
        minute: u8,
        /// The second that was given.
        second: u8,
    },
    /// A timestamp outside the range the calendar supports.
    #[error("timestamp {secs} s is outside the supported calendar range")]
    OutOfRange {
        /// Seconds since the Unix epoch.
        secs: i64,
    },
    /// Text that is not an RFC 3339 timestamp.
    #[error("cannot parse anchor {input:?}: expected an RFC 3339 timestamp such as \"2025-01-31T09:00:00Z\"")]
    Parse {
        /// The text that was given.
        input: String,
    },
}

/// Where calendar periods start: a day of the month and a time of day, in UTC.
///
/// A billing system knows each account's anchor as a timestamp (the signup or the first
/// paid invoice); [`from_unix_secs`](Self::from_unix_secs) and the [`FromStr`]
/// implementation (RFC 3339) take that timestamp's day and time.
///
/// ```
/// use ratewarden::CycleAnchor;
///
/// let signup: CycleAnchor = "2024-01-31T09:30:00Z".parse()?;
/// assert_eq!(signup, CycleAnchor::new(31, 9, 30, 0)?);
/// assert_eq!(signup.day(), 31);
/// assert_eq!(CycleAnchor::default(), CycleAnchor::new(1, 0, 0, 0)?); // 1st, midnight UTC
/// assert!(CycleAnchor::new(32, 0, 0, 0).is_err());
/// # Ok::<(), ratewarden::AnchorError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(try_from = "String", into = "String"))]
pub struct CycleAnchor {
    pub(super) day: u8,
    /// Seconds after midnight UTC, below 86 400.
    pub(super) second_of_day: u32,
}

impl Default for CycleAnchor {
    /// The 1st of the month at midnight UTC.
    fn default() -> Self {
        CycleAnchor::MIDNIGHT
    }
}

impl CycleAnchor {
    /// The 1st of the month (for daily periods: every day) at 00:00:00 UTC.
    pub const MIDNIGHT: CycleAnchor = CycleAnchor {
        day: 1,
        second_of_day: 0,
    };

    /// Day `day` of the month at `hour:minute:second` UTC.
    pub fn new(day: u8, hour: u8, minute: u8, second: u8) -> Result<CycleAnchor, AnchorError> {
        if !(1..=31).contains(&day) {
            return Err(AnchorError::Day { day });
        }
        if hour > 23 || minute > 59 || second > 59 {
            return Err(AnchorError::Time {
                hour,
                minute,
                second,
            });
        }
        let second_of_day = u32::from(hour) * 3_600 + u32::from(minute) * 60 + u32::from(second);
        Ok(CycleAnchor { day, second_of_day })
    }

    /// The day and time of day (whole seconds, UTC) of a Unix timestamp, e.g. an
    /// account's billing cycle anchor.
    pub fn from_unix_secs(secs: i64) -> Result<CycleAnchor, AnchorError> {
        let ts = Timestamp::from_second(secs).map_err(|_| AnchorError::OutOfRange { secs })?;
        Ok(CycleAnchor::of(Offset::UTC.to_datetime(ts)))
    }

    fn of(dt: DateTime) -> CycleAnchor {
        // jiff guarantees the ranges: day 1..=31, hour 0..=23, minute and second 0..=59.
        let secs = |v: i8| u32::from(v.unsigned_abs());
        CycleAnchor {
            day: dt.day().unsigned_abs(),
            second_of_day: secs(dt.hour()) * 3_600 + secs(dt.minute()) * 60 + secs(dt.second()),
        }
    }

    /// The day of the month periods start on (monthly periods).
    pub fn day(&self) -> u8 {
        self.day
    }

    /// The time of day, after midnight UTC, at which periods start.
    pub fn time_of_day(&self) -> Duration {
        Duration::from_secs(u64::from(self.second_of_day))
    }

    pub(super) fn time(&self) -> Time {
        // In range by construction: second_of_day < 86 400.
        let s = self.second_of_day;
        Time::constant((s / 3_600) as i8, (s / 60 % 60) as i8, (s % 60) as i8, 0)
    }
}

impl fmt::Display for CycleAnchor {
    /// A representative timestamp, `2000-01-31T09:30:00Z`: the anchor's day and time in
    /// January 2000 (a 31-day month), so that the [`FromStr`] form reads it back.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = self.time();
        write!(
            f,
            "2000-01-{:02}T{:02}:{:02}:{:02}Z",
            self.day,
            t.hour(),
            t.minute(),
            t.second()
        )
    }
}

impl FromStr for CycleAnchor {
    type Err = AnchorError;

    /// Parses an RFC 3339 timestamp (`2025-01-31T09:00:00Z`, `2025-01-31T10:00:00+01:00`)
    /// and takes its UTC day and time of day.
    fn from_str(input: &str) -> Result<CycleAnchor, AnchorError> {
        let ts: Timestamp = input.trim().parse().map_err(|_| AnchorError::Parse {
            input: input.to_owned(),
        })?;
        Ok(CycleAnchor::of(Offset::UTC.to_datetime(ts)))
    }
}

impl TryFrom<String> for CycleAnchor {
    type Error = AnchorError;

    fn try_from(s: String) -> Result<CycleAnchor, AnchorError> {
        s.parse()
    }
}

impl From<CycleAnchor> for String {
    fn from(a: CycleAnchor) -> String {
        a.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anchors_validate_and_parse_timestamps() {
        assert_eq!(
            CycleAnchor::new(0, 0, 0, 0),
            Err(AnchorError::Day { day: 0 })
        );
        assert!(matches!(
            CycleAnchor::new(1, 24, 0, 0),
            Err(AnchorError::Time { .. })
        ));
        assert!(matches!(
            CycleAnchor::new(1, 0, 60, 0),
            Err(AnchorError::Time { .. })
        ));
        let a: CycleAnchor = "2024-01-31T10:30:00+01:00".parse().unwrap();
        assert_eq!(a, CycleAnchor::new(31, 9, 30, 0).unwrap());
        assert_eq!(a.time_of_day(), Duration::from_secs(9 * 3_600 + 1_800));
        assert_eq!(a.to_string().parse::<CycleAnchor>().unwrap(), a);
        let unix = CycleAnchor::from_unix_secs(1_706_693_400).unwrap(); // 2024-01-31T09:30:00Z
        assert_eq!(unix, a);
        assert!(matches!(
            "31st".parse::<CycleAnchor>(),
            Err(AnchorError::Parse { .. })
        ));
        assert!(CycleAnchor::from_unix_secs(i64::MAX).is_err());
    }
}
