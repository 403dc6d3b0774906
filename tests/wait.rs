//! `Pacer`: callers wait their turn in arrival order, deadlines hold, and a cancelled wait
//! takes nothing.

use std::future::Future;
use std::pin::pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use ratewarden::{
    CheckError, Clock, FixedWindow, Gcra, KeyedLimiter, ManualTimer, Pacer, WaitError,
};

const SEC: u64 = 1_000_000_000;
const PATIENCE: Duration = Duration::from_secs(20);

fn hourly(
    limit: u64,
) -> (
    Pacer<&'static str, KeyedLimiter<&'static str, FixedWindow>>,
    ManualTimer,
    Clock,
) {
    let (clock, mock) = Clock::mock();
    let timer = ManualTimer::new(clock.clone(), mock);
    let rate = format!("{limit}/hour").parse().unwrap();
    let limiter = KeyedLimiter::with_clock(FixedWindow::new(rate), clock.clone());
    (Pacer::with_timer(limiter, timer.clone()), timer, clock)
}

struct Noop;
impl Wake for Noop {
    fn wake(self: Arc<Self>) {}
}

fn poll_once<F: Future>(f: std::pin::Pin<&mut F>) -> Poll<F::Output> {
    let waker = Waker::from(Arc::new(Noop));
    f.poll(&mut Context::from_waker(&waker))
}

