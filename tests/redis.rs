//! The Redis backend against a real `redis-server` (started per test on a free loopback
//! port), and one behavioural suite run on the in-process policy and on Redis (blocking
//! and async), so both backends are held to the same semantics.
//!
//! The server's clock is real time. Windows are a day long (so nothing resets during a
//! test; a test close to a window boundary waits for it to pass), and every duration is
//! asserted to lie between bounds computed from the elapsed time the test measures.

#[path = "common/redis_server.rs"]
mod redis_server;

#[path = "common/redis_fixture.rs"]
mod redis_fixture;

#[path = "common/redis_twins.rs"]
mod redis_twins;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ratewarden::redis::{
    AsyncRedisBackend, FailureMode, RedisAlgorithm, RedisBackend, RedisBuildError, RedisCheckError,
    RedisPolicy, RedisScope,
};
use ratewarden::{
    Anchor, CheckError, Decision, FixedWindow, Gcra, Policy, Rate, SlidingLog, SlidingWindow,
};
use redis_fixture::{multi_thread_runtime, req, runtime, BothBackends, Key, Req};
use redis_server::RedisServer;
use redis_twins::in_process_scope;

const DAY: Duration = Duration::from_secs(86_400);
/// Clock readings of the test, the library and the server may differ by this much.
const SLACK: Duration = Duration::from_millis(5);

struct Spec {
    name: &'static str,
    alg: RedisAlgorithm,
    key: Key,
}

fn spec(name: &'static str, alg: impl Into<RedisAlgorithm>, key: Key) -> Spec {
    Spec {
        name,
        alg: alg.into(),
        key,
    }
}

fn now_since_epoch() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after the epoch")
}

/// Time left in the current clock-aligned window of `w`.
fn until_window_end(at: Duration, w: Duration) -> Duration {
    let w = w.as_nanos();
    Duration::from_nanos((w - at.as_nanos() % w) as u64)
}

/// Waits out the last minute before a boundary of `w`, so no window resets mid-test.
fn away_from_boundary(w: Duration) {
    let left = until_window_end(now_since_epoch(), w);
    if left < Duration::from_secs(60) {
        std::thread::sleep(left + Duration::from_millis(10));
    }
}

/// What a backend answered, in the terms both share.
#[derive(Debug)]
struct Outcome {
    allowed: bool,
    retry_after: Option<Duration>,
    scopes: Vec<(String, Decision)>,
}

impl Outcome {
    fn scope(&self, name: &str) -> Decision {
        self.scopes
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, d)| *d)
            .unwrap_or_else(|| panic!("no report for scope {name}: {self:?}"))
    }
}

enum Backend {
    InProcess(Policy<Req>),
    Redis(RedisPolicy<Req>, RedisBackend),
    Async(
        RedisPolicy<Req>,
        AsyncRedisBackend,
        tokio::runtime::Runtime,
        // keeps the server alive as long as the backend
        #[allow(dead_code)] Arc<RedisServer>,
    ),
}

type CheckResult = Result<Outcome, String>;

impl Backend {
    fn check(&self, r: &Req, cost: u64) -> CheckResult {
        fn from<'p>(d: &ratewarden::PolicyDecision<'p>) -> Outcome {
            Outcome {
                allowed: d.is_allowed(),
                retry_after: d.retry_after(),
                scopes: d
                    .scopes()
                    .map(|s| (s.name.to_string(), s.decision))
                    .collect(),
            }
        }
        match self {
            Backend::InProcess(p) => p
                .check(r, cost)
                .map(|d| from(&d))
                .map_err(|e| e.to_string()),
            Backend::Redis(p, b) => p
                .check(b, r, cost)
                .map(|d| from(&d))
                .map_err(|e| e.to_string()),
            Backend::Async(p, b, rt, _) => rt
                .block_on(p.check_async(b, r, cost))
                .map(|d| from(&d))
                .map_err(|e| e.to_string()),
        }
    }

    fn label(&self) -> &'static str {
        match self {
            Backend::InProcess(_) => "in-process",
            Backend::Redis(..) => "redis",
            Backend::Async(..) => "redis async",
        }
    }
}

static POLICY_ID: AtomicU64 = AtomicU64::new(0);

fn in_process(specs: &[Spec]) -> Backend {
    let mut b = Policy::builder();
    for s in specs {
        let key = s.key;
        b = b.scope(in_process_scope(s.name, s.alg, move |r: &Req| key.of(r)));
    }
    Backend::InProcess(b.build())
}

