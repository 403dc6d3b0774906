//! Snapshot and restore of the two limiter types.

use std::collections::HashSet;
use std::hash::Hash;

use super::{check_version, checksum_error, KeyCodec, KeyState, LimiterSnapshot, SnapshotError};
use crate::algorithm::{Algorithm, StateCell};
use crate::snapshot::Key;
use crate::{KeyedLimiter, Nanos, UnkeyedLimiter, MAX_WINDOW};

/// How far past a snapshot's time a restored state may still be in use: twice the longest
/// window (room for the debt a downgrade leaves behind).
const HORIZON: Nanos = 2 * (MAX_WINDOW.as_secs() * 1_000_000_000);

/// A snapshot decoded and checked against a limiter, ready to apply.
struct Prepared<K, A: Algorithm> {
    /// The parameters the states were taken with.
    recorded: A,
    states: Vec<(K, A::State)>,
}

fn unsupported(what: &str, reason: &'static str) -> SnapshotError {
    SnapshotError::Unsupported {
        what: what.to_owned(),
        reason,
    }
}

/// Decodes every key and state of `snapshot` for a limiter running `alg`, or says why not.
fn prepare<K, A: Algorithm>(
    alg: &A,
    codec: Option<KeyCodec<K>>,
    snapshot: &LimiterSnapshot,
    room: usize,
    tracked: impl Fn(&K) -> bool,
    what: &str,
) -> Result<Prepared<K, A>, SnapshotError> {
    check_version(snapshot.version)?;
    if !snapshot.is_intact() {
        return Err(checksum_error(what));
    }
    let recorded = alg.recorded(&snapshot.algorithm, snapshot.rate)?;
    let codec = codec.ok_or_else(|| {
        unsupported(
            what,
            "its key type has no snapshot form (implement SnapshotKey and build the limiter with KeyedBuilder::snapshot_keys)",
        )
    })?;
    let horizon = snapshot.taken_at.saturating_add(HORIZON);
    let mut seen: HashSet<&Key> = HashSet::with_capacity(snapshot.keys.len());
    let mut states = Vec::with_capacity(snapshot.keys.len());
    for KeyState { key, state } in &snapshot.keys {
        if !seen.insert(key) {
            return Err(SnapshotError::Corrupted {
                what: what.to_owned(),
                reason: format!("key {key:?} appears twice"),
            });
        }
        let state = recorded
            .import_state(state)
            .map_err(|reason| SnapshotError::Corrupted {
                what: what.to_owned(),
                reason: format!("key {key:?}: {reason}"),
            })?;
        // No limiter writes a state still in use this far past the snapshot: it would
        // lock its key out for longer than any window and never be evicted.
        if !recorded.is_idle(&state, horizon) {
            return Err(SnapshotError::Corrupted {
                what: what.to_owned(),
                reason: format!(
                    "key {key:?}: its state stays in use beyond twice the longest window after the snapshot"
                ),
            });
        }
        let key = (codec.decode)(key).ok_or_else(|| SnapshotError::KeyMismatch {
            what: what.to_owned(),
            key: key.clone(),
        })?;
        states.push((key, state));
    }
    // Keys the limiter already tracks are overwritten, not added.
    let new_keys = states.iter().filter(|(key, _)| !tracked(key)).count();
    if new_keys > room {
        return Err(SnapshotError::TooManyKeys {
            what: what.to_owned(),
            keys: new_keys,
            room,
        });
    }
    Ok(Prepared { recorded, states })
}

