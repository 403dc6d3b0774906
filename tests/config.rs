//! Policies from configuration: the seeds' own tables (`examples/config/`) load and enforce
//! what the seeds say, in TOML, JSON and YAML; broken configurations report every problem
//! with its path.
#![cfg(feature = "serde")]

use std::time::Duration;

use ratewarden::config::{Attributes, ConfigError, PolicyConfig, Problem};
use ratewarden::{Clock, Policy, PolicyDecision, RateError};

#[path = "common/config_files.rs"]
mod config_files;

use config_files::{config_dir, parse};

fn seed(file: &str) -> (Policy<Attributes>, std::sync::Arc<quanta::Mock>) {
    let (clock, mock) = Clock::mock();
    let policy = parse(&config_dir().join(file))
        .build_with_clock(clock)
        .unwrap_or_else(|e| panic!("{file}: {e}"));
    (policy, mock)
}

fn req(pairs: &[(&str, &str)]) -> Attributes {
    pairs.iter().copied().collect()
}

fn denials(d: &PolicyDecision<'_>) -> Vec<String> {
    d.denials().map(|s| s.name.to_owned()).collect()
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

#[test]
fn every_example_config_loads() {
    let mut seen = Vec::new();
    for entry in std::fs::read_dir(config_dir()).unwrap() {
        let path = entry.unwrap().path();
        let config = parse(&path);
        let policy = config
            .build()
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(policy.scope_names().len() > 0);
        seen.push(path.file_name().unwrap().to_string_lossy().into_owned());
    }
    seen.sort();
    assert_eq!(
        seen,
        [
            "moviie.toml",
            "reelbot.toml",
            "reelsbuilder.yaml",
            "ssemble.yaml",
            "videogen.json"
        ]
    );
}

// ------------------------------------------------------------------- Moviie (000)

fn moviie_req(route: &str, org: &str, video: &str) -> Attributes {
    req(&[
        ("api_key", &format!("key-{org}")),
        ("org", org),
        ("video", video),
        ("source", "192.0.2.1"),
        ("route", route),
        ("write", "true"),
    ])
}

#[test]
fn moviie_config_enforces_the_generation_burst_and_video_limits() {
    let (policy, mock) = seed("moviie.toml");
    assert_eq!(policy.name(), "moviie");
    assert_eq!(policy.scope_names().len(), 26);
    for i in 0..8 {
        let r = moviie_req("reel_generation", "1", &format!("{}", 100 + i));
        assert!(policy.check(&r, 1).unwrap().is_allowed(), "request {i}");
        mock.increment(secs(1.0));
    }
    let d = policy
        .check(&moviie_req("ebook_generation", "1", "200"), 1)
        .unwrap();
    assert_eq!(denials(&d), ["generation_org_burst"]);
    assert_eq!(d.retry_after(), Some(secs(2.0)));
    assert!(policy
        .check(&moviie_req("reel_generation", "2", "1"), 1)
        .unwrap()
        .is_allowed());

    // lip sync: 6 per video per minute
    mock.increment(secs(60.0));
    let lip = moviie_req("lip_sync", "3", "9");
    for _ in 0..4 {
        assert!(policy.check(&lip, 1).unwrap().is_allowed());
    }
    mock.increment(secs(10.0));
    for _ in 0..2 {
        assert!(policy.check(&lip, 1).unwrap().is_allowed());
    }
    mock.increment(secs(1.0));
    let d = policy.check(&lip, 1).unwrap();
    assert_eq!(denials(&d), ["lipsync_video"]);
    assert_eq!(d.retry_after(), Some(secs(49.0)));
}

#[test]
fn moviie_config_writes_are_per_plan_and_reads_do_not_count() {
    let (policy, _mock) = seed("moviie.toml");
    let write = req(&[
        ("api_key", "k5"),
        ("org", "5"),
        ("route", "upload"),
        ("source", "192.0.2.1"),
        ("write", "true"),
    ]);
    for _ in 0..60 {
        assert!(policy.check(&write, 1).unwrap().is_allowed());
    }
    assert_eq!(denials(&policy.check(&write, 1).unwrap()), ["upload_org"]);
    let read = req(&[("api_key", "k5"), ("org", "5"), ("route", "read")]);
    let d = policy.check(&read, 1).unwrap();
    assert!(d.scope("api_key_writes").is_none());
    assert_eq!(d.scope("api_key").unwrap().decision.remaining(), 600 - 61);
    // Every write counts, on any endpoint: a delete of a collection too.
    let delete = req(&[
        ("api_key", "k5"),
        ("org", "5"),
        ("route", "collections"),
        ("write", "true"),
    ]);
    let d = policy.check(&delete, 1).unwrap();
    assert_eq!(
        d.scope("api_key_writes").unwrap().decision.remaining(),
        120 - 61
    );

    let dubbing = moviie_req("dubbing", "6", "0");
    let limit = |r: &Attributes| {
        policy
            .peek(r, 1)
            .unwrap()
            .scope("api_key_writes")
            .unwrap()
            .decision
            .limit()
    };
    assert_eq!(limit(&dubbing), 120);
    assert_eq!(limit(&dubbing.clone().with("plan", "enterprise")), 240);
}

#[test]
fn moviie_config_playback_search_is_scoped_per_session_and_source() {
    let (policy, _mock) = seed("moviie.toml");
    let search = |session: &str, source: &str| {
        req(&[
            ("org", "4"),
            ("video", "77"),
            ("session", session),
            ("source", source),
            ("route", "playback_search"),
        ])
    };
    for _ in 0..5 {
        assert!(policy.check(&search("1", "a"), 1).unwrap().is_allowed());
    }
    let d = policy.check(&search("1", "a"), 1).unwrap();
    assert_eq!(denials(&d), ["playback_search_session_burst"]);
    for s in ["2", "3"] {
        for _ in 0..5 {
            assert!(policy.check(&search(s, "a"), 1).unwrap().is_allowed());
        }
    }
    let d = policy.check(&search("9", "a"), 1).unwrap();
    assert_eq!(denials(&d), ["playback_search_source_burst"]);
    let d = policy.check(&search("9", "b"), 1).unwrap();
    assert!(d.is_allowed());
    assert!(d.scope("api_key").is_none(), "no api_key attribute");
    assert_eq!(
        d.scope("playback_search_org").unwrap().decision.limit(),
        6_000
    );
}

// ------------------------------------------------------------------- ReelBot (001)

#[test]
fn reelbot_config_enforces_endpoints_and_the_monthly_plan_quota() {
    let (policy, mock) = seed("reelbot.toml");
    mock.increment(Duration::from_secs(1_737_475_200 + 13 * 60)); // 2025-01-21T16:13:00Z
    let call = |route: &str, key: &str, plan: &str| {
        req(&[
            ("api_key", key),
            ("account", key),
            ("plan", plan),
            ("billing_anchor", "2024-10-31T00:00:00Z"),
            ("route", route),
        ])
    };
    // Business: 500 a month, so the hourly limit is what denies.
    let business = call("generate", "b1", "business");
    for left in (0..10).rev() {
        let d = policy.check(&business, 1).unwrap();
        assert_eq!(d.scope("generate").unwrap().decision.remaining(), left);
    }
    let d = policy.check(&business, 1).unwrap();
    assert_eq!(denials(&d), ["generate"]);
    assert_eq!(d.retry_after(), Some(Duration::from_secs(47 * 60)));
    assert_eq!(
        d.scope("videos_per_month").unwrap().decision.remaining(),
        490
    );
    for _ in 0..60 {
        assert!(policy
            .check(&call("status", "b1", "business"), 1)
            .unwrap()
            .is_allowed());
    }
    assert!(policy
        .check(&call("status", "b1", "business"), 1)
        .unwrap()
        .is_denied());

    // Free: 3 a month, resetting on the 31st: on 31 January 2025.
    let free = call("generate", "f1", "free");
    for _ in 0..3 {
        assert!(policy.check(&free, 1).unwrap().is_allowed());
    }
    let d = policy.check(&free, 1).unwrap();
    assert_eq!(denials(&d), ["videos_per_month"]);
    let jan_31 = Duration::from_secs(1_738_281_600); // 2025-01-31T00:00:00Z
    let now = Duration::from_secs(1_737_475_200 + 13 * 60);
    assert_eq!(d.retry_after(), Some(jan_31 - now));
    mock.increment(jan_31 - now);
    let d = policy.check(&free, 1).unwrap();
    assert!(d.is_allowed());
    // February 2025 has no 31st: the next reset is on 28 February
    assert_eq!(
        d.scope("videos_per_month").unwrap().decision.reset_after(),
        Duration::from_secs(28 * 86_400)
    );
}

// ------------------------------------------------------------------ VideoGen (002)

#[test]
fn videogen_config_enforces_hourly_groups_per_api_key() {
    let (policy, mock) = seed("videogen.json");
    let call = |route: &str, key: &str| req(&[("api_key", key), ("route", route)]);
    for _ in 0..10 {
        assert!(policy
            .check(&call("webhooks_create", "1"), 1)
            .unwrap()
            .is_allowed());
        mock.increment(secs(60.0));
    }
    let d = policy.check(&call("webhooks_create", "1"), 1).unwrap();
    assert_eq!(denials(&d), ["webhooks_create"]);
    assert_eq!(d.retry_after(), Some(secs(50.0 * 60.0)));
    assert!(policy
        .check(&call("webhooks_delete", "1"), 1)
        .unwrap()
        .is_allowed());
    assert!(policy
        .check(&call("webhooks_create", "2"), 1)
        .unwrap()
        .is_allowed());
    let d = policy.check(&call("files_get", "1"), 1).unwrap();
    assert_eq!(d.scope("files_get").unwrap().decision.remaining(), 49_999);
    assert_eq!(d.scope_count(), 1, "only the route's group applies");
}

// -------------------------------------------------------------- ReelsBuilder (003)

#[test]
fn reelsbuilder_config_enforces_plan_tiers_and_a_custom_enterprise_limit() {
    let (policy, mock) = seed("reelsbuilder.yaml");
    for (key, plan, limit) in [
        ("free", "free", 10),
        ("nameless", "", 10),
        ("starter", "starter", 30),
        ("pro", "pro", 60),
        ("business", "business", 120),
        ("enterprise", "enterprise", 300),
        ("acme", "enterprise", 1_000),
    ] {
        let r = req(&[("api_key", key), ("plan", plan)]);
        for _ in 0..limit {
            assert!(policy.check(&r, 1).unwrap().is_allowed(), "{key}");
        }
        let d = policy.check(&r, 1).unwrap();
        assert!(d.is_denied(), "{key}");
        assert_eq!(d.scope("rpm").unwrap().decision.limit(), limit, "{key}");
    }
    // sliding: spread requests stay exactly 60 s in the window
    let pro = req(&[("api_key", "pro2"), ("plan", "pro")]);
    for _ in 0..60 {
        assert!(policy.check(&pro, 1).unwrap().is_allowed());
        mock.increment(Duration::from_millis(500));
    }
    assert_eq!(
        policy.check(&pro, 1).unwrap().retry_after(),
        Some(secs(30.0))
    );
}

// ------------------------------------------------------------------- Ssemble (004)

#[test]
fn ssemble_config_enforces_pools_and_account_caps() {
    let (policy, mock) = seed("ssemble.yaml");
    let call = |account: &str, key: &str, pool: &str, plan: &str| {
        req(&[
            ("account", account),
            ("api_key", key),
            ("pool", pool),
            ("plan", plan),
        ])
    };
    let pools = [
        "video_creation",
        "status_check",
        "list_requests",
        "standard",
    ];
    for i in 0..100 {
        let key = if i % 3 == 0 { "k1" } else { "k2" };
        assert!(policy
            .check(&call("1", key, pools[i % 4], "basic"), 1)
            .unwrap()
            .is_allowed());
    }
    let d = policy
        .check(&call("1", "k3", "status_check", "basic"), 1)
        .unwrap();
    assert_eq!(denials(&d), ["account_hour"]);
    assert_eq!(d.retry_after(), Some(secs(3_600.0)));
    assert_eq!(d.scope("status_check").unwrap().decision.remaining(), 500);
    for _ in 0..9 {
        mock.increment(secs(3_600.0));
        for _ in 0..100 {
            assert!(policy
                .check(&call("1", "k1", "list_requests", "basic"), 1)
                .unwrap()
                .is_allowed());
        }
    }
    mock.increment(secs(3_600.0));
    let d = policy
        .check(&call("1", "k1", "list_requests", "basic"), 1)
        .unwrap();
    assert_eq!(denials(&d), ["account_day"]);
    assert_eq!(d.retry_after(), Some(secs(14.0 * 3_600.0)));

    // the top tier: pools still cap at 500, account limits are 2,000 and 20,000
    let top = call("7", "k", "video_creation", "max");
    for _ in 0..500 {
        assert!(policy.check(&top, 1).unwrap().is_allowed());
    }
    assert_eq!(denials(&policy.check(&top, 1).unwrap()), ["video_creation"]);
    let d = policy
        .check(&call("7", "k", "status_check", "max"), 1)
        .unwrap();
    assert_eq!(
        d.scope("account_hour").unwrap().decision.remaining(),
        2_000 - 501
    );
    assert_eq!(d.scope("account_day").unwrap().decision.limit(), 20_000);
}

// ------------------------------------------------------------ formats and features

#[test]
fn the_same_policy_reads_alike_from_toml_json_and_yaml() {
    let toml: PolicyConfig = toml::from_str(
        r#"
        [[scopes]]
        name = "per-org"
        algorithm = "gcra"
        rate = "10/s"
        burst = 20
        key = ["org", "region"]
        shadow = true
        "#,
    )
    .unwrap();
    let json: PolicyConfig = serde_json::from_str(
        r#"{"scopes": [{"name": "per-org", "algorithm": "gcra", "rate": "10/s",
            "burst": 20, "key": ["org", "region"], "shadow": true}]}"#,
    )
    .unwrap();
    let yaml: PolicyConfig = serde_norway::from_str(
        "scopes:\n  - name: per-org\n    algorithm: gcra\n    rate: 10/s\n    burst: 20\n    key: [org, region]\n    shadow: true\n",
    )
    .unwrap();
    assert_eq!(toml, json);
    assert_eq!(toml, yaml);

    let (clock, _mock) = Clock::mock();
    let policy = toml.build_with_clock(clock).unwrap();
    let r = req(&[("org", "a"), ("region", "eu")]);
    for _ in 0..20 {
        assert!(policy.check(&r, 1).unwrap().is_allowed());
    }
    // shadow: over its burst, reported, never denying
    let d = policy.check(&r, 1).unwrap();
    assert!(d.is_allowed());
    let report = d.scope("per-org").unwrap();
    assert!(report.shadow && report.decision.is_denied());
    assert_eq!(report.decision.limit(), 20);
    // the compound key needs both attributes
    assert!(policy
        .check(&req(&[("org", "a")]), 1)
        .unwrap()
        .scope("per-org")
        .is_none());
}

