//! A local Lambda Runtime API (and the Extensions API's registration), so a
//! function binary runs as a process exactly as in Lambda: it polls
//! `/runtime/invocation/next`, posts its response or error, and registers
//! the no-op extension `lambda_runtime` uses for graceful shutdown.
//!
//! Routes (paths as in the Lambda documentation):
//! `GET /2018-06-01/runtime/invocation/next`,
//! `POST /2018-06-01/runtime/invocation/{id}/response` and `.../error`,
//! `POST /2018-06-01/runtime/init/error`, `POST /2020-01-01/extension/register`,
//! `GET /2020-01-01/extension/event/next` (never answers: no events).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::Value;
use tokio::sync::{Mutex as AsyncMutex, mpsc, oneshot, watch};

/// How an invocation ended.
#[derive(Debug, Clone, PartialEq)]
pub enum InvocationResult {
    Response(Value),
    /// The Lambda error document: `{"errorType": ..., "errorMessage": ...}`.
    Error(Value),
}

/// An invocation waiting for `/next`: its id, its timeout (the deadline is
/// that long after `/next` hands it out, as Lambda counts it), its X-Ray
/// trace header, its event.
type Pending = (String, Duration, String, Value);

/// The trace header of an invocation X-Ray does not sample (what Lambda sends then).
pub const UNSAMPLED_TRACE: &str = "Root=1-00000000-000000000000000000000000;Sampled=0";

/// Lambda's limit on a synchronous invocation's response (6 MB): a bigger
/// response is refused, as Lambda's Runtime API does.
pub const RESPONSE_LIMIT_BYTES: usize = 6 * 1024 * 1024;

/// The deadline `invoke` gives (AppSync's own limit for a resolver is 30 s).
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(30);

fn epoch_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// An invocation's end: how, and how long the function had it (from `/next`
/// handing it out to its answer: what Lambda bills).
type Answer = (InvocationResult, Option<Duration>);

struct ApiState {
    queue: AsyncMutex<mpsc::Receiver<Pending>>,
    waiting: Mutex<HashMap<String, oneshot::Sender<Answer>>>,
    /// When `/next` handed each invocation out.
    delivered: Mutex<HashMap<String, std::time::Instant>>,
    init_errors: Mutex<Vec<Value>>,
    next_id: AtomicU64,
    /// When the function first asked for an invocation: the end of its init.
    first_poll: std::sync::OnceLock<std::time::Instant>,
}

/// The emulator; stops on drop.
pub struct RuntimeApi {
    addr: SocketAddr,
    state: Arc<ApiState>,
    sender: mpsc::Sender<Pending>,
    stop: watch::Sender<bool>,
}

async fn next(State(state): State<Arc<ApiState>>) -> Response {
    let _ = state.first_poll.set(std::time::Instant::now());
    let Some((id, timeout, trace, payload)) = state.queue.lock().await.recv().await else {
        return StatusCode::GONE.into_response();
    };
    let deadline = epoch_ms() + timeout.as_millis() as u64;
    state
        .delivered
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(id.clone(), std::time::Instant::now());
    let mut response = Json(payload).into_response();
    let headers = response.headers_mut();
    let mut set = |name: &'static str, value: String| {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(name, value);
        }
    };
    set("lambda-runtime-aws-request-id", id);
    set("lambda-runtime-deadline-ms", deadline.to_string());
    set(
        "lambda-runtime-invoked-function-arn",
        "arn:aws:lambda:us-east-1:000000000000:function:local".into(),
    );
    set("lambda-runtime-trace-id", trace);
    response
}

fn complete(state: &ApiState, id: &str, result: InvocationResult) -> StatusCode {
    let delivered = (state.delivered.lock())
        .unwrap_or_else(|p| p.into_inner())
        .remove(id);
    let held = delivered.map(|at| at.elapsed());
    match state
        .waiting
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(id)
    {
        Some(sender) => {
            let _ = sender.send((result, held));
            StatusCode::ACCEPTED
        }
        None => StatusCode::BAD_REQUEST,
    }
}

async fn respond(
    State(state): State<Arc<ApiState>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    if body.len() > RESPONSE_LIMIT_BYTES {
        // What Lambda does: the invocation fails as a whole, with this error.
        let error = serde_json::json!({
            "errorType": "Function.ResponseSizeTooLarge",
            "errorMessage": format!(
                "Response payload size ({} bytes) exceeded maximum allowed payload size ({RESPONSE_LIMIT_BYTES} bytes).",
                body.len()
            ),
        });
        complete(&state, &id, InvocationResult::Error(error.clone()));
        return (StatusCode::PAYLOAD_TOO_LARGE, Json(error)).into_response();
    }
    let value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    complete(&state, &id, InvocationResult::Response(value)).into_response()
}

async fn fail(
    State(state): State<Arc<ApiState>>,
    Path(id): Path<String>,
    body: Bytes,
) -> StatusCode {
    let value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    complete(&state, &id, InvocationResult::Error(value))
}

async fn init_error(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let mut value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    // The header Lambda reads the error type from, beside the body.
    if let Value::Object(document) = &mut value {
        let header = headers
            .get("lambda-runtime-function-error-type")
            .and_then(|v| v.to_str().ok());
        document.insert("errorTypeHeader".to_owned(), serde_json::json!(header));
    }
    state
        .init_errors
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(value);
    StatusCode::ACCEPTED
}

