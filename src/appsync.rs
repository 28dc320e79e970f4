//! The AppSync edge: direct Lambda resolver events in, field values or
//! AppSync-shaped errors out. The only module that knows the event format.
//!
//! The contract, from the AppSync developer guide ("Direct Lambda resolvers"
//! in <https://docs.aws.amazon.com/appsync/latest/devguide/resolver-mapping-template-reference-lambda.html>
//! and "Returning individual errors" in
//! <https://docs.aws.amazon.com/appsync/latest/devguide/tutorial-lambda-resolvers.html>):
//! * single invoke: the event is one object; the function returns the
//!   field's value, or fails, and AppSync shows the Lambda error's
//!   `errorType` and `errorMessage` to the client;
//! * batch invoke (batching on, `MaxBatchSize` > 1): the event is a list of
//!   those objects; the function returns a list of the same length and
//!   order in which every element is `{"data": ..., "errorMessage": ...,
//!   "errorType": ...}`, so one item can fail without failing the others.

use std::time::Instant;

use assessments_common::budget::Budget;
use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use crate::audit::{self, AuditEntry, StudentRefs};
use crate::authz::{Caller, TokenKind};
use crate::deps::Deps;
use crate::report::InvocationReport;
use assessments_common::rules::{is_valid_student_id, json_kind};

use crate::resolver::{AssessmentPage, ErrorType, ItemRequest, ResolveError, parse_args};

/// The field this function resolves.
pub const PARENT_TYPE: &str = "Query";
pub const FIELD_NAME: &str = "getAssessments";
/// AppSync's largest `MaxBatchSize`; a bigger list is not an AppSync event.
pub const MAX_BATCH: usize = 2000;
/// Lambda's limit on a synchronous response, in bytes ("Invocation payload
/// (request and response): 6 MB each for synchronous", Lambda quotas): a
/// response over it fails the whole invocation with no typed error.
pub const RESPONSE_LIMIT_BYTES: usize = 6 * 1024 * 1024;

/// What an invocation answers, serialized once, straight into the response
/// body (no `serde_json::Value` in between: building, serializing and
/// dropping one cost a third of an invocation's instructions).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(untagged)]
pub enum Response {
    /// A single invoke: the field's value.
    Page(AssessmentPage),
    /// A batch invoke: one element per event, in order.
    Batch(Vec<BatchElement>),
}

/// One element of a batch response: `{"data": page}`, or `{"data": null,
/// "errorMessage": ..., "errorType": ...}`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(untagged)]
pub enum BatchElement {
    Data {
        data: AssessmentPage,
    },
    Error {
        data: (),
        #[serde(rename = "errorMessage")]
        error_message: String,
        #[serde(rename = "errorType")]
        error_type: &'static str,
    },
}

impl Response {
    /// The response as a JSON value (for callers that inspect it: the
    /// playground's projection, tests); the function itself never builds one.
    pub fn to_value(&self) -> Value {
        // Serializing our own types to a Value cannot fail (string keys, finite numbers).
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

/// A failed single invoke, as Lambda reports it to AppSync.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppSyncError {
    pub error_type: ErrorType,
    pub message: String,
}

impl std::fmt::Display for AppSyncError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.error_type, self.message)
    }
}

impl std::error::Error for AppSyncError {}

impl AppSyncError {
    /// What the client sees of `e`, in the invocation `request_id`.
    pub fn new(e: &ResolveError, request_id: &str) -> Self {
        AppSyncError {
            error_type: e.error_type(),
            message: e.client_message(request_id),
        }
    }
}

impl From<AppSyncError> for lambda_runtime::Diagnostic {
    fn from(e: AppSyncError) -> Self {
        lambda_runtime::Diagnostic {
            error_type: e.error_type.as_str().to_owned(),
            error_message: e.message,
        }
    }
}

/// An invocation's payload as Lambda delivers it: one event, or AppSync's
/// batch. Deserialized straight from the request body (`LambdaEvent<Invocation>`):
/// of each event only `info`, `arguments` and `identity` are kept; the rest
/// (request headers, source, stash, ...) is skipped unread. Never fails on
/// JSON of the wrong shape: that becomes an `InvalidEvent` answer, as the
/// AppSync error the caller sees, not a runtime deserialization failure.
#[derive(Debug, Clone, PartialEq)]
pub enum Invocation {
    Single(Event),
    Batch(Vec<Event>),
}

