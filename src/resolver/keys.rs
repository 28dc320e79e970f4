//! Where the `nextToken` keys come from, and how they rotate.
//!
//! Production: `NEXT_TOKEN_SECRET_ARN`, a Secrets Manager secret whose value
//! is the key (at least 32 bytes), or JSON with a `nextTokenKey` field. Its
//! `AWSCURRENT` version signs; its `AWSPREVIOUS` version (what Secrets Manager
//! keeps after `put-secret-value` or a rotation) still verifies for
//! `NEXT_TOKEN_KEY_GRACE_SECONDS` (default 86400) after the current version
//! was created, then tokens signed with it are refused. Local runs:
//! `NEXT_TOKEN_KEY`, one key in plaintext.
//!
//! Keys are read at init. An environment started before a rotation meets
//! tokens signed with the new key from environments started after it: the
//! unknown key id makes it re-read the secret, at most once a minute, within
//! the invocation's budget.

use std::sync::Mutex;
use std::time::Duration;

use assessments_common::aws::{SecretError, Secrets};
use assessments_common::budget::Budget;
use assessments_common::config::{ConfigError, Env, SecretSetting};
use chrono::{DateTime, Utc};
use tokio::time::Instant;

use super::token::{DEFAULT_TTL, SigningKey, TokenKeys, TokenSigner};

/// The JSON field of the secret that holds the key, when the value is JSON.
pub const SECRET_JSON_FIELD: &str = "nextTokenKey";
/// The default `NEXT_TOKEN_KEY_GRACE_SECONDS`: a day.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(86_400);
/// The shortest time between two re-reads of the secret.
pub const REFRESH_INTERVAL: Duration = Duration::from_secs(60);
/// One re-read's own timeout (also bounded by the invocation's budget).
const REFRESH_TIMEOUT: Duration = Duration::from_secs(2);

/// `NEXT_TOKEN_KEY` or `NEXT_TOKEN_SECRET_ARN`, and the grace period.
#[derive(Debug, Clone)]
pub struct TokenKeySettings {
    pub source: SecretSetting,
    /// `NEXT_TOKEN_KEY_GRACE_SECONDS`: how long the previous key still verifies.
    pub grace: Duration,
    /// `NEXT_TOKEN_TTL_SECONDS` (60..=86400, default 900): how long a token pages on.
    pub ttl: Duration,
}

impl TokenKeySettings {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(TokenKeySettings {
            source: env.secret("NEXT_TOKEN_KEY", "NEXT_TOKEN_SECRET_ARN")?,
            grace: env
                .number("NEXT_TOKEN_KEY_GRACE_SECONDS", 0..=30 * 86_400)?
                .map_or(DEFAULT_GRACE, Duration::from_secs),
            ttl: env
                .number("NEXT_TOKEN_TTL_SECONDS", 60..=86_400)?
                .map_or(DEFAULT_TTL, Duration::from_secs),
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(transparent)]
    Secret(#[from] SecretError),
    #[error(transparent)]
    Config(#[from] ConfigError),
}

/// The secret the keys are re-read from after a rotation.
pub struct KeySource {
    secrets: Secrets,
    arn: String,
    grace: Duration,
    /// The last re-read (not the read at init: the first unknown key re-reads at once).
    last_refresh: Mutex<Option<Instant>>,
}

impl std::fmt::Debug for KeySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeySource").field("arn", &self.arn).finish()
    }
}

/// What signs and verifies `nextToken`: the signer, and where its keys
/// are re-read from after a rotation.
#[derive(Debug)]
pub struct NextTokens {
    pub signer: TokenSigner,
    /// The secret to re-read when keys rotate (`None` for a plaintext key).
    pub source: Option<KeySource>,
}

/// The signer for `settings`, and the secret to re-read when keys rotate.
pub async fn load(secrets: &Secrets, settings: &TokenKeySettings) -> Result<NextTokens, KeyError> {
    match &settings.source {
        SecretSetting::Value(key) => Ok(NextTokens {
            signer: TokenSigner::new(key.as_bytes())?.with_ttl(settings.ttl),
            source: None,
        }),
        SecretSetting::SecretArn(arn) => {
            let source = KeySource {
                secrets: secrets.clone(),
                arn: arn.clone(),
                grace: settings.grace,
                last_refresh: Mutex::new(None),
            };
            let keys = source.read().await?;
            tracing::info!(
                current = keys.current.id(),
                previous = keys.previous.as_ref().map(SigningKey::id),
                previous_until = %keys.previous_until,
                "nextToken keys read"
            );
            Ok(NextTokens {
                signer: TokenSigner::with_keys(keys).with_ttl(settings.ttl),
                source: Some(source),
            })
        }
    }
}

impl KeySource {
    async fn read(&self) -> Result<TokenKeys, KeyError> {
        let current = (self.secrets)
            .read_stage(&self.arn, "AWSCURRENT", SECRET_JSON_FIELD)
            .await?
            .ok_or_else(|| SecretError {
                arn: self.arn.clone(),
                reason: "no AWSCURRENT version".to_owned(),
            })?;
        let previous = (self.secrets)
            .read_stage(&self.arn, "AWSPREVIOUS", SECRET_JSON_FIELD)
            .await?;
        let rotated_at: DateTime<Utc> = current.created.map_or_else(Utc::now, DateTime::from);
        let grace = chrono::Duration::from_std(self.grace).unwrap_or(chrono::Duration::MAX);
        Ok(TokenKeys {
            current: SigningKey::new(current.value.as_bytes())?,
            previous: previous
                .map(|p| SigningKey::new(p.value.as_bytes()))
                .transpose()?,
            previous_until: rotated_at
                .checked_add_signed(grace)
                .unwrap_or(DateTime::<Utc>::MAX_UTC),
        })
    }

