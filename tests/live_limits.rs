//! Live limit changes: a scope's or limiter's rate replaced while threads check.
//!
//! The concurrent tests hold time still while threads check and another thread flips the
//! rate between a smaller and a larger one, then move it on by a window between rounds. In
//! a round every check falls in the same window, so what each key was admitted in the
//! round must lie between the smaller limit (denials only come at a full quota) and the
//! larger one (no interleaving of checks and changes admits more). A change that lost a
//! key's state, or let a check mix old parameters with a carried-over state, would let a
//! key through more than the larger limit.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use ratewarden::algorithm::Algorithm;
use ratewarden::{
    CheckError, Clock, Decision, FixedWindow, Gcra, KeyedLimiter, LimitChangeError, Limiter, Nanos,
    Policy, Rate, Scope, SlidingLog, SlidingWindow, UnkeyedLimiter,
};

const S: u64 = 1_000_000_000;
const THREADS: usize = 3;
const ROUNDS: u64 = 25;
const KEYS: u64 = 4;
const CHECKS: usize = 150;
const SMALL: u64 = 10;
const LARGE: u64 = 25;

/// A small deterministic generator, so a failure can be replayed.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Runs rounds of concurrent checks (through `check`, which returns whether it was
/// admitted) while `change` flips between the two limits; returns, per round and key,
/// how many were admitted.
fn rounds(
    check: impl Fn(u64, u64, Nanos) -> bool + Send + Sync + 'static,
    change: impl Fn(bool, Nanos) + Send + Sync + 'static,
) -> Vec<Vec<u64>> {
    let (check, change) = (Arc::new(check), Arc::new(change));
    let start = Arc::new(Barrier::new(THREADS + 2));
    let end = Arc::new(Barrier::new(THREADS + 2));
    let now = Arc::new(AtomicU64::new(0));
    let mut checkers = Vec::new();
    for t in 0..THREADS {
        let (check, start, end, now) = (check.clone(), start.clone(), end.clone(), now.clone());
        checkers.push(thread::spawn(move || {
            let mut rng = XorShift(0x9E37_79B9_7F4A_7C15 ^ (t as u64 + 1));
            let mut admitted = vec![vec![0u64; KEYS as usize]; ROUNDS as usize];
            for round in 0..ROUNDS {
                start.wait();
                let at = now.load(Ordering::SeqCst);
                for _ in 0..CHECKS {
                    let key = rng.next() % KEYS;
                    if check(round, key, at) {
                        admitted[round as usize][key as usize] += 1;
                    }
                }
                end.wait();
            }
            admitted
        }));
    }
    let changer = {
        let (change, start, end, now) = (change.clone(), start.clone(), end.clone(), now.clone());
        thread::spawn(move || {
            let mut large = false;
            for _ in 0..ROUNDS {
                start.wait();
                let at = now.load(Ordering::SeqCst);
                for _ in 0..60 {
                    large = !large;
                    change(large, at);
                    thread::yield_now();
                }
                end.wait();
            }
        })
    };
    for round in 0..ROUNDS {
        // Each round in a window of its own: [round s, round s + 1 s).
        now.store(1_000 * S + round * S + S / 2, Ordering::SeqCst);
        start.wait();
        end.wait();
    }
    changer.join().unwrap();
    let mut total = vec![vec![0u64; KEYS as usize]; ROUNDS as usize];
    for checker in checkers {
        for (round, keys) in checker.join().unwrap().into_iter().enumerate() {
            for (key, n) in keys.into_iter().enumerate() {
                total[round][key] += n;
            }
        }
    }
    total
}

fn assert_between_limits(admitted: &[Vec<u64>]) {
    for (round, keys) in admitted.iter().enumerate() {
        for (key, &n) in keys.iter().enumerate() {
            assert!(
                (SMALL..=LARGE).contains(&n),
                "round {round}, key {key}: {n} admitted, limits {SMALL} and {LARGE}"
            );
        }
    }
}

fn rate(n: u64) -> Rate {
    Rate::new(n, Duration::from_secs(1)).unwrap()
}

