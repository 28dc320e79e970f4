//! One SQS record's body: a new assessment, validated on its own. A bad
//! record fails alone, with a message naming the field; its content is never
//! logged (it is student data).

use assessments_common::rules::{AssessmentType, STUDENT_ID_RULE, is_valid_student_id, json_kind};
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Map, Value};

/// SQS's own limit on a message body (256 KiB); larger bodies are refused.
pub const MAX_BODY_BYTES: usize = 256 * 1024;
/// `rawData`, serialized, must fit here so the written item stays far below
/// DynamoDB's 400 KB item limit next to the scoring result.
pub const MAX_RAW_DATA_BYTES: usize = 64 * 1024;
pub const MAX_ASSESSMENT_ID_LEN: usize = 128;

/// A valid assessment message.
#[derive(Debug, Clone, PartialEq)]
pub struct AssessmentMessage {
    pub assessment_id: String,
    pub student_id: String,
    pub assessment_type: AssessmentType,
    pub taken_at: DateTime<Utc>,
    /// Another student id whose history is linked to this student's (a
    /// transferred or merged record); followed like an item's `relatedId`.
    pub related_id: Option<String>,
    /// The assessment's raw data, passed to the scoring API as is.
    pub raw_data: Map<String, Value>,
}

/// Why a body is not an assessment message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct InvalidMessage {
    pub field: &'static str,
    pub reason: String,
}

fn invalid(field: &'static str, reason: impl Into<String>) -> InvalidMessage {
    InvalidMessage {
        field,
        reason: reason.into(),
    }
}

/// The body as a JSON object, within [`MAX_BODY_BYTES`].
fn json_object(body: Option<&str>) -> Result<Map<String, Value>, InvalidMessage> {
    let body = body.ok_or_else(|| invalid("body", "is missing"))?;
    if body.len() > MAX_BODY_BYTES {
        return Err(invalid(
            "body",
            format!("is {} bytes, over {MAX_BODY_BYTES}", body.len()),
        ));
    }
    let value: Value = serde_json::from_str(body).map_err(|e| {
        // serde_json's message names the position, never the content.
        invalid("body", format!("is not JSON ({e})"))
    })?;
    match value {
        Value::Object(body) => Ok(body),
        other => Err(invalid(
            "body",
            format!("must be a JSON object, got {}", json_kind(&other)),
        )),
    }
}

/// The optional `relatedId`: a student id.
fn related_id(body: &Map<String, Value>) -> Result<Option<String>, InvalidMessage> {
    match body.get("relatedId") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(id)) if is_valid_student_id(id) => Ok(Some(id.clone())),
        Some(Value::String(_)) => Err(invalid("relatedId", STUDENT_ID_RULE)),
        Some(other) => Err(invalid(
            "relatedId",
            format!("must be a string, got {}", json_kind(other)),
        )),
    }
}

/// The required `rawData`: an object within [`MAX_RAW_DATA_BYTES`].
fn raw_data(body: &Map<String, Value>) -> Result<Map<String, Value>, InvalidMessage> {
    let raw_data = match body.get("rawData") {
        None | Some(Value::Null) => return Err(invalid("rawData", "is required")),
        Some(Value::Object(map)) => map.clone(),
        Some(other) => {
            return Err(invalid(
                "rawData",
                format!("must be an object, got {}", json_kind(other)),
            ));
        }
    };
    let raw_size = serde_json::to_vec(&raw_data).map_or(usize::MAX, |v| v.len());
    if raw_size > MAX_RAW_DATA_BYTES {
        return Err(invalid(
            "rawData",
            format!("is {raw_size} bytes, over {MAX_RAW_DATA_BYTES}"),
        ));
    }
    Ok(raw_data)
}

fn string<'a>(
    body: &'a Map<String, Value>,
    field: &'static str,
) -> Result<&'a str, InvalidMessage> {
    match body.get(field) {
        None | Some(Value::Null) => Err(invalid(field, "is required")),
        Some(Value::String(s)) => Ok(s),
        Some(other) => Err(invalid(
            field,
            format!("must be a string, got {}", json_kind(other)),
        )),
    }
}

fn is_valid_assessment_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_ASSESSMENT_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

