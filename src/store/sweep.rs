//! Sweeps (see eviction in the module docs): the grace period and the pace of sweeps,
//! the count of the operations that consume on a shard, and the sweep that the one
//! finding it due runs, dropping the shard's idle keys.

use std::hash::Hash;
use std::sync::atomic::Ordering;

use super::hint::Hint;
use super::{Keys, Store, Table};
use crate::algorithm::Algorithm;
use crate::Nanos;

/// How long a key must have been idle before a sweep drops it.
pub const IDLE_GRACE: std::time::Duration = std::time::Duration::from_secs(1);
const IDLE_GRACE_NANOS: u64 = IDLE_GRACE.as_nanos() as u64;

/// Operations a shard absorbs before it sweeps, at the least.
const MIN_SWEEP_INTERVAL: usize = 64;

/// Time between two sweeps of a shard driven by its traffic, at the least: keys become
/// evictable only [`IDLE_GRACE`] after their last use, so sweeping a busy shard more
/// often finds little and costs a pass over its keys each time.
const SWEEP_GAP_NANOS: u64 = IDLE_GRACE_NANOS / 4;

/// Time after which a shard that sees any traffic sweeps, however little: keys that went
/// idle together are reclaimed even when the traffic after them is a fraction of their
/// number.
const SWEEP_PERIOD_NANOS: u64 = 2 * IDLE_GRACE_NANOS;

impl<K: Hash + Eq + Send + Sync + 'static, A: Algorithm> Store<K, A> {
    /// Counts an operation on the shard, sweeping it once enough have gone by.
    #[inline]
    pub(super) fn tick(&self, table: &mut Table<K, A>, hint: &Hint, now: Nanos) {
        table.ops += 1;
        if table.ops < MIN_SWEEP_INTERVAL {
            return;
        }
        let since = now.saturating_sub(table.swept_at);
        if since >= SWEEP_PERIOD_NANOS
            || (since >= SWEEP_GAP_NANOS && table.ops > table.keys.entries.len() / 2)
        {
            table.ops = 0;
            self.sweep(table, hint, now);
        }
    }

    #[cold]
    pub(super) fn sweep(&self, table: &mut Table<K, A>, hint: &Hint, now: Nanos) {
        table.swept_at = table.swept_at.max(now);
        let Keys { entries, alg } = &mut table.keys;
        let before = entries.len();
        // Idle as of a grace period ago: keys that come back within it stay, so a key
        // whose quota refills between their own requests is not dropped and re-inserted on
        // every visit (GCRA keys are idle one emission interval after a request).
        let idle_since = now.saturating_sub(IDLE_GRACE_NANOS);
        entries.retain(|e| !alg.is_idle(&e.state, idle_since));
        let removed = before - entries.len();
        if removed > 0 {
            self.len.fetch_sub(removed, Ordering::Relaxed);
            self.evictions.fetch_add(removed as u64, Ordering::Relaxed);
            if entries.capacity() > 4 * entries.len() + 64 {
                entries.shrink_to(entries.len() * 2, |e| self.hasher.hash_one(&e.key));
                hint.update(entries);
            }
        }
    }
}
