//! For holding the Redis backends to the in-process policy decision by decision: the
//! in-process scope of a Redis scope's algorithm, what both report of a decision, the
//! instant such a comparison starts at, and one check on both.

#![allow(dead_code)]

use ratewarden::redis::{RedisAlgorithm, RedisBackend, RedisPolicy};
use ratewarden::{Policy, PolicyDecision, Scope};

/// Far in the future and aligned to a day, in microseconds since the epoch: every window
/// of a test that starts here starts with the test.
pub const T0: u64 = 4_000_000_000_000_000 / 86_400_000_000 * 86_400_000_000;

/// The in-process scope `name` running `alg`, keyed by `key`.
pub fn in_process_scope<Req: 'static>(
    name: &str,
    alg: RedisAlgorithm,
    key: impl Fn(&Req) -> Option<String> + Send + Sync + 'static,
) -> Scope<Req> {
    match alg {
        RedisAlgorithm::FixedWindow(a) => Scope::keyed(name, a, key),
        RedisAlgorithm::SlidingWindow(a) => Scope::keyed(name, a, key),
        RedisAlgorithm::SlidingLog(a) => Scope::keyed(name, a, key),
        RedisAlgorithm::Gcra(a) => Scope::keyed(name, a, key),
        _ => unreachable!("the four algorithms"),
    }
}

/// What both backends report: allowed, the denying scopes, the retry-after (if
/// `with_retry`) in whole microseconds (rounded up: the server's resolution), and each
/// scope's limit and remaining.
pub type Seen = (bool, Vec<String>, Option<u64>, Vec<(String, u64, u64)>);

pub fn seen(d: &PolicyDecision<'_>, with_retry: bool) -> Seen {
    (
        d.is_allowed(),
        d.denials().map(|s| s.name.to_owned()).collect(),
        d.retry_after()
            .filter(|_| with_retry)
            .map(|r| (r.as_nanos() as u64).div_ceil(1_000)),
        d.scopes()
            .map(|s| {
                (
                    s.name.to_owned(),
                    s.decision.limit(),
                    s.decision.remaining(),
                )
            })
            .collect(),
    )
}

/// What the in-process policy and the Redis policy (given the time: `T0 + at` µs) report,
/// retry-after included, each checking `r` at `cost`: (in-process, Redis).
pub fn seen_on_both<Req: 'static>(
    local: &Policy<Req>,
    remote: &RedisPolicy<Req>,
    redis: &RedisBackend,
    r: &Req,
    cost: u64,
    at: u64,
) -> (Seen, Seen) {
    let mine = seen(&local.check(r, cost).unwrap(), true);
    let theirs = seen(
        &remote
            .check_at_micros(redis, r, cost, true, T0 + at)
            .unwrap(),
        true,
    );
    (mine, theirs)
}
