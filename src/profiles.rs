//! Student profiles in DynamoDB: the Students table, item key
//! `PK = STUDENT#{id}`, `SK = PROFILE`.
//!
//! One client, built at init and shared. Each call is bounded by the SDK's
//! operation timeout and retried with backoff on throttling by the SDK's
//! standard retry strategy (configured in [`crate::aws`]); `BatchGetItem`'s
//! `UnprocessedKeys` are retried here, with backoff, a bounded number of times.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes};

use crate::dynamo::{self, DynamoError};

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
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum ProfileError {
    #[error(transparent)]
    Dynamo(#[from] DynamoError),
    #[error("the profile of student {student_id} is malformed: {reason}")]
    Malformed { student_id: String, reason: String },
}

/// How the errors name this data.
const DATA: &str = "student profiles";

/// The Students table.
#[derive(Debug, Clone)]
pub struct ProfileStore {
    client: Client,
    table: String,
    timeout: Duration,
}

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
    /// `timeout` is the SDK's operation timeout, reported in errors.
    pub fn new(client: Client, table: impl Into<String>, timeout: Duration) -> Self {
        ProfileStore {
            client,
            table: table.into(),
            timeout,
        }
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    fn classify<E, R>(&self, error: SdkError<E, R>) -> ProfileError
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug,
    {
        ProfileError::Dynamo(dynamo::classify(DATA, self.timeout, &error))
    }

    /// One profile; `None` when the student has none.
    pub async fn get(&self, student_id: &str) -> Result<Option<Profile>, ProfileError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key(student_id)))
            .projection_expression("PK, grade, readingLevel")
            .send()
            .await
            .map_err(|e| self.classify(e))?;
        output
            .item
            .map(|item| decode(student_id, &item))
            .transpose()
    }

    /// Profiles of several students, each read once (BatchGetItem in chunks
    /// of 100). Students without a profile are absent from the map.
    pub async fn get_many(
        &self,
        student_ids: &[&str],
    ) -> Result<HashMap<String, Profile>, ProfileError> {
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
            let keys = KeysAndAttributes::builder()
                .set_keys(Some(chunk.iter().map(|id| key(id)).collect()))
                .projection_expression("PK, grade, readingLevel")
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
                if round == UNPROCESSED_ROUNDS {
                    return Err(ProfileError::Dynamo(DynamoError::Throttled { table: DATA }));
                }
                if round > 0 {
                    // Exponential backoff before each retry: 20, 40, 80, 160 ms.
                    tokio::time::sleep(Duration::from_millis(10 << round)).await;
                }
                round += 1;
                let output = self
                    .client
                    .batch_get_item()
                    .set_request_items(Some(request))
                    .send()
                    .await
                    .map_err(|e| self.classify(e))?;
                for item in output
                    .responses
                    .unwrap_or_default()
                    .remove(&self.table)
                    .unwrap_or_default()
                {
                    let Some(AttributeValue::S(pk)) = item.get("PK") else {
                        continue;
                    };
                    let Some(student_id) = pk.strip_prefix("STUDENT#") else {
                        continue;
                    };
                    let profile = decode(student_id, &item)?;
                    profiles.insert(profile.student_id.clone(), profile);
                }
                pending = output.unprocessed_keys;
            }
        }
        Ok(profiles)
    }
}

fn decode(
    student_id: &str,
    item: &HashMap<String, AttributeValue>,
) -> Result<Profile, ProfileError> {
    let malformed = |reason: &str| ProfileError::Malformed {
        student_id: student_id.to_owned(),
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
    Ok(Profile {
        student_id: student_id.to_owned(),
        grade: grade as u8,
        reading_level,
    })
}
