//! Timers for waiting: a background thread for real time, a hand-driven one for tests.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::future::Future;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, Wake, Waker};
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use crate::{Clock, Nanos};

/// A boxed sleep, as [`Timer::sleep_until`] returns it.
pub type Sleep = Pin<Box<dyn Future<Output = ()> + Send>>;

/// What a [`Pacer`](crate::Pacer) sleeps with.
///
/// [`ThreadTimer`] (the default) serves any executor, or none, from one background
/// thread; [`ManualTimer`] lets a test move a mock clock and wake sleepers by hand.
pub trait Timer: Send + Sync + 'static {
    /// A future that completes once `clock` reads `at` or later.
    fn sleep_until(&self, clock: &Clock, at: Nanos) -> Sleep;
}

/// One sleeper's shared state.
#[derive(Default)]
struct Alarm {
    fired: AtomicBool,
    waker: Mutex<Option<Waker>>,
}

impl Alarm {
    fn fire(&self) {
        self.fired.store(true, Ordering::Release);
        if let Some(w) = self.waker.lock().take() {
            w.wake();
        }
    }
}

struct AlarmFuture {
    alarm: Arc<Alarm>,
}

impl Future for AlarmFuture {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.alarm.fired.load(Ordering::Acquire) {
            return Poll::Ready(());
        }
        *self.alarm.waker.lock() = Some(cx.waker().clone());
        // Fired between the check and the registration: do not miss it.
        if self.alarm.fired.load(Ordering::Acquire) {
            return Poll::Ready(());
        }
        Poll::Pending
    }
}

type Entry = Reverse<(Instant, u64)>;

/// A manual timer's sleeper: its wake-up time and alarm.
type Sleeper = (Nanos, Arc<Alarm>);

#[derive(Default)]
struct Wheel {
    heap: BinaryHeap<Entry>,
    alarms: std::collections::HashMap<u64, Arc<Alarm>>,
    next: u64,
    /// The queue length at which dropped sleeps are purged next.
    purge_at: usize,
}

impl Wheel {
    /// Drops the entries of sleeps nobody awaits any more (only the wheel holds them).
    fn purge(&mut self) {
        self.alarms.retain(|_, alarm| Arc::strong_count(alarm) > 1);
        let alarms = &self.alarms;
        self.heap.retain(|Reverse((_, id))| alarms.contains_key(id));
        self.purge_at = (2 * self.heap.len()).max(1_024);
    }
}

/// Real time, from one shared background thread (`ratewarden-timer`, started on first
/// use) that wakes each sleeper at its instant. Works under any async executor and in
/// blocking code alike. A dropped sleep's entry is purged once dropped entries could
/// make up half the queue, so memory follows the sleeps still pending.
#[derive(Debug, Clone, Copy, Default)]
pub struct ThreadTimer;

struct Shared {
    wheel: Mutex<Wheel>,
    changed: Condvar,
}

fn shared() -> Option<&'static Shared> {
    static SHARED: OnceLock<Option<&'static Shared>> = OnceLock::new();
    *SHARED.get_or_init(|| {
        let shared: &'static Shared = Box::leak(Box::new(Shared {
            wheel: Mutex::new(Wheel::default()),
            changed: Condvar::new(),
        }));
        thread::Builder::new()
            .name("ratewarden-timer".into())
            .spawn(move || run(shared))
            .ok()
            .map(|_| shared)
    })
}

fn run(shared: &Shared) {
    let mut wheel = shared.wheel.lock();
    loop {
        let now = Instant::now();
        while let Some(Reverse((at, id))) = wheel.heap.peek().copied() {
            if at > now {
                break;
            }
            wheel.heap.pop();
            if let Some(alarm) = wheel.alarms.remove(&id) {
                alarm.fire();
            }
        }
        match wheel.heap.peek().copied() {
            Some(Reverse((at, _))) => {
                shared.changed.wait_until(&mut wheel, at);
            }
            None => shared.changed.wait(&mut wheel),
        }
    }
}

impl Timer for ThreadTimer {
    fn sleep_until(&self, clock: &Clock, at: Nanos) -> Sleep {
        let delay = Duration::from_nanos(at.saturating_sub(clock.now()));
        let alarm = Arc::new(Alarm::default());
        match (shared(), Instant::now().checked_add(delay)) {
            (_, _) if delay.is_zero() => alarm.fire(),
            (Some(shared), Some(instant)) => {
                let mut wheel = shared.wheel.lock();
                if wheel.heap.len() >= wheel.purge_at {
                    wheel.purge();
                }
                let id = wheel.next;
                wheel.next += 1;
                wheel.heap.push(Reverse((instant, id)));
                wheel.alarms.insert(id, alarm.clone());
                shared.changed.notify_one();
            }
            // Beyond any representable instant: never fires.
            (Some(_), None) => {}
            // No timer thread could be started: sleep in place rather than spin.
            (None, _) => {
                thread::sleep(delay);
                alarm.fire();
            }
        }
        Box::pin(AlarmFuture { alarm })
    }
}

