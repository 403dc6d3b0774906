//! The styles, written through a closure so that a dry run can validate first.

use std::time::Duration;

use super::text::{base64, http_date, iso8601, put, sf_integer, sf_string, Buf};
use super::{
    ceil_secs, closest, HeaderError, HeaderFormat, Outcome, Prefix, Report, Reset, RetryAfter,
    Snapshot, Style,
};

type Out<'o> = dyn FnMut(&str, &str) + 'o;

const CLASSIC: [[&str; 4]; 2] = [
    [
        "X-RateLimit-Limit",
        "X-RateLimit-Remaining",
        "X-RateLimit-Reset",
        "X-RateLimit-Used",
    ],
    [
        "X-Rate-Limit-Limit",
        "X-Rate-Limit-Remaining",
        "X-Rate-Limit-Reset",
        "X-Rate-Limit-Used",
    ],
];

fn names(prefix: Prefix) -> [&'static str; 4] {
    match prefix {
        Prefix::XRateLimit => CLASSIC[0],
        Prefix::XRateDashLimit => CLASSIC[1],
    }
}

fn remaining(s: &Snapshot<'_>) -> u64 {
    s.remaining.min(s.limit)
}

pub(super) fn all(
    format: &HeaderFormat,
    o: &Outcome<'_, '_>,
    now: Duration,
    out: &mut Out<'_>,
) -> Result<(), HeaderError> {
    let mut buf = Buf::new();
    match format.style {
        Style::Classic { prefix, used } => {
            let s = pick(o)?;
            let [limit, rem, reset, used_name] = names(prefix);
            number(&mut buf, out, limit, s.limit)?;
            number(&mut buf, out, rem, remaining(s))?;
            reset_value(&mut buf, format.reset, now, s.reset_after)?;
            out(reset, buf.as_str());
            if used {
                number(&mut buf, out, used_name, s.limit - remaining(s))?;
            }
        }
        Style::PerWindow { prefix } => {
            let [limit, rem, reset, _] = names(prefix);
            let mut name = Buf::new();
            for s in o.scopes {
                let suffix = window_suffix(s)?;
                name.clear();
                put(&mut name, format_args!("{limit}-{suffix}"))?;
                number(&mut buf, out, name.as_str(), s.limit)?;
                name.clear();
                put(&mut name, format_args!("{rem}-{suffix}"))?;
                number(&mut buf, out, name.as_str(), remaining(s))?;
            }
            let first = o.scopes.first().ok_or(HeaderError::NoScope)?;
            reset_value(&mut buf, format.reset, now, first.reset_after)?;
            out(reset, buf.as_str());
        }
        Style::Ietf(report) => {
            buf.clear();
            for (i, s) in o.scopes.iter().enumerate() {
                separator(&mut buf, i)?;
                sf_string(&mut buf, s.name)?;
                put(&mut buf, format_args!(";q="))?;
                sf_integer(&mut buf, s.limit)?;
                if let Some(unit) = s.quota_unit.filter(|u| *u != "requests") {
                    put(&mut buf, format_args!(";qu="))?;
                    sf_string(&mut buf, unit)?;
                }
                window_param(&mut buf, s)?;
                partition_key(&mut buf, s)?;
            }
            if o.scopes.is_empty() {
                return Err(HeaderError::NoScope);
            }
            out("RateLimit-Policy", buf.as_str());
            buf.clear();
            let item = |buf: &mut Buf, i: usize, s: &Snapshot<'_>| -> Result<(), HeaderError> {
                separator(buf, i)?;
                sf_string(buf, s.name)?;
                put(buf, format_args!(";r="))?;
                sf_integer(buf, remaining(s))?;
                put(buf, format_args!(";t="))?;
                sf_integer(buf, ceil_secs(s.reset_after))?;
                partition_key(buf, s)
            };
            match report {
                Report::Closest => item(&mut buf, 0, pick(o)?)?,
                Report::All => {
                    for (i, s) in o.scopes.iter().enumerate() {
                        item(&mut buf, i, s)?;
                    }
                }
            }
            out("RateLimit", buf.as_str());
        }
        Style::IetfDraft7 => {
            let s = pick(o)?;
            buf.clear();
            put(&mut buf, format_args!("limit="))?;
            sf_integer(&mut buf, s.limit)?;
            put(&mut buf, format_args!(", remaining="))?;
            sf_integer(&mut buf, remaining(s))?;
            put(&mut buf, format_args!(", reset="))?;
            sf_integer(&mut buf, ceil_secs(s.reset_after))?;
            out("RateLimit", buf.as_str());
            policies(&mut buf, o)?;
            out("RateLimit-Policy", buf.as_str());
        }
        Style::IetfDraft6 => {
            let s = pick(o)?;
            for (name, value) in [
                ("RateLimit-Limit", s.limit),
                ("RateLimit-Remaining", remaining(s)),
                ("RateLimit-Reset", ceil_secs(s.reset_after)),
            ] {
                buf.clear();
                sf_integer(&mut buf, value)?;
                out(name, buf.as_str());
            }
            policies(&mut buf, o)?;
            out("RateLimit-Policy", buf.as_str());
        }
        Style::RetryAfterOnly => {}
    }
    if let (true, Some(form)) = (o.denied, format.retry_after) {
        let delay = o.retry_after.map_or(1, ceil_secs).max(1);
        buf.clear();
        match form {
            RetryAfter::Seconds => put(&mut buf, format_args!("{delay}"))?,
            RetryAfter::HttpDate => {
                let at = ceil_secs(now.saturating_add(Duration::from_secs(delay)));
                http_date(&mut buf, at)?;
            }
        }
        out("Retry-After", buf.as_str());
    }
    Ok(())
}

