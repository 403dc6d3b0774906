//! The [`Limiter`] trait and the two limiter types users hold: [`KeyedLimiter`] (one
//! quota per key: API key, organization, address…) and [`UnkeyedLimiter`] (one quota).

use std::borrow::{Borrow, Cow};
use std::fmt;
use std::hash::Hash;
use std::marker::PhantomData;

use parking_lot::RwLock;

use crate::algorithm::{Algorithm, StateCell};
use crate::params::Published;
#[cfg(feature = "serde")]
use crate::snapshot::{KeyCodec, LimiterSnapshot, SnapshotError, SnapshotKey};
use crate::store::{OnFull, Store};
use crate::{CheckError, Clock, Decision, Gcra, LimitChangeError, Nanos, Rate};

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

#[inline]
fn check_cost<A: Algorithm>(alg: &A, cost: u64) -> Result<(), CheckError> {
    if cost > alg.capacity() {
        return Err(CheckError::CostExceedsCapacity {
            cost,
            capacity: alg.capacity(),
        });
    }
    Ok(())
}

/// The algorithm with `limit` units per window, if that differs from its own count.
#[inline]
fn with_limit<A: Algorithm>(alg: &A, limit: Option<u64>) -> Result<Cow<'_, A>, CheckError> {
    let rate = alg.rate();
    match limit {
        Some(count) if count != rate.count() => Rate::new(count, rate.window())
            .map(|r| Cow::Owned(alg.with_rate(r)))
            .map_err(|_| CheckError::InvalidLimit { count }),
        _ => Ok(Cow::Borrowed(alg)),
    }
}

#[inline]
fn decide_then<A: Algorithm>(
    alg: &A,
    state: &mut A::State,
    now: Nanos,
    cost: u64,
    then: &mut dyn FnMut(&Decision) -> bool,
) -> (Decision, bool) {
    // Decided without touching the state: a peek (`then` says no) leaves it as it was.
    let decision = alg.peek(state, now, cost);
    match settle(alg, state, now, cost, &decision, then(&decision)) {
        Ok(consumed) => (decision, consumed),
        Err(remains) => (remains, false),
    }
}

/// After `then` answered `go` on `decision`: whether the request was consumed, or, if
/// `then` declined, the state as it remains.
#[inline(always)]
fn settle<A: Algorithm>(
    alg: &A,
    state: &mut A::State,
    now: Nanos,
    cost: u64,
    decision: &Decision,
    go: bool,
) -> Result<bool, Decision> {
    if !go {
        // Not consumed: report what really remains.
        return Err(if decision.is_allowed() && cost > 0 {
            alg.peek(state, now, 0)
        } else {
            *decision
        });
    }
    // A cost of 0 consumes nothing: no commit, which would bring the state up to `now`
    // (roll a window, move GCRA's arrival time) as a peek must not.
    let commit = decision.is_allowed() && cost > 0;
    if commit {
        alg.commit(state, now, cost);
    }
    Ok(commit)
}

/// [`decide_then`] for a peek, on the key's state or a fresh one: never commits.
fn decide_peek<A: Algorithm>(
    alg: &A,
    state: Option<&mut A::State>,
    now: Nanos,
    cost: u64,
    then: &mut dyn FnMut(&Decision) -> bool,
) -> Decision {
    let mut fresh;
    let state = match state {
        Some(state) => state,
        None => {
            fresh = alg.fresh();
            &mut fresh
        }
    };
    let mut declined = |decision: &Decision| {
        then(decision);
        false
    };
    decide_then(alg, state, now, cost, &mut declined).0
}

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

