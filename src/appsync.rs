//! The AppSync edge: direct Lambda resolver events in, field values or
//! AppSync-shaped errors out. The only module that knows the event format.
//!
//! The contract, from the AppSync developer guide ("Direct Lambda resolvers"
//! in <https://docs.aws.amazon.com/appsync/latest/devguide/resolver-mapping-template-reference-lambda.html>
//! and "Returning individual errors" in
//! <https://docs.aws.amazon.com/appsync/latest/devguide/tutorial-lambda-resolvers.html>):
//! * single invoke: the event is one object; the function returns the
//!   field's value, or fails, and AppSync shows the Lambda error's
//!   `errorType` and `errorMessage` to the client;
//! * batch invoke (batching on, `MaxBatchSize` > 1): the event is a list of
//!   those objects; the function returns a list of the same length and
//!   order in which every element is `{"data": ..., "errorMessage": ...,
//!   "errorType": ...}`, so one item can fail without failing the others.

use std::time::Instant;

use assessments_common::budget::Budget;
use aws_lambda_events::appsync::AppSyncDirectResolverEvent;
use serde_json::{Value, json};

use crate::deps::Deps;
use crate::report::InvocationReport;
use crate::resolver::{AssessmentPage, ErrorType, GetAssessmentsArgs, ResolveError, parse_args};

/// The field this function resolves.
pub const PARENT_TYPE: &str = "Query";
pub const FIELD_NAME: &str = "getAssessments";
/// AppSync's largest `MaxBatchSize`; a bigger list is not an AppSync event.
pub const MAX_BATCH: usize = 2000;
/// Lambda's limit on a synchronous response, in bytes ("Invocation payload
/// (request and response): 6 MB each for synchronous", Lambda quotas): a
/// response over it fails the whole invocation with no typed error.
pub const RESPONSE_LIMIT_BYTES: usize = 6 * 1024 * 1024;

/// A failed single invoke, as Lambda reports it to AppSync.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppSyncError {
    pub error_type: ErrorType,
    pub message: String,
}

impl std::fmt::Display for AppSyncError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.error_type, self.message)
    }
}

impl std::error::Error for AppSyncError {}

impl From<&ResolveError> for AppSyncError {
    fn from(e: &ResolveError) -> Self {
        AppSyncError {
            error_type: e.error_type(),
            message: e.client_message(),
        }
    }
}

impl From<AppSyncError> for lambda_runtime::Diagnostic {
    fn from(e: AppSyncError) -> Self {
        lambda_runtime::Diagnostic {
            error_type: e.error_type.as_str().to_owned(),
            error_message: e.message,
        }
    }
}

/// Turns one event object into validated arguments (the fuzzer drives this directly).
pub fn parse_event(event: Value) -> Result<GetAssessmentsArgs, ResolveError> {
    let event: AppSyncDirectResolverEvent<Value> =
        serde_json::from_value(event).map_err(|e| ResolveError::InvalidEvent(e.to_string()))?;
    if event.info.parent_type_name != PARENT_TYPE || event.info.field_name != FIELD_NAME {
        let shorten = |s: &str| s.chars().take(64).collect::<String>();
        return Err(ResolveError::UnsupportedField {
            parent: shorten(&event.info.parent_type_name),
            field: shorten(&event.info.field_name),
        });
    }
    parse_args(event.arguments.as_ref())
}

/// Handles one Lambda invocation: a single event or a batch, every item's
/// waits bounded by `budget` (see [`Deps::invocation_budget`]).
pub async fn handle(
    deps: &Deps,
    payload: Value,
    request_id: &str,
    budget: Budget,
) -> Result<Value, AppSyncError> {
    handle_with_report(deps, payload, request_id, budget)
        .await
        .0
}

/// `handle`, also returning what the invocation reported (for benchmarks).
pub async fn handle_with_report(
    deps: &Deps,
    payload: Value,
    request_id: &str,
    budget: Budget,
) -> (Result<Value, AppSyncError>, InvocationReport) {
    let started = Instant::now();
    let now = chrono::Utc::now();
    let (batch, events) = match payload {
        Value::Array(events) if events.len() > MAX_BATCH => {
            let e = ResolveError::InvalidEvent(format!(
                "a batch of {} exceeds AppSync's {MAX_BATCH}",
                events.len()
            ));
            let report = InvocationReport::rejected(request_id, started.elapsed(), e.error_type());
            deps.record(&report);
            return (Err(AppSyncError::from(&e)), report);
        }
        Value::Array(events) => (true, events),
        event => (false, vec![event]),
    };
    let items: Vec<_> = events.into_iter().map(parse_event).collect();
    let (mut results, timings) = deps.resolver.get_assessments(items, now, &budget).await;
    if batch {
        fit_batch(&mut results);
    }

    let mut report =
        InvocationReport::new(request_id, batch, results.len(), started.elapsed(), timings);
    for result in &results {
        if let Err(e) = result {
            report.count_error(e.error_type());
            tracing::warn!(request_id, error_type = %e.error_type(), error = %e, "getAssessments item failed");
        }
    }
    deps.record(&report);

    let response = if batch {
        let list = results
            .into_iter()
            .map(|result| match result {
                Ok(page) => json!({ "data": page }),
                Err(e) => json!({
                    "data": null,
                    "errorMessage": e.client_message(),
                    "errorType": e.error_type().as_str(),
                }),
            })
            .collect();
        Ok(Value::Array(list))
    } else {
        match results.into_iter().next() {
            Some(Ok(page)) if json_len(&page) > RESPONSE_LIMIT_BYTES => {
                Err(AppSyncError::from(&ResolveError::ResponseTooLarge {
                    limit_bytes: RESPONSE_LIMIT_BYTES,
                    batch: false,
                }))
            }
            Some(Ok(page)) => serde_json::to_value(page).map_err(|e| AppSyncError {
                error_type: ErrorType::InternalError,
                message: format!("response serialization failed: {e}"),
            }),
            Some(Err(e)) => Err(AppSyncError::from(&e)),
            None => Err(AppSyncError {
                error_type: ErrorType::InternalError,
                message: "no result".to_owned(),
            }),
        }
    };
    (response, report)
}

/// The length of `value` as JSON, without building it.
fn json_len(value: &impl serde::Serialize) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0 += bytes.len();
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    // Writing to a counter cannot fail, and our pages always serialize.
    let _ = serde_json::to_writer(&mut count, value);
    count.0
}

/// `{"data":` + page + `}`, or the error element (its strings at their
/// longest JSON-escaped): an element's bytes in the batch response.
fn element_len(result: &Result<AssessmentPage, ResolveError>) -> usize {
    match result {
        Ok(page) => 9 + json_len(page),
        Err(e) => 48 + json_len(&e.client_message()) + json_len(&e.error_type().as_str()),
    }
}

/// Cuts a batch's response to Lambda's limit: items are replaced, from the
/// end, by `ResponseTooLarge` errors until the whole list fits.
fn fit_batch(results: &mut [Result<AssessmentPage, ResolveError>]) {
    let mut total =
        2 + results.len().saturating_sub(1) + results.iter().map(element_len).sum::<usize>();
    for result in results.iter_mut().rev() {
        if total <= RESPONSE_LIMIT_BYTES {
            break;
        }
        if result.is_ok() {
            let cut = Err(ResolveError::ResponseTooLarge {
                limit_bytes: RESPONSE_LIMIT_BYTES,
                batch: true,
            });
            total = total - element_len(result) + element_len(&cut);
            *result = cut;
        }
    }
}
