//! The transactions a policy runs on a [`KeyedLimiter`]: a per-call limit or a
//! variant of the algorithm, a continuation that says whether to consume.

use std::borrow::{Borrow, Cow};
use std::hash::Hash;

use super::KeyedLimiter;
use crate::algorithm::Algorithm;
use crate::limiter::decide::{check_cost, decide_peek, decide_then, settle, with_limit};
use crate::{CheckError, Decision, Nanos};

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
            return self.transact_peek_with(vary, key, None, 0, now, then);
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
    /// only, and when `then` declines, what remains goes to `remains`. `hashed` is the
    /// key's hash if the walk's prefetch pass computed it.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn transact_into<Q>(
        &self,
        key: &Q,
        hashed: Option<u64>,
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
            *remains = Some(self.transact_peek_hashed(key, hashed, cost, now, limit, &mut then)?);
            return Ok(());
        }
        self.transact_by(key, hashed, cost, now, limit, |alg, state| {
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
    pub(super) fn transact_by<Q, R>(
        &self,
        key: &Q,
        hashed: Option<u64>,
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
        self.store
            .with_state_hashed(key, hashed, now, admit, |alg, state| {
                let alg = with_limit(alg, limit)?;
                check_cost(&*alg, cost)?;
                Ok(decide(&alg, state))
            })
    }

    /// [`Limiter::transact_peek`](crate::Limiter::transact_peek) with a key borrowed from the one stored.
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
        self.transact_peek_hashed(key, None, cost, now, limit, then)
    }

    /// [`transact_peek`](Self::transact_peek) with the key's hash if the caller has it.
    pub(crate) fn transact_peek_hashed<Q>(
        &self,
        key: &Q,
        hashed: Option<u64>,
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
        self.transact_peek_with(vary, key, hashed, cost, now, then)
    }

    /// [`transact_peek`](Self::transact_peek) judged by `vary(alg)`; see
    /// [`transact_with`](Self::transact_with).
    pub(crate) fn transact_peek_with<Q>(
        &self,
        vary: impl FnOnce(&A) -> Result<A, CheckError>,
        key: &Q,
        hashed: Option<u64>,
        cost: u64,
        now: Nanos,
        then: &mut dyn FnMut(&Decision) -> bool,
    ) -> Result<Decision, CheckError>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.store.with_existing_hashed(key, hashed, |alg, state| {
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