/// The parts of one AppSync direct resolver event the resolver reads.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Event {
    info: Option<Value>,
    arguments: Option<Value>,
    identity: Option<Value>,
    /// The event was not an object: what it was instead.
    not_an_object: Option<&'static str>,
}

impl From<Value> for Invocation {
    fn from(payload: Value) -> Self {
        // Reading a `Value` cannot fail (its keys are strings, and every
        // shape is accepted); kept as an answer rather than a panic.
        Invocation::deserialize(payload)
            .unwrap_or_else(|_| Invocation::Single(not_an_object("an unreadable value")))
    }
}

/// Field names of an event: the three read, and everything else.
#[derive(serde::Deserialize)]
#[serde(field_identifier, rename_all = "camelCase")]
enum EventField {
    Info,
    Arguments,
    Identity,
    #[serde(other)]
    Other,
}

fn read_event<'de, A: MapAccess<'de>>(mut map: A) -> Result<Event, A::Error> {
    let mut event = Event::default();
    while let Some(field) = map.next_key::<EventField>()? {
        match field {
            EventField::Info => event.info = Some(map.next_value()?),
            EventField::Arguments => event.arguments = Some(map.next_value()?),
            EventField::Identity => event.identity = Some(map.next_value()?),
            EventField::Other => {
                map.next_value::<IgnoredAny>()?;
            }
        }
    }
    Ok(event)
}

fn not_an_object(kind: &'static str) -> Event {
    Event {
        not_an_object: Some(kind),
        ..Event::default()
    }
}

impl<'de> Deserialize<'de> for Event {
    /// A batch's element: an object is an event; anything else (a nested
    /// list included) is kept as what it was, to be answered `InvalidEvent`.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(match Invocation::deserialize(deserializer)? {
            Invocation::Single(event) => event,
            Invocation::Batch(_) => not_an_object("a list"),
        })
    }
}

/// Reads the payload: an object is one event, an array a batch, anything
/// else an event that is not an object.
struct InvocationVisitor;

fn other<E>(kind: &'static str) -> Result<Invocation, E> {
    Ok(Invocation::Single(not_an_object(kind)))
}

