//! How a policy runs a scope: the [`Run`] trait with the limiter and key types erased,
//! and its two runners — [`Keyed`] over a [`KeyedLimiter`] the scope owns (the walk calls
//! its store directly) and [`Owned`] over any [`Limiter`].

use std::borrow::Borrow;
use std::hash::Hash;
use std::marker::PhantomData;

use super::scope::Scope;
use super::walk::{Turn, Walk};
use super::PolicyDecision;
use crate::algorithm::Algorithm;
#[cfg(feature = "serde")]
use crate::snapshot::{LimiterSnapshot, SnapshotError};
use crate::{CheckError, Decision, KeyedLimiter, LimitChangeError, Limiter, Nanos, Rate};

/// How one scope's part of a policy walk ended.
pub(crate) enum Held {
    /// The scope does not apply to the request.
    Skipped,
    /// The scope decided, and its continuation ran.
    Decided,
    /// The scope could not decide (its continuation did not run).
    Failed(CheckError),
    /// The scope's limiter failed after its continuation ran: the rest of the walk is
    /// decided.
    FailedAfter(CheckError),
    /// The scope's limiter returned although its continuation never did: a panic after
    /// this scope (a later scope's, an admission's) unwound it and the limiter caught
    /// it. Only a user's [`Limiter`] can do this; an owned [`KeyedLimiter`] lets panics
    /// unwind.
    Interrupted,
}

/// What a policy needs from a scope, with the limiter and key types erased.
pub(crate) trait Run<Req>: Send + Sync {
    /// This scope's turn in a policy walk: a transaction on the request's key (for a
    /// peek, one through `transact_peek`: nothing consumed, stored or swept) whose
    /// continuation calls [`Turn::decided`], then [`Turn::finish`] — directly, for a
    /// scope that does not apply or whose limiter failed before deciding.
    fn step<'p>(
        &self,
        scope: &'p Scope<Req>,
        walk: &mut Walk<'p, '_, '_, Req>,
        out: &mut PolicyDecision<'p>,
        i: usize,
    ) -> bool;
    /// Starts loading the memory this scope's step will read for `req`, before the walk
    /// takes any lock (see `store/hint.rs`); nothing for scopes without a table.
    #[inline(always)]
    /// Returns the key's hash, if it computed one, for the step to look the key up with.
    fn prefetch(&self, _req: &Req) -> Option<u64> {
        None
    }
    /// Whether [`prefetch`](Self::prefetch) does anything: the walk calls it only then.
    fn prefetches(&self) -> bool {
        false
    }
    fn refund(&self, req: &Req, cost: u64, now: Nanos);
    fn rate(&self) -> Rate;
    fn set_rate_at(&self, rate: Rate, now: Nanos) -> Result<(), LimitChangeError>;
    fn tracked_keys(&self) -> usize;
    fn evictions(&self) -> u64;
    #[cfg(feature = "serde")]
    fn snapshot_at(&self, now: Nanos) -> Result<LimiterSnapshot, SnapshotError>;
    #[cfg(feature = "serde")]
    fn validate_snapshot(&self, snapshot: &LimiterSnapshot) -> Result<(), SnapshotError>;
    #[cfg(feature = "serde")]
    fn restore_at(&self, snapshot: &LimiterSnapshot, now: Nanos) -> Result<(), SnapshotError>;
}

pub(super) struct Owned<L, F, K> {
    pub(super) limiter: L,
    pub(super) key: F,
    pub(super) types: PhantomData<fn() -> K>,
}

impl<Req, K, L, F> Run<Req> for Owned<L, F, K>
where
    K: Send + Sync,
    L: Limiter<K>,
    F: Fn(&Req) -> Option<K> + Send + Sync,
{
    fn step<'p>(
        &self,
        scope: &'p Scope<Req>,
        walk: &mut Walk<'p, '_, '_, Req>,
        out: &mut PolicyDecision<'p>,
        i: usize,
    ) -> bool {
        let mut turn = Turn::new(scope, walk, out, i);
        let (req, cost, now, limit, peek) = turn.request();
        let Some(key) = (self.key)(req) else {
            return turn.finish(Held::Skipped, None);
        };
        // Calls of the continuation begun and returned: fewer returned means a panic
        // after this scope unwound one of them and the limiter caught it.
        let (mut began, mut returned, mut declined) = (0u64, 0u64, false);
        let mut watched = |decision: &Decision| {
            began += 1;
            turn.again();
            let go = turn.decided(decision);
            (returned, declined) = (returned + 1, !go);
            go
        };
        let outcome = match peek {
            true => self
                .limiter
                .transact_peek(&key, cost, now, limit, &mut watched),
            false => self.limiter.transact(&key, cost, now, limit, &mut watched),
        };
        let ran = began > 0;
        let (held, remains) = match outcome {
            _ if returned != began => (Held::Interrupted, None),
            // A limiter that answered without calling its continuation breaks the
            // contract of `transact`, but the scopes after it still decide: now, with
            // this scope's state no longer held.
            Ok(decision) if !ran => {
                let go = turn.decided(&decision);
                (Held::Decided, (!go).then_some(decision))
            }
            Ok(decision) => (Held::Decided, declined.then_some(decision)),
            Err(error) if ran => (Held::FailedAfter(error), None),
            Err(error) => (Held::Failed(error), None),
        };
        turn.finish(held, remains)
    }

    fn refund(&self, req: &Req, cost: u64, now: Nanos) {
        if let Some(key) = (self.key)(req) {
            self.limiter.refund_at(&key, cost, now);
        }
    }

    fn rate(&self) -> Rate {
        self.limiter.rate()
    }

    fn set_rate_at(&self, rate: Rate, now: Nanos) -> Result<(), LimitChangeError> {
        self.limiter.set_rate_at(rate, now)
    }

    fn tracked_keys(&self) -> usize {
        self.limiter.tracked_keys()
    }

    fn evictions(&self) -> u64 {
        self.limiter.evictions()
    }

    #[cfg(feature = "serde")]
    fn snapshot_at(&self, now: Nanos) -> Result<LimiterSnapshot, SnapshotError> {
        self.limiter.snapshot_at(now)
    }

    #[cfg(feature = "serde")]
    fn validate_snapshot(&self, snapshot: &LimiterSnapshot) -> Result<(), SnapshotError> {
        self.limiter.validate_snapshot(snapshot)
    }

    #[cfg(feature = "serde")]
    fn restore_at(&self, snapshot: &LimiterSnapshot, now: Nanos) -> Result<(), SnapshotError> {
        self.limiter.restore_at(snapshot, now)
    }
}

