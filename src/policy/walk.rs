//! How a policy check walks its scopes: each scope's runner decides its scope inside
//! its own transaction and, from there, the scopes after it (see [`Turn`]), so that
//! every state stays held until the last scope and the admission have decided.

use super::decision::Entry;
use super::run::Held;
use super::scope::Scope;
use super::{Policy, PolicyDecision, PolicyError};
use crate::{CheckError, Decision, Nanos};

impl<Req: 'static> Policy<Req> {
    /// Walks the scopes for `req`, filling `decision` (built in the caller's frame, so
    /// that returning it copies no report), and counts the check.
    #[inline(always)]
    pub(super) fn walk<'p>(
        &'p self,
        decision: &mut PolicyDecision<'p>,
        req: &Req,
        cost: u64,
        now: Nanos,
        commit: bool,
        admit: Option<&mut dyn FnMut() -> bool>,
    ) -> Result<(), PolicyError> {
        let mut walk = Walk {
            policy: self,
            req,
            cost,
            now,
            commit,
            admit,
            error: None,
            hashes: [None; PREFETCHED],
        };
        if self.prefetch {
            let scopes = self.scopes.iter().take(PREFETCHED);
            for (hash, scope) in walk.hashes.iter_mut().zip(scopes) {
                if scope.prefetch {
                    *hash = scope.run.prefetch(req);
                }
            }
        }
        if !walk.step(decision, 0) {
            if let Some(error) = walk.error.take() {
                return Err(error);
            }
        }
        if commit {
            self.stats.record(&self.name, decision);
        }
        Ok(())
    }
}

/// One policy check in progress: what every scope's step reads. The decision it writes
/// is passed alongside, so that it can be built where the caller returns it from.
pub(crate) struct Walk<'p, 'r, 'a, Req> {
    policy: &'p Policy<Req>,
    req: &'r Req,
    cost: u64,
    now: Nanos,
    commit: bool,
    admit: Option<&'a mut dyn FnMut() -> bool>,
    /// Why the walk failed, once a step returned `false`.
    error: Option<PolicyError>,
    /// The hash of each of the first scopes' keys, if the prefetch pass computed it: the
    /// scope's step looks its key up with it instead of hashing the key again.
    hashes: [Option<u64>; PREFETCHED],
}

/// How many scopes, from the first, a policy prefetches (as many as a decision keeps
/// reports for without allocating).
const PREFETCHED: usize = 8;

impl<'p, Req> Walk<'p, '_, '_, Req> {
    /// Decides scope `i` and, from inside its transaction, the scopes after it (see
    /// [`Turn`]); `false` once a scope failed (the error is in `self.error`).
    #[inline(always)]
    fn step(&mut self, out: &mut PolicyDecision<'p>, i: usize) -> bool {
        let policy = self.policy;
        match policy.scopes.get(i) {
            Some(scope) => scope.run.step(scope, self, out, i),
            None => {
                // Every scope is decided and held: the last word goes to the caller's hook.
                if self.commit && out.allowed {
                    if let Some(admit) = self.admit.as_mut() {
                        out.allowed = admit();
                    }
                }
                true
            }
        }
    }
}

/// Scope `i`'s turn in a walk. Its runner (behind the scope's `dyn Run`) opens the
/// scope's transaction with a continuation that calls [`decided`](Self::decided) with
/// the scope's decision — normally while the key's state is held — which decides the
/// scopes after it; [`finish`](Self::finish) then says how the transaction ended
/// (skipped and failed scopes go straight there). The walk's step is generic code each
/// runner compiles into its own transaction, so a scope costs one virtual call, not a
/// step, an erased continuation and the runner's transaction each.
pub(crate) struct Turn<'w, 'p, 'r, 'a, Req> {
    walk: &'w mut Walk<'p, 'r, 'a, Req>,
    out: &'w mut PolicyDecision<'p>,
    scope: &'p Scope<Req>,
    i: usize,
    /// Whether the scopes after this one were decided without failing.
    rest: bool,
    /// This scope's report's place, once its decision was seen.
    at: Option<usize>,
}

