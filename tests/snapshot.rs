//! Snapshots as a user sees them: random traffic, a snapshot through JSON, a restore into
//! a new instance, and the same traffic against both must give the same decisions;
//! damaged snapshots fail cleanly and change nothing; a changed policy keeps what still
//! exists and reports the rest.
#![cfg(feature = "serde")]

use proptest::prelude::*;
use ratewarden::algorithm::Algorithm;
use ratewarden::snapshot::{
    DropReason, Key, LimiterSnapshot, PolicySnapshot, SnapshotError, SNAPSHOT_VERSION,
};
use ratewarden::{
    Anchor, Clock, Decision, FixedWindow, Gcra, KeyedLimiter, Nanos, Policy, Rate, Scope,
    SlidingLog, SlidingWindow, UnkeyedLimiter,
};

#[path = "common/config_files.rs"]
mod config_files;

const MS: u64 = 1_000_000;

/// Every observable field of a decision.
fn seen(d: &Decision) -> (bool, u64, u64, u64, u64, u64) {
    (
        d.is_allowed(),
        d.limit(),
        d.remaining(),
        d.window_nanos(),
        d.reset_after_nanos(),
        d.retry_after_nanos(),
    )
}

/// One step of traffic: advance by `gap` ms, then check `cost` for `key` (or refund it).
#[derive(Debug, Clone, Copy)]
struct Op {
    gap: u64,
    key: u64,
    cost: u64,
    refund: bool,
}

fn ops() -> impl Strategy<Value = Vec<Op>> {
    prop::collection::vec(
        (0..400u64, 0..6u64, 0..4u64, prop::bool::weighted(0.1)).prop_map(
            |(gap, key, cost, refund)| Op {
                gap,
                key,
                cost,
                refund,
            },
        ),
        1..120,
    )
}

fn run_keyed<A: Algorithm>(l: &KeyedLimiter<u64, A>, ops: &[Op], now: &mut Nanos) -> Vec<String> {
    ops.iter()
        .map(|op| {
            *now += op.gap * MS;
            if op.refund {
                l.refund_at(&op.key, op.cost, *now);
                return "refund".to_owned();
            }
            format!("{:?}", l.check_at(&op.key, op.cost, *now).map(|d| seen(&d)))
        })
        .collect()
}

/// Traffic, a snapshot through JSON into a new limiter, then the rest of the traffic
/// against the original and the restored one.
fn keyed_round_trip<A: Algorithm>(alg: A, before: &[Op], after: &[Op]) {
    let (clock, _mock) = Clock::mock();
    let original: KeyedLimiter<u64, A> = KeyedLimiter::with_clock(alg.clone(), clock.clone());
    let start = 1_000_000 * MS;
    let mut now = start;
    run_keyed(&original, before, &mut now);
    let json = serde_json::to_string(&original.snapshot_at(now).unwrap()).unwrap();
    let snapshot: LimiterSnapshot = serde_json::from_str(&json).unwrap();
    assert_eq!(snapshot.version, SNAPSHOT_VERSION);
    let restored: KeyedLimiter<u64, A> = KeyedLimiter::with_clock(alg, clock);
    restored.restore_at(&snapshot, now).unwrap();
    let mut now_b = now;
    let a = run_keyed(&original, after, &mut now);
    let b = run_keyed(&restored, after, &mut now_b);
    assert_eq!(a, b);
}

fn rate() -> Rate {
    Rate::new(5, std::time::Duration::from_secs(1)).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn keyed_gcra_round_trip(before in ops(), after in ops()) {
        keyed_round_trip(Gcra::new(rate()).with_burst(3).unwrap(), &before, &after);
    }

    #[test]
    fn keyed_fixed_window_round_trip(before in ops(), after in ops(), first in any::<bool>()) {
        let anchor = if first { Anchor::FirstRequest } else { Anchor::Clock };
        keyed_round_trip(FixedWindow::new(rate()).anchored(anchor), &before, &after);
    }

    #[test]
    fn keyed_sliding_window_round_trip(before in ops(), after in ops()) {
        keyed_round_trip(SlidingWindow::new(rate()), &before, &after);
    }

    #[test]
    fn keyed_sliding_log_round_trip(before in ops(), after in ops()) {
        keyed_round_trip(SlidingLog::new(rate()), &before, &after);
    }

    #[test]
    fn policy_round_trip(before in ops(), after in ops()) {
        let build = |clock: Clock| {
            Policy::builder()
                .clock(clock)
                .scope(Scope::keyed("burst", Gcra::new(rate()), |r: &(u64, bool)| Some(r.0)))
                .scope(
                    Scope::keyed("minute", SlidingLog::new("20/min".parse().unwrap()), |r: &(u64, bool)| {
                        Some(r.0 % 3)
                    })
                    .limit_by(|r: &(u64, bool)| r.1.then_some(30)),
                )
                .scope(Scope::keyed_by_ref("name", SlidingWindow::new("8/2s".parse().unwrap()), |_: &(u64, bool)| Some("all")))
                .scope(Scope::unkeyed("global", FixedWindow::new("40/10s".parse().unwrap())))
                .build()
        };
        let run = |p: &Policy<(u64, bool)>, ops: &[Op], now: &mut Nanos| -> Vec<String> {
            ops.iter().map(|op| {
                *now += op.gap * MS;
                let req = (op.key, op.key % 2 == 0);
                if op.refund {
                    p.refund_at(&req, op.cost, *now);
                    return "refund".to_owned();
                }
                match p.check_at(&req, op.cost, *now) {
                    Ok(d) => format!("{} {:?}", d.is_allowed(), d.scopes().map(|s| (s.name, seen(&s.decision))).collect::<Vec<_>>()),
                    Err(e) => format!("{e}"),
                }
            }).collect()
        };
        let (clock, _mock) = Clock::mock();
        let original = build(clock.clone());
        let mut now = 50_000 * MS;
        run(&original, &before, &mut now);
        let json = serde_json::to_string_pretty(&original.snapshot_at(now).unwrap()).unwrap();
        let restored = build(clock);
        let report = restored.restore_at(&serde_json::from_str(&json).unwrap(), now).unwrap();
        prop_assert!(report.is_complete(), "{:?}", report);
        prop_assert_eq!(report.restored.len(), 4);
        let mut now_b = now;
        prop_assert_eq!(run(&original, &after, &mut now), run(&restored, &after, &mut now_b));
    }
}

