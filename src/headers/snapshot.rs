//! One scope's state as the header layer reports it ([`Snapshot`]), and which of several
//! is closest to exhaustion ([`closest`]).

use std::time::Duration;

use crate::Decision;

/// One scope's state, as the header layer reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Snapshot<'a> {
    /// The policy name (IETF fields) or window suffix (per-window style).
    pub name: &'a str,
    /// The quota.
    pub limit: u64,
    /// What is left (after this request, if it was allowed).
    pub remaining: u64,
    /// The quota's window; zero for limits without one (concurrency), which leaves the
    /// IETF `w` parameter out.
    pub window: Duration,
    /// Time until the quota is fully replenished.
    pub reset_after: Duration,
    /// The IETF quota unit (`qu`); omitted when `None` or `"requests"`.
    pub quota_unit: Option<&'a str>,
    /// The IETF partition key (`pk`), sent as a byte sequence.
    pub partition_key: Option<&'a [u8]>,
}

impl<'a> Snapshot<'a> {
    /// A scope named `name` in the state `decision` reports.
    pub fn new(name: &'a str, decision: &Decision) -> Snapshot<'a> {
        Snapshot {
            name,
            limit: decision.limit(),
            remaining: decision.remaining(),
            window: decision.window(),
            reset_after: decision.reset_after(),
            quota_unit: None,
            partition_key: None,
        }
    }

    /// A concurrency limit: `in_flight` of `limit` requests in progress, reported with the
    /// IETF quota unit `concurrent-requests` and no window (`w` is left out).
    pub fn concurrency(name: &'a str, in_flight: u32, limit: u32) -> Snapshot<'a> {
        Snapshot {
            name,
            limit: limit.into(),
            remaining: limit.saturating_sub(in_flight).into(),
            window: Duration::ZERO,
            reset_after: Duration::ZERO,
            quota_unit: Some("concurrent-requests"),
            partition_key: None,
        }
    }

    /// The same snapshot with a quota unit (`qu`).
    pub fn quota_unit(self, unit: &'a str) -> Self {
        Snapshot {
            quota_unit: Some(unit),
            ..self
        }
    }

    /// The same snapshot with a partition key (`pk`).
    pub fn partition_key(self, key: &'a [u8]) -> Self {
        Snapshot {
            partition_key: Some(key),
            ..self
        }
    }
}

/// The index of the scope closest to exhaustion: least remaining, then longer reset,
/// then first declared.
pub fn closest(scopes: &[Snapshot<'_>]) -> Option<usize> {
    crate::decision::closest_to_exhaustion(scopes.iter().map(|s| (s.remaining, s.reset_after)))
}
