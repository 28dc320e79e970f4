//! Init failures reported to Lambda: a configuration or dependency error
//! before the first invocation is posted to the Runtime API's
//! `/runtime/init/error` with its own `errorType`, so Lambda (and whoever
//! invokes the function) sees "InitError.Configuration: STUDENTS_TABLE is
//! required..." instead of only "Runtime exited with error: exit status 1".
//! `lambda_runtime` posts init errors only for its own SnapStart hooks, so
//! the request is made here, with its Runtime API client.

use std::time::Duration;

use lambda_runtime_api_client::body::Body;
use lambda_runtime_api_client::{Client, build_request};

/// How long the report may take: Lambda's init phase is bounded anyway, and
/// the process exits right after.
const REPORT_TIMEOUT: Duration = Duration::from_secs(2);

/// An init failure: its stable `errorType` and a message that names what is
/// wrong (never a secret's value).
pub trait InitFailure: std::fmt::Display {
    /// E.g. `InitError.Configuration`.
    fn error_type(&self) -> &'static str;
}

/// Logs `error` and, under a Lambda Runtime API (`AWS_LAMBDA_RUNTIME_API`),
/// posts it to `/runtime/init/error`. The caller exits afterwards.
pub async fn report_init_failure(error: &dyn InitFailure) {
    let error_type = error.error_type();
    let message = error.to_string();
    tracing::error!(error_type, error = %message, "init failed");
    if std::env::var_os("AWS_LAMBDA_RUNTIME_API").is_none() {
        return;
    }
    match tokio::time::timeout(REPORT_TIMEOUT, post(error_type, &message)).await {
        Ok(Ok(())) => {}
        Ok(Err(reason)) => eprintln!("could not report the init error to Lambda: {reason}"),
        Err(_) => eprintln!(
            "could not report the init error to Lambda within {}ms",
            REPORT_TIMEOUT.as_millis()
        ),
    }
}

async fn post(error_type: &str, message: &str) -> Result<(), String> {
    let client = Client::builder().build().map_err(|e| e.to_string())?;
    let body = serde_json::json!({"errorType": error_type, "errorMessage": message}).to_string();
    let request = build_request()
        .method("POST")
        .uri("/2018-06-01/runtime/init/error")
        .header("lambda-runtime-function-error-type", error_type)
        .header("content-type", "application/json")
        .body(Body::from(body))
        .map_err(|e| e.to_string())?;
    let response = client.call(request).await.map_err(|e| e.to_string())?;
    if response.status().is_success() {
        Ok(())
    } else {
        Err(format!("the Runtime API answered {}", response.status()))
    }
}
