//! The Assessments table: partition key `studentId`, sort key `assessmentId`.
//! The processor reads a student's history from it and writes each scored
//! assessment back, once.
//!
//! Item attributes: `studentId`, `assessmentId`, `type`, `takenAt`,
//! `relatedId` (optional: another student id whose history is linked),
//! `rawData` (map), `score` (number), `result` (map: the scoring API's
//! answer), `scoredAt`, `messageId`, `producerId` (SQS's `SenderId` of the
//! message: who produced the record).

use std::collections::{HashMap, HashSet, VecDeque};

use assessments_common::dynamo::{self, DynamoError, DynamoTimeouts};
use assessments_common::rules::is_valid_student_id;
use assessments_common::xray;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::AttributeValue;
use serde_json::{Map, Value};

use super::message::AssessmentMessage;

/// How the errors name this data.
const DATA: &str = "assessments";
/// Items per Query page.
const PAGE_SIZE: i32 = 100;
/// What a history item carries: the scoring API needs these, not `rawData`
/// or earlier results, so reads stay small.
/// (`scoredAt` tells whether the assessment itself is already scored.)
const HISTORY_PROJECTION: &str =
    "studentId, assessmentId, #type, takenAt, score, relatedId, scoredAt";

/// The bounds of one history walk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryLimits {
    /// `relatedId` links followed from the assessment's own student (0..=10).
    pub max_depth: u32,
    /// Items returned, at most.
    pub max_items: usize,
    /// Student partitions read, at most.
    pub max_students: usize,
}

impl Default for HistoryLimits {
    fn default() -> Self {
        HistoryLimits {
            max_depth: 10,
            max_items: 200,
            max_students: 25,
        }
    }
}

/// A student's history: every reachable item at most once, within the limits.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct History {
    pub items: Vec<Value>,
    /// Partitions read (Query calls may be more: pages).
    pub students_read: usize,
    pub queries: usize,
    /// A limit stopped the walk before everything reachable was read.
    pub truncated: bool,
    /// Whether the assessment itself is already scored, as the (strongly
    /// consistent) read of its student's partition showed: `None` when
    /// the item cap cut that partition short, so it is not known.
    pub already_scored: Option<bool>,
}

/// What a conditional write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteOutcome {
    Written,
    /// The assessment was already scored (a redelivery): nothing written.
    AlreadyScored,
}

/// A scored assessment, ready to write.
#[derive(Debug, Clone, PartialEq)]
pub struct ScoreWrite<'a> {
    pub message: &'a AssessmentMessage,
    pub message_id: &'a str,
    /// Who sent the message (SQS's `SenderId`), kept as `producerId`.
    pub producer_id: Option<&'a str>,
    pub score: f64,
    pub result: &'a Map<String, Value>,
    pub scored_at: &'a str,
}

#[derive(Debug, Clone)]
pub struct AssessmentStore {
    client: Client,
    table: String,
    timeouts: DynamoTimeouts,
}

/// DynamoDB's number range: a magnitude from 1E-130 up to, not including,
/// 1E+126 (or zero). Numbers outside it fail the write with a ValidationException.
const DYNAMO_MIN_MAGNITUDE: f64 = 1e-130;
const DYNAMO_MAGNITUDE_BOUND: f64 = 1e126;

fn storable_number(x: f64) -> bool {
    x == 0.0 || (x.abs() >= DYNAMO_MIN_MAGNITUDE && x.abs() < DYNAMO_MAGNITUDE_BOUND)
}

/// Whether the score and every number of the answer fit DynamoDB's number
/// type; the error names the first that does not.
pub fn check_storable(score: f64, result: &Map<String, Value>) -> Result<(), String> {
    fn walk(path: &str, value: &Value) -> Result<(), String> {
        match value {
            Value::Number(n) => match n.as_f64() {
                Some(x) if storable_number(x) => Ok(()),
                _ => Err(format!(
                    "{path} = {n} is outside DynamoDB's number range (1E-130 to 1E+126)"
                )),
            },
            Value::Array(items) => items
                .iter()
                .enumerate()
                .try_for_each(|(i, v)| walk(&format!("{path}[{i}]"), v)),
            Value::Object(map) => map
                .iter()
                .try_for_each(|(k, v)| walk(&format!("{path}.{k}"), v)),
            _ => Ok(()),
        }
    }
    if !storable_number(score) {
        return Err(format!(
            "score = {score:e} is outside DynamoDB's number range (1E-130 to 1E+126)"
        ));
    }
    result.iter().try_for_each(|(k, v)| walk(k, v))
}

