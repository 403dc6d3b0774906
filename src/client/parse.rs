//! Lenient readers for the numbers, dates and Structured Field lists servers send.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::headers::text::{days_from_civil, MONTHS};

/// A non-negative decimal: whole part and nanoseconds of fraction. Negative input reads
/// as zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Number {
    int: u64,
    nanos: u32,
}

impl Number {
    /// As a count: the fraction is dropped.
    pub(super) fn count(self) -> u64 {
        self.int
    }

    /// As seconds.
    pub(super) fn delay(self) -> Duration {
        Duration::new(self.int, self.nanos)
    }
}

/// `12`, `-3` (as 0), `1.5`, `+7`, `.25`; anything else is `None`. Saturates on overflow.
pub(super) fn unsigned(s: &str) -> Option<Number> {
    let s = s.trim();
    let (negative, s) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    let digits = |t: &str| t.bytes().all(|b| b.is_ascii_digit());
    if (int.is_empty() && frac.is_empty()) || !digits(int) || !digits(frac) {
        return None;
    }
    if negative {
        return Some(Number { int: 0, nanos: 0 });
    }
    let int = int.bytes().fold(0u64, |n, b| {
        n.saturating_mul(10).saturating_add(u64::from(b - b'0'))
    });
    let mut nanos = 0u32;
    for (i, b) in frac.bytes().take(9).enumerate() {
        nanos += u32::from(b - b'0') * 10u32.pow(8 - i as u32);
    }
    Some(Number { int, nanos })
}

fn since(now: SystemTime, at: Duration) -> Duration {
    let now = now.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    at.saturating_sub(now)
}

/// A reset: seconds from now, Unix seconds (≥ 10⁹), Unix milliseconds (≥ 10¹²), or an
/// ISO-8601 UTC timestamp. Times in the past read as zero.
pub(super) fn reset(value: &str, now: SystemTime) -> Option<Duration> {
    if value.contains('T') {
        return iso8601(value).map(|at| since(now, at));
    }
    let n = unsigned(value)?;
    Some(match n.int {
        1_000_000_000_000.. => since(now, Duration::from_millis(n.int)),
        1_000_000_000.. => since(now, n.delay()),
        _ => n.delay(),
    })
}

/// `Retry-After`: delay-seconds or an HTTP-date.
pub(super) fn delay_or_date(value: &str, now: SystemTime) -> Option<Duration> {
    match value.bytes().next()? {
        b'0'..=b'9' | b'-' | b'+' | b'.' => unsigned(value).map(Number::delay),
        _ => http_date(value).map(|at| since(now, at)),
    }
}

fn seconds_of(year: i64, month: u32, day: u32, h: u64, m: u64, s: u64) -> Option<Duration> {
    // Four-digit years only, as both date forms have: anything else is not a date (and
    // a huge year would overflow the day count).
    if !(1..=9_999).contains(&year)
        || !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || h > 23
        || m > 59
        || s > 60
    {
        return None;
    }
    let days = u64::try_from(days_from_civil(year, month, day)).ok()?;
    Some(Duration::from_secs(days * 86_400 + h * 3_600 + m * 60 + s))
}

fn num<T: std::str::FromStr>(s: &str) -> Option<T> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// `2025-01-21T17:00:00Z`, with optional fraction and `Z` or `+00:00`.
fn iso8601(value: &str) -> Option<Duration> {
    let (date, time) = value.split_once('T')?;
    let mut d = date.splitn(3, '-');
    let (y, mo, da) = (d.next()?, d.next()?, d.next()?);
    let time = time
        .strip_suffix('Z')
        .or_else(|| time.strip_suffix("+00:00"))?;
    let (hms, frac) = time.split_once('.').unwrap_or((time, ""));
    let mut t = hms.splitn(3, ':');
    let (h, mi, s) = (t.next()?, t.next()?, t.next()?);
    let whole = seconds_of(num(y)?, num(mo)?, num(da)?, num(h)?, num(mi)?, num(s)?)?;
    let fraction = unsigned(&format!("0.{frac}"))?.delay();
    Some(whole + fraction)
}

/// IMF-fixdate: `Sun, 06 Nov 1994 08:49:37 GMT` (the weekday is not checked).
fn http_date(value: &str) -> Option<Duration> {
    let rest = value.split_once(", ").map_or(value, |(_, rest)| rest);
    let mut parts = rest.split_ascii_whitespace();
    let (day, month, year, time) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if parts.next() != Some("GMT") {
        return None;
    }
    let month = MONTHS.iter().position(|m| m.eq_ignore_ascii_case(month))? as u32 + 1;
    let mut t = time.splitn(3, ':');
    let (h, m, s) = (t.next()?, t.next()?, t.next()?);
    seconds_of(num(year)?, month, num(day)?, num(h)?, num(m)?, num(s)?)
}

