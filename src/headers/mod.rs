//! Rate-limit response headers in every convention deployed APIs use, and 429 bodies.
//!
//! A [`HeaderFormat`] turns one or more scope [`Snapshot`]s, the verdict, the retry-after
//! and the wall-clock time into `(name, value)` pairs written to a [`HeaderSink`] — a
//! `Vec<(String, String)>`, an `http::HeaderMap` (feature `http`), or your own. No web
//! framework is involved. Formatting happens in a stack buffer; only the sink stores
//! anything.
//!
//! Styles: classic `X-RateLimit-Limit/Remaining/Reset(/Used)` with the reset as Unix
//! seconds, seconds from now or an ISO-8601 timestamp; per-window suffixed sets
//! (`X-RateLimit-Remaining-Hour`, `-Day`); the IETF `RateLimit` / `RateLimit-Policy`
//! fields of draft-ietf-httpapi-ratelimit-headers-10, and the older combined (draft 7)
//! and separate (draft 6) forms; and `Retry-After` as delay-seconds or an HTTP-date,
//! combinable with every style.
//!
//! # Rules
//!
//! - Remaining and reset are never negative (they are unsigned here; a remaining above the
//!   limit is reported as the limit).
//! - Seconds round **up**: a reset 1 ms away is `1`, 1 000 ms is `1`, 1 001 ms is `2`, and
//!   0 ms is `0`. An absolute reset is `ceil(now + reset_after)` in Unix seconds.
//! - `Retry-After` delay-seconds is `max(1, ceil(retry_after))`: never `0` on a denial,
//!   which would invite an immediate, failing retry. The HTTP-date form names the first
//!   whole second no earlier than `now` plus that delay.
//! - With several scopes, the one closest to exhaustion is the one with the least
//!   remaining; ties go to the longer reset, then to the first declared.
//! - Structured Fields are written correctly or not at all: strings escape `"` and `\`
//!   and must be printable ASCII, integers stay within ±999 999 999 999 999, `w` is at
//!   least 1 (windows round up to whole seconds; a zero window, as for concurrency
//!   limits, leaves `w` out); anything else is a [`HeaderError`], never a malformed
//!   header.
//!
//! ```
//! use ratewarden::headers::{HeaderFormat, Reset, Snapshot};
//! use ratewarden::{Clock, FixedWindow, KeyedLimiter};
//! use std::time::{Duration, UNIX_EPOCH};
//!
//! let (clock, mock) = Clock::mock();
//! mock.increment(Duration::from_secs(1_715_797_213));
//! let limiter: KeyedLimiter<u32, FixedWindow> =
//!     KeyedLimiter::with_clock(FixedWindow::new("60/min".parse()?), clock.clone());
//! for _ in 0..13 {
//!     limiter.check(&1, 1)?;
//! }
//! let decision = limiter.check(&1, 1)?;
//! let mut headers: Vec<(String, String)> = Vec::new();
//! HeaderFormat::x_ratelimit()
//!     .reset(Reset::UnixSeconds)
//!     .write_decision("rpm", &decision, clock.now_system(), &mut headers)?;
//! assert_eq!(headers, [
//!     ("X-RateLimit-Limit".to_owned(), "60".to_owned()),
//!     ("X-RateLimit-Remaining".to_owned(), "46".to_owned()),
//!     ("X-RateLimit-Reset".to_owned(), "1715797260".to_owned()),
//! ]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod body;
mod snapshot;
pub(crate) mod text;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use body::{
    Meta, NestedError, NestedErrorBody, Problem, QueuedBody, ResetAtBody, ResetAtDetails,
    RetryDetails, SimpleError,
};
pub use snapshot::{closest, Snapshot};

use crate::{Decision, PolicyDecision};