/// Blocks until `cond` holds, failing the test after `PATIENCE`.
fn eventually(what: &str, cond: impl Fn() -> bool) {
    let end = std::time::Instant::now() + PATIENCE;
    while !cond() {
        assert!(
            std::time::Instant::now() < end,
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn waiters_are_admitted_in_arrival_order_one_window_each() {
    let (pacer, timer, clock) = hourly(1);
    pacer.until_ready(&"bot", 1, None).unwrap(); // uses the hour's only slot
    let log = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for i in 0..5 {
            let (pacer, log) = (&pacer, &log);
            s.spawn(move || {
                let d = pacer.until_ready(&"bot", 1, None).unwrap();
                log.lock().unwrap().push((i, d.is_allowed()));
            });
            // Arrival order is the spawn order: wait until this caller has queued.
            eventually("the caller to queue", || pacer.waiting(&"bot") == i + 1);
        }
        for admitted in 1..=5 {
            // The head sleeps until the next window; everyone else waits behind it.
            assert!(timer.wait_for_pending(1, PATIENCE));
            assert_eq!(timer.pending(), 1);
            timer.advance_to_next();
            eventually("an admission", || log.lock().unwrap().len() == admitted);
        }
    });
    let log = log.into_inner().unwrap();
    assert_eq!(log, (0..5).map(|i| (i, true)).collect::<Vec<_>>());
    assert_eq!(clock.now(), 5 * 3_600 * SEC);
    assert_eq!(pacer.waiting(&"bot"), 0);
}

#[test]
fn a_head_that_would_pass_only_after_its_deadline_gives_up_at_once_taking_nothing() {
    let (pacer, timer, clock) = hourly(2);
    pacer.until_ready(&"k", 2, None).unwrap();
    let err = pacer
        .until_ready(&"k", 1, Some(Duration::from_secs(60)))
        .unwrap_err();
    assert_eq!(
        err,
        WaitError::Deadline {
            retry_after: Some(Duration::from_secs(3_600))
        }
    );
    assert_eq!(clock.now(), 0, "no time passed");
    assert_eq!(timer.pending(), 0);
    assert_eq!(pacer.waiting(&"k"), 0);
    // A long enough deadline waits and succeeds.
    std::thread::scope(|s| {
        s.spawn(|| {
            assert!(timer.wait_for_pending(1, PATIENCE));
            timer.advance_to_next();
        });
        let d = pacer
            .until_ready(&"k", 2, Some(Duration::from_secs(3_600)))
            .unwrap();
        assert_eq!(d.remaining(), 0);
    });
}

#[test]
fn a_queued_waiter_times_out_and_the_line_moves_on() {
    let (pacer, timer, _clock) = hourly(1);
    pacer.until_ready(&"k", 1, None).unwrap();
    std::thread::scope(|s| {
        let head = s.spawn(|| pacer.until_ready(&"k", 1, None));
        eventually("the head to sleep", || timer.pending() == 1);
        let follower = s.spawn(|| pacer.until_ready(&"k", 1, Some(Duration::from_secs(60))));
        // The follower sleeps on its deadline while it waits in line.
        eventually("the follower to queue", || timer.pending() == 2);
        assert_eq!(pacer.waiting(&"k"), 2);
        timer.advance(Duration::from_secs(60));
        assert_eq!(
            follower.join().unwrap(),
            Err(WaitError::Deadline { retry_after: None })
        );
        assert_eq!(pacer.waiting(&"k"), 1);
        timer.advance_to_next();
        assert!(head.join().unwrap().unwrap().is_allowed());
    });
    assert_eq!(pacer.waiting(&"k"), 0);
}

#[test]
fn dropping_a_wait_takes_nothing_and_hands_the_turn_on() {
    let (pacer, timer, clock) = hourly(3);
    pacer.until_ready(&"k", 3, None).unwrap();

    let mut first = Box::pin(pacer.ready(&"k", 2, None));
    assert!(poll_once(first.as_mut()).is_pending()); // head: checked, denied, sleeping
    let mut second = Box::pin(pacer.ready(&"k", 1, None));
    assert!(poll_once(second.as_mut()).is_pending()); // queued behind it
    assert_eq!(pacer.waiting(&"k"), 2);

    drop(first);
    assert_eq!(pacer.waiting(&"k"), 1);
    assert_eq!(timer.pending(), 0, "the dropped head's sleep is gone");
    // The second caller is now the head; the window is still spent, so it sleeps.
    assert!(poll_once(second.as_mut()).is_pending());
    timer.advance_to_next();
    match poll_once(second.as_mut()) {
        Poll::Ready(Ok(d)) => assert_eq!(d.remaining(), 2, "the dropped wait took nothing"),
        other => panic!("expected admission, got {other:?}"),
    }
    assert_eq!(clock.now(), 3_600 * SEC);
    assert_eq!(pacer.waiting(&"k"), 0);
}

#[test]
fn keys_queue_independently() {
    let (pacer, timer, _clock) = hourly(1);
    pacer.until_ready(&"a", 1, None).unwrap();
    let mut a = pin!(pacer.ready(&"a", 1, None));
    assert!(poll_once(a.as_mut()).is_pending());
    // "b" is not stuck behind "a".
    assert!(pacer.until_ready(&"b", 1, None).unwrap().is_allowed());
    assert_eq!((pacer.waiting(&"a"), pacer.waiting(&"b")), (1, 0));
    timer.advance_to_next();
    assert!(matches!(poll_once(a.as_mut()), Poll::Ready(Ok(_))));
}

#[test]
fn impossible_costs_and_full_queues_are_typed_errors() {
    let (pacer, _timer, _clock) = hourly(2);
    assert_eq!(
        pacer.until_ready(&"k", 3, None),
        Err(WaitError::Check(CheckError::CostExceedsCapacity {
            cost: 3,
            capacity: 2
        }))
    );
    assert_eq!(pacer.waiting(&"k"), 0);

    let pacer = pacer.max_waiters(1);
    pacer.until_ready(&"k", 2, None).unwrap();
    let mut head = pin!(pacer.ready(&"k", 1, None));
    assert!(poll_once(head.as_mut()).is_pending());
    let err = pacer.until_ready(&"k", 1, None).unwrap_err();
    assert_eq!(err, WaitError::QueueFull(1));
    assert_eq!(
        err.to_string(),
        "1 callers already wait for this key; refusing to queue more"
    );
    assert_eq!(pacer.waiting(&"k"), 1);
}

#[test]
fn real_time_waits_in_threads_admit_exactly_what_the_rate_allows() {
    // GCRA at 200/s with a burst of 1: 40 paced calls need about 200 ms of real time.
    let limiter: KeyedLimiter<u8> =
        KeyedLimiter::new(Gcra::new("200/s".parse().unwrap()).with_burst(1).unwrap());
    let pacer = Pacer::new(limiter);
    let admitted = std::sync::atomic::AtomicU64::new(0);
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for _ in 0..10 {
                    let d = pacer
                        .until_ready(&7, 1, Some(Duration::from_secs(30)))
                        .unwrap();
                    assert!(d.is_allowed());
                    admitted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            });
        }
    });
    assert_eq!(admitted.into_inner(), 40);
    assert_eq!(pacer.waiting(&7), 0);
    // Nothing was admitted beyond the rate: the 41st would have to wait.
    assert!(pacer.limiter().peek(&7, 1).unwrap().is_denied());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_waits_under_tokio_share_one_queue() {
    let limiter: KeyedLimiter<&str> =
        KeyedLimiter::new(Gcra::new("500/s".parse().unwrap()).with_burst(1).unwrap());
    let pacer = Arc::new(Pacer::new(limiter));
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let pacer = pacer.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..5 {
                let d = pacer
                    .ready(&"org", 1, Some(Duration::from_secs(30)))
                    .await
                    .unwrap();
                assert!(d.is_allowed());
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(pacer.waiting(&"org"), 0);
}

struct Counting(Arc<std::sync::atomic::AtomicUsize>, ManualTimer);

impl ratewarden::Timer for Counting {
    fn sleep_until(&self, clock: &Clock, at: ratewarden::Nanos) -> ratewarden::Sleep {
        self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.1.sleep_until(clock, at)
    }
}

#[test]
fn a_caller_admitted_at_once_arms_no_timer_even_with_a_deadline() {
    let (clock, mock) = Clock::mock();
    let armed = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let timer = ManualTimer::new(clock.clone(), mock);
    let limiter: KeyedLimiter<u64> =
        KeyedLimiter::with_clock(Gcra::new("1000/s".parse().unwrap()), clock);
    let pacer = Pacer::with_timer(limiter, Counting(armed.clone(), timer.clone()));
    for _ in 0..1000 {
        pacer
            .until_ready(&1, 1, Some(Duration::from_secs(3600)))
            .unwrap();
    }
    assert_eq!(armed.load(std::sync::atomic::Ordering::Relaxed), 0);
    // The next one must wait: only now is a sleep registered.
    let mut next = Box::pin(pacer.ready(&1, 1, Some(Duration::from_secs(3600))));
    assert!(poll_once(next.as_mut()).is_pending());
    assert_eq!(armed.load(std::sync::atomic::Ordering::Relaxed), 1);
}
