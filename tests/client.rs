//! The client module reads back everything the header module writes, tolerates what
//! real servers send, and its retry helpers honour `Retry-After`.

use std::cell::RefCell;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use proptest::prelude::*;
use ratewarden::client::{retry, Attempt, Backoff, RateLimitInfo, RetryError, RetryGate};
use ratewarden::headers::{HeaderFormat, Outcome, Prefix, Report, Reset, RetryAfter, Snapshot};
use ratewarden::Clock;

const NOW: u64 = 1_715_797_213;

fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(NOW)
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn snap(name: &str, limit: u64, remaining: u64, window: u64, reset_ms: u64) -> Snapshot<'_> {
    Snapshot {
        name,
        limit,
        remaining,
        window: secs(window),
        reset_after: Duration::from_millis(reset_ms),
        quota_unit: None,
        partition_key: None,
    }
}

fn roundtrip(
    format: HeaderFormat,
    scopes: &[Snapshot<'_>],
    retry_ms: Option<u64>,
) -> RateLimitInfo {
    let mut headers: Vec<(String, String)> = Vec::new();
    format
        .write(
            &Outcome {
                scopes,
                denied: retry_ms.is_some(),
                retry_after: retry_ms.map(Duration::from_millis),
                now: now(),
            },
            &mut headers,
        )
        .unwrap();
    RateLimitInfo::parse(headers, now())
}

fn ceil(ms: u64) -> Duration {
    secs(ms.div_ceil(1_000))
}

/// Two scopes: the hourly one is closest to exhaustion.
fn scopes() -> [Snapshot<'static>; 2] {
    [
        snap("hour", 100, 3, 3_600, 1_234_500),
        snap("day", 1_000, 500, 86_400, 40_000_001),
    ]
}

#[test]
fn classic_styles_round_trip_with_every_reset_form() {
    for prefix in [Prefix::XRateLimit, Prefix::XRateDashLimit] {
        for reset in [Reset::Seconds, Reset::UnixSeconds, Reset::Iso8601] {
            for used in [false, true] {
                let mut format = HeaderFormat::x_ratelimit().prefix(prefix).reset(reset);
                if used {
                    format = format.with_used();
                }
                let info = roundtrip(format, &scopes(), None);
                assert_eq!(info.quotas.len(), 1, "{format:?}");
                let q = &info.quotas[0];
                assert_eq!(q.name, None);
                assert_eq!((q.limit, q.remaining), (Some(100), Some(3)), "{format:?}");
                assert_eq!(q.reset_after, Some(ceil(1_234_500)), "{format:?}");
                assert_eq!(info.retry_after, None);
            }
        }
    }
}

#[test]
fn retry_after_in_both_forms_round_trips() {
    for form in [RetryAfter::Seconds, RetryAfter::HttpDate] {
        let format = HeaderFormat::x_ratelimit().retry_after(Some(form));
        let denied = [snap("hour", 100, 0, 3_600, 9_000)];
        let info = roundtrip(format, &denied, Some(7_200));
        assert_eq!(info.retry_after, Some(secs(8)), "{form:?}");
        assert_eq!(info.wait(), Some(secs(8)));
        let info = roundtrip(
            HeaderFormat::retry_after_only().retry_after(Some(form)),
            &denied,
            Some(1),
        );
        assert_eq!(info.retry_after, Some(secs(1)), "{form:?}");
        assert!(info.quotas.is_empty());
    }
}

#[test]
fn per_window_sets_round_trip_with_their_windows() {
    let info = roundtrip(HeaderFormat::per_window(), &scopes(), None);
    let got: Vec<_> = info
        .quotas
        .iter()
        .map(|q| (q.name.as_deref(), q.limit, q.remaining, q.window))
        .collect();
    assert_eq!(
        got,
        [
            (Some("Hour"), Some(100), Some(3), Some(secs(3_600))),
            (Some("Day"), Some(1_000), Some(500), Some(secs(86_400))),
        ]
    );
    // The one reset header belongs to the first window.
    assert_eq!(info.quotas[0].reset_after, Some(ceil(1_234_500)));
    assert_eq!(info.closest().unwrap().name.as_deref(), Some("Hour"));
}

#[test]
fn ietf_draft_10_round_trips_every_scope() {
    let info = roundtrip(HeaderFormat::ietf(Report::All), &scopes(), Some(1_500));
    let got: Vec<_> = info
        .quotas
        .iter()
        .map(|q| {
            (
                q.name.as_deref(),
                q.limit,
                q.remaining,
                q.window,
                q.reset_after,
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (
                Some("hour"),
                Some(100),
                Some(3),
                Some(secs(3_600)),
                Some(ceil(1_234_500))
            ),
            (
                Some("day"),
                Some(1_000),
                Some(500),
                Some(secs(86_400)),
                Some(ceil(40_000_001))
            ),
        ]
    );
    assert_eq!(info.retry_after, Some(secs(2)));

    // Closest: the policy field lists both, the RateLimit field only the closest.
    let info = roundtrip(HeaderFormat::ietf(Report::Closest), &scopes(), None);
    assert_eq!(info.quotas.len(), 2);
    assert_eq!(info.quotas[0].remaining, Some(3));
    assert_eq!(info.quotas[1].remaining, None);
    assert_eq!(info.closest().unwrap().name.as_deref(), Some("hour"));
}

#[test]
fn ietf_names_with_quotes_units_and_partition_keys_round_trip() {
    let scopes = [snap(r#"org "a", b"#, 10, 0, 60, 30_000)
        .quota_unit("content-bytes")
        .partition_key(b"tenant-1")];
    let info = roundtrip(HeaderFormat::ietf(Report::All), &scopes, Some(30_000));
    assert_eq!(info.quotas.len(), 1);
    let q = &info.quotas[0];
    assert_eq!(q.name.as_deref(), Some(r#"org "a", b"#));
    assert_eq!(
        (q.limit, q.remaining, q.window),
        (Some(10), Some(0), Some(secs(60)))
    );
    assert_eq!(info.wait(), Some(secs(30)));
}

#[test]
fn ietf_drafts_7_and_6_round_trip_with_windows_from_the_policy() {
    for format in [HeaderFormat::ietf_draft7(), HeaderFormat::ietf_draft6()] {
        let info = roundtrip(format, &scopes(), None);
        assert_eq!(info.quotas.len(), 1, "{format:?}");
        let q = &info.quotas[0];
        assert_eq!(
            (q.limit, q.remaining, q.reset_after, q.window),
            (Some(100), Some(3), Some(ceil(1_234_500)), Some(secs(3_600))),
            "{format:?}"
        );
    }
}

#[test]
fn concurrency_limits_round_trip_without_a_window() {
    let scopes = [Snapshot::concurrency("jobs", 3, 4)];
    let info = roundtrip(HeaderFormat::ietf(Report::All), &scopes, None);
    assert_eq!(info.quotas[0].limit, Some(4));
    assert_eq!(info.quotas[0].remaining, Some(1));
    assert_eq!(info.quotas[0].window, None);
}

#[cfg(feature = "http")]
#[test]
fn reads_an_http_header_map() {
    let mut map = http::HeaderMap::new();
    HeaderFormat::x_ratelimit()
        .write(
            &Outcome {
                scopes: &scopes(),
                denied: true,
                retry_after: Some(secs(3)),
                now: now(),
            },
            &mut map,
        )
        .unwrap();
    let info = RateLimitInfo::from_header_map(&map, now());
    assert_eq!(info.quotas[0].limit, Some(100));
    assert_eq!(info.retry_after, Some(secs(3)));
}

#[test]
fn malformed_values_real_servers_send() {
    let parse = |pairs: &[(&str, &str)]| RateLimitInfo::parse(pairs.iter().copied(), now());

    // Negative counts and delays read as zero; fractions are floored for counts and kept
    // for times.
    let info = parse(&[
        ("X-RateLimit-Limit", "100.7"),
        ("X-RateLimit-Remaining", "-4"),
        ("X-RateLimit-Reset", "1.25"),
        ("Retry-After", "-10"),
    ]);
    let q = &info.quotas[0];
    assert_eq!((q.limit, q.remaining), (Some(100), Some(0)));
    assert_eq!(q.reset_after, Some(Duration::from_millis(1_250)));
    assert_eq!(info.retry_after, Some(Duration::ZERO));

    // Unix seconds, Unix milliseconds and timestamps in the past read as delays from now;
    // a reset already past is zero.
    let reset = |v: &str| {
        parse(&[("x-ratelimit-limit", "1"), ("x-ratelimit-reset", v)]).quotas[0].reset_after
    };
    assert_eq!(reset(&(NOW + 30).to_string()), Some(secs(30)));
    assert_eq!(
        reset(&((NOW + 30) * 1_000 + 500).to_string()),
        Some(Duration::from_millis(30_500))
    );
    assert_eq!(reset(&(NOW - 30).to_string()), Some(Duration::ZERO));
    assert_eq!(reset("1999-12-31T23:59:59Z"), Some(Duration::ZERO));
    assert_eq!(reset("soon"), None);
    assert_eq!(reset(""), None);

    // An HTTP-date in the past is no wait; garbage is no information.
    assert_eq!(
        parse(&[("Retry-After", "Fri, 31 Dec 1999 23:59:59 GMT")]).retry_after,
        Some(Duration::ZERO)
    );
    assert_eq!(parse(&[("Retry-After", "later")]).retry_after, None);
    assert_eq!(parse(&[("Retry-After", "")]).retry_after, None);

    // Missing and partial headers; unknown headers ignored.
    assert_eq!(parse(&[]), RateLimitInfo::default());
    let info = parse(&[
        ("content-type", "application/json"),
        ("X-RateLimit-Remaining", "5"),
    ]);
    assert_eq!(info.quotas[0].limit, None);
    assert_eq!(info.quotas[0].remaining, Some(5));
    assert_eq!(info.wait(), None);

    // Broken structured fields do not panic and keep what they can.
    let info = parse(&[
        (
            "RateLimit-Policy",
            r#""a";q=10;w=60, "unterminated;q=5, ;;, =, 7;w=x"#,
        ),
        ("RateLimit", r#""a";r=-2;t=1.5, garbage, "b";r=;t"#),
    ]);
    let a = info
        .quotas
        .iter()
        .find(|q| q.name.as_deref() == Some("a"))
        .unwrap();
    assert_eq!((a.limit, a.remaining), (Some(10), Some(0)));
    assert_eq!(a.reset_after, Some(Duration::from_millis(1_500)));
    assert_eq!(info.wait(), Some(Duration::from_millis(1_500)));

    // Non-UTF-8 bytes are skipped.
    let info = RateLimitInfo::parse([("x-ratelimit-limit", &b"\xff\xfe"[..])], now());
    assert!(info.quotas.is_empty());
}

proptest! {
    #[test]
    fn arbitrary_header_values_never_panic(
        name in prop::sample::select(vec![
            "x-ratelimit-limit", "x-ratelimit-reset", "x-ratelimit-remaining-hour",
            "x-rate-limit-used", "ratelimit", "ratelimit-policy", "ratelimit-reset",
            "retry-after",
        ]),
        value in ".{0,64}",
        bytes in prop::collection::vec(any::<u8>(), 0..32),
    ) {
        let _ = RateLimitInfo::parse([(name, value.as_bytes())], now());
        let _ = RateLimitInfo::parse([(name, &bytes[..])], now());
        let _ = RateLimitInfo::parse([(name, value.as_bytes())], UNIX_EPOCH);
    }

    #[test]
    fn written_headers_always_read_back(
        limit in 1u64..1_000_000,
        used in 0u64..1_000_000,
        reset_ms in 0u64..10_000_000,
        retry_ms in proptest::option::of(1u64..10_000_000),
    ) {
        let remaining = limit.saturating_sub(used);
        let scopes = [snap("q", limit, remaining, 60, reset_ms)];
        for format in [
            HeaderFormat::x_ratelimit(),
            HeaderFormat::x_ratelimit().reset(Reset::UnixSeconds),
            HeaderFormat::ietf(Report::All),
            HeaderFormat::ietf_draft7(),
        ] {
            let info = roundtrip(format, &scopes, retry_ms);
            let q = info.closest().unwrap();
            prop_assert_eq!((q.limit, q.remaining), (Some(limit), Some(remaining)));
            prop_assert_eq!(q.reset_after, Some(ceil(reset_ms)));
            prop_assert_eq!(info.retry_after, retry_ms.map(|r| ceil(r).max(secs(1))));
        }
    }
}

#[test]
fn backoff_grows_with_jitter_and_never_undercuts_retry_after() {
    let b = Backoff::new(Duration::from_millis(100), secs(2)).max_attempts(10);
    for attempt in 0..9 {
        let ceiling = (Duration::from_millis(100) * 2u32.pow(attempt)).min(secs(2));
        for random in [0, 1, 7, u64::MAX / 3, u64::MAX] {
            let d = b.delay_with(attempt, None, random).unwrap();
            assert!(d >= ceiling / 2 && d <= ceiling, "attempt {attempt}: {d:?}");
            let told = b.delay_with(attempt, Some(secs(30)), random).unwrap();
            assert!(told >= secs(30) && told <= secs(30) + Duration::from_millis(100));
        }
    }
    // Jitter spreads a crowd: many draws are not all equal.
    let draws: std::collections::HashSet<_> = (0..50).map(|_| b.delay(3, None).unwrap()).collect();
    assert!(draws.len() > 1);
    assert_eq!(b.delay(9, None), None);
    // Huge attempts and delays saturate instead of overflowing.
    let huge = Backoff::new(secs(u64::MAX / 4), Duration::MAX)
        .max_attempts(u32::MAX)
        .max_wait(Duration::MAX);
    assert!(huge.delay_with(200, None, 5).is_some());
    assert!(huge.delay_with(0, Some(Duration::MAX), 5).is_some());
    // A server asking for longer than the caller will wait: give up instead of sleeping.
    assert_eq!(b.delay_with(0, Some(secs(86_401)), 5), None);
    assert!(b
        .max_wait(secs(90_000))
        .delay_with(0, Some(secs(86_401)), 5)
        .is_some());
}

#[test]
fn retry_honours_retry_after_and_gives_up() {
    let (clock, mock) = Clock::mock();
    let backoff = Backoff::new(Duration::from_millis(10), secs(1)).max_attempts(3);
    let sleep = |d: Duration| mock.increment(d);

    let mut times = Vec::new();
    let result = retry(&backoff, None, sleep, |attempt| {
        times.push(clock.now());
        if attempt < 2 {
            Attempt::Retry {
                error: 429,
                retry_after: Some(secs(5)),
            }
        } else {
            Attempt::Done(attempt)
        }
    });
    assert_eq!(result, Ok(2));
    assert!(times[1] - times[0] >= 5_000_000_000);
    assert!(times[2] - times[1] >= 5_000_000_000);

    let result: Result<(), _> = retry(&backoff, None, sleep, |_| Attempt::Retry {
        error: "busy",
        retry_after: None,
    });
    assert_eq!(
        result,
        Err(RetryError::Exhausted {
            attempts: 3,
            last: "busy"
        })
    );
    assert_eq!(
        result.unwrap_err().to_string(),
        "gave up after 3 attempts; last failure: busy"
    );

    let mut calls = 0;
    let result: Result<(), _> = retry(&backoff, None, sleep, |_| {
        calls += 1;
        Attempt::Fail("bad request")
    });
    assert_eq!((result, calls), (Err(RetryError::Failed("bad request")), 1));
}

#[test]
fn a_pool_waits_for_the_longest_retry_after_any_worker_received() {
    let (clock, mock) = Clock::mock();
    let gate = RetryGate::new(clock.clone());
    let backoff = Backoff::new(Duration::from_millis(1), Duration::from_millis(1));
    let log = RefCell::new(Vec::new());

    // Worker A is told to wait 60 s; worker B, told 5 s, must still wait for A's 60 s.
    let worker = |name: &'static str, told: u64| {
        retry(
            &backoff,
            Some(&gate),
            |d| mock.increment(d),
            |attempt| {
                log.borrow_mut()
                    .push((name, attempt, clock.now() / 1_000_000_000));
                match attempt {
                    0 => Attempt::Retry {
                        error: (),
                        retry_after: Some(secs(told)),
                    },
                    _ => Attempt::Done(()),
                }
            },
        )
    };
    gate.defer(secs(60)); // as worker A received on its own 429
    worker("b", 5).unwrap();
    let log = log.into_inner();
    // B's first call waits out the gate (60 s); its retry waits its own 5 s.
    assert_eq!(log, [("b", 0, 60), ("b", 1, 65)]);
    assert_eq!(gate.remaining(), Duration::ZERO);
}

#[test]
fn gate_is_shared_across_threads() {
    let (clock, _mock) = Clock::mock();
    let gate = RetryGate::new(clock);
    std::thread::scope(|s| {
        for told in 1..=8u64 {
            let gate = gate.clone();
            s.spawn(move || gate.defer(secs(told * 10)));
        }
    });
    assert_eq!(gate.remaining(), secs(80));
}

#[test]
fn with_both_styles_sent_the_named_scope_is_the_closest() {
    let info = RateLimitInfo::parse(
        [
            ("X-RateLimit-Limit", "8"),
            ("X-RateLimit-Remaining", "0"),
            ("X-RateLimit-Reset", "10"),
            ("RateLimit-Policy", r#""key";q=600;w=60, "burst";q=8;w=10"#),
            ("RateLimit", r#""key";r=590;t=60, "burst";r=0;t=10"#),
        ],
        now(),
    );
    assert_eq!(info.quotas.len(), 3);
    assert_eq!(info.closest().unwrap().name.as_deref(), Some("burst"));
    assert_eq!(info.wait(), Some(secs(10)));
}
