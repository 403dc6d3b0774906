//! [`CalendarLimiter`]: a keyed [`CalendarQuota`] in which every key brings its own
//! [`CycleAnchor`] — each account's billing date — and [`Scope::calendar`], the same inside
//! a [`Policy`](crate::Policy).
//!
//! The anchor comes with each request (the application knows the account's billing anchor
//! from the account, not from its first request), so the limiter stores no anchors and
//! an account that changes its billing date is judged by the new one from its next period
//! on. The state of a key records its own period, so eviction and everything else work as
//! for any [`KeyedLimiter`].

use std::hash::Hash;

use crate::algorithm::Algorithm;
#[cfg(feature = "serde")]
use crate::snapshot::{LimiterSnapshot, SnapshotError};
use crate::{
    CalendarQuota, CheckError, Clock, CycleAnchor, Decision, KeyedLimiter, LimitChangeError,
    Limiter, Nanos, Rate, Scope,
};

/// A [`CalendarQuota`] per key, each key with its own [`CycleAnchor`].
///
/// As a [`Limiter`], its key is the pair `(key, anchor)`.
///
/// ```
/// use ratewarden::{CalendarLimiter, CalendarQuota, Clock, CycleAnchor};
/// use std::time::Duration;
///
/// let (clock, mock) = Clock::mock();
/// mock.increment(Duration::from_secs(1_709_251_200)); // 2024-03-01T00:00:00Z
/// let videos: CalendarLimiter<u64> = CalendarLimiter::with_clock(CalendarQuota::monthly(3)?, clock);
///
/// // Account 7 signed up on 31 January at 09:30 UTC; account 8 on 15 February.
/// let a7: CycleAnchor = "2024-01-31T09:30:00Z".parse()?;
/// let a8: CycleAnchor = "2024-02-15T00:00:00Z".parse()?;
/// assert!(videos.check(&7, a7, 3)?.is_allowed());
/// let denied = videos.check(&7, a7, 1)?;
/// // Account 7's month started on 29 February and ends on 31 March at 09:30.
/// assert_eq!(denied.retry_after(), Some(Duration::from_secs(30 * 86_400 + 9 * 3_600 + 1_800)));
/// // Account 8's month ends on 15 March.
/// let d = videos.check(&8, a8, 1)?;
/// assert_eq!(d.reset_after(), Duration::from_secs(14 * 86_400));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct CalendarLimiter<K> {
    inner: KeyedLimiter<K, CalendarQuota>,
}

impl<K: Hash + Eq + Clone + Send + Sync + 'static> CalendarLimiter<K> {
    /// A limiter on the real clock with default settings. The quota's own anchor is not
    /// used: every check brings the key's anchor.
    pub fn new(quota: CalendarQuota) -> Self {
        Self::from_keyed(KeyedLimiter::new(quota))
    }

    /// A limiter reading `clock` (e.g. [`Clock::mock`]).
    pub fn with_clock(quota: CalendarQuota, clock: Clock) -> Self {
        Self::from_keyed(KeyedLimiter::with_clock(quota, clock))
    }

    /// Wraps a keyed limiter built with [`KeyedLimiter::builder`] (key cap, shards…).
    pub fn from_keyed(inner: KeyedLimiter<K, CalendarQuota>) -> Self {
        CalendarLimiter { inner }
    }

    /// The quota (its count and period; the one set last, see
    /// [`set_rate`](Self::set_rate)).
    pub fn quota(&self) -> CalendarQuota {
        self.inner.algorithm()
    }

    /// Replaces the count per period at run time, keeping what every key has used in its
    /// current period; see [`KeyedLimiter::set_rate`]. The period stays.
    pub fn set_rate(&self, rate: Rate) {
        self.inner.set_rate(rate)
    }

    /// Number of keys tracked.
    pub fn len(&self) -> usize {
        self.inner.len()
    }

    /// Whether no key is tracked.
    pub fn is_empty(&self) -> bool {
        self.inner.is_empty()
    }

    /// Checks and, if allowed, consumes `cost` for `key`, whose periods start at `anchor`.
    pub fn check(&self, key: &K, anchor: CycleAnchor, cost: u64) -> Result<Decision, CheckError> {
        self.check_at(key, anchor, cost, self.inner.clock().now())
    }

    /// [`check`](Self::check) at an explicit time.
    pub fn check_at(
        &self,
        key: &K,
        anchor: CycleAnchor,
        cost: u64,
        now: Nanos,
    ) -> Result<Decision, CheckError> {
        self.inner.transact_with(
            |quota| Ok(quota.anchored(anchor)),
            key,
            cost,
            now,
            &mut |_: &Decision| true,
        )
    }

    /// What [`check`](Self::check) would return now, consuming nothing.
    pub fn peek(&self, key: &K, anchor: CycleAnchor, cost: u64) -> Result<Decision, CheckError> {
        self.inner.peek_with(
            |quota| quota.anchored(anchor),
            key,
            cost,
            self.inner.clock().now(),
        )
    }

    /// Gives back up to `cost` consumed by `key` in its current period.
    pub fn refund(&self, key: &K, anchor: CycleAnchor, cost: u64) {
        self.inner.refund_with(
            |quota| quota.anchored(anchor),
            key,
            cost,
            self.inner.clock().now(),
        )
    }
}

