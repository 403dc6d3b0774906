//! [`Decision`]: the answer to one check, with everything a response needs.

use std::time::Duration;

/// The outcome of a check: allowed or denied, with the quota's state after it.
///
/// A `Decision` is a small `Copy` value; producing one never allocates.
///
/// - [`limit`](Decision::limit): the most the limiter admits at once (the rate's count, or
///   the burst for GCRA).
/// - [`remaining`](Decision::remaining): what could still be admitted right now, after
///   this request if it was allowed. Never negative.
/// - [`reset_after`](Decision::reset_after): time until the quota is fully replenished
///   (zero for an untouched key).
/// - [`retry_after`](Decision::retry_after): on denial, time until this same request,
///   with its cost, would be allowed if nothing else happened. `None` when allowed.
#[derive(Clone, Copy)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(from = "repr::Plain", into = "repr::Plain")
)]
pub struct Decision {
    allowed: bool,
    limit: u64,
    /// `remaining` is `remaining_scaled / remaining_unit`, divided only when read: GCRA
    /// knows its remaining capacity in nanoseconds, and most checks never ask for it.
    remaining_scaled: u64,
    remaining_unit: u64,
    window_nanos: u64,
    reset_after_nanos: u64,
    retry_after_nanos: u64,
}

impl Decision {
    /// An allowed decision.
    pub const fn allow(limit: u64, remaining: u64, window: u64, reset_after: u64) -> Decision {
        Decision::allow_scaled(limit, remaining, 1, window, reset_after)
    }

    /// An allowed decision whose remaining count is `remaining_scaled / unit` (`unit`
    /// is raised to at least 1).
    pub const fn allow_scaled(
        limit: u64,
        remaining_scaled: u64,
        unit: u64,
        window: u64,
        reset_after: u64,
    ) -> Decision {
        Decision {
            allowed: true,
            limit,
            remaining_scaled,
            remaining_unit: if unit == 0 { 1 } else { unit },
            window_nanos: window,
            reset_after_nanos: reset_after,
            retry_after_nanos: 0,
        }
    }

    /// A denied decision; `retry_after` is in nanoseconds and is raised to at least 1.
    pub const fn deny(
        limit: u64,
        remaining: u64,
        window: u64,
        reset_after: u64,
        retry_after: u64,
    ) -> Decision {
        Decision {
            allowed: false,
            limit,
            remaining_scaled: remaining,
            remaining_unit: 1,
            window_nanos: window,
            reset_after_nanos: reset_after,
            retry_after_nanos: if retry_after == 0 { 1 } else { retry_after },
        }
    }

    /// A denied decision whose remaining count is `remaining_scaled / unit` (`unit` is
    /// raised to at least 1), computed only when read.
    pub const fn deny_scaled(
        limit: u64,
        remaining_scaled: u64,
        unit: u64,
        window: u64,
        reset_after: u64,
        retry_after: u64,
    ) -> Decision {
        let mut d = Decision::deny(limit, remaining_scaled, window, reset_after, retry_after);
        d.remaining_unit = if unit == 0 { 1 } else { unit };
        d
    }

    /// Whether the request may go through.
    pub fn is_allowed(&self) -> bool {
        self.allowed
    }

    /// Whether the request was refused.
    pub fn is_denied(&self) -> bool {
        !self.allowed
    }

    /// The quota's capacity.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// Units still available (after this request, if it was allowed).
    pub fn remaining(&self) -> u64 {
        self.remaining_scaled / self.remaining_unit
    }

    /// Whether at least `percent` % of the limit is in use, without dividing.
    pub fn used_at_least_percent(&self, percent: u64) -> bool {
        // used × 100 ≥ limit × p  ⇔  remaining ≤ ⌊limit × (100 − p) / 100⌋ =: m
        //                         ⇔  remaining_scaled < (m + 1) × unit
        match percent {
            0 => return true,
            101.. => return false,
            _ => {}
        }
        // ⌊L × (100 − p) / 100⌋ without a 128-bit division: L = 100q + r.
        let keep = 100 - percent;
        let m = self.limit / 100 * keep + self.limit % 100 * keep / 100;
        match (m + 1).checked_mul(self.remaining_unit) {
            Some(bound) => self.remaining_scaled < bound,
            None => true, // the bound exceeds any u64 remaining
        }
    }

    /// Units in use: `limit - remaining`.
    pub fn used(&self) -> u64 {
        self.limit.saturating_sub(self.remaining())
    }

    /// The quota's window (for headers such as the IETF `w` parameter).
    pub fn window(&self) -> Duration {
        Duration::from_nanos(self.window_nanos)
    }

    /// Time until the quota is fully replenished.
    pub fn reset_after(&self) -> Duration {
        Duration::from_nanos(self.reset_after_nanos)
    }

    /// On denial, time until this request would be allowed; `None` when allowed.
    pub fn retry_after(&self) -> Option<Duration> {
        (!self.allowed).then(|| Duration::from_nanos(self.retry_after_nanos))
    }

    /// [`reset_after`](Decision::reset_after) in nanoseconds.
    pub fn reset_after_nanos(&self) -> u64 {
        self.reset_after_nanos
    }

