//! The playground's HTTP server: `GET /` (the query console), `POST /graphql`,
//! `GET /stats`, `GET /schema.graphql`.

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

/// The console page: no CDN, everything inline.
const CONSOLE_HTML: &str = include_str!("../static/console.html");

pub struct App {
    pub gateway: Gateway,
    pub stack: LocalStack,
    pub schema_sdl: String,
}

pub fn router(app: Arc<App>) -> axum::Router {
    axum::Router::new()
        .route("/", get(console))
        .route("/graphql", post(graphql))
        .route("/stats", get(stats))
        .route("/schema.graphql", get(schema))
        .with_state(app)
}

async fn console(State(app): State<Arc<App>>) -> Html<String> {
    let fields: Vec<String> = app
        .gateway
        .query_fields()
        .iter()
        .map(|f| format!("<li><code>{}</code></li>", escape(f)))
        .collect();
    Html(
        CONSOLE_HTML
            .replace("{{FIELDS}}", &fields.join("\n"))
            .replace("{{SCHEMA}}", &escape(&app.schema_sdl)),
    )
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
    let headers: HashMap<String, String> = headers
        .iter()
        .filter_map(|(k, v)| {
            v.to_str()
                .ok()
                .map(|v| (k.as_str().to_owned(), v.to_owned()))
        })
        .collect();
    Json(app.gateway.execute(request, headers).await)
}

async fn stats(State(app): State<Arc<App>>) -> Json<Value> {
    Json(stats_json(&app.stack))
}

/// The figures `/stats` serves.
pub fn stats_json(stack: &LocalStack) -> Value {
    use std::sync::atomic::Ordering::Relaxed;
    let deps = &stack.deps;
    let native = deps.resolver.legacy().native_stats();
    let pool = deps.resolver.sql().status();
    json!({
        "invocations": deps.counters.invocations.load(Relaxed),
        "items": deps.counters.items.load(Relaxed),
        "itemErrors": deps.counters.item_errors.load(Relaxed),
        // Result handles live only during a call: 0 whenever the stack is idle.
        // The engine is one handle, open for the life of the stack.
        "native": native.map(|n| json!({
            "liveResultHandles": n.live_results(),
            "openEngines": n.live_engines(),
            "violations": n.violations,
            "scoreCalls": n.score_calls,
        })),
        "pool": {
            "size": pool.size, "available": pool.available, "waiting": pool.waiting,
            "inUse": pool.in_use, "peak": pool.peak_in_use, "max": pool.max_size,
            "created": pool.created, "retired": pool.retired,
        },
        "tds": stack.tds().map(|t| {
            let s = t.stats();
            json!({"openConnections": s.open_connections, "peakConnections": s.peak_connections, "requests": s.requests})
        }),
        "dynamodb": stack.dynamo().map(|d| json!({"requests": d.proxy().stats().requests})),
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
