//! GCRA (generic cell rate algorithm): an exact token bucket in one `u64`.
//!
//! Rate `n` per `W` with burst `b` (default `b = n`). The emission interval
//! `T = ceil(W / n)`, so no window ever admits more than `n` in steady state. The state
//! is the theoretical arrival time `tat` (fresh: `0`, which is at or before any `now`).
//! With `base = max(tat, now)` and `new = base + cost × T`, a request is allowed iff
//! `new − now ≤ b × T`, and then `tat := new`.

use super::{Algorithm, Packed, SeqCell};
#[cfg(feature = "serde")]
use crate::snapshot::{AlgorithmKind, SnapshotError, StateSnapshot};
use crate::{Decision, Nanos, Rate, RateError, MAX_WINDOW};

/// GCRA parameters.
///
/// ```
/// use ratewarden::{Gcra, Rate, UnkeyedLimiter, Clock};
/// use std::time::Duration;
///
/// let (clock, mock) = Clock::mock();
/// // 1 per second on average, bursts of up to 3.
/// let gcra = Gcra::new(Rate::per_second(1)?).with_burst(3)?;
/// let limiter = UnkeyedLimiter::with_clock(gcra, clock);
/// for _ in 0..3 {
///     assert!(limiter.check(1)?.is_allowed());
/// }
/// let denied = limiter.check(1)?;
/// assert_eq!(denied.retry_after(), Some(Duration::from_secs(1)));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Gcra {
    rate: Rate,
    burst: u64,
    /// Emission interval `T`, nanoseconds.
    interval: u64,
    /// Burst tolerance `b × T`, nanoseconds.
    tolerance: u64,
}

impl Gcra {
    /// GCRA for `rate`, with a burst of the rate's count.
    pub fn new(rate: Rate) -> Gcra {
        let interval = rate.window_nanos().div_ceil(rate.count());
        Gcra {
            rate,
            burst: rate.count(),
            interval,
            // count × ceil(W / count) < W + count ≤ 2 × MAX_WINDOW: fits in u64.
            tolerance: rate.count() * interval,
        }
    }

    /// The same rate with another burst. Rejects 0 and a burst whose tolerance
    /// (`burst × T`) is longer than [`MAX_WINDOW`].
    pub fn with_burst(self, burst: u64) -> Result<Gcra, RateError> {
        if burst == 0 {
            return Err(RateError::ZeroBurst);
        }
        let tolerance = burst
            .checked_mul(self.interval)
            .filter(|t| u128::from(*t) <= MAX_WINDOW.as_nanos())
            .ok_or(RateError::BurstTooLarge {
                burst,
                max: MAX_WINDOW,
            })?;
        Ok(Gcra {
            burst,
            tolerance,
            ..self
        })
    }

    /// The burst: the most admitted at once from a fresh key.
    pub fn burst(&self) -> u64 {
        self.burst
    }

    /// The emission interval `T` in nanoseconds.
    pub fn interval_nanos(&self) -> u64 {
        self.interval
    }
}

/// Whether a request of `step` (its cost in emission intervals) fits on top of
/// `backlog` within the tolerance `tau`: `backlog + step <= tau`, without the addition,
/// so that the test is one step shorter from the clock reading (`backlog` is the only
/// term that depends on the time). Exact where the sum would overflow, too.
#[inline(always)]
fn fits(backlog: u64, step: u64, tau: u64) -> bool {
    step <= tau && backlog <= tau - step
}

impl Algorithm for Gcra {
    fn pack(&self) -> Option<Packed> {
        let r = self.rate;
        Some([
            r.count(),
            r.window_nanos(),
            self.burst,
            self.interval,
            self.tolerance,
            0,
        ])
    }

    fn unpack(w: &Packed) -> Option<Self> {
        Some(Gcra {
            rate: Rate::from_parts(w[0], w[1])?,
            burst: w[2],
            interval: w[3],
            tolerance: w[4],
        })
    }

    type State = u64;
    type Cell = SeqCell<u64>;

    fn rate(&self) -> Rate {
        self.rate
    }

    fn with_rate(&self, rate: Rate) -> Self {
        Gcra::new(rate)
    }

    fn limit(&self) -> u64 {
        self.burst
    }

    fn fresh(&self) -> u64 {
        0
    }