impl AssessmentMessage {
    /// Parses and validates a record body. Fields other than the ones below
    /// are ignored, so producers can add fields without breaking the consumer.
    pub fn parse(body: Option<&str>) -> Result<Self, InvalidMessage> {
        let body = json_object(body)?;
        let assessment_id = string(&body, "assessmentId")?;
        if !is_valid_assessment_id(assessment_id) {
            return Err(invalid(
                "assessmentId",
                format!(
                    "must be 1 to {MAX_ASSESSMENT_ID_LEN} characters of letters, digits, '-', '_', '.' or ':'"
                ),
            ));
        }
        let student_id = string(&body, "studentId")?;
        if !is_valid_student_id(student_id) {
            return Err(invalid("studentId", STUDENT_ID_RULE));
        }
        let type_name = string(&body, "type")?;
        let assessment_type = AssessmentType::parse(type_name).ok_or_else(|| {
            invalid(
                "type",
                format!("must be one of {}", AssessmentType::names().join(", ")),
            )
        })?;
        let taken_at = DateTime::parse_from_rfc3339(string(&body, "takenAt")?)
            .map_err(|_| invalid("takenAt", "must be an RFC 3339 date-time"))?
            .with_timezone(&Utc);
        Ok(AssessmentMessage {
            assessment_id: assessment_id.to_owned(),
            student_id: student_id.to_owned(),
            assessment_type,
            taken_at,
            related_id: related_id(&body)?,
            raw_data: raw_data(&body)?,
        })
    }

    /// The assessment as the scoring API and the table see it.
    pub fn to_json(&self) -> Value {
        let mut doc = Map::new();
        doc.insert("assessmentId".into(), self.assessment_id.clone().into());
        doc.insert("studentId".into(), self.student_id.clone().into());
        doc.insert("type".into(), self.assessment_type.as_str().into());
        doc.insert("takenAt".into(), self.taken_at_text().into());
        if let Some(related) = &self.related_id {
            doc.insert("relatedId".into(), related.clone().into());
        }
        doc.insert("rawData".into(), Value::Object(self.raw_data.clone()));
        Value::Object(doc)
    }

    pub fn taken_at_text(&self) -> String {
        self.taken_at.to_rfc3339_opts(SecondsFormat::Millis, true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn valid() -> Value {
        json!({
            "assessmentId": "asm-2026-0001",
            "studentId": "stu-0001",
            "type": "ORAL_READING_FLUENCY",
            "takenAt": "2026-11-20T14:03:00Z",
            "rawData": {"wordsRead": 112, "errors": 4, "seconds": 60},
            "producer": "ignored"
        })
    }

    fn parse(value: &Value) -> Result<AssessmentMessage, InvalidMessage> {
        AssessmentMessage::parse(Some(&value.to_string()))
    }

    #[test]
    fn a_valid_body_parses_and_round_trips_its_fields() {
        let message = parse(&valid()).expect("valid");
        assert_eq!(message.assessment_id, "asm-2026-0001");
        assert_eq!(message.assessment_type, AssessmentType::OralReadingFluency);
        assert_eq!(message.related_id, None);
        let doc = message.to_json();
        assert_eq!(doc["takenAt"], "2026-11-20T14:03:00.000Z");
        assert_eq!(doc["rawData"]["wordsRead"], 112);
        assert!(doc.get("producer").is_none());
    }

    #[test]
    fn every_invalid_field_is_named() {
        // (field, the value it gets; None removes it)
        let cases = [
            ("assessmentId", None),
            ("assessmentId", Some(json!("a b"))),
            ("assessmentId", Some(json!(7))),
            ("studentId", Some(json!("../x"))),
            ("studentId", Some(json!(""))),
            ("type", Some(json!("SPELLING"))),
            ("takenAt", Some(json!("yesterday"))),
            ("relatedId", Some(json!(["x"]))),
            ("relatedId", Some(json!("a/b"))),
            ("rawData", Some(json!("text"))),
            ("rawData", None),
            ("rawData", Some(json!({"blob": "x".repeat(70_000)}))),
        ];
        for (field, value) in cases {
            let mut body = valid().as_object().cloned().expect("object");
            match value {
                Some(value) => body.insert(field.to_owned(), value),
                None => body.remove(field),
            };
            let error = parse(&Value::Object(body)).expect_err(field);
            assert_eq!(error.field, field, "{error}");
        }
        for body in [None, Some("not json"), Some("[1]"), Some("")] {
            assert_eq!(
                AssessmentMessage::parse(body).expect_err("body").field,
                "body"
            );
        }
        let huge = "x".repeat(MAX_BODY_BYTES + 1);
        assert_eq!(
            AssessmentMessage::parse(Some(&huge))
                .expect_err("huge")
                .field,
            "body"
        );
    }
}