impl<'w, 'p, 'r, 'a, Req> Turn<'w, 'p, 'r, 'a, Req> {
    #[inline(always)]
    pub(crate) fn new(
        scope: &'p Scope<Req>,
        walk: &'w mut Walk<'p, 'r, 'a, Req>,
        out: &'w mut PolicyDecision<'p>,
        i: usize,
    ) -> Self {
        Turn {
            walk,
            out,
            scope,
            i,
            rest: true,
            at: None,
        }
    }

    /// What the scope's transaction needs: the request, its cost, the time, the
    /// request's own limit and whether this is a peek.
    #[inline(always)]
    pub(crate) fn request(&self) -> (&'r Req, u64, Nanos, Option<u64>, bool) {
        let walk = &*self.walk;
        let limit = self.scope.limit.as_ref().and_then(|limit| limit(walk.req));
        (walk.req, walk.cost, walk.now, limit, !walk.commit)
    }

    /// The hash of this scope's key from the prefetch pass, if it computed one.
    #[inline(always)]
    pub(crate) fn hash(&self) -> Option<u64> {
        self.walk.hashes.get(self.i).copied().flatten()
    }

    /// The continuation is about to run (again, for a user limiter that calls it more
    /// than once): a failure an earlier call of it left behind no longer stands, since
    /// this call decides the scopes after this one anew. (Nothing else can have failed
    /// yet: the scopes before this one are still inside their continuations.)
    #[inline(always)]
    pub(crate) fn again(&mut self) {
        self.walk.error = None;
    }

    /// The scope decided `decision` (holding its state, unless its limiter answered
    /// without calling its continuation): decides the scopes after it; whether to
    /// consume.
    #[inline(always)]
    pub(crate) fn decided(&mut self, decision: &Decision) -> bool {
        if !self.scope.shadow && decision.is_denied() {
            self.out.allowed = false;
        }
        let slot = self.out.entries.reserve();
        self.rest = self.walk.step(self.out, self.i + 1);
        // The report is copied once the later scopes are decided: by then the limiter's
        // writes of `decision` have landed, and reading them is cheap.
        self.out.entries.set(slot, self.entry(*decision));
        self.at = Some(slot);
        self.walk.commit && self.rest && self.out.allowed
    }

    #[inline(always)]
    fn entry(&self, decision: Decision) -> Entry {
        Entry {
            index: self.i as u32,
            shadow: self.scope.shadow,
            decision,
        }
    }

    /// The scope's transaction ended with `held`; `remains` is its state as it remains
    /// if the request was not consumed. Whether the walk goes on.
    #[inline(always)]
    pub(crate) fn finish(self, held: Held, remains: Option<Decision>) -> bool {
        let error = match held {
            Held::Skipped => return self.walk.step(self.out, self.i + 1),
            Held::Decided => {
                // A denied request spent nothing: its scopes report what really remains.
                if let (false, Some(slot), Some(remains)) = (self.out.allowed, self.at, remains) {
                    self.out.entries.set(slot, self.entry(remains));
                }
                return self.rest;
            }
            // A shadow scope never fails a request, not even for a cost it cannot hold;
            // if it failed after its continuation ran, the later scopes are decided.
            Held::Failed(_) if self.scope.shadow => return self.walk.step(self.out, self.i + 1),
            Held::FailedAfter(_) if self.scope.shadow => return self.rest,
            Held::Failed(error) | Held::FailedAfter(error) => error,
            // What the later scopes did is unknown: nothing is decided, not even for a
            // shadow scope.
            Held::Interrupted => CheckError::Interrupted,
        };
        // The first failure is the one reported: a scope that fails on the way back
        // (after its continuation) does not hide what failed inside it.
        if self.walk.error.is_none() {
            self.walk.error = Some(PolicyError {
                scope: self.scope.name.clone(),
                error,
            });
        }
        false
    }
}
