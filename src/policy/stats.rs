//! What a policy decided, counted per scope: always on, cheap, and exportable.
//!
//! Counters live in per-thread stripes, each on its own cache lines: the first 63 threads
//! that record each own a stripe and count with plain loads and stores (exact: one
//! writer), later threads share one stripe with atomic increments. Threads never contend
//! on a counter; [`Policy::stats`](crate::Policy::stats) adds the stripes up.
//! With the `metrics` feature the same events go to the `metrics` facade through
//! handles registered once when the policy is built (install the recorder first); with
//! `tracing`, each denial is a debug-level event. Labels are the policy's and scopes'
//! names, never keys.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use super::decision::PolicyDecision;

/// Stripe 0 is shared (atomic increments); stripes 1.. each belong to one thread, which
/// increments with a plain load and store: exact, because it is the only writer.
const STRIPES: usize = 64;
const PER_LINE: usize = 16;
/// Counters before the per-scope ones: checks allowed, checks denied.
const GLOBAL: usize = 2;
/// Per scope: allowed, denied, shadow denied, near limit.
const PER_SCOPE: usize = 4;

#[repr(align(128))]
struct Line([AtomicU64; PER_LINE]);

/// Counters of one scope, summed over all threads.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct ScopeStats {
    /// The scope's name.
    pub name: Arc<str>,
    /// Checks this scope allowed.
    pub allowed: u64,
    /// Checks this enforcing scope denied.
    pub denied: u64,
    /// Checks this shadow scope would have denied.
    pub shadow_denied: u64,
    /// Checks after which at least the near-limit share of the limit was in use.
    pub near_limit: u64,
    /// Keys the scope's limiter tracks now.
    pub tracked_keys: usize,
    /// Idle keys evicted so far.
    pub evictions: u64,
}

/// Counters of a whole policy: see [`Policy::stats`](crate::Policy::stats).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct PolicyStats {
    /// Checks allowed.
    pub allowed: u64,
    /// Checks denied.
    pub denied: u64,
    /// Per scope, in declaration order.
    pub scopes: Vec<ScopeStats>,
}

pub(crate) struct Stats {
    lines_per_stripe: usize,
    lines: Box<[Line]>,
    /// Near limit when `used × 100 ≥ limit × near_limit_percent`.
    pub(crate) near_limit_percent: u64,
    #[cfg(feature = "metrics")]
    metrics: Option<metrics_out::Handles>,
}

/// This thread's stripe: its own for the first 63 threads that record, the shared one
/// for any after them.
fn stripe() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(1);
    thread_local!(static STRIPE: Cell<usize> = const { Cell::new(usize::MAX) });
    STRIPE.with(|s| {
        if s.get() == usize::MAX {
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            s.set(if n < STRIPES { n } else { 0 });
        }
        s.get()
    })
}

impl Stats {
    pub(crate) fn new(scopes: usize, near_limit_percent: u64) -> Stats {
        let lines_per_stripe = (GLOBAL + PER_SCOPE * scopes).div_ceil(PER_LINE);
        Stats {
            lines_per_stripe,
            lines: (0..lines_per_stripe * STRIPES)
                .map(|_| Line(std::array::from_fn(|_| AtomicU64::new(0))))
                .collect(),
            near_limit_percent,
            #[cfg(feature = "metrics")]
            metrics: None,
        }
    }

    #[cfg(feature = "metrics")]
    pub(crate) fn register_metrics(&mut self, policy: &str, scopes: &[Arc<str>]) {
        self.metrics = Some(metrics_out::Handles::register(policy, scopes));
    }

    fn sum(&self, counter: usize) -> u64 {
        (0..STRIPES)
            .map(|s| {
                let line = s * self.lines_per_stripe + counter / PER_LINE;
                self.lines[line].0[counter % PER_LINE].load(Ordering::Relaxed)
            })
            .sum()
    }

    #[inline]
    pub(crate) fn record(&self, policy: &str, decision: &PolicyDecision<'_>) {
        let stripe = stripe();
        let first = stripe * self.lines_per_stripe;
        let Some(lines) = self.lines.get(first..first + self.lines_per_stripe) else {
            return;
        };
        // One copy of the walk per way of counting, so that each count is one add.
        if stripe == 0 {
            self.record_in(lines, policy, decision, |c| {
                c.fetch_add(1, Ordering::Relaxed);
            });
        } else {
            // this thread is the stripe's only writer
            self.record_in(lines, policy, decision, |c| {
                c.store(c.load(Ordering::Relaxed) + 1, Ordering::Relaxed)
            });
        }
    }

