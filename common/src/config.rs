//! Configuration from the environment. Every setting is read once, at init; a
//! missing required or invalid setting fails init with a message naming it.

use std::collections::HashMap;
use std::ops::RangeInclusive;

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("{name} is required and not set")]
    Missing { name: &'static str },
    #[error("{name} is invalid: {reason}")]
    Invalid { name: &'static str, reason: String },
    #[error(
        "{name} is refused on Lambda: {reason} (ALLOW_INSECURE_SETTINGS=true allows it, for a test or demo stack only)"
    )]
    Insecure { name: &'static str, reason: String },
}

/// Whether insecure settings (certificate checks off, plaintext SQL, a
/// plaintext signing key, `http://` APIs) are refused. On Lambda
/// (`AWS_LAMBDA_FUNCTION_NAME` set) they are, unless `ALLOW_INSECURE_SETTINGS=true`,
/// which deployed stacks never set; local runs (no function name) allow them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InsecureSettings {
    refused: bool,
}

impl InsecureSettings {
    /// From `AWS_LAMBDA_FUNCTION_NAME` and `ALLOW_INSECURE_SETTINGS` (`true` or `false`).
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let allowed = env.flag("ALLOW_INSECURE_SETTINGS")?.unwrap_or(false);
        let on_lambda = env.string("AWS_LAMBDA_FUNCTION_NAME")?.is_some();
        Ok(InsecureSettings {
            refused: on_lambda && !allowed,
        })
    }

    /// Whether insecure settings are refused (on Lambda, not allowed).
    pub fn refused(self) -> bool {
        self.refused
    }

    /// Insecure settings allowed (local runs and tests of the parsing itself).
    pub const ALLOWED: InsecureSettings = InsecureSettings { refused: false };

    /// Fails with [`ConfigError::Insecure`] naming `name` when `insecure` and refused.
    pub fn check(
        self,
        name: &'static str,
        insecure: bool,
        reason: impl FnOnce() -> String,
    ) -> Result<(), ConfigError> {
        if insecure && self.refused {
            return Err(ConfigError::Insecure {
                name,
                reason: reason(),
            });
        }
        Ok(())
    }
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

    /// An optional `true` / `false` setting.
    pub fn flag(&self, name: &'static str) -> Result<Option<bool>, ConfigError> {
        match self.string(name)?.as_deref() {
            None => Ok(None),
            Some("true") => Ok(Some(true)),
            Some("false") => Ok(Some(false)),
            Some(other) => Err(ConfigError::Invalid {
                name,
                reason: format!("expected true or false, got {other:?}"),
            }),
        }
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

/// A setting that is a secret: given directly (local and development runs),
/// or as the ARN of a Secrets Manager secret read at init (production).
#[derive(Clone, PartialEq, Eq)]
pub enum SecretSetting {
    Value(String),
    SecretArn(String),
}

impl std::fmt::Debug for SecretSetting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SecretSetting::Value(_) => f.write_str("Value(<redacted>)"),
            SecretSetting::SecretArn(arn) => write!(f, "SecretArn({arn})"),
        }
    }
}

impl Env {
    /// Exactly one of `value_name` (the secret itself) and `arn_name` (a
    /// Secrets Manager secret holding it) must be set. On Lambda the secret
    /// itself is refused ([`InsecureSettings`]): anyone who may read the
    /// function's configuration would read it.
    pub fn secret(
        &self,
        value_name: &'static str,
        arn_name: &'static str,
    ) -> Result<SecretSetting, ConfigError> {
        match (self.string(value_name)?, self.string(arn_name)?) {
            (Some(value), None) => {
                InsecureSettings::from_env(self)?.check(value_name, true, || {
                    format!("a secret in plaintext in the environment (use {arn_name})")
                })?;
                Ok(SecretSetting::Value(value))
            }
            (None, Some(arn)) => Ok(SecretSetting::SecretArn(arn)),
            (None, None) => Err(ConfigError::Invalid {
                name: arn_name,
                reason: format!("set it (production) or {value_name} (local runs)"),
            }),
            (Some(_), Some(_)) => Err(ConfigError::Invalid {
                name: value_name,
                reason: format!("set either it or {arn_name}, not both"),
            }),
        }
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

    #[test]
    fn insecure_settings_are_refused_on_lambda_unless_allowed() {
        let check = |pairs: &[(&str, &str)]| {
            InsecureSettings::from_env(&Env::from_pairs(pairs.iter().copied()))
                .and_then(|s| s.check("KEY", true, || "plaintext".to_owned()))
        };
        assert_eq!(check(&[]), Ok(()), "local runs allow them");
        let refused = check(&[("AWS_LAMBDA_FUNCTION_NAME", "f")]).unwrap_err();
        assert!(
            refused
                .to_string()
                .starts_with("KEY is refused on Lambda: plaintext"),
            "{refused}"
        );
        let allowed = [
            ("AWS_LAMBDA_FUNCTION_NAME", "f"),
            ("ALLOW_INSECURE_SETTINGS", "true"),
        ];
        assert_eq!(check(&allowed), Ok(()));
        assert!(check(&[("ALLOW_INSECURE_SETTINGS", "yes")]).is_err());
        let secure =
            InsecureSettings::from_env(&Env::from_pairs([("AWS_LAMBDA_FUNCTION_NAME", "f")]));
        assert_eq!(
            secure.and_then(|s| s.check("KEY", false, String::new)),
            Ok(())
        );
    }

    #[test]
    fn a_secret_setting_is_a_value_or_an_arn_never_both() {
        let value = Env::from_pairs([("KEY", "s3cret")]);
        assert_eq!(
            value.secret("KEY", "KEY_ARN"),
            Ok(SecretSetting::Value("s3cret".to_owned()))
        );
        assert!(!format!("{:?}", value.secret("KEY", "KEY_ARN")).contains("s3cret"));
        let arn = Env::from_pairs([("KEY_ARN", "arn:aws:secretsmanager:x")]);
        assert!(matches!(
            arn.secret("KEY", "KEY_ARN"),
            Ok(SecretSetting::SecretArn(_))
        ));
        let neither = Env::default().secret("KEY", "KEY_ARN").unwrap_err();
        assert!(neither.to_string().starts_with("KEY_ARN is invalid"));
        let on_lambda = Env::from_pairs([("KEY", "s3cret"), ("AWS_LAMBDA_FUNCTION_NAME", "f")]);
        let refused = on_lambda.secret("KEY", "KEY_ARN").unwrap_err();
        assert!(
            refused.to_string().starts_with(
                "KEY is refused on Lambda: a secret in plaintext in the environment (use KEY_ARN)"
            ),
            "{refused}"
        );
        let both = Env::from_pairs([("KEY", "a"), ("KEY_ARN", "b")])
            .secret("KEY", "KEY_ARN")
            .unwrap_err();
        assert!(both.to_string().starts_with("KEY is invalid"));
    }
}
