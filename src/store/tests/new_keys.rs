//! A new key's path through `with_state`, against the store directly.

use super::*;
use crate::{Gcra, Rate};
use std::cell::RefCell;
use std::panic::{catch_unwind, AssertUnwindSafe};

fn gcra() -> Gcra {
    Gcra::new(Rate::per_second(10).unwrap())
}

fn store(max_keys: usize, on_full: OnFull) -> Store<Owned, Gcra> {
    Store::new(&gcra(), 1, max_keys, on_full)
}

fn ops(s: &Store<Owned, Gcra>) -> usize {
    s.shards[0].0.lock().ops
}

fn tracked(s: &Store<Owned, Gcra>) -> usize {
    s.shards[0].0.lock().keys.entries.len()
}

thread_local! { static LOG: RefCell<Vec<&'static str>> = const { RefCell::new(Vec::new()) }; }
fn log(e: &'static str) {
    LOG.with(|l| l.borrow_mut().push(e));
}
fn take_log() -> Vec<&'static str> {
    LOG.with(|l| std::mem::take(&mut *l.borrow_mut()))
}

/// A borrowed key whose `to_owned` is logged (so the order "owned before decided"
/// is observable).
#[derive(Hash, PartialEq, Eq)]
struct Borrowed(u64);
#[derive(Hash, PartialEq, Eq)]
struct Owned(Borrowed);
impl std::borrow::Borrow<Borrowed> for Owned {
    fn borrow(&self) -> &Borrowed {
        &self.0
    }
}
impl ToOwned for Borrowed {
    type Owned = Owned;
    fn to_owned(&self) -> Owned {
        log("to_owned");
        assert_ne!(self.0, 666, "to_owned panics");
        Owned(Borrowed(self.0))
    }
}

type F = fn(&Gcra, &mut <Gcra as Algorithm>::State) -> Result<((), bool), CheckError>;
fn run(s: &Store<Owned, Gcra>, key: u64, f: F) -> Result<(), CheckError> {
    s.with_state(
        &Borrowed(key),
        10,
        |_| {
            log("admit");
            Ok(())
        },
        f,
    )
}
fn consume(_: &Gcra, s: &mut <Gcra as Algorithm>::State) -> Result<((), bool), CheckError> {
    log("f");
    *s = 1 << 60; // in use: never swept
    Ok(((), true))
}
fn decline(_: &Gcra, _: &mut <Gcra as Algorithm>::State) -> Result<((), bool), CheckError> {
    log("f");
    Ok(((), false))
}
fn fail(_: &Gcra, _: &mut <Gcra as Algorithm>::State) -> Result<((), bool), CheckError> {
    log("f");
    Err(CheckError::InvalidLimit { count: 0 })
}

#[test]
fn new_key_consumed_is_stored_owned_first_and_ticks() {
    let s = store(10, OnFull::Reject);
    take_log();
    run(&s, 1, consume).unwrap();
    assert_eq!(take_log(), ["admit", "to_owned", "f"]);
    assert_eq!((s.len(), tracked(&s), ops(&s)), (1, 1, 1));
    // Known key now: no admit, no to_owned; ticks on consume only.
    run(&s, 1, consume).unwrap();
    assert_eq!(take_log(), ["f"]);
    assert_eq!((s.len(), tracked(&s), ops(&s)), (1, 1, 2));
    run(&s, 1, decline).unwrap();
    assert_eq!((s.len(), tracked(&s), ops(&s)), (1, 1, 2));
    assert!(run(&s, 1, fail).is_err());
    assert_eq!((s.len(), tracked(&s), ops(&s)), (1, 1, 2));
}

#[test]
fn new_key_declined_failed_or_panicking_gives_slot_back_and_does_not_tick() {
    let s = store(1, OnFull::Reject);
    take_log();
    run(&s, 1, decline).unwrap();
    assert_eq!(take_log(), ["admit", "to_owned", "f"]);
    assert_eq!((s.len(), tracked(&s), ops(&s)), (0, 0, 0));
    assert!(run(&s, 1, fail).is_err());
    assert_eq!((s.len(), tracked(&s), ops(&s)), (0, 0, 0));
    let r = catch_unwind(AssertUnwindSafe(|| {
        s.with_state(
            &Borrowed(1),
            10,
            |_| Ok(()),
            |_, _| -> Result<((), bool), CheckError> { panic!("bug") },
        )
    }));
    assert!(r.is_err());
    // The shard lock was released and the slot given back.
    assert_eq!((s.len(), tracked(&s), ops(&s)), (0, 0, 0));
    run(&s, 2, consume).unwrap();
    assert_eq!((s.len(), tracked(&s)), (1, 1));
}

