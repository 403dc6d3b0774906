//! Policy peeks and checks of cost 0 against policy checks: a peek answers what the
//! check would, consumes, stores and sweeps nothing, and reserves no room under a key
//! cap; a new key's slot is given back on every path that does not store it; and a
//! policy stays all or nothing when a key's clone panics.

use std::hash::Hash;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use ratewarden::algorithm::Algorithm;
use ratewarden::{
    CheckError, Clock, Decision, FixedWindow, Gcra, KeyedLimiter, Limiter, Nanos, OnFull, Policy,
    PolicyDecision, PolicyError, Rate, Scope, SlidingLog, SlidingWindow, UnkeyedLimiter,
};

const S: u64 = 1_000_000_000;

/// A policy check of cost 0 answers a new key at the cap as its peek does, and as a
/// keyed check of cost 0 does: from a fresh state, not with `KeyCapReached`.
#[test]
fn a_policy_check_of_cost_zero_at_the_key_cap_answers_like_its_peek() {
    let (clock, _mock) = Clock::mock();
    let users: KeyedLimiter<u64, Gcra> =
        KeyedLimiter::builder(Gcra::new(Rate::per_minute(5).unwrap()))
            .max_keys(1)
            .build();
    let policy = Policy::builder()
        .clock(clock)
        .scope(Scope::with_limiter("user", users, |u: &u64| Some(*u)))
        .build();
    let t = 50 * S;
    assert!(policy.check_at(&1, 1, t).unwrap().is_allowed());
    let peek = policy.peek_at(&2, 0, t).map(|d| d.is_allowed());
    let check = policy.check_at(&2, 0, t).map(|d| d.is_allowed());
    assert_eq!(peek, Ok(true));
    assert_eq!(
        check.map_err(|e| e.error),
        Ok(true),
        "a cost-0 policy check (which consumes and stores nothing) refused at the cap"
    );
}