#[test]
fn fixed_window_never_admits_more_than_the_larger_limit_while_it_changes() {
    let (clock, _mock) = Clock::mock();
    let limiter: Arc<KeyedLimiter<u64, FixedWindow>> = Arc::new(KeyedLimiter::with_clock(
        FixedWindow::new(rate(SMALL)),
        clock,
    ));
    let (l1, l2) = (limiter.clone(), limiter.clone());
    // Which limits the checks ran under: both, or the test proves nothing.
    let seen = Arc::new([AtomicU64::new(0), AtomicU64::new(0)]);
    let seen_by_checks = seen.clone();
    let admitted = rounds(
        move |_, key, now| {
            let d = l1.check_at(&key, 1, now).unwrap();
            assert!(d.limit() == SMALL || d.limit() == LARGE, "{}", d.limit());
            seen_by_checks[usize::from(d.limit() == LARGE)].fetch_add(1, Ordering::Relaxed);
            d.is_allowed()
        },
        move |large, now| l2.set_rate_at(rate(if large { LARGE } else { SMALL }), now),
    );
    assert_between_limits(&admitted);
    assert!(seen.iter().all(|n| n.load(Ordering::Relaxed) > 0));
}

/// Fresh keys every round, so nothing from an earlier window weighs in.
fn fresh_keys_between_limits<A: Algorithm>(alg: A) {
    let (clock, _mock) = Clock::mock();
    let limiter: Arc<KeyedLimiter<u64, A>> = Arc::new(KeyedLimiter::with_clock(alg, clock));
    let (l1, l2) = (limiter.clone(), limiter.clone());
    let admitted = rounds(
        move |round, key, now| {
            l1.check_at(&(round * KEYS + key), 1, now)
                .unwrap()
                .is_allowed()
        },
        move |large, now| l2.set_rate_at(rate(if large { LARGE } else { SMALL }), now),
    );
    assert_between_limits(&admitted);
}

#[test]
fn gcra_never_admits_more_than_the_larger_burst_while_it_changes() {
    // Time stands still within a round and every round uses fresh keys, so each key can
    // have at most one full burst: the larger one.
    fresh_keys_between_limits(Gcra::new(rate(SMALL)));
}

#[test]
fn sliding_window_and_log_never_admit_more_than_the_larger_limit_while_it_changes() {
    fresh_keys_between_limits(SlidingWindow::new(rate(SMALL)));
    fresh_keys_between_limits(SlidingLog::new(rate(SMALL)));
}

#[test]
fn unkeyed_sliding_log_never_admits_more_than_the_larger_limit_while_it_changes() {
    let (clock, _mock) = Clock::mock();
    let limiter = Arc::new(UnkeyedLimiter::with_clock(
        SlidingLog::new(rate(SMALL)),
        clock,
    ));
    let (l1, l2) = (limiter.clone(), limiter.clone());
    let admitted = rounds(
        // one key: the limiter itself; count it under key 0 and pretend the others full
        move |_, _, now| l1.check_at(1, now).unwrap().is_allowed(),
        move |large, now| l2.set_rate_at(rate(if large { LARGE } else { SMALL }), now),
    );
    for (round, keys) in admitted.iter().enumerate() {
        let n: u64 = keys.iter().sum();
        assert!((SMALL..=LARGE).contains(&n), "round {round}: {n}");
    }
}

#[derive(Clone, Copy)]
struct Req {
    org: u64,
    user: u64,
}

#[test]
fn policy_scopes_change_while_checked_and_denials_still_spend_nothing() {
    let (clock, _mock) = Clock::mock();
    let policy = Arc::new(
        Policy::builder()
            .clock(clock)
            .scope(Scope::keyed(
                "org",
                FixedWindow::new(rate(SMALL)),
                |r: &Req| Some(r.org),
            ))
            .scope(Scope::keyed(
                "user",
                SlidingWindow::new(rate(1_000)),
                |r: &Req| Some(r.user),
            ))
            .build(),
    );
    let (p1, p2) = (policy.clone(), policy.clone());
    let admitted = rounds(
        move |round, key, now| {
            let req = Req {
                org: key,
                user: round,
            };
            p1.check_at(&req, 1, now).unwrap().is_allowed()
        },
        move |large, now| {
            p2.set_rate_at("org", rate(if large { LARGE } else { SMALL }), now)
                .unwrap()
        },
    );
    assert_between_limits(&admitted);
    // The user scope saw every admission and nothing else: denials spent nothing.
    let end = 1_000 * S + (ROUNDS - 1) * S + S / 2;
    let last_round: u64 = admitted[ROUNDS as usize - 1].iter().sum();
    let d = policy
        .peek_at(
            &Req {
                org: 99,
                user: ROUNDS - 1,
            },
            0,
            end,
        )
        .unwrap();
    assert_eq!(
        d.scope("user").unwrap().decision.remaining(),
        1_000 - last_round
    );
}

