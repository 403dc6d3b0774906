use super::*;

#[test]
fn peek_matches_decide_on_a_copy_and_changes_nothing() {
    let alg = SlidingLog::new(Rate::new(50, std::time::Duration::from_secs(10)).unwrap());
    let mut state = alg.fresh();
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut rand = move |n: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % n
    };
    let mut now = 1_000_000_000_000;
    for _ in 0..20_000 {
        now += rand(400_000_000);
        let cost = 1 + rand(5);
        if alg.decide(&mut state.clone(), now, cost).is_allowed() {
            alg.commit(&mut state, now, cost);
        }
        // At this time, later, much later; for several costs: peeking is deciding on
        // a copy, and leaves the state as it was.
        for at in [now, now + rand(12_000_000_000), now + 25_000_000_000] {
            for c in [0, 1, 7, 50] {
                let before = state.clone();
                assert_eq!(
                    alg.peek(&state, at, c),
                    alg.decide(&mut before.clone(), at, c)
                );
                assert_eq!(state, before);
            }
        }
    }
}
use std::time::Duration;

const MS: u64 = 1_000_000;

fn run(alg: &SlidingLog, s: &mut SlidingLogState, now: Nanos, cost: u64) -> Decision {
    let d = alg.decide(s, now, cost);
    if d.is_allowed() {
        alg.commit(s, now, cost);
    }
    d
}

#[test]
fn exact_rolling_window_and_retry_for_weighted_cost() {
    let alg = SlidingLog::new(Rate::new(5, Duration::from_secs(1)).unwrap());
    let mut s = alg.fresh();
    assert!(run(&alg, &mut s, 0, 2).is_allowed());
    assert!(run(&alg, &mut s, 300 * MS, 1).is_allowed());
    assert!(run(&alg, &mut s, 600 * MS, 2).is_allowed());
    // full; a cost of 3 needs the entries at 0 (2) and 300 ms (1) to expire
    let d = run(&alg, &mut s, 700 * MS, 3);
    assert_eq!(d.retry_after(), Some(Duration::from_millis(600)));
    assert_eq!(d.reset_after(), Duration::from_millis(900));
    assert!(run(&alg, &mut s, 1_300 * MS - 1, 3).is_denied());
    let d = run(&alg, &mut s, 1_300 * MS, 3);
    assert!(d.is_allowed());
    assert_eq!(d.remaining(), 0);
    assert_eq!(
        s.entries().collect::<Vec<_>>(),
        vec![(600 * MS, 2), (1_300 * MS, 3)]
    );
}

#[test]
fn same_instant_requests_share_an_entry_and_memory_is_bounded() {
    let alg = SlidingLog::new(Rate::per_second(1_000).unwrap());
    let mut s = alg.fresh();
    for _ in 0..2_000 {
        run(&alg, &mut s, 5, 1);
    }
    assert_eq!(s.entries.len(), 1);
    for t in 0..5_000 {
        run(&alg, &mut s, 10 + t * MS / 10, 1);
    }
    assert!(s.entries.len() <= 1_000);
}

#[test]
fn refund_takes_from_the_newest_entries() {
    let alg = SlidingLog::new(Rate::per_second(10).unwrap());
    let mut s = alg.fresh();
    run(&alg, &mut s, 0, 3);
    run(&alg, &mut s, MS, 4);
    alg.refund(&mut s, MS, 5);
    assert_eq!(s.entries().collect::<Vec<_>>(), vec![(0, 2)]);
    alg.refund(&mut s, MS, 9);
    assert!(alg.is_idle(&s, MS));
    assert_eq!(s, alg.fresh());
}
