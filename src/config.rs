//! Configuration from the environment. Every setting is read once, at init; a
//! missing required or invalid setting fails init with a message naming it.

use std::collections::HashMap;
use std::ops::RangeInclusive;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("{name} is required and not set")]
    Missing { name: &'static str },
    #[error("{name} is invalid: {reason}")]
    Invalid { name: &'static str, reason: String },
}

/// A snapshot of the environment variables, so settings parse from one
/// consistent view and tests can build their own without touching the process's.
#[derive(Debug, Clone, Default)]
pub struct Env {
    vars: HashMap<String, String>,
}

impl Env {
    pub fn from_process() -> Self {
        Env {
            vars: std::env::vars().collect(),
        }
    }

    pub fn from_pairs<K: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        Env {
            vars: pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        }
    }

    /// An optional string setting; set-but-empty counts as not set.
    pub fn string(&self, name: &'static str) -> Result<Option<String>, ConfigError> {
        Ok(self.vars.get(name).filter(|v| !v.is_empty()).cloned())
    }

    pub fn required(&self, name: &'static str) -> Result<String, ConfigError> {
        self.string(name)?.ok_or(ConfigError::Missing { name })
    }

    /// An optional whole number within `range`.
    pub fn number(
        &self,
        name: &'static str,
        range: RangeInclusive<u64>,
    ) -> Result<Option<u64>, ConfigError> {
        let Some(text) = self.string(name)? else {
            return Ok(None);
        };
        let value: u64 = text.trim().parse().map_err(|_| ConfigError::Invalid {
            name,
            reason: format!("expected a whole number, got {text:?}"),
        })?;
        if !range.contains(&value) {
            return Err(ConfigError::Invalid {
                name,
                reason: format!("{value} is outside {}..={}", range.start(), range.end()),
            });
        }
        Ok(Some(value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_parsed_and_bounded() {
        let env = Env::from_pairs([("A", "12"), ("B", "x"), ("C", "0"), ("D", "")]);
        assert_eq!(env.number("A", 1..=20), Ok(Some(12)));
        assert_eq!(env.number("D", 1..=20), Ok(None));
        assert_eq!(env.number("MISSING", 1..=20), Ok(None));
        let Err(ConfigError::Invalid { name, .. }) = env.number("B", 1..=20) else {
            panic!("B parsed")
        };
        assert_eq!(name, "B");
        assert!(
            env.number("C", 1..=20)
                .unwrap_err()
                .to_string()
                .starts_with("C is invalid")
        );
        assert_eq!(env.required("D"), Err(ConfigError::Missing { name: "D" }));
    }
}
