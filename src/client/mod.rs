//! The client side: read the rate-limit information a server sent, and retry politely.
//!
//! [`RateLimitInfo::parse`] reads response headers in every style the
//! [`headers`](crate::headers) module writes — classic `X-RateLimit-*` (and
//! `X-Rate-Limit-*`), the per-window `-Minute`/`-Hour`/`-Day` sets, the IETF `RateLimit` /
//! `RateLimit-Policy` fields of draft 10 and the older draft 7 and draft 6 forms — plus
//! `Retry-After` as delay-seconds or an HTTP-date, into one value. It takes plain
//! `(name, value)` pairs, so it works with any HTTP library or none.
//!
//! Servers send odd values: negative counts, fractional seconds, resets as Unix seconds,
//! Unix milliseconds, seconds from now or ISO-8601 timestamps, headers missing. Parsing
//! never panics: a negative remaining or delay counts as `0`, fractions are kept to the
//! nanosecond for times and floored for counts, and a value that cannot be read leaves
//! its field `None`.
//!
//! [`Backoff`] computes exponential delays with jitter that never undercut a
//! `Retry-After`; [`RetryGate`] lets a pool of workers hold off for the longest
//! `Retry-After` any one of them received; [`retry()`] drives a call with both.
//!
//! ```
//! use ratewarden::client::RateLimitInfo;
//! use std::time::{Duration, UNIX_EPOCH};
//!
//! let now = UNIX_EPOCH + Duration::from_secs(1_715_797_213);
//! let info = RateLimitInfo::parse(
//!     [
//!         ("x-ratelimit-limit", "60"),
//!         ("x-ratelimit-remaining", "0"),
//!         ("x-ratelimit-reset", "1715797260"), // Unix seconds
//!         ("retry-after", "47"),
//!     ],
//!     now,
//! );
//! let quota = info.closest().unwrap();
//! assert_eq!((quota.limit, quota.remaining), (Some(60), Some(0)));
//! assert_eq!(quota.reset_after, Some(Duration::from_secs(47)));
//! assert_eq!(info.wait(), Some(Duration::from_secs(47)));
//! ```

mod parse;
mod retry;

use std::time::{Duration, SystemTime};

pub use retry::{retry, retry_async, Attempt, Backoff, RetryError, RetryGate};

use parse::{delay_or_date, integer_list_item, reset, sf_items, unsigned, Number};

/// One quota the server reported.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Quota {
    /// The quota's name: an IETF policy name, or a per-window suffix such as `Hour`.
    /// `None` for the classic unnamed headers.
    pub name: Option<String>,
    /// The number of requests (or units) the quota allows per window.
    pub limit: Option<u64>,
    /// What is left in the current window.
    pub remaining: Option<u64>,
    /// How long until the quota resets, from the time given to the parser.
    pub reset_after: Option<Duration>,
    /// The quota's window, where the server said it.
    pub window: Option<Duration>,
}

/// Everything a response said about rate limits.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct RateLimitInfo {
    /// The quotas, in the order the server reported them.
    pub quotas: Vec<Quota>,
    /// `Retry-After`, as a delay from the time given to the parser.
    pub retry_after: Option<Duration>,
}

impl RateLimitInfo {
    /// Reads rate-limit information from response headers. Names are matched
    /// case-insensitively; `now` turns absolute times (Unix seconds, HTTP-dates) into
    /// delays. Unknown headers are ignored.
    pub fn parse<N, V>(headers: impl IntoIterator<Item = (N, V)>, now: SystemTime) -> Self
    where
        N: AsRef<str>,
        V: AsRef<[u8]>,
    {
        let mut p = Parser::default();
        for (name, value) in headers {
            // Header values are bytes; anything outside visible ASCII is not ours to read.
            if let Ok(value) = std::str::from_utf8(value.as_ref()) {
                p.header(name.as_ref(), value.trim(), now);
            }
        }
        p.finish()
    }

    /// Reads an `http::HeaderMap`.
    #[cfg(feature = "http")]
    pub fn from_header_map(headers: &http::HeaderMap, now: SystemTime) -> Self {
        Self::parse(headers.iter().map(|(n, v)| (n.as_str(), v.as_bytes())), now)
    }

    /// The quota closest to exhaustion: least remaining, then the longer reset, then a
    /// named quota over the unnamed classic one (a server sending both styles describes
    /// the same scope twice).
    pub fn closest(&self) -> Option<&Quota> {
        let key = |q: &Quota| {
            (
                q.remaining.unwrap_or(u64::MAX),
                std::cmp::Reverse(q.reset_after),
                q.name.is_none(),
            )
        };
        self.quotas.iter().min_by_key(|q| key(q))
    }

    /// How long to hold off before the next request: `Retry-After` when the server sent
    /// one, else the longest reset among exhausted quotas, else `None` (go ahead).
    pub fn wait(&self) -> Option<Duration> {
        self.retry_after.or_else(|| {
            self.quotas
                .iter()
                .filter(|q| q.remaining == Some(0))
                .filter_map(|q| q.reset_after)
                .max()
        })
    }
}

#[derive(Default)]
struct Parser {
    classic: Quota,
    /// Quotas named by a per-window suffix or an IETF draft-10 policy.
    named: Vec<Quota>,
    /// Draft 6/7 `RateLimit-Policy` items: (limit, window).
    policies: Vec<(u64, Option<Duration>)>,
    retry_after: Option<Duration>,
}

