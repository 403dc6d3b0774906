//! Concurrency limits: permits, the queue, threads, panics, async waits, and atomic
//! composition with a rate policy.

use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use ratewarden::{Clock, ConcurrencyError, ConcurrencyLimiter, Policy, Scope, SlidingLog};

/// A minimal executor: poll, park until woken.
fn block_on<F: Future>(future: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut future = pin!(future);
    loop {
        if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return out;
        }
        std::thread::park();
    }
}

#[test]
fn never_more_than_the_limit_in_flight_under_threads() {
    let jobs: ConcurrencyLimiter<u8> = ConcurrencyLimiter::new(3).unwrap();
    let holding = Arc::new(AtomicU32::new(0));
    let peak = Arc::new(AtomicU32::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let threads: Vec<_> = (0..6)
        .map(|t| {
            let (jobs, holding, peak, done) =
                (jobs.clone(), holding.clone(), peak.clone(), done.clone());
            std::thread::spawn(move || {
                for i in 0..300 {
                    let permit = if (i + t) % 2 == 0 {
                        match jobs.try_acquire(&1) {
                            Ok(p) => p,
                            Err(ConcurrencyError::Busy { limit: 3, .. }) => continue,
                            Err(e) => panic!("{e}"),
                        }
                    } else {
                        jobs.enqueue(&1).unwrap().wait()
                    };
                    let now = holding.fetch_add(1, Ordering::SeqCst) + 1;
                    peak.fetch_max(now, Ordering::SeqCst);
                    std::thread::yield_now();
                    holding.fetch_sub(1, Ordering::SeqCst);
                    drop(permit);
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert!(
        peak.load(Ordering::SeqCst) <= 3,
        "peak {}",
        peak.load(Ordering::SeqCst)
    );
    assert!(done.load(Ordering::Relaxed) >= 900);
    assert_eq!(jobs.in_flight(&1), 0);
    assert!(jobs.is_empty(), "idle keys are removed");
}

#[test]
fn the_queue_is_first_in_first_out_and_dropped_tickets_leave_it() {
    let jobs: ConcurrencyLimiter<&str> = ConcurrencyLimiter::new(1).unwrap();
    let running = jobs.try_acquire(&"k").unwrap();
    let tickets: Vec<_> = (0..5).map(|_| jobs.enqueue(&"k").unwrap()).collect();
    let positions: Vec<_> = tickets.iter().map(|t| t.position()).collect();
    assert_eq!(positions, [Some(1), Some(2), Some(3), Some(4), Some(5)]);
    // nobody overtakes the queue
    assert!(matches!(
        jobs.try_acquire(&"k"),
        Err(ConcurrencyError::Busy {
            in_flight: 1,
            limit: 1
        })
    ));
    let mut tickets = tickets.into_iter();
    let first = tickets.next().unwrap();
    let second = tickets.next().unwrap();
    drop(second); // leaves the queue
    let rest: Vec<_> = tickets.collect();
    assert_eq!(
        rest.iter().map(|t| t.position()).collect::<Vec<_>>(),
        [Some(2), Some(3), Some(4)]
    );
    drop(running);
    assert_eq!(first.position(), None);
    let first = first.try_permit().unwrap();
    assert_eq!(rest[0].position(), Some(1));
    // a granted ticket that is dropped passes the slot on
    drop(first);
    let mut rest = rest.into_iter();
    let third = rest.next().unwrap();
    assert!(third.is_ready());
    drop(third);
    let fourth = rest.next().unwrap();
    assert!(fourth.is_ready());
    assert_eq!(jobs.queued(&"k"), 1);
}

#[test]
fn waiters_are_served_in_order_across_threads() {
    let jobs: ConcurrencyLimiter<u8> = ConcurrencyLimiter::new(1).unwrap();
    let first = jobs.try_acquire(&0).unwrap();
    let order = Arc::new(Mutex::new(Vec::new()));
    let mut threads = Vec::new();
    for n in 0..5 {
        let ticket = jobs.enqueue(&0).unwrap();
        let order = order.clone();
        threads.push(std::thread::spawn(move || {
            let permit = ticket.wait();
            order.lock().unwrap().push(n);
            std::thread::sleep(Duration::from_millis(1));
            drop(permit);
        }));
    }
    drop(first);
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(*order.lock().unwrap(), [0, 1, 2, 3, 4]);
}

#[test]
fn a_panicking_holder_releases_its_permit() {
    let jobs: ConcurrencyLimiter<u8> = ConcurrencyLimiter::new(1).unwrap();
    let worker = {
        let jobs = jobs.clone();
        std::thread::spawn(move || {
            let _permit = jobs.try_acquire(&9).unwrap();
            panic!("job failed");
        })
    };
    assert!(worker.join().is_err());
    assert_eq!(jobs.in_flight(&9), 0);
    assert!(jobs.try_acquire(&9).is_ok());
}

#[test]
fn queue_limits_timeouts_and_zero_limits_are_typed() {
    let jobs: ConcurrencyLimiter<u8> = ConcurrencyLimiter::new(1).unwrap().with_max_queue(2);
    assert_eq!(
        ConcurrencyLimiter::<u8>::new(0).err(),
        Some(ConcurrencyError::ZeroLimit)
    );
    assert!(matches!(
        jobs.try_acquire_with_limit(&1, 0),
        Err(ConcurrencyError::ZeroLimit)
    ));
    let _running = jobs.try_acquire(&1).unwrap();
    let _a = jobs.enqueue(&1).unwrap();
    let b = jobs.enqueue(&1).unwrap();
    assert!(matches!(
        jobs.enqueue(&1),
        Err(ConcurrencyError::QueueFull { max_queue: 2 })
    ));
    let b = b.wait_timeout(Duration::from_millis(20)).unwrap_err();
    assert_eq!(b.position(), Some(2));
    drop(b);
    assert_eq!(jobs.queued(&1), 1);
}

#[test]
fn async_waits_work_under_any_executor() {
    let jobs: ConcurrencyLimiter<u8> = ConcurrencyLimiter::new(1).unwrap();
    let running = jobs.try_acquire(&5).unwrap();
    let ticket = jobs.enqueue(&5).unwrap();
    let releaser = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(20));
        drop(running);
    });
    let permit = block_on(ticket);
    assert_eq!(*permit.key(), 5);
    assert_eq!(jobs.in_flight(&5), 1);
    releaser.join().unwrap();
}

#[derive(Clone, Copy, Debug)]
enum Plan {
    Free,
    Starter,
    Pro,
    Business,
    Enterprise,
}

fn jobs_for(plan: Plan) -> u32 {
    match plan {
        Plan::Free => 1,
        Plan::Starter => 3,
        Plan::Pro => 5,
        Plan::Business => 10,
        Plan::Enterprise => 20,
    }
}

#[test]
fn reelsbuilder_pro_runs_five_jobs_and_queues_the_sixth() {
    let jobs: ConcurrencyLimiter<&str> = ConcurrencyLimiter::new(1).unwrap();
    let limit = jobs_for(Plan::Pro);
    let mut running: Vec<_> = (0..5)
        .map(|_| {
            jobs.enqueue_with_limit(&"pro-key", limit)
                .unwrap()
                .try_permit()
                .unwrap()
        })
        .collect();
    let sixth = jobs.enqueue_with_limit(&"pro-key", limit).unwrap();
    assert_eq!(sixth.position(), Some(1)); // 202 Accepted, queue_position 1
    let seventh = jobs.enqueue_with_limit(&"pro-key", limit).unwrap();
    assert_eq!(seventh.position(), Some(2));
    // reported in the IETF form with the concurrent-requests unit, and in a 202 body
    let mut headers: Vec<(String, String)> = Vec::new();
    let snapshot =
        ratewarden::headers::Snapshot::concurrency("jobs", jobs.in_flight(&"pro-key"), limit);
    let outcome = ratewarden::headers::Outcome {
        scopes: &[snapshot],
        denied: false,
        retry_after: None,
        now: std::time::UNIX_EPOCH,
    };
    ratewarden::headers::HeaderFormat::ietf(ratewarden::headers::Report::Closest)
        .write(&outcome, &mut headers)
        .unwrap();
    assert_eq!(headers[0].1, r#""jobs";q=5;qu="concurrent-requests""#);
    assert_eq!(headers[1].1, r#""jobs";r=0;t=0"#);
    #[cfg(feature = "serde")]
    assert_eq!(
        serde_json::to_string(&ratewarden::headers::QueuedBody::new(
            sixth.position().unwrap()
        ))
        .unwrap(),
        r#"{"status":"queued","queue_position":1}"#
    );
    running.pop(); // one job finishes
    assert!(sixth.is_ready());
    assert_eq!(seventh.position(), Some(1));
    assert_eq!(jobs.in_flight(&"pro-key"), 5);
    // other plans, same limiter
    for plan in [Plan::Free, Plan::Starter, Plan::Business, Plan::Enterprise] {
        let key: &str = match plan {
            Plan::Free => "free",
            Plan::Starter => "starter",
            Plan::Business => "business",
            _ => "enterprise",
        };
        let held: Vec<_> = (0..jobs_for(plan))
            .map(|_| jobs.try_acquire_with_limit(&key, jobs_for(plan)).unwrap())
            .collect();
        assert!(
            jobs.try_acquire_with_limit(&key, jobs_for(plan)).is_err(),
            "{plan:?}"
        );
        drop(held);
    }
}

#[test]
fn rate_and_concurrency_compose_atomically() {
    let (clock, _mock) = Clock::mock();
    let policy = Policy::builder()
        .clock(clock)
        .scope(Scope::keyed(
            "rpm",
            SlidingLog::new("3/min".parse().unwrap()),
            |k: &u8| Some(*k),
        ))
        .build();
    let jobs: ConcurrencyLimiter<u8> = ConcurrencyLimiter::new(1).unwrap();
    let first = policy.check_with(&1, 1, || jobs.try_acquire(&1)).unwrap();
    assert!(first.decision.is_allowed());
    let permit = first.outcome.unwrap().unwrap();
    // busy: denied, and no rate budget spent
    let busy = policy.check_with(&1, 1, || jobs.try_acquire(&1)).unwrap();
    assert!(busy.decision.is_denied());
    assert!(matches!(
        busy.outcome,
        Some(Err(ConcurrencyError::Busy { .. }))
    ));
    assert_eq!(
        policy
            .peek(&1, 0)
            .unwrap()
            .scope("rpm")
            .unwrap()
            .decision
            .remaining(),
        2
    );
    drop(permit);
    // spend the rate budget elsewhere, then a rate denial takes no permit
    policy.check(&1, 2).unwrap();
    let denied = policy.check_with(&1, 1, || jobs.try_acquire(&1)).unwrap();
    assert!(denied.decision.is_denied());
    assert!(denied.outcome.is_none());
    assert_eq!(jobs.in_flight(&1), 0);
}