/// Builds a [`KeyedLimiter`] with non-default clock, key cap or sharding.
///
/// ```
/// use ratewarden::{KeyedLimiter, FixedWindow, OnFull, Rate, Clock};
///
/// let (clock, _mock) = Clock::mock();
/// let limiter: KeyedLimiter<u64, FixedWindow> =
///     KeyedLimiter::builder(FixedWindow::new(Rate::per_hour(100)?))
///         .clock(clock)
///         .max_keys(2)
///         .on_full(OnFull::Reject)
///         .build();
/// limiter.check(&1u64, 1)?;
/// limiter.check(&2u64, 1)?;
/// assert!(limiter.check(&3u64, 1).is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct KeyedBuilder<K, A> {
    key: PhantomData<fn() -> K>,
    alg: A,
    clock: Option<Clock>,
    max_keys: usize,
    on_full: OnFull,
    shards: usize,
    #[cfg(feature = "serde")]
    codec: Option<KeyCodec<K>>,
}

/// Eight shards per core the process may use, as a power of two, at most 64 (asked
/// once: finding the cores may read the process's CPU quota from the file system).
fn default_shards() -> usize {
    static SHARDS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *SHARDS.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        (cores.min(8) * 8).next_power_of_two()
    })
}

/// The default cap on tracked keys per keyed limiter.
pub const DEFAULT_MAX_KEYS: usize = 10_000_000;

impl<K: Hash + Eq + Send + Sync + 'static, A: Algorithm> KeyedBuilder<K, A> {
    /// The clock to read (default: the real clock).
    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = Some(clock);
        self
    }

    /// The most keys tracked at once (default [`DEFAULT_MAX_KEYS`]).
    pub fn max_keys(mut self, max_keys: usize) -> Self {
        self.max_keys = max_keys;
        self
    }

    /// What to do with a new key at the cap (default [`OnFull::Reject`]).
    pub fn on_full(mut self, on_full: OnFull) -> Self {
        self.on_full = on_full;
        self
    }

    /// Number of shards, rounded up to a power of two (default: eight per core the
    /// process may use, as a power of two, at most 64 — 16 on two cores, 64 from eight
    /// on). Threads on different keys rarely meet in a shard, and few shards keep their
    /// locks and headers in a core's cache (a policy touches one per scope); a sweep
    /// covers one shard, so fewer shards make each sweep longer (a million keys on 16
    /// shards: a pass over some 62 000 entries, paid by the check that finds it due).
    pub fn shards(mut self, shards: usize) -> Self {
        self.shards = shards;
        self
    }

    /// Writes keys in [snapshots](crate::snapshot) through their [`SnapshotKey`]
    /// implementation: needed for most tuples and your own key types; integer, text and
    /// IP-address keys, `Vec<String>` and pairs of integers or text are recognised
    /// without it.
    ///
    /// ```
    /// use ratewarden::{KeyedLimiter, Gcra};
    ///
    /// let limiter: KeyedLimiter<(u64, u8)> =
    ///     KeyedLimiter::builder(Gcra::new("10/min".parse()?)).snapshot_keys().build();
    /// limiter.check(&(1, 2), 1)?;
    /// assert_eq!(limiter.snapshot()?.keys.len(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[cfg(feature = "serde")]
    pub fn snapshot_keys(mut self) -> Self
    where
        K: SnapshotKey,
    {
        self.codec = Some(KeyCodec::exact());
        self
    }

    /// The limiter.
    pub fn build(self) -> KeyedLimiter<K, A> {
        KeyedLimiter {
            store: Store::new(&self.alg, self.shards, self.max_keys, self.on_full),
            alg: RwLock::new(self.alg),
            clock: self.clock.unwrap_or_default(),
            #[cfg(feature = "serde")]
            codec: self.codec.or_else(KeyCodec::guess),
        }
    }
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
        KeyedBuilder {
            key: PhantomData,
            alg,
            clock: None,
            max_keys: DEFAULT_MAX_KEYS,
            on_full: OnFull::default(),
            shards: default_shards(),
            #[cfg(feature = "serde")]
            codec: None,
        }
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
    /// [`CheckError::KeyCapReached`] (under [`OnFull::Reject`]).
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
        self.transact_by(key, cost, now, limit, |alg, state| {
            decide_then(alg, state, now, cost, then)
        })
    }
}