fn redis_policy(specs: &[Spec]) -> RedisPolicy<Req> {
    // a fresh name per policy: tests share nothing on the server
    let mut b =
        RedisPolicy::builder().name(&format!("p{}", POLICY_ID.fetch_add(1, Ordering::Relaxed)));
    for s in specs {
        let key = s.key;
        b = b.scope(RedisScope::keyed(s.name, s.alg, move |r: &Req| key.of(r)));
    }
    b.build().expect("valid policy")
}

/// The in-process backend, then (when a server can run here) Redis, blocking and async.
fn backends(specs: &[Spec]) -> Vec<Backend> {
    let mut all = vec![in_process(specs)];
    if let Some(server) = RedisServer::start() {
        let server = Arc::new(server);
        let url = server.url();
        all.push(Backend::Redis(
            redis_policy(specs),
            RedisBackend::open(&url)
                .unwrap()
                .with_deadline(Duration::from_secs(2)),
        ));
        let rt = runtime();
        let backend = rt.block_on(async {
            AsyncRedisBackend::open_with_deadline(&url, Duration::from_secs(2)).unwrap()
        });
        all.push(Backend::Async(redis_policy(specs), backend, rt, server));
    }
    all
}

/// Asserts `got` lies in `[expected - elapsed - SLACK, expected + SLACK]`.
fn assert_near(got: Duration, expected: Duration, elapsed: Duration, what: &str) {
    let low = expected.saturating_sub(elapsed + SLACK);
    assert!(
        got >= low && got <= expected + SLACK,
        "{what}: {got:?} not in [{low:?}, {:?}]",
        expected + SLACK
    );
}

fn per_day(n: u64) -> Rate {
    Rate::new(n, DAY).unwrap()
}

/// A scope running `alg`, one counter per user.
fn per_user(name: &str, alg: impl Into<RedisAlgorithm>) -> RedisScope<Req> {
    RedisScope::keyed(name, alg, |r: &Req| Some(r.user.clone()))
}

// ---------------------------------------------------------------------------------------
// The shared behavioural suite
// ---------------------------------------------------------------------------------------

/// Exactly the limit is admitted, remaining counts down, and the denial's retry-after is
/// what the algorithm's definition says.
#[test]
fn each_algorithm_admits_exactly_the_limit_with_the_exact_retry_after() {
    away_from_boundary(DAY);
    let n = 5;
    let specs = [
        spec("fixed", FixedWindow::new(per_day(n)), Key::User),
        spec(
            "fixed_first",
            FixedWindow::new(per_day(n)).anchored(Anchor::FirstRequest),
            Key::User,
        ),
        spec("sliding", SlidingWindow::new(per_day(n)), Key::User),
        spec("log", SlidingLog::new(per_day(n)), Key::User),
        spec("gcra", Gcra::new(per_day(n)), Key::User),
    ];
    for (i, s) in specs.iter().enumerate() {
        for backend in backends(std::slice::from_ref(s)) {
            let what = format!("{} {}", backend.label(), s.name);
            let r = req(&format!("u{i}"), "o");
            let start = Instant::now();
            let first = now_since_epoch();
            for left in (0..n).rev() {
                let o = backend.check(&r, 1).unwrap();
                assert!(o.allowed, "{what}");
                assert_eq!(o.scope(s.name).remaining(), left, "{what}");
                assert_eq!(o.scope(s.name).limit(), n, "{what}");
            }
            let at = now_since_epoch();
            let denied = backend.check(&r, 1).unwrap();
            let elapsed = start.elapsed();
            assert!(!denied.allowed, "{what}");
            assert_eq!(denied.scope(s.name).remaining(), 0, "{what}");
            let retry = denied.retry_after.unwrap();
            let expected = match s.name {
                "fixed" => until_window_end(at, DAY),
                "sliding" => until_window_end(first, DAY) + DAY / n as u32,
                // the first unit admitted expires, or is paid back, after one period
                "fixed_first" | "log" => DAY,
                "gcra" => DAY / n as u32,
                _ => unreachable!(),
            };
            assert_near(retry, expected, elapsed, &what);
            // and the denial spent nothing
            assert_eq!(backend.check(&r, 1).unwrap().scope(s.name).remaining(), 0);
        }
    }
}

