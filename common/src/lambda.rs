//! The Lambda entry skeleton every function of the workspace runs, so that
//! each binary's `main` is one line ([`run`]): JSON logs and X-Ray set up,
//! the runtime chosen, the dependencies built once ([`Function::init`]), an
//! init failure reported to Lambda, every invocation handled in its X-Ray
//! span, and SIGTERM answered.
//!
//! Init failures: a configuration or dependency error before the first
//! invocation is posted to the Runtime API's `/runtime/init/error` with its
//! own `errorType` and an id, so Lambda (and whoever invokes the function)
//! sees "InitError.Configuration" instead of only "Runtime exited with
//! error: exit status 1", and the function's log has the reason under that
//! id ([`report_init_failure`]). `lambda_runtime` posts init errors only for
//! its own SnapStart hooks, so the request is made here, with its Runtime
//! API client.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use lambda_runtime::{Diagnostic, LambdaEvent, service_fn};
use lambda_runtime_api_client::body::Body;
use lambda_runtime_api_client::{Client, build_request};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::Instrument;

/// How long the init failure's report may take: Lambda's init phase is
/// bounded anyway, and the process exits right after.
const REPORT_TIMEOUT: Duration = Duration::from_secs(2);

/// An init failure: its stable `errorType` and a message that names what is
/// wrong (never a secret's value).
pub trait InitFailure: std::fmt::Display {
    /// E.g. `InitError.Configuration`.
    fn error_type(&self) -> &'static str;
}

/// A Lambda function: its dependencies, built once per execution
/// environment, and what one invocation does with them.
pub trait Function: Send + Sync + Sized + 'static {
    /// The invocation's payload, as the runtime deserializes it.
    type Event: DeserializeOwned + Send + 'static;
    /// What an invocation answers.
    type Response: Serialize + Send + 'static;
    type InitError: InitFailure + std::error::Error + Send + Sync + 'static;
    /// Whether SIGTERM runs [`Function::shutdown`] (which registers the
    /// runtime's no-op extension, as Lambda requires for the signal).
    const GRACEFUL_SHUTDOWN: bool = false;

    /// Reads the settings and builds the dependencies.
    fn init() -> impl Future<Output = Result<Self, Self::InitError>> + Send;

    /// One invocation.
    fn handle(
        self: Arc<Self>,
        event: LambdaEvent<Self::Event>,
    ) -> impl Future<Output = Result<Self::Response, Diagnostic>> + Send;

    /// At SIGTERM, when [`Function::GRACEFUL_SHUTDOWN`]: release what must
    /// be released (within Lambda's 500 ms).
    fn shutdown(self: Arc<Self>) -> impl Future<Output = ()> + Send {
        async {}
    }
}

/// Whether invocations run at once: `AWS_LAMBDA_MAX_CONCURRENCY` > 1
/// (Lambda managed instances); classic Lambda sends one at a time.
pub fn concurrent_invocations() -> bool {
    std::env::var("AWS_LAMBDA_MAX_CONCURRENCY")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .is_some_and(|n| n > 1)
}

/// Runs `F` as a Lambda function until the environment shuts down.
///
/// Invocations one at a time (classic Lambda): one thread runs everything,
/// with no wake-ups across threads (futex calls, context switches). Managed
/// instances (`AWS_LAMBDA_MAX_CONCURRENCY` > 1) run that many invocations at
/// once over the same dependencies: a thread per core. Blocking work has
/// tokio's blocking pool either way.
pub fn run<F: Function>() -> Result<(), lambda_runtime::Error> {
    let runtime = if concurrent_invocations() {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    };
    runtime.block_on(serve::<F>())
}

/// Where Lambda's extensions (from layers) are.
const EXTENSIONS_DIR: &str = "/opt/extensions";

/// Says at init which Lambda extensions run beside the function: Lambda
/// gives them the function's environment, its credentials included, so they
/// are part of what the function trusts (docs/security.md, N8); no sandbox
/// of the function's applies to them.
fn note_extensions(directory: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(directory) else {
        return;
    };
    let mut names: Vec<String> = entries
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    if names.is_empty() {
        return;
    }
    names.sort();
    tracing::warn!(
        extensions = %names.join(","),
        "Lambda extensions run beside this function with its environment and credentials: only deploy extensions you trust"
    );
}

/// A boxed invocation: the handlers' futures are large (every dependency's
/// future is in them), and lambda_runtime's layers move them by value
/// several times.
type Invocation<R> = Pin<Box<dyn Future<Output = Result<R, Diagnostic>> + Send>>;

async fn serve<F: Function>() -> Result<(), lambda_runtime::Error> {
    crate::observability::init_tracing();
    note_extensions(std::path::Path::new(EXTENSIONS_DIR));
    // An init failure is logged and reported to Lambda with its errorType.
    let function = match F::init().await {
        Ok(function) => Arc::new(function),
        Err(error) => {
            report_init_failure(&error).await;
            return Err(error.into());
        }
    };
    if F::GRACEFUL_SHUTDOWN {
        let on_shutdown = Arc::clone(&function);
        lambda_runtime::spawn_graceful_shutdown_handler(move || on_shutdown.shutdown()).await;
    }
    lambda_runtime::run_concurrent(service_fn(move |event: LambdaEvent<F::Event>| {
        // The invocation's X-Ray trace: the caller's, continued in Lambda's segment.
        let span = crate::xray::invocation_span(event.context.xray_trace_id.as_deref());
        let invocation: Invocation<F::Response> =
            Box::pin(Arc::clone(&function).handle(event).instrument(span));
        invocation
    }))
    .await
}

/// Logs `error` and, under a Lambda Runtime API (`AWS_LAMBDA_RUNTIME_API`),
/// posts it to `/runtime/init/error`. The caller exits afterwards.
///
/// What is posted goes back to whoever invokes the function, so it is the
/// `errorType` and a fixed message with an id; the detail (which may name a
/// secret's ARN, an account or a role from an access-denied message) stays
/// in the function's own log, under that id.
pub async fn report_init_failure(error: &dyn InitFailure) {
    let error_type = error.error_type();
    let id = init_failure_id();
    tracing::error!(error_type, init_failure_id = %id, error = %error, "init failed");
    if std::env::var_os("AWS_LAMBDA_RUNTIME_API").is_none() {
        return;
    }
    let message = format!(
        "the function could not start ({error_type}); its log has the reason under init_failure_id {id}"
    );
    match tokio::time::timeout(REPORT_TIMEOUT, post(error_type, &message)).await {
        Ok(Ok(())) => {}
        Ok(Err(reason)) => eprintln!("could not report the init error to Lambda: {reason}"),
        Err(_) => eprintln!(
            "could not report the init error to Lambda within {}ms",
            REPORT_TIMEOUT.as_millis()
        ),
    }
}

/// 16 hex digits, different for each process: std's hasher keys are random
/// per process (no more than a correlation id is needed).
fn init_failure_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    format!("{:016x}", hasher.finish())
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