    #[inline(always)]
    fn record_in(
        &self,
        lines: &[Line],
        policy: &str,
        decision: &PolicyDecision<'_>,
        add: impl Fn(&AtomicU64),
    ) {
        let bump = |counter: usize| {
            if let Some(line) = lines.get(counter / PER_LINE) {
                add(&line.0[counter % PER_LINE]);
            }
        };
        bump(usize::from(decision.is_denied()));
        #[cfg(feature = "metrics")]
        if let Some(m) = &self.metrics {
            m.check(decision.is_allowed());
        }
        decision.entries.for_each(|entry| {
            let d = &entry.decision;
            let outcome = match (entry.shadow, d.is_denied()) {
                (_, false) => 0,
                (false, true) => 1,
                (true, true) => 2,
            };
            let index = entry.index as usize;
            let base = GLOBAL + PER_SCOPE * index;
            bump(base + outcome);
            let near = d.used_at_least_percent(self.near_limit_percent);
            if near {
                bump(base + 3);
            }
            #[cfg(feature = "metrics")]
            if let Some(m) = &self.metrics {
                m.scope(index, outcome, near);
            }
            #[cfg(feature = "tracing")]
            if outcome > 0 {
                tracing::debug!(
                    policy,
                    scope = &*decision.names[index],
                    shadow = entry.shadow,
                    retry_after_ms = d.retry_after().map_or(0, |r| r.as_millis() as u64),
                    "rate limit denial"
                );
            }
        });
        let _ = policy;
    }

    pub(crate) fn snapshot(
        &self,
        names: &[Arc<str>],
        keys: impl Fn(usize) -> (usize, u64),
    ) -> PolicyStats {
        PolicyStats {
            allowed: self.sum(0),
            denied: self.sum(1),
            scopes: names
                .iter()
                .enumerate()
                .map(|(i, name)| {
                    let base = GLOBAL + PER_SCOPE * i;
                    let (tracked_keys, evictions) = keys(i);
                    #[cfg(feature = "metrics")]
                    if let Some(m) = &self.metrics {
                        m.keys(i, tracked_keys, evictions);
                    }
                    ScopeStats {
                        name: name.clone(),
                        allowed: self.sum(base),
                        denied: self.sum(base + 1),
                        shadow_denied: self.sum(base + 2),
                        near_limit: self.sum(base + 3),
                        tracked_keys,
                        evictions,
                    }
                })
                .collect(),
        }
    }
}

#[cfg(feature = "metrics")]
mod metrics_out {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;

    use metrics::{counter, gauge, Counter, Gauge};

    struct Scope {
        outcomes: [Counter; 3],
        near_limit: Counter,
        tracked_keys: Gauge,
        evictions: Counter,
        evictions_seen: AtomicU64,
    }

    pub(super) struct Handles {
        checks: [Counter; 2],
        scopes: Vec<Scope>,
    }

    impl Handles {
        pub(super) fn register(policy: &str, scopes: &[Arc<str>]) -> Handles {
            let policy = policy.to_owned();
            let check = |outcome: &'static str| counter!("ratewarden_checks_total", "policy" => policy.clone(), "outcome" => outcome);
            Handles {
                checks: [check("allowed"), check("denied")],
                scopes: scopes
                    .iter()
                    .map(|name| {
                        let labels = [("policy", policy.clone()), ("scope", name.to_string())];
                        let outcome = |o: &'static str| {
                            let mut l = labels.to_vec();
                            l.push(("outcome", o.to_owned()));
                            counter!("ratewarden_decisions_total", &l)
                        };
                        Scope {
                            outcomes: [
                                outcome("allowed"),
                                outcome("denied"),
                                outcome("shadow_denied"),
                            ],
                            near_limit: counter!("ratewarden_near_limit_total", &labels),
                            tracked_keys: gauge!("ratewarden_tracked_keys", &labels),
                            evictions: counter!("ratewarden_evictions_total", &labels),
                            evictions_seen: AtomicU64::new(0),
                        }
                    })
                    .collect(),
            }
        }

        pub(super) fn check(&self, allowed: bool) {
            self.checks[usize::from(!allowed)].increment(1);
        }

        pub(super) fn scope(&self, index: usize, outcome: usize, near: bool) {
            if let Some(s) = self.scopes.get(index) {
                s.outcomes[outcome].increment(1);
                if near {
                    s.near_limit.increment(1);
                }
            }
        }

        pub(super) fn keys(&self, index: usize, tracked: usize, evictions: u64) {
            if let Some(s) = self.scopes.get(index) {
                s.tracked_keys.set(tracked as f64);
                let before = s.evictions_seen.swap(evictions, Ordering::Relaxed);
                s.evictions.increment(evictions.saturating_sub(before));
            }
        }
    }
}