#[test]
fn weighted_costs_and_cost_beyond_capacity() {
    away_from_boundary(DAY);
    let algs: [(&str, RedisAlgorithm); 4] = [
        ("fixed", FixedWindow::new(per_day(10)).into()),
        ("sliding", SlidingWindow::new(per_day(10)).into()),
        ("log", SlidingLog::new(per_day(10)).into()),
        ("gcra", Gcra::new(per_day(10)).into()),
    ];
    for (name, alg) in algs {
        let specs = [spec(name, alg, Key::User)];
        for backend in backends(&specs) {
            let what = format!("{} {name}", backend.label());
            let r = req("heavy", "o");
            let start = Instant::now();
            let first = now_since_epoch();
            let o = backend.check(&r, 7).unwrap();
            assert!(o.allowed, "{what}");
            assert_eq!(o.scope(name).remaining(), 3, "{what}");
            let at = now_since_epoch();
            let o = backend.check(&r, 4).unwrap();
            let elapsed = start.elapsed();
            assert!(!o.allowed, "{what}");
            assert_eq!(o.scope(name).remaining(), 3, "{what}");
            let expected = match name {
                "fixed" => until_window_end(at, DAY),
                // cur 7 + 4 > 10: in the next window, 7 × (W − e)/W ≤ 6 ⇔ e ≥ W/7
                "sliding" => until_window_end(first, DAY) + DAY / 7,
                "log" => DAY,
                "gcra" => DAY / 10,
                _ => unreachable!(),
            };
            assert_near(o.retry_after.unwrap(), expected, elapsed, &what);
            let o = backend.check(&r, 3).unwrap();
            assert!(o.allowed, "{what}");
            assert_eq!(o.scope(name).remaining(), 0, "{what}");
            // beyond capacity: an error naming the scope, never a denial
            let err = backend.check(&req("fresh", "o"), 11).unwrap_err();
            let expected = ratewarden::PolicyError {
                scope: name.into(),
                error: CheckError::CostExceedsCapacity {
                    cost: 11,
                    capacity: 10,
                },
            }
            .to_string();
            assert_eq!(err, expected, "{what}");
        }
    }
}

#[test]
fn multi_scope_all_or_nothing_with_the_longest_retry_after() {
    away_from_boundary(DAY);
    let specs = [
        // per user: 2 a day, one every 12 h
        spec("user", Gcra::new(per_day(2)), Key::User),
        // per organization: 3 a day
        spec("org", FixedWindow::new(per_day(3)), Key::Org),
    ];
    for backend in backends(&specs) {
        let what = backend.label();
        let start = Instant::now();
        let (a, b, c) = (req("a", "o"), req("b", "o"), req("c", "o"));
        assert!(backend.check(&a, 1).unwrap().allowed);
        assert!(backend.check(&a, 1).unwrap().allowed);
        // a's third: denied by its user scope alone; the org scope spends nothing
        let o = backend.check(&a, 1).unwrap();
        assert!(!o.allowed, "{what}");
        assert!(o.scope("user").is_denied(), "{what}");
        assert!(o.scope("org").is_allowed(), "{what}");
        assert_eq!(o.scope("org").remaining(), 1, "{what}");
        assert_eq!(o.retry_after, o.scope("user").retry_after(), "{what}");
        // so b still gets the org's last unit
        let o = backend.check(&b, 1).unwrap();
        assert!(o.allowed, "{what}");
        assert_eq!(o.scope("org").remaining(), 0, "{what}");
        assert_eq!(o.scope("user").remaining(), 1, "{what}");
        // c: denied by the org alone, and its user scope spends nothing
        let at = now_since_epoch();
        let o = backend.check(&c, 1).unwrap();
        assert!(!o.allowed, "{what}");
        assert!(o.scope("user").is_allowed(), "{what}");
        assert_eq!(o.scope("user").remaining(), 2, "{what}");
        assert_near(
            o.retry_after.unwrap(),
            until_window_end(at, DAY),
            start.elapsed(),
            what,
        );
        // a again: denied by both; the longest wait is reported
        let o = backend.check(&a, 1).unwrap();
        let elapsed = start.elapsed();
        assert!(
            o.scope("user").is_denied() && o.scope("org").is_denied(),
            "{what}"
        );
        let (user, org) = (
            o.scope("user").retry_after().unwrap(),
            o.scope("org").retry_after().unwrap(),
        );
        assert_eq!(o.retry_after, Some(user.max(org)), "{what}");
        assert_near(user, DAY / 2, elapsed, what);
        // c's user scope is still untouched
        assert_eq!(
            backend.check(&c, 1).unwrap().scope("user").remaining(),
            2,
            "{what}"
        );
    }
}

