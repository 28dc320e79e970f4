//! Who read which student: one audit log line per item answered.
//!
//! Each line carries the request id, the caller's kind and id (the token's
//! `sub`, the IAM caller's ARN, a Lambda authorizer's `sub`; none for an API
//! key), a keyed hash of the student id, the decision, and the item's
//! `errorType` when it failed. The student id itself is in no log line: the
//! hash is `HMAC-SHA256(audit key, studentId)`, its first 16 bytes in
//! base64url, and the audit key is derived from the `nextToken` key current at
//! init (`HMAC-SHA256(that key, "assessments-resolver audit v1")`), whose id the
//! line names as `audit_key`. To find a student's lines, compute the hash with
//! the key of that id (docs/security.md shows how); without the key a hash
//! tells nothing about the id.
//!
//! The lines are written whatever `RUST_LOG` says, in the shape of the
//! function's other JSON log lines (`timestamp`, `level`, the fields,
//! `message`), all of an invocation's at once: serialized by serde_json
//! straight into one buffer, since formatting each through tracing's JSON
//! layer cost ~20 k instructions a line, a tenth of a batch item.

use std::collections::HashMap;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde::Serialize;
use sha2::Sha256;

use crate::authz::Caller;
use crate::resolver::{ItemOutcome, SigningKey};

type HmacSha256 = Hmac<Sha256>;

/// The label the audit key is derived under.
const LABEL: &[u8] = b"assessments-resolver audit v1";

/// The key that hashes student ids in audit lines.
#[derive(Clone)]
pub struct AuditKey {
    /// HMAC keyed with the audit key (its pads hashed once, at init).
    mac: HmacSha256,
    /// The id of the `nextToken` key it was derived from.
    id: String,
}

impl std::fmt::Debug for AuditKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AuditKey(from {}, <key redacted>)", self.id)
    }
}

impl AuditKey {
    pub fn derive(from: &SigningKey) -> Self {
        // HMAC accepts keys of any length; this cannot fail.
        let mac = HmacSha256::new_from_slice(&from.derive(LABEL))
            .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
        AuditKey {
            mac,
            id: from.id().to_owned(),
        }
    }

    /// The id of the key it was derived from (the lines' `audit_key`).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The keyed hash of `student_id` that audit lines carry.
    pub fn student_ref(&self, student_id: &str) -> String {
        let mut mac = self.mac.clone();
        mac.update(student_id.as_bytes());
        URL_SAFE_NO_PAD.encode(&mac.finalize().into_bytes()[..16])
    }
}

/// The student hashes of one invocation: each distinct student hashed once
/// (a batch names the same student in many items).
#[derive(Debug)]
pub struct StudentRefs<'k> {
    key: &'k AuditKey,
    seen: HashMap<String, String>,
}

impl<'k> StudentRefs<'k> {
    pub fn new(key: &'k AuditKey) -> Self {
        StudentRefs {
            key,
            seen: HashMap::new(),
        }
    }

    pub fn of(&mut self, student_id: &str) -> String {
        if let Some(known) = self.seen.get(student_id) {
            return known.clone();
        }
        let hashed = self.key.student_ref(student_id);
        self.seen.insert(student_id.to_owned(), hashed.clone());
        hashed
    }
}

/// What an item's audit line says about its caller and student, taken from
/// the event before it is resolved (also when its arguments are invalid).
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEntry {
    caller_kind: &'static str,
    caller_id: Option<String>,
    student: Option<String>,
}

impl AuditEntry {
    /// The entry for an item of `caller` about `student_id` (none when the
    /// event names no valid one).
    pub fn new(caller: &Caller, student_id: Option<&str>, refs: &mut StudentRefs<'_>) -> Self {
        AuditEntry {
            caller_kind: caller.kind(),
            caller_id: caller.id().map(str::to_owned),
            student: student_id.map(|id| refs.of(id)),
        }
    }

