//! [`RedisPolicyBuilder`]: a policy's name, key prefix, scopes, hash tag and failure mode,
//! validated (names, rates, cluster slots) when it is built.

use std::sync::Arc;

use super::policy::{Built, HashTag};
use super::scope::RedisScope;
use super::{FailureMode, RedisBuildError, RedisPolicy};

/// Builds a [`RedisPolicy`]; see [`RedisPolicy::builder`].
#[must_use]
pub struct RedisPolicyBuilder<Req> {
    pub(super) name: Arc<str>,
    pub(super) prefix: Arc<str>,
    pub(super) scopes: Vec<RedisScope<Req>>,
    pub(super) tag: HashTag<Req>,
    pub(super) failure: FailureMode,
    pub(super) cluster: bool,
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
