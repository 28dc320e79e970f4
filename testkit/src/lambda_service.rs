//! Stand-ins for the two AWS control-plane APIs a deployment uses, on one
//! loopback endpoint (`AWS_ENDPOINT_URL_LAMBDA` and `AWS_ENDPOINT_URL_CODEDEPLOY`):
//!
//! * Lambda's `Invoke` (`POST /2015-03-31/functions/{name}/invocations`,
//!   RequestResponse): the function named is a local bootstrap behind its own
//!   [`RuntimeApi`]; a function error is answered as Lambda does, status 200
//!   with `X-Amz-Function-Error: Unhandled` and the error document as the body;
//!   an unknown name is `ResourceNotFoundException`.
//! * CodeDeploy's `PutLifecycleEventHookExecutionStatus` (JSON 1.1, `X-Amz-Target`):
//!   recorded, for a test to read back.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};

use crate::http::LocalServer;
use crate::lambda_api::{InvocationResult, RuntimeApi};

/// One `PutLifecycleEventHookExecutionStatus` call, as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookStatus {
    pub deployment_id: String,
    pub lifecycle_event_hook_execution_id: String,
    pub status: String,
}

#[derive(Default)]
struct Shared {
    functions: Mutex<HashMap<String, Arc<RuntimeApi>>>,
    statuses: Mutex<Vec<HookStatus>>,
    invocations: Mutex<Vec<String>>,
}

/// The running stand-in; stops when dropped.
pub struct LambdaService {
    server: LocalServer,
    shared: Arc<Shared>,
}

/// How long an invocation may take before the stand-in answers an error
/// (Lambda's own limit is the function's timeout).
const INVOKE_TIMEOUT: Duration = Duration::from_secs(60);

fn aws_error(status: StatusCode, kind: &str, message: &str) -> Response {
    (
        status,
        [("x-amzn-ErrorType", kind.to_owned())],
        axum::Json(json!({ "Type": "User", "message": message })),
    )
        .into_response()
}

async fn invoke(
    State(shared): State<Arc<Shared>>,
    Path(name): Path<String>,
    body: Bytes,
) -> Response {
    let api = shared
        .functions
        .lock()
        .ok()
        .and_then(|f| f.get(&name).cloned());
    let Some(api) = api else {
        return aws_error(
            StatusCode::NOT_FOUND,
            "ResourceNotFoundException",
            &format!("Function not found: {name}"),
        );
    };
    if let Ok(mut calls) = shared.invocations.lock() {
        calls.push(name.clone());
    }
    let Ok(payload) = serde_json::from_slice::<Value>(&body) else {
        return aws_error(
            StatusCode::BAD_REQUEST,
            "InvalidRequestContentException",
            "Could not parse request body into json",
        );
    };
    // A bootstrap whose init failed never polls again: Lambda answers its
    // init error (waited for as a condition, not a time).
    let init_failed = async {
        loop {
            if let Some(error) = api.init_errors().into_iter().next() {
                return error;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    let outcome = tokio::select! {
        outcome = api.invoke(payload, INVOKE_TIMEOUT) => outcome,
        error = init_failed => Ok(InvocationResult::Error(error)),
    };
    match outcome {
        Ok(InvocationResult::Response(value)) => {
            (StatusCode::OK, axum::Json(value)).into_response()
        }
        Ok(InvocationResult::Error(error)) => (
            StatusCode::OK,
            [("X-Amz-Function-Error", "Unhandled")],
            axum::Json(error),
        )
            .into_response(),
        // What Lambda answers when the runtime dies or times out.
        Err(reason) => (
            StatusCode::OK,
            [("X-Amz-Function-Error", "Unhandled")],
            axum::Json(json!({"errorType": "Runtime.ExitError", "errorMessage": reason})),
        )
            .into_response(),
    }
}

async fn json_rpc(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let target = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if target != "CodeDeploy_20141006.PutLifecycleEventHookExecutionStatus" {
        return aws_error(
            StatusCode::BAD_REQUEST,
            "UnknownOperationException",
            &format!("not served here: {target}"),
        );
    }
    let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let field = |name: &str| request.get(name).and_then(Value::as_str).map(str::to_owned);
    let (Some(deployment_id), Some(execution_id), Some(status)) = (
        field("deploymentId"),
        field("lifecycleEventHookExecutionId"),
        field("status"),
    ) else {
        return aws_error(
            StatusCode::BAD_REQUEST,
            "ValidationException",
            "deploymentId, lifecycleEventHookExecutionId and status are required",
        );
    };
    if !["Succeeded", "Failed"].contains(&status.as_str()) {
        return aws_error(
            StatusCode::BAD_REQUEST,
            "InvalidLifecycleEventHookExecutionStatusException",
            &format!("a hook reports Succeeded or Failed, not {status}"),
        );
    }
    if let Ok(mut statuses) = shared.statuses.lock() {
        statuses.push(HookStatus {
            deployment_id,
            lifecycle_event_hook_execution_id: execution_id.clone(),
            status,
        });
    }
    (
        StatusCode::OK,
        [("content-type", "application/x-amz-json-1.1")],
        json!({ "lifecycleEventHookExecutionId": execution_id }).to_string(),
    )
        .into_response()
}

impl LambdaService {
    pub async fn start() -> Result<LambdaService, String> {
        let shared = Arc::new(Shared::default());
        let app = Router::new()
            .route("/2015-03-31/functions/{name}/invocations", post(invoke))
            .route("/", post(json_rpc))
            .with_state(Arc::clone(&shared));
        let server = LocalServer::start(app, 0, "lambda-service").await?;
        Ok(LambdaService { server, shared })
    }

    /// The endpoint URL for both APIs.
    pub fn url(&self) -> String {
        format!("http://{}", self.server.addr())
    }

    /// Serves `Invoke` of `name` (a name, a qualified name or an ARN, exactly
    /// as the caller will send it) by the bootstrap behind `api`.
    pub fn register(&self, name: &str, api: Arc<RuntimeApi>) {
        if let Ok(mut functions) = self.shared.functions.lock() {
            functions.insert(name.to_owned(), api);
        }
    }

    /// The statuses reported so far, in order.
    pub fn statuses(&self) -> Vec<HookStatus> {
        self.shared
            .statuses
            .lock()
            .map(|s| s.clone())
            .unwrap_or_default()
    }

    /// The function names invoked so far, in order.
    pub fn invocations(&self) -> Vec<String> {
        self.shared
            .invocations
            .lock()
            .map(|s| s.clone())
            .unwrap_or_default()
    }
}
