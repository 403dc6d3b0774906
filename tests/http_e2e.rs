//! End to end: the axum example service on a loopback port, driven by a real HTTP client,
//! with a mock clock in the service's limiter so nothing sleeps.

#[path = "../examples/shared/axum_app.rs"]
mod axum_app;
#[path = "../examples/shared/moviie.rs"]
mod moviie;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use ratewarden::client::{retry_async, Attempt, Backoff, RateLimitInfo, RetryGate};
use ratewarden::Clock;

struct Service {
    base: String,
    http: reqwest::Client,
    clock: Clock,
    mock: Arc<quanta::Mock>,
}

async fn start() -> Service {
    let (clock, mock) = Clock::mock();
    // Start the mock at a realistic Unix time so absolute dates are meaningful.
    mock.increment(Duration::from_secs(1_764_000_000));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(axum_app::serve(
        listener,
        Arc::new(moviie::Limits::new(clock.clone())),
    ));
    Service {
        base,
        http: reqwest::Client::new(),
        clock,
        mock,
    }
}

struct Reply {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    fn info(&self, now: SystemTime) -> RateLimitInfo {
        RateLimitInfo::from_header_map(&self.headers, now)
    }

    /// What the IETF `RateLimit` field says remains in scope `name`.
    fn remaining(&self, name: &str, now: SystemTime) -> Option<u64> {
        self.info(now)
            .quotas
            .into_iter()
            .find(|q| q.name.as_deref() == Some(name))
            .and_then(|q| q.remaining)
    }
}

impl Service {
    async fn send(&self, method: &str, path: &str, key: Option<&str>, xff: Option<&str>) -> Reply {
        let url = format!("{}{path}", self.base);
        let mut request = match method {
            "POST" => self.http.post(url),
            _ => self.http.get(url),
        };
        if let Some(key) = key {
            request = request.header("x-api-key", key);
        }
        if let Some(xff) = xff {
            request = request.header("x-forwarded-for", xff);
        }
        let response = request.send().await.unwrap();
        Reply {
            status: response.status().as_u16(),
            headers: response.headers().clone(),
            body: response.text().await.unwrap(),
        }
    }

    async fn generate(&self, video: u64) -> Reply {
        self.send(
            "POST",
            &format!("/v1/videos/{video}/reels"),
            Some("mv_live_acme"),
            None,
        )
        .await
    }

    fn now(&self) -> SystemTime {
        self.clock.now_system()
    }
}

#[tokio::test]
async fn a_burst_is_cut_at_the_limit_with_headers_and_the_seed_body() {
    let svc = start().await;
    for left in (0..8).rev() {
        let r = svc.generate(1).await;
        assert_eq!(r.status, 202, "{}", r.body);
        assert_eq!(r.header("x-ratelimit-limit"), Some("8"));
        assert_eq!(
            r.header("x-ratelimit-remaining"),
            Some(left.to_string().as_str())
        );
        assert_eq!(r.header("x-ratelimit-reset"), Some("10"));
        assert_eq!(r.header("retry-after"), None);
        assert!(r.body.contains("queued"));
    }
    let r = svc.generate(1).await;
    assert_eq!(r.status, 429);
    assert_eq!(r.header("retry-after"), Some("10"));
    assert_eq!(r.header("x-ratelimit-remaining"), Some("0"));
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.body, r#"{"error":"rate_limited"}"#);
    // The IETF fields list every applicable scope.
    assert_eq!(
        r.header("ratelimit-policy"),
        Some(
            r#""api_key";q=600;w=60, "api_key_write";q=120;w=60, "org_burst";q=8;w=10, "org";q=30;w=60, "video";q=15;w=60"#
        )
    );
    let info = r.info(svc.now());
    assert_eq!(info.retry_after, Some(Duration::from_secs(10)));
    assert_eq!(info.closest().unwrap().name.as_deref(), Some("org_burst"));

    // A different video of the same organization is still held by the organization.
    assert_eq!(svc.generate(2).await.status, 429);
}