#[test]
fn unkeyed_round_trip_and_idle_limiters_write_no_state() {
    let (clock, mock) = Clock::mock();
    let a = UnkeyedLimiter::with_clock(SlidingLog::new(rate()), clock.clone());
    assert!(a.snapshot().unwrap().keys.is_empty());
    a.check(2).unwrap();
    mock.increment(std::time::Duration::from_millis(300));
    a.check(2).unwrap();
    let snapshot = a.snapshot().unwrap();
    assert_eq!(snapshot.keys.len(), 1);
    assert_eq!(snapshot.keys[0].key, Key::Unit);
    let b = UnkeyedLimiter::with_clock(SlidingLog::new(rate()), clock);
    b.restore(&serde_json::from_str(&serde_json::to_string(&snapshot).unwrap()).unwrap())
        .unwrap();
    for _ in 0..8 {
        mock.increment(std::time::Duration::from_millis(150));
        assert_eq!(seen(&a.check(1).unwrap()), seen(&b.check(1).unwrap()));
    }
}

/// A keyed GCRA limiter with traffic on a few keys, and its snapshot as JSON.
fn gcra_fixture(clock: &Clock) -> (KeyedLimiter<String>, serde_json::Value) {
    let limiter: KeyedLimiter<String> = KeyedLimiter::with_clock(Gcra::new(rate()), clock.clone());
    for (key, cost) in [("a", 2), ("b", 5), ("c", 1)] {
        limiter.check(key, cost).unwrap();
    }
    let value = serde_json::to_value(limiter.snapshot().unwrap()).unwrap();
    (limiter, value)
}

/// A target with state of its own, to see that failed restores leave it alone.
fn busy_target(clock: &Clock) -> KeyedLimiter<String> {
    let target: KeyedLimiter<String> = KeyedLimiter::with_clock(Gcra::new(rate()), clock.clone());
    target.check("a", 4).unwrap();
    target.check("z", 1).unwrap();
    target
}

fn state_of(l: &KeyedLimiter<String>) -> Vec<(Key, String)> {
    let mut keys: Vec<_> = l
        .snapshot()
        .unwrap()
        .keys
        .into_iter()
        .map(|k| (k.key, format!("{:?}", k.state)))
        .collect();
    keys.sort_by(|a, b| format!("{:?}", a.0).cmp(&format!("{:?}", b.0)));
    keys
}

