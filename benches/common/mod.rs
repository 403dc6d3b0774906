//! Helpers shared by the benches: keys, a key cycle, and two-thread timing.

use std::time::{Duration, Instant};

/// Keys spread over the 64-bit space, as hashed identifiers would be.
pub fn keys(n: u64) -> Vec<u64> {
    (0..n)
        .map(|i| i.wrapping_mul(0x9E37_79B9_7F4A_7C15))
        .collect()
}

/// An endless walk over `keys`.
pub fn cycle<'a>(keys: &'a [u64]) -> impl FnMut() -> &'a u64 {
    let mut i = 0;
    move || {
        i += 1;
        if i == keys.len() {
            i = 0;
        }
        &keys[i]
    }
}

/// Runs `per_thread(iters / 2, thread)` on two threads at once; the wall time of both.
pub fn two_threads(iters: u64, per_thread: impl Fn(u64, usize) + Sync) -> Duration {
    let start = Instant::now();
    std::thread::scope(|s| {
        for t in 0..2 {
            let f = &per_thread;
            s.spawn(move || f(iters / 2, t));
        }
    });
    start.elapsed()
}
