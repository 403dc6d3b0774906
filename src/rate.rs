//! [`Rate`]: a quota of `count` units per `window`, validated on construction and
//! written and read as short human strings (`"600/min"`, `"8/10s"`).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use crate::RateError;

const NANOS_PER_SEC: u64 = 1_000_000_000;

/// The longest window accepted: 100 years of 365.25 days. Longer windows would leave too
/// little headroom in the `u64` nanosecond arithmetic that the algorithms rely on.
pub const MAX_WINDOW: Duration = Duration::from_secs(100 * 36_525 * 864);

/// A quota: at most `count` units in any `window`.
///
/// ```
/// use ratewarden::Rate;
/// use std::time::Duration;
///
/// let r: Rate = "600/min".parse()?;
/// assert_eq!(r, Rate::per_minute(600)?);
/// assert_eq!(r.count(), 600);
/// assert_eq!(r.window(), Duration::from_secs(60));
/// assert_eq!(Rate::new(8, Duration::from_secs(10))?.to_string(), "8/10s");
/// assert!("0/min".parse::<Rate>().is_err());
/// # Ok::<(), ratewarden::RateError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Rate {
    count: u64,
    window_nanos: u64,
}

impl Rate {
    /// A rate from fields another valid `Rate` gave: `None` for a zero count or window.
    pub(crate) fn from_parts(count: u64, window_nanos: u64) -> Option<Rate> {
        (count > 0 && window_nanos > 0).then_some(Rate {
            count,
            window_nanos,
        })
    }

    /// `count` units per `window`. Rejects a zero count, a zero window, a window longer
    /// than [`MAX_WINDOW`], and more than one unit per nanosecond.
    pub fn new(count: u64, window: Duration) -> Result<Rate, RateError> {
        if count == 0 {
            return Err(RateError::ZeroCount);
        }
        if window.is_zero() {
            return Err(RateError::ZeroWindow);
        }
        if window > MAX_WINDOW {
            return Err(RateError::WindowTooLong {
                window,
                max: MAX_WINDOW,
            });
        }
        // Lossless: window <= MAX_WINDOW, which is far below u64::MAX nanoseconds.
        let window_nanos = window.as_nanos() as u64;
        if count > window_nanos {
            return Err(RateError::TooFine { count, window });
        }
        Ok(Rate {
            count,
            window_nanos,
        })
    }

    /// `count` per second.
    pub fn per_second(count: u64) -> Result<Rate, RateError> {
        Rate::new(count, Duration::from_secs(1))
    }

    /// `count` per minute.
    pub fn per_minute(count: u64) -> Result<Rate, RateError> {
        Rate::new(count, Duration::from_secs(60))
    }

    /// `count` per hour.
    pub fn per_hour(count: u64) -> Result<Rate, RateError> {
        Rate::new(count, Duration::from_secs(3_600))
    }

    /// `count` per day (86 400 s; calendar days are a separate concern).
    pub fn per_day(count: u64) -> Result<Rate, RateError> {
        Rate::new(count, Duration::from_secs(86_400))
    }

    /// Units admitted per window.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The window length.
    pub fn window(&self) -> Duration {
        Duration::from_nanos(self.window_nanos)
    }

    /// The window length in nanoseconds.
    pub fn window_nanos(&self) -> u64 {
        self.window_nanos
    }
}

/// Units a window can be written in, largest first; the first that divides a window
/// exactly is the one [`Display`](fmt::Display) uses.
const UNITS: &[(&str, u64)] = &[
    ("day", 86_400 * NANOS_PER_SEC),
    ("hour", 3_600 * NANOS_PER_SEC),
    ("min", 60 * NANOS_PER_SEC),
    ("s", NANOS_PER_SEC),
    ("ms", 1_000_000),
    ("us", 1_000),
    ("ns", 1),
];

fn unit_nanos(unit: &str) -> Option<u64> {
    let nanos = match unit {
        "ns" | "nanosecond" | "nanoseconds" => 1,
        "us" | "µs" | "microsecond" | "microseconds" => 1_000,
        "ms" | "millisecond" | "milliseconds" => 1_000_000,
        "s" | "sec" | "secs" | "second" | "seconds" => NANOS_PER_SEC,
        "m" | "min" | "mins" | "minute" | "minutes" => 60 * NANOS_PER_SEC,
        "h" | "hr" | "hrs" | "hour" | "hours" => 3_600 * NANOS_PER_SEC,
        "d" | "day" | "days" => 86_400 * NANOS_PER_SEC,
        "w" | "week" | "weeks" => 7 * 86_400 * NANOS_PER_SEC,
        _ => return None,
    };
    Some(nanos)
}

