//! Where a shard's table keeps a key, known before its lock is taken, so that a policy
//! can start loading every scope's entry at once (see [`Store::prefetch`](super::Store::prefetch)).
//!
//! A policy takes its scopes' shard locks one inside the other, and a lock's atomic
//! instruction waits for the loads before it: with large tables, each scope's lookup
//! misses the cache after the previous one's miss has returned. Prefetches are not
//! held back that way. The table's layout (`hashbrown`: control bytes at `ctrl`, one
//! per bucket; bucket `i` just below them, at `ctrl − (i + 1) × size`; a key first
//! probed at bucket `hash & mask`) gives the addresses from the hash alone.
//!
//! The hint is written under the shard's lock whenever the table may have moved and
//! read without it: a stale or torn hint only points a prefetch at the wrong place.
//! Prefetches never fault and are never dereferences, so any address is sound.

use std::sync::atomic::{AtomicUsize, Ordering};

use hashbrown::HashTable;

/// A table's control bytes' address and its bucket mask; zero before the table holds a
/// key.
#[derive(Default)]
pub(super) struct Hint {
    ctrl: AtomicUsize,
    mask: AtomicUsize,
}

impl Hint {
    /// Records where `entries` lies now, from any bucket it holds. Call under the
    /// shard's lock after the table may have moved (an insert, a shrink).
    pub(super) fn update<T>(&self, entries: &HashTable<T>) {
        // A table moves only when its number of buckets changes.
        let mask = entries.num_buckets().saturating_sub(1);
        if self.ctrl.load(Ordering::Relaxed) != 0 && self.mask.load(Ordering::Relaxed) == mask {
            return;
        }
        let (ctrl, mask) = match entries.iter_buckets().next() {
            Some(index) => match entries.get_bucket(index) {
                Some(entry) => (
                    entry as *const T as usize + (index + 1) * std::mem::size_of::<T>(),
                    entries.num_buckets() - 1,
                ),
                None => (0, 0),
            },
            None => (0, 0),
        };
        self.ctrl.store(ctrl, Ordering::Relaxed);
        self.mask.store(mask, Ordering::Relaxed);
    }

    /// What to load for `hash`: the control bytes probed first, the first bucket probed
    /// and the fourth (a key usually lies within the first few buckets of its probe,
    /// and those two addresses span the lines they fill). `None` without a hint.
    #[inline(always)]
    pub(super) fn targets<T>(&self, hash: u64) -> Option<[usize; 3]> {
        let ctrl = self.ctrl.load(Ordering::Relaxed);
        if ctrl == 0 {
            return None;
        }
        let mask = self.mask.load(Ordering::Relaxed);
        let pos = hash as usize & mask;
        Some([
            ctrl.wrapping_add(pos),
            bucket::<T>(ctrl, pos),
            bucket::<T>(ctrl, pos.wrapping_add(3) & mask),
        ])
    }

    /// Where the hint places bucket `index`, the bucket `hash` is probed at first, and
    /// the mask it holds.
    #[cfg(test)]
    pub(super) fn predict<T>(&self, index: usize, hash: u64) -> (usize, usize, usize) {
        let ctrl = self.ctrl.load(Ordering::Relaxed);
        let mask = self.mask.load(Ordering::Relaxed);
        (bucket::<T>(ctrl, index), hash as usize & mask, mask)
    }
}

/// The address of bucket `index` of the table whose control bytes are at `ctrl`.
#[inline(always)]
fn bucket<T>(ctrl: usize, index: usize) -> usize {
    ctrl.wrapping_sub(index.wrapping_add(1).wrapping_mul(std::mem::size_of::<T>()))
}

/// A hint to the processor to load `address`'s cache line: never a dereference (no
/// fault, whatever the address).
#[inline(always)]
#[allow(unsafe_code, unused_unsafe)]
pub(super) fn touch(address: usize) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `prefetcht0` reads no memory the program can observe and raises no fault
    // for any address; SSE is part of the x86-64 baseline.
    unsafe {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        _mm_prefetch::<_MM_HINT_T0>(address as *const i8);
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = address;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The table's layout as the hint assumes it, checked on every key of a large table:
    /// a `hashbrown` release that moved its buckets would fail here, not slow users down
    /// unseen.
    #[test]
    fn the_hint_finds_every_bucket_and_most_keys_in_their_first_buckets() {
        let hasher = ahash::RandomState::new();
        let mut table: HashTable<(u64, u64)> = HashTable::new();
        let hint = Hint::default();
        let n = 100_000u64;
        for key in 0..n {
            let hash = hasher.hash_one(key);
            table.insert_unique(hash, (key, !key), |e| hasher.hash_one(e.0));
            if key % 10_000 == 0 {
                hint.update(&table);
            }
        }
        hint.update(&table);
        let mask = table.num_buckets() - 1;
        let mut within_four = 0;
        for key in 0..n {
            let hash = hasher.hash_one(key);
            let index = table.find_bucket_index(hash, |e| e.0 == key).unwrap();
            let entry = table.get_bucket(index).unwrap();
            let (address, pos, hinted_mask) = hint.predict::<(u64, u64)>(index, hash);
            assert_eq!(hinted_mask, mask);
            assert_eq!(address, entry as *const _ as usize, "bucket {index}");
            let offset = index.wrapping_sub(pos) & mask;
            assert!(offset < table.num_buckets());
            if offset < 4 {
                within_four += 1;
            }
        }
        // A key is stored in the first free bucket of its probe, and the table is at most
        // seven eighths full: most keys sit in the first buckets the prefetch loads.
        assert!(within_four * 10 >= n * 7, "{within_four} of {n}");
    }

    #[test]
    fn an_empty_table_has_no_hint_and_prefetching_it_does_nothing() {
        let hint = Hint::default();
        hint.update(&HashTable::<(u64, u64)>::new());
        assert_eq!(hint.ctrl.load(Ordering::Relaxed), 0);
        assert_eq!(hint.targets::<(u64, u64)>(u64::MAX), None);
        // Any address may be prefetched, wrapping ones included.
        touch(0);
        touch(usize::MAX);
    }
}
