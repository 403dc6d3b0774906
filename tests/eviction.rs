//! Keys are inserted and shards swept only by requests that consume: a peek, at any
//! time, and a policy check that is denied leave every key where it was, and take no
//! room under the key cap.

use ratewarden::{Clock, FixedWindow, Gcra, KeyedLimiter, Policy, Rate, Scope};

const S: u64 = 1_000_000_000;

/// A peek changes nothing, whatever time it asks about: were it to sweep the shard as of
/// its own time, a peek at a later time would drop keys still in use at the present (their
/// window over by then), and the next check at the present would find a fresh key.
#[test]
fn a_peek_at_a_later_time_does_not_evict_keys_still_in_use_now() {
    let (clock, _mock) = Clock::mock();
    let limiter: KeyedLimiter<u64, FixedWindow> =
        KeyedLimiter::builder(FixedWindow::new(Rate::per_hour(10).unwrap()))
            .clock(clock)
            .shards(1)
            .build();
    let now = 10 * 3_600 * S; // on the hour: the window is [now, now + 1 h)
    assert!(limiter.check_at(&1, 10, now).unwrap().is_allowed());
    assert!(limiter.check_at(&1, 1, now).unwrap().is_denied());
    // "How will key 2 stand in two hours?" — asked a hundred times.
    let later = now + 2 * 3_600 * S;
    for _ in 0..100 {
        let _ = limiter.peek_at(&2, 1, later).unwrap();
    }
    let d = limiter.check_at(&1, 1, now).unwrap();
    assert!(
        d.is_denied(),
        "key 1 used its 10/hour and was admitted again in the same hour: {d:?}"
    );
}

/// The same through a policy's peek (which decides through `transact`).
#[test]
fn a_policy_peek_at_a_later_time_does_not_evict_keys_still_in_use_now() {
    let (clock, _mock) = Clock::mock();
    let limiter: KeyedLimiter<u64, FixedWindow> =
        KeyedLimiter::builder(FixedWindow::new(Rate::per_hour(10).unwrap()))
            .shards(1)
            .build();
    let policy = Policy::builder()
        .clock(clock)
        .scope(Scope::with_limiter("org", limiter, |org: &u64| Some(*org)))
        .build();
    let now = 10 * 3_600 * S;
    assert!(policy.check_at(&1, 10, now).unwrap().is_allowed());
    assert!(policy.check_at(&1, 1, now).unwrap().is_denied());
    for _ in 0..100 {
        let _ = policy.peek_at(&1, 1, now + 2 * 3_600 * S).unwrap();
    }
    let d = policy.check_at(&1, 1, now).unwrap();
    assert!(
        d.is_denied(),
        "org 1 used its 10/hour and was admitted again in the same hour"
    );
}

/// The same through GCRA and the limiter's own key.
#[test]
fn a_peek_at_a_later_time_does_not_evict_a_gcra_key_still_in_use_now() {
    let (clock, _mock) = Clock::mock();
    let limiter: KeyedLimiter<u64, Gcra> =
        KeyedLimiter::builder(Gcra::new(Rate::per_minute(5).unwrap()))
            .clock(clock)
            .shards(1)
            .build();
    let now = 1_000 * S;
    assert!(limiter.check_at(&7, 5, now).unwrap().is_allowed());
    for _ in 0..100 {
        // "When is key 7 whole again?" — a peek one and a half minutes ahead.
        assert!(limiter.peek_at(&7, 5, now + 90 * S).unwrap().is_allowed());
    }
    let admitted = (0..5)
        .filter(|_| limiter.check_at(&7, 1, now).unwrap().is_allowed())
        .count();
    assert_eq!(
        admitted, 0,
        "a burst of 5 admitted twice at the same instant"
    );
}

/// A policy peek of a new key inserts nothing, as a keyed limiter's own peek does: at the
/// key cap, a fresh state kept for it would take the room that real checks of other new
/// keys need.
#[test]
fn a_policy_peek_does_not_take_a_slot_of_the_key_cap() {
    let (clock, _mock) = Clock::mock();
    let limiter: KeyedLimiter<u64, Gcra> =
        KeyedLimiter::builder(Gcra::new(Rate::per_minute(5).unwrap()))
            .max_keys(1)
            // Many shards, so that the two keys below almost surely land in different
            // ones (a sweep of the new key's own shard cannot reclaim the peeked one).
            .shards(1 << 16)
            .build();
    let policy = Policy::builder()
        .clock(clock)
        .scope(Scope::with_limiter("user", limiter, |u: &u64| Some(*u)))
        .build();
    let now = 1_000 * S;
    assert!(policy.peek_at(&1, 1, now).unwrap().is_allowed());
    // The only real request: it must find room.
    let checked = policy.check_at(&2, 1, now);
    assert!(
        matches!(&checked, Ok(d) if d.is_allowed()),
        "the only check was refused after a peek of another key: {:?}",
        checked.map(|d| d.is_allowed())
    );
    assert_eq!(
        policy.stats().scopes[0].tracked_keys,
        1,
        "the peek started tracking a key"
    );
}

/// A denied policy check consumes nothing, so the scopes before the denying one keep no
/// state for the new keys it named, and their key caps keep room for later requests.
#[test]
fn a_denied_policy_check_does_not_take_a_slot_of_the_key_cap() {
    let (clock, _mock) = Clock::mock();
    let users: KeyedLimiter<u64, Gcra> =
        KeyedLimiter::builder(Gcra::new(Rate::per_minute(5).unwrap()))
            .max_keys(2)
            .shards(1 << 16)
            .build();
    let policy = Policy::builder()
        .clock(clock)
        .scope(Scope::with_limiter("user", users, |r: &(u64, u64)| {
            Some(r.0)
        }))
        .scope(Scope::keyed(
            "video",
            FixedWindow::new(Rate::per_minute(1).unwrap()),
            |r: &(u64, u64)| Some(r.1),
        ))
        .build();
    let now = 600 * S;
    assert!(policy.check_at(&(1, 9), 1, now).unwrap().is_allowed());
    // Video 9 is exhausted: denied, nothing spent.
    assert!(policy.check_at(&(2, 9), 1, now).unwrap().is_denied());
    // One user has spent anything; a cap of two must leave room for user 3.
    let checked = policy.check_at(&(3, 10), 1, now);
    assert!(
        matches!(&checked, Ok(d) if d.is_allowed()),
        "refused after a denied request of another user: {:?}",
        checked.as_ref().map(|d| d.is_allowed())
    );
}

/// A peek far ahead (here at the end of the clock) does not become the shard's last sweep
/// time: traffic after it still sweeps the shard, and memory follows the active keys.
#[test]
fn a_peek_far_ahead_does_not_stop_idle_keys_from_being_evicted() {
    let (clock, _mock) = Clock::mock();
    let limiter: KeyedLimiter<u64, Gcra> =
        KeyedLimiter::builder(Gcra::new(Rate::per_second(10).unwrap()))
            .clock(clock)
            .shards(1)
            .build();
    for _ in 0..100 {
        let _ = limiter.peek_at(&0, 1, u64::MAX).unwrap();
    }
    let t0 = 1_000 * S;
    for key in 1..=1_000 {
        limiter.check_at(&key, 1, t0).unwrap();
    }
    // A minute later every one of them is idle; one busy key's traffic sweeps the shard.
    for i in 0..5_000 {
        limiter
            .check_at(&0, 1, t0 + 60 * S + i * 100_000_000)
            .unwrap();
    }
    assert!(
        limiter.len() < 100,
        "{} keys still tracked, {} evicted",
        limiter.len(),
        limiter.evictions()
    );
}
