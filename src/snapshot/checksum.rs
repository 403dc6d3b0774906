//! Checksums over a snapshot's content, so that a damaged file whose numbers still parse
//! and still make sense (a count of 3 read back as 2) is caught rather than trusted.
//!
//! FNV-1a (64 bit) over a fixed byte encoding of the values, not of the serialised text:
//! the same snapshot written as JSON, YAML or a binary format has the same checksum, and
//! the encoding does not depend on the platform or the compiler. It detects accidents,
//! not tampering.

use std::net::IpAddr;

use super::{AlgorithmKind, Key, LimiterSnapshot, PolicySnapshot, StateSnapshot};
use crate::algorithm::{Anchor, Period};

struct Fnv(u64);

impl Fnv {
    fn new() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }

    fn bytes(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    fn u64(&mut self, v: u64) {
        self.bytes(&v.to_le_bytes());
    }

    fn tag(&mut self, tag: u8) {
        self.bytes(&[tag]);
    }

    fn text(&mut self, text: &[u8]) {
        self.u64(text.len() as u64);
        self.bytes(text);
    }

    fn key(&mut self, key: &Key) {
        match key {
            Key::Unit => self.tag(0),
            Key::Bool(b) => {
                self.tag(1);
                self.tag(u8::from(*b));
            }
            Key::U64(v) => {
                self.tag(2);
                self.u64(*v);
            }
            Key::I64(v) => {
                self.tag(3);
                self.bytes(&v.to_le_bytes());
            }
            Key::Str(s) => {
                self.tag(4);
                self.text(s.as_bytes());
            }
            Key::Ip(IpAddr::V4(ip)) => {
                self.tag(5);
                self.bytes(&ip.octets());
            }
            Key::Ip(IpAddr::V6(ip)) => {
                self.tag(6);
                self.bytes(&ip.octets());
            }
            Key::Bytes(b) => {
                self.tag(7);
                self.text(b);
            }
            Key::Tuple(items) => {
                self.tag(8);
                self.u64(items.len() as u64);
                for item in items {
                    self.key(item);
                }
            }
        }
    }

    fn algorithm(&mut self, kind: &AlgorithmKind) {
        match kind {
            AlgorithmKind::FixedWindow { anchor } => {
                self.tag(0);
                self.tag(match anchor {
                    Anchor::Clock => 0,
                    Anchor::FirstRequest => 1,
                });
            }
            AlgorithmKind::SlidingWindow => self.tag(1),
            AlgorithmKind::SlidingLog => self.tag(2),
            AlgorithmKind::Gcra { burst } => {
                self.tag(3);
                self.u64(*burst);
            }
            AlgorithmKind::Calendar { period, anchor } => {
                self.tag(4);
                self.tag(match period {
                    Period::Day => 0,
                    Period::Month => 1,
                });
                self.tag(anchor.day());
                self.u64(anchor.time_of_day().as_secs());
            }
        }
    }

    fn state(&mut self, state: &StateSnapshot) {
        match state {
            StateSnapshot::FixedWindow(s) => {
                self.tag(0);
                self.u64(s.start);
                self.u64(s.count);
            }
            StateSnapshot::SlidingWindow(s) => {
                self.tag(1);
                self.u64(s.start);
                self.u64(s.prev);
                self.u64(s.cur);
            }
            StateSnapshot::SlidingLog(s) => {
                self.tag(2);
                let (expired_total, entries) = s.raw();
                self.u64(expired_total);
                self.u64(entries.len() as u64);
                for (at, total) in entries {
                    self.u64(at);
                    self.u64(total);
                }
            }
            StateSnapshot::Gcra(tat) => {
                self.tag(3);
                self.u64(*tat);
            }
            StateSnapshot::Calendar(s) => {
                self.tag(4);
                self.u64(s.start);
                self.u64(s.end);
                self.u64(s.count);
            }
        }
    }
}

/// The checksum of everything in a limiter snapshot but the checksum itself.
pub(crate) fn of_limiter(s: &LimiterSnapshot) -> u64 {
    let mut h = Fnv::new();
    h.u64(u64::from(s.version));
    h.u64(s.taken_at);
    h.algorithm(&s.algorithm);
    h.u64(s.rate.count());
    h.u64(s.rate.window_nanos());
    h.u64(s.keys.len() as u64);
    for entry in &s.keys {
        h.key(&entry.key);
        h.state(&entry.state);
    }
    h.0
}

/// The checksum of a policy snapshot: its header, and each scope's name and content.
pub(crate) fn of_policy(s: &PolicySnapshot) -> u64 {
    let mut h = Fnv::new();
    h.u64(u64::from(s.version));
    h.u64(s.taken_at);
    h.u64(s.scopes.len() as u64);
    for scope in &s.scopes {
        h.text(scope.name.as_bytes());
        h.u64(of_limiter(&scope.limiter));
    }
    h.0
}
