//! The algorithms, each a pure state machine over a small per-key state and a time
//! in nanoseconds. No clocks or maps live here; stores ([`crate::KeyedLimiter`],
//! [`crate::UnkeyedLimiter`], the Redis backend's script) own concurrency and call these,
//! keeping an unkeyed state in one of the cells defined here ([`StateCell`]).
//!
//! Every algorithm file has the same shape: its parameters type (which implements
//! [`Algorithm`]), its per-key state type, the pure [`Algorithm::decide`] and
//! [`Algorithm::commit`] functions, and its tests (inline in `gcra.rs`; for the others,
//! in a `tests.rs` beside the file, such as `fixed_window/tests.rs` or
//! `calendar/tests.rs`).
//!
//! | algorithm | state per key | exactness |
//! |---|---|---|
//! | [`FixedWindow`] | window start + count | exact per window; up to 2× across a boundary |
//! | [`SlidingLog`] | admitted (time, cost) entries | exact rolling window |
//! | [`SlidingWindow`] | previous + current count | weighted approximation of a rolling window |
//! | [`Gcra`] | theoretical arrival time (`u64`) | exact token bucket with burst |
//! | [`CalendarQuota`] | period start, end + count | exact per calendar day or month |
//!
//! ## Live limit changes
//!
//! A limit replaced at run time ([`KeyedLimiter::set_rate`](crate::KeyedLimiter::set_rate),
//! [`Policy::set_rate`](crate::Policy::set_rate)) keeps each key's state, carried over by
//! [`Algorithm::carry_over`], so that what a key has used stays used:
//!
//! | algorithm | what carries over mid-window |
//! |---|---|
//! | [`FixedWindow`] | the count and the window's start: 8 used of 10 leaves 92 of 100; after a downgrade to 5 the key waits for its window to end, which does not move |
//! | [`SlidingLog`] | every logged entry, expiring when it would have |
//! | [`SlidingWindow`] | both counts; with a new window length, the estimate in use (rounded up) becomes the count of the new window `now` falls in |
//! | [`Gcra`] | the backlog, rescaled to the new emission interval: 5 used of 10/min leaves 95 of 100/min; more used than the new burst is owed and drains at the new rate |
//! | [`CalendarQuota`] | the count and its period: a new count applies to what the period has used |
//!
//! Changing a limit back and forth therefore never admits more than the larger limit
//! in a window (a burst, for GCRA).

mod calendar;
mod cell;
mod fixed_window;
mod gcra;
mod sliding_log;
mod sliding_window;

use std::fmt::Debug;

pub use calendar::{AnchorError, CalendarQuota, CalendarState, CycleAnchor, Period, NOMINAL_MONTH};
pub use cell::{SeqCell, StateCell, Words};
pub use fixed_window::{Anchor, FixedWindow, FixedWindowState};
pub use gcra::Gcra;
pub use sliding_log::{SlidingLog, SlidingLogState};
pub use sliding_window::{SlidingWindow, SlidingWindowState};

#[cfg(feature = "serde")]
use crate::snapshot::{AlgorithmKind, SnapshotError, StateSnapshot};
use crate::{Decision, Nanos, Rate};

/// An algorithm's parameters as words: see [`Algorithm::pack`].
pub type Packed = [u64; 6];

