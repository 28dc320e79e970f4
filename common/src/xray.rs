//! AWS X-Ray tracing: each invocation's calls to DynamoDB, SQL Server, the
//! legacy component and the scoring API as subsegments of the trace AppSync
//! started (the header reaches the function as `Lambda-Runtime-Trace-Id`,
//! `context.xray_trace_id`), sent as UDP documents to the X-Ray daemon
//! (`AWS_XRAY_DAEMON_ADDRESS`, which Lambda sets when the function's tracing
//! is `Active`).
//!
//! The code marks what to trace with ordinary `tracing` spans of target
//! [`TARGET`] at TRACE level: [`invocation_span`] around each invocation,
//! and one span per dependency call, named as the subsegment, with the
//! fields below. [`XrayLayer`] turns them into documents. Without a daemon
//! address the layer is not installed and no other layer enables TRACE
//! spans of this target, so those spans are disabled at their call sites:
//! off costs a level check per call.
//!
//! Span fields read: `namespace` (`aws` or `remote`), `operation`,
//! `table` and `queue_url` (AWS calls), `url` and `http_status` (HTTP), `database` (SQL),
//! `failure` (recorded when the call failed: the subsegment is a fault,
//! with the message as its cause), and any other field as metadata.
//!
//! Written by hand: the X-Ray SDKs for Rust are unmaintained, and
//! OpenTelemetry's exporters need a collector layer in the function; the
//! daemon's protocol is one JSON document per datagram.

use std::collections::BTreeMap;
use std::hash::{BuildHasher, Hasher};
use std::net::{SocketAddr, ToSocketAddrs, UdpSocket};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value, json};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::registry::LookupSpan;

/// The target of the spans that become X-Ray (sub)segments.
pub const TARGET: &str = "xray";
/// The daemon protocol's header line.
const DAEMON_HEADER: &str = "{\"format\":\"json\",\"version\":1}";

/// The span an invocation runs in; `trace_header` is Lambda's trace id
/// header (`Root=...;Parent=...;Sampled=...`), if any.
pub fn invocation_span(trace_header: Option<&str>) -> tracing::Span {
    tracing::trace_span!(target: "xray", "invocation", trace_header = trace_header.unwrap_or(""))
}

/// A DynamoDB call's subsegment: `operation` as the API names it, the table's name.
pub fn dynamodb_span(operation: &'static str, table: &str) -> tracing::Span {
    tracing::trace_span!(
        target: "xray",
        "DynamoDB",
        namespace = "aws",
        operation,
        table,
        failure = tracing::field::Empty,
    )
}

/// Runs `call` inside `span` (a dependency's subsegment), recording its
/// error as the subsegment's `failure`. The span should declare
/// `failure = tracing::field::Empty`.
pub async fn traced<T, E, F>(span: tracing::Span, call: F) -> Result<T, E>
where
    E: std::fmt::Display,
    F: std::future::Future<Output = Result<T, E>>,
{
    use tracing::Instrument;
    let result = call.instrument(span.clone()).await;
    if let Err(error) = &result {
        span.record("failure", tracing::field::display(error));
    }
    result
}

/// `Root=1-...;Parent=...;Sampled=1`, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceHeader {
    pub root: String,
    /// The segment this invocation's subsegments hang under (Lambda's
    /// function segment); `None` when the caller started the trace here.
    pub parent: Option<String>,
    pub sampled: bool,
}

impl TraceHeader {
    pub fn parse(header: &str) -> Option<TraceHeader> {
        let mut root = None;
        let mut parent = None;
        let mut sampled = false;
        for part in header.split(';') {
            match part.trim().split_once('=') {
                Some(("Root", value)) if !value.is_empty() => root = Some(value.to_owned()),
                Some(("Parent", value)) if !value.is_empty() => parent = Some(value.to_owned()),
                Some(("Sampled", value)) => sampled = value == "1",
                _ => {}
            }
        }
        Some(TraceHeader {
            root: root?,
            parent,
            sampled,
        })
    }

