//! ReelBot's per-endpoint limits: generate 10/hour, status 60/min, download 30/hour, per
//! API key, in clock-aligned windows (a denial waits for the top of the hour).
//!
//! `cargo run --example seed_reelbot`

use std::time::Duration;

use ratewarden::{Clock, FixedWindow, Policy, Scope};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Endpoint {
    Generate,
    Status,
    Download,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (clock, time) = Clock::mock();
    time.increment(Duration::from_secs(1_737_475_200 + 29 * 60 + 13)); // 2025-01-21T16:29:13Z
    let endpoint =
        |name: &str, rate: &str, which: Endpoint| -> Result<_, Box<dyn std::error::Error>> {
            Ok(Scope::keyed_by_ref(
                name,
                FixedWindow::new(rate.parse()?),
                move |r: &(String, Endpoint)| (r.1 == which).then_some(r.0.as_str()),
            ))
        };
    let policy = Policy::builder()
        .clock(clock)
        .scope(endpoint("generate", "10/hour", Endpoint::Generate)?)
        .scope(endpoint("status", "60/min", Endpoint::Status)?)
        .scope(endpoint("download", "30/hour", Endpoint::Download)?)
        .build();

    let key = "rb_live_1".to_owned();
    for n in 1..=11 {
        let d = policy.check(&(key.clone(), Endpoint::Generate), 1)?;
        let scope = d.scope("generate").ok_or("generate scope applies")?;
        println!(
            "generate #{n:>2}: {:<7} remaining {:>2}{}",
            if d.is_allowed() { "allowed" } else { "429" },
            scope.decision.remaining(),
            d.retry_after()
                .map(|r| format!(", Retry-After: {}", r.as_secs()))
                .unwrap_or_default()
        );
    }
    let d = policy.check(&(key, Endpoint::Status), 1)?;
    println!(
        "status while generate is exhausted: {}",
        if d.is_allowed() { "allowed" } else { "429" }
    );
    Ok(())
}
