//! [`RedisScope`] and [`RedisAlgorithm`]: one named limit of a
//! [`RedisPolicy`](super::RedisPolicy), and the algorithm parameters the server-side script
//! runs with.

use std::fmt;
use std::sync::Arc;

use crate::algorithm::Algorithm;
use crate::{Anchor, FixedWindow, Gcra, Rate, SlidingLog, SlidingWindow};

/// Largest value the script's arithmetic keeps exact (Lua numbers are doubles: 2^53), with
/// a factor of two to spare for sums such as `count + cost`.
const EXACT: u128 = 1 << 52;

/// One of the four algorithms, with its rate, as the Redis backend runs it.
///
/// Built with `From` from the in-process parameter types, so a scope reads the same on
/// both backends:
///
/// ```
/// use ratewarden::redis::RedisAlgorithm;
/// use ratewarden::{Gcra, Rate};
///
/// let alg: RedisAlgorithm = Gcra::new(Rate::per_second(10)?).with_burst(20)?.into();
/// assert_eq!(alg.rate(), Rate::per_second(10)?);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RedisAlgorithm {
    /// [`FixedWindow`], either anchor.
    FixedWindow(FixedWindow),
    /// [`SlidingWindow`] (the weighted counter).
    SlidingWindow(SlidingWindow),
    /// [`SlidingLog`].
    SlidingLog(SlidingLog),
    /// [`Gcra`], with its burst.
    Gcra(Gcra),
}

impl From<FixedWindow> for RedisAlgorithm {
    fn from(alg: FixedWindow) -> Self {
        RedisAlgorithm::FixedWindow(alg)
    }
}

impl From<SlidingWindow> for RedisAlgorithm {
    fn from(alg: SlidingWindow) -> Self {
        RedisAlgorithm::SlidingWindow(alg)
    }
}

impl From<SlidingLog> for RedisAlgorithm {
    fn from(alg: SlidingLog) -> Self {
        RedisAlgorithm::SlidingLog(alg)
    }
}

impl From<Gcra> for RedisAlgorithm {
    fn from(alg: Gcra) -> Self {
        RedisAlgorithm::Gcra(alg)
    }
}

/// The numbers the script runs one scope with (see `check.lua`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Params {
    pub(crate) code: u8,
    pub(crate) limit: u64,
    pub(crate) window_micros: u64,
    pub(crate) p1: u64,
    pub(crate) p2: u64,
}

impl RedisAlgorithm {
    /// The algorithm's part of a key name: `fw`, `sw`, `sl` or `gcra`. Each algorithm
    /// keeps its state in its own Redis type, so a deploy that changes a scope's algorithm
    /// starts on fresh keys (the old ones expire) instead of hitting the wrong type.
    pub fn key_tag(&self) -> &'static str {
        match self {
            RedisAlgorithm::FixedWindow(_) => "fw",
            RedisAlgorithm::SlidingWindow(_) => "sw",
            RedisAlgorithm::SlidingLog(_) => "sl",
            RedisAlgorithm::Gcra(_) => "gcra",
        }
    }

    /// The rate enforced.
    pub fn rate(&self) -> Rate {
        match self {
            RedisAlgorithm::FixedWindow(a) => a.rate(),
            RedisAlgorithm::SlidingWindow(a) => a.rate(),
            RedisAlgorithm::SlidingLog(a) => a.rate(),
            RedisAlgorithm::Gcra(a) => a.rate(),
        }
    }

    /// The largest cost one request may have (the limit; GCRA: the burst).
    pub fn capacity(&self) -> u64 {
        match self {
            RedisAlgorithm::FixedWindow(a) => a.capacity(),
            RedisAlgorithm::SlidingWindow(a) => a.capacity(),
            RedisAlgorithm::SlidingLog(a) => a.capacity(),
            RedisAlgorithm::Gcra(a) => a.capacity(),
        }
    }

    /// The same algorithm with another rate, as [`Algorithm::with_rate`].
    pub(crate) fn with_rate(&self, rate: Rate) -> RedisAlgorithm {
        match self {
            RedisAlgorithm::FixedWindow(a) => a.with_rate(rate).into(),
            RedisAlgorithm::SlidingWindow(a) => a.with_rate(rate).into(),
            RedisAlgorithm::SlidingLog(a) => a.with_rate(rate).into(),
            RedisAlgorithm::Gcra(a) => a.with_rate(rate).into(),
        }
    }

    /// The script's parameters, or why this rate cannot run exactly on the server.
    ///
    /// The server's clock counts microseconds, so windows must be whole microseconds, and
    /// GCRA's emission interval is `ceil(W / n)` in microseconds (never admitting more than
    /// `n` per window). The script's numbers must stay below 2^52.
    pub(crate) fn params(&self) -> Result<Params, &'static str> {
        let rate = self.rate();
        let w = rate.window_nanos();
        if w % 1_000 != 0 {
            return Err("the Redis backend counts whole microseconds (the resolution of the server's clock); use a window that is a whole number of microseconds");
        }
        let w = w / 1_000;
        let n = rate.count();
        if u128::from(n) > EXACT {
            return Err("the count is above 2^52, beyond exact server-side arithmetic");
        }
        let params = match self {
            RedisAlgorithm::FixedWindow(a) => Params {
                code: 1,
                limit: n,
                window_micros: w,
                p1: u64::from(a.anchor() == Anchor::FirstRequest),
                p2: 0,
            },
            RedisAlgorithm::SlidingWindow(_) => {
                if u128::from(n) * u128::from(w) > EXACT {
                    return Err("a sliding window multiplies the count by the window in microseconds, which must stay below 2^52; use a shorter window, a smaller count, or another algorithm");
                }
                Params {
                    code: 2,
                    limit: n,
                    window_micros: w,
                    p1: 0,
                    p2: 0,
                }
            }
            RedisAlgorithm::SlidingLog(_) => Params {
                code: 3,
                limit: n,
                window_micros: w,
                p1: 0,
                p2: 0,
            },
            RedisAlgorithm::Gcra(a) => {
                let t = w.div_ceil(n);
                let burst = a.burst();
                let tau = u128::from(burst) * u128::from(t);
                if tau > EXACT {
                    return Err("the burst times the emission interval in microseconds is above 2^52; use a smaller burst");
                }
                Params {
                    code: 4,
                    limit: burst,
                    window_micros: w,
                    p1: t,
                    p2: tau as u64,
                }
            }
        };
        Ok(params)
    }
}

