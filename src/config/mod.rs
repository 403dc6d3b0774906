//! Policies from configuration (feature `serde`): a whole [`Policy`] — its scopes, their
//! algorithms, rates, bursts, per-plan limits, per-key overrides and shadow flags —
//! declared in TOML, JSON, YAML or any other serde format, checked, and built.
//!
//! [`PolicyConfig`] implements [`serde::Deserialize`], so the application reads it with the
//! format crate it already uses (`toml::from_str`, `serde_json::from_str`, a YAML crate…);
//! this crate depends on no format. The request of a configured policy is [`Attributes`]:
//! named text values that scopes select by name.
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use ratewarden::config::{Attributes, PolicyConfig};
//!
//! let config: PolicyConfig = serde_json::from_str(r#"{
//!     "scopes": [
//!         { "name": "per-key", "algorithm": "gcra", "rate": "600/min", "key": "api_key" },
//!         { "name": "generate", "algorithm": "fixed_window", "rate": "10/hour",
//!           "key": "org", "when": { "route": "generate" },
//!           "plans": { "pro": "100/hour" }, "overrides": { "org-42": 500 } }
//!     ]
//! }"#)?;
//! let policy = config.build()?;
//! let req = Attributes::new().with("api_key", "k1").with("org", "org-7")
//!     .with("plan", "pro").with("route", "generate");
//! let d = policy.check(&req, 1)?;
//! assert_eq!(d.scope("generate").unwrap().decision.limit(), 100);
//! # Ok(()) }
//! ```
//!
//! # Schema
//!
//! The document is a table with `scopes` (a list, required), `name` (the policy's name)
//! and `near_limit_percent` (see [`PolicyBuilder::near_limit_percent`]). Each scope:
//!
//! | field | meaning |
//! |---|---|
//! | `name` | required, unique |
//! | `algorithm` | required: `fixed_window`, `sliding_window`, `sliding_log`, `gcra`, `calendar` |
//! | `rate` | `"600/min"`, `"8/10s"`, `"1,000/day"` ([`Rate`](crate::Rate) syntax); all but `calendar` |
//! | `burst` | `gcra` only: the burst (default: the rate's count) |
//! | `anchor` | `fixed_window`: `"clock"` (default) or `"first_request"`; `calendar`: an RFC 3339 time whose day of month and time of day start each period (default: the 1st, midnight UTC) |
//! | `period`, `limit` | `calendar` only, required: `"day"` or `"month"`, and the count per period |
//! | `anchor_attribute` | `calendar` only: the attribute holding each key's anchor (an RFC 3339 time, e.g. the account's billing date); a request without a valid one uses `anchor` |
//! | `key` | the attribute (or list of attributes) that keys the scope; without it, one quota is shared by every request the scope applies to. A request lacking a key attribute is not counted by the scope |
//! | `when` | `{ route = "generate" }` or `{ route = ["a", "b"] }`: the scope applies only to requests whose attributes have one of the values |
//! | `plans` | `{ free = "10/hour", pro = 100 }`: the limit for the request's `plan` attribute, a count or a rate over the scope's own window (`calendar`: counts); other plans use the scope's `rate` |
//! | `overrides` | `{ "org-42" = 500 }`: the limit for one key, before any plan; needs a single-attribute `key` |
//! | `shadow` | `true`: evaluated and reported, never denies |
//!
//! Plans and overrides change only the count, never the window: a key's state carries
//! over when its plan changes.
//!
//! # Errors
//!
//! [`PolicyConfig::build`] checks everything and reports **every** problem at once, each
//! with the path of its field (`scopes[2].rate: rate window must be longer than zero`):
//! unknown fields (at every level), missing fields, values of the wrong type, unknown
//! algorithms, periods and anchors, invalid rates, bursts and counts, duplicate scope
//! names, fields the algorithm does not use, plan rates over another window. That is why
//! the document is read as a loose tree of values first: a typed `Deserialize` would stop
//! at the first mistake. Only a document the format itself cannot read (a syntax error)
//! fails in the format crate.

mod algorithm;
mod attributes;
mod build;
mod error;
mod raw;
mod read;
mod scope;

use serde::{Deserialize, Deserializer};

pub use attributes::Attributes;
pub use error::{ConfigError, ConfigErrors, Problem};

use crate::{Clock, Policy, PolicyBuilder};

/// The attribute whose value selects a scope's `plans` entry.
pub const PLAN_ATTRIBUTE: &str = "plan";

/// A policy as written in a configuration file, not yet checked.
///
/// Read it with any serde format; [`build`](Self::build) checks it and builds the
/// [`Policy`]. See the [module documentation](self) for the schema.
///
/// ```
/// use ratewarden::config::PolicyConfig;
///
/// let config: PolicyConfig = serde_json::from_str(r#"{ "scopes": [
///     { "name": "a", "algorithm": "leaky_bucket", "rate": "5/0s" },
///     { "name": "a", "algorithm": "gcra", "rate": "5/min", "brust": 10 }
/// ] }"#).unwrap();
/// let errors = config.build().unwrap_err();
/// let lines: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
/// assert_eq!(lines.len(), 4);
/// assert!(lines[0].starts_with("scopes[0].algorithm: unknown algorithm \"leaky_bucket\""));
/// assert_eq!(lines[1], "scopes[0].rate: rate window must be longer than zero");
/// assert!(lines[2].starts_with("scopes[1].brust: unknown field `brust`"));
/// assert_eq!(lines[3], "scopes[1].name: duplicate scope name \"a\", already used by scopes[0]");
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyConfig {
    raw: raw::Raw,
}

impl<'de> Deserialize<'de> for PolicyConfig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<PolicyConfig, D::Error> {
        raw::Raw::deserialize(d).map(|raw| PolicyConfig { raw })
    }
}

impl PolicyConfig {
    /// Checks the configuration: `Ok` exactly when [`build`](Self::build) would succeed.
    pub fn validate(&self) -> Result<(), ConfigErrors> {
        self.builder().map(drop)
    }

    /// A [`PolicyBuilder`] with the configured scopes, name and settings, to add a clock
    /// or further scopes to.
    pub fn builder(&self) -> Result<PolicyBuilder<Attributes>, ConfigErrors> {
        build::policy(&self.raw)
    }

    /// The policy, on the real clock.
    pub fn build(&self) -> Result<Policy<Attributes>, ConfigErrors> {
        Ok(self.builder()?.build())
    }

    /// The policy, reading `clock` (e.g. [`Clock::mock`]).
    pub fn build_with_clock(&self, clock: Clock) -> Result<Policy<Attributes>, ConfigErrors> {
        Ok(self.builder()?.clock(clock).build())
    }
}