fn pick<'s, 'a>(o: &Outcome<'s, 'a>) -> Result<&'s Snapshot<'a>, HeaderError> {
    closest(o.scopes)
        .and_then(|i| o.scopes.get(i))
        .ok_or(HeaderError::NoScope)
}

fn number(buf: &mut Buf, out: &mut Out<'_>, name: &str, value: u64) -> Result<(), HeaderError> {
    buf.clear();
    put(buf, format_args!("{value}"))?;
    out(name, buf.as_str());
    Ok(())
}

fn reset_value(
    buf: &mut Buf,
    reset: Reset,
    now: Duration,
    after: Duration,
) -> Result<(), HeaderError> {
    buf.clear();
    match reset {
        Reset::Seconds => put(buf, format_args!("{}", ceil_secs(after))),
        Reset::UnixSeconds => put(
            buf,
            format_args!("{}", ceil_secs(now.saturating_add(after))),
        ),
        Reset::Iso8601 => iso8601(buf, ceil_secs(now.saturating_add(after))),
    }
}

/// `;w=N` with N ≥ 1 (whole seconds, rounded up), or nothing for a zero window.
fn window_param(buf: &mut Buf, s: &Snapshot<'_>) -> Result<(), HeaderError> {
    match ceil_secs(s.window) {
        0 => Ok(()),
        w => {
            put(buf, format_args!(";w="))?;
            sf_integer(buf, w)
        }
    }
}

fn window_suffix<'a>(s: &Snapshot<'a>) -> Result<&'a str, HeaderError> {
    if s.window.subsec_nanos() == 0 {
        match s.window.as_secs() {
            1 => return Ok("Second"),
            60 => return Ok("Minute"),
            3_600 => return Ok("Hour"),
            86_400 => return Ok("Day"),
            _ => {}
        }
    }
    // Any other window takes the scope's name, which must be a valid header name token.
    let tchar = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    if s.name.is_empty() || !s.name.bytes().all(tchar) {
        return Err(HeaderError::NotPrintable(s.name.to_owned()));
    }
    Ok(s.name)
}

fn separator(buf: &mut Buf, i: usize) -> Result<(), HeaderError> {
    if i > 0 {
        put(buf, format_args!(", "))?;
    }
    Ok(())
}

fn partition_key(buf: &mut Buf, s: &Snapshot<'_>) -> Result<(), HeaderError> {
    if let Some(pk) = s.partition_key {
        put(buf, format_args!(";pk=:"))?;
        base64(buf, pk)?;
        put(buf, format_args!(":"))?;
    }
    Ok(())
}

/// `100;w=10, 1000;w=3600` (drafts 6 and 7).
fn policies(buf: &mut Buf, o: &Outcome<'_, '_>) -> Result<(), HeaderError> {
    buf.clear();
    for (i, s) in o.scopes.iter().enumerate() {
        separator(buf, i)?;
        sf_integer(buf, s.limit)?;
        window_param(buf, s)?;
    }
    Ok(())
}
