//! Calendar quotas through the public API, on a mock clock: month ends, February in leap
//! and common years, anchors on the 29th/30th/31st, UTC day boundaries, per-key anchors,
//! headers, eviction, concurrent checks, and a property test against a reference calendar.

use std::sync::Arc;
use std::time::Duration;

use ratewarden::headers::{HeaderFormat, Reset};
use ratewarden::{
    CalendarLimiter, CalendarQuota, CheckError, Clock, CycleAnchor, KeyedLimiter, Limiter, Nanos,
    Policy, Scope,
};

/// Seconds since the epoch of a UTC date-time, computed independently of the crate's
/// calendar (days from civil, after H. Hinnant's algorithm).
fn unix(y: i64, m: i64, d: i64, hh: i64, mm: i64, ss: i64) -> u64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    u64::try_from(days * 86_400 + hh * 3_600 + mm * 60 + ss).unwrap()
}

fn nanos(secs: u64) -> Nanos {
    secs * 1_000_000_000
}

/// A mock clock set to `secs` after the epoch.
fn clock_at(secs: u64) -> (Clock, Arc<quanta::Mock>) {
    let (clock, mock) = Clock::mock();
    mock.increment(Duration::from_secs(secs));
    (clock, mock)
}

fn move_to(mock: &quanta::Mock, clock: &Clock, secs: u64) {
    mock.increment(Duration::from_nanos(nanos(secs) - clock.now()));
}

#[test]
fn a_thousand_a_day_resets_at_midnight_utc() {
    let (clock, mock) = clock_at(unix(2024, 2, 28, 23, 0, 0));
    let limiter: KeyedLimiter<String, CalendarQuota> =
        KeyedLimiter::with_clock(CalendarQuota::daily(1000).unwrap(), clock.clone());
    assert!(limiter.check("k", 1000).unwrap().is_allowed());
    let denied = limiter.check("k", 1).unwrap();
    assert_eq!(denied.retry_after(), Some(Duration::from_secs(3_600)));
    assert_eq!(denied.window(), Duration::from_secs(86_400));

    let mut headers: Vec<(String, String)> = Vec::new();
    HeaderFormat::x_ratelimit()
        .reset(Reset::Iso8601)
        .write_decision("daily", &denied, clock.now_system(), &mut headers)
        .unwrap();
    assert!(headers.contains(&(
        "X-RateLimit-Reset".to_owned(),
        "2024-02-29T00:00:00.000Z".to_owned()
    )));
    assert!(headers.contains(&("Retry-After".to_owned(), "3600".to_owned())));

    mock.increment(Duration::from_secs(3_600) - Duration::from_nanos(1));
    assert!(limiter.check("k", 1).unwrap().is_denied());
    mock.increment(Duration::from_nanos(1)); // 29 February, midnight
    let d = limiter.check("k", 1).unwrap();
    assert!(d.is_allowed());
    assert_eq!(d.remaining(), 999);
    assert_eq!(d.reset_after(), Duration::from_secs(86_400));
}

/// For each anchor day, walk a leap year and a common year month by month: every reset
/// falls on the anchor day or, in shorter months, on the month's last day.
#[test]
fn anchors_on_the_29th_30th_and_31st_reset_on_the_last_day_of_shorter_months() {
    // (anchor day, year, the reset day in each month from February to December)
    let expected: &[(i64, i64, [i64; 11])] = &[
        (29, 2024, [29, 29, 29, 29, 29, 29, 29, 29, 29, 29, 29]),
        (29, 2023, [28, 29, 29, 29, 29, 29, 29, 29, 29, 29, 29]),
        (30, 2024, [29, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30]),
        (30, 2023, [28, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30]),
        (31, 2024, [29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]),
        (31, 2023, [28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]),
    ];
    for &(day, year, resets) in expected {
        let (clock, mock) = clock_at(unix(year, 1, day, 12, 0, 0));
        let limiter: CalendarLimiter<u32> =
            CalendarLimiter::with_clock(CalendarQuota::monthly(2).unwrap(), clock.clone());
        let anchor = CycleAnchor::new(day as u8, 12, 0, 0).unwrap();
        for (i, &reset_day) in resets.iter().enumerate() {
            let month = i as i64 + 2;
            let reset = unix(year, month, reset_day, 12, 0, 0);
            assert!(limiter.check(&1, anchor, 2).unwrap().is_allowed());
            let d = limiter.check(&1, anchor, 1).unwrap();
            assert_eq!(
                clock.now() + d.retry_after_nanos(),
                nanos(reset),
                "anchor {day}, {year}-{month:02}"
            );
            // still denied a nanosecond before the reset; allowed at it
            move_to(&mock, &clock, reset);
            mock.decrement(Duration::from_nanos(1));
            assert!(limiter.check(&1, anchor, 1).unwrap().is_denied());
            move_to(&mock, &clock, reset);
            assert!(limiter.peek(&1, anchor, 2).unwrap().is_allowed());
        }
    }
}

