//! The playground's HTTP server: `GET /` (the query console: GraphiQL, the
//! identity chooser and the live panel; `/basic` without npm packages),
//! `GET /assets/{name}`, `POST /graphql`, `GET /stats`, `GET /schema.graphql`,
//! and `POST /sqs` (an SQS event through the assessment processor, as Lambda
//! would deliver it). It answers only requests for a loopback host, and no
//! POST from another origin (a web page elsewhere cannot drive it).

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::{Html, IntoResponse};
use axum::routing::{get, post};
use serde_json::{Value, json};

use crate::gateway::{Gateway, GraphQLRequest};
use crate::stack::LocalStack;
use crate::tally::ProcessorTally;

/// The basic console: no npm packages, everything inline.
const BASIC_CONSOLE_HTML: &str = include_str!("../static/console.html");

pub struct App {
    pub gateway: Gateway,
    pub stack: LocalStack,
    pub schema_sdl: String,
    /// The processor's invocations through `/sqs`, from their reports.
    pub processor: ProcessorTally,
}

pub fn router(app: Arc<App>) -> axum::Router {
    axum::Router::new()
        .route("/", get(console))
        .route("/basic", get(basic_console))
        .route("/assets/{name}", get(asset))
        .route("/graphql", post(graphql))
        .route("/stats", get(stats))
        .route("/schema.graphql", get(schema))
        .route("/sqs", post(sqs))
        .layer(axum::middleware::from_fn(same_origin_only))
        .with_state(app)
}

/// Refuses what a web page on another site could make a browser send: a
/// request whose `Host` is not this machine's loopback name (DNS rebinding),
/// or a POST whose `Origin` is not this server. Requests without `Origin`
/// (curl, the tests, the console's own fetches in some browsers) pass.
async fn same_origin_only(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let headers = request.headers();
    let text = |name| headers.get(name).and_then(|v| v.to_str().ok());
    let host = text(header::HOST).unwrap_or("");
    let local_host = testkit::loopback::is_loopback_host(host);
    let cross_site = request.method() == axum::http::Method::POST
        && text(header::ORIGIN).is_some_and(|origin| origin != format!("http://{host}"));
    if !local_host || cross_site {
        let message = if local_host {
            "cross-site request refused: the Origin is not this playground"
        } else {
            "request refused: the playground answers only on localhost (Host header)"
        };
        return (axum::http::StatusCode::FORBIDDEN, message).into_response();
    }
    next.run(request).await
}

/// GraphiQL when its npm packages are installed, the basic console otherwise.
async fn console(State(app): State<Arc<App>>) -> Html<String> {
    if crate::console::installed() {
        return Html(crate::console::page());
    }
    Html(basic_page(
        &app,
        " &middot; the full editor needs <code>npm ci --prefix devstack/console</code>",
    ))
}

async fn basic_console(State(app): State<Arc<App>>) -> Html<String> {
    Html(basic_page(&app, ""))
}

async fn asset(axum::extract::Path(name): axum::extract::Path<String>) -> axum::response::Response {
    match crate::console::asset(&name) {
        Some((content_type, bytes)) => {
            ([(header::CONTENT_TYPE, content_type)], bytes).into_response()
        }
        None => (axum::http::StatusCode::NOT_FOUND, "no such asset").into_response(),
    }
}

fn basic_page(app: &App, notice: &str) -> String {
    let fields: Vec<String> = app
        .gateway
        .query_fields()
        .iter()
        .map(|f| format!("<li><code>{}</code></li>", escape(f)))
        .collect();
    BASIC_CONSOLE_HTML
        .replace("{{FIELDS}}", &fields.join("\n"))
        .replace("{{SCHEMA}}", &escape(&app.schema_sdl))
        .replace("{{NOTICE}}", notice)
}

async fn graphql(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Json<Value> {
    let request: GraphQLRequest = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(e) => {
            return Json(
                json!({"data": null, "errors": [{"message": format!("the body is not a GraphQL request: {e}")}]}),
            );
        }
    };
    let identity = match identity(&headers) {
        Ok(identity) => identity,
        Err(message) => return Json(json!({"errors": [{"message": message}]})),
    };
    let headers: HashMap<String, String> = headers
        .iter()
        .filter_map(|(k, v)| {
            v.to_str()
                .ok()
                .map(|v| (k.as_str().to_owned(), v.to_owned()))
        })
        .collect();
    Json(app.gateway.execute(request, headers, identity).await)
}

/// The header that says who the caller is: a persona of
/// [`testkit::appsync::identity::personas`] or an identity in JSON as AppSync
/// would send it. Without it the caller is an API key (`null` identity).
pub const IDENTITY_HEADER: &str = "x-playground-identity";