#[test]
fn damaged_snapshots_are_typed_errors_and_change_nothing() {
    let (clock, _mock) = Clock::mock();
    let (_, good) = gcra_fixture(&clock);
    let target = busy_target(&clock);
    let before = state_of(&target);

    type Expect = fn(&SnapshotError) -> bool;
    let damaged: Vec<(&str, serde_json::Value, Expect)> = vec![
        (
            "future version",
            {
                let mut v = good.clone();
                v["version"] = (SNAPSHOT_VERSION + 1).into();
                v
            },
            |e| matches!(e, SnapshotError::UnsupportedVersion { found, .. } if *found == SNAPSHOT_VERSION + 1),
        ),
        (
            "lock marker as a state",
            {
                let mut v = good.clone();
                v["keys"][1]["state"] = serde_json::json!({ "gcra": u64::MAX });
                v
            },
            |e| matches!(e, SnapshotError::Corrupted { .. }),
        ),
        (
            "another algorithm's state",
            {
                let mut v = good.clone();
                v["keys"][2]["state"] =
                    serde_json::json!({ "fixed_window": { "start": 0, "count": 1 } });
                v
            },
            |e| matches!(e, SnapshotError::Corrupted { .. }),
        ),
        (
            "a key twice",
            {
                let mut v = good.clone();
                let first = v["keys"][0].clone();
                v["keys"].as_array_mut().unwrap().push(first);
                v
            },
            |e| matches!(e, SnapshotError::Corrupted { .. }),
        ),
        (
            "a key of another type",
            {
                let mut v = good.clone();
                v["keys"][2]["key"] = serde_json::json!({ "u64": 3 });
                v
            },
            |e| matches!(e, SnapshotError::KeyMismatch { .. }),
        ),
        (
            "another algorithm",
            {
                let mut v = good.clone();
                v["algorithm"] = serde_json::json!({ "kind": "sliding_log" });
                v
            },
            |e| {
                matches!(
                    e,
                    SnapshotError::AlgorithmMismatch {
                        expected: "gcra",
                        found: "sliding_log"
                    }
                )
            },
        ),
        (
            "an impossible burst",
            {
                let mut v = good.clone();
                v["algorithm"] = serde_json::json!({ "kind": "gcra", "burst": 0 });
                v
            },
            |e| matches!(e, SnapshotError::Corrupted { .. }),
        ),
    ];
    for (what, value, expected) in damaged {
        let mut snapshot: LimiterSnapshot = serde_json::from_value(value).expect(what);
        if snapshot.version == SNAPSHOT_VERSION {
            // Damaged on disk: the checksum no longer matches.
            assert!(!snapshot.is_intact(), "{what}");
            match target.restore(&snapshot) {
                Err(SnapshotError::Corrupted { reason, .. }) => {
                    assert!(reason.contains("checksum"), "{what}: {reason}")
                }
                other => panic!("{what}: {other:?}"),
            }
            // Edited on purpose and sealed again: the content itself is checked.
            snapshot.seal();
        }
        let error = target.restore(&snapshot).expect_err(what);
        assert!(expected(&error), "{what}: {error:?}");
        assert!(target.validate_snapshot(&snapshot).is_err(), "{what}");
        assert_eq!(state_of(&target), before, "{what}");
    }

    // Values that are no snapshot at all fail to deserialise.
    for (what, value) in [
        ("a bad rate", {
            let mut v = good.clone();
            v["rate"] = "0/min".into();
            v
        }),
        ("an unknown field", {
            let mut v = good.clone();
            v["extra"] = 1.into();
            v
        }),
        ("a missing field", {
            let mut v = good.clone();
            v.as_object_mut().unwrap().remove("keys");
            v
        }),
        ("a negative time", {
            let mut v = good.clone();
            v["keys"][0]["state"]["gcra"] = (-1).into();
            v
        }),
    ] {
        assert!(
            serde_json::from_value::<LimiterSnapshot>(value).is_err(),
            "{what}"
        );
    }

    // A good snapshot restores: the target's own keys stay, the snapshot's are set.
    let snapshot: LimiterSnapshot = serde_json::from_value(good).unwrap();
    target.restore(&snapshot).unwrap();
    assert_eq!(target.peek("a", 0).unwrap().remaining(), 3);
    assert_eq!(target.peek("b", 0).unwrap().remaining(), 0);
    assert_eq!(target.peek("z", 0).unwrap().remaining(), 4);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Any one byte of a written snapshot changed: it no longer loads, or the restore
    /// refuses it, or it means exactly what it meant (a change in white space).
    #[test]
    fn a_changed_byte_is_caught(at in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let (clock, mock) = Clock::mock();
        mock.increment(std::time::Duration::from_secs(1_000));
        let policy = Policy::builder()
            .clock(clock.clone())
            .scope(Scope::keyed("user", Gcra::new(rate()), |r: &(u64, String)| Some(r.0)))
            .scope(Scope::keyed("name", SlidingLog::new(rate()), |r: &(u64, String)| Some(r.1.clone())))
            .scope(Scope::keyed("window", SlidingWindow::new(rate()), |r: &(u64, String)| Some(r.0)))
            .scope(Scope::keyed("fixed", FixedWindow::new(rate()), |r: &(u64, String)| Some(r.0)))
            .build();
        for (user, name) in [(1, "a"), (2, "b"), (1, "b")] {
            policy.check(&(user, name.to_owned()), 1).unwrap();
            mock.increment(std::time::Duration::from_millis(100));
        }
        let good = policy.snapshot().unwrap();
        let mut text = serde_json::to_string(&good).unwrap().into_bytes();
        let i = at.index(text.len());
        prop_assume!(text[i] != byte);
        text[i] = byte;
        let Ok(damaged) = serde_json::from_slice::<PolicySnapshot>(&text) else {
            return Ok(());
        };
        let fresh = Policy::builder()
            .clock(clock)
            .scope(Scope::keyed("user", Gcra::new(rate()), |r: &(u64, String)| Some(r.0)))
            .build();
        match fresh.restore(&damaged) {
            Err(_) => prop_assert!(fresh.snapshot().unwrap().scopes[0].limiter.keys.is_empty()),
            Ok(_) => prop_assert_eq!(damaged, good),
        }
    }
}

#[test]
fn every_truncation_of_a_snapshot_fails_to_load() {
    let (clock, _mock) = Clock::mock();
    let (_, good) = gcra_fixture(&clock);
    let text = serde_json::to_string(&good).unwrap();
    for end in 0..text.len() {
        assert!(
            serde_json::from_str::<LimiterSnapshot>(&text[..end]).is_err(),
            "{}",
            &text[..end]
        );
    }
}

#[test]
fn sliding_log_invariants_are_checked() {
    let (clock, _mock) = Clock::mock();
    let limiter: KeyedLimiter<u64, SlidingLog> =
        KeyedLimiter::with_clock(SlidingLog::new(rate()), clock.clone());
    limiter.check_at(&1, 2, 10 * MS).unwrap();
    limiter.check_at(&1, 1, 20 * MS).unwrap();
    let good = serde_json::to_value(limiter.snapshot_at(30 * MS).unwrap()).unwrap();
    let state = &good["keys"][0]["state"]["sliding_log"];
    assert_eq!(state["entries"].as_array().unwrap().len(), 2, "{good}");
    let mutations: Vec<fn(&mut serde_json::Value)> = vec![
        // times out of order
        |s| s["entries"][1]["at"] = 0.into(),
        // running totals out of order
        |s| s["entries"][1]["total"] = 1.into(),
        // more than the window can hold logged
        |s| s["entries"][1]["total"] = 2_000_000_000u64.into(),
        // an expired total above the first entry's
        |s| s["expired_total"] = 5.into(),
    ];
    let target: KeyedLimiter<u64, SlidingLog> =
        KeyedLimiter::with_clock(SlidingLog::new(rate()), clock);
    for mutate in mutations {
        let mut value = good.clone();
        mutate(&mut value["keys"][0]["state"]["sliding_log"]);
        let mut snapshot: LimiterSnapshot = serde_json::from_value(value).unwrap();
        snapshot.seal();
        assert!(matches!(
            target.restore_at(&snapshot, 30 * MS),
            Err(SnapshotError::Corrupted { .. })
        ));
        assert!(target.is_empty());
    }
    target
        .restore_at(&serde_json::from_value(good).unwrap(), 30 * MS)
        .unwrap();
    assert_eq!(target.peek_at(&1, 0, 30 * MS).unwrap().remaining(), 2);
}

