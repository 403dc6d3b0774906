//! [`ConcurrencyLimiter`]: at most N requests in progress per key, with permits released
//! on drop and a first-in, first-out queue for the excess.
//!
//! A rate limit bounds how often work starts; a concurrency limit bounds how much is in
//! progress at once (ReelsBuilder's "concurrent jobs" per plan, Stripe's second
//! production limiter). [`try_acquire`](ConcurrencyLimiter::try_acquire) returns a
//! [`Permit`] or refuses; [`enqueue`](ConcurrencyLimiter::enqueue) returns a [`Ticket`]
//! with its 1-based queue position, which becomes a permit when earlier holders finish.
//!
//! - A permit is released when dropped — on return, early exit or panic — and its slot
//!   goes straight to the head of the queue, so waiters are served strictly in order.
//! - A new request never overtakes a queued one: with a queue, `try_acquire` refuses.
//! - A ticket dropped while waiting leaves the queue; the tickets behind it move up. A
//!   ticket dropped after its slot was granted passes the slot on.
//! - A key with nothing in flight and nothing queued is removed at once: memory follows
//!   the active keys exactly.

mod ticket;

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::sync::Arc;
use std::task::Waker;

use parking_lot::{Condvar, Mutex};

pub use ticket::Ticket;

/// Why a permit or a queue place was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum ConcurrencyError {
    /// The key has `limit` requests in progress (or others waiting ahead).
    #[error("{in_flight} of {limit} allowed requests are in progress")]
    Busy {
        /// Requests in progress for the key.
        in_flight: u32,
        /// The limit that applied.
        limit: u32,
    },
    /// The key's queue holds its maximum number of waiters.
    #[error("the queue already holds its maximum of {max_queue} waiting requests")]
    QueueFull {
        /// The configured maximum.
        max_queue: usize,
    },
    /// A limit of 0 admits nothing; deny explicitly instead.
    #[error("a concurrency limit must be at least 1")]
    ZeroLimit,
}

type Map<K> = HashMap<K, Slot, ahash::RandomState>;

struct Inner<K> {
    shards: Box<[Mutex<Map<K>>]>,
    hasher: ahash::RandomState,
    limit: u32,
    max_queue: usize,
}

#[derive(Default)]
struct Slot {
    in_flight: u32,
    queue: VecDeque<Arc<Waiter>>,
}

struct Waiter {
    state: Mutex<Wait>,
    ready: Condvar,
    /// The limit the waiting request was queued under.
    limit: u32,
}

#[derive(Default)]
enum Wait {
    #[default]
    Queued,
    Parked(Waker),
    Granted,
    Taken,
}

/// Per-key caps on requests in progress. Cheap to clone (shared state).
///
/// ```
/// use ratewarden::{ConcurrencyLimiter, ConcurrencyError};
///
/// let jobs: ConcurrencyLimiter<&str> = ConcurrencyLimiter::new(2)?;
/// let a = jobs.try_acquire(&"acct")?;
/// let _b = jobs.try_acquire(&"acct")?;
/// assert!(matches!(jobs.try_acquire(&"acct"), Err(ConcurrencyError::Busy { in_flight: 2, limit: 2 })));
/// let ticket = jobs.enqueue(&"acct")?;
/// assert_eq!(ticket.position(), Some(1));
/// drop(a); // a job finishes: the queued one starts
/// let _c = ticket.try_permit().ok().expect("granted");
/// # Ok::<(), ConcurrencyError>(())
/// ```
pub struct ConcurrencyLimiter<K> {
    inner: Arc<Inner<K>>,
}

impl<K> Clone for ConcurrencyLimiter<K> {
    fn clone(&self) -> Self {
        ConcurrencyLimiter {
            inner: self.inner.clone(),
        }
    }
}