#[test]
fn a_scope_without_a_key_does_not_apply_and_shadow_scopes_never_deny() {
    away_from_boundary(DAY);
    let Some(server) = RedisServer::start() else {
        return;
    };
    let redis = RedisBackend::open(&server.url()).unwrap();
    let policy = RedisPolicy::builder()
        .scope(RedisScope::keyed(
            "writes",
            FixedWindow::new(per_day(1)),
            |r: &Req| (r.org == "w").then(|| r.user.clone()),
        ))
        .scope(RedisScope::unkeyed("trial", FixedWindow::new(per_day(1))).shadow())
        .build()
        .unwrap();
    let read = req("u", "r");
    for _ in 0..3 {
        let d = policy.check(&redis, &read, 1).unwrap();
        assert!(d.is_allowed());
        assert_eq!(d.scope_count(), 1);
        assert_eq!(
            d.shadow_denials().count() > 0,
            d.scope("trial").unwrap().is_denied()
        );
    }
    assert!(
        policy
            .check(&redis, &read, 1)
            .unwrap()
            .shadow_denials()
            .count()
            == 1
    );
    let write = req("u", "w");
    assert!(policy.check(&redis, &write, 1).unwrap().is_allowed());
    let d = policy.check(&redis, &write, 1).unwrap();
    assert!(d.is_denied());
    assert_eq!(d.denials().map(|s| s.name).collect::<Vec<_>>(), ["writes"]);
}

#[test]
fn per_request_limits_and_peek() {
    away_from_boundary(DAY);
    let Some(server) = RedisServer::start() else {
        return;
    };
    let redis = RedisBackend::open(&server.url()).unwrap();
    let policy = RedisPolicy::builder()
        .scope(
            per_user("plan", FixedWindow::new(per_day(2)))
                .limit_by(|r: &Req| (r.org == "pro").then_some(5)),
        )
        .build()
        .unwrap();
    let pro = req("p", "pro");
    let d = policy.peek(&redis, &pro, 1).unwrap();
    assert_eq!(
        (d.scope("plan").unwrap().decision.limit(), d.is_allowed()),
        (5, true)
    );
    for _ in 0..5 {
        assert!(policy.check(&redis, &pro, 1).unwrap().is_allowed());
    }
    assert!(policy.check(&redis, &pro, 1).unwrap().is_denied());
    let free = req("f", "free");
    assert_eq!(
        policy
            .check(&redis, &free, 1)
            .unwrap()
            .scope("plan")
            .unwrap()
            .decision
            .limit(),
        2
    );
    // peek spends nothing
    for _ in 0..3 {
        assert_eq!(
            policy
                .peek(&redis, &free, 1)
                .unwrap()
                .scope("plan")
                .unwrap()
                .decision
                .remaining(),
            0
        );
    }
    assert!(policy.check(&redis, &free, 1).unwrap().is_allowed());
}

// ---------------------------------------------------------------------------------------
// Redis only
// ---------------------------------------------------------------------------------------

fn all_four(name: &str) -> RedisPolicy<Req> {
    RedisPolicy::builder()
        .name(name)
        .scope(per_user("fixed", FixedWindow::new(per_day(1000))))
        .scope(per_user("sliding", SlidingWindow::new(per_day(1000))))
        .scope(per_user("log", SlidingLog::new(per_day(1000))))
        .scope(per_user("gcra", Gcra::new(per_day(1000))))
        .build()
        .unwrap()
}

#[test]
fn every_key_written_has_a_ttl() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let redis = RedisBackend::open(&server.url()).unwrap();
    let policy = all_four("ttl");
    for user in ["a", "b", "c"] {
        for cost in [1, 3, 1] {
            assert!(policy
                .check(&redis, &req(user, "o"), cost)
                .unwrap()
                .is_allowed());
        }
        // A refund that takes the newest entries, one of them in part.
        policy.refund(&redis, &req(user, "o"), 2).unwrap();
    }
    // A partial refund of a key's only entry: the sliding log's set is emptied and
    // written again, and must get its TTL back.
    assert!(policy
        .check(&redis, &req("d", "o"), 3)
        .unwrap()
        .is_allowed());
    policy.refund(&redis, &req("d", "o"), 1).unwrap();
    let mut con = server.connection();
    let keys: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut con).unwrap();
    assert_eq!(keys.len(), 16, "{keys:?}");
    for key in keys {
        let ttl: i64 = redis::cmd("PTTL").arg(&key).query(&mut con).unwrap();
        assert!(ttl > 0, "{key} has no TTL ({ttl})");
        assert!(ttl <= 2 * 86_400_000, "{key}: {ttl}");
    }
}

