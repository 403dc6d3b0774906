//! Formatting headers allocates nothing itself: with a sink that stores into memory it
//! already has, a full header set costs zero allocations; with `Vec<(String, String)>`,
//! exactly the stored names and values.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, UNIX_EPOCH};

use ratewarden::headers::{HeaderFormat, HeaderSink, Outcome, Report, Reset, RetryAfter, Snapshot};

struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards every call unchanged to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
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
            let before = ALLOCATIONS.load(Ordering::Relaxed);
            format.write(&outcome, &mut fixed).unwrap();
            assert_eq!(
                ALLOCATIONS.load(Ordering::Relaxed),
                before,
                "{format:?}, {n} scopes"
            );
            assert!(fixed.headers >= 2);

            let mut pairs: Vec<(String, String)> = Vec::with_capacity(16);
            let before = ALLOCATIONS.load(Ordering::Relaxed);
            format.write(&outcome, &mut pairs).unwrap();
            let spent = ALLOCATIONS.load(Ordering::Relaxed) - before;
            assert_eq!(
                spent,
                2 * pairs.len(),
                "{format:?}: one name and one value per header"
            );
        }
    }
}
