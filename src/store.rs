//! The keyed state store: per-key algorithm state in a sharded hash table.
//!
//! - **Sharding.** Keys hash once (ahash, with per-process random keys, so an attacker
//!   cannot choose keys that collide) and the hash picks both the shard and the slot.
//!   Each shard is an `RwLock` over a `hashbrown` table, padded to its own cache lines.
//!   Checks on existing keys take the shard's read lock, so threads on different keys of
//!   one shard do not wait for each other; the state itself sits in its algorithm's cell
//!   (a compare-and-swap `u64` for GCRA, a short mutex for the others).
//! - **Eviction.** A key whose state is idle (indistinguishable from a fresh key) carries
//!   no information, so dropping it loses nothing. Sweeps drop keys that have been idle
//!   for at least [`IDLE_GRACE`] (one second), so that keys which refill between their
//!   own requests are not dropped and re-inserted on every visit. Each shard counts the operations on it;
//!   once they reach half its size, the next operation sweeps the shard (`retain` of
//!   non-idle keys, then a shrink if the table is mostly empty). The cost is amortised
//!   O(1) per operation, needs no background thread and no user call, and memory follows
//!   the *active* key set. A sweep holds one shard's write lock for a pass over that shard.
//! - **Key cap.** [`max_keys`](crate::KeyedBuilder::max_keys) bounds the number of keys
//!   against key spraying. A new key at the cap triggers a sweep of its shard if the
//!   shard has seen half its size in operations since its last sweep (refused keys
//!   count), which keeps a flood of new keys at amortised O(1) each. Idle keys in other
//!   shards are reclaimed as traffic reaches those shards, so just after many keys go
//!   idle a new key can be refused a few times before room is found. If the store is
//!   still full, [`OnFull`] decides: refuse the request with
//!   [`CheckError::KeyCapReached`] (the default), or judge it against a fresh state that is
//!   not kept. Keys already tracked are never displaced, so a flood of new keys cannot
//!   reset the budget of an existing abuser.
//! - **Live limit changes.** Each shard keeps its own copy of the algorithm's parameters
//!   under the lock a check already takes, so reading them costs nothing extra.
//!   [`Store::set_algorithm`] takes each shard's write lock in turn, carries every key's
//!   state over to the new parameters and swaps them: a check sees either the old
//!   parameters with the old state or the new ones with the carried-over state, never a
//!   mix. Shards change one after another, so for a moment keys of different shards can
//!   run under different parameters.

use std::borrow::Borrow;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use hashbrown::HashTable;
use parking_lot::{RwLock, RwLockWriteGuard};

use crate::algorithm::{Algorithm, StateCell};
use crate::{CheckError, Nanos};

/// What a keyed limiter does with a new key when it already tracks `max_keys` keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum OnFull {
    /// Refuse the request with [`CheckError::KeyCapReached`] (fail closed for new keys).
    #[default]
    Reject,
    /// Judge the request against a fresh state that is not stored (fail open for new
    /// keys: each of their requests is allowed up to the full capacity).
    AllowUntracked,
}

/// One key's state. The hash is not stored: tables rehash on resize instead, which is
/// rare and amortised, and a GCRA entry stays at two words.
struct Entry<K, C> {
    key: K,
    cell: C,
}

/// A shard's keys and its copy of the algorithm's parameters, under one lock.
struct Table<K, A: Algorithm> {
    entries: HashTable<Entry<K, A::Cell>>,
    alg: A,
}

#[repr(align(128))]
struct Shard<K, A: Algorithm> {
    table: RwLock<Table<K, A>>,
    ops: AtomicUsize,
}

/// Sharded per-key state for one algorithm.
pub(crate) struct Store<K, A: Algorithm> {
    shards: Box<[Shard<K, A>]>,
    hasher: ahash::RandomState,
    mask: usize,
    len: AtomicUsize,
    evictions: AtomicU64,
    max_keys: usize,
    on_full: OnFull,
}

/// How long a key must have been idle before a sweep drops it.
pub const IDLE_GRACE: std::time::Duration = std::time::Duration::from_secs(1);
const IDLE_GRACE_NANOS: u64 = IDLE_GRACE.as_nanos() as u64;

/// Operations a shard absorbs before it sweeps, at the least.
const MIN_SWEEP_INTERVAL: usize = 64;

impl<K, A: Algorithm> Store<K, A> {
    pub(crate) fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }

    pub(crate) fn evictions(&self) -> u64 {
        self.evictions.load(Ordering::Relaxed)
    }
}

