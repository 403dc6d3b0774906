//! A keyed limiter in front of a pretend API: two clients, one of them too eager.
//!
//! Run with `cargo run --example quickstart`.

use std::time::Duration;

use ratewarden::{Clock, Gcra, KeyedLimiter, Rate};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // A mock clock makes the run instant and repeatable; a service uses `Clock::new()`
    // (the default of `KeyedLimiter::new`).
    let (clock, time) = Clock::mock();

    // 5 requests per 10 seconds per API key, in bursts of up to 5.
    let rate: Rate = "5/10s".parse()?;
    let limiter: KeyedLimiter<String> = KeyedLimiter::with_clock(Gcra::new(rate), clock);
    println!("limit: {rate} per API key (GCRA)\n");
    println!(
        "{:>6}  {:<10} {:<7} {:>9}  {:>11}",
        "t", "api key", "result", "remaining", "retry-after"
    );

    let script = [
        (0, "alice"),
        (0, "alice"),
        (0, "alice"),
        (0, "alice"),
        (0, "alice"),
        (0, "alice"),
        (0, "bob"),
        (500, "alice"),
        (2_000, "alice"),
        (2_000, "alice"),
    ];
    let mut elapsed = 0;
    for (at_ms, key) in script {
        time.increment(Duration::from_millis(at_ms - elapsed));
        elapsed = at_ms;
        let d = limiter.check(key, 1)?;
        let retry = d
            .retry_after()
            .map(|r| format!("{:.1}s", r.as_secs_f64()))
            .unwrap_or_default();
        let verdict = if d.is_allowed() { "allowed" } else { "429" };
        println!(
            "{:>5.1}s  {:<10} {:<7} {:>9}  {:>11}",
            at_ms as f64 / 1000.0,
            key,
            verdict,
            d.remaining(),
            retry
        );
    }
    println!("\nkeys tracked: {}", limiter.len());
    Ok(())
}
