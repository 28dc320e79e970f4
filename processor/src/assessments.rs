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
        let mut walk = Walk::new(message, limits);
        while let Some((student_id, depth)) = walk.frontier.pop_front() {
            if walk.history.students_read == limits.max_students {
                walk.history.truncated = true;
                break;
            }
            walk.history.students_read += 1;
            if !self.read_partition(&mut walk, &student_id, depth).await? {
                break;
            }
            if depth == 0 {
                // The root partition was read to its end.
                walk.history.already_scored = Some(walk.seen_self_scored);
                if walk.seen_self_scored {
                    return Ok(walk.history);
                }
            }
        }
        if !walk.frontier.is_empty() {
            walk.history.truncated = true;
        }
        Ok(walk.history)
    }

    /// Reads one student's partition, page by page, into the walk: false
    /// when the walk took all it may (`max_items`) and stops.
    async fn read_partition(
        &self,
        walk: &mut Walk<'_>,
        student_id: &str,
        depth: u32,
    ) -> Result<bool, DynamoError> {
        let mut start: Option<HashMap<String, AttributeValue>> = None;
        loop {
            let remaining = walk.limits.max_items - walk.history.items.len();
            let query = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("studentId = :s")
                .expression_attribute_values(":s", AttributeValue::S(student_id.to_owned()))
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
            walk.history.queries += 1;
            for item in page.items.unwrap_or_default() {
                if !walk.take(item, depth) {
                    return Ok(false);
                }
            }
            match page.last_evaluated_key {
                Some(next) if !next.is_empty() => start = Some(next),
                _ => return Ok(true),
            }
        }
    }

    /// Writes the scored assessment unless it is already scored: a
    /// conditional put, so a redelivered or duplicated message never writes
    /// twice (and never overwrites a result).
    pub async fn put_scored(&self, scored: &ScoreWrite<'_>) -> Result<WriteOutcome, DynamoError> {
        let item = scored_item(scored)?;
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

/// The walk of [`AssessmentStore::history`]: who was visited, who is next,
/// what was taken.
struct Walk<'m> {
    message: &'m AssessmentMessage,
    limits: HistoryLimits,
    history: History,
    visited: HashSet<String>,
    frontier: VecDeque<(String, u32)>,
    /// The assessment itself was seen in its student's partition, scored.
    seen_self_scored: bool,
}

impl<'m> Walk<'m> {
    fn new(message: &'m AssessmentMessage, limits: HistoryLimits) -> Self {
        let mut walk = Walk {
            message,
            limits,
            history: History::default(),
            visited: HashSet::from([message.student_id.clone()]),
            frontier: VecDeque::from([(message.student_id.clone(), 0)]),
            seen_self_scored: false,
        };
        if let Some(related) = &message.related_id
            && limits.max_depth > 0
            && walk.visited.insert(related.clone())
        {
            walk.frontier.push_back((related.clone(), 1));
        }
        walk
    }

    /// Takes one item of a partition `depth` links away (following its
    /// `relatedId`); false when the walk is full and stops.
    fn take(&mut self, item: HashMap<String, AttributeValue>, depth: u32) -> bool {
        let is_self = depth == 0
            && matches!(item.get("assessmentId"),
                Some(AttributeValue::S(id)) if *id == self.message.assessment_id);
        if is_self {
            self.seen_self_scored |= item.contains_key("scoredAt");
            return true;
        }
        if self.history.items.len() == self.limits.max_items {
            self.history.truncated = true;
            return false;
        }
        if let Some(AttributeValue::S(related)) = item.get("relatedId")
            && is_valid_student_id(related)
            && !self.visited.contains(related)
        {
            // `visited` grows by at most one per item taken: bounded by max_items.
            if depth < self.limits.max_depth {
                self.visited.insert(related.clone());
                self.frontier.push_back((related.clone(), depth + 1));
            } else {
                self.history.truncated = true;
            }
        }
        match serde_dynamo::from_item::<_, Value>(item) {
            Ok(json) => self.history.items.push(json),
            Err(error) => {
                // Not representable as JSON: left out, and said so.
                tracing::warn!(%error, depth, "history item skipped");
                self.history.truncated = true;
            }
        }
        true
    }
}

/// The item of a scored assessment, as the table stores it.
fn scored_item(scored: &ScoreWrite<'_>) -> Result<HashMap<String, AttributeValue>, DynamoError> {
    let message = scored.message;
    let mut item = key(&message.student_id, &message.assessment_id);
    let mut put = |name: &str, value: AttributeValue| item.insert(name.to_owned(), value);
    put(
        "type",
        AttributeValue::S(message.assessment_type.as_str().to_owned()),
    );
    put("takenAt", AttributeValue::S(message.taken_at_text()));
    if let Some(related) = &message.related_id {
        put("relatedId", AttributeValue::S(related.clone()));
    }
    put("rawData", to_attribute(&message.raw_data)?);
    put("score", AttributeValue::N(scored.score.to_string()));
    put("result", to_attribute(scored.result)?);
    put("scoredAt", AttributeValue::S(scored.scored_at.to_owned()));
    put("messageId", AttributeValue::S(scored.message_id.to_owned()));
    if let Some(producer) = scored.producer_id {
        put("producerId", AttributeValue::S(producer.to_owned()));
    }
    Ok(item)
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