impl<K: Hash + Eq + Send + Sync + 'static, A: Algorithm> KeyedLimiter<K, A> {
    /// The state of every key that is not idle, now; see [`crate::snapshot`].
    ///
    /// Each key's state is read atomically; keys are read one after another, so a
    /// snapshot taken under traffic is not one instant across keys. Take the last one
    /// after traffic has stopped (at shutdown). Checks go on while a snapshot is taken,
    /// except on the shard being read, which waits for it.
    pub fn snapshot(&self) -> Result<LimiterSnapshot, SnapshotError> {
        self.snapshot_at(self.clock.now())
    }

    /// [`snapshot`](Self::snapshot) at an explicit time (which decides which keys are idle).
    pub fn snapshot_at(&self, now: Nanos) -> Result<LimiterSnapshot, SnapshotError> {
        let what = "keyed limiter";
        let alg = &*self.alg.read();
        let algorithm = alg
            .snapshot_kind()
            .ok_or_else(|| unsupported(what, "its algorithm has no snapshot form"))?;
        let codec = self.codec.ok_or_else(|| {
            unsupported(
                what,
                "its key type has no snapshot form (implement SnapshotKey and build the limiter with KeyedBuilder::snapshot_keys)",
            )
        })?;
        let mut keys = Vec::new();
        self.store.for_each(|alg, key, state| {
            if alg.is_idle(state, now) {
                return;
            }
            if let Some(state) = alg.export_state(state) {
                keys.push(KeyState {
                    key: (codec.encode)(key),
                    state,
                });
            }
        });
        Ok(LimiterSnapshot::sealed(now, algorithm, alg.rate(), keys))
    }

    /// Checks that `snapshot` can be restored into this limiter, changing nothing.
    pub fn validate_snapshot(&self, snapshot: &LimiterSnapshot) -> Result<(), SnapshotError> {
        self.prepare(&self.alg.read(), snapshot).map(drop)
    }

    /// Sets every key of `snapshot` to its state (carried over to this limiter's rate if
    /// it was taken under another one); other keys keep theirs. Validates everything
    /// first: on error nothing has changed.
    ///
    /// ```
    /// use ratewarden::{Clock, FixedWindow, KeyedLimiter};
    ///
    /// let (clock, _mock) = Clock::mock();
    /// let free: KeyedLimiter<u64, FixedWindow> =
    ///     KeyedLimiter::with_clock(FixedWindow::new("10/hour".parse()?), clock.clone());
    /// free.check(&7, 6)?;
    /// // Restored under a larger limit, the 6 used stay used.
    /// let pro: KeyedLimiter<u64, FixedWindow> =
    ///     KeyedLimiter::with_clock(FixedWindow::new("100/hour".parse()?), clock);
    /// pro.restore(&free.snapshot()?)?;
    /// assert_eq!(pro.peek(&7, 1)?.remaining(), 93);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn restore(&self, snapshot: &LimiterSnapshot) -> Result<(), SnapshotError> {
        self.restore_at(snapshot, self.clock.now())
    }

    /// [`restore`](Self::restore) at an explicit time (used to carry states over).
    pub fn restore_at(&self, snapshot: &LimiterSnapshot, now: Nanos) -> Result<(), SnapshotError> {
        // Held throughout, so that no limit change runs between the checks and the writes.
        let alg = self.alg.read();
        let Prepared { recorded, states } = self.prepare(&alg, snapshot)?;
        let mut missed = 0;
        for (key, mut state) in states {
            // Room was checked; only traffic racing the restore can fill the store, and
            // then the key starts fresh, as it would have without a snapshot.
            let placed = self.store.upsert(key, |alg, slot| {
                recorded.carry_over(alg, &mut state, now);
                *slot = state;
            });
            missed += usize::from(!placed);
        }
        if missed > 0 {
            return Err(SnapshotError::NoRoom {
                what: "keyed limiter".to_owned(),
                keys: missed,
            });
        }
        Ok(())
    }

    fn prepare(
        &self,
        alg: &A,
        snapshot: &LimiterSnapshot,
    ) -> Result<Prepared<K, A>, SnapshotError> {
        prepare(
            alg,
            self.codec,
            snapshot,
            self.store.room(),
            |key| self.store.contains(key),
            "keyed limiter",
        )
    }
}

impl<A: Algorithm> UnkeyedLimiter<A> {
    /// The limiter's state now; see [`crate::snapshot`].
    ///
    /// ```
    /// use ratewarden::{Clock, Gcra, UnkeyedLimiter};
    ///
    /// let (clock, _mock) = Clock::mock();
    /// let a = UnkeyedLimiter::with_clock(Gcra::new("5/s".parse()?), clock.clone());
    /// a.check(3)?;
    /// let b = UnkeyedLimiter::with_clock(Gcra::new("5/s".parse()?), clock);
    /// b.restore(&a.snapshot()?)?;
    /// assert_eq!(b.peek(1)?.remaining(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn snapshot(&self) -> Result<LimiterSnapshot, SnapshotError> {
        self.snapshot_at(self.clock.now())
    }

    /// [`snapshot`](Self::snapshot) at an explicit time.
    pub fn snapshot_at(&self, now: Nanos) -> Result<LimiterSnapshot, SnapshotError> {
        let what = "unkeyed limiter";
        let alg = &*self.alg.read();
        let algorithm = alg
            .snapshot_kind()
            .ok_or_else(|| unsupported(what, "its algorithm has no snapshot form"))?;
        let state = self.cell.update(|s| s.clone());
        let keys = match alg.export_state(&state) {
            Some(exported) if !alg.is_idle(&state, now) => vec![KeyState {
                key: Key::Unit,
                state: exported,
            }],
            _ => Vec::new(),
        };
        Ok(LimiterSnapshot::sealed(now, algorithm, alg.rate(), keys))
    }

    /// Checks that `snapshot` can be restored into this limiter, changing nothing.
    pub fn validate_snapshot(&self, snapshot: &LimiterSnapshot) -> Result<(), SnapshotError> {
        self.prepare(&self.alg.read(), snapshot).map(drop)
    }

    /// Sets the limiter's state from `snapshot` (carried over to this limiter's rate if
    /// it was taken under another one). On error nothing has changed.
    pub fn restore(&self, snapshot: &LimiterSnapshot) -> Result<(), SnapshotError> {
        self.restore_at(snapshot, self.clock.now())
    }

    /// [`restore`](Self::restore) at an explicit time.
    pub fn restore_at(&self, snapshot: &LimiterSnapshot, now: Nanos) -> Result<(), SnapshotError> {
        let alg = self.alg.read();
        let Prepared { recorded, states } = self.prepare(&alg, snapshot)?;
        if let Some(((), mut state)) = states.into_iter().next() {
            recorded.carry_over(&alg, &mut state, now);
            self.cell.lock(|s| *s = state);
        }
        Ok(())
    }

    fn prepare(
        &self,
        alg: &A,
        snapshot: &LimiterSnapshot,
    ) -> Result<Prepared<(), A>, SnapshotError> {
        prepare(
            alg,
            Some(KeyCodec::<()>::exact()),
            snapshot,
            1,
            |_| false,
            "unkeyed limiter",
        )
    }
}
