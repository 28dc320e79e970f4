//! A local DynamoDB: moto's server (a real implementation of the DynamoDB
//! API, from PyPI) in a project-local virtualenv, behind a small fault
//! proxy that counts requests per operation and can answer with throttling.
//!
//! ```no_run
//! # async fn demo() -> Result<(), String> {
//! let dynamo = testkit::dynamo::LocalDynamo::start(
//!     "Students", "Assessments", &testkit::fixtures::Fixtures::demo()).await?;
//! println!("AWS_ENDPOINT_URL_DYNAMODB={}", dynamo.endpoint());
//! dynamo.proxy().faults().throttle_next(2);
//! # Ok(()) }
//! ```

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType, PutRequest,
    ScalarAttributeType, WriteRequest,
};
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::faults::Trigger;
use crate::fixtures::Fixtures;
use crate::http::LocalServer;

/// The repository root (testkit's parent directory).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// The project-local Python environment holding moto (`.venv/`).
pub fn venv_python() -> PathBuf {
    repo_root().join(".venv/bin/python")
}

/// Makes sure moto's server is installed in `.venv/`, installing it on first
/// use (`python3 -m venv .venv && .venv/bin/pip install 'moto[server]'`).
pub fn ensure_moto() -> Result<PathBuf, String> {
    let python = venv_python();
    let has_moto = |python: &Path| {
        Command::new(python)
            .args(["-c", "import moto.server"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if python.exists() && has_moto(&python) {
        return Ok(python);
    }
    eprintln!("installing moto (a local DynamoDB-API server) into .venv/ (first run only)...");
    let venv = repo_root().join(".venv");
    let run = |cmd: &mut Command| -> Result<(), String> {
        let status = cmd
            .status()
            .map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
        status
            .success()
            .then_some(())
            .ok_or_else(|| format!("{cmd:?} failed: {status}"))
    };
    if !python.exists() {
        run(Command::new("python3").arg("-m").arg("venv").arg(&venv))?;
    }
    run(Command::new(&python).args(["-m", "pip", "install", "--quiet", "moto[server]>=5,<6"]))?;
    if has_moto(&python) {
        Ok(python)
    } else {
        Err("moto installed but cannot be imported".to_owned())
    }
}

fn free_port() -> Result<u16, String> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| e.to_string())
}

/// A moto server process on a loopback port; killed on drop.
#[derive(Debug)]
pub struct Moto {
    child: Child,
    endpoint: String,
}

impl Moto {
    pub async fn start() -> Result<Moto, String> {
        let python = ensure_moto()?;
        let port = free_port()?;
        // moto's server through our launcher (testkit/moto_server.py: its
        // base-table Query made O(partition) instead of O(table)).
        let launcher = repo_root().join("testkit/moto_server.py");
        let child = Command::new(python)
            .arg(&launcher)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start moto: {e}"))?;
        let moto = Moto {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            if Instant::now() > deadline {
                return Err("moto did not start listening within 30 s".to_owned());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(moto)
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A DynamoDB client for local endpoints (dummy credentials, us-east-1).
pub fn local_client(endpoint: &str) -> Client {
    let config = aws_sdk_dynamodb::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new(
            "testkit", "testkit", None, None, "testkit",
        ))
        .build();
    Client::from_conf(config)
}

/// Creates an on-demand table keyed by two strings, if missing.
pub async fn create_table(
    client: &Client,
    table: &str,
    partition_key: &str,
    sort_key: &str,
) -> Result<(), String> {
    let existing = client
        .list_tables()
        .send()
        .await
        .map_err(|e| format!("list tables: {e:?}"))?;
    if existing.table_names().iter().any(|t| t == table) {
        return Ok(());
    }
    let attribute = |name: &str| {
        AttributeDefinition::builder()
            .attribute_name(name)
            .attribute_type(ScalarAttributeType::S)
            .build()
    };
    let key = |name: &str, kind: KeyType| {
        KeySchemaElement::builder()
            .attribute_name(name)
            .key_type(kind)
            .build()
    };
    client
        .create_table()
        .table_name(table)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(attribute(partition_key).map_err(|e| e.to_string())?)
        .attribute_definitions(attribute(sort_key).map_err(|e| e.to_string())?)
        .key_schema(key(partition_key, KeyType::Hash).map_err(|e| e.to_string())?)
        .key_schema(key(sort_key, KeyType::Range).map_err(|e| e.to_string())?)
        .send()
        .await
        .map_err(|e| format!("create table {table}: {e:?}"))?;
    Ok(())
}

/// Creates the Students table (PK/SK strings, on-demand), if missing.
pub async fn create_students_table(client: &Client, table: &str) -> Result<(), String> {
    create_table(client, table, "PK", "SK").await
}

/// Creates the Assessments table (studentId/assessmentId, on-demand), if missing.
pub async fn create_assessments_table(client: &Client, table: &str) -> Result<(), String> {
    create_table(client, table, "studentId", "assessmentId").await
}

/// Writes items, 25 per BatchWriteItem, retrying unprocessed ones.
pub async fn put_items(
    client: &Client,
    table: &str,
    items: Vec<HashMap<String, AttributeValue>>,
) -> Result<(), String> {
    let mut items = items.into_iter().peekable();
    while items.peek().is_some() {
        let mut writes = items
            .by_ref()
            .take(25)
            .map(|item| {
                let put = PutRequest::builder()
                    .set_item(Some(item))
                    .build()
                    .map_err(|e| e.to_string())?;
                Ok(WriteRequest::builder().put_request(put).build())
            })
            .collect::<Result<Vec<_>, String>>()?;
        for _ in 0..10 {
            let output = client
                .batch_write_item()
                .request_items(table, writes)
                .send()
                .await
                .map_err(|e| format!("write {table}: {e:?}"))?;
            writes = output
                .unprocessed_items
                .and_then(|mut u| u.remove(table))
                .unwrap_or_default();
            if writes.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if !writes.is_empty() {
            return Err(format!("write {table}: items stayed unprocessed"));
        }
    }
    Ok(())
}

/// Writes every fixture student's profile item.
pub async fn seed_students(
    client: &Client,
    table: &str,
    fixtures: &Fixtures,
) -> Result<(), String> {
    let items = fixtures
        .students
        .iter()
        .map(|s| {
            [
                (
                    "PK".to_owned(),
                    AttributeValue::S(format!("STUDENT#{}", s.student_id)),
                ),
                ("SK".to_owned(), AttributeValue::S("PROFILE".to_owned())),
                (
                    "firstName".to_owned(),
                    AttributeValue::S(s.first_name.clone()),
                ),
                (
                    "lastName".to_owned(),
                    AttributeValue::S(s.last_name.clone()),
                ),
                ("grade".to_owned(), AttributeValue::N(s.grade.to_string())),
                (
                    "readingLevel".to_owned(),
                    AttributeValue::N(s.reading_level.to_string()),
                ),
            ]
            .into_iter()
            .chain(
                s.school_id
                    .as_ref()
                    .map(|school| ("schoolId".to_owned(), AttributeValue::S(school.clone()))),
            )
            .collect()
        })
        .collect();
    put_items(client, table, items).await
}

/// A scored item of the Assessments table, as the processor writes them.
pub fn history_item(
    student_id: &str,
    assessment_id: &str,
    assessment_type: &str,
    taken_at: &str,
    score: f64,
    related_id: Option<&str>,
) -> HashMap<String, AttributeValue> {
    let s = |v: &str| AttributeValue::S(v.to_owned());
    let mut item = HashMap::from([
        ("studentId".to_owned(), s(student_id)),
        ("assessmentId".to_owned(), s(assessment_id)),
        ("type".to_owned(), s(assessment_type)),
        ("takenAt".to_owned(), s(taken_at)),
        ("score".to_owned(), AttributeValue::N(score.to_string())),
        ("scoredAt".to_owned(), s(taken_at)),
    ]);
    if let Some(related) = related_id {
        item.insert("relatedId".to_owned(), s(related));
    }
    item
}

/// Writes the fixtures' history into the Assessments table.
pub async fn seed_history(client: &Client, table: &str, fixtures: &Fixtures) -> Result<(), String> {
    let items = fixtures
        .history()
        .iter()
        .map(|h| {
            history_item(
                &h.student_id,
                &h.assessment_id,
                &h.assessment_type,
                &h.taken_at,
                h.score,
                h.related_id.as_deref(),
            )
        })
        .collect();
    put_items(client, table, items).await
}

/// Faults the proxy injects.
#[derive(Debug, Default)]
pub struct ProxyFaults {
    throttles: Trigger,
    throttle_always: AtomicBool,
}

impl ProxyFaults {
    /// Answer the next `n` requests with ProvisionedThroughputExceededException.
    pub fn throttle_next(&self, n: u64) {
        self.throttles.next(n);
    }
    /// Throttle every request until turned off.
    pub fn set_throttle_always(&self, on: bool) {
        self.throttle_always.store(on, Ordering::SeqCst);
    }
    /// Throttle this share of requests, drawn from a generator seeded with `seed`.
    pub fn set_throttle_rate(&self, share: f64, seed: u64) {
        self.throttles.rate(share, seed);
    }
    pub fn clear(&self) {
        self.throttles.clear();
        self.set_throttle_always(false);
    }

    fn should_throttle(&self) -> bool {
        self.throttle_always.load(Ordering::SeqCst) || self.throttles.fires()
    }
}

/// What the proxy saw.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProxyStats {
    /// Requests per DynamoDB operation (`GetItem`, `BatchGetItem`...), throttled ones included.
    pub requests: HashMap<String, u64>,
    /// Keys asked for across every BatchGetItem request.
    pub batch_get_keys: u64,
    pub throttled: u64,
    /// Client connections the requests came over (kept alive: far fewer
    /// than requests), since the proxy started.
    pub connections: u64,
    /// Requests per client connection (its peer address).
    pub by_connection: HashMap<SocketAddr, u64>,
}

impl ProxyStats {
    pub fn count(&self, operation: &str) -> u64 {
        self.requests.get(operation).copied().unwrap_or(0)
    }

    /// Of the requests since `before`, how many went over a connection that had
    /// already carried a request (kept alive and reused): all but the first of
    /// each connection that carried none before.
    pub fn reused_since(&self, before: &ProxyStats) -> u64 {
        self.by_connection
            .iter()
            .map(|(peer, &now)| {
                let earlier = before.by_connection.get(peer).copied().unwrap_or(0);
                // A connection new since `before` opened with its first request.
                let opened = u64::from(earlier == 0);
                now.saturating_sub(earlier).saturating_sub(opened)
            })
            .sum()
    }
}

struct ProxyState {
    upstream: String,
    client: HttpClient<HttpConnector, Body>,
    faults: ProxyFaults,
    stats: Mutex<ProxyStats>,
}

/// An HTTP proxy in front of a DynamoDB endpoint; stops on drop.
pub struct DynamoProxy {
    server: LocalServer,
    state: Arc<ProxyState>,
}

impl std::fmt::Debug for DynamoProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DynamoProxy")
            .field("addr", &self.server.addr())
            .finish_non_exhaustive()
    }
}

const THROTTLE_BODY: &str = r#"{"__type":"com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException","message":"The level of configured provisioned throughput for the table was exceeded (injected by the testkit proxy)."}"#;

async fn forward(State(state): State<Arc<ProxyState>>, request: Request) -> Response {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|info| info.0);
    let (mut parts, body) = request.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, 16 * 1024 * 1024).await else {
        return (StatusCode::BAD_REQUEST, "unreadable body").into_response();
    };
    let operation = parts
        .headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .and_then(|t| t.rsplit('.').next())
        .unwrap_or("unknown")
        .to_owned();
    let throttle = state.faults.should_throttle();
    {
        let mut stats = state.stats.lock().unwrap_or_else(|p| p.into_inner());
        *stats.requests.entry(operation.clone()).or_insert(0) += 1;
        if let Some(peer) = peer {
            *stats.by_connection.entry(peer).or_insert(0) += 1;
        }
        if operation == "BatchGetItem" {
            let keys = serde_json::from_slice::<serde_json::Value>(&bytes)
                .ok()
                .map_or(0, |body| {
                    body["RequestItems"].as_object().map_or(0, |tables| {
                        tables
                            .values()
                            .map(|t| t["Keys"].as_array().map_or(0, Vec::len))
                            .sum()
                    })
                });
            stats.batch_get_keys += keys as u64;
        }
        if throttle {
            stats.throttled += 1;
        }
    }
    if throttle {
        let mut response = (StatusCode::BAD_REQUEST, THROTTLE_BODY).into_response();
        let headers = response.headers_mut();
        headers.insert(
            "content-type",
            HeaderValue::from_static("application/x-amz-json-1.0"),
        );
        headers.insert(
            "x-amzn-errortype",
            HeaderValue::from_static("ProvisionedThroughputExceededException"),
        );
        return response;
    }
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let Ok(uri) = format!("{}{path}", state.upstream).parse() else {
        return (StatusCode::BAD_GATEWAY, "bad upstream uri").into_response();
    };
    parts.uri = uri;
    let upstream = Request::from_parts(parts, Body::from(bytes));
    match state.client.request(upstream).await {
        Ok(mut response) => {
            // Hop-by-hop headers are the proxy's own (RFC 9110 §7.6.1): moto's
            // `Connection: close` ends its connection to moto, not the client's,
            // which stays open as with DynamoDB itself.
            for name in ["connection", "keep-alive", "proxy-connection"] {
                response.headers_mut().remove(name);
            }
            response.map(Body::new)
        }
        Err(e) => (StatusCode::BAD_GATEWAY, format!("upstream: {e}")).into_response(),
    }
}