/// The quota anchored at `anchor`, with `limit` units per period if given (the period
/// stays the quota's).
fn anchored_with(
    quota: &CalendarQuota,
    anchor: CycleAnchor,
    limit: Option<u64>,
) -> Result<CalendarQuota, CheckError> {
    let alg = quota.anchored(anchor);
    match limit.filter(|&c| c != alg.count()) {
        Some(count) => Rate::new(count, alg.rate().window())
            .map(|rate| alg.with_rate(rate))
            .map_err(|_| CheckError::InvalidLimit { count }),
        None => Ok(alg),
    }
}

impl<K> Limiter<(K, CycleAnchor)> for CalendarLimiter<K>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
{
    fn clock(&self) -> &Clock {
        self.inner.clock()
    }

    fn rate(&self) -> Rate {
        self.quota().rate()
    }

    fn set_rate_at(&self, rate: Rate, now: Nanos) -> Result<(), LimitChangeError> {
        self.inner.set_rate_at(rate, now);
        Ok(())
    }

    fn check_at(
        &self,
        key: &(K, CycleAnchor),
        cost: u64,
        now: Nanos,
    ) -> Result<Decision, CheckError> {
        CalendarLimiter::check_at(self, &key.0, key.1, cost, now)
    }

    fn peek_at(
        &self,
        key: &(K, CycleAnchor),
        cost: u64,
        now: Nanos,
    ) -> Result<Decision, CheckError> {
        self.inner
            .peek_with(|quota| quota.anchored(key.1), &key.0, cost, now)
    }

    fn refund_at(&self, key: &(K, CycleAnchor), cost: u64, now: Nanos) {
        self.inner
            .refund_with(|quota| quota.anchored(key.1), &key.0, cost, now)
    }

    fn transact(
        &self,
        key: &(K, CycleAnchor),
        cost: u64,
        now: Nanos,
        limit: Option<u64>,
        then: &mut dyn FnMut(&Decision) -> bool,
    ) -> Result<Decision, CheckError> {
        self.inner
            .transact_with(|q| anchored_with(q, key.1, limit), &key.0, cost, now, then)
    }

    fn transact_peek(
        &self,
        key: &(K, CycleAnchor),
        cost: u64,
        now: Nanos,
        limit: Option<u64>,
        then: &mut dyn FnMut(&Decision) -> bool,
    ) -> Result<Decision, CheckError> {
        self.inner.transact_peek_with(
            |q| anchored_with(q, key.1, limit),
            &key.0,
            None,
            cost,
            now,
            then,
        )
    }

    fn tracked_keys(&self) -> usize {
        self.inner.len()
    }

    fn evictions(&self) -> u64 {
        self.inner.evictions()
    }

    // Periods are in the states, so the snapshot of the keyed store is all there is.
    #[cfg(feature = "serde")]
    fn snapshot_at(&self, now: Nanos) -> Result<LimiterSnapshot, SnapshotError> {
        self.inner.snapshot_at(now)
    }

    #[cfg(feature = "serde")]
    fn validate_snapshot(&self, snapshot: &LimiterSnapshot) -> Result<(), SnapshotError> {
        self.inner.validate_snapshot(snapshot)
    }

    #[cfg(feature = "serde")]
    fn restore_at(&self, snapshot: &LimiterSnapshot, now: Nanos) -> Result<(), SnapshotError> {
        self.inner.restore_at(snapshot, now)
    }
}

impl<K> std::fmt::Debug for CalendarLimiter<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CalendarLimiter")
            .field("inner", &self.inner)
            .finish()
    }
}

impl<Req: 'static> Scope<Req> {
    /// A scope with a [`CalendarQuota`] per key, each key with the anchor `key` returns
    /// beside it (the account's billing date). Per-plan limits
    /// ([`limit_by`](Self::limit_by)) change the count per period.
    ///
    /// ```
    /// use ratewarden::{CalendarQuota, CycleAnchor, Policy, Scope};
    ///
    /// struct Req { account: u64, billing: CycleAnchor, pro: bool }
    ///
    /// let policy = Policy::builder()
    ///     .scope(
    ///         Scope::calendar("videos-per-month", CalendarQuota::monthly(3)?, |r: &Req| {
    ///             Some((r.account, r.billing))
    ///         })
    ///         .limit_by(|r: &Req| r.pro.then_some(150)),
    ///     )
    ///     .build();
    /// let req = Req { account: 1, billing: "2024-01-31T00:00:00Z".parse()?, pro: false };
    /// assert_eq!(policy.check(&req, 1)?.scope("videos-per-month").unwrap().decision.remaining(), 2);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn calendar<K, F>(name: &str, quota: CalendarQuota, key: F) -> Self
    where
        K: Hash + Eq + Clone + Send + Sync + 'static,
        F: Fn(&Req) -> Option<(K, CycleAnchor)> + Send + Sync + 'static,
    {
        Self::with_limiter(name, CalendarLimiter::new(quota), key)
    }
}
