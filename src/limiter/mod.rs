//! The [`Limiter`] trait and the two limiter types users hold: [`KeyedLimiter`] (one
//! quota per key: API key, organization, address…) and [`UnkeyedLimiter`] (one quota).

//!
//! - `keyed/`: [`KeyedLimiter`], its builder, and the transactions policies run on it;
//! - `unkeyed.rs`: [`UnkeyedLimiter`];
//! - `decide.rs`: deciding and committing on one state, shared by both.

mod decide;
mod keyed;
mod unkeyed;

pub use keyed::{KeyedBuilder, KeyedLimiter, DEFAULT_MAX_KEYS};
pub use unkeyed::UnkeyedLimiter;

#[cfg(feature = "serde")]
use crate::snapshot::{LimiterSnapshot, SnapshotError};
use crate::{CheckError, Clock, Decision, LimitChangeError, Nanos, Rate};

/// A rate limiter over keys of type `K` (`()` for an unkeyed limiter).
///
/// Every method is safe to call from many threads at once. The `*_at` methods take the
/// time explicitly (nanoseconds since the Unix epoch, see [`Clock`]); the others read the
/// limiter's clock once.
///
/// Semantics shared by every implementation:
/// - `check` consumes `cost` on allow and **nothing** on deny;
/// - `peek` returns exactly what `check` would at the same instant, changing nothing;
/// - `refund` gives back up to `cost`, never leaving a key fuller than a fresh one;
/// - a cost above the capacity is `Err(CheckError::CostExceedsCapacity)`, not a denial;
/// - a cost of 0 consumes nothing, changes nothing and reports the current state
///   (allowed unless the key owes more than its limit, e.g. after a downgrade).
pub trait Limiter<K: ?Sized>: Send + Sync {
    /// The clock this limiter reads.
    fn clock(&self) -> &Clock;

    /// The rate enforced (before any per-request override).
    fn rate(&self) -> Rate;

    /// Replaces the rate at `now`, keeping every key's state (what a key used stays
    /// used), safely while other threads check; see [`KeyedLimiter::set_rate`]. The
    /// default: [`LimitChangeError::Unsupported`].
    fn set_rate_at(&self, rate: Rate, now: Nanos) -> Result<(), LimitChangeError> {
        let _ = (rate, now);
        Err(LimitChangeError::Unsupported)
    }

    /// Checks and, if allowed, consumes `cost` at `now`.
    fn check_at(&self, key: &K, cost: u64, now: Nanos) -> Result<Decision, CheckError>;

    /// What [`check_at`](Limiter::check_at) would return, consuming nothing.
    fn peek_at(&self, key: &K, cost: u64, now: Nanos) -> Result<Decision, CheckError>;

    /// Gives back up to `cost` previously consumed by `key`.
    fn refund_at(&self, key: &K, cost: u64, now: Nanos);

    /// The building block of atomic composition ([`Policy`](crate::Policy)): decides a
    /// request of `cost` at `now` (allowing `limit` units per window instead of the
    /// rate's count, if given; the window never changes, so a key's state carries over),
    /// then calls `then` with the decision **while still holding the key's state**, and
    /// consumes `cost` only if the decision allowed and `then` returned `true`. Nobody
    /// else can change this key's state in between (a keyed limiter holds the key's
    /// shard: checks on other keys of that shard wait until `then` returns). Returns the
    /// decision; when `then` declined an allowed request, the returned decision
    /// describes the state as it remains (as for a cost of 0).
    ///
    /// An implementation calls `then` exactly once before returning `Ok`, and returns
    /// `Err` only before calling it: a [`Policy`](crate::Policy) decides its later scopes
    /// inside `then`. A policy over a limiter that breaks this still enforces every
    /// scope: it decides the later scopes after the fact when `then` was not called
    /// (this scope's state no longer held), and when the limiter fails after `then`, the
    /// later scopes stay decided (and charged, if every scope allowed) while the check
    /// fails with that scope's error (a shadow scope's error is ignored; a later scope's
    /// failure, being first, is the one reported). A panic inside `then` (a later
    /// scope's, an admission's) must be left to unwind: a limiter that catches it and
    /// returns — whether or not it calls `then` again — makes the check fail, shadow
    /// scope or not, since what the later scopes did is unknown: with
    /// [`CheckError::Interrupted`], unless a later scope had failed first.
    fn transact(
        &self,
        key: &K,
        cost: u64,
        now: Nanos,
        limit: Option<u64>,
        then: &mut dyn FnMut(&Decision) -> bool,
    ) -> Result<Decision, CheckError>;

    /// [`transact`](Limiter::transact) for a peek ([`Policy::peek`](crate::Policy::peek)):
    /// `then` sees the decision while the key's state is held, and nothing is consumed,
    /// stored, counted or swept, whatever `then` returns (a keyed limiter decides a new
    /// key on a fresh state it does not keep, and reserves no room under its key cap).
    /// Returns what `transact` returns when `then` declines. The default calls
    /// `transact` with a `then` that always declines; a limiter that wraps another
    /// should forward this method, so that the inner limiter's own answer applies.
    fn transact_peek(
        &self,
        key: &K,
        cost: u64,
        now: Nanos,
        limit: Option<u64>,
        then: &mut dyn FnMut(&Decision) -> bool,
    ) -> Result<Decision, CheckError> {
        self.transact(key, cost, now, limit, &mut |decision| {
            then(decision);
            false
        })
    }