async fn register(_headers: HeaderMap) -> Response {
    let body = serde_json::json!({"functionName": "local", "functionVersion": "$LATEST", "handler": "bootstrap"});
    let mut response = Json(body).into_response();
    response.headers_mut().insert(
        "lambda-extension-identifier",
        HeaderValue::from_static("local-extension-1"),
    );
    response
}

async fn extension_next() -> StatusCode {
    // No events are ever delivered; the extension waits until the process ends.
    std::future::pending::<()>().await;
    StatusCode::OK
}

impl RuntimeApi {
    pub async fn start() -> std::io::Result<RuntimeApi> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (sender, receiver) = mpsc::channel(64);
        let state = Arc::new(ApiState {
            queue: AsyncMutex::new(receiver),
            waiting: Mutex::new(HashMap::new()),
            init_errors: Mutex::new(Vec::new()),
            delivered: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            first_poll: std::sync::OnceLock::new(),
        });
        let app = axum::Router::new()
            .route("/2018-06-01/runtime/invocation/next", get(next))
            .route(
                "/2018-06-01/runtime/invocation/{id}/response",
                post(respond),
            )
            .route("/2018-06-01/runtime/invocation/{id}/error", post(fail))
            .route("/2018-06-01/runtime/init/error", post(init_error))
            // Lambda's limit is enforced in `respond`, with Lambda's answer.
            .layer(axum::extract::DefaultBodyLimit::max(
                2 * RESPONSE_LIMIT_BYTES,
            ))
            .route("/2020-01-01/extension/register", post(register))
            .route("/2020-01-01/extension/event/next", get(extension_next))
            .layer(axum::middleware::from_fn(crate::loopback::refuse_browsers))
            .with_state(Arc::clone(&state));
        let (stop, mut stopped) = watch::channel(false);
        tokio::spawn(async move {
            let shutdown = async move {
                let _ = stopped.changed().await;
            };
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await;
        });
        Ok(RuntimeApi {
            addr,
            state,
            sender,
            stop,
        })
    }

    /// The value of `AWS_LAMBDA_RUNTIME_API` for the function process.
    pub fn address(&self) -> String {
        self.addr.to_string()
    }

    /// Queues one invocation (deadline [`DEFAULT_DEADLINE`] after it is
    /// queued) and waits for the function's answer up to `timeout`.
    pub async fn invoke(
        &self,
        payload: Value,
        timeout: Duration,
    ) -> Result<InvocationResult, String> {
        self.invoke_with_deadline(payload, DEFAULT_DEADLINE, timeout)
            .await
    }

    /// Queues one invocation with `trace_header` as its
    /// `Lambda-Runtime-Trace-Id` (`Root=...;Parent=...;Sampled=1` for a
    /// sampled one) and waits for the answer up to `timeout`.
    pub async fn invoke_traced(
        &self,
        payload: Value,
        trace_header: &str,
        timeout: Duration,
    ) -> Result<InvocationResult, String> {
        self.queue(payload, DEFAULT_DEADLINE, trace_header, timeout)
            .await
            .map(|(result, _)| result)
    }

    /// [`RuntimeApi::invoke`], with how long the function held the
    /// invocation: from `/next` handing it out to its answer (Lambda's billed
    /// duration, before rounding up to the millisecond).
    pub async fn invoke_timed(
        &self,
        payload: Value,
        timeout: Duration,
    ) -> Result<(InvocationResult, Duration), String> {
        let (result, held) = self
            .queue(payload, DEFAULT_DEADLINE, UNSAMPLED_TRACE, timeout)
            .await?;
        Ok((result, held.unwrap_or_default()))
    }

    /// Queues one invocation whose deadline (`Lambda-Runtime-Deadline-Ms`)
    /// is `deadline` after the function receives it, and waits for the
    /// answer up to `timeout`.
    pub async fn invoke_with_deadline(
        &self,
        payload: Value,
        deadline: Duration,
        timeout: Duration,
    ) -> Result<InvocationResult, String> {
        self.queue(payload, deadline, UNSAMPLED_TRACE, timeout)
            .await
            .map(|(result, _)| result)
    }

    async fn queue(
        &self,
        payload: Value,
        deadline: Duration,
        trace_header: &str,
        timeout: Duration,
    ) -> Result<Answer, String> {
        let id = format!(
            "local-{}",
            self.state.next_id.fetch_add(1, Ordering::Relaxed)
        );
        let (done, result) = oneshot::channel();
        self.state
            .waiting
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.clone(), done);
        self.sender
            .send((id, deadline, trace_header.to_owned(), payload))
            .await
            .map_err(|_| "the emulator stopped".to_owned())?;
        match tokio::time::timeout(timeout, result).await {
            Ok(Ok(result)) => Ok(result),
            Ok(Err(_)) => Err("the invocation was dropped".to_owned()),
            Err(_) => Err(format!("no answer within {timeout:?}")),
        }
    }

    /// When the function first polled `/next` (its init was over), if it has.
    pub fn first_poll(&self) -> Option<std::time::Instant> {
        self.state.first_poll.get().copied()
    }

    /// Errors the function reported during init: the body, with the
    /// `Lambda-Runtime-Function-Error-Type` header as `errorTypeHeader`.
    pub fn init_errors(&self) -> Vec<Value> {
        self.state
            .init_errors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl Drop for RuntimeApi {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}