/// What a key has used before and after a mid-window change, for each algorithm.
fn remaining<A: Algorithm>(l: &KeyedLimiter<u64, A>, now: Nanos) -> u64 {
    l.peek_at(&1, 0, now).unwrap().remaining()
}

#[test]
fn an_upgrade_mid_window_keeps_what_was_used() {
    let t = 3_600 * S;
    let fw: KeyedLimiter<u64, FixedWindow> =
        KeyedLimiter::new(FixedWindow::new(Rate::per_hour(10).unwrap()));
    fw.check_at(&1, 8, t + 60 * S).unwrap();
    fw.set_rate_at(Rate::per_hour(100).unwrap(), t + 120 * S);
    assert_eq!(remaining(&fw, t + 120 * S), 92);
    // the window still ends on the hour
    assert_eq!(
        fw.peek_at(&1, 0, t + 120 * S).unwrap().reset_after(),
        Duration::from_secs(3_480)
    );

    let log: KeyedLimiter<u64, SlidingLog> =
        KeyedLimiter::new(SlidingLog::new(Rate::per_minute(10).unwrap()));
    log.check_at(&1, 3, t).unwrap();
    log.check_at(&1, 5, t + 30 * S).unwrap();
    log.set_rate_at(Rate::per_minute(100).unwrap(), t + 40 * S);
    assert_eq!(remaining(&log, t + 40 * S), 92);
    // the first 3 expire a minute after they were admitted, as before
    assert_eq!(remaining(&log, t + 60 * S), 95);

    let sw: KeyedLimiter<u64, SlidingWindow> =
        KeyedLimiter::new(SlidingWindow::new(Rate::per_minute(10).unwrap()));
    sw.check_at(&1, 8, t + 10 * S).unwrap();
    sw.set_rate_at(Rate::per_minute(100).unwrap(), t + 20 * S);
    assert_eq!(remaining(&sw, t + 20 * S), 92);
    // half a minute into the next window, half of the previous one still counts
    assert_eq!(remaining(&sw, t + 90 * S), 96);

    let gcra: KeyedLimiter<u64, Gcra> = KeyedLimiter::new(Gcra::new(Rate::per_minute(10).unwrap()));
    gcra.check_at(&1, 5, t).unwrap();
    gcra.set_rate_at(Rate::per_minute(100).unwrap(), t);
    assert_eq!(remaining(&gcra, t), 95);
    // and it drains at the new rate: one unit per 600 ms
    assert_eq!(remaining(&gcra, t + 1_800_000_000), 98);
    assert_eq!(remaining(&gcra, t + 3 * S), 100);
    assert_eq!(gcra.rate(), Rate::per_minute(100).unwrap());
}

