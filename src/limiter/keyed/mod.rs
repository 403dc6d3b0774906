//! [`KeyedLimiter`]: one quota per key, its states in a sharded [`Store`].

mod builder;
mod transact;

pub use builder::{KeyedBuilder, DEFAULT_MAX_KEYS};

use std::borrow::Borrow;
use std::fmt;
use std::hash::Hash;

use parking_lot::RwLock;

use super::decide::{check_cost, decide_then};
use super::Limiter;
use crate::algorithm::Algorithm;
#[cfg(feature = "serde")]
use crate::snapshot::{KeyCodec, LimiterSnapshot, SnapshotError};
use crate::store::Store;
use crate::{CheckError, Clock, Decision, Gcra, LimitChangeError, Nanos, Rate};

/// One quota per key.
///
/// ```
/// use ratewarden::{KeyedLimiter, Gcra, Rate};
///
/// let limiter: KeyedLimiter<String> = KeyedLimiter::new(Gcra::new(Rate::per_minute(600)?));
/// let decision = limiter.check("api-key-1", 1)?;
/// assert!(decision.is_allowed());
/// assert_eq!(decision.remaining(), 599);
/// assert_eq!(limiter.check("api-key-2", 1)?.remaining(), 599);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct KeyedLimiter<K, A: Algorithm = Gcra> {
    /// The parameters set last (the store's shards hold the copies checks read); the
    /// write lock serialises limit changes.
    pub(crate) alg: RwLock<A>,
    pub(crate) clock: Clock,
    pub(crate) store: Store<K, A>,
    #[cfg(feature = "serde")]
    pub(crate) codec: Option<KeyCodec<K>>,
}

impl<K: Hash + Eq + Send + Sync + 'static, A: Algorithm> KeyedLimiter<K, A> {
    /// A keyed limiter on the real clock with default settings.
    pub fn new(alg: A) -> Self {
        Self::builder(alg).build()
    }

    /// A keyed limiter reading `clock` (e.g. [`Clock::mock`]).
    pub fn with_clock(alg: A, clock: Clock) -> Self {
        Self::builder(alg).clock(clock).build()
    }

    /// A builder for the remaining settings.
    pub fn builder(alg: A) -> KeyedBuilder<K, A> {
        KeyedBuilder::new(alg)
    }

    /// The algorithm and its parameters (the ones set last, see
    /// [`set_algorithm`](Self::set_algorithm)).
    pub fn algorithm(&self) -> A {
        self.alg.read().clone()
    }

    /// The rate enforced (the one set last).
    pub fn rate(&self) -> Rate {
        self.alg.read().rate()
    }

    /// Replaces the rate at run time, keeping every key's state: what a key has used
    /// stays used (a customer upgraded from 10 to 100 per hour who used 8 has 92 left),
    /// carried over by [`Algorithm::carry_over`]. Safe while other threads check: each
    /// check runs entirely under the old limit or entirely under the new one. For GCRA
    /// the burst becomes the new rate's count; use [`set_algorithm`](Self::set_algorithm)
    /// to set another.
    ///
    /// Cost: one pass over every tracked key, shard by shard; each shard's checks wait
    /// for its pass (under a millisecond per hundred thousand GCRA keys in it).
    ///
    /// ```
    /// use ratewarden::{Clock, FixedWindow, KeyedLimiter};
    ///
    /// let (clock, _mock) = Clock::mock();
    /// let limiter: KeyedLimiter<String, FixedWindow> =
    ///     KeyedLimiter::with_clock(FixedWindow::new("10/hour".parse()?), clock);
    /// limiter.check("acme", 8)?;
    /// limiter.set_rate("100/hour".parse()?); // upgraded mid-window
    /// assert_eq!(limiter.check("acme", 1)?.remaining(), 91);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn set_rate(&self, rate: Rate) {
        self.set_rate_at(rate, self.clock.now())
    }

    /// [`set_rate`](Self::set_rate) at an explicit time (states are carried over as of `now`).
    pub fn set_rate_at(&self, rate: Rate, now: Nanos) {
        let mut alg = self.alg.write();
        let next = alg.with_rate(rate);
        self.store.set_algorithm(&next, now);
        *alg = next;
    }

    /// Replaces the algorithm's parameters at run time (e.g. a GCRA burst), keeping every
    /// key's state as [`set_rate`](Self::set_rate) does.
    pub fn set_algorithm(&self, next: A) {
        self.set_algorithm_at(next, self.clock.now())
    }

    /// [`set_algorithm`](Self::set_algorithm) at an explicit time.
    pub fn set_algorithm_at(&self, next: A, now: Nanos) {
        let mut alg = self.alg.write();
        self.store.set_algorithm(&next, now);
        *alg = next;
    }

    /// The clock this limiter reads.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// Number of keys currently tracked (idle keys are dropped as traffic goes on).
    pub fn len(&self) -> usize {
        self.store.len()
    }

    /// Keys dropped so far because they were idle.
    pub fn evictions(&self) -> u64 {
        self.store.evictions()
    }

    /// Whether no key is tracked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Keys tracked per shard (for diagnostics and tests of the hash spread).
    pub fn shard_lens(&self) -> Vec<usize> {
        self.store.shard_lens()
    }

    /// Checks and, if allowed, consumes `cost` for `key` now.
    #[inline]
    pub fn check<Q>(&self, key: &Q, cost: u64) -> Result<Decision, CheckError>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        self.check_at(key, cost, self.clock.now())
    }

    /// [`check`](Self::check) at an explicit time.
    #[inline]
    pub fn check_at<Q>(&self, key: &Q, cost: u64, now: Nanos) -> Result<Decision, CheckError>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        if cost == 0 {
            return self.peek_at(key, 0, now);
        }
        self.store.with_state(
            key,
            now,
            |alg| check_cost(alg, cost),
            |alg, state| {
                check_cost(alg, cost)?;
                Ok((alg.decide_and_commit(state, now, cost), true))
            },
        )
    }

    /// What [`check`](Self::check) would return now, consuming nothing. A new key is
    /// judged on a fresh state that is not stored, so at the key cap a peek of a new key
    /// answers as for a fresh key where a check would be refused with
    /// [`CheckError::KeyCapReached`] (under [`OnFull::Reject`](crate::OnFull::Reject)).
    pub fn peek<Q>(&self, key: &Q, cost: u64) -> Result<Decision, CheckError>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.peek_at(key, cost, self.clock.now())
    }

    /// [`peek`](Self::peek) at an explicit time.
    pub fn peek_at<Q>(&self, key: &Q, cost: u64, now: Nanos) -> Result<Decision, CheckError>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.store.with_existing(key, |alg, state| {
            check_cost(alg, cost)?;
            Ok(match state {
                Some(state) => alg.peek(state, now, cost),
                None => alg.decide(&mut alg.fresh(), now, cost),
            })
        })
    }

    /// Gives back up to `cost` consumed by `key` (e.g. the work it paid for failed).
    pub fn refund<Q>(&self, key: &Q, cost: u64)
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.refund_at(key, cost, self.clock.now())
    }

    /// [`refund`](Self::refund) at an explicit time.
    pub fn refund_at<Q>(&self, key: &Q, cost: u64, now: Nanos)
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.store.with_existing(key, |alg, state| {
            if let Some(state) = state {
                alg.refund(state, now, cost);
            }
        });
    }

    /// See [`Limiter::transact`].
    pub fn transact<Q>(
        &self,
        key: &Q,
        cost: u64,
        now: Nanos,
        limit: Option<u64>,
        then: &mut dyn FnMut(&Decision) -> bool,
    ) -> Result<Decision, CheckError>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        // Nothing to consume: a peek, which reserves nothing under the key cap and
        // sweeps nothing, as for a check.
        if cost == 0 {
            return self.transact_peek(key, 0, now, limit, then);
        }
        self.transact_by(key, None, cost, now, limit, |alg, state| {
            decide_then(alg, state, now, cost, then)
        })
    }
}