#[test]
fn sliding_log_entries_are_unique_at_the_same_timestamp() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let redis = RedisBackend::open(&server.url()).unwrap();
    let policy: RedisPolicy<Req> = RedisPolicy::builder()
        .name("log")
        .scope(RedisScope::unkeyed("log", SlidingLog::new(per_day(500))))
        .build()
        .unwrap();
    for _ in 0..200 {
        assert!(policy
            .check(&redis, &req("u", "o"), 2)
            .unwrap()
            .is_allowed());
    }
    let mut con = server.connection();
    let n: u64 = redis::cmd("ZCARD")
        .arg("ratewarden:log:log:sl")
        .query(&mut con)
        .unwrap();
    assert_eq!(n, 200);
    let d = policy.check(&redis, &req("u", "o"), 101).unwrap();
    assert!(d.is_denied());
    assert_eq!(d.scope("log").unwrap().decision.remaining(), 100);
}

/// Two connections, each shared by many concurrent tasks (async) or threads (blocking),
/// on one policy: exactly the limit is admitted, per algorithm.
#[test]
fn two_clients_many_concurrent_tasks_admit_exactly_the_limit() {
    away_from_boundary(DAY);
    let Some(server) = RedisServer::start() else {
        return;
    };
    const LIMIT: u64 = 137;
    let algs: [(&str, RedisAlgorithm); 4] = [
        ("fixed", FixedWindow::new(per_day(LIMIT)).into()),
        ("sliding", SlidingWindow::new(per_day(LIMIT)).into()),
        ("log", SlidingLog::new(per_day(LIMIT)).into()),
        ("gcra", Gcra::new(per_day(LIMIT)).into()),
    ];
    let rt = multi_thread_runtime(4);
    for (name, alg) in algs {
        // async: 2 clients × 40 tasks × 10 checks
        let policy = Arc::new(
            RedisPolicy::builder()
                .name(&format!("conc-async-{name}"))
                .scope(RedisScope::unkeyed(name, alg))
                .build()
                .unwrap(),
        );
        let admitted = rt.block_on(async {
            let clients = [
                AsyncRedisBackend::open_with_deadline(&server.url(), Duration::from_secs(5))
                    .unwrap(),
                AsyncRedisBackend::open_with_deadline(&server.url(), Duration::from_secs(5))
                    .unwrap(),
            ];
            let mut tasks = Vec::new();
            for t in 0..80 {
                let client = clients[t % 2].clone();
                let policy = policy.clone();
                tasks.push(tokio::spawn(async move {
                    let mut n = 0;
                    for _ in 0..10 {
                        let d = policy
                            .check_async(&client, &req("u", "o"), 1)
                            .await
                            .unwrap();
                        n += u64::from(d.is_allowed());
                    }
                    n
                }));
            }
            let mut total = 0;
            for t in tasks {
                total += t.await.unwrap();
            }
            total
        });
        assert_eq!(admitted, LIMIT, "async {name}");

        // blocking: 2 clients (one connection; four) × 8 threads × 50 checks
        let policy: RedisPolicy<Req> = RedisPolicy::builder()
            .name(&format!("conc-sync-{name}"))
            .scope(RedisScope::unkeyed(name, alg))
            .build()
            .unwrap();
        let clients = [
            RedisBackend::open(&server.url())
                .unwrap()
                .with_deadline(Duration::from_secs(10)),
            RedisBackend::open(&server.url())
                .unwrap()
                .with_deadline(Duration::from_secs(10))
                .with_connections(4),
        ];
        let admitted = AtomicU64::new(0);
        std::thread::scope(|s| {
            for t in 0..16 {
                let (client, policy, admitted) = (&clients[t % 2], &policy, &admitted);
                s.spawn(move || {
                    for _ in 0..50 {
                        let d = policy.check(client, &req("u", "o"), 1).unwrap();
                        admitted.fetch_add(u64::from(d.is_allowed()), Ordering::Relaxed);
                    }
                });
            }
        });
        assert_eq!(admitted.into_inner(), LIMIT, "blocking {name}");
    }
}

#[test]
fn script_flush_mid_run_reloads_the_script_and_keeps_the_state() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let redis = RedisBackend::open(&server.url()).unwrap();
    let rt = runtime();
    let async_redis = rt.block_on(async { AsyncRedisBackend::open(&server.url()).unwrap() });
    let policy = all_four("flush");
    let r = req("u", "o");
    let mut con = server.connection();
    for round in 0..3u64 {
        let d = policy.check(&redis, &r, 1).unwrap();
        assert_eq!(
            d.scope("fixed").unwrap().decision.remaining(),
            999 - 2 * round
        );
        let () = redis::cmd("SCRIPT").arg("FLUSH").query(&mut con).unwrap();
        let d = rt
            .block_on(policy.check_async(&async_redis, &r, 1))
            .unwrap();
        assert_eq!(
            d.scope("log").unwrap().decision.remaining(),
            998 - 2 * round
        );
        let () = redis::cmd("SCRIPT").arg("FLUSH").query(&mut con).unwrap();
    }
}

