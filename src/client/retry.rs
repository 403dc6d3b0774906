//! Backing off and retrying: exponential delays with jitter, `Retry-After` honoured, and a
//! gate shared by a pool of workers.

use std::cell::Cell;
use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::Clock;

/// Exponential backoff with jitter that never retries earlier than a server's
/// `Retry-After`.
///
/// Attempt `n` (from 0) without a `Retry-After` waits a random time between half and all
/// of `min(max, base × 2ⁿ)` ("equal jitter": delays grow, and clients that failed
/// together spread out). With a `Retry-After`, it waits that long plus a random spread of
/// up to `base`, so a crowd told the same second does not return in the same
/// millisecond. After `max_attempts` attempts it gives up, and so it does when a server
/// asks for a wait longer than [`max_wait`](Self::max_wait) (a day unless set): a
/// `Retry-After` of years is a reason to stop, not to sleep.
///
/// ```
/// use ratewarden::client::Backoff;
/// use std::time::Duration;
///
/// let backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(10)).max_attempts(5);
/// let first = backoff.delay(0, None).unwrap();
/// assert!(first >= Duration::from_millis(50) && first <= Duration::from_millis(100));
/// let told = backoff.delay(1, Some(Duration::from_secs(30))).unwrap();
/// assert!(told >= Duration::from_secs(30));
/// assert_eq!(backoff.delay(5, None), None); // out of attempts
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    max_attempts: u32,
    max_wait: Duration,
}

impl Backoff {
    /// Delays starting at `base` and doubling up to `max`; 8 attempts.
    pub fn new(base: Duration, max: Duration) -> Backoff {
        Backoff {
            base,
            max: max.max(base),
            max_attempts: 8,
            max_wait: Duration::from_secs(86_400),
        }
    }

    /// The longest `Retry-After` worth waiting for; a longer one gives up.
    pub fn max_wait(mut self, wait: Duration) -> Self {
        self.max_wait = wait;
        self
    }

    /// How many attempts in all before giving up.
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts;
        self
    }

    /// The delay after failed attempt `attempt` (counted from 0), or `None` when no
    /// attempts are left. Draws its jitter from a per-thread generator.
    pub fn delay(&self, attempt: u32, retry_after: Option<Duration>) -> Option<Duration> {
        self.delay_with(attempt, retry_after, next_random())
    }

    /// [`delay`](Self::delay) with the random number supplied, for reproducible delays.
    pub fn delay_with(
        &self,
        attempt: u32,
        retry_after: Option<Duration>,
        random: u64,
    ) -> Option<Duration> {
        if attempt.saturating_add(1) >= self.max_attempts
            || retry_after.is_some_and(|told| told > self.max_wait)
        {
            return None;
        }
        let nanos = |d: Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        let pick = |spread: u64| random.checked_rem(spread.saturating_add(1)).unwrap_or(0);
        Some(match retry_after {
            Some(told) => told.saturating_add(Duration::from_nanos(pick(nanos(self.base)))),
            None => {
                let doubled = nanos(self.base).saturating_mul(1u64 << attempt.min(63));
                let ceiling = doubled.min(nanos(self.max));
                Duration::from_nanos(ceiling - ceiling / 2 + pick(ceiling / 2))
            }
        })
    }
}

thread_local! {
    static RANDOM: Cell<u64> = Cell::new(seed());
}

fn seed() -> u64 {
    // A randomly keyed hasher gives each thread its own starting point; xorshift needs
    // a non-zero state.
    ahash::RandomState::new().hash_one(0u64) | 1
}

fn next_random() -> u64 {
    RANDOM.with(|r| {
        let mut x = r.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        r.set(x);
        x
    })
}

/// A `Retry-After` shared by a pool of workers: each worker that is told to wait records
/// it, and every worker holds off until the longest of them has passed, instead of
/// each one discovering the limit again with its own 429.
///
/// ```
/// use ratewarden::client::RetryGate;
/// use ratewarden::Clock;
/// use std::time::Duration;
///
/// let (clock, mock) = Clock::mock();
/// let gate = RetryGate::new(clock);
/// let worker = gate.clone();
/// worker.defer(Duration::from_secs(30));
/// gate.defer(Duration::from_secs(5)); // shorter: the 30 s stands
/// assert_eq!(gate.remaining(), Duration::from_secs(30));
/// mock.increment(Duration::from_secs(30));
/// assert_eq!(gate.remaining(), Duration::ZERO);
/// ```
#[derive(Debug, Clone)]
pub struct RetryGate {
    inner: Arc<GateInner>,
}

#[derive(Debug)]
struct GateInner {
    clock: Clock,
    resume_at: AtomicU64,
}

impl RetryGate {
    /// An open gate reading time from `clock`.
    pub fn new(clock: Clock) -> RetryGate {
        RetryGate {
            inner: Arc::new(GateInner {
                clock,
                resume_at: AtomicU64::new(0),
            }),
        }
    }

