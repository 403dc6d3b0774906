//! Waiting for quota instead of being refused: [`Pacer`].
//!
//! A client pacing its own calls (a queue of generations against a 10-per-hour plan)
//! would rather wait than be told 429. A `Pacer` wraps any [`Limiter`] and queues callers
//! per key, first come first served: only the head of a key's queue checks the limiter;
//! when it is denied it sleeps exactly its `retry_after` and checks again, and the next
//! caller's turn comes when it is through.
//!
//! - **Deadlines.** A wait gives up at its deadline. A head that would only be admitted
//!   after its deadline gives up at once, saying when it would have passed.
//! - **Cancellation.** Quota is taken only by the check that admits a caller; a wait that
//!   times out or whose future is dropped leaves the queue having taken nothing, and the
//!   caller behind it moves up.
//! - **Any executor.** [`Pacer::ready`] is a plain future; its sleeps come from a
//!   [`Timer`] — by default [`ThreadTimer`], one shared background thread — so it runs
//!   under tokio, async-std, a hand-rolled executor, or [`Pacer::until_ready`], which
//!   blocks the calling thread.
//!
//! Callers that use the limiter directly, not through the pacer, are not queued: they
//! are admitted or refused at once as usual.

mod timer;

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::hash::Hash;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use parking_lot::Mutex;

pub use timer::{ManualTimer, Sleep, ThreadTimer, Timer};

use crate::{CheckError, Decision, Limiter};

/// Why a wait ended without admission.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WaitError {
    /// The deadline passed, or the quota would come back only after it.
    #[error("deadline reached before the request could be admitted{}", .retry_after.map(|d| format!(" (it would pass in {d:?})")).unwrap_or_default())]
    Deadline {
        /// When the request would have passed, if the limiter said (measured from the
        /// moment of giving up).
        retry_after: Option<Duration>,
    },
    /// This key already has the maximum number of waiters queued.
    #[error("{0} callers already wait for this key; refusing to queue more")]
    QueueFull(usize),
    /// The check can never pass (a cost above the capacity).
    #[error(transparent)]
    Check(#[from] CheckError),
}

type Queues<K> = Mutex<HashMap<K, VecDeque<Waiter>, ahash::RandomState>>;

struct Waiter {
    id: u64,
    waker: Option<Waker>,
}

/// A limiter that makes callers wait their turn instead of refusing them.
///
/// ```
/// use ratewarden::{Clock, FixedWindow, KeyedLimiter, ManualTimer, Pacer};
/// use std::time::Duration;
///
/// let (clock, mock) = Clock::mock();
/// let timer = ManualTimer::new(clock.clone(), mock);
/// let limiter: KeyedLimiter<&str, FixedWindow> =
///     KeyedLimiter::with_clock(FixedWindow::new("10/hour".parse()?), clock.clone());
/// let pacer = Pacer::with_timer(limiter, timer.clone());
///
/// for _ in 0..10 {
///     pacer.until_ready(&"reelbot", 1, None)?; // no waiting: within the quota
/// }
/// // The eleventh waits for the next hour. Here a second thread moves the mock clock.
/// std::thread::scope(|s| {
///     s.spawn(|| {
///         timer.wait_for_pending(1, Duration::from_secs(10));
///         timer.advance_to_next();
///     });
///     let decision = pacer.until_ready(&"reelbot", 1, None).unwrap();
///     assert!(decision.is_allowed());
/// });
/// assert_eq!(clock.now(), 3_600_000_000_000);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Pacer<K, L> {
    limiter: L,
    timer: Arc<dyn Timer>,
    queues: Queues<K>,
    next_id: AtomicU64,
    max_waiters: usize,
}

impl<K, L> std::fmt::Debug for Pacer<K, L> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pacer")
            .field("waiting_keys", &self.queues.lock().len())
            .field("max_waiters", &self.max_waiters)
            .finish_non_exhaustive()
    }
}

/// Waiters allowed per key by default.
pub const DEFAULT_MAX_WAITERS: usize = 1_024;

