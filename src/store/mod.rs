//! The keyed state store: per-key algorithm state in a sharded hash table.
//!
//! - **Sharding.** Keys hash once (ahash, with per-process random keys, so an attacker
//!   cannot choose keys that collide) and the hash picks both the shard and the slot.
//!   Each shard is a mutex over a `hashbrown` table, padded to its own cache lines, and
//!   the states sit in the table as plain values. A check is one lock, one probe and one
//!   unlock: one atomic read-modify-write, whatever the algorithm, since the shard lock
//!   ([`shard_lock`](crate::shard_lock)) is released by a plain store (a parking mutex
//!   would take two, a read lock plus a compare-and-swap state three, a read lock plus a
//!   mutex state four). The lock is held for a few dozen nanoseconds, so threads on
//!   different keys of one shard rarely meet, and with eight shards per core (the
//!   default, at most 64) two threads rarely share one; a waiter spins, yields, then
//!   sleeps, and claims the next turn if it keeps finding the shard taken.
//!   A [`Policy`](crate::Policy) holds one shard per scope while it decides the later
//!   scopes; it takes them in declaration order, and each scope owns its limiter, so
//!   checks may wait for each other but never in a cycle.
//! - **Prefetch.** Beside its lock each shard keeps a hint of where its table lies
//!   (`hint.rs`), so that a policy can start loading the entries of all its scopes' keys
//!   before it takes the first lock: their cache misses overlap instead of following one
//!   another through the nested locks.
//! - **Eviction.** A key whose state is idle (indistinguishable from a fresh key) carries
//!   no information, so dropping it loses nothing. Sweeps drop keys that have been idle
//!   for at least [`IDLE_GRACE`] (one second), so that keys which refill between their
//!   own requests are not dropped and re-inserted on every visit. Each shard counts the
//!   operations that consume on it (checks, and transactions that commit; peeks and
//!   refunds count nothing and never sweep, since they may ask about any time, later
//!   than the clock's included). The operation that finds a sweep due runs it
//!   (`sweep.rs`: `retain` of non-idle keys, then a shrink if the table is mostly
//!   empty). A sweep is due once the operations since the last one reach half the
//!   shard's size and a quarter of the grace period has passed (amortised O(1) per
//!   operation, at most four passes a second over a busy shard), or once two grace
//!   periods have passed and the shard has seen at least a few dozen operations (so that
//!   a trickle of traffic still reclaims a large crowd of idle keys within seconds: at
//!   most one pass over the shard every two seconds). No background thread and no user
//!   call: memory follows the *active* key set.
//! - **Key cap.** [`max_keys`](crate::KeyedBuilder::max_keys) bounds the number of keys
//!   against key spraying. A new key is stored only when its request consumes
//!   (`new_key.rs`): a policy check that another scope denies reserves a slot while it
//!   decides and gives it back, and a peek reserves none. A new key at the cap triggers
//!   a sweep of its shard if the shard has seen half its size in operations since its
//!   last sweep (refused keys count), which keeps a flood of new keys at amortised O(1)
//!   each. Idle keys in other shards are reclaimed as traffic reaches those shards, so
//!   just after many keys go idle a new key can be refused a few times before room is
//!   found. If the store is still full, [`OnFull`] decides: refuse the request with
//!   [`CheckError::KeyCapReached`] (the default), or judge it against a fresh state
//!   that is not kept. Keys already tracked are never displaced, so a flood of new keys
//!   cannot reset the budget of an existing abuser.
//! - **Live limit changes.** Each shard keeps its own copy of the algorithm's parameters
//!   under the lock a check already takes, so reading them costs nothing extra.
//!   [`Store::set_algorithm`] takes each shard's lock in turn, carries every key's state
//!   over to the new parameters and swaps them: a check sees either the old parameters
//!   with the old state or the new ones with the carried-over state, never a mix. Shards
//!   change one after another, so for a moment keys of different shards can run under
//!   different parameters.

use std::borrow::Borrow;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use hashbrown::HashTable;

use hint::Hint;
pub use sweep::IDLE_GRACE;

