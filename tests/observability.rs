//! What a policy reports about its decisions: `Policy::stats()`, and with the `metrics`
//! feature the same counters through the `metrics` facade.

use std::time::Duration;

use ratewarden::Clock;

#[path = "common/policy_fixture.rs"]
mod fixture;

use fixture::{policy, traffic, Req};

#[test]
fn stats_count_every_scope_and_shadow_verdict_exactly() {
    let (clock, mock) = Clock::mock();
    let policy = policy(clock);
    traffic(&policy);
    let stats = policy.stats();
    // user 1: writes are i = 0, 3, 6, 9; the 4th (i = 9) is denied by "writes" and
    // consumes nothing, so i = 10 is the user's 10th and i = 11 is denied by "user".
    assert_eq!((stats.allowed, stats.denied), (10 + 2, 2));
    let by_name = |n: &str| stats.scopes.iter().find(|s| &*s.name == n).unwrap().clone();
    let user = by_name("user");
    // "user" itself allowed i = 0..=10 (i = 9 included) and user 2's two requests
    assert_eq!((user.allowed, user.denied, user.shadow_denied), (13, 1, 0));
    let writes = by_name("writes");
    assert_eq!((writes.allowed, writes.denied), (3, 1));
    let daily = by_name("new_daily");
    // 5 allowed for user 1 and 2 for user 2; from user 1's 6th admitted request on, the
    // shadow scope would deny (its denials consume nothing; the request still passes)
    assert_eq!(
        (daily.allowed, daily.denied, daily.shadow_denied),
        (7, 0, 7)
    );
    // near limit (≥ 80 % used after the request): "user" at 8, 9 and 10 of 10 (i = 7,
    // 8, 9), at 10 (i = 10) and its denial (i = 11); "writes" at 3/3 (i = 6) and its denial
    assert_eq!(user.near_limit, 5);
    assert_eq!(writes.near_limit, 2);
    assert_eq!(user.tracked_keys, 2);
    // idle keys are evicted and counted, without any call, by later traffic
    mock.increment(Duration::from_secs(86_400));
    for round in 0..8 {
        for u in 100..1_100 {
            policy
                .check(
                    &Req {
                        user: u + round % 2,
                        write: false,
                    },
                    1,
                )
                .unwrap();
        }
    }
    let stats = policy.stats();
    assert!(stats.scopes[0].evictions >= 2, "{:?}", stats.scopes[0]);
}

#[test]
fn stats_are_exact_under_threads() {
    let (clock, _mock) = Clock::mock();
    let policy = std::sync::Arc::new(policy(clock));
    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            let policy = policy.clone();
            std::thread::spawn(move || {
                for i in 0..2_000u64 {
                    policy
                        .check(
                            &Req {
                                user: t * 10_000 + i % 50,
                                write: false,
                            },
                            1,
                        )
                        .unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let stats = policy.stats();
    assert_eq!(stats.allowed + stats.denied, 8_000);
    assert_eq!(stats.allowed, 4 * 50 * 10);
    assert_eq!(stats.scopes[0].allowed + stats.scopes[0].denied, 8_000);
}

#[cfg(feature = "metrics")]
#[test]
fn metrics_carry_scope_names_and_never_keys() {
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};
    use metrics_util::MetricKind;

    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let (clock, _mock) = Clock::mock();
    let policy = metrics::with_local_recorder(&recorder, || policy(clock));
    traffic(&policy);
    policy.stats(); // publishes key gauges
    let snapshot = snapshotter.snapshot().into_vec();
    let value = |name: &str, labels: &[(&str, &str)]| -> Option<u64> {
        snapshot.iter().find_map(|(key, _, _, v)| {
            let k = key.key();
            let matches = k.name() == name
                && labels
                    .iter()
                    .all(|(n, want)| k.labels().any(|l| l.key() == *n && l.value() == *want));
            match (matches, v) {
                (true, DebugValue::Counter(c)) => Some(*c),
                (true, DebugValue::Gauge(g)) => Some(g.into_inner() as u64),
                _ => None,
            }
        })
    };
    assert_eq!(
        value(
            "ratewarden_checks_total",
            &[("policy", "api"), ("outcome", "allowed")]
        ),
        Some(12)
    );
    assert_eq!(
        value("ratewarden_checks_total", &[("outcome", "denied")]),
        Some(2)
    );
    assert_eq!(
        value(
            "ratewarden_decisions_total",
            &[("scope", "writes"), ("outcome", "denied")]
        ),
        Some(1)
    );
    assert_eq!(
        value(
            "ratewarden_decisions_total",
            &[("scope", "new_daily"), ("outcome", "shadow_denied")]
        ),
        Some(7)
    );
    assert_eq!(
        value("ratewarden_near_limit_total", &[("scope", "user")]),
        Some(5)
    );
    assert_eq!(
        value("ratewarden_tracked_keys", &[("scope", "user")]),
        Some(2)
    );
    // Labels name policies, scopes and outcomes only: never a key.
    for (key, _, _, _) in &snapshot {
        assert!(matches!(
            key.kind(),
            MetricKind::Counter | MetricKind::Gauge
        ));
        for label in key.key().labels() {
            assert!(
                ["policy", "scope", "outcome"].contains(&label.key()),
                "{label:?}"
            );
            assert!(
                !label.value().chars().all(|c| c.is_ascii_digit()),
                "{label:?}"
            );
        }
    }
}

#[test]
fn stats_stay_exact_past_the_owned_stripes() {
    // 80 threads: the first 63 recording threads of the process own a stripe, the rest
    // share one with atomic increments; the totals must be exact either way.
    let (clock, _mock) = Clock::mock();
    let policy = std::sync::Arc::new(policy(clock));
    let threads: Vec<_> = (0..80u64)
        .map(|t| {
            let policy = policy.clone();
            std::thread::spawn(move || {
                for i in 0..200u64 {
                    policy
                        .check(
                            &Req {
                                user: 1_000_000 + t * 1_000 + i % 20,
                                write: false,
                            },
                            1,
                        )
                        .unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let stats = policy.stats();
    assert_eq!(stats.allowed + stats.denied, 80 * 200);
    assert_eq!(stats.allowed, 80 * 20 * 10);
    assert_eq!(stats.scopes[0].denied, 80 * 200 - 80 * 20 * 10);
}
