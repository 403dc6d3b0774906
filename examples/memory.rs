//! Memory per key, and memory after keys go idle, for ratewarden and governor.
//!
//! Each library runs in its own child process so that resident-set figures do not mix:
//! 1 000 000 keys are checked once, then they go idle, then 200 000 checks on 1 000 other
//! keys run over 1.5 s. ratewarden gets no call at all; governor is measured before and after its
//! `retain_recent()` + `shrink_to_fit()`, which it needs to give memory back.
//!
//! `cargo run --release --example memory`

use std::num::NonZeroU32;
use std::process::Command;
use std::time::Duration;

const KEYS: u64 = 1_000_000;

/// Between two rounds of the traffic that follows the idle keys: 200 rounds last 1.5 s.
const PAUSE: Duration = Duration::from_micros(7_500);

fn rss() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096)
}

fn key(i: u64) -> u64 {
    i.wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// Prints `base peak idle [after_cleanup]` in bytes.
fn child(which: &str) -> Result<(), Box<dyn std::error::Error>> {
    // 1000 per second: a key is fully replenished 1 ms after a single request.
    let base = rss();
    match which {
        "ratewarden" => {
            let limiter: ratewarden::KeyedLimiter<u64> = ratewarden::KeyedLimiter::new(
                ratewarden::Gcra::new(ratewarden::Rate::per_second(1_000)?),
            );
            for i in 0..KEYS {
                limiter.check(&key(i), 1)?;
            }
            let peak = rss();
            std::thread::sleep(Duration::from_millis(50) + ratewarden::IDLE_GRACE);
            for round in 0..200 {
                for i in 0..1_000 {
                    limiter.check(&key(KEYS + i + round % 2), 1)?;
                }
                std::thread::sleep(PAUSE);
            }
            println!("{base} {peak} {} {}", rss(), limiter.len());
        }
        _ => {
            let quota = governor::Quota::per_second(NonZeroU32::new(1_000).ok_or("nonzero")?);
            let limiter = governor::RateLimiter::keyed(quota);
            for i in 0..KEYS {
                let _ = limiter.check_key(&key(i));
            }
            let peak = rss();
            std::thread::sleep(Duration::from_millis(50) + ratewarden::IDLE_GRACE);
            for round in 0..200 {
                for i in 0..1_000 {
                    let _ = limiter.check_key(&key(KEYS + i + round % 2));
                }
                std::thread::sleep(PAUSE);
            }
            let idle = rss();
            limiter.retain_recent();
            limiter.shrink_to_fit();
            println!("{base} {peak} {idle} {} {}", limiter.len(), rss());
        }
    }
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    if let Some(which) = std::env::args().nth(1) {
        return child(&which);
    }
    let exe = std::env::current_exe()?;
    let run = |which: &str| -> Result<Vec<f64>, Box<dyn std::error::Error>> {
        let out = Command::new(&exe).arg(which).output()?;
        let text = String::from_utf8(out.stdout)?;
        Ok(text
            .split_whitespace()
            .filter_map(|v| v.parse().ok())
            .collect())
    };
    let rw = run("ratewarden")?;
    let gov = run("governor")?;
    if rw.len() < 4 || gov.len() < 5 {
        return Err("a child process failed".into());
    }
    let mib = |b: f64| b / 1048576.0;
    let per_key = |v: &[f64]| (v[1] - v[0]) / KEYS as f64;
    println!("1 000 000 keys, GCRA, 1000/s each; then idle; then 200 000 checks on other keys over 1.5 s\n");
    println!("{:<28} {:>12} {:>12}", "", "ratewarden", "governor");
    println!(
        "{:<28} {:>12.1} {:>12.1}",
        "bytes per key at peak",
        per_key(&rw),
        per_key(&gov)
    );
    println!(
        "{:<28} {:>12.1} {:>12.1}",
        "peak RSS (MiB)",
        mib(rw[1]),
        mib(gov[1])
    );
    println!(
        "{:<28} {:>12.1} {:>12.1}",
        "after idle, no call (MiB)",
        mib(rw[2]),
        mib(gov[2])
    );
    println!(
        "{:<28} {:>12} {:>12.1}",
        "after retain+shrink (MiB)",
        "-",
        mib(gov[4])
    );
    println!(
        "{:<28} {:>12} {:>12}",
        "keys tracked at the end", rw[3], gov[3]
    );
    let ratio = per_key(&rw) / per_key(&gov);
    let kept = (rw[2] - rw[0]) / (rw[1] - rw[0]);
    println!("\nratio per key ratewarden/governor: {ratio:.2}");
    println!(
        "ratewarden memory after idle, no call: {:.1} % of peak (above baseline)",
        kept * 100.0
    );
    Ok(())
}