/// A timer for tests: sleepers wake only when the test moves the mock clock through
/// [`advance`](Self::advance) or [`advance_to_next`](Self::advance_to_next).
///
/// ```
/// use ratewarden::{Clock, ManualTimer, Timer};
/// use std::time::Duration;
///
/// let (clock, mock) = Clock::mock();
/// let timer = ManualTimer::new(clock.clone(), mock);
/// let _sleep = timer.sleep_until(&clock, 5_000);
/// assert_eq!(timer.pending(), 1);
/// timer.advance(Duration::from_nanos(5_000));
/// assert_eq!(timer.pending(), 0);
/// ```
#[derive(Clone)]
pub struct ManualTimer {
    clock: Clock,
    mock: Arc<quanta::Mock>,
    sleepers: Arc<Mutex<Vec<Sleeper>>>,
}

impl std::fmt::Debug for ManualTimer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ManualTimer")
            .field("now", &self.clock.now())
            .field("pending", &self.pending())
            .finish()
    }
}

impl ManualTimer {
    /// A timer driven through `mock`, the handle of the mock `clock`.
    pub fn new(clock: Clock, mock: Arc<quanta::Mock>) -> ManualTimer {
        ManualTimer {
            clock,
            mock,
            sleepers: Arc::default(),
        }
    }

    /// Moves the clock forward by `by` and wakes every sleeper now due.
    pub fn advance(&self, by: Duration) {
        self.mock.increment(by);
        let now = self.clock.now();
        let due: Vec<_> = {
            let mut sleepers = self.sleepers.lock();
            let (due, rest) = sleepers.drain(..).partition(|(at, _)| *at <= now);
            *sleepers = rest;
            due
        };
        for (_, alarm) in due {
            alarm.fire();
        }
    }

    /// Moves the clock to the earliest sleeper's time and wakes it (and any due with it);
    /// returns how far the clock moved, or `None` when nobody sleeps.
    pub fn advance_to_next(&self) -> Option<Duration> {
        let next = self.sleepers.lock().iter().map(|(at, _)| *at).min()?;
        let by = Duration::from_nanos(next.saturating_sub(self.clock.now()));
        self.advance(by);
        Some(by)
    }

    /// How many sleepers wait for the clock to move (sleeps already dropped, such as a
    /// cancelled waiter's, do not count).
    pub fn pending(&self) -> usize {
        let mut sleepers = self.sleepers.lock();
        sleepers.retain(|(_, alarm)| Arc::strong_count(alarm) > 1);
        sleepers.len()
    }

    /// Blocks until at least `n` sleepers wait (other threads registering), or `timeout`
    /// of real time passes; returns whether they did.
    pub fn wait_for_pending(&self, n: usize, timeout: Duration) -> bool {
        let end = Instant::now() + timeout;
        while self.pending() < n {
            if Instant::now() >= end {
                return false;
            }
            thread::sleep(Duration::from_millis(1));
        }
        true
    }
}

impl Timer for ManualTimer {
    fn sleep_until(&self, clock: &Clock, at: Nanos) -> Sleep {
        let alarm = Arc::new(Alarm::default());
        if clock.now() >= at {
            alarm.fire();
        } else {
            self.sleepers.lock().push((at, alarm.clone()));
        }
        Box::pin(AlarmFuture { alarm })
    }
}

struct Unpark(Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}

/// Runs a future to completion on the current thread, parking between polls.
pub(crate) fn block_on<F: Future>(future: F) -> F::Output {
    let waker = Waker::from(Arc::new(Unpark(thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut future = pin!(future);
    loop {
        if let Poll::Ready(value) = future.as_mut().poll(&mut cx) {
            return value;
        }
        thread::park();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dropped_sleeps_are_purged_from_the_thread_timer() {
        let clock = Clock::new();
        let far = clock.now() + 3_600_000_000_000;
        for _ in 0..10_000 {
            drop(ThreadTimer.sleep_until(&clock, far));
        }
        let kept = ThreadTimer.sleep_until(&clock, far);
        let queued = shared().map(|s| s.wheel.lock().heap.len()).unwrap_or(0);
        assert!(queued <= 2_048, "{queued} entries for one pending sleep");
        drop(kept);
    }
}
