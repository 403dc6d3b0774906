//! [`Clock`]: the one source of time for limiters and policies.
//!
//! Time inside the crate is integer nanoseconds since the Unix epoch ([`Nanos`]). A real
//! clock reads quanta's monotonic clock and adds the offset to Unix time measured once,
//! when the clock is built; so an hourly fixed window resets on the hour, and the header
//! layer can turn `now + reset_after` into an absolute timestamp without a second clock.
//! A mock clock starts at the Unix epoch (`0`) and moves only when the test moves it.
//!
//! A reading earlier than one already returned (a mock stepped back, or a foreign clock
//! that is not monotonic) is replaced by the latest reading: time that appears to go
//! backwards counts as no time passing. quanta's own real clock is monotonic, so that
//! guard costs nothing there.
//!
//! [`Clock::coarse`] trades resolution for speed: it reads a timestamp that one shared
//! background thread refreshes every [`COARSE_INTERVAL`], a single atomic load instead of
//! a clock read. Decisions then see time in steps of about a millisecond (later under
//! heavy scheduling delay): requests within one step count as simultaneous, and a
//! `retry_after` may be up to a step longer than necessary. Limits are still never
//! exceeded; the trade suits limits measured in seconds or longer.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How often [`Clock::coarse`]'s background thread refreshes its timestamp.
pub const COARSE_INTERVAL: Duration = Duration::from_millis(1);

/// Nanoseconds since the Unix epoch, as read from a [`Clock`].
pub type Nanos = u64;

/// A cheap-to-clone handle on a time source.
///
/// ```
/// use ratewarden::Clock;
/// use std::time::Duration;
///
/// let (clock, mock) = Clock::mock();
/// assert_eq!(clock.now(), 0);
/// mock.increment(Duration::from_secs(2));
/// assert_eq!(clock.now(), 2_000_000_000);
/// mock.decrement(Duration::from_secs(1)); // backwards: no time passes
/// assert_eq!(clock.now(), 2_000_000_000);
/// ```
#[derive(Clone, Debug)]
pub struct Clock {
    inner: quanta::Clock,
    /// A raw reading of `inner` taken at construction.
    origin: u64,
    unix_at_origin: Nanos,
    mode: Mode,
}

/// How a reading is taken: one match per reading.
#[derive(Clone, Debug)]
enum Mode {
    /// quanta's real clock, monotonic: read as it is.
    Monotonic,
    /// Any other quanta clock (a mock): guarded by the highest reading returned so far.
    Guarded(Arc<AtomicU64>),
    /// The timestamp [`Clock::coarse`]'s background thread refreshes.
    Coarse(&'static AtomicU64),
    /// A caller's function ([`Clock::from_fn`]), guarded like a mock.
    Source(Arc<Source>),
}

/// A caller's time source and the highest reading returned so far.
struct Source {
    read: Box<dyn Fn() -> Nanos + Send + Sync>,
    latest: AtomicU64,
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Source")
            .field("latest", &self.latest.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// Returns `reading`, or the highest reading `latest` has seen if that is later.
#[inline]
fn guarded(latest: &AtomicU64, reading: Nanos) -> Nanos {
    let seen = latest.load(Ordering::Relaxed);
    if reading <= seen {
        seen
    } else {
        latest.fetch_max(reading, Ordering::Relaxed).max(reading)
    }
}

impl Clock {
    /// The real, monotonic clock, aligned to Unix time once at construction.
    pub fn new() -> Clock {
        let inner = quanta::Clock::new();
        let origin = inner.raw();
        let unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO);
        Clock {
            inner,
            origin,
            // At most half the range: readings add elapsed time without saturating.
            unix_at_origin: u64::try_from(unix.as_nanos())
                .map_or(u64::MAX / 2, |n| n.min(u64::MAX / 2)),
            mode: Mode::Monotonic,
        }
    }

    /// A real clock read from a timestamp refreshed every [`COARSE_INTERVAL`] by one
    /// shared background thread (`ratewarden-clock`, started on first use): a reading is
    /// one atomic load. See the module documentation for what the coarser time means for
    /// decisions. Should the thread fail to start, this is [`Clock::new`].
    ///
    /// ```
    /// use ratewarden::{Clock, Gcra, UnkeyedLimiter};
    ///
    /// let limiter = UnkeyedLimiter::with_clock(Gcra::new("1000/s".parse()?), Clock::coarse());
    /// assert!(limiter.check(1)?.is_allowed());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn coarse() -> Clock {
        static STAMP: OnceLock<Option<&'static AtomicU64>> = OnceLock::new();
        let stamp = *STAMP.get_or_init(|| {
            let precise = Clock::new();
            let stamp: &'static AtomicU64 = Box::leak(Box::new(AtomicU64::new(precise.now())));
            std::thread::Builder::new()
                .name("ratewarden-clock".into())
                .spawn(move || loop {
                    std::thread::sleep(COARSE_INTERVAL);
                    stamp.store(precise.now(), Ordering::Relaxed);
                })
                .ok()
                .map(|_| stamp)
        });
        let clock = Clock::new();
        match stamp {
            Some(stamp) => Clock {
                mode: Mode::Coarse(stamp),
                ..clock
            },
            None => clock,
        }
    }

    /// Whether this clock reads a refreshed timestamp ([`Clock::coarse`]).
    pub fn is_coarse(&self) -> bool {
        matches!(self.mode, Mode::Coarse(_))
    }

    /// A mock clock starting at the Unix epoch, and the handle that moves it.
    pub fn mock() -> (Clock, Arc<quanta::Mock>) {
        let (inner, mock) = quanta::Clock::mock();
        (Clock::from_quanta(inner, 0), mock)
    }

