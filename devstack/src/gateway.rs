//! GraphQL over HTTP in front of the resolver, the way AppSync calls a direct
//! Lambda resolver: the document is parsed and validated against
//! `schema.graphql` (apollo-compiler), variables are coerced (apollo-compiler),
//! every root field becomes the event AppSync would send, the events go
//! through the same `appsync::handle` the Lambda runs (batched when the
//! resolver batches), and each result is projected onto its selection set.
//!
//! Introspection (`__schema`, `__type`) is answered by apollo-compiler from the
//! same schema, so GraphQL clients can load it as from AppSync. The caller's
//! `identity` is what AppSync's auth mode would have put in the event (the
//! playground lets a person choose it).
//!
//! The event building and the projection are written here by hand: no GraphQL
//! library executes fields by invoking a Lambda handler with AppSync's event
//! shape, and the projection is a walk over apollo-compiler's selection sets.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use apollo_compiler::ast::{OperationType, Value as AstValue};
use apollo_compiler::executable::{Field, Selection, SelectionSet};
use apollo_compiler::response::JsonMap;
use apollo_compiler::schema::Implementers;
use apollo_compiler::validation::Valid;
use apollo_compiler::{ExecutableDocument, Schema};
use assessments_common::xray;
use assessments_resolver::appsync;
use assessments_resolver::deps::Deps;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use testkit::appsync::ResolverEvent;
use testkit::xray::XrayDaemon;

use crate::tally::ResolverTally;
use tracing::Instrument;
use tracing::instrument::WithSubscriber;

/// AppSync's built-in scalars, which an AppSync schema uses without declaring.
const APPSYNC_SCALARS: &str = "scalar AWSDate scalar AWSTime scalar AWSDateTime scalar AWSTimestamp \
    scalar AWSEmail scalar AWSJSON scalar AWSURL scalar AWSPhone scalar AWSIPAddress";

/// A GraphQL-over-HTTP request body.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GraphQLRequest {
    pub query: String,
    #[serde(default)]
    pub variables: Option<Map<String, Value>>,
    #[serde(default)]
    pub operation_name: Option<String>,
}

/// Executes GraphQL requests against the resolver.
pub struct Gateway {
    schema: Valid<Schema>,
    /// For introspection, computed once.
    implementers: apollo_compiler::collections::HashMap<apollo_compiler::Name, Implementers>,
    deps: Arc<Deps>,
    max_batch: usize,
    requests: AtomicU64,
    /// Where the last invocation spent its time, for the console's panel.
    last: std::sync::Mutex<Option<Value>>,
    /// Every invocation's report, added up (`/stats`).
    tally: ResolverTally,
    /// With tracing on: the subscriber invocations run under and the X-Ray
    /// daemon stand-in receiving their subsegments.
    tracing: Option<LocalTracing>,
}

struct LocalTracing {
    dispatch: tracing::Dispatch,
    daemon: XrayDaemon,
    /// A second registered dispatcher, kept alive for its effect: with one
    /// registered dispatcher, tracing-core caches a callsite's interest from
    /// whatever default the thread that first reaches it has, so a span
    /// first reached outside a traced invocation (an untraced gateway in the
    /// same process, a test without a global subscriber) would stay
    /// disabled for good. With two, each callsite asks all of them.
    _all_dispatchers_decide: tracing::Dispatch,
}

/// One root field to resolve through the Lambda handler.
struct RootCall<'a> {
    field: &'a Field,
    event: Value,
}

fn error_entry(message: impl Into<String>, locations: Value, path: Value) -> Value {
    json!({ "path": path, "data": null, "errorType": null, "errorInfo": null, "locations": locations, "message": message.into() })
}

fn response(data: Value, errors: Vec<Value>) -> Value {
    if errors.is_empty() {
        json!({ "data": data })
    } else {
        json!({ "data": data, "errors": errors })
    }
}

impl Gateway {
    /// `schema_sdl` is `schema.graphql`; AppSync's scalars are added to it.
    pub fn new(schema_sdl: &str, deps: Arc<Deps>, max_batch: usize) -> Result<Gateway, String> {
        let source = format!("{APPSYNC_SCALARS}\n{schema_sdl}");
        let schema = Schema::parse_and_validate(source, "schema.graphql")
            .map_err(|e| e.errors.to_string())?;
        Ok(Gateway {
            implementers: schema.implementers_map(),
            schema,
            deps,
            max_batch: max_batch.max(1),
            requests: AtomicU64::new(0),
            last: std::sync::Mutex::new(None),
            tally: ResolverTally::default(),
            tracing: None,
        })
    }

