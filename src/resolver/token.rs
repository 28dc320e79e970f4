//! `nextToken`: the keyset cursor of the next page, bound to the query it
//! belongs to and signed (HMAC-SHA256), so a forged, altered or transplanted
//! token is refused instead of steering the query.
//!
//! Format: `base64url(payload JSON) "." base64url(HMAC(payload part))`.

use assessments_common::config::ConfigError;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, NaiveDate};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use super::error::ResolveError;
use crate::legacy::AssessmentType;
use crate::sqlserver::Cursor;

type HmacSha256 = Hmac<Sha256>;

/// Shortest signing key accepted.
pub const MIN_KEY_LEN: usize = 32;

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
}

/// Signs and verifies tokens with one key (`NEXT_TOKEN_KEY`), shared by every
/// execution environment of the function so any of them accepts any token.
#[derive(Clone)]
pub struct TokenSigner {
    key: Vec<u8>,
}

impl std::fmt::Debug for TokenSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenSigner(<key redacted>)")
    }
}

fn refused() -> ResolveError {
    ResolveError::validation(
        "nextToken",
        "is not a token this API issued (altered, forged or expired)",
    )
}

impl TokenSigner {
    pub fn new(key: &[u8]) -> Result<Self, ConfigError> {
        if key.len() < MIN_KEY_LEN {
            return Err(ConfigError::Invalid {
                name: "NEXT_TOKEN_KEY",
                reason: format!("must be at least {MIN_KEY_LEN} bytes"),
            });
        }
        Ok(TokenSigner { key: key.to_vec() })
    }

    fn mac(&self) -> HmacSha256 {
        // HMAC accepts keys of any length; this cannot fail.
        HmacSha256::new_from_slice(&self.key)
            .unwrap_or_else(|_| unreachable!("HMAC takes any key length"))
    }

    pub fn issue(&self, scope: &TokenScope<'_>, cursor: Cursor) -> String {
        let payload = Payload {
            v: 1,
            s: scope.student_id.to_owned(),
            t: scope.assessment_type.map(|t| t.as_str().to_owned()),
            f: scope.from,
            u: scope.to,
            a: cursor.administered_at.and_utc().timestamp_micros(),
            i: cursor.assessment_id,
        };
        // Serializing plain strings, dates and integers cannot fail.
        let json = serde_json::to_vec(&payload).unwrap_or_default();
        let body = URL_SAFE_NO_PAD.encode(json);
        let mut mac = self.mac();
        mac.update(body.as_bytes());
        let tag = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        format!("{body}.{tag}")
    }

    /// The cursor in `token`, if this key signed it for exactly `scope`.
    pub fn verify(&self, token: &str, scope: &TokenScope<'_>) -> Result<Cursor, ResolveError> {
        let (body, tag) = token.split_once('.').ok_or_else(refused)?;
        let tag = URL_SAFE_NO_PAD.decode(tag).map_err(|_| refused())?;
        let mut mac = self.mac();
        mac.update(body.as_bytes());
        mac.verify_slice(&tag).map_err(|_| refused())?;
        let json = URL_SAFE_NO_PAD.decode(body).map_err(|_| refused())?;
        let payload: Payload = serde_json::from_slice(&json).map_err(|_| refused())?;
        if payload.v != 1 {
            return Err(refused());
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
        let token = signer.issue(&scope("stu-0001"), cursor);
        assert_eq!(
            signer.verify(&token, &scope("stu-0001")).expect("valid"),
            cursor
        );

        // Another student's query.
        let other = signer
            .verify(&token, &scope("stu-0002"))
            .expect_err("other query");
        assert!(other.to_string().contains("belongs to another query"));
        // One changed character in the payload or the tag.
        for i in [0, token.len() / 2, token.len() - 1] {
            let mut bytes = token.clone().into_bytes();
            bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
            let altered = String::from_utf8(bytes).expect("ascii");
            assert!(
                signer.verify(&altered, &scope("stu-0001")).is_err(),
                "altered at {i}"
            );
        }
        // Signed with another key.
        let forged = TokenSigner::new(&[8u8; 32])
            .expect("key")
            .issue(&scope("stu-0001"), cursor);
        assert!(signer.verify(&forged, &scope("stu-0001")).is_err());
        assert!(TokenSigner::new(b"short").is_err());
    }
}
