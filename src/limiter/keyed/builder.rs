//! [`KeyedBuilder`]: a keyed limiter's clock, key cap and sharding.

use std::hash::Hash;
use std::marker::PhantomData;

use parking_lot::RwLock;

use super::KeyedLimiter;
use crate::algorithm::Algorithm;
#[cfg(feature = "serde")]
use crate::snapshot::{KeyCodec, SnapshotKey};
use crate::store::{OnFull, Store};
use crate::Clock;

/// Builds a [`KeyedLimiter`] with non-default clock, key cap or sharding.
///
/// ```
/// use ratewarden::{KeyedLimiter, FixedWindow, OnFull, Rate, Clock};
///
/// let (clock, _mock) = Clock::mock();
/// let limiter: KeyedLimiter<u64, FixedWindow> =
///     KeyedLimiter::builder(FixedWindow::new(Rate::per_hour(100)?))
///         .clock(clock)
///         .max_keys(2)
///         .on_full(OnFull::Reject)
///         .build();
/// limiter.check(&1u64, 1)?;
/// limiter.check(&2u64, 1)?;
/// assert!(limiter.check(&3u64, 1).is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct KeyedBuilder<K, A> {
    key: PhantomData<fn() -> K>,
    alg: A,
    clock: Option<Clock>,
    max_keys: usize,
    on_full: OnFull,
    shards: usize,
    #[cfg(feature = "serde")]
    codec: Option<KeyCodec<K>>,
}

/// Eight shards per core the process may use, as a power of two, at most 64 (asked
/// once: finding the cores may read the process's CPU quota from the file system).
fn default_shards() -> usize {
    static SHARDS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *SHARDS.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        (cores.min(8) * 8).next_power_of_two()
    })
}

/// The default cap on tracked keys per keyed limiter.
pub const DEFAULT_MAX_KEYS: usize = 10_000_000;

impl<K: Hash + Eq + Send + Sync + 'static, A: Algorithm> KeyedBuilder<K, A> {
    /// The default settings, for [`KeyedLimiter::builder`].
    pub(super) fn new(alg: A) -> Self {
        KeyedBuilder {
            key: PhantomData,
            alg,
            clock: None,
            max_keys: DEFAULT_MAX_KEYS,
            on_full: OnFull::default(),
            shards: default_shards(),
            #[cfg(feature = "serde")]
            codec: None,
        }
    }

    /// The clock to read (default: the real clock).
    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = Some(clock);
        self
    }

    /// The most keys tracked at once (default [`DEFAULT_MAX_KEYS`]).
    pub fn max_keys(mut self, max_keys: usize) -> Self {
        self.max_keys = max_keys;
        self
    }

    /// What to do with a new key at the cap (default [`OnFull::Reject`]).
    pub fn on_full(mut self, on_full: OnFull) -> Self {
        self.on_full = on_full;
        self
    }

    /// Number of shards, rounded up to a power of two (default: eight per core the
    /// process may use, as a power of two, at most 64 — 16 on two cores, 64 from eight
    /// on). Threads on different keys rarely meet in a shard, and few shards keep their
    /// locks and headers in a core's cache (a policy touches one per scope); a sweep
    /// covers one shard, so fewer shards make each sweep longer (a million keys on 16
    /// shards: a pass over some 62 000 entries, paid by the check that finds it due).
    pub fn shards(mut self, shards: usize) -> Self {
        self.shards = shards;
        self
    }

    /// Writes keys in [snapshots](crate::snapshot) through their [`SnapshotKey`]
    /// implementation: needed for most tuples and your own key types; integer, text and
    /// IP-address keys, `Vec<String>` and pairs of integers or text are recognised
    /// without it.
    ///
    /// ```
    /// use ratewarden::{KeyedLimiter, Gcra};
    ///
    /// let limiter: KeyedLimiter<(u64, u8)> =
    ///     KeyedLimiter::builder(Gcra::new("10/min".parse()?)).snapshot_keys().build();
    /// limiter.check(&(1, 2), 1)?;
    /// assert_eq!(limiter.snapshot()?.keys.len(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[cfg(feature = "serde")]
    pub fn snapshot_keys(mut self) -> Self
    where
        K: SnapshotKey,
    {
        self.codec = Some(KeyCodec::exact());
        self
    }

    /// The limiter.
    pub fn build(self) -> KeyedLimiter<K, A> {
        KeyedLimiter {
            store: Store::new(&self.alg, self.shards, self.max_keys, self.on_full),
            alg: RwLock::new(self.alg),
            clock: self.clock.unwrap_or_default(),
            #[cfg(feature = "serde")]
            codec: self.codec.or_else(KeyCodec::guess),
        }
    }
}
