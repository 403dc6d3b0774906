//! ratewarden in front of a real HTTP API, in one command:
//!
//! ```text
//! cargo run --example demo
//! ```
//!
//! Starts the axum example service (`examples/shared/axum_app.rs`) on a free loopback
//! port, fires a scripted burst of real HTTP requests at it — one organization starting
//! reel generations, as in the Moviie seed — and prints what came back: status, the
//! rate-limit headers, `Retry-After`, and which scope is closest to its limit as a client
//! reads it from the IETF headers. Then it exits.

#[path = "shared/axum_app.rs"]
mod axum_app;
#[path = "shared/moviie.rs"]
mod moviie;

use std::sync::Arc;
use std::time::SystemTime;

use ratewarden::client::RateLimitInfo;
use ratewarden::Clock;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let limits = Arc::new(moviie::Limits::new(Clock::new()));
    tokio::spawn(axum_app::serve(listener, limits));

    println!("Moviie-style API on {base}: 8 generations / 10 s and 30 / min per organization,");
    println!("15 / min per video, 600 / min per API key; one organization starts reels.\n");
    println!(
        "{:<3} {:<42} {:>6} {:>9} {:>5} {:>7}  closest scope (IETF)",
        "#", "request", "status", "remaining", "reset", "retry"
    );

    let http = reqwest::Client::new();
    let script: Vec<(&str, &str, &str)> = (0..10)
        .map(|_| ("POST", "/v1/videos/1/reels", "mv_live_acme"))
        .chain([
            // Another video of the same organization: the organization's burst still binds.
            ("POST", "/v1/videos/2/reels", "mv_live_acme"),
            // Reads are not generation work; the 429s above spent nothing of the key.
            ("GET", "/v1/videos/1", "mv_live_acme"),
            // Another organization is untouched.
            ("POST", "/v1/videos/9/reels", "mv_live_bigco"),
            // An unknown key is counted against the source address, then refused.
            ("POST", "/v1/videos/1/reels", "mv_live_forged"),
        ])
        .collect();

    let mut denied_body = None;
    let mut last_ietf = None;
    for (i, (method, path, key)) in script.into_iter().enumerate() {
        let url = format!("{base}{path}");
        let request = match method {
            "POST" => http.post(&url),
            _ => http.get(&url),
        };
        let response = request.header("x-api-key", key).send().await?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response.text().await?;
        let get = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-")
                .to_owned()
        };
        // What a client makes of the IETF fields: the scope with the least remaining.
        let ietf = RateLimitInfo::parse(
            headers
                .iter()
                .filter(|(n, _)| n.as_str().starts_with("ratelimit"))
                .map(|(n, v)| (n.as_str(), v.as_bytes())),
            SystemTime::now(),
        );
        let closest = ietf
            .closest()
            .map(|q| {
                format!(
                    "{} ({} of {} left)",
                    q.name.as_deref().unwrap_or("?"),
                    q.remaining.unwrap_or(0),
                    q.limit.unwrap_or(0)
                )
            })
            .unwrap_or_default();
        println!(
            "{:<3} {:<42} {:>6} {:>9} {:>5} {:>7}  {}",
            i + 1,
            format!("{method} {path} ({key})"),
            status,
            get("x-ratelimit-remaining"),
            get("x-ratelimit-reset"),
            get("retry-after"),
            closest
        );
        if status == 429 && denied_body.is_none() {
            denied_body = Some(body);
        }
        last_ietf = Some((get("ratelimit-policy"), get("ratelimit")));
    }

    if let Some(body) = denied_body {
        println!("\nA 429 carries Retry-After and the seed's body: {body}");
    }
    if let Some((policy, remaining)) = last_ietf {
        println!("IETF fields of the last response:\n  RateLimit-Policy: {policy}\n  RateLimit: {remaining}");
    }
    Ok(())
}
