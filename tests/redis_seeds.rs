//! The seed providers' policies on both backends: each seed's scopes are declared once,
//! built as an in-process `Policy` and as a `RedisPolicy`, and driven by the same traffic
//! at the same instants (the script is given the time, as in `redis_model.rs`). Every
//! decision must agree — allowed or not, which scopes deny, the retry-after (to the
//! microsecond the server's clock resolves), and what each scope has left — and the
//! seed-specific outcomes are asserted on both.

#[path = "common/redis_server.rs"]
mod redis_server;

#[path = "common/redis_twins.rs"]
mod redis_twins;

use std::sync::Arc;
use std::time::Duration;

use ratewarden::redis::{RedisAlgorithm, RedisPolicy, RedisScope};
use ratewarden::{Clock, FixedWindow, Policy, Rate, SlidingLog};
use redis_twins::{in_process_scope, seen_on_both, Seen, T0};

/// A request of any seed: the attributes its scopes key on.
#[derive(Clone, Debug, Default)]
struct Req {
    api_key: Option<&'static str>,
    org: Option<u64>,
    video: Option<u64>,
    endpoint: &'static str,
    plan: &'static str,
}

type KeyFn = Arc<dyn Fn(&Req) -> Option<String> + Send + Sync>;
type LimitFn = Arc<dyn Fn(&Req) -> Option<u64> + Send + Sync>;

struct Twin {
    local: ratewarden::PolicyBuilder<Req>,
    redis: ratewarden::redis::RedisPolicyBuilder<Req>,
}

impl Twin {
    fn new(name: &str) -> Twin {
        Twin {
            local: Policy::builder(),
            redis: RedisPolicy::builder().name(name),
        }
    }

    fn scope(
        mut self,
        name: &str,
        alg: RedisAlgorithm,
        key: KeyFn,
        limit: Option<LimitFn>,
    ) -> Twin {
        let k = key.clone();
        let mut local = in_process_scope(name, alg, move |r: &Req| k(r));
        let mut remote = RedisScope::keyed(name, alg, move |r: &Req| key(r));
        if let Some(limit) = limit {
            let l = limit.clone();
            local = local.limit_by(move |r: &Req| l(r));
            remote = remote.limit_by(move |r: &Req| limit(r));
        }
        self.local = self.local.scope(local);
        self.redis = self.redis.scope(remote);
        self
    }
}

fn log(rate: &str) -> RedisAlgorithm {
    SlidingLog::new(rate.parse::<Rate>().unwrap()).into()
}

fn fixed(rate: &str) -> RedisAlgorithm {
    FixedWindow::new(rate.parse::<Rate>().unwrap()).into()
}

fn key(f: impl Fn(&Req) -> Option<String> + Send + Sync + 'static) -> KeyFn {
    Arc::new(f)
}

/// Runs `traffic` — (microseconds since the start, request, cost) — on both backends and
/// returns what they agreed on.
fn run(twin: Twin, traffic: &[(u64, Req, u64)]) -> Option<Vec<Seen>> {
    let server = redis_server::RedisServer::start()?;
    let redis = server.backend(Duration::from_secs(5));
    let (clock, mock) = Clock::mock();
    mock.increment(Duration::from_micros(T0));
    let local = twin.local.clock(clock).build();
    let remote = twin.redis.build().unwrap();
    let mut at = 0;
    let mut all = Vec::new();
    for (i, (when, req, cost)) in traffic.iter().enumerate() {
        assert!(*when >= at, "traffic must be in time order");
        mock.increment(Duration::from_micros(when - at));
        at = *when;
        let (mine, theirs) = seen_on_both(&local, &remote, &redis, req, *cost, at);
        assert_eq!(theirs, mine, "request {i} at +{at} µs: {req:?}");
        all.push(mine);
    }
    Some(all)
}

/// The API key, of requests to `endpoint` only: that endpoint's own quota per key.
fn api_key_on(endpoint: &'static str) -> KeyFn {
    key(move |r: &Req| (r.endpoint == endpoint).then(|| r.api_key.unwrap_or("").to_owned()))
}

/// What `id` takes from a request (its organization, its video), of requests to
/// `endpoints` only.
fn id_on(endpoints: &'static [&'static str], id: fn(&Req) -> Option<u64>) -> KeyFn {
    key(move |r: &Req| {
        id(r)
            .filter(|_| endpoints.contains(&r.endpoint))
            .map(|v| v.to_string())
    })
}

const S: u64 = 1_000_000;