    /// Number of keys currently tracked (1 for an unkeyed limiter).
    fn tracked_keys(&self) -> usize {
        1
    }

    /// Keys dropped so far because they were idle.
    fn evictions(&self) -> u64 {
        0
    }

    /// The state of every key that is not idle at `now`; see [`crate::snapshot`]. The
    /// default: [`SnapshotError::Unsupported`].
    #[cfg(feature = "serde")]
    fn snapshot_at(&self, now: Nanos) -> Result<LimiterSnapshot, SnapshotError> {
        let _ = now;
        Err(SnapshotError::Unsupported {
            what: "limiter".to_owned(),
            reason: "it does not implement snapshots",
        })
    }

    /// Checks that `snapshot` can be restored into this limiter, changing nothing. The
    /// default: [`SnapshotError::Unsupported`].
    #[cfg(feature = "serde")]
    fn validate_snapshot(&self, snapshot: &LimiterSnapshot) -> Result<(), SnapshotError> {
        let _ = snapshot;
        Err(SnapshotError::Unsupported {
            what: "limiter".to_owned(),
            reason: "it does not implement snapshots",
        })
    }

    /// Restores `snapshot` at `now`; on error nothing has changed. The default:
    /// [`SnapshotError::Unsupported`].
    #[cfg(feature = "serde")]
    fn restore_at(&self, snapshot: &LimiterSnapshot, now: Nanos) -> Result<(), SnapshotError> {
        let _ = now;
        self.validate_snapshot(snapshot)
    }

    /// Checks and consumes `cost` now.
    fn check(&self, key: &K, cost: u64) -> Result<Decision, CheckError> {
        self.check_at(key, cost, self.clock().now())
    }

    /// Peeks now.
    fn peek(&self, key: &K, cost: u64) -> Result<Decision, CheckError> {
        self.peek_at(key, cost, self.clock().now())
    }

    /// Refunds now.
    fn refund(&self, key: &K, cost: u64) {
        self.refund_at(key, cost, self.clock().now())
    }
}

/// A boxed limiter is a limiter, so scopes can hold `Box<dyn Limiter<K>>`.
///
/// There is deliberately no such impl for `Arc<L>`: one limiter shared by two scopes of a
/// policy would be taken twice by one check (the second time on a shard or state the
/// first still holds: a deadlock).
impl<K: ?Sized, L: Limiter<K> + ?Sized> Limiter<K> for Box<L> {
    fn clock(&self) -> &Clock {
        (**self).clock()
    }

    fn rate(&self) -> Rate {
        (**self).rate()
    }

    fn set_rate_at(&self, rate: Rate, now: Nanos) -> Result<(), LimitChangeError> {
        (**self).set_rate_at(rate, now)
    }

    fn check_at(&self, key: &K, cost: u64, now: Nanos) -> Result<Decision, CheckError> {
        (**self).check_at(key, cost, now)
    }

    fn peek_at(&self, key: &K, cost: u64, now: Nanos) -> Result<Decision, CheckError> {
        (**self).peek_at(key, cost, now)
    }

    fn refund_at(&self, key: &K, cost: u64, now: Nanos) {
        (**self).refund_at(key, cost, now)
    }

    fn transact(
        &self,
        key: &K,
        cost: u64,
        now: Nanos,
        limit: Option<u64>,
        then: &mut dyn FnMut(&Decision) -> bool,
    ) -> Result<Decision, CheckError> {
        (**self).transact(key, cost, now, limit, then)
    }

    fn transact_peek(
        &self,
        key: &K,
        cost: u64,
        now: Nanos,
        limit: Option<u64>,
        then: &mut dyn FnMut(&Decision) -> bool,
    ) -> Result<Decision, CheckError> {
        (**self).transact_peek(key, cost, now, limit, then)
    }

    fn tracked_keys(&self) -> usize {
        (**self).tracked_keys()
    }

    fn evictions(&self) -> u64 {
        (**self).evictions()
    }

    #[cfg(feature = "serde")]
    fn snapshot_at(&self, now: Nanos) -> Result<LimiterSnapshot, SnapshotError> {
        (**self).snapshot_at(now)
    }

    #[cfg(feature = "serde")]
    fn validate_snapshot(&self, snapshot: &LimiterSnapshot) -> Result<(), SnapshotError> {
        (**self).validate_snapshot(snapshot)
    }

    #[cfg(feature = "serde")]
    fn restore_at(&self, snapshot: &LimiterSnapshot, now: Nanos) -> Result<(), SnapshotError> {
        (**self).restore_at(snapshot, now)
    }
}