thread_local! {
    static CLONES_PANIC: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// A key whose `Clone` panics when armed (stands for any `to_owned` that can fail).
#[derive(PartialEq, Eq, Hash, Debug)]
struct Fragile(u64);

impl Clone for Fragile {
    fn clone(&self) -> Self {
        if CLONES_PANIC.with(|p| p.get()) {
            panic!("clone failed");
        }
        Fragile(self.0)
    }
}

/// A policy is all or nothing: a new key is cloned before any scope decides, so a clone
/// that panics leaves no scope charged (were it cloned after the continuation, the later
/// scopes would already have committed).
#[test]
fn a_panicking_key_clone_does_not_leave_a_policy_check_half_applied() {
    let (clock, _mock) = Clock::mock();
    let policy = Policy::builder()
        .clock(clock)
        .scope(Scope::keyed(
            "user",
            Gcra::new(Rate::per_minute(5).unwrap()),
            |r: &u64| Some(Fragile(*r)),
        ))
        .scope(Scope::keyed(
            "org",
            FixedWindow::new(Rate::per_hour(1).unwrap()),
            |_: &u64| Some(0u64),
        ))
        .build();
    CLONES_PANIC.with(|p| p.set(true));
    let r = catch_unwind(AssertUnwindSafe(|| policy.check_at(&7, 1, 100 * S).is_ok()));
    CLONES_PANIC.with(|p| p.set(false));
    assert!(r.is_err(), "the clone panicked");
    let stats = policy.stats();
    assert_eq!(stats.scopes[0].tracked_keys, 0, "user key not stored");
    let d = policy.peek_at(&8, 1, 100 * S).unwrap();
    assert!(
        d.scope("org").unwrap().decision.is_allowed(),
        "the request panicked, yet the org scope was charged for it: {:?}",
        d.scope("org").unwrap().decision
    );
}

/// A limiter shared with the test (forwarding everything, `transact_peek` included), so
/// the test can look at the store a policy scope owns.
struct Shared<L>(Arc<L>);

impl<K: Hash + Eq + Clone + Send + Sync + 'static, A: Algorithm> Limiter<K>
    for Shared<KeyedLimiter<K, A>>
{
    fn clock(&self) -> &Clock {
        self.0.clock()
    }
    fn rate(&self) -> Rate {
        self.0.rate()
    }
    fn check_at(&self, key: &K, cost: u64, now: Nanos) -> Result<Decision, CheckError> {
        self.0.check_at(key, cost, now)
    }
    fn peek_at(&self, key: &K, cost: u64, now: Nanos) -> Result<Decision, CheckError> {
        self.0.peek_at(key, cost, now)
    }
    fn refund_at(&self, key: &K, cost: u64, now: Nanos) {
        self.0.refund_at(key, cost, now)
    }
    fn transact(
        &self,
        key: &K,
        cost: u64,
        now: Nanos,
        limit: Option<u64>,
        then: &mut dyn FnMut(&Decision) -> bool,
    ) -> Result<Decision, CheckError> {
        self.0.transact(key, cost, now, limit, then)
    }
    fn transact_peek(
        &self,
        key: &K,
        cost: u64,
        now: Nanos,
        limit: Option<u64>,
        then: &mut dyn FnMut(&Decision) -> bool,
    ) -> Result<Decision, CheckError> {
        self.0.transact_peek(key, cost, now, limit, then)
    }
    fn tracked_keys(&self) -> usize {
        self.0.len()
    }
}

/// A user limiter that implements only the required methods: `transact_peek` is the
/// trait's default (`transact` with a declining continuation).
struct Defaulted<L>(L);

impl<K: Hash + Eq + Clone + Send + Sync + 'static, A: Algorithm> Limiter<K>
    for Defaulted<KeyedLimiter<K, A>>
{
    fn clock(&self) -> &Clock {
        self.0.clock()
    }
    fn rate(&self) -> Rate {
        self.0.rate()
    }
    fn check_at(&self, key: &K, cost: u64, now: Nanos) -> Result<Decision, CheckError> {
        self.0.check_at(key, cost, now)
    }
    fn peek_at(&self, key: &K, cost: u64, now: Nanos) -> Result<Decision, CheckError> {
        self.0.peek_at(key, cost, now)
    }
    fn refund_at(&self, key: &K, cost: u64, now: Nanos) {
        self.0.refund_at(key, cost, now)
    }
    fn transact(
        &self,
        key: &K,
        cost: u64,
        now: Nanos,
        limit: Option<u64>,
        then: &mut dyn FnMut(&Decision) -> bool,
    ) -> Result<Decision, CheckError> {
        self.0.transact(key, cost, now, limit, then)
    }
    fn tracked_keys(&self) -> usize {
        self.0.len()
    }
}

#[derive(Clone, Copy, Debug)]
struct Req {
    user: u64,
    tier: u64,
}

type Outcome = Result<(bool, Vec<(usize, bool, Decision)>), (String, CheckError)>;

fn outcome(r: Result<PolicyDecision<'_>, PolicyError>) -> Outcome {
    match r {
        Ok(d) => Ok((
            d.is_allowed(),
            d.scopes()
                .map(|s| (s.index, s.shadow, s.decision))
                .collect(),
        )),
        Err(e) => Err((e.scope.to_string(), e.error)),
    }
}

/// How a twin policy holds its keyed limiters.
#[derive(Clone, Copy, PartialEq)]
enum Hold {
    /// `KeyedLimiter` itself: peeks through `KeyedLimiter::transact_peek`.
    Direct,
    /// `Box<dyn Limiter>`: peeks through the forwarding `transact_peek`.
    Boxed,
    /// A user limiter with the default `transact_peek` (`transact` with a declining
    /// continuation).
    Defaulted,
}

/// A policy with an enforcing scope with a per-request limit (limits of 0 fail with
/// `InvalidLimit`), a shadow scope, an unkeyed scope and (if `full`) a scope at its key
/// cap of 2 with `AllowUntracked`. One shard per limiter: twins hash with different
/// random keys, so with several shards their sweeps would run at different times.
fn policy<A: Algorithm>(alg: &A, clock: &Clock, hold: Hold, full: bool) -> Policy<Req> {
    fn scope<A: Algorithm>(
        name: &str,
        hold: Hold,
        l: KeyedLimiter<u64, A>,
        key: impl Fn(&Req) -> Option<u64> + Send + Sync + 'static,
    ) -> Scope<Req> {
        match hold {
            Hold::Direct => Scope::with_limiter(name, l, key),
            Hold::Boxed => Scope::with_limiter(name, Box::new(l) as Box<dyn Limiter<u64>>, key),
            Hold::Defaulted => Scope::with_limiter(name, Defaulted(l), key),
        }
    }
    let w = alg.rate().window();
    let mut b = Policy::builder()
        .clock(clock.clone())
        .scope(
            scope(
                "user",
                hold,
                KeyedLimiter::builder(alg.clone()).shards(1).build(),
                |r| Some(r.user),
            )
            .limit_by(|r: &Req| match r.tier {
                0 => None,
                1 => Some(3),
                2 => Some(12),
                _ => Some(0),
            }),
        )
        .scope(
            scope(
                "shadow",
                hold,
                KeyedLimiter::builder(alg.with_rate(Rate::new(3, w).unwrap()))
                    .shards(1)
                    .build(),
                |r| Some(r.user % 3),
            )
            .shadow(),
        )
        .scope(Scope::unkeyed(
            "all",
            alg.with_rate(Rate::new(40, w).unwrap()),
        ));
    if full {
        b = b.scope(scope(
            "full",
            hold,
            KeyedLimiter::builder(alg.clone())
                .max_keys(2)
                .on_full(OnFull::AllowUntracked)
                .shards(1)
                .build(),
            |r| (r.user % 2 == 0).then_some(r.user),
        ));
    }
    b.build()
}

/// Random requests (costs 0..=3 and above capacity) at increasing times: each policy's
/// peek equals its check at the same instant (after peeks at later times); twins agree.
/// At the key cap the default path may sweep (it reserves through `transact`), so it is
/// compared without the scope at the cap, and is not asked about later times.
fn peek_equals_check<A: Algorithm>(alg: A) {
    let (clock, _mock) = Clock::mock();
    let ps = [
        policy(&alg, &clock, Hold::Direct, true),
        policy(&alg, &clock, Hold::Boxed, true),
        policy(&alg, &clock, Hold::Direct, false),
        policy(&alg, &clock, Hold::Defaulted, false),
    ];
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut rnd = |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let w = alg.rate().window().as_nanos() as u64;
    let mut t = 1_000 * S;
    let (mut allowed, mut denied, mut failed) = (0, 0, 0);
    for step in 0..3_000 {
        t += rnd(w / 7 + 1);
        let req = Req {
            user: rnd(9),
            tier: if rnd(10) == 0 { 3 } else { rnd(3) },
        };
        let cost = if rnd(15) == 0 {
            alg.capacity() + 1
        } else {
            rnd(4)
        };
        let peeks: Vec<Outcome> = ps
            .iter()
            .map(|p| outcome(p.peek_at(&req, cost, t)))
            .collect();
        let later = t + rnd(10 * w);
        for p in &ps[..3] {
            let _ = p.peek_at(&req, cost, later);
        }
        let checks: Vec<Outcome> = ps
            .iter()
            .map(|p| outcome(p.check_at(&req, cost, t)))
            .collect();
        match &checks[0] {
            Ok((true, _)) => allowed += 1,
            Ok((false, _)) => denied += 1,
            Err(_) => failed += 1,
        }
        for i in 0..4 {
            assert_eq!(
                peeks[i], checks[i],
                "policy {i}, step {step}, {req:?}, cost {cost}"
            );
        }
        for (a, b) in [(0, 1), (2, 3)] {
            assert_eq!(peeks[a], peeks[b], "peeks {a} {b}, step {step}");
            assert_eq!(checks[a], checks[b], "checks {a} {b}, step {step}");
        }
        let tracked: Vec<Vec<usize>> = ps
            .iter()
            .map(|p| p.stats().scopes.iter().map(|s| s.tracked_keys).collect())
            .collect();
        assert_eq!(tracked[0], tracked[1], "step {step}");
        assert_eq!(tracked[2], tracked[3], "step {step}");
        assert!(tracked[0][3] <= 2);
    }
    assert!(
        allowed > 100 && denied > 100 && failed > 100,
        "{allowed} {denied} {failed}"
    );
}

#[test]
fn policy_peek_equals_check_and_the_default_path_for_every_algorithm() {
    let r = Rate::per_minute(6).unwrap();
    peek_equals_check(FixedWindow::new(r));
    peek_equals_check(SlidingLog::new(r));
    peek_equals_check(SlidingWindow::new(r));
    peek_equals_check(Gcra::new(r));
    peek_equals_check(Gcra::new(r).with_burst(2).unwrap());
}

/// At the cap with `OnFull::Reject`, a policy peek of a new key reports what
/// `KeyedLimiter::peek` reports (allowed, on a fresh state); a check fails with
/// `KeyCapReached`. (The trait's default path, through `transact`, fails the peek.)
#[test]
fn policy_peek_of_a_new_key_at_the_cap_matches_the_keyed_peek() {
    let (clock, _mock) = Clock::mock();
    let keyed = Arc::new(
        KeyedLimiter::<u64, Gcra>::builder(Gcra::new(Rate::per_minute(5).unwrap()))
            .max_keys(1)
            .build(),
    );
    let policy = Policy::builder()
        .clock(clock.clone())
        .scope(Scope::with_limiter(
            "user",
            Shared(keyed.clone()),
            |u: &u64| Some(*u),
        ))
        .scope(
            Scope::with_limiter(
                "shadow",
                KeyedLimiter::<u64, Gcra>::builder(Gcra::new(Rate::per_minute(5).unwrap()))
                    .max_keys(1)
                    .build(),
                |u: &u64| Some(*u),
            )
            .shadow(),
        )
        .build();
    let t = 50 * S;
    assert!(policy.check_at(&1, 1, t).unwrap().is_allowed());
    let peek = policy.peek_at(&2, 1, t).unwrap();
    assert!(peek.is_allowed());
    assert_eq!(
        peek.scope("user").unwrap().decision,
        keyed.peek_at(&2, 1, t).unwrap()
    );
    assert!(
        peek.scope("shadow").is_some(),
        "shadow at the cap reported by the peek"
    );
    let check = policy.check_at(&2, 1, t).unwrap_err();
    assert_eq!(check.error, CheckError::KeyCapReached { max_keys: 1 });
    assert_eq!(
        keyed.check_at(&2, 1, t).unwrap_err(),
        CheckError::KeyCapReached { max_keys: 1 }
    );
    assert_eq!(keyed.len(), 1);
    assert_eq!(keyed.shard_lens().iter().sum::<usize>(), 1);

    let old = Policy::builder()
        .clock(clock)
        .scope(Scope::with_limiter(
            "user",
            Defaulted(
                KeyedLimiter::<u64, Gcra>::builder(Gcra::new(Rate::per_minute(5).unwrap()))
                    .max_keys(1)
                    .build(),
            ),
            |u: &u64| Some(*u),
        ))
        .build();
    assert!(old.check_at(&1, 1, t).unwrap().is_allowed());
    assert_eq!(
        old.peek_at(&2, 1, t).unwrap_err().error,
        CheckError::KeyCapReached { max_keys: 1 }
    );
}

/// `transact_peek` never writes a state, stores a key or sweeps, whatever its
/// continuation returns, at any time.
#[test]
fn transact_peek_writes_nothing() {
    fn run<A: Algorithm>(alg: A) {
        let limiter: Arc<KeyedLimiter<u64, A>> =
            Arc::new(KeyedLimiter::builder(alg).shards(1).build());
        let boxed: Box<dyn Limiter<u64>> = Box::new(Shared(limiter.clone()));
        let t = 1_000 * S;
        for k in 0..200u64 {
            limiter.check_at(&k, 1 + k % 3, t).unwrap();
        }
        let before: Vec<Decision> = (0..400u64)
            .map(|k| limiter.peek_at(&k, 0, t).unwrap())
            .collect();
        for k in 0..400u64 {
            for dt in [0, S, 3_600 * S, u64::MAX - t] {
                let _ = limiter.transact_peek(&k, 1, t + dt, None, &mut |_| true);
                let _ = limiter.transact_peek(&k, 1, t + dt, Some(1), &mut |_| true);
                let _ = boxed.transact_peek(&k, 1, t + dt, None, &mut |_| true);
            }
        }
        let after: Vec<Decision> = (0..400u64)
            .map(|k| limiter.peek_at(&k, 0, t).unwrap())
            .collect();
        assert_eq!(before, after);
        assert_eq!(limiter.len(), 200);
        assert_eq!(limiter.shard_lens(), vec![200]);
        assert_eq!(limiter.evictions(), 0);
    }
    let r = Rate::per_minute(6).unwrap();
    run(FixedWindow::new(r));
    run(SlidingLog::new(r));
    run(SlidingWindow::new(r));
    run(Gcra::new(r));
}

/// The unkeyed limiter's default `transact_peek` consumes nothing, whatever `then` says.
#[test]
fn unkeyed_transact_peek_consumes_nothing() {
    let (clock, _mock) = Clock::mock();
    let u = UnkeyedLimiter::with_clock(SlidingWindow::new(Rate::per_minute(10).unwrap()), clock);
    let t = 600 * S;
    assert!(u.check_at(10, t).unwrap().is_allowed());
    let d = Limiter::transact_peek(&u, &(), 1, t + 3_600 * S, None, &mut |_| true).unwrap();
    assert!(d.is_allowed());
    assert!(u.check_at(1, t + S).unwrap().is_denied());
}

/// `len` equals the number of stored keys after errors and panics on every path that
/// decides a new key: a panic in a later scope's key extractor, in a `check_with`
/// admission, in the key's clone, an `InvalidLimit` and a `CostExceedsCapacity` in a
/// later scope, at and below the cap.
#[test]
fn len_matches_the_stored_keys_after_errors_and_panics() {
    #[derive(Clone, Copy)]
    struct R {
        user: u64,
        org: u64,
        mode: u8,
    }
    let (clock, _mock) = Clock::mock();
    let users = Arc::new(
        KeyedLimiter::<u64, Gcra>::builder(Gcra::new(Rate::per_minute(5).unwrap()))
            .max_keys(3)
            .shards(2)
            .build(),
    );
    let frag = Arc::new(
        KeyedLimiter::<Fragile, Gcra>::builder(Gcra::new(Rate::per_minute(5).unwrap()))
            .max_keys(3)
            .build(),
    );
    let policy = Policy::builder()
        .clock(clock)
        .scope(Scope::with_limiter(
            "user",
            Shared(users.clone()),
            |r: &R| Some(r.user),
        ))
        .scope(Scope::with_limiter(
            "frag",
            Shared(frag.clone()),
            |r: &R| (r.mode == 4).then_some(Fragile(r.user)),
        ))
        .scope(
            Scope::keyed(
                "org",
                FixedWindow::new(Rate::per_hour(4).unwrap()),
                |r: &R| {
                    if r.mode == 1 {
                        panic!("extractor bug");
                    }
                    Some(r.org)
                },
            )
            .limit_by(|r: &R| (r.mode == 2).then_some(0)),
        )
        .build();
    let mut rng = 12345u64;
    for i in 0..2_000u64 {
        rng = rng
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let r = R {
            user: (rng >> 33) % 8,
            org: (rng >> 40) % 3,
            mode: ((rng >> 50) % 7) as u8,
        };
        let t = 100 * S + i * S / 10;
        let cost = if r.mode == 3 { 50 } else { 1 };
        CLONES_PANIC.with(|p| p.set(r.mode == 4 && (rng >> 20) % 2 == 0));
        let _ = catch_unwind(AssertUnwindSafe(|| match r.mode {
            5 => {
                let _ = policy.check_with(&r, cost, || -> Result<(), ()> {
                    if (rng >> 10) % 2 == 0 {
                        panic!("admission bug")
                    }
                    Ok(())
                });
            }
            6 => {
                let _ = policy.peek_at(&r, cost, t + 3_600 * S);
            }
            _ => {
                let _ = policy.check_at(&r, cost, t);
            }
        }));
        CLONES_PANIC.with(|p| p.set(false));
        assert_eq!(
            users.len(),
            users.shard_lens().iter().sum::<usize>(),
            "step {i}"
        );
        assert_eq!(
            frag.len(),
            frag.shard_lens().iter().sum::<usize>(),
            "step {i}"
        );
        assert!(users.len() <= 3 && frag.len() <= 3);
    }
}

/// Many threads mixing policy checks, policy peeks (also at later times) and keyed peeks
/// on keys at the cap: the store never holds more than `max_keys` keys, `len` matches
/// them, nothing deadlocks, and no key nor the shared scope admits beyond its quota.
#[test]
fn concurrent_checks_and_peeks_at_the_cap_respect_the_cap_and_the_quotas() {
    for round in 0..40u64 {
        let (clock, _mock) = Clock::mock();
        let users = Arc::new(
            KeyedLimiter::<u64, FixedWindow>::builder(FixedWindow::new(Rate::per_hour(3).unwrap()))
                .max_keys(8)
                .shards(if round % 2 == 0 { 1 } else { 64 })
                .on_full(if round % 4 < 2 {
                    OnFull::Reject
                } else {
                    OnFull::AllowUntracked
                })
                .build(),
        );
        let orgs = Arc::new(
            KeyedLimiter::<u64, Gcra>::builder(Gcra::new(Rate::per_hour(20).unwrap()))
                .max_keys(2)
                .shards(1)
                .build(),
        );
        let policy = Policy::builder()
            .clock(clock)
            .scope(Scope::with_limiter(
                "user",
                Shared(users.clone()),
                |r: &(u64, u64)| Some(r.0),
            ))
            .scope(Scope::with_limiter(
                "org",
                Shared(orgs.clone()),
                |r: &(u64, u64)| Some(r.1),
            ))
            .scope(Scope::unkeyed(
                "all",
                SlidingLog::new(Rate::per_hour(30).unwrap()),
            ))
            .build();
        let per_user: Vec<AtomicU64> = (0..32).map(|_| AtomicU64::new(0)).collect();
        let per_org: Vec<AtomicU64> = (0..3).map(|_| AtomicU64::new(0)).collect();
        let total = AtomicU64::new(0);
        let refused = AtomicU64::new(0);
        let t = 7_200 * S; // on the hour
        std::thread::scope(|s| {
            for th in 0..4u64 {
                let (policy, users, per_user, per_org, total, refused) =
                    (&policy, &users, &per_user, &per_org, &total, &refused);
                s.spawn(move || {
                    let mut x = th * 7919 + round;
                    for i in 0..3_000u64 {
                        x = x
                            .wrapping_mul(6364136223846793005)
                            .wrapping_add(1442695040888963407);
                        let req = ((x >> 33) % 32, (x >> 45) % 3);
                        match i % 4 {
                            0 | 1 => match policy.check_at(&req, 1, t + i) {
                                Ok(d) if d.is_allowed() => {
                                    per_user[req.0 as usize].fetch_add(1, Ordering::Relaxed);
                                    per_org[req.1 as usize].fetch_add(1, Ordering::Relaxed);
                                    total.fetch_add(1, Ordering::Relaxed);
                                }
                                Ok(_) => {}
                                Err(e) => {
                                    assert!(matches!(e.error, CheckError::KeyCapReached { .. }));
                                    refused.fetch_add(1, Ordering::Relaxed);
                                }
                            },
                            2 => {
                                let _ =
                                    policy.peek_at(&req, 1, t + i + (x >> 20) % (4 * 3_600 * S));
                            }
                            _ => {
                                let _ = users.peek_at(&req.0, 1, t + i);
                                let n: usize = users.shard_lens().iter().sum();
                                assert!(n <= 8, "{n} keys stored");
                            }
                        }
                    }
                });
            }
        });
        let stored: usize = users.shard_lens().iter().sum();
        assert!(stored <= 8);
        assert_eq!(users.len(), stored);
        assert_eq!(orgs.len(), orgs.shard_lens().iter().sum::<usize>());
        assert!(orgs.len() <= 2);
        if round % 4 < 2 {
            for (u, n) in per_user.iter().enumerate() {
                assert!(n.load(Ordering::Relaxed) <= 3, "user {u}");
            }
        }
        // Org 2 never fits under the org cap of 2 once 0 and 1 are stored (or vice versa):
        // each stored org admits at most 20.
        let org_total: u64 = per_org.iter().map(|n| n.load(Ordering::Relaxed)).sum();
        assert!(org_total <= 2 * 20);
        assert!(total.load(Ordering::Relaxed) <= 30);
        assert_eq!(policy.stats().allowed, total.load(Ordering::Relaxed));
        assert!(refused.load(Ordering::Relaxed) > 0, "the caps were reached");
        assert!(total.load(Ordering::Relaxed) > 0);
    }
}

/// `CalendarLimiter`'s `transact_peek` (its own override) against its check, with
/// per-request limits, per-key anchors, and a key cap (`Reject`): a peek equals the check
/// at the same instant, except that a new key at the cap is answered from a fresh state
/// where the check fails with `KeyCapReached`; nothing is stored by a peek.
#[test]
fn calendar_policy_peek_equals_check() {
    use ratewarden::{CalendarLimiter, CalendarQuota, CycleAnchor};
    let (clock, _mock) = Clock::mock();
    let inner = KeyedLimiter::<u64, CalendarQuota>::builder(CalendarQuota::monthly(5).unwrap())
        .max_keys(3)
        .shards(1)
        .build();
    let anchors = [
        CycleAnchor::new(31, 9, 30, 0).unwrap(),
        CycleAnchor::new(15, 0, 0, 0).unwrap(),
    ];
    let policy = Policy::builder()
        .clock(clock)
        .scope(
            Scope::with_limiter(
                "videos",
                CalendarLimiter::from_keyed(inner),
                move |r: &Req| Some((r.user, anchors[(r.user % 2) as usize])),
            )
            .limit_by(|r: &Req| match r.tier {
                0 => None,
                1 => Some(2),
                _ => Some(0),
            }),
        )
        .build();
    let mut x = 77u64;
    let mut t = 1_709_251_200 * S; // 2024-03-01
    let (mut capped, mut same) = (0, 0);
    for step in 0..3_000 {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        t += (x >> 20) % (3 * 86_400 * S);
        let req = Req {
            user: (x >> 40) % 6,
            tier: (x >> 50) % 4 % 3,
        };
        let cost = (x >> 55) % 7;
        let before = policy.stats().scopes[0].tracked_keys;
        let peek = outcome(policy.peek_at(&req, cost, t));
        let _ = policy.peek_at(&req, cost, t + (x >> 8) % (400 * 86_400 * S));
        assert_eq!(
            policy.stats().scopes[0].tracked_keys,
            before,
            "a peek stored a key"
        );
        let check = outcome(policy.check_at(&req, cost, t));
        match &check {
            Err((_, CheckError::KeyCapReached { .. })) => {
                capped += 1;
                assert!(peek.is_ok(), "step {step}: {peek:?}");
            }
            _ => {
                same += 1;
                assert_eq!(peek, check, "step {step}, {req:?}, cost {cost}");
            }
        }
    }
    assert!(capped > 0 && same > 1_000, "{capped} {same}");
}
