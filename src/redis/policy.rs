//! [`RedisPolicy`]: the in-process [`Policy`](crate::Policy)'s semantics, checked by one
//! server-side script per request.

use std::fmt;
use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use super::scope::{Params, RedisAlgorithm, RedisScope};
use super::{AsyncRedisBackend, RedisBackend, RedisBuildError, RedisCheckError};
use crate::policy::Entries;
use crate::{CheckError, Decision, PolicyDecision, PolicyError, Rate};

/// What a check answers when Redis cannot (timeout, connection, server error).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum FailureMode {
    /// Return the error (the default): the application decides.
    #[default]
    Error,
    /// Allow the request, reporting no scope (the header layer then writes no quota
    /// headers).
    Open,
    /// Deny the request: every applicable enforcing scope reports a denial with this
    /// retry-after and nothing remaining.
    Closed {
        /// The retry-after to report.
        retry_after: Duration,
    },
}

/// A policy's decision from Redis: a [`PolicyDecision`] (it derefs to one, so headers
/// are written exactly as in-process), plus the fault that a [`FailureMode`] answered,
/// if Redis could not.
#[derive(Debug, Clone)]
pub struct RedisDecision<'p> {
    decision: PolicyDecision<'p>,
    fault: Option<RedisCheckError>,
}

impl<'p> RedisDecision<'p> {
    /// The fault that the failure mode answered (`None`: Redis decided), for logging and
    /// counting.
    pub fn fault(&self) -> Option<&RedisCheckError> {
        self.fault.as_ref()
    }

    /// Whether Redis decided (no fault).
    pub fn is_from_redis(&self) -> bool {
        self.fault.is_none()
    }

    /// The policy decision.
    pub fn decision(&self) -> &PolicyDecision<'p> {
        &self.decision
    }

    /// The policy decision, owned.
    pub fn into_decision(self) -> PolicyDecision<'p> {
        self.decision
    }
}

impl<'p> Deref for RedisDecision<'p> {
    type Target = PolicyDecision<'p>;

    fn deref(&self) -> &PolicyDecision<'p> {
        &self.decision
    }
}

/// What the script does (its first argument).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Peek = 0,
    Check = 1,
    Refund = 2,
}

type TagFn<Req> = Box<dyn Fn(&Req) -> Option<String> + Send + Sync>;

enum HashTag<Req> {
    None,
    Fixed(Arc<str>),
    PerRequest(TagFn<Req>),
}

struct Built<Req> {
    scope: RedisScope<Req>,
    params: Params,
    /// `<prefix>:<policy>:<scope>`.
    stem: String,
}

/// A policy of named scopes checked on Redis as one, all or nothing, with the semantics
/// of the in-process [`Policy`](crate::Policy): allowed iff every applicable enforcing
/// scope allows; a denial spends nothing anywhere and reports the longest retry-after.
///
/// One Lua script per check reads the server's clock (`TIME`), decides every scope, and
/// only if all allow writes them; every key it writes expires once its state is that of a
/// fresh key. Time is whole microseconds; see [`RedisAlgorithm`] for the few rates this
/// rules out.
///
/// Key names are `{<tag>}:<prefix>:<policy>:<scope>:<algorithm>[:<key>]` (the algorithm as
/// [`RedisAlgorithm::key_tag`] names it), with the hash tag only
/// when the policy has one (and not for [`global`](RedisScope::global) scopes under a
/// per-request tag). A policy meant for Redis Cluster is built with
/// [`cluster`](RedisPolicyBuilder::cluster), which rejects layouts whose keys cannot
/// share a slot.
///
/// ```no_run
/// use ratewarden::redis::{RedisBackend, RedisPolicy, RedisScope};
/// use ratewarden::{FixedWindow, Gcra, Rate};
///
/// struct Req { org: String, api_key: String }
///
/// let policy = RedisPolicy::builder()
///     .name("api")
///     .hash_tag(|r: &Req| Some(r.org.clone()))
///     .scope(RedisScope::keyed("per-key", Gcra::new(Rate::per_second(10)?), |r: &Req| {
///         Some(r.api_key.clone())
///     }))
///     .scope(RedisScope::unkeyed("per-org", FixedWindow::new(Rate::per_hour(10_000)?)))
///     .cluster()
///     .build()?;
/// let redis = RedisBackend::open("redis://127.0.0.1:6379")?;
/// let req = Req { org: "acme".into(), api_key: "k1".into() };
/// let decision = policy.check(&redis, &req, 1)?;
/// if decision.is_denied() {
///     println!("429, retry after {:?}", decision.retry_after());
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct RedisPolicy<Req> {
    names: Box<[Arc<str>]>,
    scopes: Box<[Built<Req>]>,
    tag: HashTag<Req>,
    failure: FailureMode,
}