    #[inline]
    fn decide(&self, tat: &mut u64, now: Nanos, cost: u64) -> Decision {
        let (t, tau, w) = (self.interval, self.tolerance, self.rate.window_nanos());
        let base = (*tat).max(now);
        let step = cost.saturating_mul(t);
        let new = base.saturating_add(step);
        if fits(base - now, step, tau) {
            Decision::allow_scaled(self.burst, tau - (new - now), t, w, new - now)
        } else {
            let backlog = base - now;
            // The remaining count is divided out only if someone reads it.
            Decision::deny_scaled(
                self.burst,
                tau.saturating_sub(backlog),
                t,
                w,
                backlog,
                (new - now).saturating_sub(tau),
            )
        }
    }

    /// One computation of `new` for both the decision and the commit.
    #[inline]
    fn decide_and_commit(&self, tat: &mut u64, now: Nanos, cost: u64) -> Decision {
        let (t, tau, w) = (self.interval, self.tolerance, self.rate.window_nanos());
        let base = (*tat).max(now);
        let step = cost.saturating_mul(t);
        let new = base.saturating_add(step);
        if fits(base - now, step, tau) {
            if cost > 0 {
                // Below u64::MAX, which is never a state (snapshots refuse it).
                *tat = new.min(u64::MAX - 1);
            }
            Decision::allow_scaled(self.burst, tau - (new - now), t, w, new - now)
        } else {
            let backlog = base - now;
            Decision::deny_scaled(
                self.burst,
                tau.saturating_sub(backlog),
                t,
                w,
                backlog,
                (new - now).saturating_sub(tau),
            )
        }
    }

    #[inline]
    fn commit(&self, tat: &mut u64, now: Nanos, cost: u64) {
        // Saturating, and below u64::MAX, which is never a state (snapshots refuse it).
        *tat = (*tat)
            .max(now)
            .saturating_add(cost.saturating_mul(self.interval))
            .min(u64::MAX - 1);
    }

    fn refund(&self, tat: &mut u64, now: Nanos, cost: u64) {
        if *tat > now {
            *tat = tat
                .saturating_sub(cost.saturating_mul(self.interval))
                .max(now);
        }
    }

    fn is_idle(&self, tat: &u64, now: Nanos) -> bool {
        *tat <= now
    }

    /// The backlog `tat − now` is what a key has used, in time at the old emission
    /// interval; it is rescaled to the new one (rounded up), so the units used stay used:
    /// 5 used of 10 per minute leaves 95 of 100 per minute. A key that used more than the
    /// new burst owes the difference and waits until it has drained at the new rate, so
    /// that changing the limit back and forth never admits more than the larger burst.
    fn carry_over(&self, next: &Gcra, tat: &mut u64, now: Nanos) {
        if self.interval == next.interval || *tat <= now {
            return;
        }
        let backlog = u128::from(*tat - now) * u128::from(next.interval);
        let backlog = backlog.div_ceil(u128::from(self.interval));
        let backlog = u64::try_from(backlog).unwrap_or(u64::MAX);
        // Below u64::MAX, which is never a state (snapshots refuse it).
        *tat = now.saturating_add(backlog).min(u64::MAX - 1);
    }

    #[cfg(feature = "serde")]
    fn snapshot_kind(&self) -> Option<AlgorithmKind> {
        Some(AlgorithmKind::Gcra { burst: self.burst })
    }

    #[cfg(feature = "serde")]
    fn export_state(&self, tat: &u64) -> Option<StateSnapshot> {
        Some(StateSnapshot::Gcra(*tat))
    }

    #[cfg(feature = "serde")]
    fn recorded(&self, kind: &AlgorithmKind, rate: Rate) -> Result<Gcra, SnapshotError> {
        match *kind {
            // The default burst as `new` makes it (which `with_burst` would refuse at the
            // longest windows, where the rounded-up interval spans a little more).
            AlgorithmKind::Gcra { burst } if burst == rate.count() => Ok(Gcra::new(rate)),
            AlgorithmKind::Gcra { burst } => {
                Gcra::new(rate)
                    .with_burst(burst)
                    .map_err(|e| SnapshotError::Corrupted {
                        what: "gcra parameters".to_owned(),
                        reason: e.to_string(),
                    })
            }
            _ => Err(SnapshotError::AlgorithmMismatch {
                expected: "gcra",
                found: kind.name(),
            }),
        }
    }

