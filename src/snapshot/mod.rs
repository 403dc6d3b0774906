//! Snapshots: the state of a limiter or of a whole [`Policy`](crate::Policy) as plain
//! serde values, so that a restart or a deploy loses no quota.
//!
//! ```
//! use ratewarden::{Clock, Gcra, KeyedLimiter};
//! use ratewarden::snapshot::LimiterSnapshot;
//!
//! let (clock, _mock) = Clock::mock();
//! let old: KeyedLimiter<String> = KeyedLimiter::with_clock(Gcra::new("10/min".parse()?), clock.clone());
//! old.check("alice", 4)?;
//!
//! let saved: String = serde_json::to_string(&old.snapshot()?)?;
//! // … the process restarts …
//! let new: KeyedLimiter<String> = KeyedLimiter::with_clock(Gcra::new("10/min".parse()?), clock);
//! new.restore(&serde_json::from_str::<LimiterSnapshot>(&saved)?)?;
//! assert_eq!(new.check("alice", 1)?.remaining(), 5);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! **What is written.** A format [`version`](SNAPSHOT_VERSION); per limiter (per scope, with
//! its name) the algorithm's kind and parameters, its rate, and each key that is not idle
//! with its state. Times in states are nanoseconds since the Unix epoch, so a snapshot
//! restored in a new process reading the real clock means what it meant. Idle keys are
//! left out: they are indistinguishable from keys never seen.
//!
//! **What a restore checks.** Everything is decoded and validated before anything is
//! applied: an unknown version, content that does not match the snapshot's checksum or
//! a state that breaks its algorithm's invariants (a corrupted file), or a limiter that
//! cannot hold the keys is an error, and the target is left untouched. A truncated or
//! malformed file already fails to deserialise. A restore sets the state of every key in the snapshot and leaves other
//! keys as they are; it is meant for a freshly built limiter or policy.
//!
//! **Changed configuration.** A state taken under another rate is carried over the same
//! way as a [live limit change](crate::KeyedLimiter::set_rate): what a key used stays used.
//! A policy keeps the scopes that still exist under the same name and algorithm, and
//! reports the others in its [`RestoreReport`].
//!
//! **Keys.** Keys are written as [`Key`] values. Integer, text and IP-address keys, lists
//! of text (`Vec<String>`) and pairs of integers or text work as they are; other tuples
//! and your own key types implement [`SnapshotKey`] and opt in with
//! [`KeyedBuilder::snapshot_keys`](crate::KeyedBuilder::snapshot_keys). A limiter
//! whose keys cannot be written refuses to snapshot with [`SnapshotError::Unsupported`];
//! nothing about snapshots costs anything on the request path.

pub(crate) mod checksum;
mod key;
mod limiter;

pub(crate) use key::KeyCodec;
pub use key::{Key, SnapshotKey};

use crate::algorithm::{
    Anchor, CalendarState, CycleAnchor, FixedWindowState, Period, SlidingLogState,
    SlidingWindowState,
};
use crate::{Nanos, Rate};

/// The snapshot format this build writes and reads.
pub const SNAPSHOT_VERSION: u32 = 1;

/// An algorithm and its parameters besides the rate, as recorded in a snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
#[non_exhaustive]
pub enum AlgorithmKind {
    /// [`FixedWindow`](crate::FixedWindow) with its anchor.
    FixedWindow {
        /// Where windows start.
        anchor: Anchor,
    },
    /// [`SlidingWindow`](crate::SlidingWindow).
    SlidingWindow,
    /// [`SlidingLog`](crate::SlidingLog).
    SlidingLog,
    /// [`Gcra`](crate::Gcra) with its burst.
    Gcra {
        /// The burst.
        burst: u64,
    },
    /// [`CalendarQuota`](crate::CalendarQuota) with its period and anchor.
    Calendar {
        /// A day or a month.
        period: Period,
        /// Where periods start (for a [`CalendarLimiter`](crate::CalendarLimiter), the
        /// default; each key's periods are in its state).
        anchor: CycleAnchor,
    },
}

