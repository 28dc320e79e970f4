//! Starts the playground app on a free port, and a tiny HTTP client for it.
#![allow(dead_code)] // each test binary uses its own part

use std::sync::Arc;

use axum::body::Body;
use devstack::gateway::Gateway;
use devstack::server::{App, router};
use devstack::stack::{LocalStack, StackOptions};
use http_body_util::BodyExt;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

pub struct Playground {
    pub app: Arc<App>,
    pub url: String,
}

/// The playground as `cargo run --bin playground` runs it: the legacy
/// component isolated (the default), its workers the playground binary itself.
pub async fn start(options: StackOptions, max_batch: usize) -> Playground {
    start_with(options, max_batch, false).await
}

/// The playground as `cargo run --bin playground -- --trace` runs it.
pub async fn start_traced(options: StackOptions, max_batch: usize) -> Playground {
    start_with(options, max_batch, true).await
}

async fn start_with(mut options: StackOptions, max_batch: usize, trace: bool) -> Playground {
    options.overrides.insert(
        0,
        (
            "LEGACY_WORKER_PATH".to_owned(),
            env!("CARGO_BIN_EXE_playground").to_owned(),
        ),
    );
    let stack = LocalStack::start(options).await.expect("stack");
    let mut gateway =
        Gateway::new(devstack::SCHEMA_SDL, Arc::clone(&stack.deps), max_batch).expect("gateway");
    if trace {
        gateway = gateway.with_tracing("error").expect("tracing");
    }
    let app = Arc::new(App {
        gateway,
        stack,
        schema_sdl: devstack::SCHEMA_SDL.to_owned(),
        processor: Default::default(),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let routes = router(Arc::clone(&app));
    tokio::spawn(async move { axum::serve(listener, routes).await });
    Playground { app, url }
}

async fn send(request: axum::http::Request<Body>) -> (u16, String) {
    let client = Client::builder(TokioExecutor::new()).build_http::<Body>();
    let response = client.request(request).await.expect("HTTP request");
    let status = response.status().as_u16();
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

impl Playground {
    pub async fn graphql(&self, body: Value) -> Value {
        self.graphql_as(None, body).await
    }

    /// A GraphQL request as the caller `identity` (a persona name or JSON;
    /// `None`: the API key).
    pub async fn graphql_as(&self, identity: Option<&str>, body: Value) -> Value {
        let mut request = axum::http::Request::post(format!("{}/graphql", self.url))
            .header("content-type", "application/json")
            .header("x-api-key", "test");
        if let Some(identity) = identity {
            request = request.header(devstack::server::IDENTITY_HEADER, identity);
        }
        let request = request.body(Body::from(body.to_string())).expect("request");
        let (status, text) = send(request).await;
        assert_eq!(status, 200, "{text}");
        serde_json::from_str(&text).expect("JSON response")
    }

    /// POSTs a raw body; the status and the body back.
    pub async fn post(&self, path: &str, body: String) -> (u16, String) {
        self.post_with(path, &[], body).await
    }

    /// [`Self::post`] with extra `headers` (a `host` among them replaces the URL's).
    pub async fn post_with(
        &self,
        path: &str,
        headers: &[(&str, &str)],
        body: String,
    ) -> (u16, String) {
        let mut request = axum::http::Request::post(format!("{}{path}", self.url))
            .header("content-type", "application/json");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        send(request.body(Body::from(body)).expect("request")).await
    }

    pub async fn get(&self, path: &str) -> (u16, String) {
        send(
            axum::http::Request::get(format!("{}{path}", self.url))
                .body(Body::empty())
                .expect("request"),
        )
        .await
    }

    pub async fn stats(&self) -> Value {
        let (status, text) = self.get("/stats").await;
        assert_eq!(status, 200);
        serde_json::from_str(&text).expect("JSON")
    }

    /// After a run: no native result alive and no violation (in process, or
    /// in the workers as they reported), no worker lost and the workers within
    /// their bound (isolated); the pool within its bound.
    pub async fn assert_clean(&self) {
        let stats = self.stats().await;
        assert_eq!(stats["native"]["liveResultHandles"], 0, "{stats}");
        assert_eq!(stats["native"]["violations"], 0, "{stats}");
        if stats["isolation"].is_object() {
            let isolation = &stats["isolation"];
            assert_eq!(isolation["crashes"], 0, "{stats}");
            assert_eq!(isolation["hangs"], 0, "{stats}");
            assert!(
                isolation["workers"].as_u64() <= isolation["maxWorkers"].as_u64(),
                "{stats}"
            );
            // Each idle worker reported its one open engine.
            assert_eq!(
                stats["native"]["openEngines"], isolation["workers"],
                "the workers report their handle counters: {stats}"
            );
        }
        assert!(
            stats["pool"]["peak"].as_u64() <= stats["pool"]["max"].as_u64(),
            "{stats}"
        );
        assert!(
            stats["tds"]["peakConnections"].as_u64() <= stats["pool"]["max"].as_u64(),
            "{stats}"
        );
    }
}