/// One member of a Structured Field list or dictionary, read leniently.
pub(super) struct Item<'v> {
    /// The member's string value (`"name"`), unescaped, when it is a string.
    pub(super) name: Option<String>,
    /// The member's bare item text, before any parameters.
    pub(super) bare: &'v str,
    /// Parameters, and for a `key=value` dictionary member, that pair itself; values that
    /// are not numbers are `None`.
    pub(super) params: Vec<(&'v str, Option<Number>)>,
}

/// Splits `s` on `sep` outside double-quoted strings.
fn split_outside_quotes(s: &str, sep: u8) -> impl Iterator<Item = &str> {
    let mut parts = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, b) in s.bytes().enumerate() {
        match b {
            _ if escaped => escaped = false,
            b'\\' if quoted => escaped = true,
            b'"' => quoted = !quoted,
            _ if b == sep && !quoted => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    parts.into_iter()
}

fn sf_string(s: &str) -> Option<String> {
    let inner = s.strip_prefix('"')?.strip_suffix('"')?;
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        out.push(if c == '\\' { chars.next()? } else { c });
    }
    Some(out)
}

pub(super) fn sf_items(value: &str) -> Vec<Item<'_>> {
    let mut items = Vec::new();
    for member in split_outside_quotes(value, b',') {
        let mut parts = split_outside_quotes(member.trim(), b';');
        let bare = parts.next().unwrap_or("").trim();
        let name = sf_string(bare);
        let mut params: Vec<(&str, Option<Number>)> = parts
            .filter_map(|p| p.split_once('='))
            .map(|(k, v)| (k.trim(), unsigned(v)))
            .collect();
        if name.is_none() {
            if let Some((k, v)) = bare.split_once('=') {
                params.insert(0, (k.trim(), unsigned(v)));
            }
        }
        items.push(Item { name, bare, params });
    }
    items
}

/// A drafts 6/7 policy item's bare integer.
pub(super) fn integer_list_item(bare: &str) -> Option<u64> {
    num(bare)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_read_leniently() {
        let n = |s| unsigned(s).map(|n| (n.int, n.nanos));
        assert_eq!(n("12"), Some((12, 0)));
        assert_eq!(n(" 1.5 "), Some((1, 500_000_000)));
        assert_eq!(n(".25"), Some((0, 250_000_000)));
        assert_eq!(n("-3"), Some((0, 0)));
        assert_eq!(n("+7"), Some((7, 0)));
        assert_eq!(n("1.0000000019"), Some((1, 1)));
        assert_eq!(n("99999999999999999999999"), Some((u64::MAX, 0)));
        for bad in ["", "-", ".", "1e3", "abc", "1.2.3", "0x10", "--1", "1 2"] {
            assert_eq!(n(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn dates_in_both_forms() {
        let epoch = UNIX_EPOCH;
        assert_eq!(
            delay_or_date("Sun, 06 Nov 1994 08:49:37 GMT", epoch),
            Some(Duration::from_secs(784_111_777))
        );
        assert_eq!(
            reset("2025-01-21T17:00:00.000Z", epoch),
            Some(Duration::from_secs(1_737_478_800))
        );
        assert_eq!(
            reset("2025-01-21T17:00:00.5+00:00", epoch),
            Some(Duration::from_millis(1_737_478_800_500))
        );
        for bad in [
            "Sun, 06 Nov 1994 08:49:37",
            "Sun, 32 Nov 1994 08:49:37 GMT",
            "Sun, 06 Foo 1994 08:49:37 GMT",
            "yesterday",
            "2025-13-01T00:00:00Z",
            "2025-01-01T00:00:00",
            "Sun, 06 Nov 999999999999999999 08:49:37 GMT",
            "999999999999-01-01T00:00:00Z",
            "-5-01-01T00:00:00Z",
        ] {
            assert_eq!(
                delay_or_date(bad, epoch).or(reset(bad, epoch)),
                None,
                "{bad}"
            );
        }
    }

    #[test]
    fn structured_lists_keep_commas_inside_strings() {
        let items = sf_items(r#""a,b";q=10;w=60, "c\"d";r=1, limit=5"#);
        assert_eq!(items.len(), 3);
        assert_eq!(items[0].name.as_deref(), Some("a,b"));
        assert_eq!(items[0].params.len(), 2);
        assert_eq!(items[1].name.as_deref(), Some("c\"d"));
        assert_eq!(items[2].name, None);
        assert_eq!(items[2].params[0].0, "limit");
        assert_eq!(items[2].params[0].1.map(Number::count), Some(5));
    }
}
