//! 429 (and 202) response bodies in the shapes the seeds' APIs send. Serialisable with
//! the `serde` feature; any other `Serialize` type works just as well.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::ceil_secs;
use super::text::{iso8601, Buf};

/// `{"error":"rate_limited"}`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct SimpleError {
    /// The error code.
    pub error: String,
}

impl SimpleError {
    /// `{"error":"rate_limited"}`.
    pub fn rate_limited() -> SimpleError {
        SimpleError {
            error: "rate_limited".to_owned(),
        }
    }
}

/// `{"success":false,"message":…,"code":"RATE_LIMITED","details":{"resetAt":…}}`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct ResetAtBody {
    /// Always `false`.
    pub success: bool,
    /// A human-readable message.
    pub message: String,
    /// The error code.
    pub code: String,
    /// When the limit resets.
    pub details: ResetAtDetails,
}

/// The `details` of a [`ResetAtBody`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct ResetAtDetails {
    /// ISO-8601 timestamp, e.g. `2025-01-21T17:00:00.000Z`.
    #[cfg_attr(feature = "serde", serde(rename = "resetAt"))]
    pub reset_at: String,
}

/// An ISO-8601 timestamp of `ceil(now + after)` in whole seconds.
pub(crate) fn iso_after(now: SystemTime, after: Duration) -> String {
    let now = now.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    let mut buf = Buf::new();
    match iso8601(&mut buf, ceil_secs(now.saturating_add(after))) {
        Ok(()) => buf.as_str().to_owned(),
        Err(_) => String::new(),
    }
}

impl ResetAtBody {
    /// `RATE_LIMITED` with the standard message, resetting `reset_after` from `now`.
    pub fn rate_limited(now: SystemTime, reset_after: Duration) -> ResetAtBody {
        ResetAtBody {
            success: false,
            message: "Rate limit exceeded. Please try again later.".to_owned(),
            code: "RATE_LIMITED".to_owned(),
            details: ResetAtDetails {
                reset_at: iso_after(now, reset_after),
            },
        }
    }
}

/// `{"success":false,"error":{"code":…,"message":…,"details":{"retry_after_seconds":…}},"meta":{"request_id":…}}`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct NestedErrorBody {
    /// Always `false`.
    pub success: bool,
    /// The error.
    pub error: NestedError,
    /// Request metadata.
    pub meta: Meta,
}

/// The `error` of a [`NestedErrorBody`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct NestedError {
    /// The error code.
    pub code: String,
    /// A human-readable message.
    pub message: String,
    /// The wait.
    pub details: RetryDetails,
}

/// The `details` of a [`NestedError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct RetryDetails {
    /// Whole seconds, the same number as `Retry-After`.
    pub retry_after_seconds: u64,
}

/// The `meta` of a [`NestedErrorBody`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Meta {
    /// The request's identifier.
    pub request_id: String,
}

impl NestedErrorBody {
    /// `AUTH_RATE_LIMITED`, "Rate limit exceeded. Try again in N seconds.", with N the
    /// `Retry-After` delay-seconds (`max(1, ceil(retry_after))`).
    pub fn rate_limited(retry_after: Duration, request_id: &str) -> NestedErrorBody {
        let seconds = ceil_secs(retry_after).max(1);
        NestedErrorBody {
            success: false,
            error: NestedError {
                code: "AUTH_RATE_LIMITED".to_owned(),
                message: format!("Rate limit exceeded. Try again in {seconds} seconds."),
                details: RetryDetails {
                    retry_after_seconds: seconds,
                },
            },
            meta: Meta {
                request_id: request_id.to_owned(),
            },
        }
    }
}

/// An RFC 9457 problem document of the IETF draft's `quota-exceeded` type.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Problem {
    /// The problem type URI.
    #[cfg_attr(feature = "serde", serde(rename = "type"))]
    pub kind: String,
    /// A short summary.
    pub title: String,
    /// The HTTP status (429).
    pub status: u16,
    /// The names of the policies the request violated.
    #[cfg_attr(feature = "serde", serde(rename = "violated-policies"))]
    pub violated_policies: Vec<String>,
}

impl Problem {
    /// The `quota-exceeded` problem for the given violated policies.
    pub fn quota_exceeded<'a>(violated: impl IntoIterator<Item = &'a str>) -> Problem {
        Problem {
            kind: "https://iana.org/assignments/http-problem-types#quota-exceeded".to_owned(),
            title: "Request cannot be satisfied as assigned quota has been exceeded".to_owned(),
            status: 429,
            violated_policies: violated.into_iter().map(str::to_owned).collect(),
        }
    }
}

/// A 202 Accepted body for a request that waits in a concurrency queue:
/// `{"status":"queued","queue_position":1}`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct QueuedBody {
    /// Always `"queued"`.
    pub status: String,
    /// The 1-based place in the queue ([`Ticket::position`](crate::Ticket::position)).
    pub queue_position: usize,
}

impl QueuedBody {
    /// A queued request at `position`.
    pub fn new(position: usize) -> QueuedBody {
        QueuedBody {
            status: "queued".to_owned(),
            queue_position: position,
        }
    }
}