pub(crate) type KeyFn<Req> = Box<dyn Fn(&Req) -> Option<String> + Send + Sync>;
pub(crate) type LimitFn<Req> = Box<dyn Fn(&Req) -> Option<u64> + Send + Sync>;

/// One named limit of a [`RedisPolicy`](super::RedisPolicy): an algorithm, a key taken
/// from the request (`None`: the scope does not apply), an optional per-request limit and
/// an enforcing or shadow mode — the same shape as the in-process
/// [`Scope`](crate::Scope).
///
/// A scope's keys live inside the policy's hash tag (see
/// [`RedisPolicyBuilder::hash_tag`](super::RedisPolicyBuilder::hash_tag)) unless the
/// scope is [`global`](RedisScope::global).
///
/// ```
/// use ratewarden::redis::RedisScope;
/// use ratewarden::{FixedWindow, Rate};
///
/// struct Req { api_key: String, plan_limit: u64 }
///
/// let scope = RedisScope::keyed("per-key", FixedWindow::new(Rate::per_minute(60)?), |r: &Req| {
///     Some(r.api_key.clone())
/// })
/// .limit_by(|r| Some(r.plan_limit));
/// assert_eq!(scope.name(), "per-key");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct RedisScope<Req> {
    pub(crate) name: Arc<str>,
    pub(crate) alg: RedisAlgorithm,
    pub(crate) key: KeyFn<Req>,
    pub(crate) keyed: bool,
    pub(crate) limit: Option<LimitFn<Req>>,
    pub(crate) shadow: bool,
    pub(crate) global: bool,
}

impl<Req: 'static> RedisScope<Req> {
    /// A scope keyed by what `key` extracts from a request (formatted with `Display`).
    pub fn keyed<K, F>(name: &str, alg: impl Into<RedisAlgorithm>, key: F) -> Self
    where
        K: fmt::Display,
        F: Fn(&Req) -> Option<K> + Send + Sync + 'static,
    {
        RedisScope {
            name: Arc::from(name),
            alg: alg.into(),
            key: Box::new(move |req| key(req).map(|k| k.to_string())),
            keyed: true,
            limit: None,
            shadow: false,
            global: false,
        }
    }

    /// A scope with one counter (per hash tag, unless [`global`](RedisScope::global)).
    pub fn unkeyed(name: &str, alg: impl Into<RedisAlgorithm>) -> Self {
        RedisScope {
            name: Arc::from(name),
            alg: alg.into(),
            key: Box::new(|_| Some(String::new())),
            keyed: false,
            limit: None,
            shadow: false,
            global: false,
        }
    }

    /// A per-request limit (plan tiers, per-key overrides), as
    /// [`Scope::limit_by`](crate::Scope::limit_by): the count per the scope's window, or
    /// `None` for the scope's own. GCRA's burst becomes that count.
    pub fn limit_by(mut self, limit: impl Fn(&Req) -> Option<u64> + Send + Sync + 'static) -> Self {
        self.limit = Some(Box::new(limit));
        self
    }

    /// Reports what the scope would deny without ever denying.
    pub fn shadow(mut self) -> Self {
        self.shadow = true;
        self
    }

    /// The scope's counters are shared by every hash tag (a global limit, or a limit per
    /// source address across organizations), so its keys carry no per-request tag. A
    /// policy for Redis Cluster with a per-request hash tag rejects such a scope, since its
    /// keys cannot share a slot with every tag's keys.
    pub fn global(mut self) -> Self {
        self.global = true;
        self
    }

    /// The scope's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The scope's algorithm.
    pub fn algorithm(&self) -> RedisAlgorithm {
        self.alg
    }
}

impl<Req> fmt::Debug for RedisScope<Req> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisScope")
            .field("name", &self.name)
            .field("alg", &self.alg)
            .field("shadow", &self.shadow)
            .field("global", &self.global)
            .finish_non_exhaustive()
    }
}
