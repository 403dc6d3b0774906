//! [`UnkeyedLimiter`]: one quota, its state in one cell shared by every thread.

use std::fmt;

use super::decide::{check_cost, decide_then, with_limit};
use super::Limiter;
use crate::algorithm::{Algorithm, StateCell};
use crate::params::Published;
#[cfg(feature = "serde")]
use crate::snapshot::{LimiterSnapshot, SnapshotError};
use crate::{CheckError, Clock, Decision, Gcra, LimitChangeError, Nanos, Rate};

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

    /// Replaces the rate at run time, keeping the state; see [`KeyedLimiter::set_rate`](crate::KeyedLimiter::set_rate).
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
        // An allowed check of a cost above 0 changes the state (almost always: marking a
        // state left as it was only costs a store): it is stored as soon as the decision
        // is known, without comparing it with the state read first.
        self.cell.update_marked(|state| {
            self.alg.with(|alg| {
                let decision =
                    check_cost(alg, cost).map(|()| alg.decide_and_commit(state, now, cost));
                let changed = matches!(&decision, Ok(d) if d.is_allowed());
                (decision, changed)
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
