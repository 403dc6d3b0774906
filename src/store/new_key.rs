//! A key met for the first time (see the key cap in the module docs): its slot under
//! the cap, reserved before its request is decided on a fresh state and given back
//! unless the request consumed, and the key stored once it has.

use std::borrow::Borrow;
use std::hash::Hash;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::hint::Hint;
use super::{Entry, OnFull, Store, Table};
use crate::algorithm::Algorithm;
use crate::{CheckError, Nanos};

/// A slot reserved under the key cap, given back when dropped (also when a closure
/// deciding for the new key panics) unless the key was stored.
struct Reserved<'a>(&'a AtomicUsize);

impl Drop for Reserved<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A key met for the first time, decided on a fresh state. With a slot reserved under the
/// key cap, the key and its state are stored if the request consumes; without one (at
/// the cap under [`OnFull::AllowUntracked`]) they never are.
pub(super) struct New<'a, K, S> {
    pub(super) state: S,
    stored: Option<(Reserved<'a>, K)>,
}

impl<K: Hash + Eq + Send + Sync + 'static, A: Algorithm> Store<K, A> {
    /// Stores a new key whose request consumed, if it has a slot.
    #[cold]
    #[inline(never)]
    pub(super) fn store_new(
        &self,
        table: &mut Table<K, A>,
        hint: &Hint,
        hash: u64,
        new: New<'_, K, A::State>,
        now: Nanos,
    ) {
        if let Some((slot, key)) = new.stored {
            let entry = Entry {
                key,
                state: new.state,
            };
            let entries = &mut table.keys.entries;
            entries.insert_unique(hash, entry, |e| self.hasher.hash_one(&e.key));
            hint.update(entries);
            std::mem::forget(slot);
            self.tick(table, hint, now);
        }
    }

    /// For [`with_state`](Self::with_state), a key that is not tracked yet: `admit`
    /// refuses the request, the key cap the key, or the key gets a slot.
    #[cold]
    #[inline(never)]
    pub(super) fn admit_new<Q>(
        &self,
        table: &mut Table<K, A>,
        hint: &Hint,
        key: &Q,
        now: Nanos,
        admit: impl FnOnce(&A) -> Result<(), CheckError>,
    ) -> Result<New<'_, K, A::State>, CheckError>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        admit(&table.keys.alg)?;
        if !self.reserve_slot(table, hint, now) {
            return match self.on_full {
                OnFull::Reject => Err(CheckError::KeyCapReached {
                    max_keys: self.max_keys,
                }),
                OnFull::AllowUntracked => Ok(New {
                    state: table.keys.alg.fresh(),
                    stored: None,
                }),
            };
        }
        let slot = Reserved(&self.len);
        Ok(New {
            state: table.keys.alg.fresh(),
            stored: Some((slot, key.to_owned())),
        })
    }

    /// Counts a new key against the cap. At the cap, the shard is swept first if it has
    /// seen enough operations since its last sweep (refused keys count too), so a flood of
    /// new keys costs amortised O(1) each rather than a sweep each.
    fn reserve_slot(&self, table: &mut Table<K, A>, hint: &Hint, now: Nanos) -> bool {
        if self.try_count_key() {
            return true;
        }
        table.ops += 1;
        if table.ops <= table.keys.entries.len() / 2 {
            return false;
        }
        table.ops = 0;
        self.sweep(table, hint, now);
        self.try_count_key()
    }

    pub(super) fn try_count_key(&self) -> bool {
        if self.len.fetch_add(1, Ordering::Relaxed) < self.max_keys {
            return true;
        }
        self.len.fetch_sub(1, Ordering::Relaxed);
        false
    }
}
