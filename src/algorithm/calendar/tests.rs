use super::*;

const S: u64 = NANOS_PER_SEC;

/// An RFC 3339 time in nanoseconds.
fn at(s: &str) -> Nanos {
    let ts: Timestamp = s.parse().unwrap();
    u64::try_from(ts.as_nanosecond()).unwrap()
}

fn run(alg: &CalendarQuota, s: &mut CalendarState, now: Nanos, cost: u64) -> Decision {
    let d = alg.decide(s, now, cost);
    if d.is_allowed() {
        alg.commit(s, now, cost);
    }
    d
}

fn monthly(day: u8) -> CalendarQuota {
    CalendarQuota::monthly(3)
        .unwrap()
        .anchored(CycleAnchor::new(day, 0, 0, 0).unwrap())
}

#[test]
fn months_that_lack_the_anchor_day_reset_on_their_last_day() {
    let cases: &[(u8, &str, &str, &str)] = &[
        // anchor day, now, period start, period end
        (
            31,
            "2024-02-10T12:00:00Z",
            "2024-01-31T00:00:00Z",
            "2024-02-29T00:00:00Z",
        ),
        (
            31,
            "2023-02-10T12:00:00Z",
            "2023-01-31T00:00:00Z",
            "2023-02-28T00:00:00Z",
        ),
        (
            31,
            "2024-03-15T00:00:00Z",
            "2024-02-29T00:00:00Z",
            "2024-03-31T00:00:00Z",
        ),
        (
            31,
            "2024-04-30T00:00:00Z",
            "2024-04-30T00:00:00Z",
            "2024-05-31T00:00:00Z",
        ),
        (
            31,
            "2024-04-29T23:59:59.999999999Z",
            "2024-03-31T00:00:00Z",
            "2024-04-30T00:00:00Z",
        ),
        (
            30,
            "2024-02-15T00:00:00Z",
            "2024-01-30T00:00:00Z",
            "2024-02-29T00:00:00Z",
        ),
        (
            30,
            "2023-02-15T00:00:00Z",
            "2023-01-30T00:00:00Z",
            "2023-02-28T00:00:00Z",
        ),
        (
            30,
            "2024-03-15T00:00:00Z",
            "2024-02-29T00:00:00Z",
            "2024-03-30T00:00:00Z",
        ),
        (
            29,
            "2023-02-15T00:00:00Z",
            "2023-01-29T00:00:00Z",
            "2023-02-28T00:00:00Z",
        ),
        (
            29,
            "2024-02-15T00:00:00Z",
            "2024-01-29T00:00:00Z",
            "2024-02-29T00:00:00Z",
        ),
        (
            29,
            "2023-03-01T00:00:00Z",
            "2023-02-28T00:00:00Z",
            "2023-03-29T00:00:00Z",
        ),
        (
            29,
            "2024-03-01T00:00:00Z",
            "2024-02-29T00:00:00Z",
            "2024-03-29T00:00:00Z",
        ),
        // 2100 is not a leap year, 2000 is
        (
            29,
            "2100-02-28T00:00:00Z",
            "2100-02-28T00:00:00Z",
            "2100-03-29T00:00:00Z",
        ),
        (
            29,
            "2000-02-28T00:00:00Z",
            "2000-01-29T00:00:00Z",
            "2000-02-29T00:00:00Z",
        ),
        (
            1,
            "2024-12-31T23:59:59Z",
            "2024-12-01T00:00:00Z",
            "2025-01-01T00:00:00Z",
        ),
        (
            1,
            "2025-01-01T00:00:00Z",
            "2025-01-01T00:00:00Z",
            "2025-02-01T00:00:00Z",
        ),
    ];
    for &(day, now, start, end) in cases {
        assert_eq!(
            monthly(day).period_at(at(now)),
            (at(start), at(end)),
            "anchor {day}, at {now}"
        );
    }
}

