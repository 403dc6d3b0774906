//! [`Attributes`]: the request of a policy built from configuration — named text values
//! (`api_key`, `org`, `plan`, `route`, `ip`…) that scopes select by name.

/// A request described by named attributes, for a [`Policy`](crate::Policy) built from a
/// [`PolicyConfig`](super::PolicyConfig).
///
/// A scope's `key = "org"` keys it by the `org` attribute, `when = { route = "generate" }`
/// applies it only when `route` is `generate`, and `plans` pick a limit by `plan`. A scope
/// whose key attribute is absent does not apply to the request.
///
/// Lookups scan a short list: a request carries a handful of attributes, and a scan of a
/// few entries is faster than hashing.
///
/// ```
/// use ratewarden::config::Attributes;
///
/// let req = Attributes::new()
///     .with("api_key", "k-1")
///     .with("plan", "pro")
///     .with("route", "generate");
/// assert_eq!(req.get("plan"), Some("pro"));
/// assert_eq!(req.get("org"), None);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Attributes {
    entries: Vec<(String, String)>,
}

impl Attributes {
    /// No attributes.
    pub fn new() -> Attributes {
        Attributes::default()
    }

    /// These attributes and `name = value` (replacing an earlier value of `name`).
    pub fn with(mut self, name: impl Into<String>, value: impl Into<String>) -> Attributes {
        self.insert(name, value);
        self
    }

    /// Sets `name` to `value`, returning the value it replaces.
    pub fn insert(&mut self, name: impl Into<String>, value: impl Into<String>) -> Option<String> {
        let (name, value) = (name.into(), value.into());
        match self.entries.iter_mut().find(|(n, _)| *n == name) {
            Some((_, v)) => Some(std::mem::replace(v, value)),
            None => {
                self.entries.push((name, value));
                None
            }
        }
    }

    /// Removes `name`, returning its value.
    pub fn remove(&mut self, name: &str) -> Option<String> {
        let i = self.entries.iter().position(|(n, _)| n == name)?;
        Some(self.entries.swap_remove(i).1)
    }

    /// The value of `name`.
    #[inline]
    pub fn get(&self, name: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Number of attributes.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no attributes.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The attributes, in the order first set.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&str, &str)> + '_ {
        self.entries.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }
}

impl<N: Into<String>, V: Into<String>> FromIterator<(N, V)> for Attributes {
    fn from_iter<I: IntoIterator<Item = (N, V)>>(iter: I) -> Attributes {
        let mut a = Attributes::new();
        for (n, v) in iter {
            a.insert(n, v);
        }
        a
    }
}

impl<N: Into<String>, V: Into<String>, const L: usize> From<[(N, V); L]> for Attributes {
    fn from(pairs: [(N, V); L]) -> Attributes {
        pairs.into_iter().collect()
    }
}
