//! Calendar quotas through the public API, on a mock clock: month ends, February in leap
//! and common years, anchors on the 29th/30th/31st, UTC day boundaries, per-key anchors,
//! headers, eviction and concurrent checks.

use std::sync::Arc;
use std::time::Duration;

use ratewarden::headers::{HeaderFormat, Reset};
use ratewarden::{
    CalendarLimiter, CalendarQuota, Clock, CycleAnchor, KeyedLimiter, Limiter, Nanos, Policy, Scope,
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