#[test]
fn the_anchor_time_of_day_is_part_of_the_boundary() {
    let alg = CalendarQuota::monthly(1)
        .unwrap()
        .anchored(CycleAnchor::new(15, 9, 30, 0).unwrap());
    assert_eq!(
        alg.period_at(at("2025-01-15T09:29:59Z")),
        (at("2024-12-15T09:30:00Z"), at("2025-01-15T09:30:00Z"))
    );
    assert_eq!(
        alg.period_at(at("2025-01-15T09:30:00Z")),
        (at("2025-01-15T09:30:00Z"), at("2025-02-15T09:30:00Z"))
    );
}

#[test]
fn daily_periods_turn_at_the_anchor_time_utc() {
    let midnight = CalendarQuota::daily(1000).unwrap();
    assert_eq!(
        midnight.period_at(at("2024-02-28T23:59:59.999999999Z")),
        (at("2024-02-28T00:00:00Z"), at("2024-02-29T00:00:00Z"))
    );
    assert_eq!(
        midnight.period_at(at("2024-02-29T00:00:00Z")),
        (at("2024-02-29T00:00:00Z"), at("2024-03-01T00:00:00Z"))
    );
    let five = midnight.anchored(CycleAnchor::new(1, 5, 0, 0).unwrap());
    assert_eq!(
        five.period_at(at("2024-03-01T04:00:00Z")),
        (at("2024-02-29T05:00:00Z"), at("2024-03-01T05:00:00Z"))
    );
    // before the first boundary after the epoch: the period starts at the epoch
    assert_eq!(five.period_at(0), (0, 5 * 3_600 * S));
    assert_eq!(monthly(15).period_at(0), (0, at("1970-01-15T00:00:00Z")));
}

