//! Errors of the Redis backend: building a policy ([`RedisBuildError`]) and checking a
//! request ([`RedisCheckError`]).

use std::sync::Arc;
use std::time::Duration;

use crate::{PolicyError, Rate};

/// Why a [`RedisPolicy`](super::RedisPolicy) cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RedisBuildError {
    /// Two scopes share a name, so they would share keys.
    #[error("two scopes are named {name:?}; scope names must be unique within a policy")]
    DuplicateScope {
        /// The repeated name.
        name: Arc<str>,
    },
    /// A policy name, key prefix or scope name that cannot be part of a key name.
    #[error("{what} {name:?} cannot be part of a key name: {reason}")]
    BadName {
        /// What was named: "scope", "policy" or "key prefix".
        what: &'static str,
        /// The name.
        name: Arc<str>,
        /// Why.
        reason: &'static str,
    },
    /// A scope's rate cannot be computed exactly by the server-side script.
    #[error("scope {scope:?}: rate {rate} cannot run on Redis: {reason}")]
    Unrepresentable {
        /// The scope.
        scope: Arc<str>,
        /// Its rate.
        rate: Rate,
        /// Why, and what to change.
        reason: &'static str,
    },
    /// A policy for Redis Cluster whose scopes have no hash tag in common.
    #[error("the keys of one check of this policy may lie in different cluster slots, since the policy has no hash tag; give it one with `hash_tag` (a value every scope's key belongs to, e.g. the organization) or `fixed_hash_tag`, or split it into policies of one scope each")]
    NoHashTag,
    /// A policy for Redis Cluster with a per-request hash tag and a global scope.
    #[error("scope {scope:?} is global (shared by every hash tag), so its key cannot share a cluster slot with each request's hash-tagged keys; key it within the tag (remove `global`), use `fixed_hash_tag` (one slot for the whole policy), or check it in a policy of its own")]
    GlobalScope {
        /// The global scope.
        scope: Arc<str>,
    },
}

/// Why a check against Redis gave no decision.
///
/// [`Timeout`](RedisCheckError::Timeout), [`Connection`](RedisCheckError::Connection)
/// and [`Server`](RedisCheckError::Server) are faults of the store: a policy's
/// [`FailureMode`](super::FailureMode) decides whether they are returned or answered with
/// an allow or a deny (and then recorded in the decision). The others are errors of the
/// request or of the data and are always returned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RedisCheckError {
    /// A scope refused the request's cost or per-request limit, as in-process.
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// The request's hash tag was `None` or empty in a policy that needs one.
    #[error("the policy's hash tag function gave no tag for this request; every request needs one so that its keys share a cluster slot")]
    NoHashTag,
    /// A key holds a value of another type (something else wrote it).
    #[error("a rate-limit key holds a value of the wrong type (another program uses the same key names; change the key prefix): {detail}")]
    WrongType {
        /// The server's message.
        detail: Arc<str>,
    },
    /// No answer within the deadline.
    #[error("no answer from Redis within the deadline of {deadline:?}")]
    Timeout {
        /// The deadline.
        deadline: Duration,
    },
    /// The connection could not be made or broke.
    #[error("cannot reach Redis: {detail}")]
    Connection {
        /// What failed.
        detail: Arc<str>,
    },
    /// An [`AsyncRedisBackend`](super::AsyncRedisBackend) was opened outside a tokio
    /// runtime.
    #[error("an async Redis backend must be opened within a tokio runtime")]
    NoRuntime,
    /// A backend opened on one server reached a Redis Cluster node that does not serve
    /// the check's slot (the node answered `MOVED` or `ASK`). Open the backend with
    /// `open_cluster` ([`RedisBackend::open_cluster`](super::RedisBackend::open_cluster),
    /// [`AsyncRedisBackend::open_cluster`](super::AsyncRedisBackend::open_cluster)),
    /// which follows redirections. Not a fault: always returned, since answering it by
    /// the failure mode would hide a misconfiguration.
    #[error("the Redis node does not serve slot {slot} of this check (it is served by {node}): the server is part of a Redis Cluster; open the backend with `open_cluster`")]
    WrongNode {
        /// The check's slot.
        slot: u16,
        /// The node that serves it, as the server named it (`host:port`).
        node: Arc<str>,
    },
    /// The server answered with an error, or with a reply the script cannot give.
    #[error("Redis failed the check: {detail}")]
    Server {
        /// The server's message.
        detail: Arc<str>,
    },
}

impl RedisCheckError {
    /// Whether this is a fault of the store (timeout, connection, server error), which a
    /// [`FailureMode`](super::FailureMode) may answer.
    pub fn is_fault(&self) -> bool {
        matches!(
            self,
            RedisCheckError::Timeout { .. }
                | RedisCheckError::Connection { .. }
                | RedisCheckError::Server { .. }
        )
    }

    pub(crate) fn from_redis(err: &redis::RedisError, deadline: Duration) -> RedisCheckError {
        let detail = || Arc::from(err.to_string());
        if err.is_timeout() {
            RedisCheckError::Timeout { deadline }
        } else if let Some((node, slot)) = err.redirect_node() {
            RedisCheckError::WrongNode {
                slot,
                node: Arc::from(node),
            }
        } else if err.code() == Some("WRONGTYPE") || err.to_string().contains("WRONGTYPE") {
            RedisCheckError::WrongType { detail: detail() }
        } else if err.is_io_error()
            || err.is_connection_refusal()
            || err.is_connection_dropped()
            || err.is_unrecoverable_error()
        {
            RedisCheckError::Connection { detail: detail() }
        } else {
            RedisCheckError::Server { detail: detail() }
        }
    }

    /// [`from_redis`](Self::from_redis) for a cluster connection, which follows
    /// redirections itself: one still redirected after its retries (a resharding in
    /// progress) is a fault of the store, not a misconfiguration.
    pub(crate) fn from_cluster(err: &redis::RedisError, deadline: Duration) -> RedisCheckError {
        match RedisCheckError::from_redis(err, deadline) {
            RedisCheckError::WrongNode { .. } => RedisCheckError::Server {
                detail: Arc::from(err.to_string()),
            },
            other => other,
        }
    }
}

pub(super) fn connection_error(err: &redis::RedisError) -> RedisCheckError {
    RedisCheckError::Connection {
        detail: Arc::from(err.to_string()),
    }
}
