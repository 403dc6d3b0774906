//! [`PolicyDecision`]: the outcome of a policy check, with every applicable scope's
//! snapshot, kept inline (no allocation) for policies of up to eight scopes.

use std::sync::Arc;
use std::time::Duration;

use crate::decision::closest_to_exhaustion;
use crate::{CheckError, Decision};

/// How many scope reports a decision keeps without allocating.
const INLINE: usize = 8;

/// One applicable scope's part in a [`PolicyDecision`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScopeReport<'p> {
    /// The scope's name.
    pub name: &'p str,
    /// The scope's position in the policy (declaration order).
    pub index: usize,
    /// Whether the scope runs in shadow mode (reported, never denying).
    pub shadow: bool,
    /// The scope's own decision for this request.
    pub decision: Decision,
}

impl ScopeReport<'_> {
    /// Whether this scope denied (or, in shadow mode, would have denied) the request.
    pub fn is_denied(&self) -> bool {
        self.decision.is_denied()
    }
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Entry {
    pub(crate) index: u32,
    pub(crate) shadow: bool,
    pub(crate) decision: Decision,
}

/// Per-scope reports: inline for the first eight (no allocation), then in `spill`.
/// A place is `None` until its report is written, so that a new list writes a tag per
/// place, not a report, and a place never written (its walk failed) reports nothing.
#[derive(Debug, Clone)]
pub(crate) struct Entries {
    len: usize,
    inline: [Option<Entry>; INLINE],
    spill: Vec<Option<Entry>>,
}

impl Entries {
    #[inline]
    pub(crate) fn new() -> Self {
        Entries {
            len: 0,
            inline: [None; INLINE],
            spill: Vec::new(),
        }
    }

    /// Appends an entry (the Redis policy's reports arrive in order).
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    #[inline]
    pub(crate) fn push(&mut self, index: usize, shadow: bool, decision: Decision) {
        let position = self.reserve();
        self.set(
            position,
            Entry {
                index: index as u32,
                shadow,
                decision,
            },
        );
    }

    /// Appends an empty place for an entry written later by [`set`](Self::set);
    /// returns its position.
    #[inline]
    pub(crate) fn reserve(&mut self) -> usize {
        if self.len < INLINE {
            self.len += 1;
            return self.len - 1;
        }
        self.spill.push(None);
        INLINE + self.spill.len() - 1
    }

    /// Writes the entry at `position` (from [`reserve`](Self::reserve)).
    #[inline]
    pub(crate) fn set(&mut self, position: usize, entry: Entry) {
        let place = match position.checked_sub(INLINE) {
            None => self.inline.get_mut(position),
            Some(spilled) => self.spill.get_mut(spilled),
        };
        if let Some(place) = place {
            *place = Some(entry);
        }
    }

    /// Calls `f` on every entry, in order (cheaper than [`iter`](Self::iter)'s chain).
    #[inline]
    pub(crate) fn for_each(&self, mut f: impl FnMut(&Entry)) {
        for entry in self.inline[..self.len].iter().flatten() {
            f(entry);
        }
        for entry in self.spill.iter().flatten() {
            f(entry);
        }
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &Entry> + '_ {
        self.inline[..self.len]
            .iter()
            .chain(self.spill.iter())
            .flatten()
    }

    pub(crate) fn count(&self) -> usize {
        self.iter().count()
    }
}

/// The outcome of [`Policy::check`](crate::Policy::check): allowed iff every applicable
/// enforcing scope allowed.
///
/// On denial nothing was consumed in any scope; [`retry_after`](Self::retry_after) is the
/// longest wait among the denying scopes, after which this request passes them all.
#[derive(Debug, Clone)]
pub struct PolicyDecision<'p> {
    pub(crate) names: &'p [Arc<str>],
    pub(crate) entries: Entries,
    pub(crate) allowed: bool,
}

impl<'p> PolicyDecision<'p> {
    /// Whether the request may go through.
    pub fn is_allowed(&self) -> bool {
        self.allowed
    }

    /// Whether the request was refused.
    pub fn is_denied(&self) -> bool {
        !self.allowed
    }

    /// On denial, the longest retry-after among the denying enforcing scopes.
    pub fn retry_after(&self) -> Option<Duration> {
        self.denials()
            .filter_map(|s| s.decision.retry_after())
            .max()
    }

    /// Every applicable scope, in declaration order.
    pub fn scopes(&self) -> impl Iterator<Item = ScopeReport<'p>> + '_ {
        let names = self.names;
        self.entries.iter().map(move |e| ScopeReport {
            name: &names[e.index as usize],
            index: e.index as usize,
            shadow: e.shadow,
            decision: e.decision,
        })
    }

    /// How many scopes applied to the request.
    pub fn scope_count(&self) -> usize {
        self.entries.count()
    }

    /// The enforcing scopes that denied the request.
    pub fn denials(&self) -> impl Iterator<Item = ScopeReport<'p>> + '_ {
        self.scopes().filter(|s| !s.shadow && s.is_denied())
    }

    /// The shadow scopes that would have denied the request.
    pub fn shadow_denials(&self) -> impl Iterator<Item = ScopeReport<'p>> + '_ {
        self.scopes().filter(|s| s.shadow && s.is_denied())
    }

    /// The report of the named scope, if it applied.
    pub fn scope(&self, name: &str) -> Option<ScopeReport<'p>> {
        self.scopes().find(|s| s.name == name)
    }

    /// The enforcing scope closest to exhaustion: least remaining, ties to the longer
    /// reset, then to the first declared. `None` if no enforcing scope applied.
    pub fn closest(&self) -> Option<ScopeReport<'p>> {
        let enforcing = || self.scopes().filter(|s| !s.shadow);
        let i = closest_to_exhaustion(
            enforcing().map(|s| (s.decision.remaining(), s.decision.reset_after())),
        )?;
        enforcing().nth(i)
    }
}

/// A policy check that could not be decided: a scope refused the request's shape
/// (a cost above its capacity, a full key store, an invalid per-request limit), or its
/// limiter caught a panic from the rest of the check
/// ([`CheckError::Interrupted`]). When several scopes fail, the first failure is
/// reported (the innermost, for scopes that fail after their continuation ran).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("scope {scope:?}: {error}")]
pub struct PolicyError {
    /// The scope that refused.
    pub scope: Arc<str>,
    /// Why.
    pub error: CheckError,
}