    /// A new sampled trace with no parent (a local run starting its own).
    pub fn start() -> TraceHeader {
        TraceHeader {
            root: new_trace_id(),
            parent: None,
            sampled: true,
        }
    }

    pub fn to_header(&self) -> String {
        let mut text = format!("Root={}", self.root);
        if let Some(parent) = &self.parent {
            text.push_str(&format!(";Parent={parent}"));
        }
        text.push_str(if self.sampled {
            ";Sampled=1"
        } else {
            ";Sampled=0"
        });
        text
    }
}

/// 64 random bits (ids must be unique, not secret).
fn random_u64() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    hasher.write_u128(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    hasher.finish()
}

/// A segment id: 16 hex digits.
pub fn new_id() -> String {
    format!("{:016x}", random_u64())
}

/// A trace id: `1-<epoch seconds, 8 hex>-<96 random bits, 24 hex>`.
pub fn new_trace_id() -> String {
    let seconds = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    format!(
        "1-{:08x}-{:08x}{:016x}",
        seconds as u32,
        random_u64() as u32,
        random_u64()
    )
}

fn epoch_seconds(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| (d.as_micros() as f64) / 1e6)
        .unwrap_or(0.0)
}

/// What the layer keeps on a traced span.
enum Traced {
    /// A sampled invocation: the trace and, when this process starts the
    /// trace, its own segment.
    Invocation {
        header: TraceHeader,
        own_segment: Option<(String, SystemTime)>,
    },
    Subsegment(Subsegment),
}

struct Subsegment {
    id: String,
    trace_id: String,
    parent_id: String,
    name: &'static str,
    start: SystemTime,
    fields: BTreeMap<&'static str, Value>,
}

#[derive(Default)]
struct Fields(BTreeMap<&'static str, Value>);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name(), json!(format!("{value:?}")));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name(), json!(value));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name(), json!(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name(), json!(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name(), json!(value));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name(), json!(value));
    }
}

/// The sections of a subsegment document its span's fields fill.
#[derive(Default)]
struct Sections {
    aws: Map<String, Value>,
    http: Map<String, Value>,
    metadata: Map<String, Value>,
}

impl Subsegment {
    fn document(&self, end: SystemTime) -> Value {
        let mut doc = Map::new();
        doc.insert("type".into(), json!("subsegment"));
        doc.insert("name".into(), json!(self.name));
        doc.insert("id".into(), json!(self.id));
        doc.insert("trace_id".into(), json!(self.trace_id));
        doc.insert("parent_id".into(), json!(self.parent_id));
        doc.insert("start_time".into(), json!(epoch_seconds(self.start)));
        doc.insert("end_time".into(), json!(epoch_seconds(end)));
        let mut sections = Sections::default();
        for (name, value) in &self.fields {
            field(&mut doc, &mut sections, name, value);
        }
        if !sections.aws.is_empty() {
            doc.insert("aws".into(), Value::Object(sections.aws));
        }
        if !sections.http.is_empty() {
            doc.insert("http".into(), Value::Object(sections.http));
        }
        if !sections.metadata.is_empty() {
            doc.insert("metadata".into(), json!({ "default": sections.metadata }));
        }
        Value::Object(doc)
    }
}

