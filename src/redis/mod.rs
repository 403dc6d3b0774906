//! The same policies on Redis: limits shared by every instance of a service.
//!
//! Enabled by the `redis` feature (which needs Rust 1.88 or later). A [`RedisPolicy`] is
//! built like an in-process [`Policy`](crate::Policy), from [`RedisScope`]s that each
//! have a name, one of the four algorithms ([`RedisAlgorithm`]), a key taken from the
//! request, an optional per-request limit and an enforcing or shadow mode. Checks go
//! through a [`RedisBackend`] (blocking) or an [`AsyncRedisBackend`] (tokio), each one
//! connection (to one server, or to every master of a cluster) shared by all concurrent
//! checks.
//!
//! **Semantics.** One Lua script per check reads the server's clock (`TIME`, so every
//! application instance agrees), decides every applicable scope, and writes only if the
//! request is allowed: a denial spends nothing anywhere and reports the longest
//! retry-after, exactly as in-process. The answer is a [`RedisDecision`], which derefs
//! to the same [`PolicyDecision`](crate::PolicyDecision), so the header layer works
//! unchanged. Arithmetic is on whole microseconds (the server clock's resolution), exact
//! in the script's doubles: rates that would need more than 2^52 are rejected when the
//! policy is built. Every key written expires once its state equals a fresh key's.
//! Sliding-log entries are unique even at the same timestamp.
//!
//! **Redis Cluster.** Key names carry the policy's hash tag
//! ([`hash_tag`](RedisPolicyBuilder::hash_tag), e.g. the organization), so all keys of
//! one check share a slot; [`cluster`](RedisPolicyBuilder::cluster) makes
//! [`build`](RedisPolicyBuilder::build) reject a policy whose keys could not, saying why
//! and what to change. [`RedisBackend::open_cluster`] and
//! [`AsyncRedisBackend::open_cluster`] take the addresses of some of the cluster's nodes
//! (one reachable node is enough), discover the others, and send each check to the
//! master serving its slot, following `MOVED` and `ASK` redirections after a resharding
//! or a failover, and reloading the script on a node that lost it; a check that timed
//! out or lost its connection is never sent again, since it may have run. Different tags
//! spread the checks over every master, each check still one atomic script on one node.
//! While a slot migrates, Redis itself refuses a check of several keys that are not all
//! on one side of the migration (`TRYAGAIN`, typically a key not created yet, such as a
//! new user's), and a cluster that lost a master refuses every check of its slots until
//! a replica takes over (`CLUSTERDOWN`). Such a check ran nowhere, so it is sent again
//! after a pause (2 ms, doubling up to 50 ms) while the call's deadline allows: a slot
//! handed over within the deadline serves it. Refused for the whole deadline, it is a
//! fault of the store ([`RedisCheckError::Server`], with Redis's answer), answered by
//! the failure mode, and spends nothing.
//! A backend opened with `open` on a single cluster node fails the checks whose slot
//! another node serves with [`RedisCheckError::WrongNode`], whatever the failure mode.
//!
//! ```no_run
//! use ratewarden::redis::{RedisBackend, RedisPolicy, RedisScope};
//! use ratewarden::Gcra;
//!
//! struct Req {
//!     org: String,
//!     user: String,
//! }
//!
//! let policy = RedisPolicy::builder()
//!     .name("api")
//!     .hash_tag(|r: &Req| Some(r.org.clone()))
//!     .cluster()
//!     .scope(RedisScope::keyed("per-user", Gcra::new("10/s".parse()?), |r: &Req| {
//!         Some(r.user.clone())
//!     }))
//!     .build()?;
//! let redis = RedisBackend::open_cluster(["redis://10.0.0.1:6379", "redis://10.0.0.2:6379"])?;
//! let req = Req {
//!     org: "acme".into(),
//!     user: "alice".into(),
//! };
//! if policy.check(&redis, &req, 1)?.is_allowed() {
//!     // serve the request
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! **Faults.** Each call has a deadline ([`DEFAULT_DEADLINE`], configurable). When Redis
//! times out, is unreachable or fails, the policy's [`FailureMode`] returns the error,
//! allows, or denies with a configured retry-after; the decision records the fault
//! ([`RedisDecision::fault`]). Connections are remade and the script reloaded (after a
//! restart or `SCRIPT FLUSH`) by themselves.

mod async_backend;
mod backend;
mod builder;
mod cluster;
mod decision;
mod error;
mod policy;
mod prepared;
mod retry;
mod scope;
mod script;

pub use async_backend::AsyncRedisBackend;
pub use backend::{RedisBackend, DEFAULT_DEADLINE};
pub use builder::RedisPolicyBuilder;
pub use decision::{FailureMode, RedisDecision};
pub use error::{RedisBuildError, RedisCheckError};
pub use policy::RedisPolicy;
pub use scope::{RedisAlgorithm, RedisScope};
