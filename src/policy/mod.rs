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
//! are always taken in declaration order, so checks may wait for each other but never in
//! a cycle. The
//! clock is read once per request, and for up to eight scopes nothing is allocated.
//!
//! **What scopes report.** When the request is allowed, each scope reports its state
//! after this request. When it is denied, nothing was spent, so each scope reports what
//! really remains: a scope that would have allowed shows its current `remaining`, not
//! one less.

mod decision;
mod run;
mod scope;
#[cfg(feature = "serde")]
mod snapshot;
mod stats;
mod walk;

use std::fmt;
use std::sync::Arc;

pub use decision::{PolicyDecision, PolicyError, ScopeReport};
pub use scope::Scope;
pub use stats::{PolicyStats, ScopeStats};

pub(crate) use decision::Entries;
use stats::Stats;

use crate::{Clock, LimitChangeError, Nanos, Rate};

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
    name: Arc<str>,
    clock: Clock,
    names: Box<[Arc<str>]>,
    scopes: Box<[Scope<Req>]>,
    /// Whether any scope prefetches ([`Scope::prefetch`]): if not, no pass before the walk.
    prefetch: bool,
    stats: Stats,
}

/// Builds a [`Policy`].
#[must_use]
pub struct PolicyBuilder<Req> {
    name: Arc<str>,
    clock: Option<Clock>,
    scopes: Vec<Scope<Req>>,
    near_limit_percent: u64,
}

impl<Req: 'static> PolicyBuilder<Req> {
    /// The clock read once per request (default: the real clock).
    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = Some(clock);
        self
    }

    /// The policy's name, the `policy` label of its metrics (default `"default"`).
    pub fn name(mut self, name: &str) -> Self {
        self.name = Arc::from(name);
        self
    }

    /// The share of a limit in use (after a request) from which the request counts as
    /// near the limit in [`Policy::stats`] (default 80 %; values above 100 count nothing).
    pub fn near_limit_percent(mut self, percent: u64) -> Self {
        self.near_limit_percent = percent;
        self
    }

    /// Adds a scope; scopes are evaluated in the order added.
    pub fn scope(mut self, scope: Scope<Req>) -> Self {
        self.scopes.push(scope);
        self
    }

    /// The policy. With the `metrics` feature, its counters are registered with the
    /// recorder installed at this point.
    pub fn build(self) -> Policy<Req> {
        let names: Box<[Arc<str>]> = self.scopes.iter().map(|s| s.name.clone()).collect();
        #[allow(unused_mut)]
        let mut stats = Stats::new(names.len(), self.near_limit_percent);
        #[cfg(feature = "metrics")]
        stats.register_metrics(&self.name, &names);
        Policy {
            name: self.name,
            clock: self.clock.unwrap_or_default(),
            names,
            prefetch: self.scopes.iter().any(|s| s.prefetch),
            scopes: self.scopes.into_boxed_slice(),
            stats,
        }
    }
}