fn identity(headers: &HeaderMap) -> Result<Value, String> {
    let Some(value) = headers.get(IDENTITY_HEADER) else {
        return Ok(Value::Null);
    };
    let text = value
        .to_str()
        .map_err(|_| format!("{IDENTITY_HEADER}: not text"))?
        .trim();
    if text.starts_with('{') {
        return serde_json::from_str(text).map_err(|e| format!("{IDENTITY_HEADER}: {e}"));
    }
    testkit::appsync::identity::persona(text).ok_or_else(|| {
        let names: Vec<&str> = testkit::appsync::identity::personas()
            .into_iter()
            .map(|(name, _, _)| name)
            .collect();
        format!(
            "{IDENTITY_HEADER}: no identity {text:?}; one of {} or an identity in JSON",
            names.join(", ")
        )
    })
}

/// The processor's answer to Lambda (`batchItemFailures`), plus each
/// record's outcome so the caller can see what happened.
async fn sqs(State(app): State<Arc<App>>, body: axum::body::Bytes) -> impl IntoResponse {
    use assessment_processor::RecordOutcome;
    use axum::http::StatusCode;
    let event: aws_lambda_events::sqs::SqsEvent = match serde_json::from_slice(&body) {
        Ok(event) => event,
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                Json(json!({"message": format!("the body is not an SQS event: {e}")})),
            );
        }
    };
    let ids: Vec<Option<String>> = event.records.iter().map(|r| r.message_id.clone()).collect();
    let deadline = assessments_common::budget::Budget::after(std::time::Duration::from_secs(60));
    let handled = assessment_processor::sqs::handle_with_report(
        &app.stack.processor,
        event,
        "playground",
        deadline,
    )
    .await;
    app.processor.add(&handled);
    let records: Vec<Value> = ids
        .iter()
        .zip(&handled.records)
        .map(|(id, record)| {
            let outcome = match &record.outcome {
                RecordOutcome::Scored { score } => json!({"outcome": "scored", "score": score}),
                RecordOutcome::AlreadyScored => json!({"outcome": "alreadyScored"}),
                RecordOutcome::Failed(error) => {
                    json!({"outcome": "failed", "kind": error.kind(), "message": error.to_string()})
                }
            };
            json!({"messageId": id, "historyItems": record.history_items, "result": outcome,
                   "deadLettered": record.dead_lettered})
        })
        .collect();
    (
        StatusCode::OK,
        Json(json!({
            "batchItemFailures": handled.response.batch_item_failures,
            "records": records,
        })),
    )
}

async fn stats(State(app): State<Arc<App>>) -> Json<Value> {
    Json(stats_json(&app))
}

/// The figures `/stats` serves: the functions' reports added up (what their
/// log lines say), and the stand-ins' own counts.
pub fn stats_json(app: &App) -> Value {
    let (stack, resolver) = (&app.stack, app.gateway.tally());
    let resources = resolver.last_resources();
    let legacy = resources.map(|r| r.legacy);
    let native = legacy.and_then(|l| l.native);
    let pool = resources.map(|r| r.pool).unwrap_or_default();
    json!({
        "invocations": resolver.invocations(),
        // Where the last invocation through the gateway spent its time.
        "lastInvocation": app.gateway.last_invocation(),
        // With --trace: the last invocation's X-Ray subsegments as a timeline.
        "lastTrace": app.gateway.last_trace(),
        "items": resolver.items(),
        "itemErrors": resolver.item_errors(),
        // As the last invocation answered. Result handles live only during a
        // call: 0 whenever the stack is idle. An engine is one handle, open
        // for the life of its process (isolated: one per worker; the workers
        // report their counters with every reply).
        "native": native.map(|n| json!({
            "liveResultHandles": n.live_results(),
            "openEngines": n.live_engines(),
            "violations": n.violations,
            "scoreCalls": n.score_calls,
        })),
        // With LEGACY_ISOLATION=process: workers, starts, crashes, hangs, recycling, the breaker.
        "isolation": legacy.and_then(|l| l.isolation),
        // The workers' resident size together, from /proc (null in process).
        "idleWorkersRssKiB": legacy.and_then(|l| l.isolation).map(|_| {
            testkit::procfs::children_of(std::process::id())
                .into_iter()
                .filter_map(testkit::procfs::rss_kib)
                .sum::<u64>()
        }),
        "pool": {
            "size": pool.size, "available": pool.available, "waiting": pool.waiting,
            "inUse": pool.in_use, "peak": pool.peak_in_use, "max": pool.max_size,
            "created": pool.created, "retired": pool.retired,
        },
        "tds": stack.tds().map(|t| {
            let s = t.stats();
            json!({"openConnections": s.open_connections, "peakConnections": s.peak_connections, "requests": s.requests})
        }),
        "dynamodb": stack.dynamo().map(|d| {
            let s = d.proxy().stats();
            json!({"requests": s.requests, "connections": s.connections})
        }),
        "processor": app.processor.json(),
        "scoringStandIn": stack.scoring().map(|s| {
            let stats = s.stats();
            json!({
                "requests": stats.requests, "statuses": stats.statuses,
                "peakPerSecond": stats.peak_per_second, "peakSlidingSecond": stats.peak_sliding_second,
            })
        }),
    })
}

async fn schema(State(app): State<Arc<App>>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        app.schema_sdl.clone(),
    )
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