/// Why headers could not be written. Nothing is written to the sink on error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HeaderError {
    /// A name or quota unit that a Structured Field string cannot carry.
    #[error("{0:?} is not printable ASCII and cannot be sent in a Structured Field")]
    NotPrintable(String),
    /// An integer beyond ±999 999 999 999 999, or a date beyond year 9999.
    #[error("{0} is out of range for this header")]
    OutOfRange(u64),
    /// The wall-clock time given lies before the Unix epoch.
    #[error("the current time lies before the Unix epoch")]
    BeforeEpoch,
    /// A value longer than 1 KiB.
    #[error("a header value would exceed 1 KiB")]
    TooLong,
    /// Nothing to report: no scope applied.
    #[error("no scope to report")]
    NoScope,
}

/// Anything that can take header pairs.
pub trait HeaderSink {
    /// Adds one header.
    fn append(&mut self, name: &str, value: &str);
}

impl HeaderSink for Vec<(String, String)> {
    fn append(&mut self, name: &str, value: &str) {
        self.push((name.to_owned(), value.to_owned()));
    }
}

#[cfg(feature = "http")]
impl HeaderSink for http::HeaderMap {
    fn append(&mut self, name: &str, value: &str) {
        // The formatter only produces valid names and visible-ASCII values; `try_append`
        // because `append` panics on a map that has reached its maximum size.
        if let (Ok(n), Ok(v)) = (
            http::HeaderName::from_bytes(name.as_bytes()),
            http::HeaderValue::from_str(value),
        ) {
            let _ = self.try_append(n, v);
        }
    }
}

/// How a reset time is written in the classic and per-window styles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reset {
    /// Unix seconds of the reset: `1715797260`.
    UnixSeconds,
    /// Seconds from now: `47`.
    Seconds,
    /// ISO-8601 UTC with milliseconds: `2025-01-21T17:00:00.000Z`.
    Iso8601,
}

/// How `Retry-After` is written on a denial.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RetryAfter {
    /// Delay-seconds: `Retry-After: 23`.
    Seconds,
    /// An HTTP-date: `Retry-After: Fri, 31 Dec 1999 23:59:59 GMT`.
    HttpDate,
}

/// Which scopes the IETF `RateLimit` field reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Report {
    /// The scope closest to exhaustion.
    Closest,
    /// Every scope.
    All,
}

/// The classic header name prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Prefix {
    /// `X-RateLimit-`.
    XRateLimit,
    /// `X-Rate-Limit-`.
    XRateDashLimit,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Style {
    Classic { prefix: Prefix, used: bool },
    PerWindow { prefix: Prefix },
    Ietf(Report),
    IetfDraft7,
    IetfDraft6,
    RetryAfterOnly,
}

/// A header convention. Build one at start-up and reuse it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct HeaderFormat {
    style: Style,
    reset: Reset,
    retry_after: Option<RetryAfter>,
}

/// A request's outcome, as the header layer needs it.
#[derive(Debug, Clone, Copy)]
pub struct Outcome<'s, 'a> {
    /// The scopes to report, in declaration order.
    pub scopes: &'s [Snapshot<'a>],
    /// Whether the request was refused.
    pub denied: bool,
    /// On denial, when the request would pass.
    pub retry_after: Option<Duration>,
    /// The wall-clock time of the decision.
    pub now: SystemTime,
}

mod write;

impl HeaderFormat {
    fn with(style: Style) -> HeaderFormat {
        HeaderFormat {
            style,
            reset: Reset::Seconds,
            retry_after: Some(RetryAfter::Seconds),
        }
    }

    /// `X-RateLimit-Limit`, `-Remaining`, `-Reset` (seconds from now unless set with
    /// [`reset`](Self::reset)) for the scope closest to exhaustion.
    pub fn x_ratelimit() -> HeaderFormat {
        HeaderFormat::with(Style::Classic {
            prefix: Prefix::XRateLimit,
            used: false,
        })
    }

    /// `X-RateLimit-Limit-Hour`, `X-RateLimit-Remaining-Day`, … for every scope (suffix
    /// from the window: Second, Minute, Hour, Day; otherwise the scope's name), plus
    /// `X-RateLimit-Reset` for the first scope.
    pub fn per_window() -> HeaderFormat {
        HeaderFormat::with(Style::PerWindow {
            prefix: Prefix::XRateLimit,
        })
    }

