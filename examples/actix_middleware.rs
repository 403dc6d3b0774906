//! The same rate-limit middleware for actix-web: the Moviie seed's limits, both header
//! styles on every response, a 429 with `Retry-After` and `{"error":"rate_limited"}`.
//!
//! ```text
//! cargo run --example actix_middleware           # serves on 127.0.0.1:3001 (PORT to change)
//! curl -i -X POST -H 'x-api-key: mv_live_acme' localhost:3001/v1/videos/1/reels
//! ```

#[path = "shared/moviie.rs"]
mod moviie;

use std::str::FromStr;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue, CONTENT_TYPE};
use actix_web::middleware::{from_fn, Next};
use actix_web::{web, App, HttpResponse, HttpServer};
use ratewarden::Clock;

use moviie::Limits;

async fn video(id: web::Path<u64>) -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({ "id": *id, "status": "ready" }))
}

async fn generate(id: web::Path<u64>) -> HttpResponse {
    HttpResponse::Accepted().json(serde_json::json!({ "video": *id, "job": "queued" }))
}

/// Context, one policy check, headers on every response, a 429 on denial.
async fn rate_limit(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let Some(limits) = req.app_data::<web::Data<Limits>>().cloned() else {
        return Err(actix_web::error::ErrorInternalServerError(
            "no limiter configured",
        ));
    };
    let Some(peer) = req.peer_addr() else {
        return Err(actix_web::error::ErrorBadRequest("no peer address"));
    };
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
    let ctx = limits.context(
        req.method().as_str(),
        req.path(),
        header("x-api-key"),
        peer,
        header("x-forwarded-for"),
        header("forwarded"),
    );
    let sent_key = header("x-api-key").is_some();
    let (decision, now) = limits
        .check(&ctx)
        .map_err(actix_web::error::ErrorInternalServerError)?;
    // actix-web has its own header types: collect the pairs, then convert.
    let mut pairs: Vec<(String, String)> = Vec::new();
    limits.headers(&decision, now, &mut pairs);

    let mut response = if decision.is_denied() {
        req.into_response(
            HttpResponse::TooManyRequests()
                .insert_header((CONTENT_TYPE, "application/json"))
                .body(moviie::denied_body()),
        )
    } else if sent_key && ctx.account.is_none() {
        req.into_response(HttpResponse::Unauthorized().body(r#"{"error":"invalid_api_key"}"#))
    } else {
        next.call(req).await?.map_into_boxed_body()
    };
    for (name, value) in pairs {
        if let (Ok(name), Ok(value)) = (HeaderName::from_str(&name), HeaderValue::from_str(&value))
        {
            response.headers_mut().append(name, value);
        }
    }
    Ok(response)
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let port: u16 = std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(3001);
    let limits = web::Data::new(Limits::new(Clock::new()));
    let server = HttpServer::new(move || {
        App::new()
            .app_data(limits.clone())
            .wrap(from_fn(rate_limit))
            .route("/v1/videos/{id}", web::get().to(video))
            .route("/v1/videos/{id}/reels", web::post().to(generate))
    })
    .workers(2)
    .bind(("127.0.0.1", port))?;
    println!("listening on http://127.0.0.1:{port}");
    server.run().await
}
