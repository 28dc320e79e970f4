//! DynamoDB failures, classified once for every table both functions use
//! (Students, Assessments): what the caller can act on, with no request data.

use std::time::Duration;

use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};

/// A DynamoDB call that failed after the SDK's retries. `table` names the
/// data ("student profiles", "assessments"), not the table's deployed name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DynamoError {
    #[error("DynamoDB ({table}) did not answer within {}ms", after.as_millis())]
    Timeout {
        table: &'static str,
        after: Duration,
    },
    #[error("DynamoDB ({table}) kept throttling requests after retries")]
    Throttled { table: &'static str },
    #[error("DynamoDB ({table}) is unavailable: {reason}")]
    Unavailable { table: &'static str, reason: String },
}

impl DynamoError {
    pub fn is_timeout(&self) -> bool {
        matches!(self, DynamoError::Timeout { .. })
    }
}

fn is_throttling(code: Option<&str>) -> bool {
    matches!(
        code,
        Some(
            "ProvisionedThroughputExceededException"
                | "ThrottlingException"
                | "RequestLimitExceeded"
        )
    )
}

/// Classifies an SDK error. `timeout` is the operation timeout the SDK was
/// configured with, reported in the message.
pub fn classify<E, R>(table: &'static str, timeout: Duration, error: &SdkError<E, R>) -> DynamoError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    match error {
        SdkError::TimeoutError(_) => DynamoError::Timeout {
            table,
            after: timeout,
        },
        SdkError::ServiceError(service) if is_throttling(service.err().code()) => {
            DynamoError::Throttled { table }
        }
        SdkError::ServiceError(service) => DynamoError::Unavailable {
            table,
            reason: service.err().code().unwrap_or("service error").to_owned(),
        },
        SdkError::DispatchFailure(failure) if failure.is_timeout() => DynamoError::Timeout {
            table,
            after: timeout,
        },
        SdkError::DispatchFailure(_) => DynamoError::Unavailable {
            table,
            reason: "could not reach the endpoint".to_owned(),
        },
        _ => DynamoError::Unavailable {
            table,
            reason: "unexpected response".to_owned(),
        },
    }
}

/// The service's error code, when the call reached the service.
pub fn service_code<E, R>(error: &SdkError<E, R>) -> Option<&str>
where
    E: ProvideErrorMetadata,
{
    match error {
        SdkError::ServiceError(service) => service.err().code(),
        _ => None,
    }
}
