//! ReelsBuilder's plan tiers: requests per minute on a sliding 60-second window, one
//! scope whose limit depends on the plan, with a negotiated Enterprise override.
//!
//! `cargo run --example seed_reelsbuilder`

use std::time::Duration;

use ratewarden::{Clock, Policy, Scope, SlidingLog};

#[derive(Clone, Copy, Debug)]
enum Plan {
    Free,
    Starter,
    Pro,
    Business,
    Enterprise,
}

struct Req {
    key: &'static str,
    plan: Plan,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (clock, time) = Clock::mock();
    let policy = Policy::builder()
        .clock(clock)
        .scope(
            Scope::keyed("rpm", SlidingLog::new("10/min".parse()?), |r: &Req| {
                Some(r.key)
            })
            .limit_by(|r: &Req| {
                match (r.plan, r.key) {
                    (Plan::Free, _) => None,
                    (Plan::Starter, _) => Some(30),
                    (Plan::Pro, _) => Some(60),
                    (Plan::Business, _) => Some(120),
                    (Plan::Enterprise, "acme") => Some(1_000), // negotiated
                    (Plan::Enterprise, _) => Some(300),
                }
            }),
        )
        .build();
    for (key, plan) in [
        ("f", Plan::Free),
        ("s", Plan::Starter),
        ("p", Plan::Pro),
        ("b", Plan::Business),
        ("e", Plan::Enterprise),
        ("acme", Plan::Enterprise),
    ] {
        let req = Req { key, plan };
        let mut n = 0;
        while policy.check(&req, 1)?.is_allowed() {
            n += 1;
            time.increment(Duration::from_millis(10));
        }
        let d = policy.check(&req, 1)?;
        println!(
            "{plan:?} ({key}): {n} per sliding minute, then Retry-After {:?}",
            d.retry_after().map(|r| r.as_secs_f64().ceil())
        );
    }
    Ok(())
}
