//! Validation of a [`Raw`] configuration tree and the [`Policy`] it describes.
//!
//! Validation never stops at the first problem: every field is checked and every problem
//! is recorded with its path. A scope is built only when the whole document is valid.
//! The fields that depend on a scope's algorithm are read in `algorithm.rs`.

use std::collections::HashMap;

use super::algorithm::{calendar, rate_based};
use super::raw::Raw;
use super::read::{flag, join, rate, text, whole, Report, Table};
use super::scope::{AlgSpec, KeySpec, ScopeSpec, When};
use super::{Attributes, ConfigErrors, Problem};
use crate::{Policy, PolicyBuilder, Rate, RateError};

const POLICY_FIELDS: &[&str] = &["name", "near_limit_percent", "scopes"];
const POLICY_EXPECTED: &str = "name, near_limit_percent, scopes";
const SCOPE_FIELDS: &[&str] = &[
    "name",
    "algorithm",
    "key",
    "when",
    "rate",
    "burst",
    "anchor",
    "period",
    "limit",
    "anchor_attribute",
    "plans",
    "overrides",
    "shadow",
];
const SCOPE_EXPECTED: &str = "name, algorithm, key, when, rate, burst, anchor, period, limit, anchor_attribute, plans, overrides, shadow";

/// Fields whose meaning depends on the algorithm, and the algorithms that use them.
const ALGORITHM_FIELDS: &[(&str, &[&str])] = &[
    (
        "rate",
        &["fixed_window", "sliding_window", "sliding_log", "gcra"],
    ),
    ("burst", &["gcra"]),
    ("anchor", &["fixed_window", "calendar"]),
    ("period", &["calendar"]),
    ("limit", &["calendar"]),
    ("anchor_attribute", &["calendar"]),
];

const ALGORITHMS: &[&str] = &[
    "fixed_window",
    "sliding_window",
    "sliding_log",
    "gcra",
    "calendar",
];

/// Checks a whole policy configuration and returns its builder, or every problem.
pub(crate) fn policy(raw: &Raw) -> Result<PolicyBuilder<Attributes>, ConfigErrors> {
    let mut report = Report::default();
    let mut builder = Policy::builder();
    let mut specs = Vec::new();
    if let Some(t) = Table::read(
        &mut report,
        String::new(),
        raw,
        POLICY_FIELDS,
        POLICY_EXPECTED,
    ) {
        if let Some(name) = t.get("name").and_then(|v| text(&mut report, "name", v)) {
            builder = builder.name(name);
        }
        if let Some(p) = t
            .get("near_limit_percent")
            .and_then(|v| whole(&mut report, "near_limit_percent", v))
        {
            builder = builder.near_limit_percent(p);
        }
        match t.required(&mut report, "scopes") {
            Some(Raw::List(scopes)) if scopes.is_empty() => report.add("scopes", Problem::Empty),
            Some(Raw::List(scopes)) => {
                let mut names = HashMap::new();
                for (i, s) in scopes.iter().enumerate() {
                    specs.extend(scope(&mut report, &mut names, i, s));
                }
            }
            Some(other) => report.wrong_type("scopes", "a list of scopes", other),
            None => {}
        }
    }
    if !report.0.is_empty() {
        return Err(ConfigErrors(report.0));
    }
    for spec in specs {
        builder = builder.scope(spec.build());
    }
    Ok(builder)
}

fn scope(
    report: &mut Report,
    names: &mut HashMap<String, usize>,
    i: usize,
    raw: &Raw,
) -> Option<ScopeSpec> {
    let before = report.0.len();
    let t = Table::read(
        report,
        format!("scopes[{i}]"),
        raw,
        SCOPE_FIELDS,
        SCOPE_EXPECTED,
    )?;
    let name = t
        .required(report, "name")
        .and_then(|v| text(report, &t.path("name"), v));
    if let Some(name) = name {
        if let Some(&first) = names.get(name) {
            report.add(
                &t.path("name"),
                Problem::DuplicateName {
                    name: name.to_owned(),
                    first,
                },
            );
        } else {
            names.insert(name.to_owned(), i);
        }
    }
    let algorithm = t.required(report, "algorithm").and_then(|v| {
        let name = text(report, &t.path("algorithm"), v)?;
        let known = ALGORITHMS.iter().copied().find(|a| *a == name);
        if known.is_none() {
            report.add(
                &t.path("algorithm"),
                Problem::UnknownAlgorithm {
                    name: name.to_owned(),
                },
            );
        }
        known
    });
    let key = match t.get("key") {
        None => Some(KeySpec::Shared),
        Some(v) => key(report, &t.path("key"), v),
    };
    let when = t.get("when").and_then(|v| when(report, &t.path("when"), v));
    let shadow = t
        .get("shadow")
        .and_then(|v| flag(report, &t.path("shadow"), v))
        .unwrap_or(false);

    let alg = match algorithm {
        Some(algorithm) => {
            for &(field, users) in ALGORITHM_FIELDS {
                if t.get(field).is_some() && !users.contains(&algorithm) {
                    report.add(&t.path(field), Problem::NotApplicable { algorithm });
                }
            }
            if algorithm == "calendar" {
                calendar(report, &t)
            } else {
                rate_based(report, &t, algorithm)
            }
        }
        None => {
            // Still check a rate if one is given, so that its problem is reported too.
            if let Some(v) = t.get("rate") {
                rate(report, &t.path("rate"), v);
            }
            None
        }
    };
    let scope_rate = alg.as_ref().map(AlgSpec::rate);
    let counts_only = algorithm == Some("calendar");
    let plans = t
        .get("plans")
        .map(|v| limits(report, &t.path("plans"), v, scope_rate, counts_only))
        .unwrap_or_default();
    let overrides = t
        .get("overrides")
        .map(|v| limits(report, &t.path("overrides"), v, scope_rate, counts_only))
        .unwrap_or_default();
    if !overrides.is_empty() && matches!(key, Some(KeySpec::Many(_)) | Some(KeySpec::Shared)) {
        report.add(&t.path("overrides"), Problem::OverridesNeedSingleKey);
    }
    if report.0.len() > before {
        return None;
    }
    Some(ScopeSpec {
        name: name?.to_owned(),
        alg: alg?,
        key: key?,
        when: when.unwrap_or_default(),
        plans,
        overrides,
        shadow,
    })
}

