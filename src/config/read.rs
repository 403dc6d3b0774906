//! Reading a [`Raw`] tree: typed values out of loose ones, each mistake recorded with its
//! path rather than returned.

use super::raw::Raw;
use super::{ConfigError, Problem};
use crate::Rate;

/// The problems found so far.
#[derive(Default)]
pub(super) struct Report(pub(super) Vec<ConfigError>);

impl Report {
    pub(super) fn add(&mut self, path: &str, problem: impl Into<Problem>) {
        let path = if path.is_empty() { "<root>" } else { path };
        self.0.push(ConfigError {
            path: path.to_owned(),
            problem: problem.into(),
        });
    }

    pub(super) fn wrong_type(&mut self, path: &str, expected: &'static str, found: &Raw) {
        self.add(
            path,
            Problem::WrongType {
                expected,
                found: found.kind(),
            },
        );
    }
}

pub(super) fn join(path: &str, field: &str) -> String {
    if path.is_empty() {
        field.to_owned()
    } else {
        format!("{path}.{field}")
    }
}

/// A table whose unknown fields have been reported.
pub(super) struct Table<'a> {
    pub(super) path: String,
    entries: &'a [(String, Raw)],
}

impl<'a> Table<'a> {
    pub(super) fn read(
        report: &mut Report,
        path: String,
        raw: &'a Raw,
        fields: &[&str],
        expected: &'static str,
    ) -> Option<Table<'a>> {
        let Raw::Map(entries) = raw else {
            report.wrong_type(&path, "a table", raw);
            return None;
        };
        for (field, _) in entries {
            if !fields.contains(&field.as_str()) {
                report.add(
                    &join(&path, field),
                    Problem::UnknownField {
                        field: field.clone(),
                        expected,
                    },
                );
            }
        }
        Some(Table { path, entries })
    }

    /// The field's value (the last one, if a format let it be written twice).
    pub(super) fn get(&self, field: &str) -> Option<&'a Raw> {
        self.entries
            .iter()
            .rev()
            .find(|(k, _)| k == field)
            .map(|(_, v)| v)
    }

    pub(super) fn path(&self, field: &str) -> String {
        join(&self.path, field)
    }

    pub(super) fn required(&self, report: &mut Report, field: &str) -> Option<&'a Raw> {
        let value = self.get(field);
        if value.is_none() {
            report.add(&self.path(field), Problem::Missing);
        }
        value
    }
}

pub(super) fn text<'a>(report: &mut Report, path: &str, raw: &'a Raw) -> Option<&'a str> {
    match raw {
        Raw::Str(s) if s.trim().is_empty() => {
            report.add(path, Problem::Empty);
            None
        }
        Raw::Str(s) => Some(s),
        other => {
            report.wrong_type(path, "a string", other);
            None
        }
    }
}

pub(super) fn whole(report: &mut Report, path: &str, raw: &Raw) -> Option<u64> {
    match raw {
        Raw::Int(i) => match u64::try_from(*i) {
            Ok(n) => Some(n),
            Err(_) => {
                report.wrong_type(path, "a whole number from 0 to 2^64 - 1", raw);
                None
            }
        },
        other => {
            report.wrong_type(path, "a whole number", other);
            None
        }
    }
}

pub(super) fn flag(report: &mut Report, path: &str, raw: &Raw) -> Option<bool> {
    match raw {
        Raw::Bool(b) => Some(*b),
        other => {
            report.wrong_type(path, "true or false", other);
            None
        }
    }
}

pub(super) fn rate(report: &mut Report, path: &str, raw: &Raw) -> Option<Rate> {
    let s = text(report, path, raw)?;
    s.parse::<Rate>().map_err(|e| report.add(path, e)).ok()
}