#[test]
fn a_key_of_the_wrong_type_is_a_typed_error_even_when_failing_open() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let redis = RedisBackend::open(&server.url()).unwrap();
    let policy: RedisPolicy<Req> = RedisPolicy::builder()
        .name("typed")
        .on_failure(FailureMode::Open)
        .scope(per_user("fixed", FixedWindow::new(per_day(5))))
        .scope(per_user("gcra", Gcra::new(per_day(5))))
        .build()
        .unwrap();
    let mut con = server.connection();
    let () = redis::cmd("SET")
        .arg("ratewarden:typed:fixed:fw:x")
        .arg("not a hash")
        .query(&mut con)
        .unwrap();
    let () = redis::cmd("HSET")
        .arg("ratewarden:typed:gcra:gcra:y")
        .arg("f")
        .arg("v")
        .query(&mut con)
        .unwrap();
    for user in ["x", "y"] {
        match policy.check(&redis, &req(user, "o"), 1) {
            Err(RedisCheckError::WrongType { .. }) => {}
            other => panic!("{user}: {other:?}"),
        }
    }
    // nothing was written for the scope of the right type
    let exists: u64 = redis::cmd("EXISTS")
        .arg("ratewarden:typed:gcra:gcra:x")
        .query(&mut con)
        .unwrap();
    assert_eq!(exists, 0);
    // other keys still work on the same connection
    assert!(policy
        .check(&redis, &req("z", "o"), 1)
        .unwrap()
        .is_allowed());
}

// ---------------------------------------------------------------------------------------
// Faults
// ---------------------------------------------------------------------------------------

fn fault_policy(mode: FailureMode) -> RedisPolicy<Req> {
    RedisPolicy::builder()
        .name("faults")
        .on_failure(mode)
        .scope(per_user("fixed", FixedWindow::new(per_day(100))))
        .scope(RedisScope::unkeyed("shadow", SlidingLog::new(per_day(100))).shadow())
        .build()
        .unwrap()
}

/// How long a call may take when the server is gone: the deadline, plus scheduling.
const BOUND: Duration = Duration::from_secs(1);

/// The deadline per call of the fault tests' backends.
const FAULT_DEADLINE: Duration = Duration::from_millis(100);

#[test]
fn server_killed_mid_run_each_failure_mode_answers_within_the_deadline() {
    let Some(mut server) = RedisServer::start() else {
        return;
    };
    let backends = BothBackends::open(&server.url(), FAULT_DEADLINE);
    let open = fault_policy(FailureMode::Open);
    let closed = fault_policy(FailureMode::Closed {
        retry_after: Duration::from_secs(7),
    });
    let error = fault_policy(FailureMode::Error);
    let r = req("u", "o");
    assert!(backends.check(&open, &r, false).unwrap().is_from_redis());
    assert!(backends.check(&open, &r, true).unwrap().is_from_redis());

    server.kill();
    for _ in 0..3 {
        let start = Instant::now();
        let d = backends.check(&open, &r, false).unwrap();
        assert!(d.is_allowed() && d.fault().is_some_and(|f| f.is_fault()));
        assert_eq!(d.scope_count(), 0);
        let d = backends.check(&open, &r, true).unwrap();
        assert!(d.is_allowed() && d.fault().is_some());

        let d = backends.check(&closed, &r, false).unwrap();
        assert!(d.is_denied() && d.fault().is_some());
        assert_eq!(d.retry_after(), Some(Duration::from_secs(7)));
        // the enforcing scope reports the denial; the shadow scope is not consulted
        assert_eq!(d.denials().map(|s| s.name).collect::<Vec<_>>(), ["fixed"]);
        let d = backends.check(&closed, &r, true).unwrap();
        assert_eq!(d.retry_after(), Some(Duration::from_secs(7)));

        let e = backends.check(&error, &r, false).unwrap_err();
        assert!(e.is_fault(), "{e:?}");
        let e = backends.check(&error, &r, true).unwrap_err();
        assert!(e.is_fault(), "{e:?}");
        assert!(start.elapsed() < 6 * BOUND, "{:?}", start.elapsed());
    }
}