impl<K, A> Limiter<K> for KeyedLimiter<K, A>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    A: Algorithm,
{
    fn clock(&self) -> &Clock {
        &self.clock
    }

    fn rate(&self) -> Rate {
        KeyedLimiter::rate(self)
    }

    fn set_rate_at(&self, rate: Rate, now: Nanos) -> Result<(), LimitChangeError> {
        KeyedLimiter::set_rate_at(self, rate, now);
        Ok(())
    }

    fn check_at(&self, key: &K, cost: u64, now: Nanos) -> Result<Decision, CheckError> {
        KeyedLimiter::check_at(self, key, cost, now)
    }

    fn peek_at(&self, key: &K, cost: u64, now: Nanos) -> Result<Decision, CheckError> {
        KeyedLimiter::peek_at(self, key, cost, now)
    }

    fn refund_at(&self, key: &K, cost: u64, now: Nanos) {
        KeyedLimiter::refund_at(self, key, cost, now)
    }

    fn transact(
        &self,
        key: &K,
        cost: u64,
        now: Nanos,
        limit: Option<u64>,
        then: &mut dyn FnMut(&Decision) -> bool,
    ) -> Result<Decision, CheckError> {
        KeyedLimiter::transact(self, key, cost, now, limit, then)
    }

    fn transact_peek(
        &self,
        key: &K,
        cost: u64,
        now: Nanos,
        limit: Option<u64>,
        then: &mut dyn FnMut(&Decision) -> bool,
    ) -> Result<Decision, CheckError> {
        KeyedLimiter::transact_peek(self, key, cost, now, limit, then)
    }

    fn tracked_keys(&self) -> usize {
        self.len()
    }

    fn evictions(&self) -> u64 {
        KeyedLimiter::evictions(self)
    }

    #[cfg(feature = "serde")]
    fn snapshot_at(&self, now: Nanos) -> Result<LimiterSnapshot, SnapshotError> {
        KeyedLimiter::snapshot_at(self, now)
    }

    #[cfg(feature = "serde")]
    fn validate_snapshot(&self, snapshot: &LimiterSnapshot) -> Result<(), SnapshotError> {
        KeyedLimiter::validate_snapshot(self, snapshot)
    }

    #[cfg(feature = "serde")]
    fn restore_at(&self, snapshot: &LimiterSnapshot, now: Nanos) -> Result<(), SnapshotError> {
        KeyedLimiter::restore_at(self, snapshot, now)
    }
}

impl<K, A: Algorithm> fmt::Debug for KeyedLimiter<K, A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedLimiter")
            .field("algorithm", &*self.alg.read())
            .field("keys", &self.store.len())
            .finish_non_exhaustive()
    }
}
