//! One call of the script for a policy: the request turned into key names and arguments
//! ([`Prepared`]), and the reply, or a fault, turned into a [`RedisDecision`].

use std::sync::Arc;

use super::policy::{Built, HashTag, Mode};
use super::scope::{Params, RedisAlgorithm};
use super::{FailureMode, RedisCheckError, RedisDecision, RedisPolicy};
use crate::policy::Entries;
use crate::{CheckError, Decision, PolicyDecision, PolicyError, Rate};

/// A call to Redis, ready to send: keys and arguments of the script, and where each
/// reply entry goes.
pub(crate) struct Prepared {
    pub(crate) keys: Vec<String>,
    pub(crate) args: Vec<u64>,
    /// Per applicable scope: its index, shadow flag and window in nanoseconds.
    slots: Vec<(usize, bool, u64, u64)>,
}

impl<Req: 'static> RedisPolicy<Req> {
    pub(super) fn empty(&self) -> RedisDecision<'_> {
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
    pub(super) fn prepare(
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

    pub(super) fn finish(
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
