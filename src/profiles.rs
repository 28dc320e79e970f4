//! Student profiles in DynamoDB: the Students table, item key
//! `PK = STUDENT#{id}`, `SK = PROFILE`.
//!
//! One client, built at init and shared. Each call is bounded by the SDK's
//! operation timeout and by the invocation's budget, and retried with backoff
//! on throttling by the SDK's standard retry strategy (configured in
//! [`assessments_common::aws`]); `BatchGetItem`'s `UnprocessedKeys` are retried here, with
//! backoff, a bounded number of times, and only while a whole attempt fits
//! in the budget. A profile that does not decode fails only its own student.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use assessments_common::budget::Budget;
use assessments_common::dynamo::{self, DynamoError, DynamoTimeouts};
use assessments_common::xray;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes};

/// BatchGetItem's limit of keys per request.
const BATCH_GET_MAX_KEYS: usize = 100;
/// Rounds of retrying `UnprocessedKeys` before giving up.
const UNPROCESSED_ROUNDS: u32 = 5;

/// What the resolver needs from a profile.
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    pub student_id: String,
    /// 0 (kindergarten) ..= 12.
    pub grade: u8,
    /// Grade-equivalent, 0.0 ..= 13.0.
    pub reading_level: f64,
    /// The student's school (`schoolId`), what a school-scoped caller is checked against.
    pub school_id: Option<String>,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum ProfileError {
    #[error(transparent)]
    Dynamo(#[from] DynamoError),
    /// The student is the one the item asked for; no id here, so the error
    /// can be logged.
    #[error("the student's profile is malformed: {reason}")]
    Malformed { reason: String },
}

/// One student's profile as read: the profile, or why that item is unusable.
pub type ProfileRead = Result<Profile, ProfileError>;

/// The attributes the resolver reads.
const PROJECTION: &str = "PK, grade, readingLevel, schoolId";

/// How the errors name this data.
const DATA: &str = "student profiles";

/// The Students table.
#[derive(Debug, Clone)]
pub struct ProfileStore {
    client: Client,
    table: String,
    timeouts: DynamoTimeouts,
}

/// The key init reads to open the connection: not a student id the
/// resolver accepts (ids are checked before any read), so no profile has it.
const INIT_PROBE_STUDENT: &str = "#init-connection";

fn key(student_id: &str) -> HashMap<String, AttributeValue> {
    HashMap::from([
        (
            "PK".to_owned(),
            AttributeValue::S(format!("STUDENT#{student_id}")),
        ),
        ("SK".to_owned(), AttributeValue::S("PROFILE".to_owned())),
    ])
}

impl ProfileStore {
    /// `timeouts` are the SDK's, named in errors.
    pub fn new(client: Client, table: impl Into<String>, timeouts: DynamoTimeouts) -> Self {
        ProfileStore {
            client,
            table: table.into(),
            timeouts,
        }
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    fn classify<E, R>(&self, error: SdkError<E, R>) -> DynamoError
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug + 'static,
    {
        dynamo::classify(DATA, &self.timeouts, &error)
    }

    /// One profile within `budget`; `None` when the student has none.
    /// Opens the client's connection to DynamoDB (TLS included) with a read
    /// of a key no student has (the SDK has no bare connect; the function's
    /// role may already read the table, and nothing else).
    pub async fn open_connection(&self, budget: &Budget) -> Result<(), ProfileError> {
        self.get(INIT_PROBE_STUDENT, budget).await.map(drop)
    }

    pub async fn get(
        &self,
        student_id: &str,
        budget: &Budget,
    ) -> Result<Option<Profile>, ProfileError> {
        // The SDK's send future is large (~10 KB): boxed where it is made, so
        // that the futures around it (and the handler's) stay small to move.
        let call = async {
            Box::pin(
                self.client
                    .get_item()
                    .table_name(&self.table)
                    .set_key(Some(key(student_id)))
                    .projection_expression(PROJECTION)
                    .send(),
            )
            .await
            .map_err(|e| self.classify(e))
        };
        let span = xray::dynamodb_span("GetItem", &self.table);
        let output = xray::traced(span, dynamo::within(DATA, &self.timeouts, budget, call)).await?;
        output
            .item
            .map(|item| decode(student_id, &item))
            .transpose()
    }

    /// Profiles of several students within `budget`, each read once
    /// (BatchGetItem in chunks of 100). Students without a profile are absent
    /// from the map; a profile that does not decode is an error for that
    /// student only. The outer error is DynamoDB failing the whole read.
    pub async fn get_many(
        &self,
        student_ids: &[&str],
        budget: &Budget,
    ) -> Result<HashMap<String, ProfileRead>, ProfileError> {
        let unique: Vec<&str> = {
            let mut seen = HashSet::new();
            student_ids
                .iter()
                .copied()
                .filter(|id| seen.insert(*id))
                .collect()
        };
        let mut profiles = HashMap::with_capacity(unique.len());
        for chunk in unique.chunks(BATCH_GET_MAX_KEYS) {
            self.get_chunk(chunk, budget, &mut profiles).await?;
        }
        Ok(profiles)
    }

    /// One BatchGetItem of at most [`BATCH_GET_MAX_KEYS`] students into
    /// `profiles`, its unprocessed keys retried while the budget allows.
    async fn get_chunk(
        &self,
        chunk: &[&str],
        budget: &Budget,
        profiles: &mut HashMap<String, ProfileRead>,
    ) -> Result<(), ProfileError> {
        let keys = KeysAndAttributes::builder()
            .set_keys(Some(chunk.iter().map(|id| key(id)).collect()))
            .projection_expression(PROJECTION)
            .build()
            .map_err(|e| {
                ProfileError::Dynamo(DynamoError::Unavailable {
                    table: DATA,
                    reason: format!("request build failed: {e}"),
                })
            })?;
        let mut pending = Some(HashMap::from([(self.table.clone(), keys)]));
        let mut round = 0;
        while let Some(request) = pending.take().filter(|r| !r.is_empty()) {
            // Exponential backoff before each retry: 20, 40, 80, 160 ms; a
            // retry only when it and a whole attempt still fit the budget.
            let backoff = Duration::from_millis(10 << round);
            if round == UNPROCESSED_ROUNDS
                || (round > 0 && !budget.fits(backoff + self.timeouts.attempt))
            {
                return Err(ProfileError::Dynamo(DynamoError::Throttled { table: DATA }));
            }
            if round > 0 {
                tokio::time::sleep(backoff).await;
            }
            round += 1;
            let call = async {
                Box::pin(
                    self.client
                        .batch_get_item()
                        .set_request_items(Some(request))
                        .send(),
                )
                .await
                .map_err(|e| self.classify(e))
            };
            let span = xray::dynamodb_span("BatchGetItem", &self.table);
            let output =
                xray::traced(span, dynamo::within(DATA, &self.timeouts, budget, call)).await?;
            let mut responses = output.responses.unwrap_or_default();
            for item in responses.remove(&self.table).unwrap_or_default() {
                let pk = item.get("PK").and_then(|pk| pk.as_s().ok());
                if let Some(student_id) = pk.and_then(|pk| pk.strip_prefix("STUDENT#")) {
                    profiles.insert(student_id.to_owned(), decode(student_id, &item));
                }
            }
            pending = output.unprocessed_keys;
        }
        Ok(())
    }
}

fn decode(
    student_id: &str,
    item: &HashMap<String, AttributeValue>,
) -> Result<Profile, ProfileError> {
    let malformed = |reason: &str| ProfileError::Malformed {
        reason: reason.to_owned(),
    };
    let number = |name: &str| -> Result<f64, ProfileError> {
        match item.get(name) {
            Some(AttributeValue::N(text)) => text
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite())
                .ok_or_else(|| malformed(&format!("{name} is not a finite number"))),
            Some(_) => Err(malformed(&format!("{name} is not a number attribute"))),
            None => Err(malformed(&format!("{name} is missing"))),
        }
    };
    let grade = number("grade")?;
    if grade.fract() != 0.0 || !(0.0..=12.0).contains(&grade) {
        return Err(malformed("grade is not a whole number within 0..12"));
    }
    let reading_level = number("readingLevel")?;
    if !(0.0..=13.0).contains(&reading_level) {
        return Err(malformed("readingLevel is not within 0..13"));
    }
    let school_id = match item.get("schoolId") {
        None => None,
        Some(AttributeValue::S(school)) => Some(school.clone()),
        Some(_) => return Err(malformed("schoolId is not a string attribute")),
    };
    Ok(Profile {
        student_id: student_id.to_owned(),
        grade: grade as u8,
        reading_level,
        school_id,
    })
}
