//! Error types. Construction errors ([`RateError`]) are returned when a quota is built or
//! parsed; request-path errors ([`CheckError`]) are small `Copy` values that never allocate.

use std::time::Duration;

/// Why a [`Rate`](crate::Rate), a burst or a rate string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RateError {
    /// A rate must admit at least one unit per window.
    #[error("rate count must be at least 1 (a limit of 0 would deny everything; remove the limit or deny explicitly)")]
    ZeroCount,
    /// A window of zero length has no meaning.
    #[error("rate window must be longer than zero")]
    ZeroWindow,
    /// The window is longer than the crate can represent safely.
    #[error("rate window of {window:?} is longer than the maximum of {max:?}")]
    WindowTooLong {
        /// The window that was asked for.
        window: Duration,
        /// The longest window accepted.
        max: Duration,
    },
    /// More than one unit per nanosecond cannot be timed.
    #[error(
        "rate of {count} per {window:?} is finer than one unit per nanosecond; use a longer window"
    )]
    TooFine {
        /// The count that was asked for.
        count: u64,
        /// The window that was asked for.
        window: Duration,
    },
    /// A burst must admit at least one unit.
    #[error("burst must be at least 1")]
    ZeroBurst,
    /// The burst spans more time than the maximum window.
    #[error("burst of {burst} at this rate spans more than the maximum window of {max:?}")]
    BurstTooLarge {
        /// The burst that was asked for.
        burst: u64,
        /// The longest window accepted.
        max: Duration,
    },
    /// A rate string could not be parsed.
    #[error("cannot parse rate {input:?}: {reason} (expected forms like \"600/min\", \"8/10s\", \"10/hour\", \"1000/day\")")]
    Parse {
        /// The text that was given.
        input: String,
        /// What was wrong with it.
        reason: &'static str,
    },
}

/// Why a check could not produce an allow/deny [`Decision`](crate::Decision).
///
/// These are outcomes the caller must handle differently from a denial: no amount of
/// waiting turns them into an allowed request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum CheckError {
    /// The cost is larger than the limiter's capacity and can never be admitted.
    #[error("cost {cost} exceeds the limiter's capacity of {capacity}; it can never be admitted")]
    CostExceedsCapacity {
        /// The cost of the request.
        cost: u64,
        /// The most a single request may cost.
        capacity: u64,
    },
    /// The keyed store holds its maximum number of keys, none of them idle, and is
    /// configured to refuse new keys ([`OnFull::Reject`](crate::OnFull::Reject)).
    #[error("the limiter tracks its maximum of {max_keys} keys; new keys are refused until some go idle")]
    KeyCapReached {
        /// The configured cap.
        max_keys: usize,
    },
    /// A per-request limit (e.g. from a plan table) that its window cannot hold: a count
    /// of 0, or more than one unit per nanosecond.
    #[error("per-request limit of {count} is not a valid count for the scope's window")]
    InvalidLimit {
        /// The count that was asked for.
        count: u64,
    },
    /// A policy scope's limiter returned after its continuation was cut short by a panic
    /// it caught (the panic of a later scope or of a
    /// [`check_with`](crate::Policy::check_with) admission): what the later scopes
    /// decided is unknown, so the check is not decided either. Only a
    /// [`Limiter`](crate::Limiter) that catches panics inside
    /// [`transact`](crate::Limiter::transact) can cause it.
    #[error("the scope's limiter caught a panic from the rest of the policy check; the check was not decided")]
    Interrupted,
}

/// Why a limit could not be changed at run time.
#[derive(Debug, Clone, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum LimitChangeError {
    /// The policy has no scope of that name.
    #[error("the policy has no scope named {scope:?}")]
    UnknownScope {
        /// The name that was asked for.
        scope: String,
    },
    /// The limiter cannot change its limit while running (a [`Limiter`](crate::Limiter)
    /// implementation that does not override
    /// [`set_rate_at`](crate::Limiter::set_rate_at)).
    #[error("this limiter does not support live limit changes")]
    Unsupported,
    /// A policy scope's limiter cannot change its limit while running.
    #[error("scope {scope:?} does not support live limit changes")]
    ScopeUnsupported {
        /// The scope.
        scope: String,
    },
    /// The policy has several scopes of that name, so which one to change is unclear;
    /// nothing was changed.
    #[error(
        "the policy has {count} scopes named {scope:?}; give them distinct names to change one"
    )]
    AmbiguousScope {
        /// The name that was asked for.
        scope: String,
        /// How many scopes have it.
        count: usize,
    },
}
