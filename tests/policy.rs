//! `Policy` against a reference model, under threads, and its edge cases.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use proptest::prelude::*;
use ratewarden::algorithm::Algorithm;
use ratewarden::{
    Anchor, CheckError, Clock, Decision, FixedWindow, Gcra, KeyedLimiter, Limiter, Policy,
    PolicyError, Rate, Scope, SlidingLog, SlidingWindow,
};

/// A request: two key parts and a mask of which scopes apply.
#[derive(Debug, Clone, Copy)]
struct Req {
    a: u16,
    b: u16,
    applies: u8,
}

#[derive(Debug, Clone, Copy)]
enum KeyOf {
    A,
    B,
    Both,
}

impl KeyOf {
    fn key(self, r: &Req) -> u32 {
        match self {
            KeyOf::A => r.a as u32,
            KeyOf::B => r.b as u32 + 1_000,
            KeyOf::Both => (r.a as u32) << 16 | r.b as u32,
        }
    }
}

#[derive(Debug, Clone)]
struct ScopeSpec {
    alg: u8,
    count: u64,
    window: u64,
    key: KeyOf,
    shadow: bool,
    /// The scope applies to requests whose mask has this bit.
    bit: u8,
    /// Built with `Scope::keyed` (the policy calls the keyed limiter directly) rather
    /// than `Scope::with_limiter` over a boxed `Limiter`.
    direct: bool,
}

/// Something made from a scope's algorithm, whichever it is.
trait FromAlg {
    type Out;
    fn make<A: Algorithm>(self, alg: A) -> Self::Out;
}

/// `make` applied to `spec`'s algorithm and rate.
fn with_alg<M: FromAlg>(spec: &ScopeSpec, make: M) -> M::Out {
    let rate = Rate::new(spec.count, Duration::from_nanos(spec.window)).unwrap();
    match spec.alg % 5 {
        0 => make.make(FixedWindow::new(rate)),
        1 => make.make(FixedWindow::new(rate).anchored(Anchor::FirstRequest)),
        2 => make.make(SlidingLog::new(rate)),
        3 => make.make(SlidingWindow::new(rate)),
        _ => make.make(Gcra::new(rate)),
    }
}

/// A keyed limiter on the given clock, boxed.
struct Boxed<'c>(&'c Clock);

impl FromAlg for Boxed<'_> {
    type Out = Box<dyn Limiter<u32>>;
    fn make<A: Algorithm>(self, alg: A) -> Self::Out {
        Box::new(KeyedLimiter::<u32, A>::with_clock(alg, self.0.clone()))
    }
}

/// A `Scope::keyed` scope with the given name and key function.
struct Direct<F>(String, F);

impl<F: Fn(&Req) -> Option<u32> + Send + Sync + 'static> FromAlg for Direct<F> {
    type Out = Scope<Req>;
    fn make<A: Algorithm>(self, alg: A) -> Self::Out {
        Scope::keyed(&self.0, alg, self.1)
    }
}

fn limiter_for(spec: &ScopeSpec, clock: &Clock) -> Box<dyn Limiter<u32>> {
    with_alg(spec, Boxed(clock))
}

struct Model {
    specs: Vec<ScopeSpec>,
    limiters: Vec<Box<dyn Limiter<u32>>>,
}

/// What a policy check should return: per applicable scope its decision, then the
/// overall verdict; commits only when every enforcing scope allows.
type Expected = Result<(bool, Vec<(usize, Decision)>), (usize, CheckError)>;

impl Model {
    fn check(&self, req: &Req, cost: u64, now: u64, commit: bool) -> Expected {
        let mut seen = Vec::new();
        for (i, (spec, limiter)) in self.specs.iter().zip(&self.limiters).enumerate() {
            if req.applies & (1 << spec.bit) == 0 {
                continue;
            }
            match limiter.peek_at(&spec.key.key(req), cost, now) {
                Ok(d) => seen.push((i, d)),
                Err(_) if spec.shadow => {}
                Err(e) => return Err((i, e)),
            }
        }
        let allowed = seen
            .iter()
            .all(|(i, d)| self.specs[*i].shadow || d.is_allowed());
        if !allowed {
            // nothing is spent: scopes that would allow report what really remains
            for (i, d) in seen.iter_mut() {
                if d.is_allowed() {
                    let spec = &self.specs[*i];
                    *d = self.limiters[*i]
                        .peek_at(&spec.key.key(req), 0, now)
                        .unwrap();
                }
            }
        }
        if allowed && commit {
            for (i, d) in &seen {
                if d.is_allowed() {
                    let spec = &self.specs[*i];
                    let again = self.limiters[*i]
                        .check_at(&spec.key.key(req), cost, now)
                        .unwrap();
                    assert_eq!(&again, d);
                }
            }
        }
        Ok((allowed, seen))
    }
}