#[test]
fn moviie_generation_limits_agree_and_the_ninth_in_ten_seconds_waits_two_seconds() {
    const GENERATION: &[&str] = &["reel", "ebook", "translation"];
    const REEL_TRANSLATION: &[&str] = &["reel", "translation"];
    let twin = Twin::new("moviie")
        .scope(
            "api_key",
            log("600/min"),
            key(|r| r.api_key.map(str::to_owned)),
            None,
        )
        .scope(
            "api_key_writes",
            log("120/min"),
            key(|r| {
                r.api_key
                    .filter(|_| r.endpoint != "read")
                    .map(str::to_owned)
            }),
            Some(Arc::new(|r: &Req| (r.plan == "enterprise").then_some(240))),
        )
        .scope(
            "generation_org_burst",
            log("8/10s"),
            id_on(GENERATION, |r| r.org),
            None,
        )
        .scope(
            "generation_org",
            log("30/min"),
            id_on(REEL_TRANSLATION, |r| r.org),
            None,
        )
        .scope(
            "generation_video",
            log("15/min"),
            id_on(REEL_TRANSLATION, |r| r.video),
            None,
        );
    let gen = |org, video| Req {
        api_key: Some(if org == 1 { "key-1" } else { "key-2" }),
        org: Some(org),
        video: Some(video),
        endpoint: "reel",
        plan: "pro",
    };
    // One request a second for 8 s, then the ninth at 8 s; then a steady stream on one
    // video until its own limit binds; an enterprise key's writes; reads in between.
    let mut traffic: Vec<(u64, Req, u64)> = (0..9).map(|i| (i * S, gen(1, 100 + i), 1)).collect();
    traffic.push((9 * S, gen(2, 7), 1));
    for i in 0..40 {
        let at = 10 * S + i * 1_250_000;
        let req = if i % 5 == 4 {
            Req {
                endpoint: "read",
                ..gen(1, 1)
            }
        } else {
            gen(1, 1)
        };
        traffic.push((at, req, 1));
    }
    traffic.push((
        61 * S,
        Req {
            plan: "enterprise",
            ..gen(2, 8)
        },
        3,
    ));
    let Some(seen) = run(twin, &traffic) else {
        return;
    };
    // The ninth generation within ten seconds: the organization's burst denies it, and it
    // may go two seconds later (when the first of the eight leaves the window).
    assert!(!seen[8].0);
    assert_eq!(seen[8].1, ["generation_org_burst"]);
    assert_eq!(seen[8].2, Some(2 * S));
    // Another organization is untouched.
    assert!(seen[9].0);
    // The per-video limit binds at some point in the steady stream.
    assert!(seen
        .iter()
        .any(|s| s.1.contains(&"generation_video".to_owned())));
}

#[test]
fn reelbot_per_endpoint_windows_agree() {
    let twin = Twin::new("reelbot")
        .scope("generate", fixed("10/hour"), api_key_on("generate"), None)
        .scope("status", fixed("60/min"), api_key_on("status"), None)
        .scope("download", fixed("30/hour"), api_key_on("download"), None);
    let req = |endpoint| Req {
        api_key: Some("rb_1"),
        endpoint,
        ..Req::default()
    };
    let mut traffic = Vec::new();
    for i in 0..12 {
        traffic.push((i * 60 * S, req("generate"), 1));
    }
    for i in 0..65 {
        traffic.push((12 * 60 * S + i * 500_000, req("status"), 1));
    }
    traffic.push((13 * 60 * S, req("status"), 1));
    traffic.push((61 * 60 * S, req("generate"), 1));
    let Some(seen) = run(twin, &traffic) else {
        return;
    };
    // Ten generations an hour; the eleventh waits for the hour to turn.
    assert!(seen[..10].iter().all(|s| s.0));
    assert_eq!(seen[10].1, ["generate"]);
    assert_eq!(seen[10].2, Some(50 * 60 * S));
    // Sixty status polls a minute, independent of generation.
    assert!(seen[12..72].iter().all(|s| s.0));
    assert_eq!(seen[72].1, ["status"]);
    // The next minute and the next hour start afresh.
    assert!(seen[77].0 && seen[78].0);
}

