//! Rate limiting in plain hyper, no framework: one `service_fn` that checks the policy,
//! routes, and puts the rate-limit headers on every response.
//!
//! ```text
//! cargo run --example hyper_service              # serves on 127.0.0.1:3002 (PORT to change)
//! curl -i -X POST -H 'x-api-key: mv_live_acme' localhost:3002/v1/videos/1/reels
//! ```

#[path = "shared/moviie.rs"]
mod moviie;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::CONTENT_TYPE;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use ratewarden::Clock;

use moviie::Limits;

fn reply(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        "application/json".parse().expect("a valid header value"),
    );
    response
}

fn route(req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let mut parts = req.uri().path().trim_matches('/').split('/');
    match (
        req.method(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) {
        (&Method::GET, Some("v1"), Some("videos"), Some(id), None) => reply(
            StatusCode::OK,
            format!(r#"{{"id":{id:?},"status":"ready"}}"#),
        ),
        (&Method::POST, Some("v1"), Some("videos"), Some(id), Some("reels")) => reply(
            StatusCode::ACCEPTED,
            format!(r#"{{"video":{id:?},"job":"queued"}}"#),
        ),
        _ => reply(StatusCode::NOT_FOUND, r#"{"error":"not_found"}"#.into()),
    }
}

async fn handle(
    limits: Arc<Limits>,
    peer: SocketAddr,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
    let ctx = limits.context(
        req.method().as_str(),
        req.uri().path(),
        header("x-api-key"),
        peer,
        header("x-forwarded-for"),
        header("forwarded"),
    );
    let (decision, now) = match limits.check(&ctx) {
        Ok(checked) => checked,
        Err(e) => {
            return Ok(reply(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("{:?}", e.to_string()),
            ))
        }
    };
    let mut response = if decision.is_denied() {
        reply(StatusCode::TOO_MANY_REQUESTS, moviie::denied_body())
    } else if header("x-api-key").is_some() && ctx.account.is_none() {
        reply(
            StatusCode::UNAUTHORIZED,
            r#"{"error":"invalid_api_key"}"#.into(),
        )
    } else {
        route(&req)
    };
    // hyper's header map is `http::HeaderMap`: the `http` feature writes into it directly.
    limits.headers(&decision, now, response.headers_mut());
    Ok(response)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let port = std::env::var("PORT").unwrap_or_else(|_| "3002".into());
    let listener = tokio::net::TcpListener::bind(format!("127.0.0.1:{port}")).await?;
    println!("listening on http://{}", listener.local_addr()?);
    let limits = Arc::new(Limits::new(Clock::new()));
    loop {
        let (stream, peer) = listener.accept().await?;
        let limits = limits.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| handle(limits.clone(), peer, req));
            if let Err(e) = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                eprintln!("connection from {peer}: {e}");
            }
        });
    }
}