#[test]
fn a_paused_server_gives_a_timeout_and_a_restarted_one_is_picked_up() {
    let Some(mut server) = RedisServer::start() else {
        return;
    };
    let backends = BothBackends::open(&server.url(), FAULT_DEADLINE);
    let policy = fault_policy(FailureMode::Error);
    let r = req("u", "o");
    assert!(backends.check(&policy, &r, false).unwrap().is_allowed());
    assert!(backends.check(&policy, &r, true).unwrap().is_allowed());

    server.pause();
    for async_ in [false, true] {
        let start = Instant::now();
        let e = backends.check(&policy, &r, async_).unwrap_err();
        assert_eq!(
            e,
            RedisCheckError::Timeout {
                deadline: FAULT_DEADLINE
            },
            "{e}"
        );
        assert!(start.elapsed() < BOUND, "{:?}", start.elapsed());
    }
    server.resume();

    // resumed: both recover by themselves (the state survived: 2 of 100 were spent)
    let d = retry_until_ok(|| backends.check(&policy, &r, false));
    assert!(d >= 95, "{d}");
    let d = retry_until_ok(|| backends.check(&policy, &r, true));
    assert!(d >= 94, "{d}");

    // killed and restarted on the same port: a fresh server, recovered by itself
    server.kill();
    assert!(backends.check(&policy, &r, false).unwrap_err().is_fault());
    assert!(backends.check(&policy, &r, true).unwrap_err().is_fault());
    server.restart();
    assert_eq!(retry_until_ok(|| backends.check(&policy, &r, false)), 99);
    assert_eq!(retry_until_ok(|| backends.check(&policy, &r, true)), 98);
}

