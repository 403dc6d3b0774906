//! What a [`RedisPolicy`](super::RedisPolicy) answers: a [`RedisDecision`], and the
//! [`FailureMode`] that answers instead of Redis when it cannot.

use std::ops::Deref;
use std::time::Duration;

use super::RedisCheckError;
use crate::PolicyDecision;

/// What a check answers when Redis cannot (timeout, connection, server error).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum FailureMode {
    /// Return the error (the default): the application decides.
    #[default]
    Error,
    /// Allow the request, reporting no scope (the header layer then writes no quota
    /// headers).
    Open,
    /// Deny the request: every applicable enforcing scope reports a denial with this
    /// retry-after and nothing remaining.
    Closed {
        /// The retry-after to report.
        retry_after: Duration,
    },
}

/// A policy's decision from Redis: a [`PolicyDecision`] (it derefs to one, so headers
/// are written exactly as in-process), plus the fault that a [`FailureMode`] answered,
/// if Redis could not.
#[derive(Debug, Clone)]
pub struct RedisDecision<'p> {
    pub(super) decision: PolicyDecision<'p>,
    pub(super) fault: Option<RedisCheckError>,
}

impl<'p> RedisDecision<'p> {
    /// The fault that the failure mode answered (`None`: Redis decided), for logging and
    /// counting.
    pub fn fault(&self) -> Option<&RedisCheckError> {
        self.fault.as_ref()
    }

    /// Whether Redis decided (no fault).
    pub fn is_from_redis(&self) -> bool {
        self.fault.is_none()
    }

    /// The policy decision.
    pub fn decision(&self) -> &PolicyDecision<'p> {
        &self.decision
    }

    /// The policy decision, owned.
    pub fn into_decision(self) -> PolicyDecision<'p> {
        self.decision
    }
}

impl<'p> Deref for RedisDecision<'p> {
    type Target = PolicyDecision<'p>;

    fn deref(&self) -> &PolicyDecision<'p> {
        &self.decision
    }
}
