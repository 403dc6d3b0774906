//! The five providers' published limits (`shared/seeds/`), each expressed as one
//! `Policy` and replayed on a mock clock with exact expected outcomes.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use ratewarden::{
    CalendarQuota, Clock, CycleAnchor, FixedWindow, Policy, PolicyDecision, Rate, Scope, SlidingLog,
};

fn rate(s: &str) -> Rate {
    s.parse().unwrap()
}

fn log(s: &str) -> SlidingLog {
    SlidingLog::new(rate(s))
}

/// The names of the enforcing scopes that denied.
fn denials(d: &PolicyDecision<'_>) -> Vec<String> {
    d.denials().map(|s| s.name.to_owned()).collect()
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

// ---------------------------------------------------------------- Moviie (000)

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Endpoint {
    Read,
    ReelGeneration,
    EbookGeneration,
    TranslationGeneration,
    Upload,
    LipSync,
    Dubbing,
    EmbedSearch,
    PlaybackSearch,
    Quiz,
}

impl Endpoint {
    fn is_write(self) -> bool {
        !matches!(
            self,
            Endpoint::Read | Endpoint::EmbedSearch | Endpoint::PlaybackSearch | Endpoint::Quiz
        )
    }
}

#[derive(Clone, Debug)]
struct MoviieReq {
    api_key: Option<String>,
    enterprise: bool,
    org: u64,
    video: Option<u64>,
    session: Option<u64>,
    source: IpAddr,
    endpoint: Endpoint,
}

impl MoviieReq {
    fn new(endpoint: Endpoint, org: u64, video: u64) -> Self {
        MoviieReq {
            api_key: Some(format!("key-{org}")),
            enterprise: false,
            org,
            video: Some(video),
            session: None,
            source: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
            endpoint,
        }
    }
}

/// A scope that applies only to some endpoints, keyed by the organization.
fn org_scope(name: &str, r: &str, endpoints: &'static [Endpoint]) -> Scope<MoviieReq> {
    Scope::keyed(name, log(r), move |q: &MoviieReq| {
        endpoints.contains(&q.endpoint).then_some(q.org)
    })
}

fn video_scope(name: &str, r: &str, endpoints: &'static [Endpoint]) -> Scope<MoviieReq> {
    Scope::keyed(name, log(r), move |q: &MoviieReq| {
        if endpoints.contains(&q.endpoint) {
            q.video
        } else {
            None
        }
    })
}

fn source_scope(name: &str, r: &str, endpoints: &'static [Endpoint]) -> Scope<MoviieReq> {
    Scope::keyed(name, log(r), move |q: &MoviieReq| {
        endpoints.contains(&q.endpoint).then_some(q.source)
    })
}

fn moviie(clock: Clock) -> Policy<MoviieReq> {
    use Endpoint::*;
    const GEN: &[Endpoint] = &[ReelGeneration, EbookGeneration, TranslationGeneration];
    const REEL_TRANSLATION: &[Endpoint] = &[ReelGeneration, TranslationGeneration];
    Policy::builder()
        .clock(clock)
        .scope(Scope::keyed_by_ref(
            "api_key",
            log("600/min"),
            |q: &MoviieReq| q.api_key.as_deref(),
        ))
        .scope(
            Scope::keyed_by_ref("api_key_writes", log("120/min"), |q: &MoviieReq| {
                q.api_key.as_deref().filter(|_| q.endpoint.is_write())
            })
            .limit_by(|q: &MoviieReq| q.enterprise.then_some(240)),
        )
        .scope(org_scope("generation_org_burst", "8/10s", GEN))
        .scope(org_scope("generation_org", "30/min", REEL_TRANSLATION))
        .scope(video_scope("generation_video", "15/min", REEL_TRANSLATION))
        .scope(org_scope("upload_org", "60/min", &[Upload]))
        .scope(video_scope("upload_video", "12/min", &[Upload]))
        .scope(video_scope("ebook_video", "10/min", &[EbookGeneration]))
        .scope(org_scope("lipsync_org_burst", "4/10s", &[LipSync]))
        .scope(org_scope("lipsync_org", "10/min", &[LipSync]))
        .scope(video_scope("lipsync_video", "6/min", &[LipSync]))
        .scope(org_scope("dubbing_org", "10/min", &[Dubbing]))
        .scope(video_scope("dubbing_video", "3/min", &[Dubbing]))
        .scope(source_scope(
            "embed_search_source_burst",
            "20/2s",
            &[EmbedSearch],
        ))
        .scope(source_scope(
            "embed_search_source",
            "200/min",
            &[EmbedSearch],
        ))
        .scope(org_scope("embed_search_org_burst", "30/2s", &[EmbedSearch]))
        .scope(org_scope("embed_search_org", "600/min", &[EmbedSearch]))
        .scope(source_scope(
            "playback_search_source_burst",
            "15/2s",
            &[PlaybackSearch],
        ))
        .scope(source_scope(
            "playback_search_source",
            "120/min",
            &[PlaybackSearch],
        ))
        .scope(Scope::keyed(
            "playback_search_session_burst",
            log("5/2s"),
            |q: &MoviieReq| q.session.filter(|_| q.endpoint == PlaybackSearch),
        ))
        .scope(Scope::keyed(
            "playback_search_session",
            log("60/min"),
            |q: &MoviieReq| q.session.filter(|_| q.endpoint == PlaybackSearch),
        ))
        .scope(video_scope(
            "playback_search_video",
            "600/min",
            &[PlaybackSearch],
        ))
        .scope(org_scope(
            "playback_search_org",
            "6000/min",
            &[PlaybackSearch],
        ))
        .scope(source_scope("quiz_source_burst", "10/2s", &[Quiz]))
        .scope(source_scope("quiz_source", "120/min", &[Quiz]))
        .scope(org_scope("quiz_org", "600/min", &[Quiz]))
        .build()
}

#[test]
fn moviie_ninth_generation_in_ten_seconds_is_denied_with_the_exact_retry_after() {
    let (clock, mock) = Clock::mock();
    let policy = moviie(clock);
    for i in 0..8u64 {
        let req = MoviieReq::new(Endpoint::ReelGeneration, 1, 100 + i);
        assert!(policy.check(&req, 1).unwrap().is_allowed(), "request {i}");
        mock.increment(secs(1.0));
    }
    // t = 8 s: the first request (t = 0) leaves the 10-second window at t = 10 s.
    let d = policy
        .check(&MoviieReq::new(Endpoint::EbookGeneration, 1, 200), 1)
        .unwrap();
    assert_eq!(denials(&d), ["generation_org_burst"]);
    assert_eq!(d.retry_after(), Some(secs(2.0)));
    // another organization is unaffected
    assert!(policy
        .check(&MoviieReq::new(Endpoint::ReelGeneration, 2, 1), 1)
        .unwrap()
        .is_allowed());
    mock.increment(secs(2.0));
    assert!(policy
        .check(&MoviieReq::new(Endpoint::EbookGeneration, 1, 200), 1)
        .unwrap()
        .is_allowed());
}

#[test]
fn moviie_video_limit_denies_one_video_while_the_organization_still_has_budget() {
    let (clock, mock) = Clock::mock();
    let policy = moviie(clock);
    let at = |video| MoviieReq::new(Endpoint::ReelGeneration, 1, video);
    // 15 requests for video 7, 1.5 s apart (inside the 8/10 s burst limit)
    for _ in 0..15 {
        assert!(policy.check(&at(7), 1).unwrap().is_allowed());
        mock.increment(secs(1.5));
    }
    // t = 22.5 s
    let before = policy.peek(&at(8), 1).unwrap();
    let d = policy.check(&at(7), 1).unwrap();
    assert_eq!(denials(&d), ["generation_video"]);
    assert_eq!(d.retry_after(), Some(secs(37.5)));
    // the denial consumed nothing in the organization and API-key scopes
    let after = policy.peek(&at(8), 1).unwrap();
    for scope in [
        "api_key",
        "api_key_writes",
        "generation_org",
        "generation_org_burst",
    ] {
        assert_eq!(
            before.scope(scope).unwrap().decision,
            after.scope(scope).unwrap().decision,
            "{scope}"
        );
    }
    // other videos of the organization pass until the organization's 30/min
    for i in 0..15u64 {
        let d = policy.check(&at(8 + i % 2), 1).unwrap();
        assert!(d.is_allowed(), "request {i}: {:?}", denials(&d));
        mock.increment(secs(1.5));
    }
    // t = 45 s: 30 generation requests in the last minute
    let d = policy.check(&at(20), 1).unwrap();
    assert_eq!(denials(&d), ["generation_org"]);
    assert_eq!(d.retry_after(), Some(secs(15.0)));
    assert_eq!(d.scope("generation_org").unwrap().decision.remaining(), 0);
}

#[test]
fn moviie_denial_reports_the_longest_retry_after_of_all_denying_scopes() {
    let (clock, mock) = Clock::mock();
    let policy = moviie(clock);
    let req = MoviieReq::new(Endpoint::LipSync, 3, 9);
    // lip sync: 4/10 s burst, 10/min per org, 6/min per video
    for _ in 0..4 {
        assert!(policy.check(&req, 1).unwrap().is_allowed());
    }
    mock.increment(secs(10.0));
    for _ in 0..2 {
        assert!(policy.check(&req, 1).unwrap().is_allowed());
    }
    mock.increment(secs(1.0));
    // t = 11 s: video scope is full (6 in the minute) and its first entries leave at 60 s;
    // the org burst still has 2 left.
    let d = policy.check(&req, 1).unwrap();
    assert_eq!(denials(&d), ["lipsync_video"]);
    assert_eq!(d.retry_after(), Some(secs(49.0)));
    // fill the burst from another video: now burst (until 20 s) and video (until 60 s) deny
    let other = MoviieReq::new(Endpoint::LipSync, 3, 10);
    assert!(policy.check(&other, 2).unwrap().is_allowed());
    let d = policy.check(&req, 1).unwrap();
    assert_eq!(denials(&d), ["lipsync_org_burst", "lipsync_video"]);
    assert_eq!(d.retry_after(), Some(secs(49.0)));
    let burst = d.scope("lipsync_org_burst").unwrap().decision.retry_after();
    assert_eq!(burst, Some(secs(9.0)));
}

#[test]
fn moviie_write_limit_is_per_plan_and_reads_do_not_count() {
    let (clock, _mock) = Clock::mock();
    let policy = moviie(clock);
    let mut read = MoviieReq::new(Endpoint::Read, 5, 1);
    let mut write = MoviieReq::new(Endpoint::Upload, 5, 1);
    write.video = None; // upload reservation before a video exists
    for _ in 0..60 {
        assert!(policy.check(&write, 1).unwrap().is_allowed());
    }
    assert_eq!(denials(&policy.check(&write, 1).unwrap()), ["upload_org"]);
    read.api_key = write.api_key.clone();
    let d = policy.check(&read, 1).unwrap();
    assert!(d.is_allowed());
    assert!(d.scope("api_key_writes").is_none());
    assert_eq!(d.scope("api_key").unwrap().decision.remaining(), 600 - 61);

    // Enterprise keys get 240 writes per minute from the same scope.
    let mut ent = MoviieReq::new(Endpoint::Dubbing, 6, 0);
    ent.enterprise = true;
    let d = policy.peek(&ent, 1).unwrap();
    assert_eq!(d.scope("api_key_writes").unwrap().decision.limit(), 240);
    ent.enterprise = false;
    let d = policy.peek(&ent, 1).unwrap();
    assert_eq!(d.scope("api_key_writes").unwrap().decision.limit(), 120);
}

#[test]
fn moviie_transcript_search_scopes_per_source_session_video_and_org() {
    let (clock, mock) = Clock::mock();
    let policy = moviie(clock);
    let search = |session: u64, source: u8| MoviieReq {
        api_key: None,
        session: Some(session),
        source: IpAddr::V4(Ipv4Addr::new(198, 51, 100, source)),
        ..MoviieReq::new(Endpoint::PlaybackSearch, 4, 77)
    };
    for _ in 0..5 {
        assert!(policy.check(&search(1, 1), 1).unwrap().is_allowed());
    }
    let d = policy.check(&search(1, 1), 1).unwrap();
    assert_eq!(denials(&d), ["playback_search_session_burst"]);
    assert_eq!(d.retry_after(), Some(secs(2.0)));
    // another session from the same address passes until the address's 15 per 2 s
    for s in 2..=4 {
        for _ in 0..(if s == 4 { 0 } else { 5 }) {
            assert!(policy.check(&search(s, 1), 1).unwrap().is_allowed());
        }
    }
    let d = policy.check(&search(9, 1), 1).unwrap();
    assert_eq!(denials(&d), ["playback_search_source_burst"]);
    // a different address is fine; nothing was keyed by API key
    let d = policy.check(&search(9, 2), 1).unwrap();
    assert!(d.is_allowed());
    assert!(d.scope("api_key").is_none());
    assert_eq!(
        d.scope("playback_search_video")
            .unwrap()
            .decision
            .remaining(),
        600 - 16
    );
    mock.increment(secs(2.0));
    assert!(policy.check(&search(1, 1), 1).unwrap().is_allowed());
}

// ---------------------------------------------------------------- ReelBot (001)

#[derive(Clone, Copy, PartialEq, Eq)]
enum ReelBotEndpoint {
    Generate,
    Status,
    Download,
}

fn reelbot(clock: Clock) -> Policy<(String, ReelBotEndpoint)> {
    let endpoint = |name: &str, r: &str, which: ReelBotEndpoint| {
        Scope::keyed_by_ref(
            name,
            FixedWindow::new(rate(r)),
            move |q: &(String, ReelBotEndpoint)| (q.1 == which).then_some(q.0.as_str()),
        )
    };
    Policy::builder()
        .clock(clock)
        .scope(endpoint("generate", "10/hour", ReelBotEndpoint::Generate))
        .scope(endpoint("status", "60/min", ReelBotEndpoint::Status))
        .scope(endpoint("download", "30/hour", ReelBotEndpoint::Download))
        .build()
}

#[test]
fn reelbot_per_endpoint_limits_are_independent() {
    let (clock, mock) = Clock::mock();
    mock.increment(Duration::from_secs(1_737_475_200 + 13 * 60)); // 2025-01-21T16:13:00Z
    let policy = reelbot(clock);
    let key = || "rb_live_1".to_owned();
    for left in (0..10).rev() {
        let d = policy
            .check(&(key(), ReelBotEndpoint::Generate), 1)
            .unwrap();
        assert_eq!(d.scope("generate").unwrap().decision.remaining(), left);
    }
    let d = policy
        .check(&(key(), ReelBotEndpoint::Generate), 1)
        .unwrap();
    assert_eq!(denials(&d), ["generate"]);
    // clock-aligned hourly window: resets at 17:00:00Z, 47 minutes from now
    assert_eq!(d.retry_after(), Some(Duration::from_secs(47 * 60)));
    for _ in 0..60 {
        assert!(policy
            .check(&(key(), ReelBotEndpoint::Status), 1)
            .unwrap()
            .is_allowed());
    }
    assert!(policy
        .check(&(key(), ReelBotEndpoint::Status), 1)
        .unwrap()
        .is_denied());
    assert!(policy
        .check(&(key(), ReelBotEndpoint::Download), 1)
        .unwrap()
        .is_allowed());
    assert!(policy
        .check(&("other".to_owned(), ReelBotEndpoint::Generate), 1)
        .unwrap()
        .is_allowed());
}

/// ReelBot's monthly video quota per plan, beside the hourly generate limit. "Quotas reset
/// on your billing cycle date; Free plan quotas reset monthly from signup date": either
/// way the anchor is the account's, so the request carries it.
struct ReelBotAccountReq {
    account: u64,
    plan: &'static str,
    billing_anchor: CycleAnchor,
}

fn reelbot_monthly(clock: Clock) -> Policy<ReelBotAccountReq> {
    let plans: HashMap<&str, u64> = [
        ("free", 3),
        ("starter", 15),
        ("creator", 50),
        ("pro", 150),
        ("business", 500),
    ]
    .into_iter()
    .collect();
    Policy::builder()
        .clock(clock)
        .scope(Scope::keyed(
            "generate",
            FixedWindow::new(rate("10/hour")),
            |r: &ReelBotAccountReq| Some(r.account),
        ))
        .scope(
            Scope::calendar(
                "videos-per-month",
                CalendarQuota::monthly(3).unwrap(),
                |r: &ReelBotAccountReq| Some((r.account, r.billing_anchor)),
            )
            .limit_by(move |r: &ReelBotAccountReq| plans.get(r.plan).copied()),
        )
        .build()
}

#[test]
fn reelbot_monthly_plan_quota_resets_on_the_billing_date() {
    use ratewarden::headers::{HeaderFormat, Reset};

    let (clock, mock) = Clock::mock();
    mock.increment(Duration::from_secs(1_708_423_200)); // 2024-02-20T10:00:00Z
    let policy = reelbot_monthly(clock.clone());
    // Signed up on 31 January at 10:00 UTC: this period ends on 29 February 2024.
    let free = ReelBotAccountReq {
        account: 1,
        plan: "free",
        billing_anchor: "2024-01-31T10:00:00Z".parse().unwrap(),
    };
    for left in (0..3).rev() {
        let d = policy.check(&free, 1).unwrap();
        assert_eq!(
            d.scope("videos-per-month").unwrap().decision.remaining(),
            left
        );
    }
    let d = policy.check(&free, 1).unwrap();
    assert_eq!(denials(&d), ["videos-per-month"]);
    assert_eq!(d.retry_after(), Some(Duration::from_secs(9 * 86_400)));
    let mut headers: Vec<(String, String)> = Vec::new();
    HeaderFormat::x_ratelimit()
        .reset(Reset::Iso8601)
        .write_policy(&d, clock.now_system(), &mut headers)
        .unwrap();
    assert!(headers.contains(&(
        "X-RateLimit-Reset".to_owned(),
        "2024-02-29T10:00:00.000Z".to_owned()
    )));
    // The denial spent nothing in the hourly scope.
    let d = policy.check(&free, 0).unwrap();
    assert_eq!(d.scope("generate").unwrap().decision.remaining(), 7);

    mock.increment(Duration::from_secs(9 * 86_400) - Duration::from_nanos(1));
    assert!(policy.check(&free, 1).unwrap().is_denied());
    mock.increment(Duration::from_nanos(1)); // 2024-02-29T10:00:00Z
    let d = policy.check(&free, 1).unwrap();
    assert!(d.is_allowed());
    // the next period runs to 31 March
    assert_eq!(
        d.scope("videos-per-month").unwrap().decision.reset_after(),
        Duration::from_secs(31 * 86_400)
    );

    // A Pro account with the same anchor: 150 a month, still 10 an hour.
    let pro = ReelBotAccountReq {
        account: 2,
        plan: "pro",
        billing_anchor: free.billing_anchor,
    };
    for _ in 0..10 {
        assert!(policy.check(&pro, 1).unwrap().is_allowed());
    }
    let d = policy.check(&pro, 1).unwrap();
    assert_eq!(denials(&d), ["generate"]);
    assert_eq!(
        d.scope("videos-per-month").unwrap().decision.remaining(),
        140
    );
}

// ---------------------------------------------------------------- VideoGen (002)

#[test]
fn videogen_hourly_endpoint_groups_per_api_key() {
    let groups: &[(&str, &str)] = &[
        ("tools", "500/hour"),
        ("executions_get", "5000/hour"),
        ("executions_cancel", "250/hour"),
        ("files_get", "50000/hour"),
        ("files_hydrate", "2500/hour"),
        ("files_upload", "500/hour"),
        ("files_search", "500/hour"),
        ("resources", "2500/hour"),
        ("webhooks_list", "500/hour"),
        ("webhooks_create", "10/hour"),
        ("webhooks_delete", "10/hour"),
    ];
    let (clock, mock) = Clock::mock();
    let mut builder = Policy::<(&'static str, u32)>::builder().clock(clock);
    for (group, r) in groups {
        let group: &'static str = group;
        builder = builder.scope(Scope::keyed(
            group,
            log(r),
            move |q: &(&'static str, u32)| (q.0 == group).then_some(q.1),
        ));
    }
    let policy = builder.build();
    for _ in 0..10 {
        assert!(policy
            .check(&("webhooks_create", 1), 1)
            .unwrap()
            .is_allowed());
        mock.increment(Duration::from_secs(60));
    }
    let d = policy.check(&("webhooks_create", 1), 1).unwrap();
    assert_eq!(denials(&d), ["webhooks_create"]);
    assert_eq!(d.retry_after(), Some(Duration::from_secs(50 * 60)));
    assert!(policy
        .check(&("webhooks_delete", 1), 1)
        .unwrap()
        .is_allowed());
    assert!(policy
        .check(&("webhooks_create", 2), 1)
        .unwrap()
        .is_allowed());
    assert_eq!(
        policy
            .check(&("files_get", 1), 1)
            .unwrap()
            .scope("files_get")
            .unwrap()
            .decision
            .remaining(),
        49_999
    );
}

// ---------------------------------------------------------------- ReelsBuilder (003)

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum Plan {
    Free,
    Starter,
    Pro,
    Business,
    Enterprise,
}

struct RbReq {
    key: &'static str,
    plan: Plan,
}

#[test]
fn reelsbuilder_plan_tiers_on_a_sliding_minute() {
    let custom: Arc<HashMap<&'static str, u64>> = Arc::new([("acme", 1_000)].into_iter().collect());
    let (clock, mock) = Clock::mock();
    let policy = Policy::builder()
        .clock(clock)
        .scope(
            Scope::keyed("rpm", log("10/min"), |q: &RbReq| Some(q.key)).limit_by(
                move |q: &RbReq| {
                    match q.plan {
                        Plan::Free => None, // the scope's own 10/min
                        Plan::Starter => Some(30),
                        Plan::Pro => Some(60),
                        Plan::Business => Some(120),
                        Plan::Enterprise => Some(custom.get(q.key).copied().unwrap_or(300)),
                    }
                },
            ),
        )
        .build();
    let expect = [
        ("free", Plan::Free, 10),
        ("starter", Plan::Starter, 30),
        ("pro", Plan::Pro, 60),
        ("business", Plan::Business, 120),
        ("enterprise", Plan::Enterprise, 300),
        ("acme", Plan::Enterprise, 1_000),
    ];
    for (key, plan, limit) in expect {
        let req = RbReq { key, plan };
        for _ in 0..limit {
            assert!(policy.check(&req, 1).unwrap().is_allowed(), "{key}");
        }
        let d = policy.check(&req, 1).unwrap();
        assert!(d.is_denied(), "{key}");
        assert_eq!(d.scope("rpm").unwrap().decision.limit(), limit);
    }
    // Sliding, not a clock minute: spread requests stay exactly 60 s in the window.
    let pro = RbReq {
        key: "pro2",
        plan: Plan::Pro,
    };
    for _ in 0..60 {
        assert!(policy.check(&pro, 1).unwrap().is_allowed());
        mock.increment(Duration::from_millis(500));
    }
    // t = 30 s: the first request leaves the window at t = 60 s
    let d = policy.check(&pro, 1).unwrap();
    assert_eq!(d.retry_after(), Some(Duration::from_secs(30)));
    // a Free key upgraded to Pro mid-window keeps what it used
    let upgraded = RbReq {
        key: "free",
        plan: Plan::Pro,
    };
    assert_eq!(
        policy
            .peek(&upgraded, 1)
            .unwrap()
            .scope("rpm")
            .unwrap()
            .decision
            .remaining(),
        49
    );
}

// ---------------------------------------------------------------- Ssemble (004)

struct SsReq {
    account: u32,
    key: &'static str,
    pool: &'static str,
    tier: u8,
}

fn ssemble(clock: Clock) -> Policy<SsReq> {
    let pool = |name: &'static str, r: &str| {
        Scope::keyed(name, log(r), move |q: &SsReq| {
            (q.pool == name).then_some(q.key)
        })
    };
    Policy::builder()
        .clock(clock)
        .scope(pool("video_creation", "500/min"))
        .scope(pool("status_check", "500/min"))
        .scope(pool("list_requests", "500/min"))
        .scope(pool("standard", "1000/15min"))
        .scope(
            Scope::keyed("account_hour", log("100/hour"), |q: &SsReq| Some(q.account))
                .limit_by(|q: &SsReq| (q.tier > 0).then_some(2_000)),
        )
        .scope(
            Scope::keyed("account_day", log("1000/day"), |q: &SsReq| Some(q.account))
                .limit_by(|q: &SsReq| (q.tier > 0).then_some(20_000)),
        )
        .build()
}

#[test]
fn ssemble_account_caps_span_keys_and_pools() {
    let (clock, mock) = Clock::mock();
    let policy = ssemble(clock);
    let req = |key, pool| SsReq {
        account: 1,
        key,
        pool,
        tier: 0,
    };
    for i in 0..100 {
        let pool = [
            "video_creation",
            "status_check",
            "list_requests",
            "standard",
        ][i % 4];
        let key = if i % 3 == 0 { "k1" } else { "k2" };
        assert!(policy.check(&req(key, pool), 1).unwrap().is_allowed());
    }
    // both layers must pass: the pools have room, the account's hour does not
    let d = policy.check(&req("k3", "status_check"), 1).unwrap();
    assert_eq!(denials(&d), ["account_hour"]);
    assert_eq!(d.retry_after(), Some(Duration::from_secs(3_600)));
    // nothing was spent on the denial: the pool still has all of its 500
    assert_eq!(d.scope("status_check").unwrap().decision.remaining(), 500);
    // another account is untouched
    assert!(policy
        .check(
            &SsReq {
                account: 2,
                ..req("k9", "standard")
            },
            1
        )
        .unwrap()
        .is_allowed());
    // nine more hours of 100 reach the daily cap of 1000
    for _ in 0..9 {
        mock.increment(Duration::from_secs(3_600));
        for _ in 0..100 {
            assert!(policy
                .check(&req("k1", "list_requests"), 1)
                .unwrap()
                .is_allowed());
        }
    }
    mock.increment(Duration::from_secs(3_600));
    let d = policy.check(&req("k1", "list_requests"), 1).unwrap();
    assert_eq!(denials(&d), ["account_day"]);
    assert_eq!(d.retry_after(), Some(Duration::from_secs(14 * 3_600)));
}

#[test]
fn ssemble_pools_do_not_affect_each_other_on_higher_tiers() {
    let (clock, _mock) = Clock::mock();
    let policy = ssemble(clock);
    let req = |pool| SsReq {
        account: 7,
        key: "k",
        pool,
        tier: 2,
    };
    for _ in 0..500 {
        assert!(policy
            .check(&req("video_creation"), 1)
            .unwrap()
            .is_allowed());
    }
    let d = policy.check(&req("video_creation"), 1).unwrap();
    assert_eq!(denials(&d), ["video_creation"]);
    let d = policy.check(&req("status_check"), 1).unwrap();
    assert!(d.is_allowed());
    assert_eq!(
        d.scope("account_hour").unwrap().decision.remaining(),
        2_000 - 501
    );
    assert_eq!(d.scope("account_day").unwrap().decision.limit(), 20_000);
}
