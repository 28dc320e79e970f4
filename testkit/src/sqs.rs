//! SQS events as Lambda delivers them to the assessment processor, and the
//! assessment messages they carry: the sample event of the local demo, and
//! generated ones for tests and the soak.

use serde_json::{Value, json};

/// The local demo's event (`fixtures/sqs-event.json`): six scoreable
/// assessments (stu-0003's history links to stu-0004 and back; stu-0005's
/// to stu-0006), one with an unknown type, one whose raw data the scoring
/// API cannot score.
pub const SAMPLE_EVENT: &str = include_str!("../fixtures/sqs-event.json");

/// An SQS event with one record per `(message id, body)`.
pub fn event<I, S>(records: I) -> Value
where
    I: IntoIterator<Item = (S, String)>,
    S: Into<String>,
{
    let records: Vec<Value> = records
        .into_iter()
        .enumerate()
        .map(|(index, (message_id, body))| {
            json!({
                "messageId": message_id.into(),
                "receiptHandle": format!("AQEB-testkit-{index}"),
                "body": body,
                "attributes": {
                    "ApproximateReceiveCount": "1",
                    "SentTimestamp": "1763647380000",
                    "SenderId": "AIDAEXAMPLE",
                    "ApproximateFirstReceiveTimestamp": "1763647380001"
                },
                "messageAttributes": {},
                "md5OfBody": "",
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:assessments-to-score",
                "awsRegion": "us-east-1"
            })
        })
        .collect();
    json!({ "Records": records })
}

/// A valid assessment message body; `n` varies the raw data.
pub fn assessment_body(assessment_id: &str, student_id: &str, n: u64) -> String {
    assessment(assessment_id, student_id, n).to_string()
}

/// A valid assessment message (as JSON, to add or change fields); `n` varies the raw data.
pub fn assessment(assessment_id: &str, student_id: &str, n: u64) -> Value {
    let attempted = 20 + n % 11;
    const TYPES: [&str; 3] = [
        "ORAL_READING_FLUENCY",
        "READING_COMPREHENSION",
        "PHONOLOGICAL_AWARENESS",
    ];
    json!({
        "assessmentId": assessment_id,
        "studentId": student_id,
        "type": TYPES[(n % 3) as usize],
        "takenAt": "2026-11-20T14:03:00.000Z",
        "rawData": if n.is_multiple_of(3) {
            json!({"wordsRead": 60 + n % 90, "errors": n % 7, "seconds": 60})
        } else {
            json!({"itemsCorrect": attempted - n % 9, "itemsAttempted": attempted})
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sample_event_has_eight_records_with_distinct_ids() {
        let event: Value = serde_json::from_str(SAMPLE_EVENT).expect("JSON");
        let records = event["Records"].as_array().expect("records");
        assert_eq!(records.len(), 8);
        let mut ids: Vec<&str> = records
            .iter()
            .filter_map(|r| r["messageId"].as_str())
            .collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), 8);
    }
}
