//! Ssemble's two layers: per-endpoint pools per API key, and account-level hourly and
//! daily caps across all keys and endpoints. Both must pass.
//!
//! `cargo run --example seed_ssemble`

use ratewarden::{Clock, Policy, Scope, SlidingLog};

struct Req {
    account: u32,
    key: &'static str,
    pool: &'static str,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (clock, _time) = Clock::mock();
    let log = |s: &str| s.parse().map(SlidingLog::new);
    let pool = |name: &'static str, rate: &str| -> Result<Scope<Req>, ratewarden::RateError> {
        Ok(Scope::keyed(name, log(rate)?, move |r: &Req| {
            (r.pool == name).then_some(r.key)
        }))
    };
    let policy = Policy::builder()
        .clock(clock)
        .scope(pool("video_creation", "500/min")?)
        .scope(pool("status_check", "500/min")?)
        .scope(pool("list_requests", "500/min")?)
        .scope(pool("standard", "1000/15min")?)
        .scope(Scope::keyed("account_hour", log("100/hour")?, |r: &Req| {
            Some(r.account)
        }))
        .scope(Scope::keyed("account_day", log("1000/day")?, |r: &Req| {
            Some(r.account)
        }))
        .build();
    let mut n = 0;
    loop {
        let key = if n % 2 == 0 { "key-a" } else { "key-b" };
        let d = policy.check(
            &Req {
                account: 1,
                key,
                pool: "status_check",
            },
            1,
        )?;
        if d.is_denied() {
            let by: Vec<&str> = d.denials().map(|s| s.name).collect();
            println!(
                "request {} denied by {:?}, retry-after {:?}",
                n + 1,
                by,
                d.retry_after()
            );
            let pool = d.scope("status_check").ok_or("pool applies")?;
            println!(
                "the status_check pool still had {} left",
                pool.decision.remaining()
            );
            break;
        }
        n += 1;
    }
    Ok(())
}