/// Where one span field goes in the subsegment document (X-Ray's segment
/// document format: `aws`, `http`, `sql`, `error`/`throttle`/`fault`, `cause`).
fn field(doc: &mut Map<String, Value>, sections: &mut Sections, name: &str, value: &Value) {
    match name {
        "namespace" => {
            doc.insert("namespace".into(), value.clone());
        }
        "operation" => {
            sections.aws.insert("operation".into(), value.clone());
        }
        "table" => {
            sections.aws.insert("table_name".into(), value.clone());
        }
        "queue_url" => {
            sections.aws.insert("queue_url".into(), value.clone());
        }
        "url" => {
            sections
                .http
                .insert("request".into(), json!({"url": value}));
        }
        "http_status" => {
            sections
                .http
                .insert("response".into(), json!({"status": value}));
            let status = value.as_u64().unwrap_or(0);
            if (400..500).contains(&status) {
                doc.insert("error".into(), json!(true));
            }
            if status == 429 {
                doc.insert("throttle".into(), json!(true));
            }
            if status >= 500 {
                doc.insert("fault".into(), json!(true));
            }
        }
        "database" => {
            doc.insert("sql".into(), json!({"database_type": value}));
        }
        "failure" => {
            doc.insert("fault".into(), json!(true));
            doc.insert(
                "cause".into(),
                json!({"exceptions": [{"id": new_id(), "message": value}]}),
            );
        }
        _ => {
            sections.metadata.insert(name.to_owned(), value.clone());
        }
    }
}

/// The layer: traced spans to documents, sent to the daemon when they close.
pub struct XrayLayer {
    socket: UdpSocket,
    daemon: SocketAddr,
    /// The name of the segments this process starts (its function name).
    service: String,
}

impl XrayLayer {
    /// A layer sending to `daemon` (`host:port`, as in `AWS_XRAY_DAEMON_ADDRESS`).
    pub fn new(daemon: &str, service: &str) -> std::io::Result<XrayLayer> {
        // The variable may carry separate UDP and TCP addresses: "udp:h:p tcp:h:p".
        let udp = daemon
            .split_whitespace()
            .find_map(|part| part.strip_prefix("udp:"))
            .unwrap_or(daemon);
        let daemon = udp.to_socket_addrs()?.next().ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "no daemon address")
        })?;
        let socket = UdpSocket::bind(if daemon.is_ipv4() {
            "0.0.0.0:0"
        } else {
            "[::]:0"
        })?;
        socket.set_nonblocking(true)?;
        Ok(XrayLayer {
            socket,
            daemon,
            service: service.to_owned(),
        })
    }

    fn send(&self, document: &Value) {
        // A full socket buffer or an absent daemon loses the document, never the invocation.
        let _ = self.socket.send_to(
            format!("{DAEMON_HEADER}\n{document}").as_bytes(),
            self.daemon,
        );
    }
}

impl<S> Layer<S> for XrayLayer
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        if attrs.metadata().target() != TARGET {
            return;
        }
        let Some(span) = ctx.span(id) else { return };
        let mut fields = Fields::default();
        attrs.record(&mut fields);
        if attrs.metadata().name() == "invocation" {
            let header = fields
                .0
                .get("trace_header")
                .and_then(Value::as_str)
                .and_then(TraceHeader::parse);
            if let Some(header) = header.filter(|h| h.sampled) {
                let own_segment = header
                    .parent
                    .is_none()
                    .then(|| (new_id(), SystemTime::now()));
                span.extensions_mut().insert(Traced::Invocation {
                    header,
                    own_segment,
                });
            }
            return;
        }
        // The closest traced ancestor decides the trace and the parent.
        let found = span.scope().skip(1).find_map(|ancestor| {
            let extensions = ancestor.extensions();
            match extensions.get::<Traced>()? {
                Traced::Invocation {
                    header,
                    own_segment,
                } => {
                    let parent = match own_segment {
                        Some((segment, _)) => segment.clone(),
                        None => header.parent.clone()?,
                    };
                    Some((header.root.clone(), parent))
                }
                Traced::Subsegment(sub) => Some((sub.trace_id.clone(), sub.id.clone())),
            }
        });
        let Some((trace_id, parent_id)) = found else {
            return;
        };
        span.extensions_mut().insert(Traced::Subsegment(Subsegment {
            id: new_id(),
            trace_id,
            parent_id,
            name: attrs.metadata().name(),
            start: SystemTime::now(),
            fields: fields.0,
        }));
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut extensions = span.extensions_mut();
        if let Some(Traced::Subsegment(sub)) = extensions.get_mut::<Traced>() {
            let mut fields = Fields::default();
            values.record(&mut fields);
            sub.fields.extend(fields.0);
        }
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(&id) else { return };
        let Some(traced) = span.extensions_mut().remove::<Traced>() else {
            return;
        };
        let end = SystemTime::now();
        match traced {
            Traced::Subsegment(sub) => self.send(&sub.document(end)),
            Traced::Invocation {
                header,
                own_segment: Some((segment, start)),
            } => self.send(&json!({
                "name": self.service,
                "id": segment,
                "trace_id": header.root,
                "start_time": epoch_seconds(start),
                "end_time": epoch_seconds(end),
                "origin": "AWS::Lambda::Function",
            })),
            Traced::Invocation { .. } => {}
        }
    }
}

