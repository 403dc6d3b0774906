//! The same policies on Redis: limits shared by every instance of a service.
//!
//! Enabled by the `redis` feature (which needs Rust 1.88 or later). A [`RedisPolicy`] is
//! built like an in-process [`Policy`](crate::Policy), from [`RedisScope`]s that each
//! have a name, one of the four algorithms ([`RedisAlgorithm`]), a key taken from the
//! request, an optional per-request limit and an enforcing or shadow mode. Checks go
//! through a [`RedisBackend`] (blocking) or an [`AsyncRedisBackend`] (tokio), each one
//! connection shared by all concurrent checks.
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
//! and what to change.
//!
//! **Faults.** Each call has a deadline ([`DEFAULT_DEADLINE`], configurable). When Redis
//! times out, is unreachable or fails, the policy's [`FailureMode`] returns the error,
//! allows, or denies with a configured retry-after; the decision records the fault
//! ([`RedisDecision::fault`]). Connections are remade and the script reloaded (after a
//! restart or `SCRIPT FLUSH`) by themselves.

mod backend;
mod error;
mod policy;
mod scope;

pub use backend::{AsyncRedisBackend, RedisBackend, DEFAULT_DEADLINE};
pub use error::{RedisBuildError, RedisCheckError};
pub use policy::{FailureMode, RedisDecision, RedisPolicy, RedisPolicyBuilder};
pub use scope::{RedisAlgorithm, RedisScope};
