//! One policy, run in-process and on Redis: the same scopes, the same answers.
//!
//! Run with `cargo run --features redis --example redis_policy`, with a Redis server at
//! `REDIS_URL` (default `redis://127.0.0.1:6379/`). Without one it says so and exits.

use std::time::Duration;

use ratewarden::redis::{FailureMode, RedisAlgorithm, RedisBackend, RedisPolicy, RedisScope};
use ratewarden::{FixedWindow, Gcra, Policy, PolicyDecision, Rate, Scope};

struct Req {
    org: String,
    api_key: String,
}

/// A scope described once: name, algorithm, and whether it is per API key (else per
/// organization).
type Described = (&'static str, RedisAlgorithm, bool);

/// The policy's scopes.
fn scopes() -> Result<Vec<Described>, Box<dyn std::error::Error>> {
    Ok(vec![
        // per API key: 3 per minute, one every 20 s, bursts of 3
        ("per-key", Gcra::new(Rate::per_minute(3)?).into(), true),
        // per organization: 5 per hour
        (
            "per-org",
            FixedWindow::new(Rate::per_hour(5)?).into(),
            false,
        ),
    ])
}

fn key(per_key: bool) -> impl Fn(&Req) -> Option<String> + Send + Sync + 'static {
    move |r: &Req| {
        Some(if per_key {
            r.api_key.clone()
        } else {
            r.org.clone()
        })
    }
}

fn in_process() -> Result<Policy<Req>, Box<dyn std::error::Error>> {
    let mut builder = Policy::builder().name("api");
    for (name, alg, per_key) in scopes()? {
        let f = key(per_key);
        builder = builder.scope(match alg {
            RedisAlgorithm::Gcra(a) => Scope::keyed(name, a, f),
            RedisAlgorithm::FixedWindow(a) => Scope::keyed(name, a, f),
            RedisAlgorithm::SlidingWindow(a) => Scope::keyed(name, a, f),
            RedisAlgorithm::SlidingLog(a) => Scope::keyed(name, a, f),
            _ => return Err("an algorithm this example does not know".into()),
        });
    }
    Ok(builder.build())
}

fn on_redis() -> Result<RedisPolicy<Req>, Box<dyn std::error::Error>> {
    // A unique name per run, so that each run starts from fresh keys.
    let run = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis();
    let mut builder = RedisPolicy::builder()
        .name(&format!("example-{run}"))
        // every key of a check lives in its organization's cluster slot
        .hash_tag(|r: &Req| Some(r.org.clone()))
        .on_failure(FailureMode::Closed {
            retry_after: Duration::from_secs(1),
        })
        .cluster();
    for (name, alg, per_key) in scopes()? {
        builder = builder.scope(RedisScope::keyed(name, alg, key(per_key)));
    }
    Ok(builder.build()?)
}

fn line(backend: &str, who: &Req, d: &PolicyDecision<'_>) {
    let scopes: Vec<String> = d
        .scopes()
        .map(|s| format!("{}={}", s.name, s.decision.remaining()))
        .collect();
    let verdict = match d.retry_after() {
        None => "allowed".to_string(),
        Some(wait) => format!("429, retry in {}s", wait.as_secs_f64().ceil()),
    };
    println!(
        "{backend:<10} {:<6} {:<6} {verdict:<20} remaining: {}",
        who.org,
        who.api_key,
        scopes.join(" ")
    );
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/".into());
    let local = in_process()?;
    let shared = on_redis()?;
    let redis = RedisBackend::open(&url)?.with_deadline(Duration::from_millis(200));

    let traffic = [
        ("acme", "k1"),
        ("acme", "k1"),
        ("acme", "k1"),
        ("acme", "k1"), // k1's burst is spent
        ("acme", "k2"),
        ("acme", "k2"),
        ("acme", "k3"), // acme's hourly 5 are spent
        ("umbrella", "k9"),
    ];
    for (org, api_key) in traffic {
        let r = Req {
            org: org.into(),
            api_key: api_key.into(),
        };
        line("in-process", &r, &local.check(&r, 1)?);
        let d = shared.check(&redis, &r, 1)?;
        if let Some(fault) = d.fault() {
            println!("no Redis server answers at {url} ({fault}); nothing more to show");
            return Ok(());
        }
        line("redis", &r, &d);
    }
    Ok(())
}