#[test]
fn tuple_and_custom_keys_opt_in() {
    let (clock, _mock) = Clock::mock();
    let plain: KeyedLimiter<(u64, u32)> =
        KeyedLimiter::with_clock(Gcra::new(rate()), clock.clone());
    plain.check(&(1, 2), 1).unwrap();
    assert!(matches!(
        plain.snapshot(),
        Err(SnapshotError::Unsupported { .. })
    ));
    let opted: KeyedLimiter<(u64, u32)> = KeyedLimiter::builder(Gcra::new(rate()))
        .clock(clock.clone())
        .snapshot_keys()
        .build();
    opted.check(&(1, 2), 3).unwrap();
    let snapshot = opted.snapshot().unwrap();
    assert_eq!(
        snapshot.keys[0].key,
        Key::Tuple(vec![Key::U64(1), Key::U64(2)])
    );

    // In a policy: a scope over a limiter built with `snapshot_keys`.
    let policy = Policy::builder()
        .clock(clock.clone())
        .scope(Scope::with_limiter(
            "pair",
            KeyedLimiter::builder(Gcra::new(rate()))
                .snapshot_keys()
                .build(),
            |r: &(u64, u32)| Some(*r),
        ))
        .build();
    policy.check(&(1, 2), 2).unwrap();
    let taken = policy.snapshot().unwrap();
    assert_eq!(taken.scopes[0].limiter.keys.len(), 1);

    // A policy whose tuple-keyed scope did not opt in names it.
    let policy = Policy::builder()
        .clock(clock)
        .scope(Scope::keyed("pair", Gcra::new(rate()), |r: &(u64, u32)| {
            Some(*r)
        }))
        .build();
    match policy.snapshot() {
        Err(SnapshotError::Unsupported { what, .. }) => assert!(what.contains("pair"), "{what}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn too_many_keys_for_the_target_changes_nothing() {
    let (clock, _mock) = Clock::mock();
    let (_, good) = gcra_fixture(&clock);
    let small: KeyedLimiter<String> = KeyedLimiter::builder(Gcra::new(rate()))
        .clock(clock)
        .max_keys(2)
        .build();
    let snapshot: LimiterSnapshot = serde_json::from_value(good).unwrap();
    assert!(matches!(
        small.restore(&snapshot),
        Err(SnapshotError::TooManyKeys {
            keys: 3,
            room: 2,
            ..
        })
    ));
    assert!(small.is_empty());
}

#[derive(Clone, Copy)]
struct Req {
    user: u64,
    org: u64,
}

/// A scope keyed by the request's organization.
fn by_org<A: Algorithm>(name: &str, alg: A) -> Scope<Req> {
    Scope::keyed(name, alg, |r: &Req| Some(r.org))
}

fn v1(clock: &Clock) -> Policy<Req> {
    Policy::builder()
        .clock(clock.clone())
        .scope(Scope::keyed(
            "user",
            Gcra::new("10/min".parse().unwrap()),
            |r: &Req| Some(r.user),
        ))
        .scope(by_org("org", FixedWindow::new("100/hour".parse().unwrap())))
        .scope(by_org(
            "org_burst",
            SlidingLog::new("20/min".parse().unwrap()),
        ))
        .scope(by_org(
            "retired",
            SlidingWindow::new("50/min".parse().unwrap()),
        ))
        .scope(by_org(
            "renamed_key",
            FixedWindow::new("5/min".parse().unwrap()),
        ))
        .build()
}

#[test]
fn a_changed_policy_keeps_the_scopes_that_still_exist() {
    let (clock, _mock) = Clock::mock();
    let old = v1(&clock);
    for _ in 0..4 {
        old.check(&Req { user: 1, org: 9 }, 1).unwrap();
    }
    let saved = serde_json::to_string(&old.snapshot().unwrap()).unwrap();
    let snapshot: PolicySnapshot = serde_json::from_str(&saved).unwrap();

    let new = Policy::builder()
        .clock(clock.clone())
        // same name, same algorithm, a larger rate: carried over
        .scope(Scope::keyed(
            "user",
            Gcra::new("100/min".parse().unwrap()),
            |r: &Req| Some(r.user),
        ))
        // same
        .scope(by_org("org", FixedWindow::new("100/hour".parse().unwrap())))
        // another algorithm now
        .scope(by_org("org_burst", Gcra::new("20/min".parse().unwrap())))
        // another key type now
        .scope(Scope::keyed(
            "renamed_key",
            FixedWindow::new("5/min".parse().unwrap()),
            |r: &Req| Some(format!("org-{}", r.org)),
        ))
        // new
        .scope(by_org(
            "daily",
            FixedWindow::new("1000/day".parse().unwrap()),
        ))
        .build();
    let report = new.restore(&snapshot).unwrap();
    assert_eq!(report.restored, ["user", "org"]);
    let dropped: Vec<_> = report
        .dropped
        .iter()
        .map(|d| (d.name.as_str(), d.reason))
        .collect();
    assert_eq!(
        dropped,
        [
            ("org_burst", DropReason::AlgorithmChanged),
            ("retired", DropReason::NoSuchScope),
            ("renamed_key", DropReason::KeyTypeChanged),
        ]
    );
    assert_eq!(report.missing, ["daily"]);
    assert!(!report.is_complete());

    let d = new.peek(&Req { user: 1, org: 9 }, 1).unwrap();
    let remaining = |name| d.scope(name).unwrap().decision.remaining();
    // 4 used stay used under the new rate
    assert_eq!(remaining("user"), 95);
    assert_eq!(remaining("org"), 95);
    assert_eq!(remaining("org_burst"), 19);
    assert_eq!(remaining("renamed_key"), 4);
    assert_eq!(remaining("daily"), 999);
}

#[test]
fn a_corrupted_scope_fails_the_whole_restore() {
    let (clock, _mock) = Clock::mock();
    let old = v1(&clock);
    old.check(&Req { user: 1, org: 9 }, 3).unwrap();
    let mut value = serde_json::to_value(old.snapshot().unwrap()).unwrap();
    // the fixed-window scope (second) claims more than its window can hold
    value["scopes"][1]["limiter"]["keys"][0]["state"]["fixed_window"]["count"] =
        10_000_000_000_000u64.into();
    let mut snapshot: PolicySnapshot = serde_json::from_value(value.clone()).unwrap();
    let target = v1(&clock);
    target.check(&Req { user: 1, org: 9 }, 1).unwrap();
    let before = serde_json::to_value(target.snapshot().unwrap()).unwrap();
    // As damaged on disk, the policy's checksum catches it.
    assert!(matches!(
        target.restore(&snapshot),
        Err(SnapshotError::Corrupted { what, .. }) if what == "policy snapshot"
    ));
    // Sealed again, the scope's own check does, and names it.
    snapshot.seal();
    match target.restore(&snapshot) {
        Err(SnapshotError::Corrupted { what, .. }) => assert!(what.contains("org"), "{what}"),
        other => panic!("{other:?}"),
    }
    // the valid first scope was not applied either
    assert_eq!(
        serde_json::to_value(target.snapshot().unwrap()).unwrap(),
        before
    );

    value["version"] = 0.into();
    let snapshot: PolicySnapshot = serde_json::from_value(value.clone()).unwrap();
    assert!(matches!(
        target.restore(&snapshot),
        Err(SnapshotError::UnsupportedVersion { found: 0, .. })
    ));
    assert_eq!(
        serde_json::to_value(target.snapshot().unwrap()).unwrap(),
        before
    );
}

#[test]
fn scopes_of_one_name_pair_up_in_order() {
    let (clock, _mock) = Clock::mock();
    let build = |scopes: usize| {
        (0..scopes)
            .fold(Policy::builder().clock(clock.clone()), |b, i| {
                b.scope(Scope::keyed(
                    "twin",
                    FixedWindow::new(rate()),
                    move |r: &u64| Some(*r + i as u64),
                ))
            })
            .build()
    };
    let two = build(2);
    two.check(&1, 3).unwrap(); // keys 1 (first scope) and 2 (second)
    let snapshot = two.snapshot().unwrap();
    let again = build(2);
    let report = again.restore(&snapshot).unwrap();
    assert!(report.is_complete(), "{report:?}");
    let d = again.peek(&1, 0).unwrap();
    let left: Vec<u64> = d.scopes().map(|s| s.decision.remaining()).collect();
    assert_eq!(left, [2, 2]);
    // One fewer scope of that name: the second state is dropped.
    let one = build(1);
    let report = one.restore(&snapshot).unwrap();
    assert_eq!(report.restored, ["twin"]);
    assert_eq!(report.dropped[0].reason, DropReason::NoSuchScope);
}

#[test]
fn a_snapshot_restored_under_a_real_clock_keeps_its_meaning() {
    // Times are Unix-epoch nanoseconds: a state written by one process and read by
    // another one on the real clock still counts what was used.
    let writer: KeyedLimiter<u64, FixedWindow> =
        KeyedLimiter::new(FixedWindow::new("10/hour".parse().unwrap()));
    writer.check(&1, 7).unwrap();
    let text = serde_json::to_string(&writer.snapshot().unwrap()).unwrap();
    let reader: KeyedLimiter<u64, FixedWindow> =
        KeyedLimiter::new(FixedWindow::new("10/hour".parse().unwrap()));
    reader
        .restore(&serde_json::from_str(&text).unwrap())
        .unwrap();
    // Unless the hour turned in between, 3 are left; either way never more than fresh.
    let left = reader.peek(&1, 0).unwrap().remaining();
    assert!(left == 3 || left == 10, "{left}");
}

/// Any state a (sealed) snapshot may hold: a restore either refuses it or leaves a
/// limiter that answers every later check, peek and refund without panicking (the tests
/// run with overflow checks on).
fn arbitrary_state() -> impl Strategy<Value = serde_json::Value> {
    let edge = prop_oneof![
        Just(0u64),
        Just(1u64),
        Just(u64::MAX),
        Just(u64::MAX - 1),
        Just(u64::MAX / 2),
        Just(1_000 * MS),
        0..2_000 * MS,
        any::<u64>(),
    ];
    let edges = prop::collection::vec(edge.clone(), 0..5);
    let small = prop::collection::vec((1..3 * MS, 1..4u64), 0..6);
    (0..7u8, edge.clone(), edge.clone(), edge, edges, small).prop_map(
        |(kind, a, b, c, list, steps)| match kind {
            0 => serde_json::json!({ "gcra": a }),
            6 => serde_json::json!({ "calendar": { "start": a, "end": b, "count": c % 12 } }),
            1 => serde_json::json!({ "fixed_window": { "start": a, "count": b } }),
            2 => serde_json::json!({ "sliding_window": { "start": a, "prev": b, "cur": c } }),
            // on the window grid, with counts around the limit
            3 => serde_json::json!({ "sliding_window": {
                "start": a - a % (1_000 * MS), "prev": b % 12, "cur": c % 12
            } }),
            4 => {
                let entries: Vec<_> = list
                    .chunks(2)
                    .map(|p| serde_json::json!({ "at": p[0], "total": p.get(1).copied().unwrap_or(c) }))
                    .collect();
                serde_json::json!({ "sliding_log": { "entries": entries, "expired_total": b } })
            }
            // increasing times and totals from anywhere
            _ => {
                let (mut at, mut total) = (a % (u64::MAX / 2), b % 1_000);
                let expired_total = total;
                let entries: Vec<_> = steps
                    .iter()
                    .map(|&(gap, cost)| {
                        at = at.saturating_add(gap);
                        total += cost;
                        serde_json::json!({ "at": at, "total": total })
                    })
                    .collect();
                let expired_total = if entries.is_empty() { 0 } else { expired_total };
                serde_json::json!({ "sliding_log": { "entries": entries, "expired_total": expired_total } })
            }
        },
    )
}

fn survive<A: Algorithm>(alg: A, state: &serde_json::Value, times: &[u64]) {
    let kind = serde_json::to_value(alg.snapshot_kind().unwrap()).unwrap();
    let value = serde_json::json!({
        "version": SNAPSHOT_VERSION,
        "taken_at": 1_000 * MS,
        "algorithm": kind,
        "rate": alg.rate(),
        "keys": [{ "key": { "u64": 1 }, "state": state }],
    });
    let Ok(snapshot) = serde_json::from_value::<LimiterSnapshot>(value) else {
        return;
    };
    let (clock, _mock) = Clock::mock();
    let limiter: KeyedLimiter<u64, A> = KeyedLimiter::with_clock(alg.clone(), clock);
    if limiter.restore_at(&snapshot, times[0]).is_err() {
        assert!(limiter.is_empty());
        return;
    }
    let capacity = alg.capacity();
    for (i, &now) in times.iter().enumerate() {
        let cost = [0, 1, capacity][i % 3];
        let _ = limiter.peek_at(&1, cost, now).unwrap();
        let _ = limiter.check_at(&1, cost, now).unwrap();
        limiter.refund_at(&1, cost, now);
        if i % 4 == 3 {
            limiter.set_rate_at(
                Rate::new(capacity * 2, alg.rate().window() * 3).unwrap(),
                now,
            );
        }
    }
    let _ = limiter.snapshot_at(times[times.len() - 1]).unwrap();
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn restored_states_never_make_a_limiter_panic(
        state in arbitrary_state(),
        times in prop::collection::vec(prop_oneof![0..3_000 * MS, Just(u64::MAX - 1), any::<u64>()], 1..8),
    ) {
        survive(Gcra::new(rate()), &state, &times);
        survive(FixedWindow::new(rate()), &state, &times);
        survive(FixedWindow::new(rate()).anchored(Anchor::FirstRequest), &state, &times);
        survive(SlidingWindow::new(rate()), &state, &times);
        survive(SlidingLog::new(rate()), &state, &times);
        survive(ratewarden::CalendarQuota::monthly(5).unwrap(), &state, &times);
        survive(ratewarden::CalendarQuota::daily(5).unwrap(), &state, &times);
    }
}

#[test]
fn calendar_quotas_survive_a_restart_with_each_key_in_its_own_period() {
    use ratewarden::{CalendarQuota, CycleAnchor};
    use std::time::Duration;

    #[derive(Clone)]
    struct Req {
        account: u64,
        billing: CycleAnchor,
    }
    let build = |clock: &Clock| {
        Policy::builder()
            .clock(clock.clone())
            .scope(Scope::calendar(
                "videos",
                CalendarQuota::monthly(3).unwrap(),
                |r: &Req| Some((r.account, r.billing)),
            ))
            .scope(Scope::keyed(
                "daily",
                CalendarQuota::daily(5).unwrap(),
                |r: &Req| Some(r.account),
            ))
            .build()
    };
    let (clock, mock) = Clock::mock();
    mock.increment(Duration::from_secs(1_709_251_200)); // 2024-03-01T00:00:00Z
    let accounts = [
        Req {
            account: 7,
            billing: "2024-01-31T09:30:00Z".parse().unwrap(),
        },
        Req {
            account: 8,
            billing: "2024-02-15T00:00:00Z".parse().unwrap(),
        },
    ];
    let before = build(&clock);
    for req in accounts.iter().chain(&accounts[..1]) {
        assert!(before.check(req, 1).unwrap().is_allowed());
    }
    let text = serde_json::to_string(&before.snapshot().unwrap()).unwrap();
    let after = build(&clock);
    let report = after
        .restore(&serde_json::from_str(&text).unwrap())
        .unwrap();
    assert!(report.is_complete(), "{report:?}");
    // The same traffic against both, over days and across account 8's period end.
    for day in 0..20 {
        for req in &accounts {
            let a = before.check(req, 1).unwrap();
            let b = after.check(req, 1).unwrap();
            let seen_a: Vec<_> = a.scopes().map(|s| seen(&s.decision)).collect();
            let seen_b: Vec<_> = b.scopes().map(|s| seen(&s.decision)).collect();
            assert_eq!(seen_a, seen_b, "day {day}, account {}", req.account);
        }
        mock.increment(Duration::from_secs(86_400));
    }
}

mod seed_configs {
    //! The seeds' own configurations (`examples/config/`) snapshot and restore whole.

    use std::time::Duration;

    use ratewarden::config::Attributes;
    use ratewarden::snapshot::PolicySnapshot;
    use ratewarden::{Clock, Policy};

    use super::config_files::{config_dir, parse};

    #[test]
    fn every_seed_policy_snapshots_and_restores_every_scope() {
        for entry in std::fs::read_dir(config_dir()).unwrap() {
            let path = entry.unwrap().path();
            let (clock, _mock) = Clock::mock();
            let policy = parse(&path).build_with_clock(clock.clone()).unwrap();
            let snapshot = policy
                .snapshot()
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let text = serde_json::to_string(&snapshot).unwrap();
            let fresh = parse(&path).build_with_clock(clock).unwrap();
            let report = fresh
                .restore(&serde_json::from_str::<PolicySnapshot>(&text).unwrap())
                .unwrap();
            assert!(report.is_complete(), "{}: {report:?}", path.display());
        }
    }

    #[test]
    fn reelbot_keeps_its_monthly_quotas_across_a_restart() {
        let path = config_dir().join("reelbot.toml");
        let (clock, mock) = Clock::mock();
        mock.increment(Duration::from_secs(1_737_475_200)); // 2025-01-21T16:00:00Z
        let before: Policy<Attributes> = parse(&path).build_with_clock(clock.clone()).unwrap();
        let call = |route: &str, key: &str, plan: &str| -> Attributes {
            [
                ("api_key", key),
                ("account", key),
                ("plan", plan),
                ("billing_anchor", "2024-10-31T00:00:00Z"),
                ("route", route),
            ]
            .into_iter()
            .collect()
        };
        let traffic = [
            call("generate", "f1", "free"),
            call("generate", "s1", "starter"),
            call("status", "f1", "free"),
            call("download", "s1", "starter"),
        ];
        for req in traffic.iter().cycle().take(12) {
            before.check(req, 1).unwrap();
        }
        let text = serde_json::to_string(&before.snapshot().unwrap()).unwrap();
        let after: Policy<Attributes> = parse(&path).build_with_clock(clock).unwrap();
        assert!(after
            .restore(&serde_json::from_str(&text).unwrap())
            .unwrap()
            .is_complete());
        // The free account used its 3 videos: still none after the restart.
        let d = after.check(&call("generate", "f1", "free"), 1).unwrap();
        assert!(d.is_denied());
        assert_eq!(d.scope("videos_per_month").unwrap().decision.remaining(), 0);
        for hour in 0..30 {
            for req in &traffic {
                let a = before.check(req, 1).unwrap();
                let b = after.check(req, 1).unwrap();
                let a: Vec<_> = a
                    .scopes()
                    .map(|s| (s.name, super::seen(&s.decision)))
                    .collect();
                let b: Vec<_> = b
                    .scopes()
                    .map(|s| (s.name, super::seen(&s.decision)))
                    .collect();
                assert_eq!(a, b, "hour {hour}");
            }
            mock.increment(Duration::from_secs(3_600 * 8));
        }
    }
}

#[test]
fn snapshots_taken_while_threads_check_and_limits_change_always_restore() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    let (clock, mock) = Clock::mock();
    let build = |clock: &Clock| {
        Policy::builder()
            .clock(clock.clone())
            .scope(Scope::keyed("burst", Gcra::new(rate()), |r: &u64| Some(*r)))
            .scope(Scope::keyed(
                "log",
                SlidingLog::new("50/s".parse().unwrap()),
                |r: &u64| Some(*r % 7),
            ))
            .scope(Scope::unkeyed(
                "all",
                FixedWindow::new("1000/s".parse().unwrap()),
            ))
            .build()
    };
    let policy = Arc::new(build(&clock));
    let stop = Arc::new(AtomicBool::new(false));
    let checkers: Vec<_> = (0..2u64)
        .map(|t| {
            let (policy, stop, mock) = (policy.clone(), stop.clone(), mock.clone());
            std::thread::spawn(move || {
                let mut i = t;
                while !stop.load(Ordering::Relaxed) {
                    i = i
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    policy.check(&(i >> 60), 1).unwrap();
                    if i % 16 == 0 {
                        mock.increment(std::time::Duration::from_millis(7));
                    }
                }
            })
        })
        .collect();
    let changer = {
        let (policy, stop) = (policy.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut large = false;
            while !stop.load(Ordering::Relaxed) {
                large = !large;
                let r: Rate = if large { "20/s" } else { "5/s" }.parse().unwrap();
                policy.set_rate("burst", r).unwrap();
                std::thread::yield_now();
            }
        })
    };
    for _ in 0..40 {
        let text = serde_json::to_string(&policy.snapshot().unwrap()).unwrap();
        let fresh = build(&clock);
        let report = fresh
            .restore(&serde_json::from_str(&text).unwrap())
            .unwrap();
        assert!(report.is_complete(), "{report:?}");
    }
    stop.store(true, Ordering::Relaxed);
    for t in checkers {
        t.join().unwrap();
    }
    changer.join().unwrap();
}

