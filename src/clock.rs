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

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

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
    /// Highest reading returned so far; `None` for clocks known to be monotonic.
    latest: Option<Arc<AtomicU64>>,
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
            unix_at_origin: u64::try_from(unix.as_nanos()).unwrap_or(u64::MAX / 2),
            latest: None,
        }
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
            latest: Some(Arc::new(AtomicU64::new(unix_now))),
        }
    }

    /// The current time in nanoseconds since the Unix epoch. Never decreases.
    #[inline]
    pub fn now(&self) -> Nanos {
        // The raw counter scaled to nanoseconds: no `Duration` round trip on the hot path.
        let elapsed = self.inner.delta_as_nanos(self.origin, self.inner.raw());
        let reading = self.unix_at_origin.saturating_add(elapsed);
        match &self.latest {
            None => reading,
            Some(latest) => {
                let seen = latest.load(Ordering::Relaxed);
                if reading <= seen {
                    seen
                } else {
                    latest.fetch_max(reading, Ordering::Relaxed).max(reading)
                }
            }
        }
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
