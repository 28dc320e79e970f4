//! `nextToken`: the keyset cursor of the next page, bound to the query it
//! belongs to and signed (HMAC-SHA256), so a forged, altered or transplanted
//! token is refused instead of steering the query.
//!
//! Format: `key id "." base64url(payload JSON) "." base64url(HMAC(the first two parts))`.
//! The key id lets keys rotate: tokens signed with the previous key stay
//! valid for a grace period after the rotation, then are refused. A token
//! also expires (`NEXT_TOKEN_TTL_SECONDS`, default 15 minutes after it was
//! issued): an expired one is refused, and the client asks for the first page again.

use assessments_common::config::ConfigError;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, NaiveDate, Utc};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::error::ResolveError;
use crate::sqlserver::Cursor;
use assessments_common::rules::AssessmentType;

type HmacSha256 = Hmac<Sha256>;

/// Shortest signing key accepted.
pub const MIN_KEY_LEN: usize = 32;
/// The default `NEXT_TOKEN_TTL_SECONDS`: how long a token pages on.
pub const DEFAULT_TTL: std::time::Duration = std::time::Duration::from_secs(15 * 60);
/// The payload format this build issues and accepts.
const VERSION: u8 = 3;

/// What a token is valid for: the other arguments of the query.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TokenScope<'a> {
    pub student_id: &'a str,
    pub assessment_type: Option<AssessmentType>,
    pub from: Option<NaiveDate>,
    pub to: Option<NaiveDate>,
}

#[derive(Serialize, Deserialize)]
struct Payload {
    v: u8,
    s: String,
    t: Option<String>,
    f: Option<NaiveDate>,
    u: Option<NaiveDate>,
    /// administered_at, microseconds since the Unix epoch.
    a: i64,
    i: i64,
    /// Expiry, seconds since the Unix epoch.
    x: i64,
}

/// One signing key and its id (carried in every token it signs, so the
/// verifier picks the key without trying each).
#[derive(Clone)]
pub struct SigningKey {
    id: String,
    /// HMAC keyed with the key (its inner and outer pads hashed once, here,
    /// rather than at every token: half of each token's SHA-256 work).
    mac: HmacSha256,
}

impl SigningKey {
    pub fn new(key: &[u8]) -> Result<Self, ConfigError> {
        if key.len() < MIN_KEY_LEN {
            return Err(ConfigError::Invalid {
                name: "NEXT_TOKEN_KEY",
                reason: format!("must be at least {MIN_KEY_LEN} bytes"),
            });
        }
        // The id names the key without revealing it: 48 bits of a hash of it.
        let digest = Sha256::new_with_prefix(b"nextToken key id\0")
            .chain_update(key)
            .finalize();
        // HMAC accepts keys of any length; this cannot fail.
        let mac = HmacSha256::new_from_slice(key)
            .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
        Ok(SigningKey {
            id: URL_SAFE_NO_PAD.encode(&digest[..6]),
            mac,
        })
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// A key for another purpose, derived from this one: `HMAC(key, label)`.
    pub fn derive(&self, label: &[u8]) -> [u8; 32] {
        let mut mac = self.mac();
        mac.update(label);
        mac.finalize().into_bytes().into()
    }

    fn mac(&self) -> HmacSha256 {
        self.mac.clone()
    }
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SigningKey({}, <key redacted>)", self.id)
    }
}

/// The keys in use: the current one signs and verifies; the previous one
/// (after a rotation) only verifies, until `previous_until`.
#[derive(Debug, Clone)]
pub struct TokenKeys {
    pub current: SigningKey,
    pub previous: Option<SigningKey>,
    /// When the previous key stops being accepted: the rotation's time plus
    /// the grace period (`NEXT_TOKEN_KEY_GRACE_SECONDS`).
    pub previous_until: DateTime<Utc>,
}

impl TokenKeys {
    /// One key, nothing rotated out.
    pub fn single(current: SigningKey) -> Self {
        TokenKeys {
            current,
            previous: None,
            previous_until: DateTime::<Utc>::MIN_UTC,
        }
    }

    fn find(&self, id: &str, now: DateTime<Utc>) -> Option<&SigningKey> {
        if self.current.id == id {
            return Some(&self.current);
        }
        self.previous
            .as_ref()
            .filter(|k| k.id == id && now < self.previous_until)
    }

    fn knows(&self, id: &str) -> bool {
        self.current.id == id || self.previous.as_ref().is_some_and(|k| k.id == id)
    }
}

/// Signs and verifies tokens. Every execution environment holds the same keys
/// (from `NEXT_TOKEN_SECRET_ARN`, or `NEXT_TOKEN_KEY` for local runs), so any
/// of them accepts any token; an environment started before a rotation meets
/// tokens signed with a key it has not seen, and re-reads the keys (see
/// [`Resolver`](super::Resolver)).
#[derive(Debug)]
pub struct TokenSigner {
    keys: std::sync::RwLock<std::sync::Arc<TokenKeys>>,
    ttl: chrono::Duration,
}