impl<K, L> Pacer<K, L>
where
    K: Hash + Eq + Clone + Send + Sync,
    L: Limiter<K>,
{
    /// Paces `limiter` with real time ([`ThreadTimer`]).
    pub fn new(limiter: L) -> Self {
        Self::with_timer(limiter, ThreadTimer)
    }

    /// Paces `limiter`, sleeping with `timer`.
    pub fn with_timer(limiter: L, timer: impl Timer) -> Self {
        Pacer {
            limiter,
            timer: Arc::new(timer),
            queues: Mutex::new(HashMap::default()),
            next_id: AtomicU64::new(0),
            max_waiters: DEFAULT_MAX_WAITERS,
        }
    }

    /// At most `n` callers wait per key; more are refused with [`WaitError::QueueFull`].
    pub fn max_waiters(mut self, n: usize) -> Self {
        self.max_waiters = n.max(1);
        self
    }

    /// The limiter being paced.
    pub fn limiter(&self) -> &L {
        &self.limiter
    }

    /// How many callers currently wait (or check) for `key`.
    pub fn waiting(&self, key: &K) -> usize {
        self.queues.lock().get(key).map_or(0, VecDeque::len)
    }

    /// Blocks until `cost` is admitted for `key`, in arrival order, or `timeout` passes.
    pub fn until_ready(
        &self,
        key: &K,
        cost: u64,
        timeout: Option<Duration>,
    ) -> Result<Decision, WaitError> {
        timer::block_on(self.ready(key, cost, timeout))
    }

    /// Completes when `cost` is admitted for `key`, in arrival order, or `timeout` passes.
    /// Dropping the future leaves the queue having taken nothing.
    pub async fn ready(
        &self,
        key: &K,
        cost: u64,
        timeout: Option<Duration>,
    ) -> Result<Decision, WaitError> {
        let clock = self.limiter.clock();
        let nanos = |d: Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        let deadline = timeout.map(|t| clock.now().saturating_add(nanos(t)));
        let (place, mut head) = self.join(key)?;
        // The deadline's timer is armed only for a caller that has to wait its turn: one
        // admitted at once registers nothing.
        let mut expiry: Option<Sleep> = None;
        loop {
            // Once at the head, a caller stays there until it leaves.
            if !head {
                if expiry.is_none() {
                    expiry = deadline.map(|at| self.timer.sleep_until(clock, at));
                }
                Turn {
                    place: &place,
                    expiry: expiry.as_mut(),
                }
                .await?;
                head = true;
            }
            let now = clock.now();
            let decision = self.limiter.check_at(key, cost, now)?;
            if decision.is_allowed() {
                return Ok(decision);
            }
            let at = now.saturating_add(decision.retry_after_nanos());
            if deadline.is_some_and(|deadline| at > deadline) {
                return Err(WaitError::Deadline {
                    retry_after: decision.retry_after(),
                });
            }
            self.timer.sleep_until(clock, at).await;
        }
    }

    /// Joins `key`'s queue: the caller's place, and whether it is at the head.
    fn join(&self, key: &K) -> Result<(Place<'_, K, L>, bool), WaitError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut queues = self.queues.lock();
        let queue = queues.entry(key.clone()).or_default();
        if queue.len() >= self.max_waiters {
            return Err(WaitError::QueueFull(queue.len()));
        }
        let head = queue.is_empty();
        queue.push_back(Waiter { id, waker: None });
        let place = Place {
            pacer: self,
            key: key.clone(),
            id,
        };
        Ok((place, head))
    }
}

/// A caller's place in its key's queue; leaving (dropping) it hands the turn on.
struct Place<'p, K: Hash + Eq, L> {
    pacer: &'p Pacer<K, L>,
    key: K,
    id: u64,
}

impl<K: Hash + Eq, L> Drop for Place<'_, K, L> {
    fn drop(&mut self) {
        let mut queues = self.pacer.queues.lock();
        let Some(queue) = queues.get_mut(&self.key) else {
            return;
        };
        let was_head = queue.front().is_some_and(|w| w.id == self.id);
        queue.retain(|w| w.id != self.id);
        if queue.is_empty() {
            queues.remove(&self.key);
        } else if was_head {
            if let Some(waker) = queue.front_mut().and_then(|w| w.waker.take()) {
                waker.wake();
            }
        }
    }
}

/// Completes when `place` is at the head of its queue, or fails when `expiry` fires first.
struct Turn<'a, 'p, K: Hash + Eq, L> {
    place: &'a Place<'p, K, L>,
    expiry: Option<&'a mut Sleep>,
}

impl<K: Hash + Eq, L> Future for Turn<'_, '_, K, L> {
    type Output = Result<(), WaitError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        {
            let mut queues = self.place.pacer.queues.lock();
            let queue = queues.get_mut(&self.place.key);
            let mut waiters = queue.into_iter().flat_map(|q| q.iter_mut());
            match waiters.next() {
                Some(head) if head.id == self.place.id => return Poll::Ready(Ok(())),
                _ => {}
            }
            if let Some(me) = waiters.find(|w| w.id == self.place.id) {
                me.waker = Some(cx.waker().clone());
            }
        }
        if let Some(expiry) = self.expiry.as_mut() {
            if expiry.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Err(WaitError::Deadline { retry_after: None }));
            }
        }
        Poll::Pending
    }
}