#[test]
fn a_downgrade_mid_window_counts_what_was_used_against_the_new_limit() {
    let t = 3_600 * S;
    let fw: KeyedLimiter<u64, FixedWindow> =
        KeyedLimiter::new(FixedWindow::new(Rate::per_hour(100).unwrap()));
    fw.check_at(&1, 30, t).unwrap();
    fw.set_rate_at(Rate::per_hour(10).unwrap(), t + S);
    let d = fw.check_at(&1, 1, t + S).unwrap();
    assert!(d.is_denied());
    assert_eq!(d.retry_after(), Some(Duration::from_secs(3_599)));
    assert!(fw.check_at(&1, 10, t + 3_600 * S).unwrap().is_allowed());

    // GCRA: 50 used of 100 per minute is a debt of 50 units at 10 per minute (5 min).
    let gcra: KeyedLimiter<u64, Gcra> =
        KeyedLimiter::new(Gcra::new(Rate::per_minute(100).unwrap()));
    gcra.check_at(&1, 50, t).unwrap();
    gcra.set_rate_at(Rate::per_minute(10).unwrap(), t);
    let d = gcra.check_at(&1, 1, t).unwrap();
    assert!(d.is_denied());
    assert_eq!(d.retry_after(), Some(Duration::from_secs(246)));
    // Back up again at once: the 50 are still used.
    gcra.set_rate_at(Rate::per_minute(100).unwrap(), t);
    assert_eq!(remaining(&gcra, t), 50);

    // Sliding window with a new window length: the estimate in use moves into the new
    // window's count.
    let sw: KeyedLimiter<u64, SlidingWindow> =
        KeyedLimiter::new(SlidingWindow::new(Rate::per_minute(100).unwrap()));
    sw.check_at(&1, 40, t).unwrap();
    sw.set_rate_at(Rate::per_hour(100).unwrap(), t + 90 * S);
    // 90 s in: the previous minute's 40 weigh half, so 20 are carried into the hour.
    assert_eq!(remaining(&sw, t + 90 * S), 80);
}

#[test]
fn set_algorithm_changes_the_burst_and_keeps_the_state() {
    let (clock, _mock) = Clock::mock();
    let limiter: KeyedLimiter<u64> =
        KeyedLimiter::with_clock(Gcra::new(Rate::per_second(10).unwrap()), clock);
    limiter.check(&1, 4).unwrap();
    limiter.set_algorithm(
        Gcra::new(Rate::per_second(10).unwrap())
            .with_burst(20)
            .unwrap(),
    );
    assert_eq!(limiter.peek(&1, 0).unwrap().remaining(), 16);
    assert_eq!(limiter.algorithm().burst(), 20);
}

/// A limiter that does not implement live changes.
struct Fixed(UnkeyedLimiter<Gcra>);

impl Limiter<()> for Fixed {
    fn clock(&self) -> &Clock {
        Limiter::clock(&self.0)
    }
    fn rate(&self) -> Rate {
        self.0.rate()
    }
    fn check_at(&self, _: &(), cost: u64, now: Nanos) -> Result<Decision, CheckError> {
        self.0.check_at(cost, now)
    }
    fn peek_at(&self, _: &(), cost: u64, now: Nanos) -> Result<Decision, CheckError> {
        self.0.peek_at(cost, now)
    }
    fn refund_at(&self, _: &(), cost: u64, now: Nanos) {
        self.0.refund_at(cost, now)
    }
    fn transact(
        &self,
        key: &(),
        cost: u64,
        now: Nanos,
        limit: Option<u64>,
        then: &mut dyn FnMut(&Decision) -> bool,
    ) -> Result<Decision, CheckError> {
        Limiter::transact(&self.0, key, cost, now, limit, then)
    }
}

#[test]
fn policy_limit_changes_are_typed_errors_for_unknown_or_unsupported_scopes() {
    let (clock, _mock) = Clock::mock();
    let policy = Policy::builder()
        .clock(clock.clone())
        .scope(Scope::keyed_by_ref(
            "name",
            Gcra::new(rate(5)),
            |r: &String| Some(r.as_str()),
        ))
        .scope(Scope::with_limiter(
            "custom",
            Fixed(UnkeyedLimiter::with_clock(Gcra::new(rate(5)), clock)),
            |_: &String| Some(()),
        ))
        .build();
    policy.check(&"a".to_owned(), 2).unwrap();
    assert_eq!(
        policy.set_rate("nope", rate(1)),
        Err(LimitChangeError::UnknownScope {
            scope: "nope".to_owned()
        })
    );
    assert_eq!(
        policy.set_rate("custom", rate(1)),
        Err(LimitChangeError::ScopeUnsupported {
            scope: "custom".to_owned()
        })
    );
    policy.set_rate("name", rate(50)).unwrap();
    let d = policy.peek(&"a".to_owned(), 0).unwrap();
    let name = d.scope("name").unwrap().decision;
    assert_eq!((name.limit(), name.remaining()), (50, 48));
}

