//! A validated scope and how it becomes a [`Scope`] over [`Attributes`].

use std::collections::HashMap;

use super::{Attributes, PLAN_ATTRIBUTE};
use crate::algorithm::Algorithm;
use crate::{
    CalendarLimiter, CalendarQuota, FixedWindow, Gcra, Rate, Scope, SlidingLog, SlidingWindow,
    UnkeyedLimiter,
};

/// Which attributes key a scope.
#[derive(Clone)]
pub(super) enum KeySpec {
    /// One quota shared by every request the scope applies to.
    Shared,
    One(String),
    Many(Vec<String>),
}

impl KeySpec {
    /// The key's attribute values; `None` if one is absent.
    fn values(&self, req: &Attributes) -> Option<Vec<String>> {
        match self {
            KeySpec::Shared => Some(Vec::new()),
            KeySpec::One(a) => req.get(a).map(|v| vec![v.to_owned()]),
            KeySpec::Many(attrs) => attrs
                .iter()
                .map(|a| req.get(a).map(str::to_owned))
                .collect(),
        }
    }
}

/// Conditions on attributes: each named attribute must have one of its listed values.
#[derive(Clone, Default)]
pub(super) struct When(pub(super) Vec<(String, Vec<String>)>);

impl When {
    #[inline]
    fn matches(&self, req: &Attributes) -> bool {
        self.0
            .iter()
            .all(|(attr, values)| req.get(attr).is_some_and(|v| values.iter().any(|x| x == v)))
    }
}

pub(super) enum AlgSpec {
    FixedWindow(FixedWindow),
    SlidingWindow(SlidingWindow),
    SlidingLog(SlidingLog),
    Gcra(Gcra),
    Calendar(CalendarQuota, Option<String>),
}

impl AlgSpec {
    pub(super) fn rate(&self) -> Rate {
        match self {
            AlgSpec::FixedWindow(a) => a.rate(),
            AlgSpec::SlidingWindow(a) => a.rate(),
            AlgSpec::SlidingLog(a) => a.rate(),
            AlgSpec::Gcra(a) => a.rate(),
            AlgSpec::Calendar(a, _) => a.rate(),
        }
    }
}

/// One valid scope, ready to build.
pub(super) struct ScopeSpec {
    pub(super) name: String,
    pub(super) alg: AlgSpec,
    pub(super) key: KeySpec,
    pub(super) when: When,
    pub(super) plans: HashMap<String, u64>,
    pub(super) overrides: HashMap<String, u64>,
    pub(super) shadow: bool,
}

impl ScopeSpec {
    pub(super) fn build(self) -> Scope<Attributes> {
        let limit = self.limit_fn();
        let ScopeSpec {
            name,
            alg,
            key,
            when,
            shadow,
            ..
        } = self;
        let scope = match alg {
            AlgSpec::FixedWindow(a) => keyed(&name, a, key, when),
            AlgSpec::SlidingWindow(a) => keyed(&name, a, key, when),
            AlgSpec::SlidingLog(a) => keyed(&name, a, key, when),
            AlgSpec::Gcra(a) => keyed(&name, a, key, when),
            AlgSpec::Calendar(q, None) => keyed(&name, q, key, when),
            AlgSpec::Calendar(q, Some(attribute)) => {
                let fallback = q.anchor();
                Scope::with_limiter(
                    &name,
                    CalendarLimiter::<Vec<String>>::new(q),
                    move |r: &Attributes| {
                        if !when.matches(r) {
                            return None;
                        }
                        let anchor = r
                            .get(&attribute)
                            .and_then(|s| s.parse().ok())
                            .unwrap_or(fallback);
                        Some((key.values(r)?, anchor))
                    },
                )
            }
        };
        let scope = match limit {
            Some(f) => scope.limit_by(f),
            None => scope,
        };
        if shadow {
            scope.shadow()
        } else {
            scope
        }
    }

    /// The per-request count: the key's override, else the plan's, else the scope's own.
    fn limit_fn(&self) -> Option<impl Fn(&Attributes) -> Option<u64> + Send + Sync + 'static> {
        if self.plans.is_empty() && self.overrides.is_empty() {
            return None;
        }
        let key_attr = match &self.key {
            KeySpec::One(a) => Some(a.clone()),
            _ => None,
        };
        let (plans, overrides) = (self.plans.clone(), self.overrides.clone());
        Some(move |r: &Attributes| {
            let own = key_attr
                .as_deref()
                .and_then(|a| r.get(a))
                .and_then(|k| overrides.get(k).copied());
            own.or_else(|| r.get(PLAN_ATTRIBUTE).and_then(|p| plans.get(p).copied()))
        })
    }
}

fn keyed<A: Algorithm>(name: &str, alg: A, key: KeySpec, when: When) -> Scope<Attributes> {
    match key {
        KeySpec::One(attr) => {
            Scope::keyed_by_ref::<String, str, A, _>(name, alg, move |r: &Attributes| {
                if when.matches(r) {
                    r.get(&attr)
                } else {
                    None
                }
            })
        }
        // The key is built (allocated) per check: not twice.
        KeySpec::Many(_) => Scope::keyed(name, alg, move |r: &Attributes| {
            if when.matches(r) {
                key.values(r)
            } else {
                None
            }
        })
        .prefetch(false),
        KeySpec::Shared => Scope::with_limiter(name, UnkeyedLimiter::new(alg), move |r| {
            when.matches(r).then_some(())
        }),
    }
}
