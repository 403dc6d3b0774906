//! [`Decision`]: the answer to one check, with everything a response needs.

use std::time::Duration;

/// The outcome of a check: allowed or denied, with the quota's state after it.
///
/// A `Decision` is a small `Copy` value; producing one never allocates.
///
/// - [`limit`](Decision::limit): the most the limiter admits at once (the rate's count, or
///   the burst for GCRA).
/// - [`remaining`](Decision::remaining): what could still be admitted right now, after
///   this request if it was allowed. Never negative.
/// - [`reset_after`](Decision::reset_after): time until the quota is fully replenished
///   (zero for an untouched key).
/// - [`retry_after`](Decision::retry_after): on denial, time until this same request,
///   with its cost, would be allowed if nothing else happened. `None` when allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Decision {
    allowed: bool,
    limit: u64,
    remaining: u64,
    window_nanos: u64,
    reset_after_nanos: u64,
    retry_after_nanos: u64,
}

impl Decision {
    /// An allowed decision.
    pub const fn allow(limit: u64, remaining: u64, window: u64, reset_after: u64) -> Decision {
        Decision {
            allowed: true,
            limit,
            remaining,
            window_nanos: window,
            reset_after_nanos: reset_after,
            retry_after_nanos: 0,
        }
    }

    /// A denied decision; `retry_after` is in nanoseconds and is raised to at least 1.
    pub const fn deny(
        limit: u64,
        remaining: u64,
        window: u64,
        reset_after: u64,
        retry_after: u64,
    ) -> Decision {
        Decision {
            allowed: false,
            limit,
            remaining,
            window_nanos: window,
            reset_after_nanos: reset_after,
            retry_after_nanos: if retry_after == 0 { 1 } else { retry_after },
        }
    }

    /// Whether the request may go through.
    pub fn is_allowed(&self) -> bool {
        self.allowed
    }

    /// Whether the request was refused.
    pub fn is_denied(&self) -> bool {
        !self.allowed
    }

    /// The quota's capacity.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// Units still available (after this request, if it was allowed).
    pub fn remaining(&self) -> u64 {
        self.remaining
    }

    /// Units in use: `limit - remaining`.
    pub fn used(&self) -> u64 {
        self.limit.saturating_sub(self.remaining)
    }

    /// The quota's window (for headers such as the IETF `w` parameter).
    pub fn window(&self) -> Duration {
        Duration::from_nanos(self.window_nanos)
    }

    /// Time until the quota is fully replenished.
    pub fn reset_after(&self) -> Duration {
        Duration::from_nanos(self.reset_after_nanos)
    }

    /// On denial, time until this request would be allowed; `None` when allowed.
    pub fn retry_after(&self) -> Option<Duration> {
        (!self.allowed).then(|| Duration::from_nanos(self.retry_after_nanos))
    }

    /// [`reset_after`](Decision::reset_after) in nanoseconds.
    pub fn reset_after_nanos(&self) -> u64 {
        self.reset_after_nanos
    }

    /// [`retry_after`](Decision::retry_after) in nanoseconds; 0 when allowed.
    pub fn retry_after_nanos(&self) -> u64 {
        self.retry_after_nanos
    }

    /// [`window`](Decision::window) in nanoseconds.
    pub fn window_nanos(&self) -> u64 {
        self.window_nanos
    }
}