// ---------------------------------------------------------------------------------------
// States reaching far past the snapshot are refused: they would lock a key out and never
// be evicted.
// ---------------------------------------------------------------------------------------

mod far_future_states {
    use ratewarden::algorithm::{Algorithm, FixedWindowState, SlidingWindowState};
    use ratewarden::snapshot::{
        Key, KeyState, LimiterSnapshot, SnapshotError, StateSnapshot, SNAPSHOT_VERSION,
    };
    use ratewarden::{Clock, FixedWindow, Gcra, KeyedLimiter, SlidingWindow, UnkeyedLimiter};

    const S: u64 = 1_000_000_000;

    /// A sealed snapshot of one key: the checksum holds, only the state is wrong.
    fn snap<A: Algorithm>(alg: &A, key: Key, state: StateSnapshot) -> LimiterSnapshot {
        let mut s = LimiterSnapshot {
            version: SNAPSHOT_VERSION,
            taken_at: 1_000 * S,
            algorithm: alg.snapshot_kind().unwrap(),
            rate: alg.rate(),
            keys: vec![KeyState { key, state }],
            checksum: None,
        };
        s.seal();
        s
    }

    fn refused(r: Result<(), SnapshotError>) {
        assert!(matches!(r, Err(SnapshotError::Corrupted { .. })), "{r:?}");
    }