#[test]
fn a_limit_change_for_a_name_two_scopes_share_changes_neither() {
    let (clock, _mock) = Clock::mock();
    let policy = Policy::builder()
        .clock(clock)
        .scope(Scope::keyed("dup", Gcra::new(rate(5)), |r: &u8| Some(*r)))
        .scope(Scope::keyed("dup", Gcra::new(rate(7)), |r: &u8| Some(*r)))
        .build();
    assert_eq!(
        policy.set_rate("dup", rate(50)),
        Err(LimitChangeError::AmbiguousScope {
            scope: "dup".to_owned(),
            count: 2
        })
    );
    let limits: Vec<u64> = policy
        .peek(&1, 0)
        .unwrap()
        .scopes()
        .map(|s| s.decision.limit())
        .collect();
    assert_eq!(limits, [5, 7]);
}

#[test]
fn a_calendar_plan_upgrade_keeps_what_the_month_has_used() {
    use ratewarden::algorithm::NOMINAL_MONTH;
    use ratewarden::{CalendarQuota, CycleAnchor};

    let (clock, mock) = Clock::mock();
    mock.increment(Duration::from_secs(1_709_251_200)); // 2024-03-01T00:00:00Z
    let billing: CycleAnchor = "2024-01-31T09:30:00Z".parse().unwrap();
    let policy = Policy::builder()
        .clock(clock)
        .scope(Scope::calendar(
            "videos",
            CalendarQuota::monthly(3).unwrap(),
            |r: &(u64, CycleAnchor)| Some(*r),
        ))
        .build();
    let remaining = |p: &Policy<(u64, CycleAnchor)>| {
        p.peek(&(7, billing), 0)
            .unwrap()
            .scope("videos")
            .unwrap()
            .decision
    };
    policy.check(&(7, billing), 2).unwrap();
    assert_eq!(remaining(&policy).remaining(), 1);
    // Free (3 a month) to Pro (150 a month) in the middle of the account's month.
    policy
        .set_rate("videos", Rate::new(150, NOMINAL_MONTH).unwrap())
        .unwrap();
    let d = remaining(&policy);
    assert_eq!((d.limit(), d.remaining()), (150, 148));
    // The period still ends on the account's billing date: 31 March, 09:30.
    assert_eq!(
        d.reset_after(),
        Duration::from_secs(30 * 86_400 + 9 * 3_600 + 1_800)
    );
}

// ---------------------------------------------------------------------------------------
// Unkeyed limiters: parameters read without a lock must neither deadlock with a change
// nor pair old parameters with a state the change has already carried over.
// ---------------------------------------------------------------------------------------

mod unkeyed_races {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::sync::{mpsc, Arc, Barrier};
    use std::time::Duration;

    use ratewarden::algorithm::{Algorithm, Packed};
    use ratewarden::{CheckError, Clock, Decision, FixedWindow, Gcra, Nanos, Rate, UnkeyedLimiter};

    /// `impl Algorithm for $wrapper` delegating to the wrapped algorithm, plus the
    /// items given (what the wrapper does differently).
    macro_rules! wrapping {
        ($wrapper:ident($inner:ty); $($item:item)*) => {
            impl Algorithm for $wrapper {
                type State = <$inner as Algorithm>::State;
                type Cell = <$inner as Algorithm>::Cell;
                fn rate(&self) -> Rate {
                    self.0.rate()
                }
                fn with_rate(&self, rate: Rate) -> Self {
                    $wrapper(self.0.with_rate(rate))
                }
                fn limit(&self) -> u64 {
                    self.0.limit()
                }
                fn fresh(&self) -> Self::State {
                    self.0.fresh()
                }
                fn decide(&self, s: &mut Self::State, now: Nanos, cost: u64) -> Decision {
                    self.0.decide(s, now, cost)
                }
                fn commit(&self, s: &mut Self::State, now: Nanos, cost: u64) {
                    self.0.commit(s, now, cost)
                }
                fn refund(&self, s: &mut Self::State, now: Nanos, cost: u64) {
                    self.0.refund(s, now, cost)
                }
                fn is_idle(&self, s: &Self::State, now: Nanos) -> bool {
                    self.0.is_idle(s, now)
                }
                $($item)*
            }
        };
    }

    /// A FixedWindow that does not override `pack` (the trait's documented default).
    #[derive(Debug, Clone)]
    struct NoPack(FixedWindow);

    wrapping! { NoPack(FixedWindow); }

