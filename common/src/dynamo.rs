//! DynamoDB failures, classified once for every table both functions use
//! (Students, Assessments): what the caller can act on, with no request data.

use std::time::Duration;

use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};

use crate::budget::{Budget, Limit};

/// The timeouts the SDK was configured with (see [`crate::aws::AwsSettings`]),
/// so that an error names the one that fired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DynamoTimeouts {
    /// `DYNAMODB_TIMEOUT_MS`: one operation, every attempt included.
    pub operation: Duration,
    /// One attempt: the operation timeout divided by `DYNAMODB_MAX_ATTEMPTS`.
    pub attempt: Duration,
    /// Opening a connection to the endpoint.
    pub connect: Duration,
}

/// A DynamoDB call that failed after the SDK's retries. `table` names the
/// data ("student profiles", "assessments"), not the table's deployed name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DynamoError {
    #[error("DynamoDB ({table}) did not answer within {limit}")]
    Timeout { table: &'static str, limit: Limit },
    #[error("could not connect to DynamoDB ({table}) within {}ms (the connect timeout)", after.as_millis())]
    ConnectTimeout {
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
        matches!(
            self,
            DynamoError::Timeout { .. } | DynamoError::ConnectTimeout { .. }
        )
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

/// Whether the SDK's timeout error is its per-attempt one (its message says
/// "operation attempt timeout"); otherwise it is the whole operation's.
fn is_attempt_timeout(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = error.source();
    while let Some(e) = cause {
        if e.to_string().contains("attempt timeout") {
            return true;
        }
        cause = e.source();
    }
    false
}

/// Classifies an SDK error, naming the timeout that fired.
pub fn classify<E, R>(
    table: &'static str,
    timeouts: &DynamoTimeouts,
    error: &SdkError<E, R>,
) -> DynamoError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug + 'static,
{
    match error {
        SdkError::TimeoutError(_) if is_attempt_timeout(error) => DynamoError::Timeout {
            table,
            limit: Limit::Own {
                after: timeouts.attempt,
                setting: "DYNAMODB_TIMEOUT_MS / DYNAMODB_MAX_ATTEMPTS, on every attempt",
            },
        },
        SdkError::TimeoutError(_) => DynamoError::Timeout {
            table,
            limit: Limit::Own {
                after: timeouts.operation,
                setting: "DYNAMODB_TIMEOUT_MS",
            },
        },
        SdkError::ServiceError(service) if is_throttling(service.err().code()) => {
            DynamoError::Throttled { table }
        }
        SdkError::ServiceError(service) => DynamoError::Unavailable {
            table,
            reason: service.err().code().unwrap_or("service error").to_owned(),
        },
        // The HTTP client's timeouts: only the connect timeout is set.
        SdkError::DispatchFailure(failure) if failure.is_timeout() => DynamoError::ConnectTimeout {
            table,
            after: timeouts.connect,
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

/// Runs a DynamoDB call within `budget`: when less is left than the
/// operation timeout, the invocation's deadline ends it, and says so.
pub async fn within<T>(
    table: &'static str,
    timeouts: &DynamoTimeouts,
    budget: &Budget,
    call: impl Future<Output = Result<T, DynamoError>>,
) -> Result<T, DynamoError> {
    let bound = budget.bound(timeouts.operation, "DYNAMODB_TIMEOUT_MS");
    if !bound.is_deadline() {
        // The SDK's own operation timeout comes first, and `classify` names it.
        return call.await;
    }
    bound
        .run(call)
        .await
        .unwrap_or_else(|limit| Err(DynamoError::Timeout { table, limit }))
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
