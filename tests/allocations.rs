//! The hot paths allocate nothing: a check on a tracked key, a policy check of up to
//! eight scopes, and header formatting (with a sink that stores into memory it already
//! has; with `Vec<(String, String)>`, exactly the stored names and values).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::time::{Duration, UNIX_EPOCH};

use ratewarden::headers::{HeaderFormat, HeaderSink, Outcome, Report, Reset, RetryAfter, Snapshot};

struct Counting;

thread_local! {
    // Per thread: tests run in parallel, and each counts only its own allocations.
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

fn allocations() -> usize {
    ALLOCATIONS.with(Cell::get)
}

// SAFETY: forwards every call unchanged to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // `try_with`: during thread teardown the counter may already be gone.
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract, passed on as is.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by `System` through `alloc` above.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Stores header text into a fixed buffer: no allocation per header.
struct Fixed {
    text: [u8; 4096],
    len: usize,
    headers: usize,
}

impl HeaderSink for Fixed {
    fn append(&mut self, name: &str, value: &str) {
        for part in [name.as_bytes(), value.as_bytes()] {
            let end = (self.len + part.len()).min(self.text.len());
            self.text[self.len..end].copy_from_slice(&part[..end - self.len]);
            self.len = end;
        }
        self.headers += 1;
    }
}

fn scopes() -> [Snapshot<'static>; 3] {
    let s = |name, limit, remaining, window| Snapshot {
        name,
        limit,
        remaining,
        window: Duration::from_secs(window),
        reset_after: Duration::from_millis(12_345),
        quota_unit: None,
        partition_key: None,
    };
    [
        s("burst", 8, 3, 10),
        s("minute", 30, 12, 60),
        s("day", 1000, 900, 86_400),
    ]
}

#[test]
fn formatting_allocates_only_what_the_sink_stores() {
    let formats = [
        HeaderFormat::x_ratelimit()
            .reset(Reset::Iso8601)
            .with_used(),
        HeaderFormat::per_window(),
        HeaderFormat::ietf(Report::All).retry_after(Some(RetryAfter::HttpDate)),
        HeaderFormat::ietf_draft7(),
        HeaderFormat::ietf_draft6(),
    ];
    let all = scopes();
    for format in formats {
        for n in [1, 3] {
            let outcome = Outcome {
                scopes: &all[..n],
                denied: true,
                retry_after: Some(Duration::from_millis(2_500)),
                now: UNIX_EPOCH + Duration::from_secs(1_737_475_200),
            };
            let mut fixed = Fixed {
                text: [0; 4096],
                len: 0,
                headers: 0,
            };
            let before = allocations();
            format.write(&outcome, &mut fixed).unwrap();
            assert_eq!(allocations(), before, "{format:?}, {n} scopes");
            assert!(fixed.headers >= 2);

            let mut pairs: Vec<(String, String)> = Vec::with_capacity(16);
            let before = allocations();
            format.write(&outcome, &mut pairs).unwrap();
            let spent = allocations() - before;
            assert_eq!(
                spent,
                2 * pairs.len(),
                "{format:?}: one name and one value per header"
            );
        }
    }
}

#[test]
fn checks_on_tracked_keys_and_eight_scope_policies_allocate_nothing() {
    use ratewarden::{FixedWindow, Gcra, KeyedLimiter, Policy, Scope, SlidingLog, SlidingWindow};

    let limiter: KeyedLimiter<String> = KeyedLimiter::new(Gcra::new("1000/s".parse().unwrap()));
    limiter.check("key", 1).unwrap(); // the first check of a key stores it
    let before = allocations();
    for _ in 0..1_000 {
        std::hint::black_box(limiter.check("key", 1).unwrap());
    }
    assert_eq!(allocations(), before, "keyed check");

    // An unkeyed sliding log at a steady full window (one request per W / n, each check
    // pruning one entry and appending one), once its buffer has grown: checks and peeks
    // work on the state in place.
    let (clock, mock) = ratewarden::Clock::mock();
    let log =
        ratewarden::UnkeyedLimiter::with_clock(SlidingLog::new("100/s".parse().unwrap()), clock);
    let step = std::time::Duration::from_millis(10);
    for _ in 0..300 {
        assert!(log.check(1).unwrap().is_allowed());
        mock.increment(step);
    }
    let before = allocations();
    for _ in 0..100 {
        std::hint::black_box(log.peek(1).unwrap());
        assert!(log.check(1).unwrap().is_allowed());
        mock.increment(step);
    }
    assert_eq!(allocations(), before, "unkeyed sliding log check and peek");

    struct Req {
        api_key: String,
        org: u64,
        video: u64,
    }
    let r = |s: &str| s.parse().unwrap();
    let policy = Policy::builder()
        .scope(Scope::keyed_by_ref(
            "key",
            Gcra::new(r("600/min")),
            |q: &Req| Some(q.api_key.as_str()),
        ))
        .scope(Scope::keyed(
            "org_burst",
            SlidingLog::new(r("80/10s")),
            |q: &Req| Some(q.org),
        ))
        .scope(Scope::keyed(
            "org",
            SlidingWindow::new(r("300/min")),
            |q: &Req| Some(q.org),
        ))
        .scope(Scope::keyed(
            "video",
            FixedWindow::new(r("150/min")),
            |q: &Req| Some(q.video),
        ))
        .scope(Scope::keyed("pair", Gcra::new(r("100/min")), |q: &Req| {
            Some((q.org, q.video))
        }))
        .scope(Scope::unkeyed("global", Gcra::new(r("10000/s"))))
        .scope(
            Scope::keyed("shadow", FixedWindow::new(r("5/min")), |q: &Req| {
                Some(q.org)
            })
            .shadow(),
        )
        .scope(
            Scope::keyed("plan", SlidingWindow::new(r("50/min")), |q: &Req| {
                Some(q.org)
            })
            .limit_by(|_| Some(500)),
        )
        .build();
    let req = Req {
        api_key: "k1".into(),
        org: 7,
        video: 3,
    };
    // First sight of the keys stores them, and a sliding log grows its buffer (amortised)
    // until it can hold its limit; after that, checks allocate nothing.
    for _ in 0..100 {
        policy.check(&req, 1).unwrap();
    }
    let before = allocations();
    for _ in 0..50 {
        let d = policy.check(&req, 1).unwrap();
        assert_eq!(d.scope_count(), 8);
        std::hint::black_box(d.is_allowed());
    }
    assert_eq!(allocations(), before, "eight-scope policy check");
}
