//! The identifier rules every function applies to its input, stated once:
//! what a student id is, which assessment types exist and their stable names,
//! and how a JSON value's kind is named in messages.

use std::fmt;

use serde_json::Value;

/// Longest student id, in bytes.
pub const MAX_STUDENT_ID_LEN: usize = 64;

/// A student id: 1 to 64 letters, digits, '-' or '_'. The same rule for
/// every function that takes one.
pub fn is_valid_student_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_STUDENT_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// What [`is_valid_student_id`] requires, for messages.
pub const STUDENT_ID_RULE: &str = "must be 1 to 64 characters of letters, digits, '-' or '_'";

/// A JSON type's name, for messages.
pub fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// The assessment types: the GraphQL enum `AssessmentType`, the legacy
/// database's `assessment_type` column, the legacy component's
/// `la_assessment_type`, the processor's messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum AssessmentType {
    OralReadingFluency,
    ReadingComprehension,
    PhonologicalAwareness,
}

impl AssessmentType {
    pub const ALL: [AssessmentType; 3] = [
        AssessmentType::OralReadingFluency,
        AssessmentType::ReadingComprehension,
        AssessmentType::PhonologicalAwareness,
    ];

    /// The stable name used in the database, the messages and the GraphQL enum.
    pub fn as_str(self) -> &'static str {
        match self {
            AssessmentType::OralReadingFluency => "ORAL_READING_FLUENCY",
            AssessmentType::ReadingComprehension => "READING_COMPREHENSION",
            AssessmentType::PhonologicalAwareness => "PHONOLOGICAL_AWARENESS",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == name)
    }

    /// Every name, for messages listing the accepted values.
    pub fn names() -> Vec<&'static str> {
        Self::ALL.iter().map(|t| t.as_str()).collect()
    }
}

impl fmt::Display for AssessmentType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn student_ids_follow_one_rule() {
        assert!(is_valid_student_id("stu-0001"));
        assert!(is_valid_student_id(&"a".repeat(MAX_STUDENT_ID_LEN)));
        assert!(!is_valid_student_id(""));
        assert!(!is_valid_student_id(&"a".repeat(MAX_STUDENT_ID_LEN + 1)));
        assert!(!is_valid_student_id("stu 1"));
        assert!(!is_valid_student_id("STUDENT#stu-1"));
    }

    #[test]
    fn assessment_type_names_round_trip() {
        for t in AssessmentType::ALL {
            assert_eq!(AssessmentType::parse(t.as_str()), Some(t));
        }
        assert_eq!(AssessmentType::parse("reading_comprehension"), None);
        assert_eq!(AssessmentType::names().len(), 3);
    }
}