/// Checks until one succeeds (a reconnecting client may fail a few calls first) and
/// returns the enforcing scope's remaining.
fn retry_until_ok<'p>(
    mut check: impl FnMut() -> Result<ratewarden::redis::RedisDecision<'p>, RedisCheckError>,
) -> u64 {
    let start = Instant::now();
    loop {
        match check() {
            Ok(d) => return d.scope("fixed").unwrap().decision.remaining(),
            Err(e) => {
                assert!(e.is_fault(), "{e:?}");
                assert!(
                    start.elapsed() < Duration::from_secs(20),
                    "no recovery: {e}"
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Building: names, precision and cluster slots (no server needed)
// ---------------------------------------------------------------------------------------

fn by_user(name: &'static str) -> RedisScope<Req> {
    per_user(name, FixedWindow::new(per_day(10)))
}

#[test]
fn cluster_policies_must_share_a_slot() {
    // no hash tag, two scopes: rejected, saying what to change
    let err = RedisPolicy::<Req>::builder()
        .scope(by_user("a"))
        .scope(by_user("b"))
        .cluster()
        .build()
        .unwrap_err();
    assert_eq!(err, RedisBuildError::NoHashTag);
    assert!(err.to_string().contains("hash_tag"), "{err}");
    // a global scope beside a per-request tag: rejected, naming the scope
    let err = RedisPolicy::<Req>::builder()
        .hash_tag(|r: &Req| Some(r.org.clone()))
        .scope(by_user("a"))
        .scope(RedisScope::unkeyed("everyone", FixedWindow::new(per_day(10))).global())
        .cluster()
        .build()
        .unwrap_err();
    assert_eq!(
        err,
        RedisBuildError::GlobalScope {
            scope: "everyone".into()
        }
    );
    assert!(err.to_string().contains("fixed_hash_tag"), "{err}");
    // the same with a fixed tag, or not for a cluster: fine
    assert!(RedisPolicy::<Req>::builder()
        .fixed_hash_tag("all")
        .scope(by_user("a"))
        .scope(RedisScope::unkeyed("everyone", FixedWindow::new(per_day(10))).global())
        .cluster()
        .build()
        .is_ok());
    assert!(RedisPolicy::<Req>::builder()
        .hash_tag(|r: &Req| Some(r.org.clone()))
        .scope(by_user("a"))
        .scope(RedisScope::unkeyed("everyone", FixedWindow::new(per_day(10))).global())
        .build()
        .is_ok());
    // one scope needs no tag
    assert!(RedisPolicy::<Req>::builder()
        .scope(by_user("a"))
        .cluster()
        .build()
        .is_ok());
}

#[test]
fn names_and_rates_are_validated_when_built() {
    let err = RedisPolicy::<Req>::builder()
        .scope(by_user("a"))
        .scope(by_user("a"))
        .build()
        .unwrap_err();
    assert_eq!(err, RedisBuildError::DuplicateScope { name: "a".into() });
    for bad in ["", "a:b", "{a}"] {
        let err = RedisPolicy::<Req>::builder()
            .scope(by_user(Box::leak(bad.to_string().into_boxed_str())))
            .build()
            .unwrap_err();
        assert!(
            matches!(err, RedisBuildError::BadName { what: "scope", .. }),
            "{bad}: {err:?}"
        );
    }
    // sub-microsecond windows: the server's clock cannot count them
    let fine = Rate::new(3, Duration::from_nanos(10_500)).unwrap();
    let err = RedisPolicy::<Req>::builder()
        .scope(RedisScope::unkeyed("fine", FixedWindow::new(fine)))
        .build()
        .unwrap_err();
    assert!(
        matches!(err, RedisBuildError::Unrepresentable { .. }),
        "{err:?}"
    );
    // a sliding counter whose count × window overflows exact arithmetic
    let huge = Rate::new(1_000_000_000, DAY).unwrap();
    let err = RedisPolicy::<Req>::builder()
        .scope(RedisScope::unkeyed("huge", SlidingWindow::new(huge)))
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("another algorithm"), "{err}");
    // the other three take it
    for alg in [
        RedisAlgorithm::from(FixedWindow::new(huge)),
        SlidingLog::new(huge).into(),
        Gcra::new(huge).into(),
    ] {
        assert!(RedisPolicy::<Req>::builder()
            .scope(RedisScope::unkeyed("huge", alg))
            .build()
            .is_ok());
    }
}

#[test]
fn keys_carry_the_hash_tag_and_a_missing_tag_is_an_error() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let redis = RedisBackend::open(&server.url()).unwrap();
    let policy = RedisPolicy::builder()
        .name("tagged")
        .hash_tag(|r: &Req| Some(r.org.clone()))
        .scope(by_user("user"))
        .scope(RedisScope::unkeyed("org", FixedWindow::new(per_day(10))))
        .cluster()
        .build()
        .unwrap();
    assert!(policy
        .check(&redis, &req("u", "acme"), 1)
        .unwrap()
        .is_allowed());
    let mut con = server.connection();
    let mut keys: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut con).unwrap();
    keys.sort();
    assert_eq!(
        keys,
        [
            "{acme}:ratewarden:tagged:org:fw",
            "{acme}:ratewarden:tagged:user:fw:u"
        ]
    );
    for key in &keys {
        let slot: u64 = redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(key)
            .query(&mut con)
            .unwrap_or_else(|_| keyslot_fallback(key));
        assert_eq!(slot, keyslot_fallback("acme"));
    }
    assert_eq!(
        policy.check(&redis, &req("u", ""), 1).unwrap_err(),
        RedisCheckError::NoHashTag
    );
}

/// CRC16/XMODEM mod 16384 of the hash tag: Redis Cluster's key slot.
fn keyslot_fallback(key: &str) -> u64 {
    let bytes = key.as_bytes();
    let part = match key.find('{') {
        Some(open) => match key[open + 1..].find('}') {
            Some(len) if len > 0 => &bytes[open + 1..open + 1 + len],
            _ => bytes,
        },
        None => bytes,
    };
    let mut crc: u16 = 0;
    for &b in part {
        crc ^= u16::from(b) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    u64::from(crc) % 16_384
}

#[test]
fn an_async_backend_outside_a_runtime_is_a_typed_error() {
    assert_eq!(
        AsyncRedisBackend::open("redis://127.0.0.1:1/").unwrap_err(),
        RedisCheckError::NoRuntime
    );
}

#[test]
fn changing_a_scopes_algorithm_starts_on_fresh_keys_instead_of_the_wrong_type() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let redis = RedisBackend::open(&server.url()).unwrap();
    let v1: RedisPolicy<Req> = RedisPolicy::builder()
        .name("deploy")
        .scope(per_user("per_user", FixedWindow::new(per_day(5))))
        .build()
        .unwrap();
    assert!(v1.check(&redis, &req("u", "o"), 2).unwrap().is_allowed());
    // The next release runs the same scope as GCRA: no WRONGTYPE, a fresh quota.
    let v2: RedisPolicy<Req> = RedisPolicy::builder()
        .name("deploy")
        .scope(per_user("per_user", Gcra::new(per_day(5))))
        .build()
        .unwrap();
    let d = v2.check(&redis, &req("u", "o"), 1).unwrap();
    assert_eq!(d.scope("per_user").unwrap().decision.remaining(), 4);
}
