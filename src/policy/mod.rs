//! [`Policy`]: several named scopes checked as one, all or nothing.
//!
//! A request passes iff every applicable enforcing scope allows it. A denial consumes
//! nothing in any scope, and the decision names every denying scope and reports the
//! longest retry-after among them — the wait after which the same request passes all.
//!
//! **How it stays atomic.** Each scope's [`Limiter::transact`](crate::Limiter::transact)
//! holds its key's state while a continuation evaluates the next scope, so the last scope
//! is decided while every earlier scope's state is held; commits then happen on the way
//! back, only if everything allowed. No other thread can observe a half-applied request,
//! nothing is rolled back, and no interleaving admits more than any scope's quota. States
//! are always taken in declaration order, so two checks cannot wait on each other. The
//! clock is read once per request, and for up to eight scopes nothing is allocated.

mod decision;
mod scope;

use std::fmt;
use std::sync::Arc;

pub use decision::{PolicyDecision, PolicyError, ScopeReport};
pub use scope::Scope;

use decision::Entries;

use crate::{Clock, Nanos};

/// Scopes composed so that any denial wins, a denial spends nothing, and the longest
/// retry-after is reported.
///
/// ```
/// use ratewarden::{Clock, Gcra, FixedWindow, Policy, Rate, Scope};
/// use std::time::Duration;
///
/// struct Req { org: u64, video: u64 }
///
/// let (clock, mock) = Clock::mock();
/// let policy = Policy::builder()
///     .clock(clock)
///     .scope(Scope::keyed("org", FixedWindow::new("30/min".parse()?), |r: &Req| Some(r.org)))
///     .scope(Scope::keyed("video", FixedWindow::new("15/min".parse()?), |r: &Req| Some(r.video)))
///     .build();
///
/// for _ in 0..15 {
///     assert!(policy.check(&Req { org: 1, video: 7 }, 1)?.is_allowed());
/// }
/// let denied = policy.check(&Req { org: 1, video: 7 }, 1)?;
/// assert_eq!(denied.denials().next().unwrap().name, "video");
/// assert_eq!(denied.retry_after(), Some(Duration::from_secs(60)));
/// // The denial spent nothing: the organization still has 15 left.
/// assert_eq!(policy.check(&Req { org: 1, video: 8 }, 1)?.scope("org").unwrap().decision.remaining(), 14);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Policy<Req> {
    clock: Clock,
    names: Box<[Arc<str>]>,
    scopes: Box<[Scope<Req>]>,
}

/// Builds a [`Policy`].
#[must_use]
pub struct PolicyBuilder<Req> {
    clock: Option<Clock>,
    scopes: Vec<Scope<Req>>,
}

impl<Req: 'static> PolicyBuilder<Req> {
    /// The clock read once per request (default: the real clock).
    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Adds a scope; scopes are evaluated in the order added.
    pub fn scope(mut self, scope: Scope<Req>) -> Self {
        self.scopes.push(scope);
        self
    }

    /// The policy.
    pub fn build(self) -> Policy<Req> {
        Policy {
            clock: self.clock.unwrap_or_default(),
            names: self.scopes.iter().map(|s| s.name.clone()).collect(),
            scopes: self.scopes.into_boxed_slice(),
        }
    }
}

impl<Req: 'static> Policy<Req> {
    /// A builder with no scopes.
    pub fn builder() -> PolicyBuilder<Req> {
        PolicyBuilder {
            clock: None,
            scopes: Vec::new(),
        }
    }

    /// The clock this policy reads.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// The scopes' names, in order.
    pub fn scope_names(&self) -> impl ExactSizeIterator<Item = &str> {
        self.names.iter().map(|n| &**n)
    }

    /// Checks `req` with `cost` against every applicable scope and consumes `cost` in all
    /// of them only if every enforcing scope allows.
    pub fn check(&self, req: &Req, cost: u64) -> Result<PolicyDecision<'_>, PolicyError> {
        self.check_at(req, cost, self.clock.now())
    }

    /// [`check`](Self::check) at an explicit time.
    pub fn check_at(
        &self,
        req: &Req,
        cost: u64,
        now: Nanos,
    ) -> Result<PolicyDecision<'_>, PolicyError> {
        self.evaluate(req, cost, now, true)
    }

    /// What [`check`](Self::check) would return now, consuming nothing.
    pub fn peek(&self, req: &Req, cost: u64) -> Result<PolicyDecision<'_>, PolicyError> {
        self.peek_at(req, cost, self.clock.now())
    }

    /// [`peek`](Self::peek) at an explicit time.
    pub fn peek_at(
        &self,
        req: &Req,
        cost: u64,
        now: Nanos,
    ) -> Result<PolicyDecision<'_>, PolicyError> {
        self.evaluate(req, cost, now, false)
    }

    /// Gives `cost` back to every scope that applies to `req` (e.g. the job it paid for
    /// failed upstream). Never leaves a key fuller than fresh.
    pub fn refund(&self, req: &Req, cost: u64) {
        self.refund_at(req, cost, self.clock.now())
    }

    /// [`refund`](Self::refund) at an explicit time.
    pub fn refund_at(&self, req: &Req, cost: u64, now: Nanos) {
        for scope in self.scopes.iter() {
            scope.run.refund(req, cost, now);
        }
    }

    fn evaluate(
        &self,
        req: &Req,
        cost: u64,
        now: Nanos,
        commit: bool,
    ) -> Result<PolicyDecision<'_>, PolicyError> {
        let mut walk = Walk {
            entries: Entries::new(),
            allowed: true,
        };
        self.step(0, req, cost, now, commit, &mut walk)?;
        Ok(PolicyDecision {
            names: &self.names,
            entries: walk.entries,
            allowed: walk.allowed,
        })
    }

    /// Decides scope `i` while holding its state, recursing into the scopes after it.
    fn step(
        &self,
        i: usize,
        req: &Req,
        cost: u64,
        now: Nanos,
        commit: bool,
        walk: &mut Walk,
    ) -> Result<(), PolicyError> {
        let Some(scope) = self.scopes.get(i) else {
            return Ok(());
        };
        let limit = scope.limit.as_ref().and_then(|limit| limit(req));
        let mut rest = Ok(());
        let outcome = scope.run.transact(req, cost, now, limit, &mut |decision| {
            walk.entries.push(i, scope.shadow, *decision);
            if !scope.shadow && decision.is_denied() {
                walk.allowed = false;
            }
            rest = self.step(i + 1, req, cost, now, commit, walk);
            commit && rest.is_ok() && walk.allowed
        });
        match outcome {
            None => self.step(i + 1, req, cost, now, commit, walk),
            // A shadow scope never fails a request, not even for a cost it cannot hold.
            Some(Err(_)) if scope.shadow => self.step(i + 1, req, cost, now, commit, walk),
            Some(Err(error)) => Err(PolicyError {
                scope: scope.name.clone(),
                error,
            }),
            Some(Ok(_)) => rest,
        }
    }
}

struct Walk {
    entries: Entries,
    allowed: bool,
}

impl<Req> fmt::Debug for Policy<Req> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Policy")
            .field("scopes", &self.names)
            .finish_non_exhaustive()
    }
}
