//! [`Raw`]: any configuration value, as read by any serde format, before validation.
//!
//! Fields are read into this loose tree rather than straight into typed values so that a
//! value of the wrong type is one more problem in the list, with its path, instead of the
//! error that stops deserialisation at the first mistake.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

/// The field name the `toml` crate gives a datetime value's text.
const TOML_DATETIME: &str = "$__toml_private_datetime";

/// A configuration value of any shape.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Raw {
    Null,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(String),
    List(Vec<Raw>),
    /// Entries sorted by key (stable, so a repeated key's last value comes last); keys of
    /// any scalar type are read as text.
    Map(Vec<(String, Raw)>),
}

impl Raw {
    /// What the value is, for "expected …, found …".
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Raw::Null => "nothing",
            Raw::Bool(_) => "a boolean",
            Raw::Int(_) => "an integer",
            Raw::Float(_) => "a decimal number",
            Raw::Str(_) => "a string",
            Raw::List(_) => "a list",
            Raw::Map(_) => "a table",
        }
    }
}

struct RawVisitor;

impl<'de> Visitor<'de> for RawVisitor {
    type Value = Raw;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Raw, E> {
        Ok(Raw::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Raw, E> {
        Ok(Raw::Int(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Raw, E> {
        Ok(Raw::Int(v.into()))
    }

    fn visit_i128<E>(self, v: i128) -> Result<Raw, E> {
        Ok(Raw::Int(v))
    }

    fn visit_u128<E>(self, v: u128) -> Result<Raw, E> {
        Ok(Raw::Int(i128::try_from(v).unwrap_or(i128::MAX)))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Raw, E> {
        Ok(Raw::Float(v))
    }

    fn visit_str<E>(self, v: &str) -> Result<Raw, E> {
        Ok(Raw::Str(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Raw, E> {
        Ok(Raw::Str(v))
    }

    fn visit_none<E>(self) -> Result<Raw, E> {
        Ok(Raw::Null)
    }

    fn visit_unit<E>(self) -> Result<Raw, E> {
        Ok(Raw::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Raw, D::Error> {
        Raw::deserialize(d)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Raw, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Raw::List(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Raw, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<Raw>()? {
            let key = match key {
                Raw::Str(s) => s,
                Raw::Int(i) => i.to_string(),
                Raw::Bool(b) => b.to_string(),
                other => {
                    return Err(de::Error::custom(format_args!(
                        "a table key must be text, found {}",
                        other.kind()
                    )))
                }
            };
            entries.push((key, map.next_value()?));
        }
        // A TOML datetime (`anchor = 2024-01-31T09:30:00Z`, unquoted) arrives as a map with
        // one private field holding its text: read it as the text it is.
        if let [(key, Raw::Str(_))] = entries.as_slice() {
            if key == TOML_DATETIME {
                if let Some((_, text)) = entries.pop() {
                    return Ok(text);
                }
            }
        }
        // Formats differ in whether they keep the written order (TOML tables do not), so
        // keep none: the same document reads alike from every format.
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(Raw::Map(entries))
    }
}

impl<'de> Deserialize<'de> for Raw {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Raw, D::Error> {
        d.deserialize_any(RawVisitor)
    }
}