impl fmt::Display for Rate {
    /// Writes `count/window` with the largest unit that divides the window exactly:
    /// `600/min`, `8/10s`, `10/hour`, `1000/day`, `5/250ms`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (unit, size) = UNITS
            .iter()
            .copied()
            .find(|(_, size)| self.window_nanos % size == 0)
            .unwrap_or(("ns", 1));
        let multiple = self.window_nanos / size;
        if multiple == 1 {
            write!(f, "{}/{}", self.count, unit)
        } else {
            // Multiples read better with the short unit names: "15min", "2h", "7d".
            let short = match unit {
                "hour" => "h",
                "day" => "d",
                other => other,
            };
            write!(f, "{}/{}{}", self.count, multiple, short)
        }
    }
}

impl FromStr for Rate {
    type Err = RateError;

    /// Parses `COUNT/[MULTIPLE]UNIT`, e.g. `600/min`, `8/10s`, `1,000/day`, `10 / hour`.
    /// Units: ns, us, ms, s, min (or m), hour (or h), day (or d), week (or w), and their
    /// long forms. Underscores and commas in the count are ignored.
    fn from_str(input: &str) -> Result<Rate, RateError> {
        let err = |reason| RateError::Parse {
            input: input.to_owned(),
            reason,
        };
        let (count, window) = input.split_once('/').ok_or_else(|| err("missing '/'"))?;
        let count: String = count
            .trim()
            .chars()
            .filter(|c| *c != '_' && *c != ',')
            .collect();
        if count.is_empty() || !count.bytes().all(|b| b.is_ascii_digit()) {
            return Err(err("count is not a whole number"));
        }
        let count: u64 = count.parse().map_err(|_| err("count is too large"))?;
        let window = window.trim();
        let split = window
            .find(|c: char| !c.is_ascii_digit())
            .ok_or_else(|| err("missing time unit"))?;
        let (multiple, unit) = window.split_at(split);
        let multiple: u64 = if multiple.is_empty() {
            1
        } else {
            multiple
                .parse()
                .map_err(|_| err("window multiple is too large"))?
        };
        let size = unit_nanos(unit.trim()).ok_or_else(|| err("unknown time unit"))?;
        let nanos = multiple
            .checked_mul(size)
            .ok_or_else(|| err("window is too long"))?;
        Rate::new(count, Duration::from_nanos(nanos))
    }
}

#[cfg(feature = "serde")]
impl serde::Serialize for Rate {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

#[cfg(feature = "serde")]
impl<'de> serde::Deserialize<'de> for Rate {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Rate, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn displays_the_seed_forms() {
        for s in [
            "600/min", "8/10s", "10/hour", "1000/day", "5/250ms", "3/2h", "1/7d",
        ] {
            assert_eq!(s.parse::<Rate>().unwrap().to_string(), s);
        }
    }

    #[test]
    fn parses_aliases_and_separators() {
        let r = Rate::per_day(1000).unwrap();
        for s in [
            "1000/day",
            "1,000/day",
            "1_000 / 1d",
            "1000/24h",
            "1000/86400s",
        ] {
            assert_eq!(s.parse::<Rate>().unwrap(), r, "{s}");
        }
        assert_eq!("2/1w".parse::<Rate>().unwrap().to_string(), "2/7d");
    }

    #[test]
    fn rejects_bad_input_with_the_reason() {
        let reason = |s: &str| match s.parse::<Rate>() {
            Err(RateError::Parse { reason, .. }) => reason,
            other => panic!("{s}: {other:?}"),
        };
        assert_eq!(reason("600"), "missing '/'");
        assert_eq!(reason("x/min"), "count is not a whole number");
        assert_eq!(reason("-1/min"), "count is not a whole number");
        assert_eq!(reason("/min"), "count is not a whole number");
        assert_eq!(reason("99999999999999999999/min"), "count is too large");
        assert_eq!(reason("5/10"), "missing time unit");
        assert_eq!(reason("5/fortnight"), "unknown time unit");
        assert_eq!(reason("5/18446744073709551615d"), "window is too long");
        assert_eq!("0/min".parse::<Rate>(), Err(RateError::ZeroCount));
        assert_eq!("5/0s".parse::<Rate>(), Err(RateError::ZeroWindow));
        assert!(matches!(
            "5/200000d".parse::<Rate>(),
            Err(RateError::WindowTooLong { .. })
        ));
        assert!(matches!(
            "2000/1us".parse::<Rate>(),
            Err(RateError::TooFine { .. })
        ));
    }

    #[test]
    fn windows_of_years_are_fine_up_to_the_maximum() {
        let year = Duration::from_secs(365 * 86_400);
        assert!(Rate::new(1, year * 50).is_ok());
        assert!(Rate::new(1, MAX_WINDOW).is_ok());
        assert!(Rate::new(1, MAX_WINDOW + Duration::from_nanos(1)).is_err());
    }
}