    /// The IETF `RateLimit-Policy` (every scope) and `RateLimit` fields, draft 10.
    pub fn ietf(report: Report) -> HeaderFormat {
        HeaderFormat::with(Style::Ietf(report))
    }

    /// The draft-7 combined form: `RateLimit: limit=100, remaining=50, reset=5`.
    pub fn ietf_draft7() -> HeaderFormat {
        HeaderFormat::with(Style::IetfDraft7)
    }

    /// The draft-6 separate form: `RateLimit-Limit`, `-Remaining`, `-Reset`, `-Policy`.
    pub fn ietf_draft6() -> HeaderFormat {
        HeaderFormat::with(Style::IetfDraft6)
    }

    /// Only `Retry-After` on denials.
    pub fn retry_after_only() -> HeaderFormat {
        HeaderFormat::with(Style::RetryAfterOnly)
    }

    /// The classic prefix (`X-RateLimit-` by default).
    pub fn prefix(mut self, prefix: Prefix) -> Self {
        match &mut self.style {
            Style::Classic { prefix: p, .. } | Style::PerWindow { prefix: p } => *p = prefix,
            _ => {}
        }
        self
    }

    /// Also send `X-RateLimit-Used` (classic style).
    pub fn with_used(mut self) -> Self {
        if let Style::Classic { used, .. } = &mut self.style {
            *used = true;
        }
        self
    }

    /// How resets are written (classic and per-window styles).
    pub fn reset(mut self, reset: Reset) -> Self {
        self.reset = reset;
        self
    }

    /// How `Retry-After` is written on denials (`None`: not at all).
    pub fn retry_after(mut self, form: Option<RetryAfter>) -> Self {
        self.retry_after = form;
        self
    }

    /// Writes the headers for `outcome`.
    pub fn write(
        &self,
        outcome: &Outcome<'_, '_>,
        sink: &mut impl HeaderSink,
    ) -> Result<(), HeaderError> {
        let now = outcome
            .now
            .duration_since(UNIX_EPOCH)
            .map_err(|_| HeaderError::BeforeEpoch)?;
        // A dry run first: an error leaves the sink untouched.
        write::all(self, outcome, now, &mut |_: &str, _: &str| {})?;
        write::all(self, outcome, now, &mut |n: &str, v: &str| {
            sink.append(n, v)
        })
    }

    /// Writes the headers for a single limiter's decision.
    pub fn write_decision(
        &self,
        name: &str,
        decision: &Decision,
        now: SystemTime,
        sink: &mut impl HeaderSink,
    ) -> Result<(), HeaderError> {
        let scopes = [Snapshot::new(name, decision)];
        self.write(
            &Outcome {
                scopes: &scopes,
                denied: decision.is_denied(),
                retry_after: decision.retry_after(),
                now,
            },
            sink,
        )
    }

    /// Writes the headers for a policy's decision (its enforcing scopes; shadow scopes
    /// are never reported to clients).
    pub fn write_policy(
        &self,
        decision: &PolicyDecision<'_>,
        now: SystemTime,
        sink: &mut impl HeaderSink,
    ) -> Result<(), HeaderError> {
        let mut inline = [Snapshot::new("", &Decision::allow(0, 0, 0, 0)); 8];
        let mut spill = Vec::new();
        let mut n = 0;
        for s in decision.scopes().filter(|s| !s.shadow) {
            let snapshot = Snapshot::new(s.name, &s.decision);
            match inline.get_mut(n) {
                Some(slot) => *slot = snapshot,
                None => {
                    if spill.is_empty() {
                        spill.extend_from_slice(&inline);
                    }
                    spill.push(snapshot);
                }
            }
            n += 1;
        }
        let scopes = if spill.is_empty() {
            &inline[..n]
        } else {
            &spill[..]
        };
        self.write(
            &Outcome {
                scopes,
                denied: decision.is_denied(),
                retry_after: decision.retry_after(),
                now,
            },
            sink,
        )
    }
}

/// Whole seconds, rounded up.
pub(crate) fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}