/// Builds a [`RedisPolicy`]; see [`RedisPolicy::builder`].
#[must_use]
pub struct RedisPolicyBuilder<Req> {
    name: Arc<str>,
    prefix: Arc<str>,
    scopes: Vec<RedisScope<Req>>,
    tag: HashTag<Req>,
    failure: FailureMode,
    cluster: bool,
}

/// A call to Redis, ready to send: keys and arguments of the script, and where each
/// reply entry goes.
pub(crate) struct Prepared {
    pub(crate) keys: Vec<String>,
    pub(crate) args: Vec<u64>,
    /// Per applicable scope: its index, shadow flag and window in nanoseconds.
    slots: Vec<(usize, bool, u64, u64)>,
}

fn check_name(what: &'static str, name: &str) -> Result<(), RedisBuildError> {
    let reason = if name.is_empty() {
        Some("it is empty")
    } else if name.contains(['{', '}']) {
        Some("braces would change the key's hash tag")
    } else if name.contains(':') {
        Some("':' separates the parts of a key name")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(RedisBuildError::BadName {
            what,
            name: Arc::from(name),
            reason,
        }),
        None => Ok(()),
    }
}

impl<Req: 'static> RedisPolicyBuilder<Req> {
    /// The policy's name, part of every key name (default `"default"`).
    pub fn name(mut self, name: &str) -> Self {
        self.name = Arc::from(name);
        self
    }

    /// The first part of every key name (default `"ratewarden"`), to keep apart
    /// applications that share a server.
    pub fn key_prefix(mut self, prefix: &str) -> Self {
        self.prefix = Arc::from(prefix);
        self
    }

    /// Adds a scope; scopes are decided and reported in the order added.
    pub fn scope(mut self, scope: RedisScope<Req>) -> Self {
        self.scopes.push(scope);
        self
    }

    /// A hash tag per request (e.g. the organization): every key of a check, except those
    /// of [`global`](RedisScope::global) scopes, carries it, so they share a cluster slot.
    /// Counters of non-global scopes are then kept per tag: a key (an API key, a user)
    /// should always come with the same tag (its organization).
    pub fn hash_tag(
        mut self,
        tag: impl Fn(&Req) -> Option<String> + Send + Sync + 'static,
    ) -> Self {
        self.tag = HashTag::PerRequest(Box::new(tag));
        self
    }

    /// One hash tag for every key of the policy: always one slot, on one cluster node.
    pub fn fixed_hash_tag(mut self, tag: &str) -> Self {
        self.tag = HashTag::Fixed(Arc::from(tag));
        self
    }

    /// What checks answer when Redis cannot (default [`FailureMode::Error`]).
    pub fn on_failure(mut self, mode: FailureMode) -> Self {
        self.failure = mode;
        self
    }

    /// The policy will run on Redis Cluster: [`build`](Self::build) rejects a layout
    /// whose keys of one check cannot share a slot.
    pub fn cluster(mut self) -> Self {
        self.cluster = true;
        self
    }

    /// Validates the scopes (unique names, rates the server computes exactly, and for
    /// Redis Cluster, keys that share a slot) and builds the policy.
    pub fn build(self) -> Result<RedisPolicy<Req>, RedisBuildError> {
        check_name("policy", &self.name)?;
        check_name("key prefix", &self.prefix)?;
        if let HashTag::Fixed(tag) = &self.tag {
            if tag.is_empty() {
                return Err(RedisBuildError::BadName {
                    what: "hash tag",
                    name: tag.clone(),
                    reason: "it is empty (Redis then hashes the whole key name)",
                });
            }
        }
        let mut seen: Vec<&str> = Vec::new();
        for scope in &self.scopes {
            check_name("scope", &scope.name)?;
            if seen.contains(&&*scope.name) {
                return Err(RedisBuildError::DuplicateScope {
                    name: scope.name.clone(),
                });
            }
            seen.push(&scope.name);
        }
        if self.cluster {
            match &self.tag {
                HashTag::None if self.scopes.len() > 1 => return Err(RedisBuildError::NoHashTag),
                HashTag::PerRequest(_) => {
                    if let Some(global) = self.scopes.iter().find(|s| s.global) {
                        return Err(RedisBuildError::GlobalScope {
                            scope: global.name.clone(),
                        });
                    }
                }
                _ => {}
            }
        }
        let mut scopes = Vec::with_capacity(self.scopes.len());
        for scope in self.scopes {
            let params = scope
                .alg
                .params()
                .map_err(|reason| RedisBuildError::Unrepresentable {
                    scope: scope.name.clone(),
                    rate: scope.alg.rate(),
                    reason,
                })?;
            let stem = format!(
                "{}:{}:{}:{}",
                self.prefix,
                self.name,
                scope.name,
                scope.alg.key_tag()
            );
            scopes.push(Built {
                scope,
                params,
                stem,
            });
        }
        Ok(RedisPolicy {
            names: scopes.iter().map(|b| b.scope.name.clone()).collect(),
            scopes: scopes.into_boxed_slice(),
            tag: self.tag,
            failure: self.failure,
        })
    }
}