impl AlgorithmKind {
    /// The algorithm's name: `fixed_window`, `sliding_window`, `sliding_log` or `gcra`.
    pub fn name(&self) -> &'static str {
        match self {
            AlgorithmKind::FixedWindow { .. } => "fixed_window",
            AlgorithmKind::SlidingWindow => "sliding_window",
            AlgorithmKind::SlidingLog => "sliding_log",
            AlgorithmKind::Gcra { .. } => "gcra",
            AlgorithmKind::Calendar { .. } => "calendar",
        }
    }
}

/// One key's algorithm state.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum StateSnapshot {
    /// A fixed window's start and count.
    FixedWindow(FixedWindowState),
    /// A sliding-window counter's window start and counts.
    SlidingWindow(SlidingWindowState),
    /// A sliding log's entries.
    SlidingLog(SlidingLogState),
    /// GCRA's theoretical arrival time (nanoseconds since the Unix epoch).
    Gcra(Nanos),
    /// A calendar quota's period and count.
    Calendar(CalendarState),
}

/// One key and its state.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyState {
    /// The key.
    pub key: Key,
    /// Its state.
    pub state: StateSnapshot,
}

/// The state of one limiter: [`KeyedLimiter::snapshot`](crate::KeyedLimiter::snapshot),
/// [`UnkeyedLimiter::snapshot`](crate::UnkeyedLimiter::snapshot).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimiterSnapshot {
    /// The format version ([`SNAPSHOT_VERSION`] when written by this build).
    pub version: u32,
    /// When it was taken (nanoseconds since the Unix epoch, by the limiter's clock).
    pub taken_at: Nanos,
    /// The algorithm the states belong to.
    pub algorithm: AlgorithmKind,
    /// The rate the states were counted against.
    pub rate: Rate,
    /// Every key that was not idle, with its state.
    pub keys: Vec<KeyState>,
    /// A checksum of the fields above, written by [`seal`](Self::seal); a restore
    /// refuses a snapshot whose content does not match it. Without one (a snapshot
    /// written by hand) nothing is checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum: Option<u64>,
}

impl LimiterSnapshot {
    /// A sealed snapshot of the current format.
    pub(crate) fn sealed(
        taken_at: Nanos,
        algorithm: AlgorithmKind,
        rate: Rate,
        keys: Vec<KeyState>,
    ) -> LimiterSnapshot {
        let mut snapshot = LimiterSnapshot {
            version: SNAPSHOT_VERSION,
            taken_at,
            algorithm,
            rate,
            keys,
            checksum: None,
        };
        snapshot.seal();
        snapshot
    }

    /// Sets [`checksum`](Self::checksum) to match the content (after editing a snapshot
    /// on purpose).
    pub fn seal(&mut self) {
        self.checksum = Some(checksum::of_limiter(self));
    }

    /// Whether the content matches the checksum (or there is none).
    pub fn is_intact(&self) -> bool {
        self.checksum
            .is_none_or(|c| c == checksum::of_limiter(self))
    }
}

/// One scope of a [`PolicySnapshot`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScopeSnapshot {
    /// The scope's name.
    pub name: String,
    /// Its limiter's state.
    pub limiter: LimiterSnapshot,
}

/// The state of every scope of a policy: [`Policy::snapshot`](crate::Policy::snapshot).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicySnapshot {
    /// The format version ([`SNAPSHOT_VERSION`] when written by this build).
    pub version: u32,
    /// When it was taken (nanoseconds since the Unix epoch, by the policy's clock).
    pub taken_at: Nanos,
    /// The scopes, in the policy's order.
    pub scopes: Vec<ScopeSnapshot>,
    /// A checksum over the version, the time and each scope's name and content, written
    /// by [`seal`](Self::seal); see [`LimiterSnapshot::checksum`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum: Option<u64>,
}

impl PolicySnapshot {
    /// Sets [`checksum`](Self::checksum) to match the content, and each scope's.
    pub fn seal(&mut self) {
        for scope in &mut self.scopes {
            scope.limiter.seal();
        }
        self.checksum = Some(checksum::of_policy(self));
    }

    /// Whether the content matches the checksums (or there are none).
    pub fn is_intact(&self) -> bool {
        self.checksum.is_none_or(|c| c == checksum::of_policy(self))
            && self.scopes.iter().all(|s| s.limiter.is_intact())
    }
}

