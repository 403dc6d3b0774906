//! # ratewarden
//!
//! Exact, fast rate limiting for Rust services: ask one question per request — *may this
//! go through, and what do I tell the client?* — and get an answer that turns straight
//! into a `429` with the right headers.
//!
//! ```
//! use ratewarden::{Clock, Gcra, KeyedLimiter, Rate};
//! use std::time::Duration;
//!
//! // 600 requests per minute per API key, in bursts of up to 600.
//! let (clock, mock) = Clock::mock(); // tests use a mock; services use `KeyedLimiter::new`
//! let limiter: KeyedLimiter<String> =
//!     KeyedLimiter::with_clock(Gcra::new("600/min".parse()?), clock);
//!
//! for _ in 0..600 {
//!     assert!(limiter.check("key-1", 1)?.is_allowed());
//! }
//! let denied = limiter.check("key-1", 1)?;
//! assert!(denied.is_denied());
//! assert_eq!(denied.remaining(), 0);
//! // One request's worth of quota comes back every 100 ms.
//! assert_eq!(denied.retry_after(), Some(Duration::from_millis(100)));
//! // Other keys are untouched.
//! assert_eq!(limiter.check("key-2", 1)?.remaining(), 599);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! ## A 429 with headers
//!
//! ```
//! use ratewarden::headers::{HeaderFormat, Reset};
//! use ratewarden::{Clock, KeyedLimiter, SlidingLog};
//!
//! let (clock, _mock) = Clock::mock();
//! let limiter: KeyedLimiter<String, SlidingLog> =
//!     KeyedLimiter::with_clock(SlidingLog::new("2/min".parse()?), clock.clone());
//! limiter.check("k", 2)?;
//! let decision = limiter.check("k", 1)?;
//!
//! let mut headers: Vec<(String, String)> = Vec::new(); // or an http::HeaderMap
//! HeaderFormat::x_ratelimit()
//!     .reset(Reset::Seconds)
//!     .write_decision("per-key", &decision, clock.now_system(), &mut headers)?;
//! let status = if decision.is_denied() { 429 } else { 200 };
//! assert_eq!(status, 429);
//! assert_eq!(headers.last().unwrap(), &("Retry-After".to_owned(), "60".to_owned()));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! ## Pieces
//!
//! - [`Rate`]: a validated quota, `Rate::per_minute(600)` or `"600/min".parse()`.
//! - Algorithms ([`algorithm`]): [`FixedWindow`], [`SlidingLog`], [`SlidingWindow`] and
//!   [`Gcra`] — pure state machines, one file each — and [`CalendarQuota`] (per UTC day or
//!   calendar month; [`CalendarLimiter`] gives each key its own billing date).
//! - Limiters: [`KeyedLimiter`] (one quota per key, idle keys evicted automatically, a hard
//!   key cap) and [`UnkeyedLimiter`]; both implement [`Limiter`].
//! - [`Decision`]: allowed or denied, `limit`, `remaining`, `reset_after`, `retry_after`.
//! - [`Policy`]: named [`Scope`]s (per API key, organization, video, address; burst beside
//!   sustained; per-plan limits; shadow mode) checked as one: any denial wins, a denial
//!   spends nothing, the longest retry-after is reported.
//! - [`ClientAddr`] and [`TrustedProxies`]: source-address keys that a client cannot dodge
//!   by rotating through its IPv6 prefix or forging `X-Forwarded-For`.
//! - [`ConcurrencyLimiter`]: at most N in progress per key, with RAII [`Permit`]s and a
//!   FIFO queue of [`Ticket`]s.
//! - [`headers`]: every rate-limit header convention (classic `X-RateLimit-*`, per-window,
//!   IETF `RateLimit`/`RateLimit-Policy` drafts 6, 7 and 10, `Retry-After`) and the 429
//!   bodies real APIs send.
//! - [`CalendarQuota`]: quotas per UTC day or calendar month; [`Scope::calendar`] gives
//!   each key its own billing date.
//! - `config` (feature `serde`): a whole [`Policy`] from TOML, JSON or YAML, every
//!   problem reported with its path.
//! - `snapshot` (feature `serde`): the state of a limiter or policy, saved and restored
//!   across restarts; `set_rate` on limiters and [`Policy::set_rate`] change limits live,
//!   keeping what each key used.
//! - [`Pacer`]: wait for quota instead of being refused — callers queued per key in
//!   arrival order, with deadlines, blocking or async under any executor.
//! - [`client`]: the other side of the wire — read rate-limit headers of every style
//!   into one value, back off with jitter, and honour `Retry-After` across a pool of
//!   workers.
//! - [`Clock`]: real or mock time; one reading per check.
//!
//! ## Semantics
//!
//! A check consumes its cost on allow and nothing on deny; no interleaving of threads
//! admits more than the quota. A cost above the capacity is a [`CheckError`], not a
//! denial. Invalid quotas are rejected at construction with a [`RateError`]. Time that
//! appears to go backwards counts as no time passing.

#![deny(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod algorithm;
mod calendar_limiter;
pub mod client;
mod client_addr;
mod clock;
mod concurrency;
#[cfg(feature = "serde")]
pub mod config;
mod decision;
mod error;
pub mod headers;
mod limiter;
mod params;
mod policy;
mod rate;
#[cfg(feature = "redis")]
pub mod redis;
#[allow(unsafe_code)]
mod shard_lock;
#[cfg(feature = "serde")]
pub mod snapshot;
mod store;
mod wait;

pub use algorithm::{
    Anchor, AnchorError, CalendarQuota, CycleAnchor, FixedWindow, Gcra, Period, SlidingLog,
    SlidingWindow,
};
pub use calendar_limiter::CalendarLimiter;
pub use client_addr::{ClientAddr, IpNet, NetParseError, TrustedProxies, DEFAULT_V6_PREFIX};
pub use clock::{to_system_time, Clock, Nanos, COARSE_INTERVAL};
pub use concurrency::{ConcurrencyError, ConcurrencyLimiter, Permit, Ticket};
pub use decision::Decision;
pub use error::{CheckError, LimitChangeError, RateError};
pub use limiter::{KeyedBuilder, KeyedLimiter, Limiter, UnkeyedLimiter, DEFAULT_MAX_KEYS};
pub use policy::{
    Admitted, Policy, PolicyBuilder, PolicyDecision, PolicyError, PolicyStats, Scope, ScopeReport,
    ScopeStats,
};
pub use rate::{Rate, MAX_WINDOW};
pub use store::{OnFull, IDLE_GRACE};
pub use wait::{ManualTimer, Pacer, Sleep, ThreadTimer, Timer, WaitError, DEFAULT_MAX_WAITERS};

/// The README's examples, compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