    static PROGRESS: [AtomicU64; 2] = [AtomicU64::new(0), AtomicU64::new(0)];

    #[test]
    fn unkeyed_changes_and_checks_never_deadlock_for_an_algorithm_that_does_not_pack() {
        let (clock, _mock) = Clock::mock();
        let l = Arc::new(UnkeyedLimiter::with_clock(
            NoPack(FixedWindow::new("1000000/min".parse().unwrap())),
            clock,
        ));
        let (done, finished) = mpsc::channel();
        for (t, progress) in PROGRESS.iter().enumerate() {
            let (l, done) = (l.clone(), done.clone());
            std::thread::spawn(move || {
                for i in 0..200_000u64 {
                    progress.store(i, Ordering::Relaxed);
                    if t == 0 {
                        l.set_rate(Rate::per_minute(1_000_000 + i % 2).unwrap());
                    } else {
                        let _ = l.check(1);
                    }
                }
                done.send(()).unwrap();
            });
        }
        for _ in 0..2 {
            if finished.recv_timeout(Duration::from_secs(10)).is_err() {
                let seen = |p: &[AtomicU64; 2]| {
                    [p[0].load(Ordering::Relaxed), p[1].load(Ordering::Relaxed)]
                };
                let before = seen(&PROGRESS);
                std::thread::sleep(Duration::from_secs(3));
                panic!(
                    "no progress for 3 s ({before:?} -> {:?}): deadlock",
                    seen(&PROGRESS)
                );
            }
        }
    }

    /// Gcra, but the first `decide_and_commit` after `ARM` is set pauses until released,
    /// after it has read the parameters and before its compare-and-swap.
    #[derive(Debug, Clone, Copy)]
    struct Paused(Gcra);

    static ARM: AtomicBool = AtomicBool::new(false);
    static GATE: std::sync::OnceLock<(Barrier, Barrier)> = std::sync::OnceLock::new();
    static SEEN_INTERVAL: AtomicU64 = AtomicU64::new(0);

    wrapping! {
        Paused(Gcra);
        fn decide_and_commit(&self, s: &mut u64, now: Nanos, cost: u64) -> Decision {
            let d = self.0.decide_and_commit(s, now, cost);
            if ARM.swap(false, Ordering::SeqCst) {
                SEEN_INTERVAL.store(self.0.interval_nanos(), Ordering::SeqCst);
                let (a, b) = GATE.get().unwrap();
                a.wait(); // let the change run now
                b.wait(); // the change is done
            }
            d
        }
        fn carry_over(&self, next: &Self, s: &mut u64, now: Nanos) {
            self.0.carry_over(&next.0, s, now)
        }
        fn pack(&self) -> Option<Packed> {
            self.0.pack()
        }
        fn unpack(w: &Packed) -> Option<Self> {
            Gcra::unpack(w).map(Paused)
        }
    }

    #[test]
    fn an_unkeyed_gcra_commit_racing_a_change_uses_the_parameters_of_its_state() {
        const S: u64 = 1_000_000_000;
        GATE.get_or_init(|| (Barrier::new(2), Barrier::new(2)));
        let (clock, _mock) = Clock::mock();
        // 60 per second (T = 16.7 ms), then downgraded to 1 per second.
        let l = Arc::new(UnkeyedLimiter::with_clock(
            Paused(Gcra::new(Rate::per_second(60).unwrap())),
            clock,
        ));
        let t0 = 100 * S;
        ARM.store(true, Ordering::SeqCst);
        let checker = {
            let l = l.clone();
            std::thread::spawn(move || l.check_at(60, t0))
        };
        let (a, b) = GATE.get().unwrap();
        a.wait();
        // The check has read the old parameters and computed its new state; a change
        // starts now, while the check is between its decision and its commit.
        let changer = {
            let l = l.clone();
            std::thread::spawn(move || l.set_rate_at(Rate::per_second(30).unwrap(), t0))
        };
        std::thread::sleep(Duration::from_millis(20));
        b.wait();
        let racing = checker.join().unwrap();
        changer.join().unwrap();
        // The check computed with the old parameters while the change ran.
        assert_eq!(SEEN_INTERVAL.load(Ordering::SeqCst), 16_666_667);
        // Committed before the change, its 60 units would have been carried over to 2 s of
        // backlog at 30/s; run after it, a cost of 60 cannot fit a burst of 30. Either way,
        // one second from t0 admits no more than the larger limit (60).
        let admitted_racing = match racing {
            Ok(d) if d.is_allowed() => 60,
            Ok(d) => panic!("{d:?}"),
            Err(CheckError::CostExceedsCapacity { .. }) => 0,
            Err(e) => panic!("{e}"),
        };
        let admitted_after = (1..1000u64)
            .filter(|ms| l.check_at(1, t0 + ms * S / 1000).unwrap().is_allowed())
            .count() as u64;
        assert!(
            admitted_racing + admitted_after <= 60,
            "{admitted_racing} + {admitted_after} admitted within one second: more than the larger limit (60/s)"
        );
    }