use crate::algorithm::Algorithm;
use crate::shard_lock::Mutex;
use crate::{CheckError, Nanos};

/// What a keyed limiter does with a new key when it already tracks `max_keys` keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum OnFull {
    /// Refuse the request with [`CheckError::KeyCapReached`] (fail closed for new keys).
    /// A peek is not refused: it judges a new key as fresh and stores nothing.
    #[default]
    Reject,
    /// Judge the request against a fresh state that is not stored (fail open for new
    /// keys: each of their requests is allowed up to the full capacity).
    AllowUntracked,
}

/// One key's state. The hash is not stored: tables rehash on resize instead, which is
/// rare and amortised, and a GCRA entry stays at two words.
struct Entry<K, S> {
    key: K,
    state: S,
}

/// A shard's keys, its copy of the algorithm's parameters and its operation count,
/// under one lock.
///
/// In this order (`repr(C)`), so that what every check writes — the lock and `ops` —
/// has the shard's first cache line to itself, and what a check only reads — the
/// table's header and the parameters ([`Keys`]) — starts a line pair further on: a
/// check on another core takes over the written line and finds the other still in its
/// own cache (a header sharing the written line would travel with it on every check).
/// A unit test pins the offsets for the crate's algorithms. (An [`Algorithm`] aligned
/// to 64 bytes or more aligns the whole table, which moves `ops` off the lock's line:
/// still correct, one more line written per check.)
#[repr(C)]
struct Table<K, A: Algorithm> {
    /// Operations since the last sweep.
    ops: usize,
    /// When the last sweep ran.
    swept_at: Nanos,
    /// Fills the rest of the shard's first two lines (the lock word and its padding
    /// take the first 8 bytes).
    _gap: [u64; 13],
    keys: Keys<K, A>,
}

/// What a check reads; only inserts, sweeps and limit changes write it.
#[repr(C)]
struct Keys<K, A: Algorithm> {
    entries: HashTable<Entry<K, A::State>>,
    alg: A,
}

/// `repr(C)`: the lock first (see [`Table`]), the prefetch hint — read by other cores
/// without the lock — after the table, off the line every check writes.
#[repr(C, align(128))]
struct Shard<K, A: Algorithm>(Mutex<Table<K, A>>, Hint);

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