impl<K: Hash + Eq + Clone + Send + Sync + 'static> ConcurrencyLimiter<K> {
    /// At most `limit` in progress per key; queues hold at most 1 000 waiters per key.
    pub fn new(limit: u32) -> Result<Self, ConcurrencyError> {
        if limit == 0 {
            return Err(ConcurrencyError::ZeroLimit);
        }
        Ok(ConcurrencyLimiter {
            inner: Arc::new(Inner {
                shards: (0..64).map(|_| Mutex::new(Map::default())).collect(),
                hasher: ahash::RandomState::new(),
                limit,
                max_queue: 1_000,
            }),
        })
    }

    /// The same limiter with at most `max_queue` waiters per key (0: no queueing).
    pub fn with_max_queue(self, max_queue: usize) -> Self {
        let inner = &self.inner;
        ConcurrencyLimiter {
            inner: Arc::new(Inner {
                shards: (0..inner.shards.len())
                    .map(|_| Mutex::new(Map::default()))
                    .collect(),
                hasher: inner.hasher.clone(),
                limit: inner.limit,
                max_queue,
            }),
        }
    }

    /// The default limit per key.
    pub fn limit(&self) -> u32 {
        self.inner.limit
    }

    fn shard(&self, key: &K) -> &Mutex<Map<K>> {
        self.inner.shard(key)
    }

    /// A permit for `key` if fewer than the limit are in progress and nobody is queued.
    pub fn try_acquire(&self, key: &K) -> Result<Permit<K>, ConcurrencyError> {
        self.try_acquire_with_limit(key, self.inner.limit)
    }

    /// [`try_acquire`](Self::try_acquire) with a limit for this request (plan tiers).
    pub fn try_acquire_with_limit(
        &self,
        key: &K,
        limit: u32,
    ) -> Result<Permit<K>, ConcurrencyError> {
        if limit == 0 {
            return Err(ConcurrencyError::ZeroLimit);
        }
        let mut map = self.shard(key).lock();
        let slot = map.get(key);
        let in_flight = slot.map_or(0, |s| s.in_flight);
        if in_flight >= limit || slot.is_some_and(|s| !s.queue.is_empty()) {
            return Err(ConcurrencyError::Busy { in_flight, limit });
        }
        map.entry(key.clone()).or_default().in_flight += 1;
        Ok(Permit {
            inner: self.inner.clone(),
            key: key.clone(),
        })
    }

    /// A place in `key`'s queue: granted at once if a slot is free, otherwise waiting
    /// behind everyone already queued.
    pub fn enqueue(&self, key: &K) -> Result<Ticket<K>, ConcurrencyError> {
        self.enqueue_with_limit(key, self.inner.limit)
    }

    /// [`enqueue`](Self::enqueue) with a limit for this request (plan tiers).
    pub fn enqueue_with_limit(&self, key: &K, limit: u32) -> Result<Ticket<K>, ConcurrencyError> {
        if limit == 0 {
            return Err(ConcurrencyError::ZeroLimit);
        }
        let waiter = Arc::new(Waiter {
            state: Mutex::new(Wait::Queued),
            ready: Condvar::new(),
            limit,
        });
        let mut map = self.shard(key).lock();
        let slot = map.entry(key.clone()).or_default();
        if slot.in_flight < limit && slot.queue.is_empty() {
            slot.in_flight += 1;
            *waiter.state.lock() = Wait::Granted;
        } else if slot.queue.len() >= self.inner.max_queue {
            if slot.in_flight == 0 && slot.queue.is_empty() {
                map.remove(key);
            }
            return Err(ConcurrencyError::QueueFull {
                max_queue: self.inner.max_queue,
            });
        } else {
            slot.queue.push_back(waiter.clone());
        }
        Ok(Ticket {
            inner: self.inner.clone(),
            key: key.clone(),
            waiter,
            done: false,
        })
    }

    /// Requests in progress for `key`.
    pub fn in_flight(&self, key: &K) -> u32 {
        self.shard(key).lock().get(key).map_or(0, |s| s.in_flight)
    }

    /// Requests waiting for `key`.
    pub fn queued(&self, key: &K) -> usize {
        self.shard(key).lock().get(key).map_or(0, |s| s.queue.len())
    }

    /// Keys with requests in progress or waiting.
    pub fn len(&self) -> usize {
        self.inner.shards.iter().map(|s| s.lock().len()).sum()
    }

    /// Whether no key has requests in progress or waiting.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<K: Hash + Eq> Inner<K> {
    fn shard(&self, key: &K) -> &Mutex<Map<K>> {
        let hash = self.hasher.hash_one(key) as usize;
        &self.shards[(hash >> 7) % self.shards.len()]
    }

    /// Gives one slot of `key` back: to the head of the queue (if its limit has room),
    /// or to nobody.
    fn release(&self, key: &K) {
        let mut map = self.shard(key).lock();
        let Some(slot) = map.get_mut(key) else {
            return;
        };
        slot.in_flight = slot.in_flight.saturating_sub(1);
        while let Some(next) = slot.queue.front() {
            if slot.in_flight >= next.limit {
                break;
            }
            slot.in_flight += 1;
            next.grant();
            slot.queue.pop_front();
        }
        if slot.in_flight == 0 && slot.queue.is_empty() {
            map.remove(key);
        }
    }

    fn leave_queue(&self, key: &K, waiter: &Arc<Waiter>) {
        let mut map = self.shard(key).lock();
        if let Some(slot) = map.get_mut(key) {
            slot.queue.retain(|w| !Arc::ptr_eq(w, waiter));
            if slot.in_flight == 0 && slot.queue.is_empty() {
                map.remove(key);
            }
        }
    }

    fn position(&self, key: &K, waiter: &Arc<Waiter>) -> Option<usize> {
        let map = self.shard(key).lock();
        let slot = map.get(key)?;
        slot.queue
            .iter()
            .position(|w| Arc::ptr_eq(w, waiter))
            .map(|i| i + 1)
    }
}

impl Waiter {
    fn grant(&self) {
        let mut state = self.state.lock();
        if let Wait::Parked(waker) = std::mem::replace(&mut *state, Wait::Granted) {
            waker.wake();
        }
        self.ready.notify_all();
    }
}

/// A slot in progress for one key; released when dropped.
#[must_use = "the slot is released as soon as the permit is dropped"]
pub struct Permit<K: Hash + Eq> {
    inner: Arc<Inner<K>>,
    key: K,
}

impl<K: Hash + Eq> Permit<K> {
    /// The key this permit counts against.
    pub fn key(&self) -> &K {
        &self.key
    }
}

impl<K: Hash + Eq> Drop for Permit<K> {
    fn drop(&mut self) {
        self.inner.release(&self.key);
    }
}

impl<K: Hash + Eq> std::fmt::Debug for Permit<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Permit").finish_non_exhaustive()
    }
}