impl Clone for TokenSigner {
    fn clone(&self) -> Self {
        TokenSigner {
            keys: std::sync::RwLock::new(self.keys()),
            ttl: self.ttl,
        }
    }
}

fn refused() -> ResolveError {
    ResolveError::validation(
        "nextToken",
        "is not a token this API issued (altered, forged or expired)",
    )
}

/// The key id of a token, if it has the shape of one.
fn key_id(token: &str) -> Option<&str> {
    let (id, rest) = token.split_once('.')?;
    rest.contains('.').then_some(id)
}

impl TokenSigner {
    /// A signer with one key (tests, fuzzing, local runs).
    pub fn new(key: &[u8]) -> Result<Self, ConfigError> {
        Ok(Self::with_keys(TokenKeys::single(SigningKey::new(key)?)))
    }

    pub fn with_keys(keys: TokenKeys) -> Self {
        TokenSigner {
            keys: std::sync::RwLock::new(std::sync::Arc::new(keys)),
            ttl: chrono::Duration::seconds(DEFAULT_TTL.as_secs() as i64),
        }
    }

    /// The same signer, its tokens valid for `ttl` after they are issued.
    pub fn with_ttl(mut self, ttl: std::time::Duration) -> Self {
        self.ttl = chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::MAX);
        self
    }

    /// The keys now (a snapshot).
    pub fn keys(&self) -> std::sync::Arc<TokenKeys> {
        // A poisoned lock still holds a whole `Arc`: swapping it cannot half-happen.
        match self.keys.read() {
            Ok(keys) => keys.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Replaces the keys (after re-reading them).
    pub fn replace(&self, keys: TokenKeys) {
        let keys = std::sync::Arc::new(keys);
        match self.keys.write() {
            Ok(mut slot) => *slot = keys,
            Err(poisoned) => *poisoned.into_inner() = keys,
        }
    }

    /// Whether `token` names a key this signer has never held: a key newer
    /// than ours (re-read the keys), or no key of ours at all.
    pub fn is_unknown_key(&self, token: &str) -> bool {
        key_id(token).is_some_and(|id| !self.keys().knows(id))
    }

    /// A token for the page after `cursor`, issued at `now`.
    pub fn issue(&self, scope: &TokenScope<'_>, cursor: Cursor, now: DateTime<Utc>) -> String {
        let payload = Payload {
            v: VERSION,
            s: scope.student_id.to_owned(),
            t: scope.assessment_type.map(|t| t.as_str().to_owned()),
            f: scope.from,
            u: scope.to,
            a: cursor.administered_at.and_utc().timestamp_micros(),
            i: cursor.assessment_id,
            x: now
                .checked_add_signed(self.ttl)
                .unwrap_or(DateTime::<Utc>::MAX_UTC)
                .timestamp(),
        };
        // Serializing plain strings, dates and integers cannot fail.
        let json = serde_json::to_vec(&payload).unwrap_or_default();
        let keys = self.keys();
        let signed = format!("{}.{}", keys.current.id, URL_SAFE_NO_PAD.encode(json));
        let mut mac = keys.current.mac();
        mac.update(signed.as_bytes());
        let tag = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        format!("{signed}.{tag}")
    }

    /// The cursor in `token`, if one of our keys signed it for exactly `scope`
    /// (a rotated-out key only until its grace period ends) and it has not
    /// expired at `now`.
    pub fn verify(
        &self,
        token: &str,
        scope: &TokenScope<'_>,
        now: DateTime<Utc>,
    ) -> Result<Cursor, ResolveError> {
        let (signed, tag) = token.rsplit_once('.').ok_or_else(refused)?;
        let (id, body) = signed.split_once('.').ok_or_else(refused)?;
        let keys = self.keys();
        let key = keys.find(id, now).ok_or_else(refused)?;
        let tag = URL_SAFE_NO_PAD.decode(tag).map_err(|_| refused())?;
        let mut mac = key.mac();
        mac.update(signed.as_bytes());
        mac.verify_slice(&tag).map_err(|_| refused())?;
        let json = URL_SAFE_NO_PAD.decode(body).map_err(|_| refused())?;
        let payload: Payload = serde_json::from_slice(&json).map_err(|_| refused())?;
        if payload.v != VERSION {
            return Err(refused());
        }
        if now.timestamp() >= payload.x {
            return Err(ResolveError::validation(
                "nextToken",
                format!(
                    "has expired (a token pages on for {} seconds after it is issued): request the first page again",
                    self.ttl.num_seconds()
                ),
            ));
        }
        let same_query = payload.s == scope.student_id
            && payload.t.as_deref() == scope.assessment_type.map(AssessmentType::as_str)
            && payload.f == scope.from
            && payload.u == scope.to;
        if !same_query {
            return Err(ResolveError::validation(
                "nextToken",
                "belongs to another query: pass the same studentId, assessmentType and dateRange as the first page",
            ));
        }
        let administered_at = DateTime::from_timestamp_micros(payload.a)
            .ok_or_else(refused)?
            .naive_utc();
        Ok(Cursor {
            administered_at,
            assessment_id: payload.i,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope(student_id: &str) -> TokenScope<'_> {
        TokenScope {
            student_id,
            assessment_type: None,
            from: None,
            to: None,
        }
    }

    #[test]
    fn a_token_round_trips_and_refuses_tampering() {
        let signer = TokenSigner::new(&[7u8; 32]).expect("key");
        let at = NaiveDate::from_ymd_opt(2025, 3, 14)
            .and_then(|d| d.and_hms_milli_opt(10, 30, 0, 5))
            .expect("dt");
        let cursor = Cursor {
            administered_at: at,
            assessment_id: 100_074,
        };
        let now = Utc::now();
        let token = signer.issue(&scope("stu-0001"), cursor, now);
        assert_eq!(
            signer
                .verify(&token, &scope("stu-0001"), now)
                .expect("valid"),
            cursor
        );

        // Another student's query.
        let other = signer
            .verify(&token, &scope("stu-0002"), now)
            .expect_err("other query");
        assert!(other.to_string().contains("belongs to another query"));
        // One changed character in the payload or the tag.
        for i in [0, token.len() / 2, token.len() - 1] {
            let mut bytes = token.clone().into_bytes();
            bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
            let altered = String::from_utf8(bytes).expect("ascii");
            assert!(
                signer.verify(&altered, &scope("stu-0001"), now).is_err(),
                "altered at {i}"
            );
        }
        // Signed with another key.
        let forged =
            TokenSigner::new(&[8u8; 32])
                .expect("key")
                .issue(&scope("stu-0001"), cursor, now);
        assert!(signer.verify(&forged, &scope("stu-0001"), now).is_err());
        assert!(TokenSigner::new(b"short").is_err());
    }
    #[test]
    fn a_rotated_out_key_verifies_only_during_its_grace_period() {
        let at = NaiveDate::from_ymd_opt(2025, 3, 14)
            .and_then(|d| d.and_hms_opt(10, 30, 0))
            .expect("dt");
        let cursor = Cursor {
            administered_at: at,
            assessment_id: 7,
        };
        let old = SigningKey::new(&[1u8; 32]).expect("key");
        let new = SigningKey::new(&[2u8; 32]).expect("key");
        assert_ne!(old.id(), new.id());
        let day = std::time::Duration::from_secs(86_400);
        let before = TokenSigner::with_keys(TokenKeys::single(old.clone())).with_ttl(day);
        let rotated_at = Utc::now();
        let token = before.issue(&scope("stu-0001"), cursor, rotated_at);
        assert!(token.starts_with(&format!("{}.", old.id())));

        let grace = chrono::Duration::hours(1);
        let after = TokenSigner::with_keys(TokenKeys {
            current: new.clone(),
            previous: Some(old),
            previous_until: rotated_at + grace,
        })
        .with_ttl(day);
        let during = rotated_at + chrono::Duration::minutes(59);
        assert_eq!(
            after.verify(&token, &scope("stu-0001"), during).ok(),
            Some(cursor)
        );
        let past = rotated_at + chrono::Duration::minutes(61);
        assert!(after.verify(&token, &scope("stu-0001"), past).is_err());
        // New tokens are signed with the new key; the old signer has never seen it.
        let fresh = after.issue(&scope("stu-0001"), cursor, rotated_at);
        assert!(fresh.starts_with(&format!("{}.", new.id())));
        assert!(before.is_unknown_key(&fresh));
        assert!(!after.is_unknown_key(&token));
        assert!(!after.is_unknown_key("not a token"));
        before.replace(TokenKeys::single(new));
        assert_eq!(
            before.verify(&fresh, &scope("stu-0001"), rotated_at).ok(),
            Some(cursor)
        );
        assert!(!format!("{before:?}").contains("[2, 2"));
    }

    #[test]
    fn a_token_expires_after_its_ttl() {
        let signer = TokenSigner::new(&[7u8; 32])
            .expect("key")
            .with_ttl(std::time::Duration::from_secs(900));
        let cursor = Cursor {
            administered_at: DateTime::from_timestamp(1_700_000_000, 0)
                .expect("dt")
                .naive_utc(),
            assessment_id: 7,
        };
        let issued = Utc::now();
        let token = signer.issue(&scope("stu-0001"), cursor, issued);
        let just_before = issued + chrono::Duration::seconds(899);
        assert_eq!(
            signer.verify(&token, &scope("stu-0001"), just_before).ok(),
            Some(cursor)
        );
        let expired = signer
            .verify(
                &token,
                &scope("stu-0001"),
                issued + chrono::Duration::seconds(900),
            )
            .expect_err("expired");
        assert_eq!(
            expired.error_type(),
            crate::resolver::ErrorType::ValidationError
        );
        assert!(
            expired.to_string().starts_with("nextToken: has expired"),
            "{expired}"
        );
    }
}