/// The size of a store's entries from which a policy prefetches them (see `hint.rs`):
/// smaller tables mostly stay in a core's cache, where a prefetch would only cost its
/// own work (for GCRA's 16-byte entries, 16 384 keys).
const PREFETCH_FROM_BYTES: usize = 256 << 10;

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
                .map(|_| {
                    Shard(
                        Mutex::new(Table {
                            ops: 0,
                            swept_at: 0,
                            _gap: [0; 13],
                            keys: Keys {
                                entries: HashTable::new(),
                                alg: alg.clone(),
                            },
                        }),
                        Hint::default(),
                    )
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
            .map(|s| s.0.lock().keys.entries.len())
            .collect()
    }

    #[inline]
    fn locate<Q: Hash + ?Sized>(&self, key: &Q) -> (u64, &Shard<K, A>) {
        self.locate_hashed(key, None)
    }

    /// [`locate`](Self::locate) with the key's hash if the caller has it already.
    #[inline]
    fn locate_hashed<Q: Hash + ?Sized>(&self, key: &Q, hashed: Option<u64>) -> (u64, &Shard<K, A>) {
        let hash = match hashed {
            Some(hash) => hash,
            None => self.hasher.hash_one(key),
        };
        // The table uses the low bits for the slot and the top 7 for its tags; take the
        // shard from bits in between so the three stay independent.
        (hash, &self.shards[(hash >> 40) as usize & self.mask])
    }

    /// Whether `hashed`, a hash the caller gave with `key`, might not be `key`'s: checked
    /// (out of line) only when a lookup with it found nothing, before the key is taken as
    /// untracked. A caller's hash comes from a policy's prefetch pass, which extracted
    /// the key separately: an extractor that returned another key then must not make
    /// this one look new (nor store it where lookups will not find it).
    #[cold]
    #[inline(never)]
    fn misdirected<Q: Hash + ?Sized>(&self, key: &Q, hashed: Option<u64>) -> bool {
        hashed.is_some_and(|hash| self.hasher.hash_one(key) != hash)
    }

    /// Starts loading the table's memory where `key` would be, without taking its lock
    /// (see `hint.rs`), and returns the key's hash for the lookup that follows (see
    /// [`with_state_hashed`](Self::with_state_hashed)): a policy prefetches every scope's
    /// key before it takes the first lock, so that the scopes' cache misses overlap.
    ///
    /// Only worth it once the entries outgrow a core's cache: see
    /// [`worth_prefetching`](Self::worth_prefetching).
    #[inline]
    pub(crate) fn prefetch<Q>(&self, key: &Q) -> u64
    where
        K: Borrow<Q>,
        Q: Hash + ?Sized,
    {
        let (hash, targets) = self.prefetch_targets(key);
        if let Some([ctrl, first, fourth]) = targets {
            hint::touch(ctrl);
            hint::touch(first);
            hint::touch(fourth);
        }
        hash
    }

    /// `key`'s hash and the addresses [`prefetch`](Self::prefetch) loads for it.
    #[inline(always)]
    fn prefetch_targets<Q>(&self, key: &Q) -> (u64, Option<[usize; 3]>)
    where
        K: Borrow<Q>,
        Q: Hash + ?Sized,
    {
        let (hash, shard) = self.locate(key);
        (hash, shard.1.targets::<Entry<K, A::State>>(hash))
    }

    /// Whether the store tracks enough keys for [`prefetch`](Self::prefetch) to pay.
    #[inline]
    pub(crate) fn worth_prefetching(&self) -> bool {
        // Only x86-64 has the instruction here; elsewhere the pass would be pure cost.
        cfg!(target_arch = "x86_64")
            && self.len() >= PREFETCH_FROM_BYTES / std::mem::size_of::<Entry<K, A::State>>().max(1)
    }

    /// Runs `f` with the parameters and the key's state, if the key is tracked. For
    /// peeks and refunds: nothing is inserted and no sweep runs, so a peek at any time,
    /// later than the clock's included, leaves every key where it was.
    #[inline]
    pub(crate) fn with_existing<Q, R>(
        &self,
        key: &Q,
        f: impl FnOnce(&A, Option<&mut A::State>) -> R,
    ) -> R
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.with_existing_hashed(key, None, f)
    }

    /// [`with_existing`](Self::with_existing) with `key`'s hash if the caller has it
    /// ([`prefetch`](Self::prefetch) returned it), so that the key is hashed once.
    #[inline]
    pub(crate) fn with_existing_hashed<Q, R>(
        &self,
        key: &Q,
        mut hashed: Option<u64>,
        f: impl FnOnce(&A, Option<&mut A::State>) -> R,
    ) -> R
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        loop {
            let (hash, shard) = self.locate_hashed(key, hashed);
            let mut table = shard.0.lock();
            let Keys { entries, alg } = &mut table.keys;
            let entry = entries.find_mut(hash, |e| e.key.borrow() == key);
            if entry.is_none() && self.misdirected(key, hashed) {
                hashed = None;
                continue;
            }
            return f(alg, entry.map(|e| &mut e.state));
        }
    }

    /// Runs `f` with the parameters and the key's state (a fresh state for a new key).
    /// `f` returns its result and whether it consumed, i.e. decided at `now` for real (a
    /// check, or a transaction that committed): only then is a new key inserted and the
    /// operation counted towards a sweep at `now`. Before a new key is decided, `admit`
    /// may refuse the request (a cost the parameters cannot hold), and the key cap may
    /// refuse the key.
    #[inline]
    pub(crate) fn with_state<Q, R>(
        &self,
        key: &Q,
        now: Nanos,
        admit: impl FnOnce(&A) -> Result<(), CheckError>,
        f: impl FnOnce(&A, &mut A::State) -> Result<(R, bool), CheckError>,
    ) -> Result<R, CheckError>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        self.with_state_hashed(key, None, now, admit, f)
    }

    /// [`with_state`](Self::with_state) with `key`'s hash if the caller has it
    /// ([`prefetch`](Self::prefetch) returned it), so that the key is hashed once; a
    /// hash that finds nothing is checked before the key is taken as new.
    #[inline]
    pub(crate) fn with_state_hashed<Q, R>(
        &self,
        key: &Q,
        mut hashed: Option<u64>,
        now: Nanos,
        admit: impl FnOnce(&A) -> Result<(), CheckError>,
        f: impl FnOnce(&A, &mut A::State) -> Result<(R, bool), CheckError>,
    ) -> Result<R, CheckError>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        loop {
            let (hash, shard) = self.locate_hashed(key, hashed);
            let (mut guard, hint) = (shard.0.lock(), &shard.1);
            let table = &mut *guard;
            let mut new = None;
            let state = match table.keys.entries.find_mut(hash, |e| e.key.borrow() == key) {
                Some(entry) => &mut entry.state,
                None => {
                    if self.misdirected(key, hashed) {
                        hashed = None;
                        continue;
                    }
                    &mut new
                        .insert(self.admit_new(table, hint, key, now, admit)?)
                        .state
                }
            };
            // `f` has this one call site, new key or not, so that it is inlined here in
            // every build. A new key's state is stored only if `f` consumed: a
            // transaction declined by a later scope (or one that panics) leaves the key
            // untracked, and dropping `new` gives its slot back. Its key was owned before
            // `f` runs: a policy's later scopes commit inside `f`, so nothing that can
            // fail may come after it.
            let (result, consumed) = f(&table.keys.alg, state)?;
            if consumed {
                match new {
                    None => self.tick(table, hint, now),
                    Some(new) => self.store_new(table, hint, hash, new, now),
                }
            }
            return Ok(result);
        }
    }

    /// Replaces the parameters, carrying every key's state over to `next` at `now`; see
    /// the module docs.
    pub(crate) fn set_algorithm(&self, next: &A, now: Nanos) {
        for shard in self.shards.iter() {
            let mut table = shard.0.lock();
            let Keys { entries, alg } = &mut table.keys;
            for entry in entries.iter_mut() {
                alg.carry_over(next, &mut entry.state, now);
            }
            *alg = next.clone();
        }
    }

    /// Calls `f` with each shard's parameters on every tracked key and its state, one
    /// shard at a time under its lock (a cold path: snapshots).
    #[cfg(feature = "serde")]
    pub(crate) fn for_each(&self, mut f: impl FnMut(&A, &K, &A::State)) {
        for shard in self.shards.iter() {
            let table = shard.0.lock();
            for entry in table.keys.entries.iter() {
                f(&table.keys.alg, &entry.key, &entry.state);
            }
        }
    }

    /// Whether `key` is tracked.
    #[cfg(feature = "serde")]
    pub(crate) fn contains(&self, key: &K) -> bool {
        let (hash, shard) = self.locate(key);
        let table = shard.0.lock();
        table.keys.entries.find(hash, |e| e.key == *key).is_some()
    }

    /// How many more keys the cap allows.
    #[cfg(feature = "serde")]
    pub(crate) fn room(&self) -> usize {
        self.max_keys.saturating_sub(self.len())
    }

    /// Runs `f` with the parameters on `key`'s state, inserting a fresh state for a new
    /// key; `false` when the key is new and the store is at its cap (a cold path:
    /// restores).
    #[cfg(feature = "serde")]
    pub(crate) fn upsert(&self, key: K, f: impl FnOnce(&A, &mut A::State)) -> bool {
        let (hash, shard) = self.locate(&key);
        let mut table = shard.0.lock();
        let Keys { entries, alg } = &mut table.keys;
        if let Some(entry) = entries.find_mut(hash, |e| e.key == key) {
            f(alg, &mut entry.state);
            return true;
        }
        if !self.try_count_key() {
            return false;
        }
        let mut state = alg.fresh();
        f(alg, &mut state);
        entries.insert_unique(hash, Entry { key, state }, |e| self.hasher.hash_one(&e.key));
        shard.1.update(entries);
        true
    }
}

mod hint;
mod new_key;
mod sweep;
#[cfg(test)]
mod tests;