    /// Traces every invocation as X-Ray would with active tracing: each
    /// one starts a trace, its dependency calls are subsegments sent to an
    /// X-Ray daemon stand-in, and [`Gateway::last_trace`] shows the last
    /// one. `log_filter` is the logs' default level inside invocations.
    pub fn with_tracing(mut self, log_filter: &str) -> std::io::Result<Gateway> {
        let daemon = XrayDaemon::start()?;
        let layer = xray::XrayLayer::new(daemon.address(), "assessments-resolver (playground)")?;
        self.tracing = Some(LocalTracing {
            dispatch: crate::local_subscriber(log_filter, Some(layer)),
            daemon,
            _all_dispatchers_decide: tracing::Dispatch::new(
                tracing::subscriber::NoSubscriber::default(),
            ),
        });
        Ok(self)
    }

    pub fn schema(&self) -> &Valid<Schema> {
        &self.schema
    }

    /// The names and arguments of `Query`'s fields, for the console.
    pub fn query_fields(&self) -> Vec<String> {
        let Some(query) = self.schema.get_object("Query") else {
            return Vec::new();
        };
        query
            .fields
            .values()
            .map(|f| {
                let args: Vec<String> = f
                    .arguments
                    .iter()
                    .map(|a| format!("{}: {}", a.name, a.ty))
                    .collect();
                format!("{}({}): {}", f.name, args.join(", "), f.ty)
            })
            .collect()
    }

    /// Executes `request` as AppSync would for a caller with `identity`
    /// (`null`: an API key).
    pub async fn execute(
        &self,
        request: GraphQLRequest,
        headers: HashMap<String, String>,
        identity: Value,
    ) -> Value {
        let document = match ExecutableDocument::parse_and_validate(
            &self.schema,
            &request.query,
            "query.graphql",
        ) {
            Ok(document) => document,
            Err(invalid) => {
                let errors = invalid
                    .errors
                    .iter()
                    .map(|d| {
                        let e = d.to_json();
                        error_entry(
                            format!("Validation error: {}", e.message),
                            json!(e.locations),
                            Value::Null,
                        )
                    })
                    .collect();
                return response(Value::Null, errors);
            }
        };
        let operation = match document.operations.get(request.operation_name.as_deref()) {
            Ok(operation) => operation,
            Err(e) => {
                return response(
                    Value::Null,
                    vec![error_entry(e.message().to_string(), json!([]), Value::Null)],
                );
            }
        };
        if operation.operation_type != OperationType::Query {
            return response(
                Value::Null,
                vec![error_entry(
                    "only queries are served",
                    json!([]),
                    Value::Null,
                )],
            );
        }
        let provided: JsonMap = match serde_json::from_value::<JsonMap>(Value::Object(
            request.variables.unwrap_or_default(),
        )) {
            Ok(map) => map,
            Err(e) => {
                return response(
                    Value::Null,
                    vec![error_entry(
                        format!("variables: {e}"),
                        json!([]),
                        Value::Null,
                    )],
                );
            }
        };
        let variables = match apollo_compiler::request::coerce_variable_values(
            &self.schema,
            operation,
            &provided,
        ) {
            Ok(v) => v,
            Err(e) => {
                let e = e.to_graphql_error(&document.sources);
                return response(
                    Value::Null,
                    vec![error_entry(e.message, json!(e.locations), Value::Null)],
                );
            }
        };
        // Introspection, answered from the schema; the concrete fields are
        // resolved below and merged in.
        let introspection = operation
            .root_fields(&document)
            .any(|f| matches!(f.name.as_str(), "__schema" | "__type"));
        let mut data = Map::new();
        let mut errors = Vec::new();
        if introspection {
            let executed = apollo_compiler::introspection::check_max_depth(&document, operation)
                .and_then(|()| {
                    apollo_compiler::introspection::partial_execute(
                        &self.schema,
                        &self.implementers,
                        &document,
                        operation,
                        &variables,
                    )
                });
            match executed {
                Ok(executed) => {
                    errors.extend(
                        executed
                            .errors
                            .iter()
                            .filter_map(|e| serde_json::to_value(e).ok()),
                    );
                    if let Some(Value::Object(partial)) =
                        executed.data.and_then(|d| serde_json::to_value(d).ok())
                    {
                        data.extend(partial);
                    }
                }
                Err(e) => {
                    // A request error: no `data` at all.
                    let e = e.to_graphql_error(&document.sources);
                    return json!({"errors": [error_entry(e.message, json!(e.locations), Value::Null)]});
                }
            }
        }
        let variables: Map<String, Value> = serde_json::to_value(variables.into_inner())
            .ok()
            .and_then(|v| v.as_object().cloned())
            .unwrap_or_default();

        let mut roots = Vec::new();
        collect_fields(&document, &operation.selection_set, &mut roots);
        let mut calls = Vec::new();
        for field in &roots {
            match field.name.as_str() {
                "__typename" => {
                    data.insert(field.response_key().to_string(), json!("Query"));
                }
                // Answered above.
                "__schema" | "__type" => {}
                _ => calls.push(RootCall {
                    field,
                    event: self.event(&document, field, &variables, &headers, &identity),
                }),
            }
        }

        // As AppSync does with batching on: up to `max_batch` events per invocation.
        let mut results: Vec<Result<Value, (String, String)>> = Vec::with_capacity(calls.len());
        for chunk in calls.chunks(self.max_batch) {
            let request_id = format!(
                "playground-{}",
                self.requests.fetch_add(1, Ordering::Relaxed) + 1
            );
            if self.max_batch == 1 {
                let outcome = self.invoke(chunk[0].event.clone(), &request_id).await;
                results.push(outcome.map_err(|e| (e.error_type.as_str().to_owned(), e.message)));
                continue;
            }
            let batch = Value::Array(chunk.iter().map(|c| c.event.clone()).collect());
            match self.invoke(batch, &request_id).await {
                Ok(Value::Array(items)) => {
                    for item in items {
                        match item.get("errorType").and_then(Value::as_str) {
                            Some(t) => results.push(Err((
                                t.to_owned(),
                                item["errorMessage"].as_str().unwrap_or_default().to_owned(),
                            ))),
                            None => results.push(Ok(item["data"].clone())),
                        }
                    }
                }
                Ok(other) => chunk.iter().for_each(|_| {
                    results.push(Err((
                        "InternalError".into(),
                        format!("not a batch response: {other}"),
                    )))
                }),
                Err(e) => chunk.iter().for_each(|_| {
                    results.push(Err((e.error_type.as_str().to_owned(), e.message.clone())))
                }),
            }
        }

        let mut failed_non_null = false;
        for (call, result) in calls.iter().zip(results) {
            let key = call.field.response_key().to_string();
            match result {
                Ok(value) => {
                    data.insert(key, project(&document, &value, &call.field.selection_set));
                }
                Err((error_type, message)) => {
                    let mut entry = self.field_error(&document, call.field, &message);
                    entry["errorType"] = json!(error_type);
                    errors.push(entry);
                    failed_non_null |= call.field.definition.ty.is_non_null();
                    data.insert(key, Value::Null);
                }
            }
        }
        // A failed non-null root field nulls the whole data (GraphQL's null propagation).
        let data = if failed_non_null {
            Value::Null
        } else {
            Value::Object(data)
        };
        response(data, errors)
    }