/// The layer's filter: the spans of [`TARGET`], at every level, and nothing else.
pub fn filter() -> tracing_subscriber::filter::Targets {
    tracing_subscriber::filter::Targets::new().with_target(TARGET, tracing::Level::TRACE)
}

/// The layer for this process when `AWS_XRAY_DAEMON_ADDRESS` is set (Lambda
/// sets it with active tracing), with its per-layer filter.
pub fn layer_from_env<S>() -> Option<impl Layer<S>>
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
{
    let daemon = std::env::var("AWS_XRAY_DAEMON_ADDRESS").ok()?;
    let service = std::env::var("AWS_LAMBDA_FUNCTION_NAME").unwrap_or_else(|_| "local".to_owned());
    match XrayLayer::new(&daemon, &service) {
        Ok(layer) => Some(layer.with_filter(filter())),
        Err(error) => {
            eprintln!("X-Ray tracing off: AWS_XRAY_DAEMON_ADDRESS={daemon:?}: {error}");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_trace_header_round_trips() {
        let header = TraceHeader::parse(
            "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1",
        )
        .expect("parsed");
        assert_eq!(header.root, "1-5759e988-bd862e3fe1be46a994272793");
        assert_eq!(header.parent.as_deref(), Some("53995c3f42cd8ad8"));
        assert!(header.sampled);
        assert_eq!(TraceHeader::parse(&header.to_header()), Some(header));
        assert!(
            !TraceHeader::parse("Root=1-a-b;Sampled=0")
                .expect("parsed")
                .sampled
        );
        assert!(!TraceHeader::parse("Root=1-a-b").expect("parsed").sampled);
        assert_eq!(TraceHeader::parse("Parent=x;Sampled=1"), None);
        let started = TraceHeader::start();
        assert!(started.sampled && started.parent.is_none());
        assert_eq!(started.root.len(), 35, "{}", started.root);
        assert_ne!(new_id(), new_id());
    }

    #[test]
    fn a_subsegment_document_maps_the_fields_x_ray_knows() {
        let start = UNIX_EPOCH + std::time::Duration::from_millis(1_700_000_000_123);
        let sub = Subsegment {
            id: "a".into(),
            trace_id: "1-x-y".into(),
            parent_id: "p".into(),
            name: "DynamoDB",
            start,
            fields: BTreeMap::from([
                ("namespace", json!("aws")),
                ("operation", json!("GetItem")),
                ("table", json!("Students")),
                ("failure", json!("timed out")),
                ("items", json!(2)),
            ]),
        };
        let doc = sub.document(start + std::time::Duration::from_millis(5));
        assert_eq!(doc["type"], "subsegment");
        assert_eq!(doc["namespace"], "aws");
        assert_eq!(
            doc["aws"],
            json!({"operation": "GetItem", "table_name": "Students"})
        );
        assert_eq!(doc["fault"], true);
        assert_eq!(doc["cause"]["exceptions"][0]["message"], "timed out");
        assert_eq!(doc["metadata"]["default"]["items"], 2);
        assert_eq!(doc["start_time"], 1_700_000_000.123);
        assert_eq!(doc["end_time"], 1_700_000_000.128);
    }
}
