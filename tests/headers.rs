//! Header styles and 429 bodies, from the specifications' and the seeds' own examples.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ratewarden::headers::{
    closest, HeaderError, HeaderFormat, Outcome, Prefix, Report, Reset, RetryAfter, Snapshot,
};
use ratewarden::{Clock, Decision, FixedWindow, Policy, Scope, SlidingLog};

fn at(unix: u64, millis: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(unix) + Duration::from_millis(millis)
}

fn snap(name: &str, limit: u64, remaining: u64, window: u64, reset_ms: u64) -> Snapshot<'_> {
    Snapshot {
        name,
        limit,
        remaining,
        window: Duration::from_secs(window),
        reset_after: Duration::from_millis(reset_ms),
        quota_unit: None,
        partition_key: None,
    }
}

fn write(
    format: HeaderFormat,
    scopes: &[Snapshot<'_>],
    retry_ms: Option<u64>,
    now: SystemTime,
) -> Vec<(String, String)> {
    let mut out = Vec::new();
    format
        .write(
            &Outcome {
                scopes,
                denied: retry_ms.is_some(),
                retry_after: retry_ms.map(Duration::from_millis),
                now,
            },
            &mut out,
        )
        .unwrap();
    out
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect()
}

#[test]
fn ietf_draft_10_policy_and_ratelimit_fields() {
    let scopes = [
        snap("burst", 100, 40, 60, 20_000),
        snap("daily", 1000, 100, 86_400, 36_000_000),
    ];
    let out = write(
        HeaderFormat::ietf(Report::Closest).retry_after(None),
        &scopes,
        None,
        at(0, 0),
    );
    assert_eq!(
        out,
        pairs(&[
            (
                "RateLimit-Policy",
                r#""burst";q=100;w=60, "daily";q=1000;w=86400"#
            ),
            ("RateLimit", r#""burst";r=40;t=20"#),
        ])
    );
    let out = write(
        HeaderFormat::ietf(Report::All).retry_after(None),
        &scopes,
        None,
        at(0, 0),
    );
    assert_eq!(out[1].1, r#""burst";r=40;t=20, "daily";r=100;t=36000"#);
    // the single-policy example: "default";q=100;w=10 with r=50;t=30
    let one = [snap("default", 100, 50, 10, 30_000)];
    let out = write(HeaderFormat::ietf(Report::Closest), &one, None, at(0, 0));
    assert_eq!(
        out,
        pairs(&[
            ("RateLimit-Policy", r#""default";q=100;w=10"#),
            ("RateLimit", r#""default";r=50;t=30"#)
        ])
    );
}

#[test]
fn ietf_quota_units_and_partition_keys() {
    let scopes = [snap("peruser", 65_535, 1_000, 10, 5_000)
        .quota_unit("content-bytes")
        .partition_key(b"foobar")];
    let out = write(HeaderFormat::ietf(Report::Closest), &scopes, None, at(0, 0));
    assert_eq!(
        out[0].1,
        r#""peruser";q=65535;qu="content-bytes";w=10;pk=:Zm9vYmFy:"#
    );
    assert_eq!(out[1].1, r#""peruser";r=1000;t=5;pk=:Zm9vYmFy:"#);
    // "requests" is the default unit and is left out
    let scopes = [snap("a", 5, 1, 1, 0).quota_unit("requests")];
    let out = write(HeaderFormat::ietf(Report::Closest), &scopes, None, at(0, 0));
    assert_eq!(out[0].1, r#""a";q=5;w=1"#);
}

#[test]
fn ietf_draft_7_and_draft_6_forms() {
    let scopes = [snap("p", 100, 50, 10, 5_000)];
    let out = write(HeaderFormat::ietf_draft7(), &scopes, None, at(0, 0));
    assert_eq!(
        out,
        pairs(&[
            ("RateLimit", "limit=100, remaining=50, reset=5"),
            ("RateLimit-Policy", "100;w=10")
        ])
    );
    let out = write(HeaderFormat::ietf_draft6(), &scopes, None, at(0, 0));
    assert_eq!(
        out,
        pairs(&[
            ("RateLimit-Limit", "100"),
            ("RateLimit-Remaining", "50"),
            ("RateLimit-Reset", "5"),
            ("RateLimit-Policy", "100;w=10"),
        ])
    );
    let two = [snap("a", 10, 1, 1, 500), snap("b", 50, 20, 60, 30_000)];
    let out = write(HeaderFormat::ietf_draft6(), &two, None, at(0, 0));
    assert_eq!(out[3].1, "10;w=1, 50;w=60");
}

#[test]
fn retry_after_rfc_9110_forms_and_never_zero() {
    let scopes = [snap("x", 1, 0, 60, 120_000)];
    // RFC 9110's examples: "Retry-After: 120" and "Retry-After: Fri, 31 Dec 1999 23:59:59 GMT"
    let out = write(
        HeaderFormat::retry_after_only(),
        &scopes,
        Some(120_000),
        at(946_684_679, 0),
    );
    assert_eq!(out, pairs(&[("Retry-After", "120")]));
    let format = HeaderFormat::retry_after_only().retry_after(Some(RetryAfter::HttpDate));
    let out = write(format, &scopes, Some(120_000), at(946_684_679, 0));
    assert_eq!(
        out,
        pairs(&[("Retry-After", "Fri, 31 Dec 1999 23:59:59 GMT")])
    );
    // sub-second waits round up, and never to 0
    for (ms, secs) in [(1, "1"), (999, "1"), (1_000, "1"), (1_001, "2"), (0, "1")] {
        let out = write(
            HeaderFormat::retry_after_only(),
            &scopes,
            Some(ms),
            at(0, 0),
        );
        assert_eq!(out[0].1, secs, "{ms} ms");
    }
    // the date names a second no earlier than now + the delay-seconds
    let out = write(format, &scopes, Some(1), at(946_684_797, 500));
    assert_eq!(out[0].1, "Fri, 31 Dec 1999 23:59:59 GMT");
    // and nothing on an allowed request
    assert!(write(HeaderFormat::retry_after_only(), &scopes, None, at(0, 0)).is_empty());
}

#[test]
fn reset_rounding_edges() {
    for (ms, secs, unix) in [
        (0, "0", "100"),
        (1, "1", "101"),
        (999, "1", "101"),
        (1_000, "1", "101"),
        (1_001, "2", "102"),
    ] {
        let scopes = [snap("x", 10, 3, 60, ms)];
        let out = write(HeaderFormat::x_ratelimit(), &scopes, None, at(100, 0));
        assert_eq!(
            out[2],
            ("X-RateLimit-Reset".to_owned(), secs.to_owned()),
            "{ms} ms"
        );
        let out = write(
            HeaderFormat::x_ratelimit().reset(Reset::UnixSeconds),
            &scopes,
            None,
            at(100, 0),
        );
        assert_eq!(out[2].1, unix, "{ms} ms");
    }
    // an absolute reset is ceil(now + reset_after), also when now has a fraction
    let scopes = [snap("x", 10, 3, 60, 200)];
    let out = write(
        HeaderFormat::x_ratelimit().reset(Reset::UnixSeconds),
        &scopes,
        None,
        at(100, 900),
    );
    assert_eq!(out[2].1, "102");
    // remaining above the limit is reported as the limit; used follows
    let scopes = [snap("x", 10, 99, 60, 0)];
    let out = write(
        HeaderFormat::x_ratelimit().with_used(),
        &scopes,
        None,
        at(0, 0),
    );
    assert_eq!(out[1].1, "10");
    assert_eq!(out[3], ("X-RateLimit-Used".to_owned(), "0".to_owned()));
}

#[test]
fn seed_reelbot_headers_byte_for_byte() {
    // 200 OK: X-RateLimit-Remaining: 8, X-RateLimit-Reset: 2025-01-21T17:00:00.000Z
    let now = at(1_737_477_000, 0); // 16:30:00Z
    let scopes = [snap("generate", 10, 8, 3_600, 30 * 60_000)];
    let out = write(
        HeaderFormat::x_ratelimit().reset(Reset::Iso8601),
        &scopes,
        None,
        now,
    );
    assert_eq!(out[1], ("X-RateLimit-Remaining".to_owned(), "8".to_owned()));
    assert_eq!(
        out[2],
        (
            "X-RateLimit-Reset".to_owned(),
            "2025-01-21T17:00:00.000Z".to_owned()
        )
    );
    // 429: Retry-After: 1847 with the same reset
    let now = at(1_737_478_800 - 1_847, 0);
    let scopes = [snap("generate", 10, 0, 3_600, 1_847_000)];
    let out = write(
        HeaderFormat::x_ratelimit().reset(Reset::Iso8601),
        &scopes,
        Some(1_847_000),
        now,
    );
    assert_eq!(out[1].1, "0");
    assert_eq!(out[2].1, "2025-01-21T17:00:00.000Z");
    assert_eq!(out[3], ("Retry-After".to_owned(), "1847".to_owned()));
}

#[test]
fn seed_reelsbuilder_and_videogen_headers() {
    let now = at(1_715_797_237, 0);
    let scopes = [snap("rpm", 60, 0, 60, 23_000)];
    let out = write(
        HeaderFormat::x_ratelimit().reset(Reset::UnixSeconds),
        &scopes,
        Some(23_000),
        now,
    );
    assert_eq!(
        out,
        pairs(&[
            ("X-RateLimit-Limit", "60"),
            ("X-RateLimit-Remaining", "0"),
            ("X-RateLimit-Reset", "1715797260"),
            ("Retry-After", "23"),
        ])
    );
    let out = write(
        HeaderFormat::x_ratelimit().prefix(Prefix::XRateDashLimit),
        &scopes,
        None,
        now,
    );
    assert_eq!(out[0].0, "X-Rate-Limit-Limit");
}

#[test]
fn seed_ssemble_per_window_headers() {
    let now = at(1_737_475_200 + 13 * 60, 0); // 2025-01-21T16:13:00Z
    let scopes = [
        snap("account_hour", 100, 57, 3_600, 47 * 60_000),
        snap("account_day", 1000, 943, 86_400, 20 * 3_600_000),
    ];
    let out = write(
        HeaderFormat::per_window().reset(Reset::Iso8601),
        &scopes,
        None,
        now,
    );
    assert_eq!(
        out,
        pairs(&[
            ("X-RateLimit-Limit-Hour", "100"),
            ("X-RateLimit-Remaining-Hour", "57"),
            ("X-RateLimit-Limit-Day", "1000"),
            ("X-RateLimit-Remaining-Day", "943"),
            ("X-RateLimit-Reset", "2025-01-21T17:00:00.000Z"),
        ])
    );
    // other windows take the scope's name as the suffix
    let scopes = [snap("Burst", 8, 3, 10, 1_000), snap("Second", 5, 5, 1, 0)];
    let out = write(HeaderFormat::per_window(), &scopes, None, now);
    assert_eq!(out[0].0, "X-RateLimit-Limit-Burst");
    assert_eq!(out[2].0, "X-RateLimit-Limit-Second");
}

#[test]
fn closest_scope_selection_and_ties() {
    let s = |name, remaining, reset| snap(name, 10, remaining, 60, reset);
    assert_eq!(
        closest(&[s("a", 5, 1_000), s("b", 2, 1_000), s("c", 9, 9_000)]),
        Some(1)
    );
    assert_eq!(closest(&[s("a", 2, 1_000), s("b", 2, 5_000)]), Some(1)); // longer reset
    assert_eq!(closest(&[s("a", 2, 5_000), s("b", 2, 5_000)]), Some(0)); // first declared
    assert_eq!(closest(&[]), None);
}

#[test]
fn refusals_are_typed_and_leave_the_sink_untouched() {
    let fmt = HeaderFormat::ietf(Report::All);
    let cases: Vec<(Snapshot<'_>, HeaderError)> = vec![
        (
            snap("caf\u{e9}", 1, 1, 1, 0),
            HeaderError::NotPrintable("caf\u{e9}".into()),
        ),
        (
            snap("new\nline", 1, 1, 1, 0),
            HeaderError::NotPrintable("new\nline".into()),
        ),
        (
            snap("big", 1_000_000_000_000_000, 1, 1, 0),
            HeaderError::OutOfRange(1_000_000_000_000_000),
        ),
    ];
    for (bad, want) in cases {
        let mut out = vec![("Existing".to_owned(), "1".to_owned())];
        let scopes = [snap("ok", 1, 1, 1, 0), bad];
        let got = fmt.write(
            &Outcome {
                scopes: &scopes,
                denied: true,
                retry_after: Some(Duration::from_secs(1)),
                now: at(0, 0),
            },
            &mut out,
        );
        assert_eq!(got, Err(want));
        assert_eq!(out.len(), 1, "nothing written on error");
    }
    let mut out = Vec::new();
    let none = Outcome {
        scopes: &[],
        denied: false,
        retry_after: None,
        now: at(0, 0),
    };
    assert_eq!(
        HeaderFormat::x_ratelimit().write(&none, &mut out),
        Err(HeaderError::NoScope)
    );
    let before = Outcome {
        scopes: &[],
        denied: false,
        retry_after: None,
        now: UNIX_EPOCH - Duration::from_secs(1),
    };
    assert_eq!(
        HeaderFormat::x_ratelimit().write(&before, &mut out),
        Err(HeaderError::BeforeEpoch)
    );
    // names with quotes and backslashes are escaped, not refused
    let scopes = [snap(r#"a"b\c"#, 1, 1, 1, 0)];
    let out = write(HeaderFormat::ietf(Report::Closest), &scopes, None, at(0, 0));
    assert_eq!(out[0].1, r#""a\"b\\c";q=1;w=1"#);
    // per-window suffixes must be header-name tokens
    let scopes = [snap("has space", 1, 1, 7, 0)];
    let mut out = Vec::new();
    let o = Outcome {
        scopes: &scopes,
        denied: false,
        retry_after: None,
        now: at(0, 0),
    };
    assert!(HeaderFormat::per_window().write(&o, &mut out).is_err());
}

#[test]
fn from_a_limiter_and_from_a_policy() {
    let (clock, mock) = Clock::mock();
    mock.increment(Duration::from_secs(1_000));
    let policy = Policy::builder()
        .clock(clock.clone())
        .scope(Scope::keyed(
            "burst",
            SlidingLog::new("2/10s".parse().unwrap()),
            |k: &u8| Some(*k),
        ))
        .scope(Scope::keyed(
            "hourly",
            FixedWindow::new("100/hour".parse().unwrap()),
            |k: &u8| Some(*k),
        ))
        .scope(
            Scope::keyed(
                "shadow",
                FixedWindow::new("1/hour".parse().unwrap()),
                |k: &u8| Some(*k),
            )
            .shadow(),
        )
        .build();
    policy.check(&1, 2).unwrap();
    let d = policy.check(&1, 1).unwrap();
    let mut out = Vec::new();
    HeaderFormat::ietf(Report::All)
        .write_policy(&d, clock.now_system(), &mut out)
        .unwrap();
    assert_eq!(
        out,
        pairs(&[
            (
                "RateLimit-Policy",
                r#""burst";q=2;w=10, "hourly";q=100;w=3600"#
            ),
            ("RateLimit", r#""burst";r=0;t=10, "hourly";r=98;t=2600"#),
            ("Retry-After", "10"),
        ])
    );
    let decision = Decision::deny(5, 0, 1_000_000_000, 400_000_000, 400_000_000);
    let mut out = Vec::new();
    HeaderFormat::ietf_draft7()
        .write_decision("one", &decision, clock.now_system(), &mut out)
        .unwrap();
    assert_eq!(
        out,
        pairs(&[
            ("RateLimit", "limit=5, remaining=0, reset=1"),
            ("RateLimit-Policy", "5;w=1"),
            ("Retry-After", "1")
        ])
    );
}

#[cfg(feature = "serde")]
#[test]
fn bodies_match_the_seeds_byte_for_byte() {
    use ratewarden::headers::{NestedErrorBody, Problem, ResetAtBody, SimpleError};
    assert_eq!(
        serde_json::to_string(&SimpleError::rate_limited()).unwrap(),
        r#"{"error":"rate_limited"}"#
    );
    let reelbot =
        ResetAtBody::rate_limited(at(1_737_478_800 - 1_847, 0), Duration::from_secs(1_847));
    assert_eq!(
        serde_json::to_string(&reelbot).unwrap(),
        r#"{"success":false,"message":"Rate limit exceeded. Please try again later.","code":"RATE_LIMITED","details":{"resetAt":"2025-01-21T17:00:00.000Z"}}"#
    );
    let rb = NestedErrorBody::rate_limited(Duration::from_millis(22_100), "req_8f2a");
    assert_eq!(
        serde_json::to_string(&rb).unwrap(),
        r#"{"success":false,"error":{"code":"AUTH_RATE_LIMITED","message":"Rate limit exceeded. Try again in 23 seconds.","details":{"retry_after_seconds":23}},"meta":{"request_id":"req_8f2a"}}"#
    );
    let problem = Problem::quota_exceeded(["burst", "daily"]);
    assert_eq!(
        serde_json::to_string(&problem).unwrap(),
        r#"{"type":"https://iana.org/assignments/http-problem-types#quota-exceeded","title":"Request cannot be satisfied as assigned quota has been exceeded","status":429,"violated-policies":["burst","daily"]}"#
    );
    let back: Problem = serde_json::from_str(&serde_json::to_string(&problem).unwrap()).unwrap();
    assert_eq!(back, problem);
}

#[cfg(feature = "http")]
#[test]
fn fills_an_http_header_map() {
    let scopes = [snap("rpm", 60, 0, 60, 23_000)];
    let mut map = http::HeaderMap::new();
    HeaderFormat::x_ratelimit()
        .write(
            &Outcome {
                scopes: &scopes,
                denied: true,
                retry_after: Some(Duration::from_secs(23)),
                now: at(0, 0),
            },
            &mut map,
        )
        .unwrap();
    assert_eq!(map["x-ratelimit-limit"], "60");
    assert_eq!(map["retry-after"], "23");
}