    /// One Lambda invocation through the handler, as AppSync makes it.
    async fn invoke(
        &self,
        payload: Value,
        request_id: &str,
    ) -> Result<Value, appsync::AppSyncError> {
        let budget = crate::stack::invocation_budget(&self.deps);
        let call = appsync::handle_with_report(&self.deps, payload, request_id, budget);
        let (trace_id, (outcome, report)) = match &self.tracing {
            None => (None, call.await),
            Some(tracing) => {
                // As Lambda does for a sampled request: the trace header, and
                // the invocation's span; the subscriber for this call only.
                let header = xray::TraceHeader::start();
                let span = tracing::dispatcher::with_default(&tracing.dispatch, || {
                    xray::invocation_span(Some(&header.to_header()))
                });
                let traced = call
                    .instrument(span)
                    .with_subscriber(tracing.dispatch.clone());
                (Some(header.root), traced.await)
            }
        };
        let ms = |d: std::time::Duration| d.as_secs_f64() * 1000.0;
        let last = json!({
            "traceId": trace_id,
            "requestId": report.request_id,
            "durationMs": ms(report.duration),
            "dynamodbMs": ms(report.timings.profiles),
            "sqlMs": ms(report.timings.sql),
            "legacyMs": ms(report.timings.legacy),
            "items": report.items,
            "errors": report.errors,
        });
        if let Ok(mut slot) = self.last.lock() {
            *slot = Some(last);
        }
        self.tally.add(&report);
        outcome.map(|response| response.to_value())
    }

    /// The last invocation's trace as a timeline of spans (`null` when
    /// tracing is off or before the first invocation).
    pub fn last_trace(&self) -> Value {
        let Some(tracing) = &self.tracing else {
            return Value::Null;
        };
        let last = self.last_invocation();
        let Some(trace_id) = last["traceId"].as_str() else {
            return Value::Null;
        };
        json!({"traceId": trace_id, "spans": tracing.daemon.timeline(trace_id)})
    }

    /// The invocations' reports, added up.
    pub fn tally(&self) -> &ResolverTally {
        &self.tally
    }

