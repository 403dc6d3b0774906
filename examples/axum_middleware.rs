//! An axum service with a rate-limit middleware in front of its routes: the Moviie
//! seed's limits per API key, organization, video and source address, both header styles
//! on every response, and a 429 with `Retry-After` and `{"error":"rate_limited"}`.
//!
//! ```text
//! cargo run --example axum_middleware            # serves on 127.0.0.1:3000 (PORT to change)
//! curl -i -X POST -H 'x-api-key: mv_live_acme' localhost:3000/v1/videos/1/reels
//! ```
//!
//! The middleware itself is `examples/shared/axum_app.rs`; the policy and request
//! context, shared with the actix-web and hyper examples, are `examples/shared/moviie.rs`.

#[path = "shared/axum_app.rs"]
mod axum_app;
#[path = "shared/moviie.rs"]
mod moviie;

use std::sync::Arc;

use ratewarden::Clock;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let port = std::env::var("PORT").unwrap_or_else(|_| "3000".into());
    let listener = tokio::net::TcpListener::bind(format!("127.0.0.1:{port}")).await?;
    println!("listening on http://{}", listener.local_addr()?);
    axum_app::serve(listener, Arc::new(moviie::Limits::new(Clock::new()))).await?;
    Ok(())
}
