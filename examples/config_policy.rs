//! A policy from a configuration file: reads a TOML, JSON or YAML policy (default: the
//! ReelBot seed's table), prints every problem if it is invalid, and otherwise replays a
//! few requests described by `name=value` attributes.
//!
//! `cargo run --example config_policy -- examples/config/reelbot.toml \
//!     route=generate api_key=k1 account=1 plan=free billing_anchor=2024-10-31T00:00:00Z`

use std::time::Duration;

use ratewarden::config::{Attributes, PolicyConfig};
use ratewarden::Clock;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let path = args
        .next()
        .unwrap_or_else(|| "examples/config/reelbot.toml".to_owned());
    let mut req: Attributes = args
        .filter_map(|a| a.split_once('=').map(|(n, v)| (n.to_owned(), v.to_owned())))
        .collect();
    if req.is_empty() {
        req = Attributes::new()
            .with("route", "generate")
            .with("api_key", "k1")
            .with("account", "1")
            .with("plan", "free")
            .with("billing_anchor", "2024-10-31T00:00:00Z");
    }

    let text = std::fs::read_to_string(&path)?;
    let config: PolicyConfig = match path.rsplit('.').next() {
        Some("json") => serde_json::from_str(&text)?,
        Some("yaml" | "yml") => serde_norway::from_str(&text)?,
        _ => toml::from_str(&text)?,
    };
    let (clock, time) = Clock::mock();
    time.increment(Duration::from_secs(1_737_475_200)); // 2025-01-21T16:00:00Z
    let policy = match config.build_with_clock(clock) {
        Ok(policy) => policy,
        Err(problems) => {
            eprintln!("{path}: {problems}");
            std::process::exit(1);
        }
    };
    println!(
        "{path}: policy {:?} with scopes {:?}",
        policy.name(),
        policy.scope_names().collect::<Vec<_>>()
    );
    for n in 1..=5 {
        let d = policy.check(&req, 1)?;
        let scopes: Vec<String> = d
            .scopes()
            .map(|s| {
                format!(
                    "{} {}/{}",
                    s.name,
                    s.decision.remaining(),
                    s.decision.limit()
                )
            })
            .collect();
        println!(
            "#{n}: {:<7} {}{}",
            if d.is_allowed() { "allowed" } else { "429" },
            scopes.join(", "),
            d.retry_after()
                .map(|r| format!(", Retry-After: {}", r.as_secs()))
                .unwrap_or_default()
        );
    }
    Ok(())
}