impl<Req: 'static> RedisPolicy<Req> {
    /// A builder with no scopes, no hash tag and [`FailureMode::Error`].
    pub fn builder() -> RedisPolicyBuilder<Req> {
        RedisPolicyBuilder {
            name: Arc::from("default"),
            prefix: Arc::from("ratewarden"),
            scopes: Vec::new(),
            tag: HashTag::None,
            failure: FailureMode::Error,
            cluster: false,
        }
    }

    /// The scopes' names, in order.
    pub fn scope_names(&self) -> impl ExactSizeIterator<Item = &str> {
        self.names.iter().map(|n| &**n)
    }

    /// The failure mode.
    pub fn failure_mode(&self) -> FailureMode {
        self.failure
    }

    /// Checks `req` at a cost of `cost` and consumes it in every scope if all allow.
    pub fn check(
        &self,
        redis: &RedisBackend,
        req: &Req,
        cost: u64,
    ) -> Result<RedisDecision<'_>, RedisCheckError> {
        self.run_sync(redis, req, cost, Mode::Check, 0)
    }

    /// What [`check`](Self::check) would answer now, consuming nothing.
    pub fn peek(
        &self,
        redis: &RedisBackend,
        req: &Req,
        cost: u64,
    ) -> Result<RedisDecision<'_>, RedisCheckError> {
        self.run_sync(redis, req, cost, Mode::Peek, 0)
    }

    /// [`check`](Self::check) on an async connection.
    pub async fn check_async(
        &self,
        redis: &AsyncRedisBackend,
        req: &Req,
        cost: u64,
    ) -> Result<RedisDecision<'_>, RedisCheckError> {
        self.run_async(redis, req, cost, Mode::Check).await
    }

    /// [`peek`](Self::peek) on an async connection.
    pub async fn peek_async(
        &self,
        redis: &AsyncRedisBackend,
        req: &Req,
        cost: u64,
    ) -> Result<RedisDecision<'_>, RedisCheckError> {
        self.run_async(redis, req, cost, Mode::Peek).await
    }

    /// [`check`](Self::check) (or, with `commit` false, [`peek`](Self::peek)) at a time
    /// given in microseconds since the Unix epoch instead of the server's clock.
    ///
    /// Only for tests that hold the Redis backend to the in-process algorithms decision
    /// by decision: several instances must never pass their own clocks.
    #[doc(hidden)]
    pub fn check_at_micros(
        &self,
        redis: &RedisBackend,
        req: &Req,
        cost: u64,
        commit: bool,
        at_micros: u64,
    ) -> Result<RedisDecision<'_>, RedisCheckError> {
        let mode = if commit { Mode::Check } else { Mode::Peek };
        self.run_sync(redis, req, cost, mode, at_micros.max(1))
    }

    /// [`refund`](Self::refund) at a time given in microseconds; see
    /// [`check_at_micros`](Self::check_at_micros).
    #[doc(hidden)]
    pub fn refund_at_micros(
        &self,
        redis: &RedisBackend,
        req: &Req,
        cost: u64,
        at_micros: u64,
    ) -> Result<(), RedisCheckError> {
        self.refund_sync(redis, req, cost, at_micros.max(1))
    }

    /// Gives back up to `cost` in every applicable scope (e.g. the upstream job failed),
    /// never leaving a scope fuller than a fresh key, as
    /// [`Policy::refund`](crate::Policy::refund). Failures are returned whatever the
    /// failure mode.
    pub fn refund(
        &self,
        redis: &RedisBackend,
        req: &Req,
        cost: u64,
    ) -> Result<(), RedisCheckError> {
        self.refund_sync(redis, req, cost, 0)
    }

    /// [`refund`](Self::refund) on an async connection.
    pub async fn refund_async(
        &self,
        redis: &AsyncRedisBackend,
        req: &Req,
        cost: u64,
    ) -> Result<(), RedisCheckError> {
        match self.prepare(req, cost, Mode::Refund, 0)? {
            Some(prepared) => redis.eval(&prepared).await.map(drop),
            None => Ok(()),
        }
    }

    fn refund_sync(
        &self,
        redis: &RedisBackend,
        req: &Req,
        cost: u64,
        at_micros: u64,
    ) -> Result<(), RedisCheckError> {
        match self.prepare(req, cost, Mode::Refund, at_micros)? {
            Some(prepared) => redis.eval(&prepared).map(drop),
            None => Ok(()),
        }
    }

    fn run_sync(
        &self,
        redis: &RedisBackend,
        req: &Req,
        cost: u64,
        mode: Mode,
        at_micros: u64,
    ) -> Result<RedisDecision<'_>, RedisCheckError> {
        let Some(prepared) = self.prepare(req, cost, mode, at_micros)? else {
            return Ok(self.empty());
        };
        let reply = redis.eval(&prepared);
        self.finish(&prepared, reply)
    }

    async fn run_async(
        &self,
        redis: &AsyncRedisBackend,
        req: &Req,
        cost: u64,
        mode: Mode,
    ) -> Result<RedisDecision<'_>, RedisCheckError> {
        let Some(prepared) = self.prepare(req, cost, mode, 0)? else {
            return Ok(self.empty());
        };
        let reply = redis.eval(&prepared).await;
        self.finish(&prepared, reply)
    }

    fn empty(&self) -> RedisDecision<'_> {
        RedisDecision {
            decision: PolicyDecision {
                names: &self.names,
                entries: Entries::new(),
                allowed: true,
            },
            fault: None,
        }
    }

    /// Keys and arguments for the script; `None` when no scope applies.
    fn prepare(
        &self,
        req: &Req,
        cost: u64,
        mode: Mode,
        at_micros: u64,
    ) -> Result<Option<Prepared>, RedisCheckError> {
        let mut prepared = Prepared {
            keys: Vec::with_capacity(self.scopes.len()),
            args: Vec::with_capacity(3 + 6 * self.scopes.len()),
            slots: Vec::with_capacity(self.scopes.len()),
        };
        prepared.args.extend([mode as u64, cost, at_micros]);
        let mut tag: Option<Option<String>> = None;
        for (i, built) in self.scopes.iter().enumerate() {
            let scope = &built.scope;
            let Some(key) = (scope.key)(req) else {
                continue;
            };
            let params = match self.params_for(built, req, cost, mode) {
                Ok(params) => params,
                // A shadow scope never fails a request, not even for a cost it cannot hold.
                Err(_) if scope.shadow => continue,
                Err(error) => {
                    return Err(RedisCheckError::Policy(PolicyError {
                        scope: scope.name.clone(),
                        error,
                    }))
                }
            };
            let mut name = String::with_capacity(built.stem.len() + key.len() + 16);
            let tagged = match &self.tag {
                HashTag::None => None,
                HashTag::Fixed(t) => Some(&**t),
                HashTag::PerRequest(_) if scope.global => None,
                HashTag::PerRequest(f) => {
                    let t = tag.get_or_insert_with(|| f(req).filter(|t| !t.is_empty()));
                    Some(t.as_deref().ok_or(RedisCheckError::NoHashTag)?)
                }
            };
            if let Some(t) = tagged {
                name.push('{');
                name.push_str(t);
                name.push_str("}:");
            }
            name.push_str(&built.stem);
            if scope.keyed {
                name.push(':');
                name.push_str(&key);
            }
            prepared.keys.push(name);
            prepared.args.extend([
                u64::from(params.code),
                u64::from(scope.shadow),
                params.limit,
                params.window_micros,
                params.p1,
                params.p2,
            ]);
            prepared
                .slots
                .push((i, scope.shadow, params.window_micros * 1_000, params.limit));
        }
        Ok((!prepared.keys.is_empty()).then_some(prepared))
    }

    /// The scope's parameters for this request: its per-request limit applied, and the
    /// cost checked against its capacity, as in-process.
    fn params_for(
        &self,
        built: &Built<Req>,
        req: &Req,
        cost: u64,
        mode: Mode,
    ) -> Result<Params, CheckError> {
        let scope = &built.scope;
        let limit = scope.limit.as_ref().and_then(|f| f(req));
        let (alg, params) = match limit {
            Some(count) if count != scope.alg.rate().count() => {
                let invalid = CheckError::InvalidLimit { count };
                let alg: RedisAlgorithm = Rate::new(count, scope.alg.rate().window())
                    .map(|rate| scope.alg.with_rate(rate))
                    .map_err(|_| invalid)?;
                let params = alg.params().map_err(|_| invalid)?;
                (alg, params)
            }
            _ => (scope.alg, built.params),
        };
        if cost > alg.capacity() && mode != Mode::Refund {
            return Err(CheckError::CostExceedsCapacity {
                cost,
                capacity: alg.capacity(),
            });
        }
        Ok(params)
    }

    fn finish(
        &self,
        prepared: &Prepared,
        reply: Result<Vec<i64>, RedisCheckError>,
    ) -> Result<RedisDecision<'_>, RedisCheckError> {
        let reply = reply.and_then(|r| {
            if r.len() == 1 + 6 * prepared.slots.len() {
                Ok(r)
            } else {
                Err(RedisCheckError::Server {
                    detail: Arc::from(format!(
                        "the check script replied with {} numbers for {} scopes",
                        r.len(),
                        prepared.slots.len()
                    )),
                })
            }
        });
        let mut entries = Entries::new();
        let reply = match reply {
            Ok(reply) => reply,
            Err(fault) if fault.is_fault() => return self.failed(prepared, fault),
            Err(error) => return Err(error),
        };
        let num = |i: usize| reply.get(i).map_or(0, |v| (*v).max(0) as u64);
        for (j, (index, shadow, window, _)) in prepared.slots.iter().enumerate() {
            let at = 1 + 6 * j;
            let (limit, remaining, unit) = (num(at + 1), num(at + 2), num(at + 3));
            let (reset, retry) = (num(at + 4) * 1_000, num(at + 5) * 1_000);
            let decision = if num(at) == 1 {
                Decision::allow_scaled(limit, remaining, unit, *window, reset)
            } else {
                Decision::deny(limit, remaining, *window, reset, retry)
            };
            entries.push(*index, *shadow, decision);
        }
        Ok(RedisDecision {
            decision: PolicyDecision {
                names: &self.names,
                entries,
                allowed: num(0) == 1,
            },
            fault: None,
        })
    }

    /// The failure mode's answer to a fault.
    fn failed(
        &self,
        prepared: &Prepared,
        fault: RedisCheckError,
    ) -> Result<RedisDecision<'_>, RedisCheckError> {
        let mut entries = Entries::new();
        let allowed = match self.failure {
            FailureMode::Error => return Err(fault),
            FailureMode::Open => true,
            FailureMode::Closed { retry_after } => {
                let retry = u64::try_from(retry_after.as_nanos()).unwrap_or(u64::MAX);
                let mut enforcing = false;
                for (index, shadow, window, limit) in &prepared.slots {
                    if !shadow {
                        enforcing = true;
                        entries.push(
                            *index,
                            false,
                            Decision::deny(*limit, 0, *window, retry, retry),
                        );
                    }
                }
                !enforcing
            }
        };
        Ok(RedisDecision {
            decision: PolicyDecision {
                names: &self.names,
                entries,
                allowed,
            },
            fault: Some(fault),
        })
    }
}

impl<Req> fmt::Debug for RedisPolicy<Req> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisPolicy")
            .field("scopes", &self.names)
            .field("failure", &self.failure)
            .finish_non_exhaustive()
    }
}
