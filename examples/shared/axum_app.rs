//! The axum application: routes, and the rate-limit middleware in front of them.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};

use crate::moviie::{denied_body, Limits};

/// The routes, with the limiter's state shared by every request.
pub fn router(limits: Arc<Limits>) -> Router {
    Router::new()
        .route("/v1/videos/{id}", get(video))
        .route("/v1/videos/{id}/reels", post(generate))
        .route_layer(middleware::from_fn_with_state(limits.clone(), rate_limit))
        .with_state(limits)
}

/// Serves `router` on `listener`, with peer addresses for the source scope.
pub async fn serve(listener: tokio::net::TcpListener, limits: Arc<Limits>) -> std::io::Result<()> {
    axum::serve(
        listener,
        router(limits).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .await
}

async fn video(Path(id): Path<u64>) -> Json<serde_json::Value> {
    Json(serde_json::json!({ "id": id, "status": "ready" }))
}

async fn generate(Path(id): Path<u64>) -> (StatusCode, Json<serde_json::Value>) {
    (
        StatusCode::ACCEPTED,
        Json(serde_json::json!({ "video": id, "job": "queued" })),
    )
}

fn text<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// The middleware: context, one policy check, headers on every response, a 429 with
/// `Retry-After` and the seed's JSON body on denial.
async fn rate_limit(
    State(limits): State<Arc<Limits>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
    next: Next,
) -> Response {
    let h = request.headers();
    let sent_key = h.contains_key("x-api-key");
    let ctx = limits.context(
        request.method().as_str(),
        request.uri().path(),
        text(h, "x-api-key"),
        peer,
        text(h, "x-forwarded-for"),
        text(h, "forwarded"),
    );
    let (decision, now) = match limits.check(&ctx) {
        Ok(checked) => checked,
        // Only a misconfigured policy gets here (a cost above a scope's capacity).
        Err(e) => return (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    };
    let mut rate_headers = HeaderMap::new();
    limits.headers(&decision, now, &mut rate_headers);

    let mut response = if decision.is_denied() {
        let mut denied = (StatusCode::TOO_MANY_REQUESTS, denied_body()).into_response();
        denied.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        denied
    } else if sent_key && ctx.account.is_none() {
        // Counted against the source address, then refused.
        (StatusCode::UNAUTHORIZED, r#"{"error":"invalid_api_key"}"#).into_response()
    } else {
        next.run(request).await
    };
    response.headers_mut().extend(rate_headers);
    response
}