#[test]
fn each_key_runs_on_its_own_billing_date() {
    let (clock, mock) = clock_at(unix(2023, 2, 20, 0, 0, 0));
    let limiter: CalendarLimiter<&str> =
        CalendarLimiter::with_clock(CalendarQuota::monthly(3).unwrap(), clock.clone());
    let on_31 = CycleAnchor::from_unix_secs(unix(2022, 10, 31, 8, 0, 0) as i64).unwrap();
    let on_5 = CycleAnchor::from_unix_secs(unix(2022, 11, 5, 0, 0, 0) as i64).unwrap();
    limiter.check(&"a", on_31, 3).unwrap();
    limiter.check(&"b", on_5, 3).unwrap();
    // common year: a's month ends on 28 February at 08:00, b's on 5 March
    let a = limiter.check(&"a", on_31, 1).unwrap();
    let b = limiter.check(&"b", on_5, 1).unwrap();
    assert_eq!(
        a.retry_after_nanos(),
        nanos(unix(2023, 2, 28, 8, 0, 0) - unix(2023, 2, 20, 0, 0, 0))
    );
    assert_eq!(
        b.retry_after_nanos(),
        nanos(unix(2023, 3, 5, 0, 0, 0) - unix(2023, 2, 20, 0, 0, 0))
    );
    assert_eq!(a.window(), Duration::from_secs(28 * 86_400));
    move_to(&mock, &clock, unix(2023, 3, 1, 0, 0, 0));
    assert!(limiter.check(&"a", on_31, 1).unwrap().is_allowed());
    assert!(limiter.check(&"b", on_5, 1).unwrap().is_denied());
    assert_eq!(limiter.len(), 2);
}

#[test]
fn a_changed_billing_date_applies_from_the_next_period() {
    let (clock, mock) = clock_at(unix(2024, 5, 10, 0, 0, 0));
    let limiter: CalendarLimiter<u8> =
        CalendarLimiter::with_clock(CalendarQuota::monthly(5).unwrap(), clock.clone());
    let first = CycleAnchor::new(1, 0, 0, 0).unwrap();
    let fifteenth = CycleAnchor::new(15, 0, 0, 0).unwrap();
    limiter.check(&1, first, 5).unwrap();
    // The account moves its billing date mid-period: what it used still counts until the
    // period it was used in ends (1 June).
    let d = limiter.check(&1, fifteenth, 1).unwrap();
    assert!(d.is_denied());
    assert_eq!(
        d.retry_after_nanos(),
        nanos(unix(2024, 6, 1, 0, 0, 0) - unix(2024, 5, 10, 0, 0, 0))
    );
    move_to(&mock, &clock, unix(2024, 6, 2, 0, 0, 0));
    let d = limiter.check(&1, fifteenth, 1).unwrap();
    assert_eq!(
        d.reset_after_nanos(),
        nanos(unix(2024, 6, 15, 0, 0, 0) - unix(2024, 6, 2, 0, 0, 0))
    );
}

#[test]
fn in_a_policy_plans_set_the_count_and_denials_and_refunds_spend_nothing() {
    struct Req {
        account: u64,
        anchor: CycleAnchor,
        plan_limit: Option<u64>,
    }
    let (clock, _mock) = clock_at(unix(2024, 12, 31, 23, 59, 59));
    let policy = Policy::builder()
        .clock(clock)
        .scope(
            Scope::calendar("month", CalendarQuota::monthly(3).unwrap(), |r: &Req| {
                Some((r.account, r.anchor))
            })
            .limit_by(|r: &Req| r.plan_limit),
        )
        .scope(Scope::keyed(
            "day",
            CalendarQuota::daily(2).unwrap(),
            |r: &Req| Some(r.account),
        ))
        .build();
    let req = Req {
        account: 9,
        anchor: CycleAnchor::default(),
        plan_limit: Some(10),
    };
    assert!(policy.check(&req, 2).unwrap().is_allowed());
    let d = policy.check(&req, 1).unwrap();
    let denying: Vec<_> = d.denials().map(|s| s.name).collect();
    assert_eq!(denying, ["day"]);
    // the year turns in one second: both periods end then
    assert_eq!(d.retry_after(), Some(Duration::from_secs(1)));
    assert_eq!(d.scope("month").unwrap().decision.remaining(), 8);
    assert_eq!(d.scope("month").unwrap().decision.limit(), 10);
    policy.refund(&req, 1);
    let d = policy.check(&req, 0).unwrap();
    assert_eq!(d.scope("month").unwrap().decision.remaining(), 9);
    assert_eq!(d.scope("day").unwrap().decision.remaining(), 1);
}