    #[test]
    fn a_gcra_arrival_time_centuries_ahead_is_refused_and_the_key_stays_free() {
        let (clock, _mock) = Clock::mock();
        let alg = Gcra::new("10/min".parse().unwrap());
        let l: KeyedLimiter<u64> = KeyedLimiter::with_clock(alg, clock);
        refused(l.restore_at(
            &snap(&alg, Key::U64(7), StateSnapshot::Gcra(u64::MAX - 1)),
            1_000 * S,
        ));
        assert!(l.check_at(&7, 1, 1_000 * S).unwrap().is_allowed());
        assert_eq!(l.len(), 1);
    }

    #[test]
    fn window_starts_centuries_ahead_are_refused() {
        let (clock, _mock) = Clock::mock();
        let fw = FixedWindow::new("10/min".parse().unwrap());
        let l: KeyedLimiter<u64, FixedWindow> = KeyedLimiter::with_clock(fw, clock.clone());
        let st = FixedWindowState {
            start: u64::MAX - 1,
            count: 10,
        };
        refused(l.restore_at(
            &snap(&fw, Key::U64(7), StateSnapshot::FixedWindow(st)),
            1_000 * S,
        ));
        assert!(l.is_empty());

        let sw = SlidingWindow::new("10/min".parse().unwrap());
        let u = UnkeyedLimiter::with_clock(sw, clock);
        let w = 60 * S;
        let st = SlidingWindowState {
            start: (u64::MAX / w) * w,
            prev: 10,
            cur: 10,
        };
        refused(u.restore_at(
            &snap(&sw, Key::Unit, StateSnapshot::SlidingWindow(st)),
            1_000 * S,
        ));
        assert!(u.check_at(1, 4_600 * S).unwrap().is_allowed());
    }

