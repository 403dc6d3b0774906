//! Moviie's generation limits as one policy: per API key, per organization (burst and
//! sustained) and per video. One organization fires generation requests; watch which
//! scope denies, and that the longest retry-after is the one reported.
//!
//! `cargo run --example seed_moviie`

use std::time::Duration;

use ratewarden::{Clock, Policy, Scope, SlidingLog};

struct Req {
    api_key: String,
    org: u64,
    video: u64,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (clock, time) = Clock::mock();
    let log = |s: &str| s.parse().map(SlidingLog::new);
    let policy = Policy::builder()
        .clock(clock)
        .scope(Scope::keyed_by_ref(
            "api_key",
            log("600/min")?,
            |r: &Req| Some(r.api_key.as_str()),
        ))
        .scope(Scope::keyed("org_burst", log("8/10s")?, |r: &Req| {
            Some(r.org)
        }))
        .scope(Scope::keyed("org", log("30/min")?, |r: &Req| Some(r.org)))
        .scope(Scope::keyed("video", log("15/min")?, |r: &Req| {
            Some(r.video)
        }))
        .build();

    let req = |video| Req {
        api_key: "mv_live_1".into(),
        org: 42,
        video,
    };
    println!(
        "{:>6}  {:>5}  {:<8} {:<22} {:>11}",
        "t", "video", "result", "denied by", "retry-after"
    );
    for step in 0..24u64 {
        let video = if step < 18 { 1 } else { 2 };
        let d = policy.check(&req(video), 1)?;
        let by: Vec<&str> = d.denials().map(|s| s.name).collect();
        println!(
            "{:>5.1}s  {:>5}  {:<8} {:<22} {:>11}",
            step as f64 * 1.25,
            video,
            if d.is_allowed() { "allowed" } else { "429" },
            by.join(", "),
            d.retry_after()
                .map(|r| format!("{:.2}s", r.as_secs_f64()))
                .unwrap_or_default()
        );
        time.increment(Duration::from_millis(1_250));
    }
    Ok(())
}