#[test]
fn a_panicking_to_owned_gives_the_slot_back_and_decides_nothing() {
    let s = store(1, OnFull::Reject);
    take_log();
    assert!(catch_unwind(AssertUnwindSafe(|| run(&s, 666, consume))).is_err());
    assert_eq!(take_log(), ["admit", "to_owned"]);
    assert_eq!((s.len(), tracked(&s), ops(&s)), (0, 0, 0));
    run(&s, 1, consume).unwrap();
    assert_eq!((s.len(), tracked(&s)), (1, 1));
}

#[test]
fn admit_refusal_decides_nothing_and_reserves_nothing() {
    let s = store(1, OnFull::Reject);
    take_log();
    let r = s.with_state(
        &Borrowed(1),
        10,
        |_| Err(CheckError::InvalidLimit { count: 9 }),
        consume as F,
    );
    assert!(r.is_err());
    assert_eq!(take_log(), Vec::<&str>::new());
    assert_eq!((s.len(), tracked(&s), ops(&s)), (0, 0, 0));
}

/// A store at its cap of 4 (all in use), its operation count reset, so that the
/// next two refused keys do not trigger a sweep (ops <= len / 2).
fn full(on_full: OnFull) -> Store<Owned, Gcra> {
    let s = store(4, on_full);
    for k in 0..4 {
        run(&s, k, consume).unwrap();
    }
    s.shards[0].0.lock().ops = 0;
    take_log();
    s
}

#[test]
fn reject_at_the_cap_decides_nothing() {
    let s = full(OnFull::Reject);
    assert_eq!(
        run(&s, 9, consume),
        Err(CheckError::KeyCapReached { max_keys: 4 })
    );
    assert_eq!(take_log(), ["admit"]);
    // reserve_slot counts the refused key (pre-existing behaviour), nothing else.
    assert_eq!((s.len(), tracked(&s), ops(&s)), (4, 4, 1));
}

#[test]
fn allow_untracked_at_the_cap_decides_on_fresh_never_stores_never_ticks() {
    let s = full(OnFull::AllowUntracked);
    s.with_state(
        &Borrowed(9),
        10,
        |_| Ok(()),
        |_, st| {
            assert_eq!(*st, 0, "fresh state");
            consume(&gcra(), st)
        },
    )
    .unwrap();
    // Not owned: nothing to store.
    assert_eq!(take_log(), ["f"]);
    // Only reserve_slot's count of the refused key: the consuming decision on an
    // untracked key does not tick.
    assert_eq!((s.len(), tracked(&s), ops(&s)), (4, 4, 1));
    run(&s, 9, decline).unwrap();
    assert_eq!((s.len(), tracked(&s), ops(&s)), (4, 4, 2));
    assert!(run(&s, 9, fail).is_err());
    let r = catch_unwind(AssertUnwindSafe(|| {
        s.with_state(
            &Borrowed(9),
            10,
            |_| Ok(()),
            |_, _| -> Result<((), bool), CheckError> { panic!("bug") },
        )
    }));
    assert!(r.is_err());
    assert_eq!((s.len(), tracked(&s)), (4, 4));
}

/// `f` re-enters another store (a policy's later scope) while a new key's slot in
/// this one is reserved: the reservation is visible to nobody else's cap, and
/// nothing of this store is held beyond its shard.
#[test]
fn reentrant_later_scope_sees_this_stores_reservation_only_in_this_store() {
    let a = store(1, OnFull::Reject);
    let b = store(1, OnFull::Reject);
    a.with_state(
        &Borrowed(1),
        10,
        |_| Ok(()),
        |_, _| {
            assert_eq!(a.len(), 1, "slot reserved during the decision");
            b.with_state(&Borrowed(1), 10, |_| Ok(()), consume as F)?;
            Ok(((), false))
        },
    )
    .unwrap();
    assert_eq!((a.len(), tracked(&a)), (0, 0));
    assert_eq!((b.len(), tracked(&b)), (1, 1));
}