    /// Wraps any quanta clock (e.g. a mock) whose current reading corresponds to
    /// `unix_now` nanoseconds since the Unix epoch. Readings are guarded against going
    /// backwards.
    pub fn from_quanta(inner: quanta::Clock, unix_now: Nanos) -> Clock {
        let origin = inner.raw();
        Clock {
            inner,
            origin,
            unix_at_origin: unix_now,
            mode: Mode::Guarded(Arc::new(AtomicU64::new(unix_now))),
        }
    }

    /// A clock that reads `read`, which returns nanoseconds since the Unix epoch: time
    /// from a simulation, a test harness or any other source. Readings are guarded
    /// against going backwards, as for a mock.
    ///
    /// ```
    /// use ratewarden::{Clock, Gcra, UnkeyedLimiter};
    /// use std::sync::atomic::{AtomicU64, Ordering};
    /// use std::sync::Arc;
    ///
    /// let reads = Arc::new(AtomicU64::new(0));
    /// let counted = reads.clone();
    /// let clock = Clock::from_fn(move || {
    ///     counted.fetch_add(1, Ordering::Relaxed);
    ///     1_700_000_000_000_000_000
    /// });
    /// let limiter = UnkeyedLimiter::with_clock(Gcra::new("10/s".parse()?), clock);
    /// limiter.check(1)?;
    /// assert_eq!(reads.load(Ordering::Relaxed), 1); // one reading per check
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn from_fn(read: impl Fn() -> Nanos + Send + Sync + 'static) -> Clock {
        Clock {
            mode: Mode::Source(Arc::new(Source {
                read: Box::new(read),
                latest: AtomicU64::new(0),
            })),
            ..Clock::new()
        }
    }

    /// The current time in nanoseconds since the Unix epoch. Never decreases.
    #[inline]
    pub fn now(&self) -> Nanos {
        // Tested in turn (two compares where a `match` made an indirect jump).
        if let Mode::Monotonic = self.mode {
            self.reading()
        } else if let Mode::Coarse(stamp) = self.mode {
            // Written only by one thread from a monotonic clock: never decreases.
            stamp.load(Ordering::Relaxed)
        } else {
            // Mocks and caller's sources: out of line, so that the real clocks inline.
            self.now_guarded()
        }
    }

    #[cold]
    #[inline(never)]
    fn now_guarded(&self) -> Nanos {
        match &self.mode {
            Mode::Guarded(latest) => guarded(latest, self.reading()),
            Mode::Source(source) => guarded(&source.latest, (source.read)()),
            Mode::Monotonic | Mode::Coarse(_) => self.reading(),
        }
    }

    /// The raw counter scaled to nanoseconds: no `Duration` round trip on the hot path.
    #[inline]
    fn reading(&self) -> Nanos {
        let elapsed = self.inner.delta_as_nanos(self.origin, self.inner.raw());
        // Not saturating (one step less between the counter and a decision): a real
        // clock starts at today's Unix time and would need five centuries of uptime to
        // wrap, and the other modes guard their readings against going backwards.
        self.unix_at_origin.wrapping_add(elapsed)
    }

    /// The current time as a [`SystemTime`], for headers that carry absolute timestamps.
    pub fn now_system(&self) -> SystemTime {
        to_system_time(self.now())
    }
}

impl Default for Clock {
    fn default() -> Clock {
        Clock::new()
    }
}

/// Converts a [`Nanos`] reading into a [`SystemTime`].
pub fn to_system_time(nanos: Nanos) -> SystemTime {
    UNIX_EPOCH + Duration::from_nanos(nanos)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn real_clock_is_close_to_system_time() {
        let clock = Clock::new();
        let sys = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
        let ours = Duration::from_nanos(clock.now());
        let diff = sys.abs_diff(ours);
        assert!(diff < Duration::from_secs(5), "{diff:?}");
        assert!(clock.now() <= clock.now());
    }

    #[test]
    fn coarse_clock_moves_in_steps_and_tracks_real_time() {
        let coarse = Clock::coarse();
        assert!(coarse.is_coarse() && !Clock::new().is_coarse());
        let first = coarse.now();
        let sys = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
        assert!(sys.abs_diff(Duration::from_nanos(first)) < Duration::from_secs(5));
        // It moves on its own, and never backwards.
        let end = std::time::Instant::now() + Duration::from_secs(10);
        let mut last = first;
        while last == first {
            assert!(
                std::time::Instant::now() < end,
                "the coarse clock never moved"
            );
            std::thread::sleep(Duration::from_millis(1));
            let next = coarse.now();
            assert!(next >= last);
            last = next;
        }
        // A second coarse clock shares the same timestamp.
        assert!(Clock::coarse().now() >= last);
    }

    #[test]
    fn a_function_clock_never_goes_backwards() {
        let next = Arc::new(AtomicU64::new(500));
        let source = next.clone();
        let clock = Clock::from_fn(move || source.load(Ordering::SeqCst));
        assert_eq!(clock.now(), 500);
        next.store(100, Ordering::SeqCst);
        assert_eq!(clock.now(), 500);
        next.store(501, Ordering::SeqCst);
        assert_eq!(clock.clone().now(), 501);
        assert!(!clock.is_coarse());
    }

    #[test]
    fn mock_never_goes_backwards() {
        let (clock, mock) = Clock::mock();
        mock.increment(Duration::from_nanos(500));
        assert_eq!(clock.now(), 500);
        mock.decrement(Duration::from_nanos(400));
        assert_eq!(clock.now(), 500);
        mock.increment(Duration::from_nanos(401));
        assert_eq!(clock.now(), 501);
        // clones share the guard
        let other = clock.clone();
        mock.decrement(Duration::from_nanos(10));
        assert_eq!(other.now(), 501);
    }
}