/// Why a snapshot could not be taken or restored. A failed restore changes nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SnapshotError {
    /// The snapshot was written in a format this build does not read.
    #[error(
        "snapshot format version {found} is not supported (this build reads version {supported})"
    )]
    UnsupportedVersion {
        /// The snapshot's version.
        found: u32,
        /// The version this build reads.
        supported: u32,
    },
    /// The limiter cannot be snapshotted: its algorithm has no snapshot form, or its key
    /// type is not known (implement [`SnapshotKey`] and use
    /// [`KeyedBuilder::snapshot_keys`](crate::KeyedBuilder::snapshot_keys)).
    #[error("{what} cannot be snapshotted: {reason}")]
    Unsupported {
        /// The limiter or scope.
        what: String,
        /// Why.
        reason: &'static str,
    },
    /// A limiter's snapshot was taken with another algorithm.
    #[error("snapshot of a {found} limiter cannot be restored into a {expected} limiter")]
    AlgorithmMismatch {
        /// The target's algorithm.
        expected: &'static str,
        /// The snapshot's algorithm.
        found: &'static str,
    },
    /// A key is not a value of the limiter's key type.
    #[error("{what}: key {key:?} is not a key of this limiter's key type")]
    KeyMismatch {
        /// The limiter or scope.
        what: String,
        /// The key.
        key: Key,
    },
    /// The snapshot is damaged: its content does not match its checksum, a state breaks
    /// its algorithm's rules or has another algorithm's form, or a key appears twice.
    #[error("corrupted snapshot: {what}: {reason}")]
    Corrupted {
        /// Where.
        what: String,
        /// What is wrong.
        reason: String,
    },
    /// Traffic filled the key store while the snapshot was being restored: the other
    /// keys were restored, these start fresh (as without a snapshot).
    #[error("{what}: {keys} keys found no room (traffic filled the store during the restore) and start fresh")]
    NoRoom {
        /// What was being restored.
        what: String,
        /// How many keys start fresh.
        keys: usize,
    },
    /// The limiter cannot hold every key of the snapshot.
    #[error("{what}: snapshot holds {keys} keys, more than the limiter's room for {room}")]
    TooManyKeys {
        /// The limiter or scope.
        what: String,
        /// Keys in the snapshot.
        keys: usize,
        /// Keys the limiter can still take.
        room: usize,
    },
}

/// Why a scope's state in a snapshot was not restored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DropReason {
    /// The policy has no scope of that name.
    NoSuchScope,
    /// The scope now uses another algorithm.
    AlgorithmChanged,
    /// The scope's keys are now of another type.
    KeyTypeChanged,
    /// The scope now cannot be restored (its limiter has no snapshot support).
    Unsupported,
    /// Traffic filled the scope's key store while the snapshot was being restored; some
    /// or all of its keys start fresh.
    NoRoom,
}

/// A scope of a snapshot whose state was not restored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DroppedScope {
    /// The scope's name in the snapshot.
    pub name: String,
    /// Why.
    pub reason: DropReason,
}

/// What [`Policy::restore`](crate::Policy::restore) did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RestoreReport {
    /// Scopes whose state was restored.
    pub restored: Vec<String>,
    /// Scopes of the snapshot whose state was dropped, with the reason.
    pub dropped: Vec<DroppedScope>,
    /// Scopes of the policy that the snapshot does not mention; they start empty.
    pub missing: Vec<String>,
}

impl RestoreReport {
    /// Whether every scope of the snapshot was restored and every scope of the policy
    /// had a state in it.
    pub fn is_complete(&self) -> bool {
        self.dropped.is_empty() && self.missing.is_empty()
    }
}

pub(crate) fn checksum_error(what: &str) -> SnapshotError {
    SnapshotError::Corrupted {
        what: what.to_owned(),
        reason: "the content does not match its checksum".to_owned(),
    }
}

pub(crate) fn check_version(version: u32) -> Result<(), SnapshotError> {
    if version == SNAPSHOT_VERSION {
        Ok(())
    } else {
        Err(SnapshotError::UnsupportedVersion {
            found: version,
            supported: SNAPSHOT_VERSION,
        })
    }
}