fn key(report: &mut Report, path: &str, raw: &Raw) -> Option<KeySpec> {
    const EXPECTED: &str = "an attribute name or a list of attribute names";
    match raw {
        Raw::Str(_) => text(report, path, raw).map(|s| KeySpec::One(s.to_owned())),
        Raw::List(items) if items.is_empty() => {
            report.add(path, Problem::Empty);
            None
        }
        Raw::List(items) => {
            let names: Vec<Option<String>> = items
                .iter()
                .enumerate()
                .map(|(i, v)| text(report, &format!("{path}[{i}]"), v).map(str::to_owned))
                .collect();
            let mut names: Vec<String> = names.into_iter().collect::<Option<_>>()?;
            Some(if names.len() == 1 {
                KeySpec::One(names.remove(0))
            } else {
                KeySpec::Many(names)
            })
        }
        other => {
            report.wrong_type(path, EXPECTED, other);
            None
        }
    }
}

fn when(report: &mut Report, path: &str, raw: &Raw) -> Option<When> {
    let Raw::Map(entries) = raw else {
        report.wrong_type(path, "a table of attribute values", raw);
        return None;
    };
    let mut conditions = Vec::new();
    let mut ok = true;
    for (attr, v) in entries {
        let p = join(path, attr);
        let values: Option<Vec<String>> = match v {
            Raw::Str(s) => Some(vec![s.clone()]),
            Raw::List(items) if items.is_empty() => {
                report.add(&p, Problem::Empty);
                None
            }
            Raw::List(items) => items
                .iter()
                .enumerate()
                .map(|(i, item)| match item {
                    Raw::Str(s) => Some(s.clone()),
                    other => {
                        report.wrong_type(&format!("{p}[{i}]"), "a string", other);
                        None
                    }
                })
                .collect::<Vec<_>>()
                .into_iter()
                .collect(),
            other => {
                report.wrong_type(&p, "a string or a list of strings", other);
                None
            }
        };
        match values {
            Some(values) => conditions.push((attr.clone(), values)),
            None => ok = false,
        }
    }
    ok.then_some(When(conditions))
}

/// A table of per-plan or per-key limits: each a count, or (for rate-based algorithms) a
/// rate over the scope's own window.
fn limits(
    report: &mut Report,
    path: &str,
    raw: &Raw,
    scope_rate: Option<Rate>,
    counts_only: bool,
) -> HashMap<String, u64> {
    let Raw::Map(entries) = raw else {
        report.wrong_type(path, "a table of limits", raw);
        return HashMap::new();
    };
    let mut out = HashMap::new();
    for (name, v) in entries {
        let p = join(path, name);
        let count = match v {
            Raw::Int(_) => whole(report, &p, v),
            Raw::Str(_) if !counts_only => rate(report, &p, v).and_then(|r| match scope_rate {
                Some(own) if own.window() != r.window() => {
                    report.add(
                        &p,
                        Problem::WindowMismatch {
                            expected: own.to_string(),
                            found: r.to_string(),
                        },
                    );
                    None
                }
                _ => Some(r.count()),
            }),
            other => {
                let expected = if counts_only {
                    "a count"
                } else {
                    "a count or a rate such as \"100/hour\""
                };
                report.wrong_type(&p, expected, other);
                None
            }
        };
        let Some(count) = count else { continue };
        let valid = match scope_rate {
            Some(own) => Rate::new(count, own.window()).map(|_| ()),
            None if count == 0 => Err(RateError::ZeroCount),
            None => Ok(()),
        };
        match valid {
            Ok(()) => {
                out.insert(name.clone(), count);
            }
            Err(e) => report.add(&p, e),
        }
    }
    out
}