#[test]
fn keys_whose_period_ended_are_evicted() {
    let (clock, mock) = clock_at(unix(2024, 2, 10, 0, 0, 0));
    let limiter: CalendarLimiter<u32> = CalendarLimiter::from_keyed(
        KeyedLimiter::builder(CalendarQuota::monthly(3).unwrap())
            .clock(clock.clone())
            .shards(1)
            .build(),
    );
    let anchor = CycleAnchor::new(31, 0, 0, 0).unwrap();
    for key in 0..200 {
        limiter.check(&key, anchor, 1).unwrap();
    }
    assert_eq!(limiter.len(), 200);
    // Still inside every key's period: nothing goes.
    for _ in 0..300 {
        limiter.check(&1_000, anchor, 0).unwrap();
        limiter.check(&1_000, anchor, 1).ok();
    }
    assert_eq!(limiter.len(), 201);
    move_to(&mock, &clock, unix(2024, 2, 29, 0, 0, 2));
    for _ in 0..300 {
        limiter.check(&2_000, anchor, 1).ok();
    }
    assert_eq!(limiter.len(), 1);
    assert_eq!(Limiter::evictions(&limiter), 201);
}

#[test]
fn concurrent_checks_never_admit_more_than_the_period_allows() {
    let (clock, mock) = clock_at(unix(2024, 3, 31, 23, 59, 0));
    let limiter: Arc<CalendarLimiter<u8>> = Arc::new(CalendarLimiter::with_clock(
        CalendarQuota::monthly(500).unwrap(),
        clock,
    ));
    let anchor = CycleAnchor::new(31, 0, 0, 0).unwrap();
    let run = |limiter: &Arc<CalendarLimiter<u8>>| {
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let limiter = Arc::clone(limiter);
                std::thread::spawn(move || {
                    (0..400)
                        .filter(|_| limiter.check(&7, anchor, 1).unwrap().is_allowed())
                        .count()
                })
            })
            .collect();
        threads
            .into_iter()
            .map(|t| t.join().unwrap())
            .sum::<usize>()
    };
    assert_eq!(run(&limiter), 500);
    // April has no 31st: the next period starts on 30 April.
    mock.increment(Duration::from_secs(29 * 86_400));
    assert!(limiter.check(&7, anchor, 1).unwrap().is_denied());
    mock.increment(Duration::from_secs(86_400));
    assert_eq!(run(&limiter), 500);
}

/// A reference calendar written from the Gregorian rules, sharing nothing with the crate:
/// the `[start, end)` in seconds of the monthly period containing `t` for an anchor on
/// `day` at `tod` seconds after midnight UTC.
mod reference {
    fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
        let y = if m <= 2 { y - 1 } else { y };
        let era = y.div_euclid(400);
        let yoe = y - era * 400;
        let doy = (153 * ((m + 9) % 12) + 2) / 5 + d - 1;
        era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468
    }

    fn civil_from_days(z: i64) -> (i64, i64) {
        let z = z + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let m = if mp < 10 { mp + 3 } else { mp - 9 };
        (yoe + era * 400 + i64::from(m <= 2), m)
    }

    fn days_in(y: i64, m: i64) -> i64 {
        let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
        match m {
            2 if leap => 29,
            2 => 28,
            4 | 6 | 9 | 11 => 30,
            _ => 31,
        }
    }

    fn boundary(y: i64, m: i64, day: i64, tod: i64) -> i64 {
        days_from_civil(y, m, day.min(days_in(y, m))) * 86_400 + tod
    }

    pub fn month(t: i64, day: i64, tod: i64) -> (i64, i64) {
        let (y, m) = civil_from_days(t.div_euclid(86_400));
        let (py, pm) = if m == 1 { (y - 1, 12) } else { (y, m - 1) };
        let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
        let here = boundary(y, m, day, tod);
        if t >= here {
            (here, boundary(ny, nm, day, tod))
        } else {
            (boundary(py, pm, day, tod), here)
        }
    }
}

