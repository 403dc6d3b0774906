//! A new key's slot under the key cap, and the policy paths around it: a slot is taken
//! only by a key that is stored, whatever happens while the request is decided (a panic,
//! an error in a later scope, a peek), and a peek never sweeps.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc;
use std::time::Duration;

use ratewarden::{CheckError, Clock, FixedWindow, Gcra, KeyedLimiter, OnFull, Policy, Rate, Scope};

const S: u64 = 1_000_000_000;

/// A new key's slot is reserved while its transaction decides; a `then` that panics (a
/// later scope's key extractor or `limit_by`, a `check_with` admission…) gives it back.
/// Locks do not poison, so the limiter goes on being used, and its key count must not
/// count a key that was never stored.
#[test]
fn a_panicking_transaction_on_a_new_key_gives_its_key_cap_slot_back() {
    let (clock, _mock) = Clock::mock();
    let limiter: KeyedLimiter<u64, Gcra> =
        KeyedLimiter::builder(Gcra::new(Rate::per_minute(5).unwrap()))
            .clock(clock)
            .max_keys(1)
            .build();
    let panicked = catch_unwind(AssertUnwindSafe(|| {
        let _ = limiter.transact(&1, 1, 1_000 * S, None, &mut |_| panic!("handler bug"));
    }));
    assert!(panicked.is_err());
    assert_eq!(
        limiter.shard_lens().iter().sum::<usize>(),
        0,
        "no key is stored"
    );
    assert_eq!(limiter.len(), 0, "len counts a key that was never stored");
    let next = limiter.check_at(&2, 1, 1_000 * S);
    assert!(
        matches!(&next, Ok(d) if d.is_allowed()),
        "the only stored key would be this one, yet: {next:?}"
    );
}

/// The same through a policy: a `check_with` admission that panics (caught by the
/// server's per-request panic handler) gives back the slots its scopes reserved, so new
/// users are not refused with `KeyCapReached` when no key is tracked.
#[test]
fn a_panicking_check_with_admission_gives_the_scopes_key_cap_slots_back() {
    let (clock, _mock) = Clock::mock();
    let users: KeyedLimiter<u64, Gcra> =
        KeyedLimiter::builder(Gcra::new(Rate::per_minute(5).unwrap()))
            .max_keys(2)
            .build();
    let policy = Policy::builder()
        .clock(clock)
        .scope(Scope::with_limiter("user", users, |u: &u64| Some(*u)))
        .build();
    for user in [1u64, 2] {
        let r = catch_unwind(AssertUnwindSafe(|| {
            let _ = policy.check_with(&user, 1, || -> Result<(), ()> { panic!("handler bug") });
        }));
        assert!(r.is_err());
    }
    assert_eq!(
        policy.stats().scopes[0].tracked_keys,
        0,
        "tracked_keys counts keys that were never stored"
    );
    let checked = policy.check(&3, 1);
    assert!(
        matches!(&checked, Ok(d) if d.is_allowed()),
        "a new user refused although no key is tracked: {:?}",
        checked.map(|d| d.is_allowed())
    );
}

/// Org 1 exhausts its 10/hour in a one-key store at its cap; `ask` then asks about a new
/// org two hours ahead. Asking consumes nothing, so it must not sweep the shard as of
/// then: that would drop org 1, and the next check at the present would admit it again.
fn org_stays_exhausted_after(ask: impl FnOnce(&Policy<u64>, u64)) {
    let (clock, _mock) = Clock::mock();
    let orgs: KeyedLimiter<u64, FixedWindow> =
        KeyedLimiter::builder(FixedWindow::new(Rate::per_hour(10).unwrap()))
            .max_keys(1)
            .shards(1)
            .build();
    let policy = Policy::builder()
        .clock(clock)
        .scope(Scope::with_limiter("org", orgs, |org: &u64| Some(*org)))
        .build();
    let now = 10 * 3_600 * S; // on the hour
    assert!(policy.check_at(&1, 10, now).unwrap().is_allowed());
    assert!(policy.check_at(&1, 1, now).unwrap().is_denied());
    ask(&policy, now + 2 * 3_600 * S);
    let d = policy.check_at(&1, 1, now).unwrap();
    assert!(
        d.is_denied(),
        "org 1 used its 10/hour and was admitted again in the same hour (evictions: {})",
        policy.stats().scopes[0].evictions
    );
}

/// A policy peek of a new key at the key cap reserves nothing and sweeps nothing.
#[test]
fn a_policy_peek_at_a_later_time_at_the_key_cap_keeps_a_key_in_use() {
    org_stays_exhausted_after(|policy, later| {
        let _ = policy.peek_at(&2, 1, later);
    });
}

/// A policy check of cost 0 consumes nothing and changes nothing, like a peek.
#[test]
fn a_policy_check_of_cost_zero_at_a_later_time_at_the_key_cap_keeps_a_key_in_use() {
    org_stays_exhausted_after(|policy, later| {
        let _ = policy.check_at(&2, 0, later);
    });
}

