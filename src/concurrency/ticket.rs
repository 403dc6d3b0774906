//! [`Ticket`]: a place in a key's queue, granted a slot in turn as the permits ahead of
//! it are released, and taken as a [`Permit`] by polling, blocking or `.await`.

use std::future::Future;
use std::hash::Hash;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use super::{Inner, Permit, Wait, Waiter};

/// A place in a key's queue. Becomes a [`Permit`] when its turn comes: poll with
/// [`try_permit`](Ticket::try_permit), block with [`wait`](Ticket::wait) /
/// [`wait_timeout`](Ticket::wait_timeout), or `.await` it under any executor.
pub struct Ticket<K: Hash + Eq> {
    pub(super) inner: Arc<Inner<K>>,
    pub(super) key: K,
    pub(super) waiter: Arc<Waiter>,
    pub(super) done: bool,
}

impl<K: Hash + Eq + Clone> Ticket<K> {
    /// The 1-based place in the queue, or `None` once the slot is granted.
    pub fn position(&self) -> Option<usize> {
        if self.is_ready() {
            return None;
        }
        self.inner.position(&self.key, &self.waiter)
    }

    /// Whether the slot has been granted.
    pub fn is_ready(&self) -> bool {
        matches!(*self.waiter.state.lock(), Wait::Granted)
    }

    fn into_permit(mut self) -> Permit<K> {
        *self.waiter.state.lock() = Wait::Taken;
        self.done = true;
        Permit {
            inner: self.inner.clone(),
            key: self.key.clone(),
        }
    }

    /// The permit if the slot has been granted, or the ticket back.
    pub fn try_permit(self) -> Result<Permit<K>, Ticket<K>> {
        if self.is_ready() {
            Ok(self.into_permit())
        } else {
            Err(self)
        }
    }

    /// Blocks until the slot is granted.
    pub fn wait(self) -> Permit<K> {
        {
            let mut state = self.waiter.state.lock();
            while !matches!(*state, Wait::Granted) {
                self.waiter.ready.wait(&mut state);
            }
        }
        self.into_permit()
    }

    /// Blocks until the slot is granted or `timeout` passes; on timeout the ticket comes
    /// back still queued (drop it to leave the queue).
    pub fn wait_timeout(self, timeout: Duration) -> Result<Permit<K>, Ticket<K>> {
        let deadline = Instant::now() + timeout;
        {
            let mut state = self.waiter.state.lock();
            while !matches!(*state, Wait::Granted) {
                if self
                    .waiter
                    .ready
                    .wait_until(&mut state, deadline)
                    .timed_out()
                {
                    break;
                }
            }
        }
        self.try_permit()
    }
}

impl<K: Hash + Eq + Clone + Unpin> Future for Ticket<K> {
    type Output = Permit<K>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Permit<K>> {
        let this = self.get_mut();
        {
            let mut state = this.waiter.state.lock();
            match &*state {
                Wait::Granted => {}
                Wait::Taken => return Poll::Pending,
                _ => {
                    *state = Wait::Parked(cx.waker().clone());
                    return Poll::Pending;
                }
            }
            *state = Wait::Taken;
        }
        this.done = true;
        Poll::Ready(Permit {
            inner: this.inner.clone(),
            key: this.key.clone(),
        })
    }
}

impl<K: Hash + Eq> Drop for Ticket<K> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        // Under the shard lock nobody can grant a ticket that is no longer queued, so
        // after leaving the queue its state is final.
        self.inner.leave_queue(&self.key, &self.waiter);
        if matches!(*self.waiter.state.lock(), Wait::Granted) {
            self.inner.release(&self.key);
        }
    }
}

impl<K: Hash + Eq> std::fmt::Debug for Ticket<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ticket").finish_non_exhaustive()
    }
}