impl<K: Hash + Eq + Send + Sync + 'static, A: Algorithm> KeyedLimiter<K, A> {
    /// [`transact`](Self::transact) judged by `vary(alg)`, a variant of the limiter's own
    /// algorithm (e.g. with a per-key calendar anchor) whose states the limiter's own
    /// algorithm still knows to be idle or not. `vary` is applied to the parameters the
    /// key's shard holds, so a live limit change reaches variants too.
    pub(crate) fn transact_with<Q>(
        &self,
        vary: impl Fn(&A) -> Result<A, CheckError>,
        key: &Q,
        cost: u64,
        now: Nanos,
        then: &mut dyn FnMut(&Decision) -> bool,
    ) -> Result<Decision, CheckError>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        if cost == 0 {
            return self.transact_peek_with(vary, key, 0, now, then);
        }
        self.store.with_state(
            key,
            now,
            |alg| check_cost(&vary(alg)?, cost),
            |alg, state| {
                let alg = vary(alg)?;
                check_cost(&alg, cost)?;
                Ok(decide_then(&alg, state, now, cost, then))
            },
        )
    }

    /// [`transact`](Self::transact) for a policy's walk: the decision goes to `then`
    /// only, and when `then` declines, what remains goes to `remains`.
    #[inline(always)]
    pub(crate) fn transact_into<Q>(
        &self,
        key: &Q,
        cost: u64,
        now: Nanos,
        limit: Option<u64>,
        mut then: impl FnMut(&Decision) -> bool,
        remains: &mut Option<Decision>,
    ) -> Result<(), CheckError>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        if cost == 0 {
            *remains = Some(self.transact_peek(key, cost, now, limit, &mut then)?);
            return Ok(());
        }
        self.transact_by(key, cost, now, limit, |alg, state| {
            let decision = alg.peek(state, now, cost);
            let go = then(&decision);
            // Only a declined request's state is copied out.
            let consumed = settle(alg, state, now, cost, &decision, go).unwrap_or_else(|left| {
                *remains = Some(left);
                false
            });
            ((), consumed)
        })
    }

    /// A transaction of `cost` (not 0) on `key`'s state, decided by `decide` with the
    /// parameters for `limit`; `decide` returns its result and whether it consumed.
    #[inline(always)]
    fn transact_by<Q, R>(
        &self,
        key: &Q,
        cost: u64,
        now: Nanos,
        limit: Option<u64>,
        decide: impl FnOnce(&A, &mut A::State) -> (R, bool),
    ) -> Result<R, CheckError>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        let admit = |alg: &A| check_cost(&*with_limit(alg, limit)?, cost);
        self.store.with_state(key, now, admit, |alg, state| {
            let alg = with_limit(alg, limit)?;
            check_cost(&*alg, cost)?;
            Ok(decide(&alg, state))
        })
    }

    /// [`Limiter::transact_peek`] with a key borrowed from the one stored.
    pub fn transact_peek<Q>(
        &self,
        key: &Q,
        cost: u64,
        now: Nanos,
        limit: Option<u64>,
        then: &mut dyn FnMut(&Decision) -> bool,
    ) -> Result<Decision, CheckError>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let vary = |alg: &A| with_limit(alg, limit).map(Cow::into_owned);
        self.transact_peek_with(vary, key, cost, now, then)
    }

    /// [`transact_peek`](Self::transact_peek) judged by `vary(alg)`; see
    /// [`transact_with`](Self::transact_with).
    pub(crate) fn transact_peek_with<Q>(
        &self,
        vary: impl FnOnce(&A) -> Result<A, CheckError>,
        key: &Q,
        cost: u64,
        now: Nanos,
        then: &mut dyn FnMut(&Decision) -> bool,
    ) -> Result<Decision, CheckError>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.store.with_existing(key, |alg, state| {
            let alg = vary(alg)?;
            check_cost(&alg, cost)?;
            Ok(decide_peek(&alg, state, now, cost, then))
        })
    }

    /// [`peek_at`](Self::peek_at) judged by `vary(alg)`; see
    /// [`transact_with`](Self::transact_with).
    pub(crate) fn peek_with<Q>(
        &self,
        vary: impl FnOnce(&A) -> A,
        key: &Q,
        cost: u64,
        now: Nanos,
    ) -> Result<Decision, CheckError>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.store.with_existing(key, |alg, state| {
            let alg = vary(alg);
            check_cost(&alg, cost)?;
            Ok(match state {
                Some(state) => alg.peek(state, now, cost),
                None => alg.decide(&mut alg.fresh(), now, cost),
            })
        })
    }

    /// [`refund_at`](Self::refund_at) judged by `vary(alg)`; see
    /// [`transact_with`](Self::transact_with).
    pub(crate) fn refund_with<Q>(&self, vary: impl FnOnce(&A) -> A, key: &Q, cost: u64, now: Nanos)
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.store.with_existing(key, |alg, state| {
            if let Some(state) = state {
                vary(alg).refund(state, now, cost);
            }
        });
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

