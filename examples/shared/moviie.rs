//! The rate-limit side of a video API shaped like the Moviie seed, independent of any web
//! framework: the request context, the policy, and how a decision becomes a response.
//! The axum, actix-web and hyper examples each wire this into their own middleware.
#![allow(dead_code)]

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::SystemTime;

use ratewarden::headers::{HeaderFormat, HeaderSink, Report, SimpleError};
use ratewarden::{
    to_system_time, ClientAddr, Clock, Policy, PolicyDecision, PolicyError, Scope, SlidingLog,
    TrustedProxies,
};

/// What the endpoint does, for the limits that apply to one kind of work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Category {
    /// Reads: listing, fetching, status polls.
    Read,
    /// Starting a reel or translation generation job.
    Generation,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    Pro,
    Enterprise,
}

/// An API key's account, as the application's own key store would return it.
#[derive(Debug, Clone)]
pub struct Account {
    pub key: Arc<str>,
    pub org: u64,
    pub plan: Plan,
}

/// Everything the policy keys on, built once per request.
#[derive(Debug, Clone)]
pub struct Ctx {
    pub account: Option<Account>,
    pub category: Category,
    pub write: bool,
    pub video: Option<u64>,
    pub source: ClientAddr,
}

/// The application's shared state: the policy, the header styles, the key store.
pub struct Limits {
    pub policy: Policy<Ctx>,
    /// Every response carries both: classic `X-RateLimit-*` for the closest scope (and
    /// `Retry-After` on a 429), and the IETF fields listing every scope.
    pub formats: [HeaderFormat; 2],
    /// Addresses whose `X-Forwarded-For` / `Forwarded` we believe.
    pub proxies: TrustedProxies,
    accounts: Vec<Account>,
}

fn log(rate: &str) -> SlidingLog {
    SlidingLog::new(rate.parse().expect("a valid rate literal"))
}

impl Limits {
    /// The seed's limits, on `clock` (a mock one in tests).
    pub fn new(clock: Clock) -> Limits {
        let policy = Policy::builder()
            .name("moviie")
            .clock(clock)
            .scope(Scope::keyed_by_ref("api_key", log("600/min"), |c: &Ctx| {
                c.account.as_ref().map(|a| &*a.key)
            }))
            .scope(
                Scope::keyed_by_ref("api_key_write", log("120/min"), |c: &Ctx| {
                    c.account.as_ref().filter(|_| c.write).map(|a| &*a.key)
                })
                .limit_by(|c: &Ctx| {
                    c.account
                        .as_ref()
                        .filter(|a| a.plan == Plan::Enterprise)
                        .map(|_| 240)
                }),
            )
            .scope(Scope::keyed("org_burst", log("8/10s"), |c: &Ctx| {
                c.account
                    .as_ref()
                    .filter(|_| c.category == Category::Generation)
                    .map(|a| a.org)
            }))
            .scope(Scope::keyed("org", log("30/min"), |c: &Ctx| {
                c.account
                    .as_ref()
                    .filter(|_| c.category == Category::Generation)
                    .map(|a| a.org)
            }))
            // Only authenticated work counts against a video: an unknown caller must not be
            // able to spend a customer's per-video budget.
            .scope(Scope::keyed("video", log("15/min"), |c: &Ctx| {
                c.account
                    .as_ref()
                    .and(c.video)
                    .filter(|_| c.category == Category::Generation)
            }))
            // Requests without a valid key are limited by where they come from.
            .scope(Scope::keyed("source", log("60/min"), |c: &Ctx| {
                c.account.is_none().then_some(c.source)
            }))
            .build();
        Limits {
            policy,
            formats: [
                HeaderFormat::x_ratelimit(),
                HeaderFormat::ietf(Report::All).retry_after(None),
            ],
            // Trust no proxy: this service is reached directly, so a client that sends
            // `X-Forwarded-For: 1.2.3.4` must not get the budget of 1.2.3.4 (or a fresh
            // budget for every address it invents). Behind a load balancer, list its
            // addresses here instead, e.g. `"10.0.0.0/8".parse()?`.
            proxies: TrustedProxies::default(),
            accounts: vec![
                Account {
                    key: "mv_live_acme".into(),
                    org: 42,
                    plan: Plan::Pro,
                },
                Account {
                    key: "mv_live_bigco".into(),
                    org: 7,
                    plan: Plan::Enterprise,
                },
            ],
        }
    }

    /// The request context from the parts every framework exposes.
    pub fn context(
        &self,
        method: &str,
        path: &str,
        api_key: Option<&str>,
        peer: SocketAddr,
        x_forwarded_for: Option<&str>,
        forwarded: Option<&str>,
    ) -> Ctx {
        let account = api_key
            .and_then(|k| self.accounts.iter().find(|a| &*a.key == k))
            .cloned();
        let ip: IpAddr = self
            .proxies
            .client_addr(peer.ip(), x_forwarded_for, forwarded);
        // `/v1/videos/{id}/reels` starts a generation; other paths read.
        let mut parts = path.trim_matches('/').split('/');
        let video = match (parts.next(), parts.next(), parts.next()) {
            (Some("v1"), Some("videos"), Some(id)) => id.parse().ok(),
            _ => None,
        };
        let generation = method == "POST" && path.ends_with("/reels");
        Ctx {
            account,
            category: if generation {
                Category::Generation
            } else {
                Category::Read
            },
            write: method != "GET" && method != "HEAD",
            video,
            source: ClientAddr::new(ip),
        }
    }

    /// Runs the policy: one clock reading, used for the decision and its headers.
    pub fn check(&self, ctx: &Ctx) -> Result<(PolicyDecision<'_>, SystemTime), PolicyError> {
        let now = self.policy.clock().now();
        let decision = self.policy.check_at(ctx, 1, now)?;
        Ok((decision, to_system_time(now)))
    }

    /// Writes every header style for `decision` into `sink`.
    pub fn headers(
        &self,
        decision: &PolicyDecision<'_>,
        now: SystemTime,
        sink: &mut impl HeaderSink,
    ) {
        for format in &self.formats {
            // A request no scope applies to (none here) has nothing to report.
            let _ = format.write_policy(decision, now, sink);
        }
    }
}

/// The 429 body the seed documents: `{"error":"rate_limited"}`.
pub fn denied_body() -> String {
    serde_json::to_string(&SimpleError::rate_limited()).expect("serialisable")
}