#[test]
fn reelsbuilder_plan_tiers_agree_on_a_sliding_minute() {
    let twin = Twin::new("reelsbuilder").scope(
        "rpm",
        log("10/min"),
        key(|r| r.api_key.map(str::to_owned)),
        Some(Arc::new(|r: &Req| match r.plan {
            "starter" => Some(30),
            "pro" => Some(60),
            "business" => Some(120),
            "enterprise" => Some(300),
            _ => None,
        })),
    );
    let req = |key, plan| Req {
        api_key: Some(key),
        plan,
        ..Req::default()
    };
    let mut traffic = Vec::new();
    for i in 0..12 {
        traffic.push((i * S, req("free", "free"), 1));
    }
    // The same key upgraded to Pro mid-window keeps what it used.
    for i in 0..52 {
        traffic.push((12 * S + i * 100_000, req("free", "pro"), 1));
    }
    traffic.push((70 * S, req("free", "pro"), 1));
    for i in 0..5 {
        traffic.push((71 * S + i, req("ent", "enterprise"), 60));
    }
    let Some(seen) = run(twin, &traffic) else {
        return;
    };
    assert!(seen[..10].iter().all(|s| s.0));
    assert_eq!(seen[10].1, ["rpm"]);
    // 10 used as Free, then 50 more as Pro, then the sliding minute binds.
    assert!(seen[12..62].iter().all(|s| s.0));
    assert!(!seen[62].0);
    // An enterprise key: 300 a minute, in bursts of 60.
    assert!(seen[65..70].iter().all(|s| s.0));
}

#[test]
fn ssemble_account_caps_span_keys_and_pools_on_both_backends() {
    let pool = api_key_on;
    let tiered = |n: u64| -> Option<LimitFn> {
        Some(Arc::new(move |r: &Req| (r.plan != "free").then_some(n)))
    };
    let account = || key(|r: &Req| r.org.map(|o| o.to_string()));
    let twin = Twin::new("ssemble")
        .scope(
            "video_creation",
            log("500/min"),
            pool("video_creation"),
            None,
        )
        .scope("status_check", log("500/min"), pool("status_check"), None)
        .scope("standard", log("1000/15min"), pool("standard"), None)
        .scope("account_hour", log("100/hour"), account(), tiered(2_000))
        .scope("account_day", log("1000/day"), account(), tiered(20_000));
    let req = |key: &'static str, endpoint, plan| Req {
        api_key: Some(key),
        org: Some(9),
        endpoint,
        plan,
        ..Req::default()
    };
    let mut traffic = Vec::new();
    // Two keys of one free account, across pools: the account's hour binds at 100.
    for i in 0..105 {
        let (k, e) = match i % 3 {
            0 => ("k1", "video_creation"),
            1 => ("k2", "status_check"),
            _ => ("k1", "standard"),
        };
        traffic.push((i * 10_000, req(k, e, "free"), 1));
    }
    // A paid tier lifts the account caps; the pools stay.
    traffic.push((2 * S, req("k1", "video_creation", "pro"), 400));
    traffic.push((2 * S + 1, req("k1", "video_creation", "pro"), 200));
    let Some(seen) = run(twin, &traffic) else {
        return;
    };
    assert!(seen[..100].iter().all(|s| s.0));
    assert!(seen[100..105].iter().all(|s| s.1 == ["account_hour"]));
    assert!(seen[105].0);
    assert_eq!(seen[106].1, ["video_creation"]);
}

#[test]
fn videogen_hourly_endpoint_groups_per_api_key_on_both_backends() {
    let group = api_key_on;
    let twin = Twin::new("videogen")
        .scope("tools", log("500/hour"), group("tools"), None)
        .scope(
            "webhooks_create",
            log("10/hour"),
            group("webhooks_create"),
            None,
        )
        .scope("files_get", log("50000/hour"), group("files_get"), None);
    let req = |key, endpoint| Req {
        api_key: Some(key),
        endpoint,
        ..Req::default()
    };
    let mut traffic = Vec::new();
    for i in 0..12 {
        traffic.push((i * 60 * S, req("vg_a", "webhooks_create"), 1));
    }
    traffic.push((12 * 60 * S, req("vg_b", "webhooks_create"), 1));
    traffic.push((12 * 60 * S + 1, req("vg_a", "files_get"), 49_999));
    traffic.push((12 * 60 * S + 2, req("vg_a", "files_get"), 2));
    traffic.push((60 * 60 * S, req("vg_a", "webhooks_create"), 1));
    let Some(seen) = run(twin, &traffic) else {
        return;
    };
    assert!(seen[..10].iter().all(|s| s.0));
    assert_eq!(seen[10].1, ["webhooks_create"]);
    // The first of the ten leaves the rolling hour 50 minutes after the eleventh asked.
    assert_eq!(seen[10].2, Some(50 * 60 * S));
    assert!(seen[12].0, "another key has its own budget");
    assert!(
        seen[13].0 && !seen[14].0,
        "the files group holds 50 000 an hour"
    );
    assert!(
        seen[15].0,
        "an hour after the first webhook, one is free again"
    );
}