/// A policy peek at the end of the clock, at the key cap, does not become the shard's
/// last sweep time: traffic after it still sweeps the shard.
#[test]
fn a_policy_peek_at_the_end_of_the_clock_at_the_key_cap_leaves_sweeps_running() {
    let (clock, _mock) = Clock::mock();
    let users: KeyedLimiter<u64, Gcra> =
        KeyedLimiter::builder(Gcra::new(Rate::per_second(10).unwrap()))
            .max_keys(1_000)
            .shards(1)
            .build();
    let policy = Policy::builder()
        .clock(clock)
        .scope(Scope::with_limiter("user", users, |u: &u64| Some(*u)))
        .build();
    let t0 = 1_000 * S;
    for key in 0..1_000u64 {
        policy.check_at(&key, 1, t0).unwrap();
    }
    let _ = policy.peek_at(&5_000, 1, u64::MAX);
    let t1 = 2_000 * S;
    for key in 0..500u64 {
        policy.check_at(&key, 1, t1).unwrap();
    }
    // A minute later all 500 are idle; one busy key's traffic should sweep the shard.
    for i in 0..5_000 {
        policy
            .check_at(&0, 1, t1 + 60 * S + i * 100_000_000)
            .unwrap();
    }
    let tracked = policy.stats().scopes[0].tracked_keys;
    assert!(tracked < 100, "{tracked} keys still tracked");
}

/// A policy peek of a new key holds no slot while the later scopes are decided, so a
/// concurrent check of another new key finds room. The peek is parked inside the second
/// scope's key extractor to make the interleaving deterministic.
#[test]
fn a_concurrent_policy_peek_of_a_new_key_leaves_room_for_a_check_at_the_key_cap() {
    #[derive(Clone, Copy)]
    struct Req {
        user: u64,
        park: bool,
    }
    let (clock, _mock) = Clock::mock();
    let users: KeyedLimiter<u64, Gcra> =
        KeyedLimiter::builder(Gcra::new(Rate::per_minute(5).unwrap()))
            .max_keys(1)
            // users 1 and 2 in different shards (almost surely; if not, the check below
            // waits for the peek, the timeouts fire and the test passes)
            .shards(1 << 16)
            .build();
    let (parked_tx, parked_rx) = mpsc::channel::<()>();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let go_rx = std::sync::Mutex::new(go_rx);
    let parked_tx = std::sync::Mutex::new(parked_tx);
    let policy = Policy::builder()
        .clock(clock)
        .scope(Scope::with_limiter("user", users, |r: &Req| Some(r.user)))
        .scope(Scope::keyed(
            "gate",
            Gcra::new(Rate::per_minute(5).unwrap()),
            move |r: &Req| {
                if r.park {
                    let _ = parked_tx.lock().unwrap().send(());
                    let _ = go_rx.lock().unwrap().recv_timeout(Duration::from_secs(3));
                }
                Some(r.user)
            },
        ))
        .build();
    std::thread::scope(|s| {
        let peeker = s.spawn(|| {
            policy
                .peek(
                    &Req {
                        user: 1,
                        park: true,
                    },
                    1,
                )
                .map(|d| d.is_allowed())
        });
        parked_rx
            .recv_timeout(Duration::from_secs(3))
            .expect("the peek reached the second scope");
        let checked = policy.check(
            &Req {
                user: 2,
                park: false,
            },
            1,
        );
        go_tx.send(()).unwrap();
        assert!(peeker.join().unwrap().unwrap());
        assert!(
            matches!(&checked, Ok(d) if d.is_allowed()),
            "a check refused because of a concurrent peek: {:?}",
            checked.map(|d| d.is_allowed())
        );
    });
    assert_eq!(policy.stats().scopes[0].tracked_keys, 1);
}

// ---- checked and found correct (these pass) ----

/// An error from a later scope (a per-request limit of 0) gives back the slot reserved
/// for a new key in an earlier scope, and nothing is consumed anywhere.
#[test]
fn an_invalid_limit_in_a_later_scope_gives_the_earlier_slot_back() {
    let (clock, _mock) = Clock::mock();
    let users: KeyedLimiter<u64, Gcra> =
        KeyedLimiter::builder(Gcra::new(Rate::per_minute(5).unwrap()))
            .max_keys(1)
            .build();
    let policy = Policy::builder()
        .clock(clock)
        .scope(Scope::with_limiter("user", users, |r: &(u64, u64)| {
            Some(r.0)
        }))
        .scope(
            Scope::keyed(
                "org",
                Gcra::new(Rate::per_minute(5).unwrap()),
                |r: &(u64, u64)| Some(r.1),
            )
            .limit_by(|r: &(u64, u64)| (r.1 == 0).then_some(0)),
        )
        .build();
    let e = policy.check(&(1, 0), 1).unwrap_err();
    assert_eq!(&*e.scope, "org");
    assert_eq!(e.error, CheckError::InvalidLimit { count: 0 });
    let stats = policy.stats();
    assert_eq!((stats.allowed, stats.denied), (0, 0));
    assert_eq!(stats.scopes[0].tracked_keys, 0);
    assert_eq!(stats.scopes[1].tracked_keys, 0);
    assert!(policy.check(&(2, 1), 1).unwrap().is_allowed());
    assert_eq!(
        policy
            .peek(&(2, 1), 0)
            .unwrap()
            .scope("user")
            .unwrap()
            .decision
            .remaining(),
        4
    );
}