impl<Req: 'static> Policy<Req> {
    /// A builder with no scopes.
    pub fn builder() -> PolicyBuilder<Req> {
        PolicyBuilder {
            name: Arc::from("default"),
            clock: None,
            scopes: Vec::new(),
            near_limit_percent: 80,
        }
    }

    /// The clock this policy reads.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// The policy's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// What this policy has decided so far (checks, not peeks), per scope, with each
    /// scope's tracked keys and evictions. With the `metrics` feature this also publishes
    /// the key gauges and eviction counters.
    ///
    /// ```
    /// use ratewarden::{Gcra, Policy, Scope};
    ///
    /// let policy = Policy::builder()
    ///     .scope(Scope::keyed("per_user", Gcra::new("2/min".parse()?), |u: &u32| Some(*u)))
    ///     .build();
    /// for _ in 0..3 {
    ///     policy.check(&7, 1)?;
    /// }
    /// let stats = policy.stats();
    /// assert_eq!((stats.allowed, stats.denied), (2, 1));
    /// assert_eq!(stats.scopes[0].near_limit, 2); // 1 of 2 (50 %) is not near, 2 of 2 is
    /// assert_eq!(stats.scopes[0].tracked_keys, 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn stats(&self) -> PolicyStats {
        self.stats.snapshot(&self.names, |i| {
            self.scopes
                .get(i)
                .map_or((0, 0), |s| (s.run.tracked_keys(), s.run.evictions()))
        })
    }

    /// Replaces scope `name`'s rate at run time, keeping every key's state: what a key
    /// has used stays used (see [`KeyedLimiter::set_rate`](crate::KeyedLimiter::set_rate)
    /// for how each algorithm carries it over). Safe while other threads check: each
    /// check of the scope runs entirely under the old rate or entirely under the new one.
    /// Per-request limits ([`Scope::limit_by`]) keep overriding the count. A name that
    /// several scopes share changes none of them ([`LimitChangeError::AmbiguousScope`]).
    /// Not to be called from a
    /// [`check_with`](Self::check_with) admission, which runs while the scopes' states
    /// are held.
    ///
    /// ```
    /// use ratewarden::{Clock, FixedWindow, LimitChangeError, Policy, Scope};
    ///
    /// let (clock, _mock) = Clock::mock();
    /// let policy = Policy::builder()
    ///     .clock(clock)
    ///     .scope(Scope::keyed("org", FixedWindow::new("10/hour".parse()?), |org: &u64| Some(*org)))
    ///     .build();
    /// policy.check(&7, 8)?;
    /// policy.set_rate("org", "100/hour".parse()?)?; // the plan's limit was raised
    /// assert_eq!(policy.check(&7, 1)?.scope("org").unwrap().decision.remaining(), 91);
    /// assert!(matches!(
    ///     policy.set_rate("orgs", "1/s".parse()?),
    ///     Err(LimitChangeError::UnknownScope { .. })
    /// ));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn set_rate(&self, name: &str, rate: Rate) -> Result<(), LimitChangeError> {
        self.set_rate_at(name, rate, self.clock.now())
    }

    /// [`set_rate`](Self::set_rate) at an explicit time (states are carried over as of
    /// `now`).
    pub fn set_rate_at(&self, name: &str, rate: Rate, now: Nanos) -> Result<(), LimitChangeError> {
        let mut named = self.scopes.iter().filter(|s| &*s.name == name);
        let scope = named.next().ok_or_else(|| LimitChangeError::UnknownScope {
            scope: name.to_owned(),
        })?;
        let others = named.count();
        if others > 0 {
            return Err(LimitChangeError::AmbiguousScope {
                scope: name.to_owned(),
                count: others + 1,
            });
        }
        scope.run.set_rate_at(rate, now).map_err(|e| match e {
            LimitChangeError::Unsupported => LimitChangeError::ScopeUnsupported {
                scope: name.to_owned(),
            },
            other => other,
        })
    }

    /// The scopes' names, in order.
    pub fn scope_names(&self) -> impl ExactSizeIterator<Item = &str> {
        self.names.iter().map(|n| &**n)
    }

    /// Checks `req` with `cost` against every applicable scope and consumes `cost` in all
    /// of them only if every enforcing scope allows.
    #[inline]
    pub fn check(&self, req: &Req, cost: u64) -> Result<PolicyDecision<'_>, PolicyError> {
        self.check_at(req, cost, self.clock.now())
    }

    /// [`check`](Self::check) at an explicit time.
    #[inline]
    pub fn check_at(
        &self,
        req: &Req,
        cost: u64,
        now: Nanos,
    ) -> Result<PolicyDecision<'_>, PolicyError> {
        self.evaluate(req, cost, now, true)
    }

    /// What [`check`](Self::check) would return now, consuming nothing, storing no key
    /// and reserving no room under any scope's key cap: at a cap, a new key is judged
    /// as fresh, as [`KeyedLimiter::peek`](crate::KeyedLimiter::peek) judges it, where a
    /// check would be refused with [`CheckError::KeyCapReached`](crate::CheckError).
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

    /// Checks `req` like [`check`](Self::check) and, only if every enforcing scope
    /// allows, runs `admit` while all scopes' states are still held — e.g. taking a
    /// [`ConcurrencyLimiter`](crate::ConcurrencyLimiter) permit or queue place. The rate
    /// scopes are charged only if `admit` succeeds; if it fails, the request is denied and
    /// nothing is spent. `admit` is not called when a rate scope denies.
    ///
    /// ```
    /// use ratewarden::{ConcurrencyLimiter, Gcra, Policy, Scope};
    ///
    /// let policy = Policy::builder()
    ///     .scope(Scope::keyed("rpm", Gcra::new("60/min".parse()?), |k: &u32| Some(*k)))
    ///     .build();
    /// let jobs = ConcurrencyLimiter::new(1)?;
    /// let first = policy.check_with(&7, 1, || jobs.try_acquire(&7))?;
    /// let _permit = first.outcome.unwrap()?;
    /// let second = policy.check_with(&7, 1, || jobs.try_acquire(&7))?;
    /// assert!(second.decision.is_denied()); // busy: no rate budget was spent
    /// assert_eq!(second.decision.scope("rpm").unwrap().decision.remaining(), 59);
    /// assert_eq!(policy.peek(&7, 0)?.scope("rpm").unwrap().decision.remaining(), 59);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn check_with<T, E>(
        &self,
        req: &Req,
        cost: u64,
        admit: impl FnOnce() -> Result<T, E>,
    ) -> Result<Admitted<'_, T, E>, PolicyError> {
        let mut admit = Some(admit);
        let mut outcome = None;
        let mut hook = || {
            let result = admit.take().map(|f| f());
            let ok = matches!(result, Some(Ok(_)));
            outcome = result;
            ok
        };
        let decision = self.evaluate_with(req, cost, self.clock.now(), true, Some(&mut hook))?;
        Ok(Admitted { decision, outcome })
    }

    #[inline]
    fn evaluate(
        &self,
        req: &Req,
        cost: u64,
        now: Nanos,
        commit: bool,
    ) -> Result<PolicyDecision<'_>, PolicyError> {
        self.evaluate_with(req, cost, now, commit, None)
    }

    /// The decision is built here, in the caller's frame, and filled by
    /// [`walk`](Self::walk): returning it then needs no copy of the reports.
    #[inline(always)]
    fn evaluate_with(
        &self,
        req: &Req,
        cost: u64,
        now: Nanos,
        commit: bool,
        admit: Option<&mut dyn FnMut() -> bool>,
    ) -> Result<PolicyDecision<'_>, PolicyError> {
        let mut decision = PolicyDecision {
            names: &self.names,
            entries: Entries::new(),
            allowed: true,
        };
        self.walk(&mut decision, req, cost, now, commit, admit)?;
        Ok(decision)
    }
}

/// The outcome of [`Policy::check_with`].
#[derive(Debug)]
pub struct Admitted<'p, T, E> {
    /// The policy's decision; denied if a rate scope denied or the admission failed.
    pub decision: PolicyDecision<'p>,
    /// What the admission returned; `None` if a rate scope denied first.
    pub outcome: Option<Result<T, E>>,
}

impl<Req> fmt::Debug for Policy<Req> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Policy")
            .field("scopes", &self.names)
            .finish_non_exhaustive()
    }
}