/// An obviously-correct month length: the Gregorian leap rule, written out.
fn days_in(year: i64, month: u8) -> u8 {
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

#[test]
fn periods_tile_time_and_start_on_the_clamped_day_for_every_anchor() {
    for day in 1..=31u8 {
        let alg = CalendarQuota::monthly(5)
            .unwrap()
            .anchored(CycleAnchor::new(day, 6, 0, 0).unwrap());
        let mut now = at("1999-12-20T00:00:00Z");
        let (mut start, mut end) = alg.period_at(now);
        for _ in 0..40 {
            assert!(start <= now && now < end);
            let (next_start, next_end) = alg.period_at(end);
            assert_eq!(next_start, end, "anchor {day}: periods are contiguous");
            // one nanosecond earlier is still the previous period
            assert_eq!(alg.period_at(end - 1), (start, end));
            let dt = Offset::UTC.to_datetime(Timestamp::from_nanosecond(end.into()).unwrap());
            let expect = day.min(days_in(dt.year().into(), dt.month().unsigned_abs()));
            assert_eq!(dt.day().unsigned_abs(), expect, "anchor {day}: {dt}");
            assert_eq!((dt.hour(), dt.minute(), dt.second()), (6, 0, 0));
            let len_days = (end - start) / DAY_NANOS;
            assert!((28..=31).contains(&len_days), "{len_days}");
            now = end;
            (start, end) = (next_start, next_end);
        }
    }
}

#[test]
fn exactly_the_count_per_period_then_retry_at_the_reset() {
    let alg = monthly(31);
    let mut s = alg.fresh();
    let t0 = at("2023-02-10T00:00:00Z");
    let period = at("2023-02-28T00:00:00Z") - at("2023-01-31T00:00:00Z");
    let to_end = at("2023-02-28T00:00:00Z") - t0;
    for left in (0..3).rev() {
        let d = run(&alg, &mut s, t0, 1);
        assert!(d.is_allowed());
        assert_eq!(d.remaining(), left);
        assert_eq!(d.limit(), 3);
        assert_eq!(d.window_nanos(), period);
        assert_eq!(d.reset_after_nanos(), to_end);
    }
    let d = run(&alg, &mut s, t0 + S, 1);
    assert!(d.is_denied());
    assert_eq!(d.retry_after_nanos(), to_end - S);
    assert!(run(&alg, &mut s, at("2023-02-28T00:00:00Z") - 1, 1).is_denied());
    let d = run(&alg, &mut s, at("2023-02-28T00:00:00Z"), 2);
    assert!(d.is_allowed());
    assert_eq!(d.remaining(), 1);
    assert_eq!(
        d.window_nanos(),
        at("2023-03-31T00:00:00Z") - at("2023-02-28T00:00:00Z")
    );
}

#[test]
fn an_untouched_key_reports_no_reset_and_zero_cost_consumes_nothing() {
    let alg = CalendarQuota::daily(10).unwrap();
    let mut s = alg.fresh();
    let d = run(&alg, &mut s, 5 * S, 0);
    assert_eq!((d.remaining(), d.reset_after_nanos()), (10, 0));
    assert_eq!(s, CalendarState::default());
    assert!(alg.is_idle(&s, 0));
}

#[test]
fn an_earlier_reading_stays_in_the_keys_period() {
    let alg = CalendarQuota::daily(2).unwrap();
    let mut s = alg.fresh();
    let midnight = at("2024-06-02T00:00:00Z");
    assert!(run(&alg, &mut s, midnight + 1, 2).is_allowed());
    // a thread that read the clock just before midnight, then took the lock
    let d = run(&alg, &mut s, midnight - 1, 1);
    assert!(d.is_denied());
    assert_eq!(d.retry_after_nanos(), DAY_NANOS);
    assert!(!alg.is_idle(&s, midnight - 1));
    alg.refund(&mut s, midnight - 1, 1);
    assert_eq!(s.count, 1);
    assert_eq!(s.start, midnight);
}

#[test]
fn idle_once_the_period_ends_and_refund_never_goes_below_fresh() {
    let alg = monthly(1);
    let mut s = alg.fresh();
    let t = at("2024-02-10T00:00:00Z");
    run(&alg, &mut s, t, 3);
    alg.refund(&mut s, t, 1);
    assert_eq!(s.count, 2);
    assert!(!alg.is_idle(&s, at("2024-02-29T23:59:59Z")));
    assert!(alg.is_idle(&s, at("2024-03-01T00:00:00Z")));
    alg.refund(&mut s, t, 50);
    assert_eq!(s.count, 0);
    assert!(alg.is_idle(&s, t));
    // a refund after the period ended does not reach back into it
    run(&alg, &mut s, t, 3);
    alg.refund(&mut s, at("2024-03-02T00:00:00Z"), 2);
    assert_eq!(s.count, 0);
}

#[test]
fn rate_is_the_count_per_nominal_window_and_with_rate_keeps_the_calendar() {
    let alg = monthly(31);
    assert_eq!(alg.rate().to_string(), "3/30d");
    assert_eq!(
        CalendarQuota::daily(1000).unwrap().rate().to_string(),
        "1000/day"
    );
    let pro = alg.with_rate("150/min".parse().unwrap());
    assert_eq!(
        (pro.count(), pro.period(), pro.anchor()),
        (150, Period::Month, alg.anchor())
    );
    assert_eq!(pro.rate().to_string(), "150/30d");
    assert_eq!(CalendarQuota::monthly(0), Err(RateError::ZeroCount));
}

#[test]
fn a_damaged_state_is_stale_never_a_panic() {
    let alg = CalendarQuota::daily(10).unwrap();
    for mut s in [
        CalendarState {
            start: 200,
            end: 100,
            count: 1,
        },
        CalendarState {
            start: 100,
            end: 100,
            count: 3,
        },
        CalendarState {
            start: 0,
            end: u64::MAX,
            count: u64::MAX,
        },
    ] {
        let before = s;
        let d = alg.decide(&mut s.clone(), 50, 1);
        if before.start >= before.end {
            // Judged as a fresh period.
            assert_eq!(d.remaining(), 9, "{before:?}");
        } else {
            assert!(d.is_denied());
        }
        alg.commit(&mut s, 50, 1);
        alg.refund(&mut s, 50, 1);
        let _ = alg.is_idle(&s, 50);
    }
}
