//! Values that must never be stored, logged or served in clear.
//!
//! Render collects here every value it used that came from a secret source: the agent's own environment,
//! a SOPS-decrypted file, or a fact marked secret. The set travels with the [`crate::model::DesiredState`]
//! it was rendered for (never serialised), so whatever writes that state somewhere others can read it (the
//! history store, a container label, the status socket) can seal or digest those values first. Every value
//! marked here is also masked in every log line of the process from then on ([`crate::telemetry`]).

use std::collections::BTreeSet;
use std::fmt;

/// The plaintext secret values one render used. `Debug` prints only how many there are.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Sensitive {
    values: BTreeSet<String>,
}

impl Sensitive {
    /// Shortest value treated as a secret: shorter ones (`1`, `on`) would match everywhere and say nothing.
    pub const MIN_LEN: usize = 4;

    /// Marks `value` as secret (in logs too, for the life of the process). Values shorter than [`Self::MIN_LEN`] are ignored.
    pub fn add(&mut self, value: &str) {
        if value.len() >= Self::MIN_LEN {
            crate::telemetry::log_secrets().add(value);
            self.values.insert(value.to_owned());
        }
    }

    /// Adds every value of `other`.
    pub fn extend(&mut self, other: &Sensitive) {
        self.values.extend(other.values.iter().cloned());
    }

    /// Whether `text` contains any secret value.
    pub fn leaks_into(&self, text: &str) -> bool {
        self.values.iter().any(|v| text.contains(v.as_str()))
    }

    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.values.iter().map(String::as_str)
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }
}

impl fmt::Debug for Sensitive {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sensitive({} values)", self.values.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_values_are_not_secrets_and_debug_never_prints_values() {
        let mut s = Sensitive::default();
        s.add("on");
        s.add("hunter2-secret");
        assert_eq!(s.len(), 1);
        assert!(s.leaks_into("PASSWORD=hunter2-secret"));
        assert!(!s.leaks_into("PASSWORD=on"));
        assert!(!format!("{s:?}").contains("hunter2"));
    }
}