#[test]
fn a_scope_without_key_is_one_shared_quota_and_calendar_days_turn_at_the_anchor() {
    let config: PolicyConfig = toml::from_str(
        r#"
        [[scopes]]
        name = "global-daily"
        algorithm = "calendar"
        period = "day"
        limit = 3
        anchor = "2024-01-01T06:00:00Z"
        "#,
    )
    .unwrap();
    let (clock, mock) = Clock::mock();
    mock.increment(secs(5.0 * 3_600.0)); // 05:00 UTC
    let policy = config.build_with_clock(clock).unwrap();
    for user in ["a", "b", "c"] {
        assert!(policy
            .check(&req(&[("user", user)]), 1)
            .unwrap()
            .is_allowed());
    }
    let d = policy.check(&Attributes::new(), 1).unwrap();
    assert_eq!(d.retry_after(), Some(secs(3_600.0)));
    mock.increment(secs(3_600.0));
    assert!(policy.check(&Attributes::new(), 1).unwrap().is_allowed());
}

#[test]
fn an_unquoted_toml_datetime_reads_as_the_anchor_it_spells() {
    let quoted: PolicyConfig = toml::from_str(
        "[[scopes]]\nname = \"m\"\nalgorithm = \"calendar\"\nperiod = \"month\"\nlimit = 3\nanchor = \"2024-01-31T09:30:00Z\"\n",
    )
    .unwrap();
    let bare: PolicyConfig = toml::from_str(
        "[[scopes]]\nname = \"m\"\nalgorithm = \"calendar\"\nperiod = \"month\"\nlimit = 3\nanchor = 2024-01-31T09:30:00Z\n",
    )
    .unwrap();
    assert_eq!(bare, quoted);
    assert!(bare.validate().is_ok());
}