/// How a [`Keyed`] scope finds a request's key: by value or borrowed from the request.
pub(super) trait KeyOf<Req, Q: ?Sized>: Send + Sync {
    /// `f` on the request's key; `None` when the scope does not apply.
    fn with_key<R>(&self, req: &Req, f: impl FnOnce(&Q) -> R) -> Option<R>;
}

/// A key returned by value ([`Scope::keyed`]).
pub(super) struct ByValue<F>(pub(super) F);

impl<Req, K, F> KeyOf<Req, K> for ByValue<F>
where
    F: Fn(&Req) -> Option<K> + Send + Sync,
{
    #[inline(always)]
    fn with_key<R>(&self, req: &Req, f: impl FnOnce(&K) -> R) -> Option<R> {
        (self.0)(req).map(|key| f(&key))
    }
}

/// A key borrowed from the request ([`Scope::keyed_by_ref`]).
pub(super) struct ByRef<F>(pub(super) F);

impl<Req, Q, F> KeyOf<Req, Q> for ByRef<F>
where
    Q: ?Sized,
    F: for<'r> Fn(&'r Req) -> Option<&'r Q> + Send + Sync,
{
    #[inline(always)]
    fn with_key<R>(&self, req: &Req, f: impl FnOnce(&Q) -> R) -> Option<R> {
        (self.0)(req).map(f)
    }
}

/// A scope over a [`KeyedLimiter`] it owns, which the walk calls directly (no decision
/// passes through the limiter's [`Limiter`] interface).
pub(super) struct Keyed<K, Q: ?Sized, A: Algorithm, G> {
    pub(super) limiter: KeyedLimiter<K, A>,
    pub(super) key: G,
    pub(super) types: PhantomData<fn() -> Box<Q>>,
}

impl<Req, K, Q, A, G> Run<Req> for Keyed<K, Q, A, G>
where
    K: Hash + Eq + Borrow<Q> + Send + Sync + 'static,
    Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    A: Algorithm,
    G: KeyOf<Req, Q>,
{
    fn step<'p>(
        &self,
        scope: &'p Scope<Req>,
        walk: &mut Walk<'p, '_, '_, Req>,
        out: &mut PolicyDecision<'p>,
        i: usize,
    ) -> bool {
        let mut turn = Turn::new(scope, walk, out, i);
        let (req, cost, now, limit, peek) = turn.request();
        let hashed = turn.hash();
        let mut remains = None;
        let outcome = self.key.with_key(req, |key| match peek {
            true => self
                .limiter
                .transact_peek_hashed(key, hashed, cost, now, limit, &mut |d| turn.decided(d))
                .map(|left| remains = Some(left)),
            false => self.limiter.transact_into(
                key,
                hashed,
                cost,
                now,
                limit,
                |d| turn.decided(d),
                &mut remains,
            ),
        });
        let held = match outcome {
            None => Held::Skipped,
            Some(Ok(())) => Held::Decided,
            Some(Err(error)) => Held::Failed(error),
        };
        turn.finish(held, remains)
    }

    fn prefetches(&self) -> bool {
        true
    }

    fn prefetch(&self, req: &Req) -> Option<u64> {
        if !self.limiter.store.worth_prefetching() {
            return None;
        }
        self.key
            .with_key(req, |key| self.limiter.store.prefetch(key))
    }

    fn refund(&self, req: &Req, cost: u64, now: Nanos) {
        self.key
            .with_key(req, |key| self.limiter.refund_at(key, cost, now));
    }

    fn rate(&self) -> Rate {
        self.limiter.rate()
    }

    fn set_rate_at(&self, rate: Rate, now: Nanos) -> Result<(), LimitChangeError> {
        self.limiter.set_rate_at(rate, now);
        Ok(())
    }

    fn tracked_keys(&self) -> usize {
        self.limiter.len()
    }

    fn evictions(&self) -> u64 {
        self.limiter.evictions()
    }

    #[cfg(feature = "serde")]
    fn snapshot_at(&self, now: Nanos) -> Result<LimiterSnapshot, SnapshotError> {
        self.limiter.snapshot_at(now)
    }

    #[cfg(feature = "serde")]
    fn validate_snapshot(&self, snapshot: &LimiterSnapshot) -> Result<(), SnapshotError> {
        self.limiter.validate_snapshot(snapshot)
    }

    #[cfg(feature = "serde")]
    fn restore_at(&self, snapshot: &LimiterSnapshot, now: Nanos) -> Result<(), SnapshotError> {
        self.limiter.restore_at(snapshot, now)
    }
}