fn build(specs: &[ScopeSpec], clock: Clock) -> Policy<Req> {
    let mut builder = Policy::builder().clock(clock.clone());
    for (i, spec) in specs.iter().enumerate() {
        let (key, bit) = (spec.key, spec.bit);
        let applies = move |r: &Req| (r.applies & (1 << bit) != 0).then(|| key.key(r));
        let name = format!("s{i}");
        let mut scope = match spec.direct {
            true => with_alg(spec, Direct(name, applies)),
            false => Scope::with_limiter(&name, limiter_for(spec, &clock), applies),
        };
        if spec.shadow {
            scope = scope.shadow();
        }
        builder = builder.scope(scope);
    }
    builder.build()
}

fn spec_strategy() -> impl Strategy<Value = ScopeSpec> {
    (
        0u8..5,
        1u64..6,
        10u64..200,
        0u8..3,
        prop::bool::weighted(0.2),
        0u8..3,
        any::<bool>(),
    )
        .prop_map(|(alg, count, window, key, shadow, bit, direct)| ScopeSpec {
            alg,
            count,
            window,
            key: [KeyOf::A, KeyOf::B, KeyOf::Both][key as usize],
            shadow,
            bit,
            direct,
        })
}

#[derive(Debug, Clone)]
enum Op {
    Advance(u64),
    Check(Req, u64),
    Peek(Req, u64),
}