    /// Where the last invocation spent its time (`null` before the first).
    pub fn last_invocation(&self) -> Value {
        self.last
            .lock()
            .ok()
            .and_then(|slot| slot.clone())
            .unwrap_or(Value::Null)
    }

    fn field_error(
        &self,
        document: &Valid<ExecutableDocument>,
        field: &Field,
        message: &str,
    ) -> Value {
        let locations: Vec<Value> = field
            .name
            .location()
            .and_then(|l| l.line_column(&document.sources))
            .map(|lc| json!({ "line": lc.line, "column": lc.column, "sourceName": null }))
            .into_iter()
            .collect();
        error_entry(
            message,
            json!(locations),
            json!([field.response_key().as_str()]),
        )
    }

    /// The event AppSync sends a direct Lambda resolver for `field`.
    fn event(
        &self,
        document: &Valid<ExecutableDocument>,
        field: &Field,
        variables: &Map<String, Value>,
        headers: &HashMap<String, String>,
        identity: &Value,
    ) -> Value {
        let arguments: Map<String, Value> = field
            .arguments
            .iter()
            .map(|a| (a.name.to_string(), to_json(&a.value, variables)))
            .collect();
        let mut selection_list = Vec::new();
        selection_paths(document, &field.selection_set, "", &mut selection_list);
        ResolverEvent::query(field.name.as_str(), Value::Object(arguments))
            .headers(headers.iter().map(|(k, v)| (k.clone(), v.clone())))
            .identity(identity.clone())
            .selection(selection_list, field.selection_set.to_string())
            .variables(variables.clone())
            .into_json()
    }
}

/// The fields of a selection set, with fragments expanded (the schema has no
/// interfaces or unions, so every type condition matches).
fn collect_fields<'a>(
    document: &'a ExecutableDocument,
    set: &'a SelectionSet,
    out: &mut Vec<&'a Field>,
) {
    for selection in &set.selections {
        match selection {
            Selection::Field(field) => out.push(field),
            Selection::FragmentSpread(spread) => {
                if let Some(fragment) = document.fragments.get(&spread.fragment_name) {
                    collect_fields(document, &fragment.selection_set, out);
                }
            }
            Selection::InlineFragment(inline) => {
                collect_fields(document, &inline.selection_set, out)
            }
        }
    }
}

/// AppSync's `selectionSetList`: slash-separated paths of the selected fields.
fn selection_paths(
    document: &ExecutableDocument,
    set: &SelectionSet,
    prefix: &str,
    out: &mut Vec<String>,
) {
    let mut fields = Vec::new();
    collect_fields(document, set, &mut fields);
    for field in fields {
        if field.name == "__typename" {
            continue;
        }
        let path = format!("{prefix}{}", field.response_key());
        out.push(path.clone());
        selection_paths(document, &field.selection_set, &format!("{path}/"), out);
    }
}

/// An argument value with its variables substituted, as JSON.
fn to_json(value: &AstValue, variables: &Map<String, Value>) -> Value {
    match value {
        AstValue::Null => Value::Null,
        AstValue::Enum(name) => json!(name.as_str()),
        AstValue::Variable(name) => variables.get(name.as_str()).cloned().unwrap_or(Value::Null),
        AstValue::String(s) => json!(s),
        AstValue::Float(f) => f.try_to_f64().map_or(Value::Null, |f| json!(f)),
        AstValue::Int(i) => i
            .try_to_i32()
            .map_or_else(|_| json!(i.as_str()), |i| json!(i)),
        AstValue::Boolean(b) => json!(b),
        AstValue::List(items) => {
            Value::Array(items.iter().map(|v| to_json(v, variables)).collect())
        }
        AstValue::Object(fields) => Value::Object(
            fields
                .iter()
                .map(|(k, v)| (k.to_string(), to_json(v, variables)))
                .collect(),
        ),
    }
}

/// The part of a resolver's result the selection set asks for, under the response keys.
fn project(document: &ExecutableDocument, value: &Value, set: &SelectionSet) -> Value {
    match value {
        Value::Array(items) => {
            Value::Array(items.iter().map(|v| project(document, v, set)).collect())
        }
        Value::Object(object) if !set.selections.is_empty() => {
            let mut fields = Vec::new();
            collect_fields(document, set, &mut fields);
            let mut out = Map::new();
            for field in fields {
                let projected = if field.name == "__typename" {
                    json!(set.ty.as_str())
                } else {
                    let inner = object.get(field.name.as_str()).unwrap_or(&Value::Null);
                    project(document, inner, &field.selection_set)
                };
                out.insert(field.response_key().to_string(), projected);
            }
            Value::Object(out)
        }
        other => other.clone(),
    }
}