impl<K: Hash + Eq + Send + Sync + 'static, A: Algorithm> Store<K, A> {
    pub(crate) fn new(alg: &A, shards: usize, max_keys: usize, on_full: OnFull) -> Self {
        let shards = shards.clamp(1, 1 << 16).next_power_of_two();
        Store {
            shards: (0..shards)
                .map(|_| Shard {
                    table: RwLock::new(Table {
                        entries: HashTable::new(),
                        alg: alg.clone(),
                    }),
                    ops: AtomicUsize::new(0),
                })
                .collect(),
            hasher: ahash::RandomState::new(),
            mask: shards - 1,
            len: AtomicUsize::new(0),
            evictions: AtomicU64::new(0),
            max_keys,
            on_full,
        }
    }

    pub(crate) fn shard_lens(&self) -> Vec<usize> {
        self.shards
            .iter()
            .map(|s| s.table.read().entries.len())
            .collect()
    }

    #[inline]
    fn locate<Q: Hash + ?Sized>(&self, key: &Q) -> (u64, &Shard<K, A>) {
        let hash = self.hasher.hash_one(key);
        // The table uses the low bits for the slot and the top 7 for its tags; take the
        // shard from bits in between so the three stay independent.
        (hash, &self.shards[(hash >> 40) as usize & self.mask])
    }

    /// Runs `f` with the parameters and the key's cell, if the key is tracked.
    pub(crate) fn with_existing<Q, R>(
        &self,
        key: &Q,
        now: Nanos,
        f: impl FnOnce(&A, Option<&A::Cell>) -> R,
    ) -> R
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let (hash, shard) = self.locate(key);
        let (result, len) = {
            let table = shard.table.read();
            let entry = table.entries.find(hash, |e| e.key.borrow() == key);
            (f(&table.alg, entry.map(|e| &e.cell)), table.entries.len())
        };
        self.tick(shard, len, now);
        result
    }

    /// Runs `f` with the parameters and the key's cell, inserting a fresh state for a new
    /// key. Before a new key is inserted, `admit` may refuse the request (a cost the
    /// parameters cannot hold), and then nothing is inserted.
    #[inline]
    pub(crate) fn with_cell<Q, R>(
        &self,
        key: &Q,
        now: Nanos,
        admit: impl FnOnce(&A) -> Result<(), CheckError>,
        f: impl FnOnce(&A, &A::Cell) -> Result<R, CheckError>,
    ) -> Result<R, CheckError>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        let (hash, shard) = self.locate(key);
        let table = shard.table.read();
        // One call of `f` on the hot path, so that it is inlined here.
        let Some(entry) = table.entries.find(hash, |e| e.key.borrow() == key) else {
            drop(table);
            return self.with_new_cell(hash, shard, key, now, admit, f);
        };
        let result = f(&table.alg, &entry.cell);
        let len = table.entries.len();
        drop(table);
        self.tick(shard, len, now);
        result
    }

    /// [`with_cell`](Self::with_cell) for a key that was not there a moment ago.
    #[cold]
    #[inline(never)]
    fn with_new_cell<Q, R>(
        &self,
        hash: u64,
        shard: &Shard<K, A>,
        key: &Q,
        now: Nanos,
        admit: impl FnOnce(&A) -> Result<(), CheckError>,
        f: impl FnOnce(&A, &A::Cell) -> Result<R, CheckError>,
    ) -> Result<R, CheckError>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        let eq = |e: &Entry<K, A::Cell>| e.key.borrow() == key;
        let mut table = shard.table.write();
        if table.entries.find(hash, eq).is_none() {
            admit(&table.alg)?;
            if !self.reserve_slot(shard, &mut table, now) {
                return match self.on_full {
                    OnFull::Reject => Err(CheckError::KeyCapReached {
                        max_keys: self.max_keys,
                    }),
                    OnFull::AllowUntracked => f(&table.alg, &A::Cell::new(table.alg.fresh())),
                };
            }
            let cell = A::Cell::new(table.alg.fresh());
            table.entries.insert_unique(
                hash,
                Entry {
                    key: key.to_owned(),
                    cell,
                },
                |e| self.hasher.hash_one(&e.key),
            );
        }
        // Let other keys of this shard proceed while `f` runs.
        let table = RwLockWriteGuard::downgrade(table);
        let result = match table.entries.find(hash, eq) {
            Some(entry) => f(&table.alg, &entry.cell),
            // Not reachable (inserted under this lock); judged as a fresh key.
            None => f(&table.alg, &A::Cell::new(table.alg.fresh())),
        };
        let len = table.entries.len();
        drop(table);
        self.tick(shard, len, now);
        result
    }

    /// Replaces the parameters, carrying every key's state over to `next` at `now`; see
    /// the module docs.
    pub(crate) fn set_algorithm(&self, next: &A, now: Nanos) {
        for shard in self.shards.iter() {
            let mut table = shard.table.write();
            let Table { entries, alg } = &mut *table;
            for entry in entries.iter_mut() {
                alg.carry_over(next, entry.cell.get_mut(), now);
            }
            *alg = next.clone();
        }
    }

    /// Counts a new key against the cap. At the cap, the shard is swept first if it has
    /// seen enough operations since its last sweep (refused keys count too), so a flood of
    /// new keys costs amortised O(1) each rather than a sweep each.
    fn reserve_slot(&self, shard: &Shard<K, A>, table: &mut Table<K, A>, now: Nanos) -> bool {
        if self.try_count_key() {
            return true;
        }
        let ops = shard.ops.load(Ordering::Relaxed);
        shard.ops.store(ops + 1, Ordering::Relaxed);
        if ops < table.entries.len() / 2 {
            return false;
        }
        shard.ops.store(0, Ordering::Relaxed);
        self.sweep(table, now);
        self.try_count_key()
    }

    /// Calls `f` with each shard's parameters on every tracked key and its cell, one
    /// shard at a time under its read lock (a cold path: snapshots).
    #[cfg(feature = "serde")]
    pub(crate) fn for_each(&self, mut f: impl FnMut(&A, &K, &A::Cell)) {
        for shard in self.shards.iter() {
            let table = shard.table.read();
            for entry in table.entries.iter() {
                f(&table.alg, &entry.key, &entry.cell);
            }
        }
    }

    /// Whether `key` is tracked.
    #[cfg(feature = "serde")]
    pub(crate) fn contains(&self, key: &K) -> bool {
        let (hash, shard) = self.locate(key);
        let table = shard.table.read();
        table.entries.find(hash, |e| e.key == *key).is_some()
    }

    /// How many more keys the cap allows.
    #[cfg(feature = "serde")]
    pub(crate) fn room(&self) -> usize {
        self.max_keys.saturating_sub(self.len())
    }

    /// Runs `f` with the parameters on `key`'s cell, inserting a fresh state for a new
    /// key; `false` when the key is new and the store is at its cap (a cold path:
    /// restores).
    #[cfg(feature = "serde")]
    pub(crate) fn upsert(&self, key: K, f: impl FnOnce(&A, &A::Cell)) -> bool {
        let (hash, shard) = self.locate(&key);
        let mut table = shard.table.write();
        if let Some(entry) = table.entries.find(hash, |e| e.key == key) {
            f(&table.alg, &entry.cell);
            return true;
        }
        if !self.try_count_key() {
            return false;
        }
        let cell = A::Cell::new(table.alg.fresh());
        f(&table.alg, &cell);
        table
            .entries
            .insert_unique(hash, Entry { key, cell }, |e| self.hasher.hash_one(&e.key));
        true
    }

    fn try_count_key(&self) -> bool {
        if self.len.fetch_add(1, Ordering::Relaxed) < self.max_keys {
            return true;
        }
        self.len.fetch_sub(1, Ordering::Relaxed);
        false
    }

    #[inline]
    fn tick(&self, shard: &Shard<K, A>, len: usize, now: Nanos) {
        // A plain load and store, not a read-modify-write: a lost count between racing
        // threads only delays a sweep a little, and an atomic increment would cost as
        // much as the rest of the bookkeeping.
        let ops = shard.ops.load(Ordering::Relaxed);
        shard.ops.store(ops + 1, Ordering::Relaxed);
        if ops >= (len / 2).max(MIN_SWEEP_INTERVAL) {
            // Another thread holding the lock will tick again soon; never wait here.
            if let Some(mut table) = shard.table.try_write() {
                shard.ops.store(0, Ordering::Relaxed);
                self.sweep(&mut table, now);
            }
        }
    }

    fn sweep(&self, table: &mut Table<K, A>, now: Nanos) {
        let Table { entries, alg } = table;
        let before = entries.len();
        // Idle as of a grace period ago: keys that come back within it stay, so a key
        // whose quota refills between its own requests is not dropped and re-inserted on
        // every visit (GCRA keys are idle one emission interval after a request).
        let idle_since = now.saturating_sub(IDLE_GRACE_NANOS);
        entries.retain(|e| !alg.is_idle(e.cell.get_mut(), idle_since));
        let removed = before - entries.len();
        if removed > 0 {
            self.len.fetch_sub(removed, Ordering::Relaxed);
            self.evictions.fetch_add(removed as u64, Ordering::Relaxed);
            if entries.capacity() > 4 * entries.len() + 64 {
                entries.shrink_to(entries.len() * 2, |e| self.hasher.hash_one(&e.key));
            }
        }
    }
}