    /// Records a `Retry-After` received now; the gate stays closed until the latest
    /// resume time any worker recorded.
    pub fn defer(&self, retry_after: Duration) {
        let delay = u64::try_from(retry_after.as_nanos()).unwrap_or(u64::MAX);
        let at = self.inner.clock.now().saturating_add(delay);
        self.inner.resume_at.fetch_max(at, Ordering::AcqRel);
    }

    /// How long until the gate opens; zero when it is open.
    pub fn remaining(&self) -> Duration {
        let at = self.inner.resume_at.load(Ordering::Acquire);
        Duration::from_nanos(at.saturating_sub(self.inner.clock.now()))
    }
}

/// What one attempt of a [`retry`]ed call came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt<T, E> {
    /// It worked.
    Done(T),
    /// It failed in a way worth retrying (a 429, a 503, a timeout), with the server's
    /// `Retry-After` when it sent one.
    Retry {
        /// The failure.
        error: E,
        /// The server's `Retry-After`.
        retry_after: Option<Duration>,
    },
    /// It failed in a way retrying cannot fix (a 400, a 401).
    Fail(E),
}

/// Why a [`retry`]ed call gave up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RetryError<E> {
    /// An attempt failed in a way retrying cannot fix.
    Failed(E),
    /// Every attempt failed; the last failure.
    Exhausted {
        /// How many attempts were made.
        attempts: u32,
        /// The last attempt's failure.
        last: E,
    },
}

impl<E: fmt::Display> fmt::Display for RetryError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RetryError::Failed(e) => write!(f, "request failed: {e}"),
            RetryError::Exhausted { attempts, last } => {
                write!(f, "gave up after {attempts} attempts; last failure: {last}")
            }
        }
    }
}

impl<E: fmt::Debug + fmt::Display> std::error::Error for RetryError<E> {}

/// Calls `call(attempt)` until it is [`Done`](Attempt::Done), sleeping with `sleep`
/// between attempts as `backoff` says, and first for as long as `gate` (when given) is
/// closed. A `Retry-After` is recorded in the gate for the other workers.
///
/// `sleep` is yours: `std::thread::sleep` in a thread, or a mock clock's advance in a
/// test. For async code, see [`retry_async`].
///
/// ```
/// use ratewarden::client::{retry, Attempt, Backoff};
/// use std::time::Duration;
///
/// let mut slept = Duration::ZERO;
/// let result: Result<&str, _> = retry(
///     &Backoff::new(Duration::from_millis(100), Duration::from_secs(5)),
///     None,
///     |d| slept += d,
///     |attempt| match attempt {
///         0 => Attempt::Retry { error: 429, retry_after: Some(Duration::from_secs(2)) },
///         _ => Attempt::Done("ok"),
///     },
/// );
/// assert_eq!(result, Ok("ok"));
/// assert!(slept >= Duration::from_secs(2));
/// ```
pub fn retry<T, E>(
    backoff: &Backoff,
    gate: Option<&RetryGate>,
    mut sleep: impl FnMut(Duration),
    mut call: impl FnMut(u32) -> Attempt<T, E>,
) -> Result<T, RetryError<E>> {
    let mut attempt = 0;
    loop {
        if let Some(wait) = gate.map(RetryGate::remaining).filter(|w| !w.is_zero()) {
            sleep(wait);
        }
        match next(backoff, gate, attempt, call(attempt))? {
            Ok(value) => return Ok(value),
            Err(delay) => sleep(delay),
        }
        attempt += 1;
    }
}

/// [`retry`] for async code: `sleep` returns a future (`tokio::time::sleep`, or any
/// executor's timer).
pub async fn retry_async<T, E, S, C, SF, CF>(
    backoff: &Backoff,
    gate: Option<&RetryGate>,
    mut sleep: S,
    mut call: C,
) -> Result<T, RetryError<E>>
where
    S: FnMut(Duration) -> SF,
    SF: Future<Output = ()>,
    C: FnMut(u32) -> CF,
    CF: Future<Output = Attempt<T, E>>,
{
    let mut attempt = 0;
    loop {
        if let Some(wait) = gate.map(RetryGate::remaining).filter(|w| !w.is_zero()) {
            sleep(wait).await;
        }
        match next(backoff, gate, attempt, call(attempt).await)? {
            Ok(value) => return Ok(value),
            Err(delay) => sleep(delay).await,
        }
        attempt += 1;
    }
}

/// The value, or how long to sleep before the next attempt.
#[allow(clippy::type_complexity)]
fn next<T, E>(
    backoff: &Backoff,
    gate: Option<&RetryGate>,
    attempt: u32,
    outcome: Attempt<T, E>,
) -> Result<Result<T, Duration>, RetryError<E>> {
    match outcome {
        Attempt::Done(value) => Ok(Ok(value)),
        Attempt::Fail(e) => Err(RetryError::Failed(e)),
        Attempt::Retry { error, retry_after } => {
            if let (Some(gate), Some(told)) = (gate, retry_after) {
                gate.defer(told);
            }
            match backoff.delay(attempt, retry_after) {
                Some(delay) => Ok(Err(delay)),
                None => Err(RetryError::Exhausted {
                    attempts: attempt + 1,
                    last: error,
                }),
            }
        }
    }
}