fn key(student_id: &str, assessment_id: &str) -> HashMap<String, AttributeValue> {
    HashMap::from([
        (
            "studentId".to_owned(),
            AttributeValue::S(student_id.to_owned()),
        ),
        (
            "assessmentId".to_owned(),
            AttributeValue::S(assessment_id.to_owned()),
        ),
    ])
}

impl AssessmentStore {
    /// `timeouts` are the SDK's, named in errors.
    pub fn new(client: Client, table: impl Into<String>, timeouts: DynamoTimeouts) -> Self {
        AssessmentStore {
            client,
            table: table.into(),
            timeouts,
        }
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    fn failed<E, R>(&self, error: &aws_sdk_dynamodb::error::SdkError<E, R>) -> DynamoError
    where
        E: aws_sdk_dynamodb::error::ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug + 'static,
    {
        dynamo::classify(DATA, &self.timeouts, error)
    }

    /// Whether this assessment has been scored already (a strongly
    /// consistent read, so a redelivery right after a write sees it).
    pub async fn is_scored(
        &self,
        student_id: &str,
        assessment_id: &str,
    ) -> Result<bool, DynamoError> {
        let call = async {
            self.client
                .get_item()
                .table_name(&self.table)
                .set_key(Some(key(student_id, assessment_id)))
                .consistent_read(true)
                .projection_expression("scoredAt")
                .send()
                .await
                .map_err(|e| self.failed(&e))
        };
        let output = xray::traced(xray::dynamodb_span("GetItem", &self.table), call).await?;
        Ok(output
            .item
            .is_some_and(|item| item.contains_key("scoredAt")))
    }

    /// The history of `message`'s student: their items, then the items of
    /// students linked by `relatedId`, breadth first, iteratively. Each
    /// student is read once (a visited set, so cycles end), at most
    /// `max_depth` links away, and the walk stops at `max_items` items or
    /// `max_students` partitions. The assessment itself is not part of its
    /// history; if its student's partition shows it already scored, the
    /// walk stops there (`already_scored`), so a redelivery costs one read.
    pub async fn history(
        &self,
        message: &AssessmentMessage,
        limits: HistoryLimits,
    ) -> Result<History, DynamoError> {
        let mut history = History::default();
        let mut visited: HashSet<String> = HashSet::new();
        let mut frontier: VecDeque<(String, u32)> = VecDeque::new();
        visited.insert(message.student_id.clone());
        frontier.push_back((message.student_id.clone(), 0));
        if let Some(related) = &message.related_id
            && limits.max_depth > 0
            && visited.insert(related.clone())
        {
            frontier.push_back((related.clone(), 1));
        }

        let mut seen_self_scored = false;
        'walk: while let Some((student_id, depth)) = frontier.pop_front() {
            if history.students_read == limits.max_students {
                history.truncated = true;
                break;
            }
            history.students_read += 1;
            let mut start: Option<HashMap<String, AttributeValue>> = None;
            loop {
                let remaining = limits.max_items - history.items.len();
                let query = self
                    .client
                    .query()
                    .table_name(&self.table)
                    .key_condition_expression("studentId = :s")
                    .expression_attribute_values(":s", AttributeValue::S(student_id.clone()))
                    .projection_expression(HISTORY_PROJECTION)
                    .expression_attribute_names("#type", "type")
                    // One more than we can take: tells a full stop from a cut.
                    .limit(PAGE_SIZE.min(remaining as i32 + 1))
                    // The root partition decides whether the assessment is scored.
                    .consistent_read(depth == 0)
                    .set_exclusive_start_key(start.take())
                    .send();
                let call = async { query.await.map_err(|e| self.failed(&e)) };
                let page = xray::traced(xray::dynamodb_span("Query", &self.table), call).await?;
                history.queries += 1;
                for item in page.items.unwrap_or_default() {
                    let is_self = depth == 0
                        && matches!(item.get("assessmentId"),
                            Some(AttributeValue::S(id)) if *id == message.assessment_id);
                    if is_self {
                        seen_self_scored |= item.contains_key("scoredAt");
                        continue;
                    }
                    if history.items.len() == limits.max_items {
                        history.truncated = true;
                        break 'walk;
                    }
                    if let Some(AttributeValue::S(related)) = item.get("relatedId")
                        && is_valid_student_id(related)
                        && !visited.contains(related)
                    {
                        // `visited` grows by at most one per item taken: bounded by max_items.
                        if depth < limits.max_depth {
                            visited.insert(related.clone());
                            frontier.push_back((related.clone(), depth + 1));
                        } else {
                            history.truncated = true;
                        }
                    }
                    match serde_dynamo::from_item::<_, Value>(item) {
                        Ok(json) => history.items.push(json),
                        Err(error) => {
                            // Not representable as JSON: left out, and said so.
                            tracing::warn!(%error, depth, "history item skipped");
                            history.truncated = true;
                        }
                    }
                }
                match page.last_evaluated_key {
                    Some(next) if !next.is_empty() => start = Some(next),
                    _ => break,
                }
            }
            if depth == 0 {
                // The root partition was read to its end.
                history.already_scored = Some(seen_self_scored);
                if seen_self_scored {
                    return Ok(history);
                }
            }
        }
        if !frontier.is_empty() {
            history.truncated = true;
        }
        Ok(history)
    }