/// A rate-limiting algorithm: parameters plus pure functions over a per-key state.
///
/// Contract, shared by all implementations and relied on by stores:
///
/// - [`decide`](Algorithm::decide) consumes nothing: it may only bring the state up to
///   `now` (roll a window, drop expired entries), so that calling it twice at the same
///   `now` gives the same answer. [`peek`](Algorithm::peek) does not even that.
/// - [`commit`](Algorithm::commit) is called only after an allowing `decide` or
///   [`peek`](Algorithm::peek) with the same `now` and `cost` on the same state, and
///   consumes exactly `cost`; after a `peek` the state has not been brought up to `now`,
///   so `commit` must do that itself.
/// - A fresh state admits any `cost <= capacity()`.
/// - A state for which [`is_idle`](Algorithm::is_idle) holds behaves exactly like
///   [`fresh`](Algorithm::fresh) from then on, so a store may drop it.
pub trait Algorithm: Clone + Debug + Send + Sync + 'static {
    /// The per-key state.
    type State: Clone + Debug + Send + Sync + 'static;
    /// How an unkeyed limiter keeps its one state shared between threads (a keyed
    /// store keeps plain states under its shard locks).
    type Cell: StateCell<State = Self::State>;

    /// The rate this algorithm enforces.
    fn rate(&self) -> Rate;
    /// The same algorithm with another rate (a per-plan or per-key limit); GCRA's burst
    /// becomes the new rate's count.
    fn with_rate(&self, rate: Rate) -> Self;
    /// The limit reported in decisions.
    fn limit(&self) -> u64;
    /// The largest cost a single request may have.
    fn capacity(&self) -> u64 {
        self.limit()
    }
    /// The state of a key never seen.
    fn fresh(&self) -> Self::State;
    /// The decision for a request of `cost` (`1..=capacity()`, or 0) at `now`,
    /// consuming nothing (the state may be brought up to `now`; see the contract).
    fn decide(&self, state: &mut Self::State, now: Nanos, cost: u64) -> Decision;
    /// Consumes `cost` at `now`; see the trait contract.
    fn commit(&self, state: &mut Self::State, now: Nanos, cost: u64);
    /// The decision [`decide`](Algorithm::decide) gives, leaving the state exactly as it
    /// is: what peeks use. `decide` may bring a state up to `now` (a sliding window
    /// rolls, a log drops expired entries), which a peek must not do — a peek at a later
    /// time would otherwise drop what checks at the present time still count. The
    /// default decides on a copy; an algorithm whose state is costly to copy overrides it.
    #[inline]
    fn peek(&self, state: &Self::State, now: Nanos, cost: u64) -> Decision {
        self.decide(&mut state.clone(), now, cost)
    }
    /// [`decide`](Algorithm::decide), then [`commit`](Algorithm::commit) if allowed: what
    /// a check does. An algorithm may fuse the two to share their arithmetic.
    #[inline]
    fn decide_and_commit(&self, state: &mut Self::State, now: Nanos, cost: u64) -> Decision {
        let decision = self.decide(state, now, cost);
        if decision.is_allowed() {
            self.commit(state, now, cost);
        }
        decision
    }
    /// Gives back up to `cost`, never leaving the state fuller than fresh.
    fn refund(&self, state: &mut Self::State, now: Nanos, cost: u64);
    /// Whether the state is indistinguishable from fresh at `now` and at every later
    /// time. Stores ask about a moment in the past (a grace period ago), so this must
    /// hold for any `now`, including one before the state's own events.
    fn is_idle(&self, state: &Self::State, now: Nanos) -> bool;

    /// Carries a key's state over from these parameters to `next` (a live limit change,
    /// or a snapshot restored under another rate), so that what the key has used stays
    /// used. The default keeps the state as it is, which suits states that count units
    /// (fixed window, sliding log): a new count applies to what is already counted.
    fn carry_over(&self, next: &Self, state: &mut Self::State, now: Nanos) {
        let _ = (next, state, now);
    }

    /// The parameters as plain words, so that an unkeyed limiter can read them on every
    /// check without a lock while a live change may replace them. `None` (the default)
    /// keeps such reads behind a mutex; [`unpack`](Algorithm::unpack) must invert it.
    fn pack(&self) -> Option<Packed> {
        None
    }

    /// The parameters [`pack`](Algorithm::pack) wrote; `None` for words it did not write.
    fn unpack(words: &Packed) -> Option<Self> {
        let _ = words;
        None
    }

    /// The algorithm's kind and parameters for a snapshot; `None` (the default) for an
    /// algorithm without a snapshot form.
    #[cfg(feature = "serde")]
    fn snapshot_kind(&self) -> Option<AlgorithmKind> {
        None
    }

    /// A state in its snapshot form; `None` (the default) without a snapshot form.
    #[cfg(feature = "serde")]
    fn export_state(&self, state: &Self::State) -> Option<StateSnapshot> {
        let _ = state;
        None
    }

    /// The parameters a snapshot was taken with (`kind` and `rate`), as this algorithm
    /// type: [`SnapshotError::AlgorithmMismatch`] for another kind of algorithm,
    /// [`SnapshotError::Corrupted`] for parameters that cannot be.
    #[cfg(feature = "serde")]
    fn recorded(&self, kind: &AlgorithmKind, rate: Rate) -> Result<Self, SnapshotError> {
        let _ = rate;
        Err(SnapshotError::AlgorithmMismatch {
            expected: "custom",
            found: kind.name(),
        })
    }

    /// A state from its snapshot form, checked against these parameters (the ones the
    /// snapshot was taken with); `Err` says what breaks the algorithm's rules.
    #[cfg(feature = "serde")]
    fn import_state(&self, state: &StateSnapshot) -> Result<Self::State, String> {
        let _ = state;
        Err("this algorithm has no snapshot form".to_owned())
    }
}