    /// SlidingWindow, but the first `unpack` after `ARM_UNPACK` is set pauses until
    /// released and then declines, so that the check falls back to the parameters' mutex
    /// copy: it reads the parameters only after a change that ran while it was paused,
    /// although it read the state before that change (the widest possible window between
    /// a check's reading of the state and its reading of the parameters).
    #[derive(Debug, Clone, Copy)]
    struct SlowRead(ratewarden::SlidingWindow);

    static ARM_UNPACK: AtomicBool = AtomicBool::new(false);
    static UNPACK_GATE: std::sync::OnceLock<(Barrier, Barrier)> = std::sync::OnceLock::new();

    wrapping! {
        SlowRead(ratewarden::SlidingWindow);
        fn decide_and_commit(&self, s: &mut Self::State, now: Nanos, cost: u64) -> Decision {
            self.0.decide_and_commit(s, now, cost)
        }
        fn carry_over(&self, next: &Self, s: &mut Self::State, now: Nanos) {
            self.0.carry_over(&next.0, s, now)
        }
        fn pack(&self) -> Option<Packed> {
            self.0.pack()
        }
        fn unpack(w: &Packed) -> Option<Self> {
            if ARM_UNPACK.swap(false, Ordering::SeqCst) {
                let (a, b) = UNPACK_GATE.get().unwrap();
                a.wait(); // the check has read the state: let the change run
                b.wait(); // the change is done
                return None;
            }
            ratewarden::SlidingWindow::unpack(w).map(SlowRead)
        }
    }

    #[test]
    fn an_unkeyed_denial_racing_a_change_is_not_decided_on_the_old_state_with_the_new_parameters() {
        const S: u64 = 1_000_000_000;
        UNPACK_GATE.get_or_init(|| (Barrier::new(2), Barrier::new(2)));
        let (clock, _mock) = Clock::mock();
        let ten_per_minute = SlowRead(ratewarden::SlidingWindow::new(
            Rate::per_minute(10).unwrap(),
        ));
        let l = Arc::new(UnkeyedLimiter::with_clock(ten_per_minute, clock));
        // A change that changes nothing, so that checks read the published words.
        l.set_algorithm_at(ten_per_minute, 0);
        assert!(l.check_at(10, 600 * S).unwrap().is_allowed()); // the window [600 s, 660 s)
                                                                // 54 s into the next window, 10 × 6/60 = 1 still counts: 1 more fits under 10/min.
        let now = 714 * S;
        ARM_UNPACK.store(true, Ordering::SeqCst);
        let checker = {
            let l = l.clone();
            std::thread::spawn(move || l.check_at(1, now))
        };
        let (a, b) = UNPACK_GATE.get().unwrap();
        a.wait();
        // 5 per 2 minutes: the estimate (1) is carried over as the count of the 2-minute
        // window [600 s, 720 s), where 1 more still fits.
        l.set_rate_at(Rate::new(5, Duration::from_secs(120)).unwrap(), now);
        b.wait();
        let d = checker.join().unwrap().unwrap();
        // Under the old limit on the old state, or under the new limit on the carried-over
        // state, the request is allowed; only the new limit on the state from before the
        // change (10 counted in a 2-minute window) denies it.
        assert!(
            d.is_allowed(),
            "denied, by the new limit applied to the state the change replaced: {d:?}"
        );
        assert_eq!(l.peek_at(0, now).unwrap().remaining(), 3);
    }
}