/// OnFull::AllowUntracked at the cap: judged against a fresh state, nothing stored, `len`
/// unchanged.
#[test]
fn allow_untracked_at_the_cap_keeps_len() {
    let (clock, _mock) = Clock::mock();
    let limiter: KeyedLimiter<u64, Gcra> =
        KeyedLimiter::builder(Gcra::new(Rate::per_minute(5).unwrap()))
            .clock(clock)
            .max_keys(1)
            .on_full(OnFull::AllowUntracked)
            .build();
    limiter.check_at(&1, 1, S).unwrap();
    for k in 2..100u64 {
        assert!(limiter.check_at(&k, 1, S).unwrap().is_allowed());
        assert!(limiter
            .transact(&k, 1, S, None, &mut |_| false)
            .unwrap()
            .is_allowed());
    }
    assert_eq!(limiter.len(), 1);
    assert_eq!(limiter.shard_lens().iter().sum::<usize>(), 1);
}

/// Statistics against what the decisions reported, with 11 scopes (spill past 8),
/// shadow scopes, scopes that do not apply and near-limit counts.
#[test]
fn stats_match_the_decisions_with_more_than_eight_scopes() {
    let (clock, mock) = Clock::mock();
    let n = 11usize;
    let mut b = Policy::builder().clock(clock).near_limit_percent(60);
    for i in 0..n {
        let count = 2 + i as u64 % 4;
        let s = Scope::keyed(
            &format!("s{i}"),
            FixedWindow::new(Rate::per_minute(count).unwrap()),
            move |r: &u64| (r % (i as u64 + 2) != 0).then_some(*r % 3),
        );
        b = b.scope(if i % 3 == 1 { s.shadow() } else { s });
    }
    let policy = b.build();
    let mut want = vec![[0u64; 4]; n];
    let (mut allowed, mut denied) = (0, 0);
    for step in 0..400u64 {
        if step % 50 == 0 {
            mock.increment(Duration::from_secs(61));
        }
        let d = policy.check(&(step * 7 % 23), 1).unwrap();
        if d.is_allowed() {
            allowed += 1
        } else {
            denied += 1
        }
        for s in d.scopes() {
            let o = match (s.shadow, s.is_denied()) {
                (_, false) => 0,
                (false, true) => 1,
                (true, true) => 2,
            };
            want[s.index][o] += 1;
            if s.decision.used_at_least_percent(60) {
                want[s.index][3] += 1;
            }
        }
    }
    let stats = policy.stats();
    assert_eq!((stats.allowed, stats.denied), (allowed, denied));
    assert!(denied > 0 && allowed > 0);
    for (i, s) in stats.scopes.iter().enumerate() {
        assert_eq!(
            [s.allowed, s.denied, s.shadow_denied, s.near_limit],
            want[i],
            "scope {i}"
        );
    }
}

/// Many threads, new keys every round, a shared scope and a per-key scope: no scope ever
/// admits beyond its quota and every key that consumed is stored exactly once.
#[test]
fn concurrent_new_keys_never_exceed_a_quota_or_lose_a_state() {
    let (clock, _mock) = Clock::mock();
    let policy = Policy::builder()
        .clock(clock)
        .scope(Scope::keyed(
            "user",
            FixedWindow::new(Rate::per_hour(3).unwrap()),
            |r: &(u64, u64)| Some(r.0),
        ))
        .scope(Scope::keyed(
            "org",
            FixedWindow::new(Rate::per_hour(50).unwrap()),
            |r: &(u64, u64)| Some(r.1),
        ))
        .build();
    let admitted = std::sync::atomic::AtomicU64::new(0);
    std::thread::scope(|s| {
        for t in 0..4u64 {
            let (policy, admitted) = (&policy, &admitted);
            s.spawn(move || {
                for i in 0..2_000u64 {
                    let user = (i + t) % 40;
                    if policy.check(&(user, user % 2), 1).unwrap().is_allowed() {
                        admitted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                }
            });
        }
    });
    // 40 users × 3, but two orgs × 50 cap it at 100.
    assert_eq!(admitted.into_inner(), 100);
    let stats = policy.stats();
    assert_eq!(stats.allowed, 100);
    assert_eq!(stats.scopes[1].tracked_keys, 2);
    assert!(stats.scopes[0].tracked_keys <= 40);
    for user in 0..40u64 {
        let d = policy.peek(&(user, user % 2), 0).unwrap();
        assert!(d.scope("user").unwrap().decision.remaining() <= 3);
    }
}
