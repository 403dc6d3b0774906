//! [`Scope`]: one named limit inside a [`Policy`](crate::Policy): a limiter, a key
//! extractor, an optional per-request limit and an enforcing or shadow mode.

use std::borrow::Borrow;
use std::hash::Hash;
use std::marker::PhantomData;
use std::sync::Arc;

use super::run::{ByRef, ByValue, Keyed, Owned, Run};
use crate::algorithm::Algorithm;
use crate::{KeyedLimiter, Limiter, Rate, UnkeyedLimiter};

/// Per-request limit: the count for this request (the window stays the scope's).
pub(crate) type LimitFn<Req> = Box<dyn Fn(&Req) -> Option<u64> + Send + Sync>;

/// One named limit of a [`Policy`](crate::Policy).
///
/// A scope maps a request to a key (or to `None`: the scope does not apply) and owns the
/// limiter for those keys. Its limit can depend on the request ([`limit_by`](Self::limit_by):
/// plan tiers, one customer's negotiated limit) without a limiter per plan, and it can run
/// in [`shadow`](Self::shadow) mode: evaluated and reported, never denying.
///
/// ```
/// use ratewarden::{Gcra, Rate, Scope};
///
/// struct Req { org: u64, video: Option<u64>, enterprise: bool }
///
/// let per_org = Scope::keyed("org", Gcra::new(Rate::per_minute(120)?), |r: &Req| Some(r.org))
///     .limit_by(|r: &Req| r.enterprise.then_some(240));
/// let per_video = Scope::keyed("video", Gcra::new(Rate::per_minute(15)?), |r: &Req| r.video);
/// # let _ = (per_org, per_video);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Scope<Req> {
    pub(crate) name: Arc<str>,
    pub(crate) run: Box<dyn Run<Req>>,
    pub(crate) limit: Option<LimitFn<Req>>,
    pub(crate) shadow: bool,
    /// Whether the walk calls [`Run::prefetch`] before taking any lock.
    pub(crate) prefetch: bool,
}

impl<Req: 'static> Scope<Req> {
    /// A scope keyed by whatever `key` returns; keys should be cheap to clone (integers,
    /// small tuples, `Arc<str>`) — the key is passed to the limiter by reference.
    ///
    /// `key` may run twice per check: see [`prefetch`](Self::prefetch).
    ///
    /// With the `serde` feature, `Policy::snapshot` writes integer, text and IP-address
    /// keys, `Vec<String>` and pairs of integers or text as they are; for other tuples
    /// and your own key types, build the limiter with `KeyedBuilder::snapshot_keys` and
    /// use [`with_limiter`](Self::with_limiter).
    pub fn keyed<K, A, F>(name: &str, alg: A, key: F) -> Self
    where
        K: Hash + Eq + Clone + Send + Sync + 'static,
        A: Algorithm,
        F: Fn(&Req) -> Option<K> + Send + Sync + 'static,
    {
        Self::from_run(
            name,
            Keyed {
                limiter: KeyedLimiter::<K, A>::new(alg),
                key: ByValue(key),
                types: PhantomData::<fn() -> Box<K>>,
            },
        )
    }

    /// A scope keyed by a value borrowed from the request (e.g. `&str` for a `String`
    /// key), so that checking an existing key allocates nothing. Like [`keyed`](Self::keyed)'s,
    /// the extractor may run twice per check (see [`prefetch`](Self::prefetch)).
    pub fn keyed_by_ref<K, Q, A, F>(name: &str, alg: A, key: F) -> Self
    where
        K: Hash + Eq + Borrow<Q> + Send + Sync + 'static,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized + 'static,
        A: Algorithm,
        F: for<'r> Fn(&'r Req) -> Option<&'r Q> + Send + Sync + 'static,
    {
        Self::from_run(
            name,
            Keyed {
                limiter: KeyedLimiter::<K, A>::new(alg),
                key: ByRef(key),
                types: PhantomData,
            },
        )
    }

    /// A scope with one quota for every request it applies to.
    pub fn unkeyed<A: Algorithm>(name: &str, alg: A) -> Self {
        Self::with_limiter(name, UnkeyedLimiter::new(alg), |_: &Req| Some(()))
    }

    /// A scope over any [`Limiter`] (a configured [`KeyedLimiter`], your own
    /// implementation…). The policy's clock is used, not the limiter's.
    pub fn with_limiter<K, L, F>(name: &str, limiter: L, key: F) -> Self
    where
        K: Send + Sync + 'static,
        L: Limiter<K> + 'static,
        F: Fn(&Req) -> Option<K> + Send + Sync + 'static,
    {
        Self::from_run(
            name,
            Owned {
                limiter,
                key,
                types: PhantomData,
            },
        )
    }

    fn from_run(name: &str, run: impl Run<Req> + 'static) -> Self {
        Scope {
            name: Arc::from(name),
            prefetch: run.prefetches(),
            run: Box::new(run),
            limit: None,
            shadow: false,
        }
    }

    /// The count for this request, when it differs from the scope's rate (plan tiers,
    /// per-key overrides); `None` keeps the scope's own. The window never changes, so
    /// state carries over when a key's plan changes mid-window. A count the window cannot
    /// hold (0, or more than one per nanosecond) fails the check with
    /// [`CheckError::InvalidLimit`](crate::CheckError::InvalidLimit).
    pub fn limit_by(mut self, limit: impl Fn(&Req) -> Option<u64> + Send + Sync + 'static) -> Self {
        self.limit = Some(Box::new(limit));
        self
    }

    /// Evaluate and report this scope, but never deny because of it.
    pub fn shadow(mut self) -> Self {
        self.shadow = true;
        self
    }

    /// Whether the policy may start loading this scope's entry before it takes its first
    /// lock (on by default for [`keyed`](Self::keyed) and
    /// [`keyed_by_ref`](Self::keyed_by_ref) scopes; other scopes have no table to load).
    ///
    /// A policy takes its scopes' locks one inside the other, and with tables larger than
    /// a core's cache each scope's lookup would otherwise wait for the previous one's
    /// cache miss. So once a scope tracks more than 256 KiB of entries (16 384 GCRA
    /// states under `u64` keys, fewer under larger keys), a check first asks every such
    /// scope among the policy's first eight for its key, hashes it and prefetches where
    /// its table keeps it, then walks the scopes as always, looking each key up with the
    /// hash it has (a hash that finds nothing is checked against the key before the key
    /// counts as new). The extractor then runs twice per check; in that first
    /// pass it runs before the earlier scopes' extractors and [`limit_by`](Self::limit_by)
    /// closures, also when an earlier scope then fails the check, and a panic in it
    /// leaves the check before any scope is held. Turn prefetching off for an extractor
    /// that allocates or does real work; it changes no decision either way. (Only on
    /// x86-64: elsewhere nothing is prefetched and extractors run once.)
    pub fn prefetch(mut self, on: bool) -> Self {
        self.prefetch = on && self.run.prefetches();
        self
    }

    /// The scope's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The scope's own rate.
    pub fn rate(&self) -> Rate {
        self.run.rate()
    }
}