#[tokio::test]
async fn denied_requests_spend_nothing_and_a_client_that_waits_retry_after_gets_through() {
    let svc = start().await;
    for _ in 0..8 {
        assert_eq!(svc.generate(1).await.status, 202);
    }
    for _ in 0..3 {
        assert_eq!(svc.generate(1).await.status, 429);
    }
    // A read after three 429s: the key's budget shows only the 8 admitted requests.
    let read = svc
        .send("GET", "/v1/videos/1", Some("mv_live_acme"), None)
        .await;
    assert_eq!(read.status, 200);
    assert_eq!(read.remaining("api_key", svc.now()), Some(600 - 9));

    // The client honours Retry-After (here: by moving the service's clock) and succeeds.
    let denied = svc.generate(1).await;
    let wait = denied.info(svc.now()).wait().unwrap();
    assert_eq!(wait, Duration::from_secs(10));
    svc.mock.increment(wait);
    let ok = svc.generate(1).await;
    assert_eq!(ok.status, 202);
    let now = svc.now();
    // 9 generations and 1 read admitted so far, whatever was refused in between.
    assert_eq!(ok.remaining("api_key", now), Some(600 - 10));
    assert_eq!(ok.remaining("api_key_write", now), Some(120 - 9));
    assert_eq!(ok.remaining("org", now), Some(30 - 9));
    assert_eq!(ok.remaining("video", now), Some(15 - 9));
    assert_eq!(ok.remaining("org_burst", now), Some(7));
}

#[tokio::test]
async fn the_retry_helper_rides_out_a_429_against_the_real_server() {
    let svc = start().await;
    for _ in 0..8 {
        svc.generate(3).await;
    }
    let gate = RetryGate::new(svc.clock.clone());
    let backoff = Backoff::new(Duration::from_millis(50), Duration::from_secs(5));
    let statuses = std::sync::Mutex::new(Vec::new());
    let (svc, log) = (&svc, &statuses);
    let result = retry_async(
        &backoff,
        Some(&gate),
        |d| {
            svc.mock.increment(d);
            std::future::ready(())
        },
        |_| async move {
            let r = svc.generate(3).await;
            log.lock().unwrap().push(r.status);
            match r.status {
                202 => Attempt::Done(r.body),
                429 => Attempt::Retry {
                    retry_after: r.info(svc.now()).retry_after,
                    error: r.status,
                },
                _ => Attempt::Fail(r.status),
            }
        },
    )
    .await;
    assert!(result.unwrap().contains("queued"));
    assert_eq!(*statuses.lock().unwrap(), [429, 202]);
}

#[tokio::test]
async fn source_addresses_come_from_the_connection_not_from_forwarded_headers() {
    let svc = start().await;
    // Unauthenticated reads are limited per source address; forging X-Forwarded-For
    // does not buy a fresh budget.
    for i in 0..5u64 {
        let forged = format!("203.0.113.{i}");
        let r = svc.send("GET", "/v1/videos/1", None, Some(&forged)).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.remaining("source", svc.now()), Some(59 - i));
    }
    // An unknown key is refused, and counted against the same source.
    let r = svc
        .send("POST", "/v1/videos/1/reels", Some("mv_live_forged"), None)
        .await;
    assert_eq!(r.status, 401);
    assert_eq!(r.remaining("source", svc.now()), Some(54));
    // And it spent nothing of the video's budget.
    let r = svc.generate(1).await;
    assert_eq!(r.remaining("video", svc.now()), Some(14));
}

#[tokio::test]
async fn plans_change_the_write_limit_per_key() {
    let svc = start().await;
    let pro = svc.generate(1).await;
    let ent = svc
        .send("POST", "/v1/videos/2/reels", Some("mv_live_bigco"), None)
        .await;
    let limit = |r: &Reply, name: &str| {
        r.info(svc.now())
            .quotas
            .into_iter()
            .find(|q| q.name.as_deref() == Some(name))
            .and_then(|q| q.limit)
    };
    assert_eq!(limit(&pro, "api_key_write"), Some(120));
    assert_eq!(limit(&ent, "api_key_write"), Some(240));
}
