//! Small formatting pieces: a fixed-capacity text buffer, dates, base64, and Structured
//! Field values (RFC 9651) as the rate-limit fields use them.

use std::fmt::{self, Write};

use super::HeaderError;

/// A text buffer on the stack; formatting into it never allocates.
pub(crate) struct Buf {
    bytes: [u8; 1024],
    len: usize,
}

impl Buf {
    pub(crate) fn new() -> Buf {
        Buf {
            bytes: [0; 1024],
            len: 0,
        }
    }

    pub(crate) fn clear(&mut self) {
        self.len = 0;
    }

    pub(crate) fn as_str(&self) -> &str {
        // Only `write_str` fills the buffer, with whole `&str`s.
        std::str::from_utf8(&self.bytes[..self.len]).unwrap_or("")
    }
}

impl Write for Buf {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len + s.len();
        let slot = self.bytes.get_mut(self.len..end).ok_or(fmt::Error)?;
        slot.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

/// Formats into `buf`, mapping a full buffer to a typed error.
pub(crate) fn put(buf: &mut Buf, args: fmt::Arguments<'_>) -> Result<(), HeaderError> {
    buf.write_fmt(args).map_err(|_| HeaderError::TooLong)
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian calendar.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// (year, month, day) to days since 1970-01-01; the inverse of `civil_from_days`.
pub(crate) fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = year - i64::from(month <= 2);
    let era = year.div_euclid(400);
    let yoe = year.rem_euclid(400);
    let mp = i64::from((month + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// English month abbreviations, as HTTP-dates spell them.
pub(crate) const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

struct Civil {
    year: i64,
    month: u32,
    day: u32,
    hour: u64,
    minute: u64,
    second: u64,
    weekday: usize,
}

fn civil(unix_seconds: u64) -> Civil {
    let days = (unix_seconds / 86_400) as i64;
    let secs = unix_seconds % 86_400;
    let (year, month, day) = civil_from_days(days);
    Civil {
        year,
        month,
        day,
        hour: secs / 3_600,
        minute: secs / 60 % 60,
        second: secs % 60,
        // 1970-01-01 was a Thursday
        weekday: ((days + 4) % 7) as usize,
    }
}

/// `2025-01-21T17:00:00.000Z` for whole Unix seconds.
pub(crate) fn iso8601(buf: &mut Buf, unix_seconds: u64) -> Result<(), HeaderError> {
    let c = civil(unix_seconds);
    put(
        buf,
        format_args!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.000Z",
            c.year, c.month, c.day, c.hour, c.minute, c.second
        ),
    )
}

/// An IMF-fixdate (RFC 9110 §5.6.7): `Sun, 06 Nov 1994 08:49:37 GMT`.
pub(crate) fn http_date(buf: &mut Buf, unix_seconds: u64) -> Result<(), HeaderError> {
    const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
    let c = civil(unix_seconds);
    if c.year > 9_999 {
        return Err(HeaderError::OutOfRange(unix_seconds));
    }
    put(
        buf,
        format_args!(
            "{}, {:02} {} {:04} {:02}:{:02}:{:02} GMT",
            DAYS[c.weekday],
            c.day,
            MONTHS[(c.month - 1) as usize],
            c.year,
            c.hour,
            c.minute,
            c.second
        ),
    )
}

/// Standard base64 with padding (RFC 4648 §4), as Structured Field byte sequences use.
pub(crate) fn base64(buf: &mut Buf, bytes: &[u8]) -> Result<(), HeaderError> {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        let mut out = [b'='; 4];
        for (i, slot) in out.iter_mut().enumerate().take(chunk.len() + 1) {
            *slot = ALPHABET[(n >> (18 - 6 * i) & 63) as usize];
        }
        put(
            buf,
            format_args!("{}", std::str::from_utf8(&out).unwrap_or("")),
        )?;
    }
    Ok(())
}

/// The largest integer a Structured Field may carry.
pub(crate) const SF_INTEGER_MAX: u64 = 999_999_999_999_999;

/// A Structured Field integer, or an error if it is out of range.
pub(crate) fn sf_integer(buf: &mut Buf, value: u64) -> Result<(), HeaderError> {
    if value > SF_INTEGER_MAX {
        return Err(HeaderError::OutOfRange(value));
    }
    put(buf, format_args!("{value}"))
}

/// A Structured Field string: printable ASCII only, with `"` and `\` escaped.
pub(crate) fn sf_string(buf: &mut Buf, value: &str) -> Result<(), HeaderError> {
    if !value.bytes().all(|b| (0x20..=0x7e).contains(&b)) {
        return Err(HeaderError::NotPrintable(value.to_owned()));
    }
    buf.write_char('"').map_err(|_| HeaderError::TooLong)?;
    for c in value.chars() {
        if c == '"' || c == '\\' {
            buf.write_char('\\').map_err(|_| HeaderError::TooLong)?;
        }
        buf.write_char(c).map_err(|_| HeaderError::TooLong)?;
    }
    buf.write_char('"').map_err(|_| HeaderError::TooLong)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(f: impl FnOnce(&mut Buf) -> Result<(), HeaderError>) -> String {
        let mut buf = Buf::new();
        f(&mut buf).unwrap();
        buf.as_str().to_owned()
    }

    #[test]
    fn days_and_civil_dates_round_trip() {
        for days in (-800_000..800_000).step_by(97) {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days, "{y}-{m}-{d}");
        }
        assert_eq!(days_from_civil(2024, 2, 29), 19_782);
        assert_eq!(days_from_civil(1970, 1, 1), 0);
    }

    #[test]
    fn dates_across_leap_days_and_padding() {
        assert_eq!(
            text(|b| http_date(b, 784_111_777)),
            "Sun, 06 Nov 1994 08:49:37 GMT"
        );
        assert_eq!(
            text(|b| http_date(b, 946_684_799)),
            "Fri, 31 Dec 1999 23:59:59 GMT"
        );
        assert_eq!(
            text(|b| http_date(b, 951_782_400)),
            "Tue, 29 Feb 2000 00:00:00 GMT"
        );
        assert_eq!(
            text(|b| http_date(b, 1_709_164_800)),
            "Thu, 29 Feb 2024 00:00:00 GMT"
        );
        assert_eq!(
            text(|b| http_date(b, 1_709_251_200)),
            "Fri, 01 Mar 2024 00:00:00 GMT"
        );
        assert_eq!(text(|b| http_date(b, 0)), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(
            text(|b| iso8601(b, 1_737_478_800)),
            "2025-01-21T17:00:00.000Z"
        );
        assert_eq!(
            text(|b| iso8601(b, 4_107_542_400)),
            "2100-03-01T00:00:00.000Z"
        );
    }

    #[test]
    fn base64_pads() {
        assert_eq!(text(|b| base64(b, b"")), "");
        assert_eq!(text(|b| base64(b, b"f")), "Zg==");
        assert_eq!(text(|b| base64(b, b"fo")), "Zm8=");
        assert_eq!(text(|b| base64(b, b"foo")), "Zm9v");
        assert_eq!(text(|b| base64(b, b"foobar")), "Zm9vYmFy");
    }

    #[test]
    fn structured_field_strings_and_integers() {
        assert_eq!(text(|b| sf_string(b, r#"a"b\c"#)), r#""a\"b\\c""#);
        assert!(sf_string(&mut Buf::new(), "naïve").is_err());
        assert!(sf_string(&mut Buf::new(), "tab\there").is_err());
        assert_eq!(text(|b| sf_integer(b, SF_INTEGER_MAX)), "999999999999999");
        assert!(sf_integer(&mut Buf::new(), SF_INTEGER_MAX + 1).is_err());
    }
}