    /// [`retry_after`](Decision::retry_after) in nanoseconds; 0 when allowed.
    pub fn retry_after_nanos(&self) -> u64 {
        self.retry_after_nanos
    }

    /// [`window`](Decision::window) in nanoseconds.
    pub fn window_nanos(&self) -> u64 {
        self.window_nanos
    }
}

/// The position of the quota closest to exhaustion among `(remaining, reset_after)`
/// pairs: the least remaining; ties go to the longer reset, then to the first.
pub(crate) fn closest_to_exhaustion(
    quotas: impl IntoIterator<Item = (u64, Duration)>,
) -> Option<usize> {
    let rank = |(remaining, reset): (u64, Duration)| (remaining, std::cmp::Reverse(reset));
    quotas
        .into_iter()
        .enumerate()
        .reduce(|best, next| {
            if rank(next.1) < rank(best.1) {
                next
            } else {
                best
            }
        })
        .map(|(i, _)| i)
}

impl Decision {
    fn key(&self) -> (bool, u64, u64, u64, u64, u64) {
        (
            self.allowed,
            self.limit,
            self.remaining(),
            self.window_nanos,
            self.reset_after_nanos,
            self.retry_after_nanos,
        )
    }
}

impl PartialEq for Decision {
    fn eq(&self, other: &Decision) -> bool {
        self.key() == other.key()
    }
}

impl Eq for Decision {}

impl std::hash::Hash for Decision {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.key().hash(state)
    }
}

impl std::fmt::Debug for Decision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decision")
            .field("allowed", &self.allowed)
            .field("limit", &self.limit)
            .field("remaining", &self.remaining())
            .field("window", &self.window())
            .field("reset_after", &self.reset_after())
            .field("retry_after", &self.retry_after())
            .finish()
    }
}

#[cfg(feature = "serde")]
mod repr {
    /// The serialised form: plain values.
    #[derive(serde::Serialize, serde::Deserialize)]
    pub(super) struct Plain {
        allowed: bool,
        limit: u64,
        remaining: u64,
        window_nanos: u64,
        reset_after_nanos: u64,
        retry_after_nanos: u64,
    }

    impl From<Plain> for super::Decision {
        fn from(p: Plain) -> Self {
            super::Decision {
                allowed: p.allowed,
                limit: p.limit,
                remaining_scaled: p.remaining,
                remaining_unit: 1,
                window_nanos: p.window_nanos,
                reset_after_nanos: p.reset_after_nanos,
                retry_after_nanos: p.retry_after_nanos,
            }
        }
    }

    impl From<super::Decision> for Plain {
        fn from(d: super::Decision) -> Self {
            Plain {
                allowed: d.allowed,
                limit: d.limit,
                remaining: d.remaining(),
                window_nanos: d.window_nanos,
                reset_after_nanos: d.reset_after_nanos,
                retry_after_nanos: d.retry_after_nanos,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Decision;

    #[test]
    fn near_limit_without_division_matches_the_plain_arithmetic() {
        for limit in [1u64, 3, 10, 7, 100, 1_000_003] {
            for unit in [1u64, 7, 1_000_000_000] {
                for rem in [
                    0u64,
                    1,
                    2,
                    limit / 5,
                    limit / 2,
                    limit.saturating_sub(1),
                    limit,
                ] {
                    for scaled in [rem * unit, rem * unit + unit - 1] {
                        let d = Decision::allow_scaled(limit, scaled, unit, 1, 0);
                        for p in [0u64, 1, 50, 80, 99, 100, 101] {
                            let plain = p <= 100 && d.used() * 100 >= limit * p;
                            assert_eq!(
                                d.used_at_least_percent(p),
                                plain,
                                "{limit} {unit} {scaled} {p}"
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn near_limit_matches_wide_arithmetic_at_any_magnitude() {
        // Limits, units and remaining counts up to u64::MAX, where the bound can
        // overflow `u64`.
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = |bits: u32| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            if bits >= 64 {
                x
            } else {
                x & ((1 << bits) - 1)
            }
        };
        for _ in 0..200_000 {
            let bits = next(7) as u32 % 65;
            let limit = next(bits).max(1);
            let bits = next(7) as u32 % 65;
            let unit = next(bits).max(1);
            let rem = next(7) % 2 == 0;
            let remaining = if rem {
                limit - next(8).min(limit - 1)
            } else {
                next(64) % limit
            };
            let Some(base) = remaining.checked_mul(unit) else {
                continue;
            };
            let scaled = base.saturating_add(next(64) % unit);
            let d = Decision::allow_scaled(limit, scaled, unit, 1, 0);
            for p in [0u64, 1, 37, 50, 80, 99, 100, 101] {
                let used = u128::from(limit - (scaled / unit).min(limit));
                let plain = p <= 100 && used * 100 >= u128::from(limit) * u128::from(p);
                assert_eq!(
                    d.used_at_least_percent(p),
                    plain,
                    "limit {limit} unit {unit} scaled {scaled} p {p}"
                );
            }
        }
    }
}