mod model {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Op {
        Advance(u64),
        Check(usize, u64),
        Refund(usize, u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            // from a second to about 40 days
            2 => (1u64..3_500_000).prop_map(Op::Advance),
            1 => (0u64..40).prop_map(|d| Op::Advance(d * 86_400)),
            4 => (0usize..3, 0u64..4).prop_map(|(k, c)| Op::Check(k, c)),
            1 => (0usize..3, 1u64..4).prop_map(|(k, c)| Op::Refund(k, c)),
        ]
    }

    /// What a key's events (time in seconds, +admitted / -refunded) add up to in
    /// `[ps, pe)`.
    fn used_in(events: &[(i64, i64)], ps: i64, pe: i64) -> i64 {
        events
            .iter()
            .filter(|(at, _)| ps <= *at && *at < pe)
            .map(|(_, c)| c)
            .sum()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        /// Monthly quotas with per-key anchors against the reference calendar and a model
        /// that keeps every admission and refund: each decision matches field for field.
        #[test]
        fn monthly_quota_matches_the_reference_calendar(
            start in 1_640_995_200u64..1_767_225_600, // 2022 to 2025
            anchors in proptest::collection::vec((1u8..=31, 0u8..24, 0u8..60), 3),
            limit in 1u64..6,
            ops in proptest::collection::vec(op(), 1..120),
        ) {
            let (clock, mock) = clock_at(start);
            let limiter: CalendarLimiter<usize> =
                CalendarLimiter::with_clock(CalendarQuota::monthly(limit).unwrap(), clock.clone());
            let anchors: Vec<(CycleAnchor, i64, i64)> = anchors
                .iter()
                .map(|&(d, h, m)| {
                    let tod = i64::from(h) * 3_600 + i64::from(m) * 60;
                    (CycleAnchor::new(d, h, m, 0).unwrap(), i64::from(d), tod)
                })
                .collect();
            // (time in seconds, +admitted / -refunded) per key
            let mut events: Vec<Vec<(i64, i64)>> = vec![Vec::new(); 3];
            let mut now = start;
            for op in ops {
                let t = now as i64;
                match op {
                    Op::Advance(s) => {
                        now += s;
                        mock.increment(Duration::from_secs(s));
                    }
                    Op::Check(k, cost) => {
                        let (anchor, day, tod) = anchors[k];
                        let (ps, pe) = reference::month(t, day, tod);
                        let used = used_in(&events[k], ps, pe) as u64;
                        let result = limiter.check(&k, anchor, cost);
                        if cost > limit {
                            prop_assert_eq!(
                                result,
                                Err(CheckError::CostExceedsCapacity { cost, capacity: limit })
                            );
                            continue;
                        }
                        let d = result.unwrap();
                        let to_end = nanos((pe - t) as u64);
                        prop_assert_eq!(d.window_nanos(), nanos((pe - ps) as u64));
                        prop_assert_eq!(d.limit(), limit);
                        if used + cost <= limit {
                            prop_assert!(d.is_allowed());
                            prop_assert_eq!(d.remaining(), limit - used - cost);
                            let reset = if used + cost == 0 { 0 } else { to_end };
                            prop_assert_eq!(d.reset_after_nanos(), reset);
                            if cost > 0 {
                                events[k].push((t, cost as i64));
                            }
                        } else {
                            prop_assert!(d.is_denied());
                            prop_assert_eq!(d.remaining(), limit - used);
                            prop_assert_eq!(d.retry_after_nanos(), to_end);
                            prop_assert_eq!(d.reset_after_nanos(), to_end);
                        }
                    }
                    Op::Refund(k, cost) => {
                        let (anchor, day, tod) = anchors[k];
                        let (ps, pe) = reference::month(t, day, tod);
                        let used = used_in(&events[k], ps, pe);
                        limiter.refund(&k, anchor, cost);
                        let back = used.min(cost as i64);
                        if back > 0 {
                            events[k].push((t, -back));
                        }
                    }
                }
            }
        }
    }
}