// ------------------------------------------------------------------ broken configs

/// The problems a TOML document yields, as (path, problem).
fn problems(toml_text: &str) -> Vec<(String, Problem)> {
    let config: PolicyConfig = toml::from_str(toml_text).unwrap();
    config
        .validate()
        .unwrap_err()
        .into_vec()
        .into_iter()
        .map(|ConfigError { path, problem }| (path, problem))
        .collect()
}

fn one(toml_text: &str) -> (String, Problem) {
    let mut all = problems(toml_text);
    assert_eq!(all.len(), 1, "{all:?}");
    all.remove(0)
}

const OK_SCOPE: &str = r#"
[[scopes]]
name = "ok"
algorithm = "gcra"
rate = "1/s"
"#;

#[test]
fn broken_configs_yield_the_right_problem_at_the_right_path() {
    let with_ok = |broken: &str| format!("{OK_SCOPE}{broken}");
    let cases: Vec<(String, &str, Problem)> = vec![
        (
            with_ok("[[scopes]]\nname = \"a\"\nalgorithm = \"leaky_bucket\"\nrate = \"1/s\"\n"),
            "scopes[1].algorithm",
            Problem::UnknownAlgorithm {
                name: "leaky_bucket".into(),
            },
        ),
        (
            with_ok("[[scopes]]\nname = \"a\"\nalgorithm = \"gcra\"\nrate = \"5/0s\"\n"),
            "scopes[1].rate",
            Problem::Rate(RateError::ZeroWindow),
        ),
        (
            with_ok("[[scopes]]\nname = \"a\"\nalgorithm = \"gcra\"\nrate = \"0/min\"\n"),
            "scopes[1].rate",
            Problem::Rate(RateError::ZeroCount),
        ),
        (
            with_ok("[[scopes]]\nname = \"a\"\nalgorithm = \"sliding_log\"\nrate = \"5 per minute\"\n"),
            "scopes[1].rate",
            Problem::Rate(RateError::Parse {
                input: "5 per minute".into(),
                reason: "missing '/'",
            }),
        ),
        (
            with_ok("[[scopes]]\nname = \"a\"\nalgorithm = \"fixed_window\"\nrate = \"5/fortnight\"\n"),
            "scopes[1].rate",
            Problem::Rate(RateError::Parse {
                input: "5/fortnight".into(),
                reason: "unknown time unit",
            }),
        ),
        (
            with_ok("[[scopes]]\nname = \"ok\"\nalgorithm = \"gcra\"\nrate = \"1/s\"\n"),
            "scopes[1].name",
            Problem::DuplicateName {
                name: "ok".into(),
                first: 0,
            },
        ),
        (
            with_ok("[[scopes]]\nname = \"a\"\nalgorithm = \"gcra\"\nrate = \"1/s\"\nbrust = 5\n"),
            "scopes[1].brust",
            Problem::UnknownField {
                field: "brust".into(),
                expected: "name, algorithm, key, when, rate, burst, anchor, period, limit, anchor_attribute, plans, overrides, shadow",
            },
        ),
        (
            format!("{OK_SCOPE}version = 2\n"),
            "scopes[0].version",
            Problem::UnknownField {
                field: "version".into(),
                expected: "name, algorithm, key, when, rate, burst, anchor, period, limit, anchor_attribute, plans, overrides, shadow",
            },
        ),
        (
            format!("polcy = \"x\"\n{OK_SCOPE}"),
            "polcy",
            Problem::UnknownField {
                field: "polcy".into(),
                expected: "name, near_limit_percent, scopes",
            },
        ),
        (
            with_ok("[[scopes]]\nalgorithm = \"gcra\"\nrate = \"1/s\"\n"),
            "scopes[1].name",
            Problem::Missing,
        ),
        (
            with_ok("[[scopes]]\nname = \"a\"\nalgorithm = \"gcra\"\n"),
            "scopes[1].rate",
            Problem::Missing,
        ),
        (
            with_ok("[[scopes]]\nname = \"a\"\nalgorithm = \"gcra\"\nrate = 60\n"),
            "scopes[1].rate",
            Problem::WrongType {
                expected: "a string",
                found: "an integer",
            },
        ),
        (
            with_ok("[[scopes]]\nname = \"a\"\nalgorithm = \"gcra\"\nrate = \"1/s\"\nburst = 0\n"),
            "scopes[1].burst",
            Problem::Rate(RateError::ZeroBurst),
        ),
        (
            with_ok("[[scopes]]\nname = \"a\"\nalgorithm = \"sliding_log\"\nrate = \"1/s\"\nburst = 5\n"),
            "scopes[1].burst",
            Problem::NotApplicable {
                algorithm: "sliding_log",
            },
        ),
        (
            with_ok("[[scopes]]\nname = \"a\"\nalgorithm = \"fixed_window\"\nrate = \"1/s\"\nanchor = \"hourly\"\n"),
            "scopes[1].anchor",
            Problem::UnknownValue {
                value: "hourly".into(),
                expected: "clock, first_request",
            },
        ),
        (
            with_ok("[[scopes]]\nname = \"a\"\nalgorithm = \"calendar\"\nperiod = \"fortnight\"\nlimit = 3\n"),
            "scopes[1].period",
            Problem::UnknownValue {
                value: "fortnight".into(),
                expected: "day, month",
            },
        ),
        (
            with_ok("[[scopes]]\nname = \"a\"\nalgorithm = \"calendar\"\nperiod = \"month\"\nlimit = 0\n"),
            "scopes[1].limit",
            Problem::Rate(RateError::ZeroCount),
        ),
        (
            with_ok("[[scopes]]\nname = \"a\"\nalgorithm = \"calendar\"\nperiod = \"month\"\nlimit = 3\nrate = \"3/30d\"\n"),
            "scopes[1].rate",
            Problem::NotApplicable {
                algorithm: "calendar",
            },
        ),
        (
            with_ok("[[scopes]]\nname = \"a\"\nalgorithm = \"gcra\"\nrate = \"10/min\"\nplans = { pro = \"100/hour\" }\n"),
            "scopes[1].plans.pro",
            Problem::WindowMismatch {
                expected: "10/min".into(),
                found: "100/hour".into(),
            },
        ),
        (
            with_ok("[[scopes]]\nname = \"a\"\nalgorithm = \"gcra\"\nrate = \"10/min\"\nkey = \"org\"\noverrides = { \"org-42\" = 0 }\n"),
            "scopes[1].overrides.org-42",
            Problem::Rate(RateError::ZeroCount),
        ),
        (
            with_ok("[[scopes]]\nname = \"a\"\nalgorithm = \"gcra\"\nrate = \"10/min\"\noverrides = { \"org-42\" = 5 }\n"),
            "scopes[1].overrides",
            Problem::OverridesNeedSingleKey,
        ),
        (
            with_ok("[[scopes]]\nname = \"a\"\nalgorithm = \"gcra\"\nrate = \"1/s\"\nwhen = { route = 5 }\n"),
            "scopes[1].when.route",
            Problem::WrongType {
                expected: "a string or a list of strings",
                found: "an integer",
            },
        ),
        (
            with_ok("[[scopes]]\nname = \"a\"\nalgorithm = \"gcra\"\nrate = \"1/s\"\nkey = []\n"),
            "scopes[1].key",
            Problem::Empty,
        ),
        (
            with_ok("[[scopes]]\nname = \"a\"\nalgorithm = \"gcra\"\nrate = \"1/s\"\nshadow = \"yes\"\n"),
            "scopes[1].shadow",
            Problem::WrongType {
                expected: "true or false",
                found: "a string",
            },
        ),
        ("scopes = []\n".to_owned(), "scopes", Problem::Empty),
        ("name = \"x\"\n".to_owned(), "scopes", Problem::Missing),
    ];
    for (text, path, problem) in cases {
        assert_eq!(one(&text), (path.to_owned(), problem), "{text}");
    }
}