    #[test]
    fn a_gcra_snapshot_at_the_longest_window_restores() {
        let (clock, _mock) = Clock::mock();
        let alg = Gcra::new(ratewarden::Rate::new(7, ratewarden::MAX_WINDOW).unwrap());
        let a: KeyedLimiter<u64> = KeyedLimiter::with_clock(alg, clock.clone());
        a.check_at(&1, 1, S).unwrap();
        let b: KeyedLimiter<u64> = KeyedLimiter::with_clock(alg, clock);
        b.restore_at(&a.snapshot_at(S).unwrap(), S).unwrap();
        assert_eq!(b.peek_at(&1, 1, S).unwrap().remaining(), 5);
    }
}

#[test]
fn restoring_into_a_full_limiter_counts_only_the_keys_it_adds() {
    use ratewarden::snapshot::SnapshotError;
    use ratewarden::{Clock, Gcra, KeyedLimiter};
    let (clock, _mock) = Clock::mock();
    let limiter: KeyedLimiter<u64> = KeyedLimiter::builder(Gcra::new("10/min".parse().unwrap()))
        .clock(clock)
        .max_keys(3)
        .build();
    for key in 0..3 {
        limiter.check(&key, 4).unwrap();
    }
    let snapshot = limiter.snapshot().unwrap();
    // Full, but every key of the snapshot is already here: it overwrites, adds nothing.
    limiter.restore(&snapshot).unwrap();
    assert_eq!(limiter.peek(&1, 1).unwrap().remaining(), 5);
    // A snapshot with a key the limiter lacks still needs room for it.
    let (clock, _mock) = Clock::mock();
    let other: KeyedLimiter<u64> = KeyedLimiter::builder(Gcra::new("10/min".parse().unwrap()))
        .clock(clock)
        .max_keys(3)
        .build();
    for key in [0, 1, 9] {
        other.check(&key, 1).unwrap();
    }
    assert!(matches!(
        other.restore(&snapshot),
        Err(SnapshotError::TooManyKeys {
            keys: 1,
            room: 0,
            ..
        })
    ));
    assert_eq!(other.peek(&0, 1).unwrap().remaining(), 8, "untouched");
}