    #[cfg(feature = "serde")]
    fn import_state(&self, state: &StateSnapshot) -> Result<u64, String> {
        match *state {
            // u64::MAX is never a state: arrival times saturate below it.
            StateSnapshot::Gcra(tat) if tat < u64::MAX => Ok(tat),
            StateSnapshot::Gcra(_) => Err("arrival time out of range".to_owned()),
            _ => Err("not a gcra state".to_owned()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Near the end of the time range, where the backlog plus the cost passes
    /// `u64::MAX`: a request that does not fit is denied (the saturated sum used to let
    /// it through) and the state is left alone. Its retry-after is computed from the
    /// saturated sum there: 1 ns, not the real wait (a cold branch for it measured as
    /// un-inlining the unkeyed check).
    #[test]
    fn a_request_that_does_not_fit_near_the_end_of_time_is_denied() {
        let gcra = Gcra::new(Rate::per_second(1).unwrap())
            .with_burst(3)
            .unwrap();
        let now = u64::MAX - 2_000_000_000;
        for decide in [Gcra::decide, Gcra::decide_and_commit] {
            let mut tat = u64::MAX - 1;
            let d = decide(&gcra, &mut tat, now, 2);
            assert!(d.is_denied());
            assert!(d.retry_after().is_some_and(|r| r > Duration::ZERO));
            assert_eq!(tat, u64::MAX - 1);
        }
    }

    #[test]
    fn fits_is_the_sum_test_without_overflow() {
        let edges = [0, 1, 2, 1_000, u64::MAX / 2, u64::MAX - 1, u64::MAX];
        for backlog in edges {
            for step in edges {
                for tau in edges {
                    let wide = u128::from(backlog) + u128::from(step) <= u128::from(tau);
                    assert_eq!(fits(backlog, step, tau), wide, "{backlog} {step} {tau}");
                }
            }
        }
    }

    const S: u64 = 1_000_000_000;

    fn run(alg: &Gcra, tat: &mut u64, now: Nanos, cost: u64) -> Decision {
        let d = alg.decide(tat, now, cost);
        if d.is_allowed() {
            alg.commit(tat, now, cost);
        }
        d
    }

    #[test]
    fn burst_then_steady_rate() {
        // 10 per second (T = 100 ms), burst 5.
        let alg = Gcra::new(Rate::per_second(10).unwrap())
            .with_burst(5)
            .unwrap();
        let mut tat = alg.fresh();
        let t0 = 1_000 * S;
        for left in (0..5).rev() {
            let d = run(&alg, &mut tat, t0, 1);
            assert!(d.is_allowed());
            assert_eq!(d.remaining(), left);
        }
        let d = run(&alg, &mut tat, t0, 1);
        assert!(d.is_denied());
        assert_eq!(d.retry_after(), Some(Duration::from_millis(100)));
        assert_eq!(d.reset_after(), Duration::from_millis(500));
        // then exactly one every 100 ms
        for k in 1..=20u64 {
            let at = t0 + k * S / 10;
            assert!(run(&alg, &mut tat, at - 1, 1).is_denied(), "k={k}");
            assert!(run(&alg, &mut tat, at, 1).is_allowed(), "k={k}");
        }
    }

    #[test]
    fn interval_rounds_up_so_no_window_admits_more_than_n() {
        // 3 per 10 ns: T = 4 ns (not 3.33), so a steady stream gets 3 per 12 ns.
        let alg = Gcra::new(Rate::new(3, Duration::from_nanos(10)).unwrap());
        assert_eq!(alg.interval_nanos(), 4);
        let mut tat = alg.fresh();
        let admitted = (0..1000)
            .filter(|&t| run(&alg, &mut tat, t, 1).is_allowed())
            .count();
        assert!(admitted <= 3 + 1000 / 4 + 1, "{admitted}");
    }

    #[test]
    fn weighted_cost_and_refund_never_fuller_than_fresh() {
        let alg = Gcra::new(Rate::per_second(10).unwrap());
        let mut tat = alg.fresh();
        let d = run(&alg, &mut tat, S, 7);
        assert_eq!(d.remaining(), 3);
        let d = run(&alg, &mut tat, S, 4);
        assert_eq!(d.retry_after(), Some(Duration::from_millis(100)));
        alg.refund(&mut tat, S, 2);
        assert_eq!(alg.decide(&mut tat.clone(), S, 0).remaining(), 5);
        alg.refund(&mut tat, S, 100);
        assert_eq!(tat, S);
        assert!(alg.is_idle(&tat, S));
    }

    #[test]
    fn burst_validation() {
        let g = Gcra::new(Rate::per_second(10).unwrap());
        assert_eq!(g.with_burst(0), Err(RateError::ZeroBurst));
        assert!(matches!(
            g.with_burst(u64::MAX),
            Err(RateError::BurstTooLarge { .. })
        ));
        assert_eq!(g.with_burst(1).unwrap().limit(), 1);
    }
}
