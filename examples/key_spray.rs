//! Key spraying: 10 000 000 distinct keys as fast as one core can send them at a limiter
//! capped at 1 000 000 keys. Prints throughput, tracked keys and resident memory, and
//! checks that legitimate keys kept their state.
//!
//! `cargo run --release --example key_spray [keys] [cap]`

use std::time::Instant;

use ratewarden::{CheckError, Gcra, KeyedLimiter, Rate};

/// Resident memory of this process in bytes (Linux), or 0 where unknown.
fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let keys: u64 = args
        .next()
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(10_000_000);
    let cap: usize = args
        .next()
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(1_000_000);
    let limiter: KeyedLimiter<u64> = KeyedLimiter::builder(Gcra::new(Rate::per_hour(5)?))
        .max_keys(cap)
        .build();
    let base = rss_bytes();
    for key in 0..1_000u64 {
        for _ in 0..5 {
            limiter.check(&key, 1)?;
        }
    }
    let start = Instant::now();
    let (mut allowed, mut refused) = (0u64, 0u64);
    for key in 1_000_000_000..1_000_000_000 + keys {
        match limiter.check(&key, 1) {
            Ok(_) => allowed += 1,
            Err(CheckError::KeyCapReached { .. }) => refused += 1,
            Err(e) => return Err(e.into()),
        }
    }
    let elapsed = start.elapsed();
    let rss = rss_bytes();
    let intact = (0..1_000u64).all(|k| limiter.peek(&k, 1).is_ok_and(|d| d.is_denied()));
    println!("sprayed keys        {keys}");
    println!(
        "rate                {:.1} M keys/s on one thread",
        keys as f64 / elapsed.as_secs_f64() / 1e6
    );
    println!("tracked keys        {} (cap {cap})", limiter.len());
    println!("new keys allowed    {allowed}, refused at the cap {refused}");
    println!(
        "resident memory     {:.1} MiB ({:.0} bytes per tracked key above baseline)",
        rss as f64 / 1048576.0,
        rss.saturating_sub(base) as f64 / limiter.len().max(1) as f64
    );
    println!("legitimate keys kept their state: {intact}");
    if !intact || limiter.len() > cap {
        return Err("the cap or the legitimate keys' state was not kept".into());
    }
    Ok(())
}