    /// Writes the scored assessment unless it is already scored: a
    /// conditional put, so a redelivered or duplicated message never writes
    /// twice (and never overwrites a result).
    pub async fn put_scored(&self, scored: &ScoreWrite<'_>) -> Result<WriteOutcome, DynamoError> {
        let message = scored.message;
        let mut item = key(&message.student_id, &message.assessment_id);
        item.insert(
            "type".to_owned(),
            AttributeValue::S(message.assessment_type.as_str().to_owned()),
        );
        item.insert(
            "takenAt".to_owned(),
            AttributeValue::S(message.taken_at_text()),
        );
        if let Some(related) = &message.related_id {
            item.insert("relatedId".to_owned(), AttributeValue::S(related.clone()));
        }
        item.insert("rawData".to_owned(), to_attribute(&message.raw_data)?);
        item.insert(
            "score".to_owned(),
            AttributeValue::N(scored.score.to_string()),
        );
        item.insert("result".to_owned(), to_attribute(scored.result)?);
        item.insert(
            "scoredAt".to_owned(),
            AttributeValue::S(scored.scored_at.to_owned()),
        );
        item.insert(
            "messageId".to_owned(),
            AttributeValue::S(scored.message_id.to_owned()),
        );
        if let Some(producer) = scored.producer_id {
            item.insert(
                "producerId".to_owned(),
                AttributeValue::S(producer.to_owned()),
            );
        }
        let write = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(scoredAt)")
            .send();
        // A failed condition is an answer (already scored), not a failure.
        let call = async {
            match write.await {
                Ok(_) => Ok(WriteOutcome::Written),
                Err(e) if dynamo::service_code(&e) == Some("ConditionalCheckFailedException") => {
                    Ok(WriteOutcome::AlreadyScored)
                }
                Err(e) => Err(self.failed(&e)),
            }
        };
        xray::traced(xray::dynamodb_span("PutItem", &self.table), call).await
    }
}

fn to_attribute(map: &Map<String, Value>) -> Result<AttributeValue, DynamoError> {
    serde_dynamo::to_attribute_value(map).map_err(|e| DynamoError::Unavailable {
        table: DATA,
        reason: format!("cannot encode the item: {e}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_outside_dynamodbs_range_are_not_storable() {
        let ok: Map<String, Value> = serde_json::from_str(
            r#"{"score": 512.5, "bands": [0, -1e-100, 9e125], "n": {"x": 12}}"#,
        )
        .expect("json");
        assert_eq!(check_storable(512.5, &ok), Ok(()));
        let err = check_storable(1e200, &ok).unwrap_err();
        assert!(err.starts_with("score = 1e200"), "{err}");
        let deep: Map<String, Value> =
            serde_json::from_str(r#"{"n": {"x": [1, 1e-300]}}"#).expect("json");
        assert_eq!(
            check_storable(1.0, &deep),
            Err("n.x[1] = 1e-300 is outside DynamoDB's number range (1E-130 to 1E+126)".to_owned())
        );
        assert!(check_storable(-1e126, &Map::new()).is_err());
        assert!(check_storable(0.0, &Map::new()).is_ok());
    }
}