#[test]
fn calendar_anchor_errors_name_the_field() {
    let (path, problem) = one(
        "[[scopes]]\nname = \"a\"\nalgorithm = \"calendar\"\nperiod = \"month\"\nlimit = 3\nanchor = \"the 31st\"\n",
    );
    assert_eq!(path, "scopes[0].anchor");
    assert!(matches!(problem, Problem::Anchor(_)), "{problem:?}");
}

#[test]
fn every_problem_is_reported_at_once_scope_by_scope() {
    let text = r#"
        near_limit_percent = -5
        [[scopes]]
        name = "a"
        algorithm = "gcra"
        rate = "5/0s"
        [[scopes]]
        name = "b"
        algorithm = "token_bucket"
        rate = "1/s"
        [[scopes]]
        name = "a"
        algorithm = "sliding_window"
        rate = "10/min"
        plans = { pro = "x", team = "20/hour" }
        colour = "red"
    "#;
    let config: PolicyConfig = toml::from_str(text).unwrap();
    let errors = config.build().unwrap_err();
    let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "near_limit_percent",
            "scopes[0].rate",
            "scopes[1].algorithm",
            "scopes[2].colour",
            "scopes[2].name",
            "scopes[2].plans.pro",
            "scopes[2].plans.team",
        ]
    );
    let message = errors.to_string();
    assert!(message.starts_with("invalid policy configuration, 7 problems:"));
    assert!(message.contains("\n  scopes[0].rate: rate window must be longer than zero"));
    assert!(
        message.contains("scopes[2].name: duplicate scope name \"a\", already used by scopes[0]")
    );
    // the error type is a std error, usable with `?`
    let _: &dyn std::error::Error = &errors;
}

#[test]
fn documents_of_the_wrong_shape_are_problems_not_panics() {
    for (text, path) in [
        ("[1, 2]", "<root>"),
        ("{\"scopes\": {\"a\": 1}}", "scopes"),
        ("{\"scopes\": [5]}", "scopes[0]"),
        ("{\"scopes\": [{\"name\": \"a\", \"algorithm\": \"gcra\", \"rate\": \"1/s\", \"plans\": [1]}]}", "scopes[0].plans"),
        ("{\"scopes\": [{\"name\": null, \"algorithm\": \"gcra\", \"rate\": \"1/s\"}]}", "scopes[0].name"),
        ("{\"scopes\": [{\"name\": \"a\", \"algorithm\": \"gcra\", \"rate\": \"1/s\", \"burst\": 2.5}]}", "scopes[0].burst"),
    ] {
        let config: PolicyConfig = serde_json::from_str(text).unwrap();
        let errors = config.validate().unwrap_err();
        assert_eq!(errors.len(), 1, "{text}: {errors}");
        assert_eq!(errors.as_slice()[0].path, path, "{text}");
        assert!(
            matches!(errors.as_slice()[0].problem, Problem::WrongType { .. }),
            "{text}: {errors}"
        );
    }
}