impl<'de> Visitor<'de> for InvocationVisitor {
    type Value = Invocation;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an AppSync event or a batch of them")
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Invocation, E> {
        other("a boolean")
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Invocation, E> {
        other("a number")
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Invocation, E> {
        other("a number")
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Invocation, E> {
        other("a number")
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Invocation, E> {
        other("a string")
    }
    fn visit_unit<E: de::Error>(self) -> Result<Invocation, E> {
        other("null")
    }
    fn visit_none<E: de::Error>(self) -> Result<Invocation, E> {
        other("null")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Invocation, A::Error> {
        let mut events = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(MAX_BATCH));
        while let Some(event) = seq.next_element::<Event>()? {
            events.push(event);
        }
        Ok(Invocation::Batch(events))
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Invocation, A::Error> {
        read_event(map).map(Invocation::Single)
    }
}

impl<'de> Deserialize<'de> for Invocation {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(InvocationVisitor)
    }
}

/// The payload as the runtime hands it over (`LambdaEvent<Payload>`):
/// lambda_runtime deserializes through `serde_path_to_error`, which tracks
/// (and allocates) every key of the event, headers and claims included, to
/// name the path of an error that [`Invocation`] never raises. So the body
/// is taken as the raw JSON it is, borrowed, and read by serde_json itself.
#[derive(Debug, Clone, PartialEq)]
pub struct Payload(pub Invocation);

impl<'de> Deserialize<'de> for Payload {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = <&serde_json::value::RawValue>::deserialize(deserializer)?;
        serde_json::from_str(raw.get())
            .map(Payload)
            .map_err(de::Error::custom)
    }
}

impl From<Payload> for Invocation {
    fn from(payload: Payload) -> Self {
        payload.0
    }
}

/// Turns one event into validated arguments and the caller (the fuzzer
/// drives this directly).
pub fn parse_event(event: Event) -> Result<ItemRequest, ResolveError> {
    let caller = event_caller(&event);
    parse_event_as(event, caller)
}

/// Who sent `event`, as its `identity` says.
pub fn event_caller(event: &Event) -> Caller {
    caller(event.identity.as_ref().unwrap_or(&Value::Null))
}

/// The `studentId` argument of `event`, if it is a valid one (also when
/// other arguments are not).
fn event_student(event: &Event) -> Option<&str> {
    let id = event.arguments.as_ref()?.get("studentId")?.as_str()?;
    is_valid_student_id(id).then_some(id)
}

/// [`parse_event`], the caller already read.
fn parse_event_as(event: Event, caller: Caller) -> Result<ItemRequest, ResolveError> {
    if let Some(kind) = event.not_an_object {
        return Err(ResolveError::InvalidEvent(format!(
            "an event must be a JSON object, got {kind}"
        )));
    }
    let info = match &event.info {
        Some(Value::Object(info)) => info,
        Some(other) => {
            return Err(ResolveError::InvalidEvent(format!(
                "info must be an object, got {}",
                json_kind(other)
            )));
        }
        None => {
            return Err(ResolveError::InvalidEvent(
                "missing field `info`".to_owned(),
            ));
        }
    };
    let name = |key: &str| match info.get(key) {
        Some(Value::String(name)) => Ok(name.as_str()),
        Some(other) => Err(ResolveError::InvalidEvent(format!(
            "info.{key} must be a string, got {}",
            json_kind(other)
        ))),
        None => Err(ResolveError::InvalidEvent(format!(
            "missing field `info.{key}`"
        ))),
    };
    let (parent, field) = (name("parentTypeName")?, name("fieldName")?);
    if parent != PARENT_TYPE || field != FIELD_NAME {
        let shorten = |s: &str| s.chars().take(64).collect::<String>();
        return Err(ResolveError::UnsupportedField {
            parent: shorten(parent),
            field: shorten(field),
        });
    }
    Ok(ItemRequest {
        args: parse_args(event.arguments.as_ref())?,
        caller,
    })
}

/// The caller from the event's `identity`, by the fields each auth mode sets
/// ("Identity" in AppSync's resolver context reference):
/// * API key: `null`;
/// * Lambda authorizer: `resolverContext`;
/// * IAM: `accountId`, `userArn`, `cognitoIdentityPoolId`...;
/// * Cognito user pools: `claims`, with `username`, `groups`, `defaultAuthStrategy`;
/// * OIDC: `claims`, `issuer` and `sub` only.
///
/// Written by hand: `aws_lambda_events`' `AppSyncIdentity` is an untagged
/// enum whose IAM variant requires nothing but `sourceIp`, so a Cognito
/// identity deserializes as IAM, and its Cognito variant has no `groups`.
pub fn caller(identity: &Value) -> Caller {
    let Value::Object(identity) = identity else {
        return if identity.is_null() {
            Caller::ApiKey
        } else {
            Caller::Unrecognized
        };
    };
    if let Some(context) = identity.get("resolverContext") {
        return match context {
            Value::Object(context) => Caller::LambdaAuthorizer {
                context: context.clone(),
            },
            Value::Null => Caller::LambdaAuthorizer {
                context: Map::new(),
            },
            _ => Caller::Unrecognized,
        };
    }
    if ["accountId", "userArn", "cognitoIdentityPoolId"]
        .iter()
        .any(|k| identity.contains_key(*k))
    {
        return Caller::Iam {
            user_arn: identity
                .get("userArn")
                .and_then(Value::as_str)
                .map(str::to_owned),
        };
    }
    let Some(Value::Object(claims)) = identity.get("claims") else {
        return Caller::Unrecognized;
    };
    let strings = |value: Option<&Value>| -> Vec<String> {
        match value {
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect(),
            Some(Value::String(one)) => vec![one.clone()],
            _ => Vec::new(),
        }
    };
    let cognito = ["username", "groups", "defaultAuthStrategy"]
        .iter()
        .any(|k| identity.contains_key(*k));
    let (kind, groups) = if cognito {
        let mut groups = strings(identity.get("groups"));
        groups.extend(strings(claims.get("cognito:groups")));
        (TokenKind::Cognito, groups)
    } else {
        (TokenKind::Oidc, strings(claims.get("groups")))
    };
    Caller::Token {
        kind,
        groups,
        claims: claims.clone(),
    }
}

/// Handles one Lambda invocation: a single event or a batch, every item's
/// waits bounded by `budget` (see [`Deps::invocation_budget`]).
pub async fn handle(
    deps: &Deps,
    payload: impl Into<Invocation>,
    request_id: &str,
    budget: Budget,
) -> Result<Response, AppSyncError> {
    handle_with_report(deps, payload, request_id, budget)
        .await
        .0
}

/// `handle`, also returning what the invocation reported (for benchmarks).
pub async fn handle_with_report(
    deps: &Deps,
    payload: impl Into<Invocation>,
    request_id: &str,
    budget: Budget,
) -> (Result<Response, AppSyncError>, InvocationReport) {
    let started = Instant::now();
    let now = chrono::Utc::now();
    let (batch, events) = match payload.into() {
        Invocation::Batch(events) if events.len() > MAX_BATCH => {
            let e = ResolveError::InvalidEvent(format!(
                "a batch of {} exceeds AppSync's {MAX_BATCH}",
                events.len()
            ));
            let report = InvocationReport::rejected(request_id, started.elapsed(), e.error_type());
            deps.record(&report, Vec::new(), &audit::log_timestamp());
            return (Err(AppSyncError::new(&e, request_id)), report);
        }
        Invocation::Batch(events) => (true, events),
        Invocation::Single(event) => (false, vec![event]),
    };
    let resolver = &deps.resolver;
    let mut audit = Vec::with_capacity(events.len());
    let mut items = Vec::with_capacity(events.len());
    let mut refs = StudentRefs::new(&deps.audit);
    for event in events {
        let caller = event_caller(&event);
        let policy = resolver.policy();
        audit.push(AuditEntry::new(
            &caller,
            event_student(&event),
            policy,
            &mut refs,
        ));
        items.push(parse_event_as(event, caller));
    }
    let (mut results, timings) = resolver.get_assessments(items, now, &budget).await;
    if batch {
        fit_batch(&mut results, request_id);
    }

    let mut report =
        InvocationReport::new(request_id, batch, results.len(), started.elapsed(), timings);
    let at = audit::log_timestamp();
    let mut lines = Vec::with_capacity(256 * audit.len());
    for (result, entry) in results.iter().zip(&audit) {
        let outcome = result.as_ref().map(|_| ());
        entry.write(&mut lines, &at, request_id, &deps.audit, outcome);
        if let Err(e) = result {
            report.count_error(e.error_type());
            // The caller's own errors name the student: the audit line has them.
            if !e.is_callers() {
                tracing::warn!(request_id, error_type = %e.error_type(), error = %e, "getAssessments item failed");
            }
        }
    }
    deps.record(&report, lines, &at);
    (answer(results, batch, request_id), report)
}

/// The invocation's answer: the batch's list (every item its data or its
/// error), or the single item's page or error.
fn answer(
    results: Vec<Result<AssessmentPage, ResolveError>>,
    batch: bool,
    request_id: &str,
) -> Result<Response, AppSyncError> {
    if batch {
        let list = results
            .into_iter()
            .map(|result| match result {
                Ok(page) => BatchElement::Data { data: page },
                Err(e) => BatchElement::Error {
                    data: (),
                    error_message: e.client_message(request_id),
                    error_type: e.error_type().as_str(),
                },
            })
            .collect();
        return Ok(Response::Batch(list));
    }
    match results.into_iter().next() {
        Some(Ok(page))
            if page.json_len_bound() > RESPONSE_LIMIT_BYTES
                && json_len(&page) > RESPONSE_LIMIT_BYTES =>
        {
            let too_large = ResolveError::ResponseTooLarge {
                limit_bytes: RESPONSE_LIMIT_BYTES,
                batch: false,
            };
            Err(AppSyncError::new(&too_large, request_id))
        }
        Some(Ok(page)) => Ok(Response::Page(page)),
        Some(Err(e)) => Err(AppSyncError::new(&e, request_id)),
        None => Err(AppSyncError {
            error_type: ErrorType::InternalError,
            message: "no result".to_owned(),
        }),
    }
}

/// The length of `value` as JSON, without building it.
fn json_len(value: &impl serde::Serialize) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0 += bytes.len();
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    // Writing to a counter cannot fail, and our pages always serialize.
    let _ = serde_json::to_writer(&mut count, value);
    count.0
}

/// `{"data":` + page + `}`, or the error element (its strings at their
/// longest JSON-escaped): an element's bytes in the batch response.
fn element_len(result: &Result<AssessmentPage, ResolveError>, request_id: &str) -> usize {
    match result {
        Ok(page) => 9 + json_len(page),
        Err(e) => 48 + json_len(&e.client_message(request_id)) + json_len(&e.error_type().as_str()),
    }
}

/// Cuts a batch's response to Lambda's limit: items are replaced, from the
/// end, by `ResponseTooLarge` errors until the whole list fits.
fn fit_batch(results: &mut [Result<AssessmentPage, ResolveError>], request_id: &str) {
    let element_len =
        |result: &Result<AssessmentPage, ResolveError>| element_len(result, request_id);
    // Bounded without serializing first: nearly always far under the limit.
    let bound = 2
        + results.len()
        + results
            .iter()
            .map(|result| match result {
                Ok(page) => 9 + page.json_len_bound(),
                Err(_) => element_len(result),
            })
            .sum::<usize>();
    if bound <= RESPONSE_LIMIT_BYTES {
        return;
    }
    let mut total =
        2 + results.len().saturating_sub(1) + results.iter().map(element_len).sum::<usize>();
    for result in results.iter_mut().rev() {
        if total <= RESPONSE_LIMIT_BYTES {
            break;
        }
        if result.is_ok() {
            let cut = Err(ResolveError::ResponseTooLarge {
                limit_bytes: RESPONSE_LIMIT_BYTES,
                batch: true,
            });
            total = total - element_len(result) + element_len(&cut);
            *result = cut;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn responses_serialize_as_appsync_reads_them() {
        let page = AssessmentPage {
            items: Vec::new(),
            next_token: Some("t".to_owned()),
        };
        let batch = Response::Batch(vec![
            BatchElement::Data { data: page.clone() },
            BatchElement::Error {
                data: (),
                error_message: "no".to_owned(),
                error_type: "NotFound",
            },
        ]);
        assert_eq!(
            serde_json::to_string(&batch).expect("serialized"),
            r#"[{"data":{"items":[],"nextToken":"t"}},{"data":null,"errorMessage":"no","errorType":"NotFound"}]"#
        );
        assert_eq!(
            Response::Page(page).to_value(),
            json!({"items": [], "nextToken": "t"})
        );
    }

    #[test]
    fn each_auth_mode_identity_is_read_as_its_caller() {
        assert_eq!(caller(&Value::Null), Caller::ApiKey);
        // As AppSync sends them (the developer guide's examples).
        let cognito = json!({
            "sub": "192879fc-a240-4bf1-ab5a-d6a00f3063f9",
            "issuer": "https://cognito-idp.us-west-2.amazonaws.com/us-west-2_abc",
            "username": "teacher1",
            "claims": {"custom:schoolId": "sch-001", "cognito:groups": ["teachers"]},
            "sourceIp": ["203.0.113.1"],
            "defaultAuthStrategy": "ALLOW",
            "groups": ["staff"]
        });
        match caller(&cognito) {
            Caller::Token {
                kind: TokenKind::Cognito,
                groups,
                claims,
            } => {
                assert_eq!(groups, ["staff", "teachers"]);
                assert_eq!(claims["custom:schoolId"], "sch-001");
            }
            other => panic!("not Cognito: {other:?}"),
        }
        let oidc = json!({
            "claims": {"groups": ["admins"], "sub": "x"},
            "issuer": "https://idp.example.com",
            "sub": "x"
        });
        assert!(matches!(
            caller(&oidc),
            Caller::Token { kind: TokenKind::Oidc, groups, .. } if groups == ["admins"]
        ));
        let iam = json!({
            "accountId": "111122223333",
            "cognitoIdentityPoolId": null,
            "cognitoIdentityId": null,
            "sourceIp": ["203.0.113.1"],
            "username": "AROAEXAMPLE:session",
            "userArn": "arn:aws:sts::111122223333:assumed-role/reports/session"
        });
        assert_eq!(
            caller(&iam),
            Caller::Iam {
                user_arn: Some("arn:aws:sts::111122223333:assumed-role/reports/session".into())
            }
        );
        let lambda = json!({"resolverContext": {"schoolId": "sch-002"}});
        assert!(
            matches!(caller(&lambda), Caller::LambdaAuthorizer { context } if context["schoolId"] == "sch-002")
        );
        for odd in [
            json!("admin"),
            json!({}),
            json!({"claims": "x"}),
            json!({"resolverContext": 1}),
        ] {
            assert_eq!(caller(&odd), Caller::Unrecognized, "{odd}");
        }
    }

    #[test]
    fn the_identity_never_makes_an_event_invalid() {
        let event =
            testkit::appsync::ResolverEvent::get_assessments(json!({"studentId": "stu-0001"}))
                .identity(json!({"claims": null, "weird": true}))
                .into_json();
        let item = parse_event(Event::deserialize(event).expect("read")).expect("a valid event");
        assert_eq!(item.caller, Caller::Unrecognized);
        assert_eq!(item.args.student_id, "stu-0001");
    }

    fn invalid_event_message(payload: &str) -> String {
        let invocation: Invocation = serde_json::from_str(payload).expect("any JSON is read");
        let event = match invocation {
            Invocation::Single(event) => event,
            Invocation::Batch(mut events) => events.remove(0),
        };
        match parse_event(event) {
            Err(ResolveError::InvalidEvent(message)) => message,
            other => panic!("{payload}: {other:?}"),
        }
    }

    #[test]
    fn any_json_is_read_and_the_wrong_shapes_are_invalid_events() {
        for (payload, message) in [
            ("\"text\"", "an event must be a JSON object, got a string"),
            ("17", "an event must be a JSON object, got a number"),
            ("null", "an event must be a JSON object, got null"),
            ("[true]", "an event must be a JSON object, got a boolean"),
            ("[[1, 2]]", "an event must be a JSON object, got a list"),
            (r#"{"hello": "world"}"#, "missing field `info`"),
            (r#"{"info": []}"#, "info must be an object, got a list"),
            (
                r#"{"info": {"fieldName": "getAssessments"}}"#,
                "missing field `info.parentTypeName`",
            ),
            (
                r#"{"info": {"parentTypeName": "Query", "fieldName": 3}}"#,
                "info.fieldName must be a string, got a number",
            ),
        ] {
            assert_eq!(invalid_event_message(payload), message, "{payload}");
        }
        // Not JSON at all is still refused by the JSON reader.
        assert!(serde_json::from_str::<Invocation>("{").is_err());
    }

    #[test]
    fn an_event_is_read_the_same_from_the_body_and_from_a_value() {
        let event = testkit::appsync::ResolverEvent::get_assessments(
            json!({"studentId": "stu-0001", "limit": 5, "assessmentType": "ORAL_READING_FLUENCY"}),
        )
        .identity(json!({"sub": "u-1", "issuer": "https://idp", "claims": {"sub": "u-1"}}))
        .into_json();
        let batch = Value::Array(vec![event.clone(), json!("odd"), event.clone()]);
        for payload in [event, batch] {
            let from_body: Invocation =
                serde_json::from_slice(&serde_json::to_vec(&payload).unwrap_or_default())
                    .expect("read");
            assert_eq!(from_body, Invocation::from(payload.clone()), "{payload}");
            // As lambda_runtime reads the body: through serde_path_to_error.
            let body = serde_json::to_vec(&payload).unwrap_or_default();
            let as_runtime: Payload =
                serde_path_to_error::deserialize(&mut serde_json::Deserializer::from_slice(&body))
                    .expect("read as the runtime reads it");
            assert_eq!(as_runtime.0, from_body, "{payload}");
        }
        // Not JSON fails as before, whichever way it is read.
        let broken = serde_path_to_error::deserialize::<_, Payload>(
            &mut serde_json::Deserializer::from_slice(b"[{\"info\": "),
        );
        assert!(broken.is_err());
        let Invocation::Single(event) = Invocation::from(
            testkit::appsync::ResolverEvent::get_assessments(json!({"studentId": "stu-0001"}))
                .into_json(),
        ) else {
            panic!("one event");
        };
        // Read: what the resolver uses; skipped unread: the request, source, stash.
        assert!(event.info.is_some() && event.arguments.is_some());
        let item = parse_event(event).expect("a valid event");
        assert_eq!(item.args.student_id, "stu-0001");
        assert_eq!(item.args.limit, crate::resolver::DEFAULT_LIMIT);
    }
}