/// One quota for everything that passes through it.
///
/// ```
/// use ratewarden::{UnkeyedLimiter, Gcra, Rate};
///
/// let limiter = UnkeyedLimiter::new(Gcra::new(Rate::per_second(100)?));
/// assert!(limiter.check(1)?.is_allowed());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct UnkeyedLimiter<A: Algorithm = Gcra> {
    /// Read by every check without a lock (see `params.rs`), replaced by limit changes.
    pub(crate) alg: Published<A>,
    pub(crate) clock: Clock,
    pub(crate) cell: A::Cell,
}

impl<A: Algorithm> UnkeyedLimiter<A> {
    /// An unkeyed limiter on the real clock.
    pub fn new(alg: A) -> Self {
        Self::with_clock(alg, Clock::new())
    }

    /// An unkeyed limiter reading `clock`.
    pub fn with_clock(alg: A, clock: Clock) -> Self {
        let cell = A::Cell::new(alg.fresh());
        UnkeyedLimiter {
            alg: Published::new(alg),
            clock,
            cell,
        }
    }

    /// The algorithm and its parameters.
    pub fn algorithm(&self) -> A {
        self.alg.read().clone()
    }

    /// The rate enforced.
    pub fn rate(&self) -> Rate {
        self.alg.read().rate()
    }

    /// Replaces the rate at run time, keeping the state; see [`KeyedLimiter::set_rate`].
    ///
    /// ```
    /// use ratewarden::{Clock, Gcra, UnkeyedLimiter};
    ///
    /// let (clock, _mock) = Clock::mock();
    /// let limiter = UnkeyedLimiter::with_clock(Gcra::new("10/min".parse()?), clock);
    /// limiter.check(5)?;
    /// limiter.set_rate("100/min".parse()?);
    /// assert_eq!(limiter.peek(0)?.remaining(), 95);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn set_rate(&self, rate: Rate) {
        self.set_rate_at(rate, self.clock.now())
    }

    /// [`set_rate`](Self::set_rate) at an explicit time.
    pub fn set_rate_at(&self, rate: Rate, now: Nanos) {
        let alg = self.alg.write();
        let next = alg.with_rate(rate);
        self.replace(alg, next, now);
    }

    /// Replaces the algorithm's parameters at run time, keeping the state.
    pub fn set_algorithm(&self, next: A) {
        self.set_algorithm_at(next, self.clock.now())
    }

    /// [`set_algorithm`](Self::set_algorithm) at an explicit time.
    pub fn set_algorithm_at(&self, next: A, now: Nanos) {
        self.replace(self.alg.write(), next, now);
    }

    fn replace(&self, mut alg: parking_lot::RwLockWriteGuard<'_, A>, next: A, now: Nanos) {
        // Published under the cell's lock, so that no commit pairs the new parameters
        // with a state not yet carried over (or the reverse).
        self.cell.lock(|state| {
            alg.carry_over(&next, state, now);
            self.alg.publish(&next);
        });
        *alg = next;
    }

    /// Checks and, if allowed, consumes `cost` now.
    #[inline]
    pub fn check(&self, cost: u64) -> Result<Decision, CheckError> {
        self.check_at(cost, self.clock.now())
    }

    /// [`check`](Self::check) at an explicit time.
    #[inline]
    pub fn check_at(&self, cost: u64, now: Nanos) -> Result<Decision, CheckError> {
        // Nothing to consume: a peek, which leaves the state as it is whatever the time
        // (deciding would roll a window or prune a log to `now`), as for a keyed check.
        if cost == 0 {
            return self.peek_at(0, now);
        }
        // The parameters are read inside the cell's critical section, where no live
        // change can come between them and the state (see `params.rs`): under its lock,
        // or in an optimistic update that commits only if nobody took the cell since it
        // read the state. A denial writes nothing.
        self.cell.update(|state| {
            self.alg.with(|alg| {
                check_cost(alg, cost)?;
                Ok(alg.decide_and_commit(state, now, cost))
            })
        })
    }

    /// What [`check`](Self::check) would return now, consuming nothing.
    pub fn peek(&self, cost: u64) -> Result<Decision, CheckError> {
        self.peek_at(cost, self.clock.now())
    }

    /// [`peek`](Self::peek) at an explicit time.
    pub fn peek_at(&self, cost: u64, now: Nanos) -> Result<Decision, CheckError> {
        self.cell.update(|state| {
            self.alg.with(|alg| {
                check_cost(alg, cost)?;
                Ok(alg.peek(state, now, cost))
            })
        })
    }

    /// Gives back up to `cost`.
    pub fn refund(&self, cost: u64) {
        self.refund_at(cost, self.clock.now())
    }

    /// [`refund`](Self::refund) at an explicit time.
    pub fn refund_at(&self, cost: u64, now: Nanos) {
        self.cell
            .lock(|state| self.alg.with(|alg| alg.refund(state, now, cost)));
    }
}