fn op_strategy() -> impl Strategy<Value = Op> {
    let req = (0u16..3, 0u16..3, 0u8..8).prop_map(|(a, b, applies)| Req { a, b, applies });
    prop_oneof![
        1 => (0u64..120).prop_map(Op::Advance),
        4 => (req.clone(), 0u64..7).prop_map(|(r, c)| Op::Check(r, c)),
        1 => (req, 0u64..7).prop_map(|(r, c)| Op::Peek(r, c)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn policy_equals_check_all_then_commit(
        specs in prop::collection::vec(spec_strategy(), 2..=11),
        ops in prop::collection::vec(op_strategy(), 1..150),
    ) {
        let (clock, mock) = Clock::mock();
        let policy = build(&specs, clock.clone());
        let model = Model {
            limiters: specs.iter().map(|s| limiter_for(s, &clock)).collect(),
            specs: specs.clone(),
        };
        for op in ops {
            let (req, cost, commit) = match op {
                Op::Advance(n) => {
                    mock.increment(Duration::from_nanos(n));
                    continue;
                }
                Op::Check(r, c) => (r, c, true),
                Op::Peek(r, c) => (r, c, false),
            };
            let now = clock.now();
            let expected = model.check(&req, cost, now, commit);
            let got = if commit { policy.check_at(&req, cost, now) } else { policy.peek_at(&req, cost, now) };
            match (expected, got) {
                (Ok((allowed, seen)), Ok(d)) => {
                    prop_assert_eq!(d.is_allowed(), allowed);
                    let got: Vec<(usize, Decision)> = d.scopes().map(|s| (s.index, s.decision)).collect();
                    prop_assert_eq!(&got, &seen);
                    let longest = seen
                        .iter()
                        .filter(|(i, d)| !specs[*i].shadow && d.is_denied())
                        .filter_map(|(_, d)| d.retry_after())
                        .max();
                    prop_assert_eq!(d.retry_after(), longest);
                }
                (Err((i, e)), Err(PolicyError { scope, error })) => {
                    prop_assert_eq!(&*scope, format!("s{i}"));
                    prop_assert_eq!(error, e);
                }
                (e, g) => prop_assert!(false, "model {:?} vs policy {:?}", e, g.map(|d| d.is_allowed())),
            }
        }
    }
}

#[test]
fn threads_never_overspend_and_denials_leak_nothing() {
    let (clock, _mock) = Clock::mock(); // frozen: every admitted unit stays counted
    #[derive(Clone, Copy)]
    struct R {
        org: u8,
        video: u8,
    }
    let policy = Arc::new(
        Policy::builder()
            .clock(clock)
            .scope(Scope::keyed(
                "org_burst",
                Gcra::new("40/10s".parse().unwrap()),
                |r: &R| Some(r.org),
            ))
            .scope(Scope::keyed(
                "org",
                SlidingLog::new("100/min".parse().unwrap()),
                |r: &R| Some(r.org),
            ))
            .scope(Scope::keyed(
                "video",
                FixedWindow::new("15/min".parse().unwrap()),
                |r: &R| Some((r.org, r.video)),
            ))
            .scope(Scope::keyed(
                "global",
                SlidingWindow::new("150/min".parse().unwrap()),
                |_: &R| Some(()),
            ))
            .build(),
    );
    let admitted: Arc<Mutex<HashMap<(&'static str, u16), u64>>> = Arc::default();
    let total = Arc::new(AtomicU64::new(0));
    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            let (policy, admitted, total) = (policy.clone(), admitted.clone(), total.clone());
            std::thread::spawn(move || {
                let mut local: HashMap<(&'static str, u16), u64> = HashMap::new();
                for i in 0..5_000u64 {
                    let r = R {
                        org: ((i + t) % 3) as u8,
                        video: ((i * 7 + t) % 5) as u8,
                    };
                    let cost = 1 + (i % 3);
                    let d = policy.check(&r, cost).unwrap();
                    if d.is_allowed() {
                        total.fetch_add(cost, Ordering::Relaxed);
                        *local.entry(("org", r.org as u16)).or_default() += cost;
                        *local
                            .entry(("video", (r.org as u16) << 8 | r.video as u16))
                            .or_default() += cost;
                        *local.entry(("global", 0)).or_default() += cost;
                    }
                }
                let mut all = admitted.lock().unwrap();
                for (k, v) in local {
                    *all.entry(k).or_default() += v;
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let admitted = admitted.lock().unwrap();
    let total = total.load(Ordering::Relaxed);
    assert!(total <= 150, "global admitted {total}");
    let by_org: u64 = (0..3u16)
        .map(|o| admitted.get(&("org", o)).copied().unwrap_or(0))
        .sum();
    assert_eq!(by_org, total);
    // 20 000 requests against 3 × 40 units of burst: every organization ran out.
    assert!(total > 110, "{total}");
    assert_eq!(admitted[&("global", 0)], total);
    // What each scope counts equals what the decisions admitted: nothing leaked.
    for org in 0..3u8 {
        let used_org = admitted.get(&("org", org as u16)).copied().unwrap_or(0);
        assert!(used_org <= 40, "org {org}: {used_org}");
        let d = policy.peek(&R { org, video: 0 }, 0).unwrap();
        assert_eq!(d.scope("org_burst").unwrap().decision.used(), used_org);
        assert_eq!(d.scope("org").unwrap().decision.used(), used_org);
        for video in 0..5u8 {
            let used = admitted
                .get(&("video", (org as u16) << 8 | video as u16))
                .copied()
                .unwrap_or(0);
            assert!(used <= 15);
            let d = policy.peek(&R { org, video }, 0).unwrap();
            assert_eq!(
                d.scope("video").unwrap().decision.used(),
                used,
                "{org}/{video}"
            );
        }
    }
    let d = policy.peek(&R { org: 0, video: 0 }, 0).unwrap();
    assert_eq!(d.scope("global").unwrap().decision.used(), total);
}

#[derive(Clone, Copy)]
struct Key(u32);

fn two_scopes(clock: Clock) -> Policy<Key> {
    Policy::builder()
        .clock(clock)
        .scope(Scope::keyed(
            "burst",
            Gcra::new("5/s".parse().unwrap()),
            |k: &Key| Some(k.0),
        ))
        .scope(
            Scope::keyed(
                "hourly",
                FixedWindow::new("8/hour".parse().unwrap()),
                |k: &Key| Some(k.0),
            )
            .shadow(),
        )
        .build()
}

#[test]
fn shadow_scopes_report_but_never_deny() {
    let (clock, mock) = Clock::mock();
    let policy = two_scopes(clock);
    for _ in 0..8 {
        assert!(policy.check(&Key(1), 1).unwrap().is_allowed());
        mock.increment(Duration::from_millis(200));
    }
    let d = policy.check(&Key(1), 1).unwrap();
    assert!(d.is_allowed());
    assert_eq!(d.denials().count(), 0);
    assert_eq!(
        d.shadow_denials().map(|s| s.name).collect::<Vec<_>>(),
        ["hourly"]
    );
    assert_eq!(d.retry_after(), None);
    // closest-to-exhaustion ignores shadow scopes
    assert_eq!(d.closest().unwrap().name, "burst");
    // a shadow scope's cost error does not fail the request either
    assert!(policy.check(&Key(2), 5).unwrap().is_allowed());
    assert!(matches!(
        policy.check(&Key(2), 6),
        Err(PolicyError {
            error: CheckError::CostExceedsCapacity {
                cost: 6,
                capacity: 5
            },
            ..
        })
    ));
}

#[test]
fn refund_gives_back_to_every_scope_and_peek_changes_nothing() {
    let (clock, _mock) = Clock::mock();
    let policy = Policy::builder()
        .clock(clock)
        .scope(Scope::keyed(
            "a",
            SlidingLog::new("10/min".parse().unwrap()),
            |k: &Key| Some(k.0),
        ))
        .scope(Scope::keyed(
            "b",
            Gcra::new("20/min".parse().unwrap()),
            |k: &Key| Some(k.0),
        ))
        .build();
    policy.check(&Key(1), 6).unwrap();
    let peeked = policy.peek(&Key(1), 5).unwrap();
    assert!(peeked.is_denied());
    assert_eq!(
        policy
            .peek(&Key(1), 5)
            .unwrap()
            .scopes()
            .collect::<Vec<_>>(),
        peeked.scopes().collect::<Vec<_>>()
    );
    policy.refund(&Key(1), 4);
    let d = policy.check(&Key(1), 5).unwrap();
    assert!(d.is_allowed());
    assert_eq!(d.scope("a").unwrap().decision.remaining(), 3);
    assert_eq!(d.scope("b").unwrap().decision.remaining(), 13);
    // refunding more than was spent never makes a key fuller than fresh
    policy.refund(&Key(1), 1_000);
    assert_eq!(
        policy
            .peek(&Key(1), 0)
            .unwrap()
            .scope("a")
            .unwrap()
            .decision
            .remaining(),
        10
    );
}

#[test]
fn invalid_per_request_limits_are_typed_errors() {
    let (clock, _mock) = Clock::mock();
    let policy = Policy::builder()
        .clock(clock)
        .scope(
            Scope::keyed("a", Gcra::new("10/s".parse().unwrap()), |k: &Key| Some(k.0))
                .limit_by(|k: &Key| Some(k.0 as u64)),
        )
        .build();
    assert_eq!(
        policy
            .check(&Key(3), 1)
            .unwrap()
            .scope("a")
            .unwrap()
            .decision
            .limit(),
        3
    );
    let err = policy.check(&Key(0), 1).unwrap_err();
    assert_eq!(err.error, CheckError::InvalidLimit { count: 0 });
    assert_eq!(
        err.to_string(),
        "scope \"a\": per-request limit of 0 is not a valid count for the scope's window"
    );
}

#[test]
fn closest_scope_prefers_least_remaining_then_longer_reset_then_first() {
    let (clock, _mock) = Clock::mock();
    let policy = Policy::builder()
        .clock(clock)
        .scope(Scope::keyed(
            "short",
            FixedWindow::new("3/s".parse().unwrap()),
            |k: &Key| Some(k.0),
        ))
        .scope(Scope::keyed(
            "long",
            FixedWindow::new("3/min".parse().unwrap()),
            |k: &Key| Some(k.0),
        ))
        .scope(Scope::keyed(
            "long_too",
            FixedWindow::new("3/min".parse().unwrap()),
            |k: &Key| Some(k.0),
        ))
        .scope(Scope::keyed(
            "roomy",
            FixedWindow::new("30/min".parse().unwrap()),
            |k: &Key| Some(k.0),
        ))
        .build();
    let d = policy.check(&Key(1), 1).unwrap();
    assert_eq!(d.closest().unwrap().name, "long");
}

/// Every key of each scope shares that scope's one shard, so each check holds a shard
/// lock per scope while it decides the next: threads on different keys must still never
/// wait on each other in a cycle, and nothing may be overspent.
#[test]
fn scopes_whose_keys_share_one_shard_never_deadlock_or_overspend() {
    let (clock, _mock) = Clock::mock(); // frozen: every admitted unit stays counted
    let one_shard = |alg: Gcra| KeyedLimiter::<u16, _>::builder(alg).shards(1).build();
    let policy = Arc::new(
        Policy::builder()
            .clock(clock)
            .scope(Scope::with_limiter(
                "user",
                one_shard(Gcra::new("5/min".parse().unwrap())),
                |r: &Req| Some(r.a),
            ))
            .scope(Scope::with_limiter(
                "team",
                one_shard(Gcra::new("12/min".parse().unwrap())),
                |r: &Req| Some(r.b),
            ))
            .scope(Scope::keyed(
                "team_window",
                FixedWindow::new("30/min".parse().unwrap()),
                |r: &Req| Some(r.b),
            ))
            .build(),
    );
    let (done, finished) = std::sync::mpsc::channel();
    let admitted: Arc<Mutex<HashMap<(u16, u16), u64>>> = Arc::default();
    for t in 0..4u16 {
        let (policy, admitted, done) = (policy.clone(), admitted.clone(), done.clone());
        std::thread::spawn(move || {
            let mut local = HashMap::new();
            for i in 0..20_000u16 {
                let r = Req {
                    a: (i.wrapping_mul(31).wrapping_add(t)) % 40,
                    b: (i.wrapping_add(t * 3)) % 7,
                    applies: 0xff,
                };
                if policy.check(&r, 1).unwrap().is_allowed() {
                    *local.entry((r.a, r.b)).or_insert(0u64) += 1;
                }
            }
            let mut all = admitted.lock().unwrap();
            for (k, v) in local {
                *all.entry(k).or_default() += v;
            }
            done.send(()).unwrap();
        });
    }
    for _ in 0..4 {
        finished
            .recv_timeout(Duration::from_secs(60))
            .expect("a thread made no progress for 60 s: deadlock");
    }
    let admitted = admitted.lock().unwrap();
    for user in 0..40u16 {
        let used: u64 = (0..7)
            .map(|team| admitted.get(&(user, team)).copied().unwrap_or(0))
            .sum();
        assert!(used <= 5, "user {user}: {used}");
    }
    for team in 0..7u16 {
        let used: u64 = (0..40)
            .map(|user| admitted.get(&(user, team)).copied().unwrap_or(0))
            .sum();
        assert!(used <= 12, "team {team}: {used}");
        // The team's two scopes counted exactly what was admitted.
        let d = policy
            .peek(
                &Req {
                    a: 999,
                    b: team,
                    applies: 0xff,
                },
                0,
            )
            .unwrap();
        assert_eq!(d.scope("team").unwrap().decision.used(), used);
        assert_eq!(d.scope("team_window").unwrap().decision.used(), used);
    }
    // 80 000 requests against 7 teams × 12: (nearly) every team's budget ran out.
    assert!(admitted.values().sum::<u64>() >= 7 * 12 - 5, "{admitted:?}");
}

#[test]
fn a_policy_check_reads_the_clock_once_whatever_its_scopes() {
    let reads = Arc::new(AtomicU64::new(0));
    let counted = reads.clone();
    let clock = Clock::from_fn(move || {
        // One millisecond per reading: a second reading inside one check would show.
        1_000_000 * counted.fetch_add(1, Ordering::SeqCst)
    });
    let policy = Policy::builder()
        .clock(clock.clone())
        .scope(Scope::keyed(
            "a",
            Gcra::new("5/s".parse().unwrap()),
            |r: &Req| Some(r.a),
        ))
        .scope(Scope::keyed(
            "b",
            SlidingWindow::new("9/s".parse().unwrap()),
            |r: &Req| Some(r.b),
        ))
        .scope(Scope::unkeyed(
            "all",
            FixedWindow::new("100/s".parse().unwrap()),
        ))
        .scope(
            Scope::keyed("log", SlidingLog::new("7/s".parse().unwrap()), |r: &Req| {
                Some(r.a)
            })
            .shadow(),
        )
        .build();
    let req = Req {
        a: 1,
        b: 2,
        applies: 0xff,
    };
    for i in 0..20u64 {
        let before = reads.load(Ordering::SeqCst);
        let d = policy.check(&req, 1).unwrap();
        assert_eq!(reads.load(Ordering::SeqCst), before + 1, "check {i}");
        assert_eq!(d.scope_count(), 4);
    }
    let before = reads.load(Ordering::SeqCst);
    policy.peek(&req, 1).unwrap();
    policy.check_with(&req, 1, || Ok::<(), ()>(())).unwrap();
    policy.refund(&req, 1);
    assert_eq!(reads.load(Ordering::SeqCst), before + 3);

    let limiter = KeyedLimiter::<u16>::builder(Gcra::new("5/s".parse().unwrap()))
        .clock(clock)
        .build();
    let before = reads.load(Ordering::SeqCst);
    limiter.check(&1, 1).unwrap();
    assert_eq!(reads.load(Ordering::SeqCst), before + 1);
}

/// A limiter that forwards to a keyed fixed window, with `transact` replaced.
struct Bent<F>(KeyedLimiter<u32, FixedWindow>, F);

type Transact = fn(
    &KeyedLimiter<u32, FixedWindow>,
    &u32,
    u64,
    u64,
    Option<u64>,
    &mut dyn FnMut(&Decision) -> bool,
) -> Result<Decision, CheckError>;

impl Limiter<u32> for Bent<Transact> {
    fn clock(&self) -> &Clock {
        self.0.clock()
    }
    fn rate(&self) -> Rate {
        self.0.rate()
    }
    fn check_at(&self, key: &u32, cost: u64, now: u64) -> Result<Decision, CheckError> {
        self.0.check_at(key, cost, now)
    }
    fn peek_at(&self, key: &u32, cost: u64, now: u64) -> Result<Decision, CheckError> {
        self.0.peek_at(key, cost, now)
    }
    fn refund_at(&self, key: &u32, cost: u64, now: u64) {
        self.0.refund_at(key, cost, now)
    }
    fn transact(
        &self,
        key: &u32,
        cost: u64,
        now: u64,
        limit: Option<u64>,
        then: &mut dyn FnMut(&Decision) -> bool,
    ) -> Result<Decision, CheckError> {
        (self.1)(&self.0, key, cost, now, limit, then)
    }
}

/// A policy of a bent limiter (100 an hour per request key, not applying to key 0),
/// shadow or not, then an enforcing scope of `hourly` an hour shared by every request.
fn bent_then_hourly(bend: Transact, shadow: bool, hourly: &str) -> Policy<u32> {
    let (clock, _mock) = Clock::mock();
    let bent = Bent(KeyedLimiter::new(FixedWindow::new(rate("100/hour"))), bend);
    let first = Scope::with_limiter("bent", bent, |k: &u32| (*k != 0).then_some(*k));
    Policy::builder()
        .clock(clock)
        .scope(if shadow { first.shadow() } else { first })
        .scope(Scope::keyed(
            "hourly",
            FixedWindow::new(rate(hourly)),
            |_: &u32| Some(()),
        ))
        .build()
}

/// What the shared hourly scope has left (a request of key 0 skips the bent scope).
fn hourly_left(policy: &Policy<u32>) -> u64 {
    let d = policy.peek(&0, 0).unwrap();
    d.scope("hourly").unwrap().decision.remaining()
}

fn rate(s: &str) -> Rate {
    s.parse().unwrap()
}

#[test]
fn scopes_after_a_limiter_that_skips_its_continuation_still_decide() {
    // Decides and consumes without calling `then`: against the contract of `transact`.
    let policy = bent_then_hourly(
        |l, k, cost, now, _, _| l.check_at(k, cost, now),
        false,
        "1/hour",
    );
    let first = policy.check(&7, 1).unwrap();
    assert!(first.is_allowed());
    assert_eq!(first.scope_count(), 2);
    let second = policy.check(&7, 1).unwrap();
    assert_eq!(second.scope_count(), 2, "every applicable scope reports");
    assert!(second.is_denied(), "'hourly' allows one an hour");
    assert_eq!(second.denials().next().unwrap().name, "hourly");
}

/// Decides through the keyed limiter (the continuation runs), then fails, as a store
/// whose write-back failed would.
fn fails_after_continuation(
    l: &KeyedLimiter<u32, FixedWindow>,
    k: &u32,
    cost: u64,
    now: u64,
    limit: Option<u64>,
    then: &mut dyn FnMut(&Decision) -> bool,
) -> Result<Decision, CheckError> {
    l.transact(k, cost, now, limit, then)?;
    Err(CheckError::KeyCapReached { max_keys: 0 })
}

#[test]
fn a_shadow_scope_failing_after_its_continuation_charges_later_scopes_once() {
    let policy = bent_then_hourly(fails_after_continuation, true, "10/hour");
    let d = policy.check(&7, 1).unwrap();
    assert!(d.is_allowed());
    let hourly: Vec<u64> = d
        .scopes()
        .filter(|s| s.name == "hourly")
        .map(|s| s.decision.remaining())
        .collect();
    assert_eq!(hourly, vec![9], "one report for 'hourly'");
    assert_eq!(hourly_left(&policy), 9, "charged once");
}

#[test]
fn an_enforcing_scope_failing_after_its_continuation_fails_the_check_once() {
    let policy = bent_then_hourly(fails_after_continuation, false, "10/hour");
    let err = policy.check(&7, 1).unwrap_err();
    assert_eq!(&*err.scope, "bent");
    assert_eq!(err.error, CheckError::KeyCapReached { max_keys: 0 });
    // The later scope decided (and committed) inside the continuation, once.
    assert_eq!(hourly_left(&policy), 9);
}

/// Decides through the keyed limiter, catching a panic from inside the continuation
/// (against the contract of `transact`).
fn catching(
    l: &KeyedLimiter<u32, FixedWindow>,
    k: &u32,
    cost: u64,
    now: u64,
    limit: Option<u64>,
    then: &mut dyn FnMut(&Decision) -> bool,
) -> std::thread::Result<Result<Decision, CheckError>> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        l.transact(k, cost, now, limit, then)
    }))
}

/// Reports a caught panic as an error.
const CATCHES_PANICS: Transact = |l, k, cost, now, limit, then| {
    catching(l, k, cost, now, limit, then).unwrap_or(Err(CheckError::KeyCapReached { max_keys: 0 }))
};

/// Answers a caught panic with a peek, as if nothing had happened.
const SWALLOWS_PANICS: Transact = |l, k, cost, now, limit, then| {
    catching(l, k, cost, now, limit, then).unwrap_or_else(|_| l.peek_at(k, cost, now))
};

/// A scope of 10 an hour whose key extractor panics for key 13.
fn boom() -> Scope<u32> {
    Scope::keyed("boom", FixedWindow::new(rate("10/hour")), |k: &u32| {
        assert_ne!(*k, 13, "the key extractor panics");
        Some(*k)
    })
}

/// `before` enforcing scopes of 10 an hour, a shadow scope whose limiter bends
/// `transact` as `bend`, an hourly scope of 10 an hour, then a scope whose key
/// extractor panics for key 13.
fn around_a_panic(before: usize, bend: Transact) -> Policy<u32> {
    let (clock, _mock) = Clock::mock();
    let mut builder = Policy::builder().clock(clock);
    for i in 0..before {
        builder = builder.scope(Scope::keyed(
            &format!("s{i}"),
            FixedWindow::new(rate("10/hour")),
            |k: &u32| Some(*k),
        ));
    }
    let bent = Bent(KeyedLimiter::new(FixedWindow::new(rate("10/hour"))), bend);
    builder
        .scope(Scope::with_limiter("bent", bent, |k: &u32| Some(*k)).shadow())
        .scope(Scope::keyed(
            "hourly",
            FixedWindow::new(rate("10/hour")),
            |_: &u32| Some(()),
        ))
        .scope(boom())
        .build()
}

#[test]
fn a_limiter_that_catches_a_later_scopes_panic_fails_the_check() {
    for before in [0, 2, 8, 9] {
        for bend in [CATCHES_PANICS, SWALLOWS_PANICS] {
            let policy = around_a_panic(before, bend);
            let err = policy.check(&13, 1).unwrap_err();
            assert_eq!(&*err.scope, "bent", "{before} scopes before");
            assert_eq!(err.error, CheckError::Interrupted);
            let stats = policy.stats();
            assert_eq!((stats.allowed, stats.denied), (0, 0), "nothing decided");
            // Nothing was charged in the scopes the panic unwound through.
            let d = policy.check(&7, 1).unwrap();
            assert!(d.is_allowed());
            assert_eq!(d.scope_count(), before + 3, "every scope reports, once");
            let left: Vec<u64> = d.scopes().map(|s| s.decision.remaining()).collect();
            assert!(left.iter().all(|&n| n == 9), "{left:?}");
            let indexes: Vec<usize> = d.scopes().map(|s| s.index).collect();
            assert_eq!(indexes, (0..before + 3).collect::<Vec<_>>());
        }
    }
}

#[test]
fn a_limiter_that_catches_an_admissions_panic_fails_the_check() {
    let policy = bent_then_hourly(CATCHES_PANICS, true, "10/hour");
    let err = policy
        .check_with(&7, 1, || -> Result<(), ()> {
            panic!("the admission panics")
        })
        .unwrap_err();
    assert_eq!(&*err.scope, "bent");
    assert_eq!(err.error, CheckError::Interrupted);
    assert_eq!(hourly_left(&policy), 10, "nothing charged");
    let admitted = policy.check_with(&7, 1, || Ok::<_, ()>(())).unwrap();
    assert!(admitted.decision.is_allowed());
    assert_eq!(hourly_left(&policy), 9);
}

#[test]
fn a_second_call_of_the_continuation_that_unwinds_is_caught_too() {
    // Calls the continuation again after deciding, and swallows that call's panic.
    const CALLS_AGAIN: Transact = |l, k, cost, now, limit, then| {
        let d = l.transact(k, cost, now, limit, &mut *then)?;
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| then(&d)));
        Ok(d)
    };
    static CALLS: AtomicU64 = AtomicU64::new(0);
    let (clock, _mock) = Clock::mock();
    let bent = Bent(
        KeyedLimiter::new(FixedWindow::new(rate("10/hour"))),
        CALLS_AGAIN,
    );
    let policy = Policy::builder()
        .clock(clock)
        .scope(Scope::with_limiter("bent", bent, |k: &u32| Some(*k)))
        .scope(Scope::keyed(
            "flaky",
            FixedWindow::new(rate("10/hour")),
            |k: &u32| {
                let call = CALLS.fetch_add(1, Ordering::SeqCst);
                assert_ne!(call, 1, "the second call panics");
                Some(*k)
            },
        ))
        .build();
    let err = policy.check(&7, 1).map(|d| d.is_allowed()).unwrap_err();
    assert_eq!((&*err.scope, err.error), ("bent", CheckError::Interrupted));
}

#[test]
fn a_call_of_the_continuation_that_unwinds_then_one_that_returns_is_caught() {
    // Retries the whole transaction after a panic.
    const RETRIES: Transact = |l, k, cost, now, limit, then| {
        catching(l, k, cost, now, limit, &mut *then)
            .unwrap_or_else(|_| l.transact(k, cost, now, limit, then))
    };
    let policy = bent_then_hourly(RETRIES, false, "10/hour");
    let checked = policy.check_with(&7, 1, || -> Result<(), ()> {
        panic!("the admission panics")
    });
    let err = checked.map(|a| a.outcome).unwrap_err();
    assert_eq!((&*err.scope, err.error), ("bent", CheckError::Interrupted));
}

#[test]
fn the_first_failure_is_reported_when_an_outer_scope_fails_after_it() {
    let (clock, _mock) = Clock::mock();
    let fw = || KeyedLimiter::new(FixedWindow::new(rate("10/hour")));
    let outer = Bent(fw(), fails_after_continuation as Transact);
    let policy = Policy::builder()
        .clock(clock)
        .scope(Scope::with_limiter("outer", outer, |k: &u32| Some(*k)))
        .scope(Scope::with_limiter(
            "inner",
            Bent(fw(), SWALLOWS_PANICS),
            |k: &u32| Some(*k),
        ))
        .scope(boom())
        .scope(
            Scope::keyed("capped", FixedWindow::new(rate("10/hour")), |k: &u32| {
                Some(*k)
            })
            .limit_by(|k: &u32| (*k == 5).then_some(0)),
        )
        .build();
    let err = policy.check(&13, 1).unwrap_err();
    assert_eq!((&*err.scope, err.error), ("inner", CheckError::Interrupted));
    // A scope that fails before deciding, inside one that fails after: the inner one.
    let err = policy.check(&5, 1).unwrap_err();
    assert_eq!(
        (&*err.scope, err.error),
        ("capped", CheckError::InvalidLimit { count: 0 })
    );
}

#[test]
fn a_failure_that_a_second_call_of_the_continuation_undid_is_not_reported() {
    // Calls the continuation twice, then fails as `fails_after_continuation` does.
    const TWICE_THEN_FAILS: Transact = |l, k, cost, now, limit, then| {
        let d = l.peek_at(k, cost, now)?;
        then(&d);
        fails_after_continuation(l, k, cost, now, limit, then)
    };
    static LIMITS: AtomicU64 = AtomicU64::new(0);
    let (clock, _mock) = Clock::mock();
    let outer = Bent(
        KeyedLimiter::new(FixedWindow::new(rate("10/hour"))),
        TWICE_THEN_FAILS,
    );
    let flaky = Scope::keyed("flaky", FixedWindow::new(rate("10/hour")), |k: &u32| {
        Some(*k)
    })
    // An invalid limit on the first evaluation only.
    .limit_by(|_: &u32| (LIMITS.fetch_add(1, Ordering::SeqCst) == 0).then_some(0));
    let policy = Policy::builder()
        .clock(clock)
        .scope(Scope::with_limiter("outer", outer, |k: &u32| Some(*k)))
        .scope(flaky)
        .build();
    let err = policy.check(&7, 1).unwrap_err();
    assert_eq!(
        (&*err.scope, err.error),
        ("outer", CheckError::KeyCapReached { max_keys: 0 })
    );
}
