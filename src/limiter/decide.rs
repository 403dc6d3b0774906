//! Deciding on one state and committing the decision, the same for keyed and unkeyed
//! limiters: the cost check, a per-call limit, and transactions whose continuation
//! says whether to consume.

use std::borrow::Cow;

use crate::algorithm::Algorithm;
use crate::{CheckError, Decision, Nanos, Rate};

#[inline]
pub(super) fn check_cost<A: Algorithm>(alg: &A, cost: u64) -> Result<(), CheckError> {
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
pub(super) fn with_limit<A: Algorithm>(
    alg: &A,
    limit: Option<u64>,
) -> Result<Cow<'_, A>, CheckError> {
    let rate = alg.rate();
    match limit {
        Some(count) if count != rate.count() => Rate::new(count, rate.window())
            .map(|r| Cow::Owned(alg.with_rate(r)))
            .map_err(|_| CheckError::InvalidLimit { count }),
        _ => Ok(Cow::Borrowed(alg)),
    }
}

#[inline]
pub(super) fn decide_then<A: Algorithm>(
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
pub(super) fn settle<A: Algorithm>(
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
pub(super) fn decide_peek<A: Algorithm>(
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
