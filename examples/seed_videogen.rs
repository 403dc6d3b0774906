//! VideoGen's per-endpoint hourly groups, independent of each other, per API key.
//!
//! `cargo run --example seed_videogen`

use ratewarden::{Clock, Gcra, Policy, Scope};

const GROUPS: &[(&str, &str)] = &[
    ("POST /v1/tools/*", "500/hour"),
    ("GET /v1/tools/executions/{id}", "5000/hour"),
    ("POST /v1/tools/executions/{id}/cancel", "250/hour"),
    ("GET /v1/files", "50000/hour"),
    ("POST /v1/files/{id}/hydrate", "2500/hour"),
    ("POST /v1/files/upload", "500/hour"),
    ("POST /v1/files/search", "500/hour"),
    ("GET /v1/resources/*", "2500/hour"),
    ("GET /v1/webhooks/endpoints", "500/hour"),
    ("POST /v1/webhooks/endpoints", "10/hour"),
    ("DELETE /v1/webhooks/endpoints/{id}", "10/hour"),
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (clock, _time) = Clock::mock();
    let mut builder = Policy::<(&'static str, u32)>::builder().clock(clock);
    for (group, rate) in GROUPS {
        let group: &'static str = group;
        builder = builder.scope(Scope::keyed(
            group,
            Gcra::new(rate.parse()?),
            move |r: &(&str, u32)| (r.0 == group).then_some(r.1),
        ));
    }
    let policy = builder.build();
    let mut allowed = 0;
    while policy
        .check(&("POST /v1/webhooks/endpoints", 1), 1)?
        .is_allowed()
    {
        allowed += 1;
    }
    let d = policy.check(&("POST /v1/webhooks/endpoints", 1), 1)?;
    println!(
        "webhook creations allowed in a burst: {allowed}; next retry-after {:?}",
        d.retry_after()
    );
    let d = policy.check(&("GET /v1/files", 1), 1)?;
    println!(
        "GET /v1/files still allowed: {} (remaining {})",
        d.is_allowed(),
        d.scopes().map(|s| s.decision.remaining()).sum::<u64>()
    );
    Ok(())
}