    /// Appends the item's audit line (JSON and a newline) to `out`: the
    /// access decision the resolver made for it, and its `errorType` when it
    /// failed; `at` is the lines' `timestamp` (RFC 3339, as the other log
    /// lines have it).
    pub fn write(
        &self,
        out: &mut Vec<u8>,
        at: &str,
        request_id: &str,
        key: &AuditKey,
        outcome: &ItemOutcome,
    ) {
        let line = AuditLine {
            timestamp: at,
            level: "INFO",
            request_id,
            caller_kind: self.caller_kind,
            caller_id: self.caller_id.as_deref(),
            student: self.student.as_deref(),
            audit_key: key.id(),
            decision: outcome.decision.as_str(),
            error_type: outcome
                .result
                .as_ref()
                .err()
                .map(|e| e.error_type().as_str()),
            message: "audit",
        };
        // Our own type: string fields only; cannot fail.
        if serde_json::to_writer(&mut *out, &line).is_ok() {
            out.push(b'\n');
        }
    }
}

/// One audit line, as tracing's JSON layer writes the other lines (absent
/// values left out).
#[derive(Serialize)]
struct AuditLine<'a> {
    timestamp: &'a str,
    level: &'static str,
    request_id: &'a str,
    caller_kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    caller_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    student: Option<&'a str>,
    audit_key: &'a str,
    decision: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    error_type: Option<&'static str>,
    message: &'static str,
}

/// Now, as the JSON log lines' `timestamp` has it (RFC 3339, microseconds, UTC).
pub fn log_timestamp() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authz::Decision;
    use crate::resolver::ResolveError;

    #[test]
    fn the_student_ref_is_keyed_stable_and_hides_the_id() {
        let a = AuditKey::derive(&SigningKey::new(&[1u8; 32]).expect("key"));
        let b = AuditKey::derive(&SigningKey::new(&[2u8; 32]).expect("key"));
        let one = a.student_ref("stu-0001");
        assert_eq!(one, a.student_ref("stu-0001"));
        assert_ne!(one, a.student_ref("stu-0002"));
        assert_ne!(one, b.student_ref("stu-0001"));
        assert_eq!(one.len(), 22);
        assert!(!one.contains("stu"));
        assert!(!format!("{a:?}").contains("[1"));
        let mut refs = StudentRefs::new(&a);
        assert_eq!(refs.of("stu-0001"), one);
        assert_eq!(refs.of("stu-0001"), one);
        assert_eq!(refs.of("stu-0002"), a.student_ref("stu-0002"));
    }

    #[test]
    fn an_audit_line_is_one_json_object_without_absent_fields() {
        let key = AuditKey::derive(&SigningKey::new(&[1u8; 32]).expect("key"));
        let mut refs = StudentRefs::new(&key);
        let entry = AuditEntry::new(&Caller::ApiKey, Some("stu-0001"), &mut refs);
        let mut out = Vec::new();
        let page = crate::resolver::AssessmentPage {
            items: Vec::new(),
            next_token: None,
        };
        let not_found = ResolveError::NotFound;
        let at = "2026-12-04T06:00:00.000001Z";
        for (result, decision) in [
            (Ok(page), Decision::Allowed),
            (Err(not_found), Decision::Allowed),
        ] {
            entry.write(
                &mut out,
                at,
                "req-1",
                &key,
                &ItemOutcome { result, decision },
            );
        }
        let denied = ItemOutcome {
            result: Err(ResolveError::Unauthorized),
            decision: Decision::Denied,
        };
        entry.write(&mut out, at, "req-1", &key, &denied);
        let text = String::from_utf8(out).expect("utf-8");
        let lines: Vec<serde_json::Value> = (text.lines())
            .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
            .collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0]["message"], "audit");
        assert_eq!(lines[0]["level"], "INFO");
        assert_eq!(lines[0]["decision"], "allowed");
        assert_eq!(lines[0]["audit_key"], key.id());
        assert_eq!(lines[0]["student"], key.student_ref("stu-0001"));
        assert!(lines[0].get("caller_id").is_none() && lines[0].get("error_type").is_none());
        assert_eq!(lines[1]["error_type"], "NotFound");
        assert_eq!(
            (
                lines[2]["decision"].as_str(),
                lines[2]["error_type"].as_str()
            ),
            (Some("denied"), Some("Unauthorized"))
        );
        assert!(!text.contains("stu-0001"));
    }
}