    /// Re-reads the keys into `signer`, unless it was done less than
    /// [`REFRESH_INTERVAL`] ago (a flood of forged key ids costs one read a minute); bounded by `budget`. A failure keeps the keys
    /// held (the token is then refused as unknown) and is logged.
    pub async fn refresh(&self, signer: &TokenSigner, budget: &Budget) {
        {
            let Ok(mut last) = self.last_refresh.lock() else {
                return;
            };
            if last.is_some_and(|at| at.elapsed() < REFRESH_INTERVAL) {
                return;
            }
            *last = Some(Instant::now());
        }
        let bound = budget.bound(REFRESH_TIMEOUT, "the nextToken keys' refresh timeout");
        // Boxed: the Secrets Manager call is a large future, and this one is
        // part of every invocation's future.
        match bound.run(Box::pin(self.read())).await {
            Ok(Ok(keys)) => {
                tracing::info!(current = keys.current.id(), "nextToken keys re-read");
                signer.replace(keys);
            }
            Ok(Err(error)) => tracing::warn!(%error, "nextToken keys: re-read failed"),
            Err(limit) => tracing::warn!(%limit, "nextToken keys: re-read timed out"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_and_signers_never_show_a_key() {
        let key = "a-next-token-key-that-must-never-be-printed";
        let env = Env::from_pairs([("NEXT_TOKEN_KEY".to_owned(), key.to_owned())]);
        let settings = TokenKeySettings::from_env(&env).expect("settings");
        assert_eq!(settings.grace, DEFAULT_GRACE);
        let signer = TokenSigner::new(key.as_bytes()).expect("signer");
        for shown in [
            format!("{settings:?}"),
            format!("{signer:?}"),
            format!("{:?}", signer.keys()),
        ] {
            assert!(!shown.contains(key), "{shown}");
            assert!(!shown.contains("must-never"), "{shown}");
        }
        let env = Env::from_pairs([
            (
                "NEXT_TOKEN_SECRET_ARN".to_owned(),
                "arn:aws:secretsmanager:x".to_owned(),
            ),
            (
                "NEXT_TOKEN_KEY_GRACE_SECONDS".to_owned(),
                "31536000".to_owned(),
            ),
        ]);
        let refused = TokenKeySettings::from_env(&env)
            .map(|_| ())
            .unwrap_err()
            .to_string();
        assert!(
            refused.contains("NEXT_TOKEN_KEY_GRACE_SECONDS"),
            "{refused}"
        );
    }
}
