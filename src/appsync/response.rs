//! The answer: a single invoke's page or error, or a batch's list of
//! elements, serialized once straight into the response body, and cut to
//! fit Lambda's 6 MB response.

use serde_json::Value;

use crate::resolver::{AssessmentPage, ErrorType, ItemOutcome, ResolveError};

/// Lambda's limit on a synchronous response, in bytes ("Invocation payload
/// (request and response): 6 MB each for synchronous", Lambda quotas): a
/// response over it fails the whole invocation with no typed error.
pub const RESPONSE_LIMIT_BYTES: usize = 6 * 1024 * 1024;

/// What an invocation answers, serialized once, straight into the response
/// body (no `serde_json::Value` in between: building, serializing and
/// dropping one cost a third of an invocation's instructions).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(untagged)]
pub enum Response {
    /// A single invoke: the field's value.
    Page(AssessmentPage),
    /// A batch invoke: one element per event, in order.
    Batch(Vec<BatchElement>),
}

/// One element of a batch response: `{"data": page}`, or `{"data": null,
/// "errorMessage": ..., "errorType": ...}`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(untagged)]
pub enum BatchElement {
    Data {
        data: AssessmentPage,
    },
    Error {
        data: (),
        #[serde(rename = "errorMessage")]
        error_message: String,
        #[serde(rename = "errorType")]
        error_type: &'static str,
    },
}

impl Response {
    /// The response as a JSON value (for callers that inspect it: the
    /// playground's projection, tests); the function itself never builds one.
    pub fn to_value(&self) -> Value {
        // Serializing our own types to a Value cannot fail (string keys, finite numbers).
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

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

impl AppSyncError {
    /// What the client sees of `e`, in the invocation `request_id`.
    pub fn new(e: &ResolveError, request_id: &str) -> Self {
        AppSyncError {
            error_type: e.error_type(),
            message: e.client_message(request_id),
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

/// The invocation's answer: the batch's list (every item its data or its
/// error), or the single item's page or error.
pub fn answer(
    outcomes: Vec<ItemOutcome>,
    batch: bool,
    request_id: &str,
) -> Result<Response, AppSyncError> {
    let mut results = outcomes.into_iter().map(|outcome| outcome.result);
    if batch {
        let list = results
            .map(|result| match result {
                Ok(page) => BatchElement::Data { data: page },
                Err(e) => BatchElement::Error {
                    data: (),
                    error_message: e.client_message(request_id),
                    error_type: e.error_type().as_str(),
                },
            })
            .collect();
        return Ok(Response::Batch(list));
    }
    match results.next() {
        Some(Ok(page))
            if page.json_len_bound() > RESPONSE_LIMIT_BYTES
                && json_len(&page) > RESPONSE_LIMIT_BYTES =>
        {
            let too_large = ResolveError::ResponseTooLarge {
                limit_bytes: RESPONSE_LIMIT_BYTES,
                batch: false,
            };
            Err(AppSyncError::new(&too_large, request_id))
        }
        Some(Ok(page)) => Ok(Response::Page(page)),
        Some(Err(e)) => Err(AppSyncError::new(&e, request_id)),
        None => Err(AppSyncError {
            error_type: ErrorType::InternalError,
            message: "no result".to_owned(),
        }),
    }
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
fn element_len(result: &Result<AssessmentPage, ResolveError>, request_id: &str) -> usize {
    match result {
        Ok(page) => 9 + json_len(page),
        Err(e) => 48 + json_len(&e.client_message(request_id)) + json_len(&e.error_type().as_str()),
    }
}

/// Cuts a batch's response to Lambda's limit: items are replaced, from the
/// end, by `ResponseTooLarge` errors until the whole list fits (their access
/// decisions stand: the item was decided, then left out).
pub fn fit_batch(outcomes: &mut [ItemOutcome], request_id: &str) {
    let mut results: Vec<&mut Result<AssessmentPage, ResolveError>> =
        outcomes.iter_mut().map(|o| &mut o.result).collect();
    let element_len =
        |result: &Result<AssessmentPage, ResolveError>| element_len(result, request_id);
    // Bounded without serializing first: nearly always far under the limit.
    let bound = 2
        + results.len()
        + results
            .iter()
            .map(|result| match &**result {
                Ok(page) => 9 + page.json_len_bound(),
                Err(_) => element_len(result),
            })
            .sum::<usize>();
    if bound <= RESPONSE_LIMIT_BYTES {
        return;
    }
    let mut total =
        2 + results.len().saturating_sub(1) + results.iter().map(|r| element_len(r)).sum::<usize>();
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
            **result = cut;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn responses_serialize_as_appsync_reads_them() {
        let page = AssessmentPage {
            items: Vec::new(),
            next_token: Some("t".to_owned()),
        };
        let batch = Response::Batch(vec![
            BatchElement::Data { data: page.clone() },
            BatchElement::Error {
                data: (),
                error_message: "no".to_owned(),
                error_type: "NotFound",
            },
        ]);
        assert_eq!(
            serde_json::to_string(&batch).expect("serialized"),
            r#"[{"data":{"items":[],"nextToken":"t"}},{"data":null,"errorMessage":"no","errorType":"NotFound"}]"#
        );
        assert_eq!(
            Response::Page(page).to_value(),
            json!({"items": [], "nextToken": "t"})
        );
    }
}
