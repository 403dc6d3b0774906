//! ReelBot's limits: per-endpoint rate limits (generate 10/hour, status 60/min, download
//! 30/hour, per API key, in clock-aligned windows, so a denial waits for the top of the
//! hour) and the monthly video quota of the account's plan (Free 3 … Business 500), which
//! resets on the account's billing date.
//!
//! `cargo run --example seed_reelbot`

use std::time::Duration;

use ratewarden::{CalendarQuota, Clock, CycleAnchor, FixedWindow, Policy, Scope};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Endpoint {
    Generate,
    Status,
    Download,
}

struct Req {
    api_key: String,
    account: u64,
    plan: &'static str,
    billing_anchor: CycleAnchor,
    endpoint: Endpoint,
}

fn videos_per_month(plan: &str) -> Option<u64> {
    match plan {
        "free" => Some(3),
        "starter" => Some(15),
        "creator" => Some(50),
        "pro" => Some(150),
        "business" => Some(500),
        _ => None,
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (clock, time) = Clock::mock();
    time.increment(Duration::from_secs(1_737_475_200 + 29 * 60 + 13)); // 2025-01-21T16:29:13Z
    let endpoint =
        |name: &str, rate: &str, which: Endpoint| -> Result<_, Box<dyn std::error::Error>> {
            Ok(Scope::keyed_by_ref(
                name,
                FixedWindow::new(rate.parse()?),
                move |r: &Req| (r.endpoint == which).then_some(r.api_key.as_str()),
            ))
        };
    let policy = Policy::builder()
        .clock(clock)
        .scope(endpoint("generate", "10/hour", Endpoint::Generate)?)
        .scope(endpoint("status", "60/min", Endpoint::Status)?)
        .scope(endpoint("download", "30/hour", Endpoint::Download)?)
        .scope(
            Scope::calendar("videos-per-month", CalendarQuota::monthly(3)?, |r: &Req| {
                (r.endpoint == Endpoint::Generate).then_some((r.account, r.billing_anchor))
            })
            .limit_by(|r: &Req| videos_per_month(r.plan)),
        )
        .build();

    let req = |plan, endpoint| -> Result<Req, Box<dyn std::error::Error>> {
        Ok(Req {
            api_key: format!("rb_live_{plan}"),
            account: if plan == "free" { 1 } else { 2 },
            plan,
            billing_anchor: "2024-10-31T08:00:00Z".parse()?,
            endpoint,
        })
    };
    for plan in ["free", "starter"] {
        for n in 1..=11 {
            let d = policy.check(&req(plan, Endpoint::Generate)?, 1)?;
            let denied: Vec<_> = d.denials().map(|s| s.name).collect();
            println!(
                "{plan:<7} generate #{n:>2}: {:<7}{}",
                if d.is_allowed() { "allowed" } else { "429" },
                d.retry_after()
                    .map(|r| format!(" by {denied:?}, Retry-After: {}", r.as_secs()))
                    .unwrap_or_default()
            );
        }
    }
    let d = policy.check(&req("free", Endpoint::Status)?, 1)?;
    println!(
        "free status while generate is exhausted: {}",
        if d.is_allowed() { "allowed" } else { "429" }
    );
    Ok(())
}
