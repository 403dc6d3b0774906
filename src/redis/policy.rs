//! [`RedisPolicy`]: the in-process [`Policy`](crate::Policy)'s semantics, checked by one
//! server-side script per request.

use std::fmt;
use std::sync::Arc;

use super::scope::{Params, RedisScope};
use super::{
    AsyncRedisBackend, FailureMode, RedisBackend, RedisCheckError, RedisDecision,
    RedisPolicyBuilder,
};

/// What the script does (its first argument).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Mode {
    Peek = 0,
    Check = 1,
    Refund = 2,
}

type TagFn<Req> = Box<dyn Fn(&Req) -> Option<String> + Send + Sync>;

pub(super) enum HashTag<Req> {
    None,
    Fixed(Arc<str>),
    PerRequest(TagFn<Req>),
}

pub(super) struct Built<Req> {
    pub(super) scope: RedisScope<Req>,
    pub(super) params: Params,
    /// `<prefix>:<policy>:<scope>`.
    pub(super) stem: String,
}

/// A policy of named scopes checked on Redis as one, all or nothing, with the semantics
/// of the in-process [`Policy`](crate::Policy): allowed iff every applicable enforcing
/// scope allows; a denial spends nothing anywhere and reports the longest retry-after.
///
/// One Lua script per check reads the server's clock (`TIME`), decides every scope, and
/// only if all allow writes them; every key it writes expires once its state is that of a
/// fresh key. Time is whole microseconds; see [`RedisAlgorithm`](crate::redis::RedisAlgorithm)
/// for the few rates this rules out.
///
/// Key names are `{<tag>}:<prefix>:<policy>:<scope>:<algorithm>[:<key>]` (the algorithm as
/// [`RedisAlgorithm::key_tag`](crate::redis::RedisAlgorithm::key_tag) names it), with the
/// hash tag only when the policy has one (and not for [`global`](RedisScope::global)
/// scopes under a per-request tag). A policy meant for Redis Cluster is built with
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
    pub(super) names: Box<[Arc<str>]>,
    pub(super) scopes: Box<[Built<Req>]>,
    pub(super) tag: HashTag<Req>,
    pub(super) failure: FailureMode,
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
}

impl<Req> fmt::Debug for RedisPolicy<Req> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisPolicy")
            .field("scopes", &self.names)
            .field("failure", &self.failure)
            .finish_non_exhaustive()
    }
}