impl<A: Algorithm> Limiter<()> for UnkeyedLimiter<A> {
    fn clock(&self) -> &Clock {
        &self.clock
    }

    fn rate(&self) -> Rate {
        UnkeyedLimiter::rate(self)
    }

    fn set_rate_at(&self, rate: Rate, now: Nanos) -> Result<(), LimitChangeError> {
        UnkeyedLimiter::set_rate_at(self, rate, now);
        Ok(())
    }

    fn check_at(&self, _: &(), cost: u64, now: Nanos) -> Result<Decision, CheckError> {
        UnkeyedLimiter::check_at(self, cost, now)
    }

    fn peek_at(&self, _: &(), cost: u64, now: Nanos) -> Result<Decision, CheckError> {
        UnkeyedLimiter::peek_at(self, cost, now)
    }

    fn refund_at(&self, _: &(), cost: u64, now: Nanos) {
        UnkeyedLimiter::refund_at(self, cost, now)
    }

    fn transact(
        &self,
        _: &(),
        cost: u64,
        now: Nanos,
        limit: Option<u64>,
        then: &mut dyn FnMut(&Decision) -> bool,
    ) -> Result<Decision, CheckError> {
        self.cell.lock(|state| {
            self.alg.with(|alg| {
                let alg = with_limit(alg, limit)?;
                check_cost(&*alg, cost)?;
                Ok(decide_then(&*alg, state, now, cost, then).0)
            })
        })
    }

    #[cfg(feature = "serde")]
    fn snapshot_at(&self, now: Nanos) -> Result<LimiterSnapshot, SnapshotError> {
        UnkeyedLimiter::snapshot_at(self, now)
    }

    #[cfg(feature = "serde")]
    fn validate_snapshot(&self, snapshot: &LimiterSnapshot) -> Result<(), SnapshotError> {
        UnkeyedLimiter::validate_snapshot(self, snapshot)
    }

    #[cfg(feature = "serde")]
    fn restore_at(&self, snapshot: &LimiterSnapshot, now: Nanos) -> Result<(), SnapshotError> {
        UnkeyedLimiter::restore_at(self, snapshot, now)
    }
}

impl<A: Algorithm> fmt::Debug for UnkeyedLimiter<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UnkeyedLimiter")
            .field("algorithm", &*self.alg.read())
            .finish_non_exhaustive()
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
