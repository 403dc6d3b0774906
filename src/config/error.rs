//! [`ConfigErrors`]: every problem found in a policy configuration, each with the path of
//! the offending field.

use std::fmt;

use crate::{AnchorError, RateError};

/// What is wrong with one field of a policy configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Problem {
    /// A field the configuration does not have (a typo, or a field of another version).
    #[error("unknown field `{field}`; expected one of: {expected}")]
    UnknownField {
        /// The field as written.
        field: String,
        /// The fields allowed at this place.
        expected: &'static str,
    },
    /// A required field is absent.
    #[error("missing required field")]
    Missing,
    /// A value of the wrong type.
    #[error("expected {expected}, found {found}")]
    WrongType {
        /// What the field takes.
        expected: &'static str,
        /// What was written.
        found: &'static str,
    },
    /// An algorithm name the crate does not know.
    #[error("unknown algorithm {name:?}; expected one of: fixed_window, sliding_window, sliding_log, gcra, calendar")]
    UnknownAlgorithm {
        /// The name as written.
        name: String,
    },
    /// A word that is not one of the values a field takes (an anchor, a period…).
    #[error("unknown value {value:?}; expected one of: {expected}")]
    UnknownValue {
        /// The value as written.
        value: String,
        /// The values allowed.
        expected: &'static str,
    },
    /// A field that the scope's algorithm does not use.
    #[error("not used by the {algorithm} algorithm")]
    NotApplicable {
        /// The scope's algorithm.
        algorithm: &'static str,
    },
    /// Two fields that cannot be given together.
    #[error("cannot be given together with `{other}`")]
    Conflict {
        /// The other field.
        other: &'static str,
    },
    /// A rate, count or burst that is not a valid quota.
    #[error("{0}")]
    Rate(#[from] RateError),
    /// A calendar anchor that is not valid.
    #[error("{0}")]
    Anchor(#[from] AnchorError),
    /// A scope name used twice.
    #[error("duplicate scope name {name:?}, already used by scopes[{first}]")]
    DuplicateName {
        /// The name.
        name: String,
        /// The index of the scope that used it first.
        first: usize,
    },
    /// A per-plan or per-key rate whose window differs from the scope's: plans and
    /// overrides change only the count, so a key's state carries over between them.
    #[error("window of {found} differs from the scope's {expected}; a plan or override changes only the count")]
    WindowMismatch {
        /// The scope's rate.
        expected: String,
        /// The rate as written.
        found: String,
    },
    /// A list or table that must not be empty.
    #[error("must not be empty")]
    Empty,
    /// Per-key overrides with a key made of several attributes.
    #[error("overrides need a key of a single attribute")]
    OverridesNeedSingleKey,
}

/// One problem in a policy configuration: where it is and what it is.
///
/// Displays as `scopes[2].rate: rate window must be longer than zero`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {problem}")]
pub struct ConfigError {
    /// The path of the offending field: `scopes[2].rate`, `scopes[0].plans.pro`, or
    /// `<root>` for the document itself.
    pub path: String,
    /// What is wrong with it.
    pub problem: Problem,
}

/// Every problem found in a policy configuration (never empty), scope by scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub(crate) Vec<ConfigError>);

impl ConfigErrors {
    /// The problems.
    pub fn as_slice(&self) -> &[ConfigError] {
        &self.0
    }

    /// The problems, by value.
    pub fn into_vec(self) -> Vec<ConfigError> {
        self.0
    }

    /// Iterates over the problems.
    pub fn iter(&self) -> std::slice::Iter<'_, ConfigError> {
        self.0.iter()
    }

    /// Number of problems (at least 1).
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Always `false`: there is at least one problem.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<'a> IntoIterator for &'a ConfigErrors {
    type Item = &'a ConfigError;
    type IntoIter = std::slice::Iter<'a, ConfigError>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl fmt::Display for ConfigErrors {
    /// One problem per line, after a count.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.as_slice() {
            [one] => write!(f, "invalid policy configuration: {one}"),
            all => {
                write!(f, "invalid policy configuration, {} problems:", all.len())?;
                for e in all {
                    write!(f, "\n  {e}")?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for ConfigErrors {}