impl Parser {
    fn header(&mut self, name: &str, value: &str, now: SystemTime) {
        let lower = name.to_ascii_lowercase();
        let rest = lower
            .strip_prefix("x-ratelimit-")
            .or_else(|| lower.strip_prefix("x-rate-limit-"));
        if let Some(rest) = rest {
            // The field is matched in lower case; a suffix keeps the server's spelling.
            let original = name.get(name.len() - rest.len()..).unwrap_or(rest);
            return self.classic(original, value, now);
        }
        match lower.as_str() {
            "retry-after" => self.retry_after = delay_or_date(value, now),
            // Draft 6 separate fields: always seconds from now.
            "ratelimit-limit" => self.classic.limit = count(value),
            "ratelimit-remaining" => self.classic.remaining = count(value),
            "ratelimit-reset" => self.classic.reset_after = seconds(value),
            "ratelimit" => self.ratelimit(value),
            "ratelimit-policy" => self.policy(value),
            _ => {}
        }
    }

    fn classic(&mut self, rest: &str, value: &str, now: SystemTime) {
        let (field, suffix) = match rest.split_once('-') {
            Some((field, suffix)) => (field, Some(suffix)),
            None => (rest, None),
        };
        let quota = match suffix {
            None => &mut self.classic,
            Some(suffix) => named(&mut self.named, suffix, window_of(suffix)),
        };
        match field.to_ascii_lowercase().as_str() {
            "limit" => quota.limit = count(value),
            "remaining" => quota.remaining = count(value),
            "reset" => quota.reset_after = reset(value, now),
            "used" => {
                if let (Some(used), None) = (count(value), quota.remaining) {
                    // Remaining is derived only when the server did not send it.
                    quota.remaining = quota.limit.map(|l| l.saturating_sub(used));
                }
            }
            _ => {}
        }
    }

    /// `RateLimit`: draft 10 (`"name";r=5;t=30, ...`) or draft 7 (`limit=…, remaining=…`).
    fn ratelimit(&mut self, value: &str) {
        for item in sf_items(value) {
            let q = match &item.name {
                Some(name) => named(&mut self.named, name, None),
                None => &mut self.classic,
            };
            for (k, v) in item.params {
                set(q, k, v);
            }
        }
    }

    /// `RateLimit-Policy`: draft 10 (`"name";q=100;w=60`) or drafts 6/7 (`100;w=60`).
    fn policy(&mut self, value: &str) {
        for item in sf_items(value) {
            match &item.name {
                Some(name) => {
                    let q = named(&mut self.named, name, None);
                    for (k, v) in item.params {
                        set(q, k, v);
                    }
                }
                None => {
                    if let Some(limit) = integer_list_item(item.bare) {
                        let window = item
                            .params
                            .iter()
                            .find(|(k, _)| *k == "w")
                            .and_then(|(_, v)| v.map(Number::delay));
                        self.policies.push((limit, window));
                    }
                }
            }
        }
    }

    fn finish(mut self) -> RateLimitInfo {
        let c = &mut self.classic;
        let has_counts = c.limit.is_some() || c.remaining.is_some();
        if let (Some(limit), None) = (c.limit, c.window) {
            c.window = self
                .policies
                .iter()
                .find(|(l, _)| *l == limit)
                .and_then(|(_, w)| *w);
        }
        let mut quotas = Vec::with_capacity(self.named.len() + 1);
        if has_counts {
            quotas.push(self.classic);
            quotas.append(&mut self.named);
        } else {
            // Per-window sets share one reset, which belongs to their first window.
            if let (Some(first), Some(reset)) = (self.named.first_mut(), c.reset_after) {
                first.reset_after.get_or_insert(reset);
            }
            quotas = self.named;
        }
        RateLimitInfo {
            quotas,
            retry_after: self.retry_after,
        }
    }
}

fn named<'q>(named: &'q mut Vec<Quota>, name: &str, window: Option<Duration>) -> &'q mut Quota {
    let i = match named.iter().position(|q| {
        q.name
            .as_deref()
            .is_some_and(|n| n.eq_ignore_ascii_case(name))
    }) {
        Some(i) => i,
        None => {
            named.push(Quota {
                name: Some(name.to_owned()),
                window,
                ..Quota::default()
            });
            named.len() - 1
        }
    };
    &mut named[i]
}

/// One Structured Field parameter, in the draft-10 (`q`, `r`, `t`, `w`) or draft-7
/// (`limit`, `remaining`, `reset`) spelling; others (`qu`, `pk`) are not ours to read.
fn set(q: &mut Quota, key: &str, value: Option<Number>) {
    match key {
        "q" | "limit" => q.limit = value.map(Number::count),
        "r" | "remaining" => q.remaining = value.map(Number::count),
        "t" | "reset" => q.reset_after = value.map(Number::delay),
        "w" => q.window = value.map(Number::delay),
        _ => {}
    }
}

fn window_of(suffix: &str) -> Option<Duration> {
    let secs = match suffix.to_ascii_lowercase().as_str() {
        "second" => 1,
        "minute" => 60,
        "hour" => 3_600,
        "day" => 86_400,
        _ => return None,
    };
    Some(Duration::from_secs(secs))
}

fn count(value: &str) -> Option<u64> {
    unsigned(value).map(Number::count)
}

fn seconds(value: &str) -> Option<Duration> {
    unsigned(value).map(Number::delay)
}