impl DynamoProxy {
    pub async fn start(upstream: &str) -> Result<DynamoProxy, String> {
        let state = Arc::new(ProxyState {
            upstream: upstream.trim_end_matches('/').to_owned(),
            client: HttpClient::builder(TokioExecutor::new()).build_http(),
            faults: ProxyFaults::default(),
            stats: Mutex::new(ProxyStats::default()),
        });
        let app = axum::Router::new()
            .fallback(forward)
            .with_state(Arc::clone(&state));
        let server = LocalServer::start(app, 0, "DynamoDB proxy").await?;
        Ok(DynamoProxy { server, state })
    }

    pub fn endpoint(&self) -> String {
        self.server.url()
    }

    pub fn faults(&self) -> &ProxyFaults {
        &self.state.faults
    }

    pub fn stats(&self) -> ProxyStats {
        let mut stats = self
            .state
            .stats
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        stats.connections = self.server.connections_accepted();
        stats
    }

    pub fn reset_stats(&self) {
        *self.state.stats.lock().unwrap_or_else(|p| p.into_inner()) = ProxyStats::default();
    }
}

/// moto plus the proxy, with the Students and Assessments tables created and seeded.
#[derive(Debug)]
pub struct LocalDynamo {
    proxy: DynamoProxy,
    moto: Moto,
    table: String,
    assessments_table: String,
}

impl LocalDynamo {
    pub async fn start(
        students_table: &str,
        assessments_table: &str,
        fixtures: &Fixtures,
    ) -> Result<LocalDynamo, String> {
        let moto = Moto::start().await?;
        let client = local_client(moto.endpoint());
        create_students_table(&client, students_table).await?;
        seed_students(&client, students_table, fixtures).await?;
        create_assessments_table(&client, assessments_table).await?;
        seed_history(&client, assessments_table, fixtures).await?;
        let proxy = DynamoProxy::start(moto.endpoint()).await?;
        Ok(LocalDynamo {
            proxy,
            moto,
            table: students_table.to_owned(),
            assessments_table: assessments_table.to_owned(),
        })
    }

    /// A client for the local endpoint (through the proxy).
    pub fn client(&self) -> Client {
        local_client(&self.endpoint())
    }

    /// A client straight to moto: for a harness's own housekeeping, which
    /// the proxy should neither count nor throttle.
    pub fn direct_client(&self) -> Client {
        local_client(self.moto.endpoint())
    }

    pub fn assessments_table(&self) -> &str {
        &self.assessments_table
    }

    /// The endpoint to use: the proxy's.
    pub fn endpoint(&self) -> String {
        self.proxy.endpoint()
    }

    pub fn proxy(&self) -> &DynamoProxy {
        &self.proxy
    }

    pub fn table(&self) -> &str {
        &self.table
    }
}
