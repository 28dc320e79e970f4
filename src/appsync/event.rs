//! The event format: what AppSync sends a direct Lambda resolver, read
//! straight from the request body into the parts the resolver uses, and
//! each event turned into a validated item and its caller.

use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use super::{FIELD_NAME, MAX_BATCH, PARENT_TYPE};
use crate::authz::Caller;
use crate::resolver::{ItemRequest, ResolveError, parse_args};
use assessments_common::rules::{is_valid_student_id, json_kind};

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

impl Event {
    /// Who sent it, as its `identity` says.
    pub fn caller(&self) -> Caller {
        Caller::from_identity(self.identity.as_ref().unwrap_or(&Value::Null))
    }

    /// Its `studentId` argument, if it is a valid one (also when other
    /// arguments are not): the student its audit line names.
    pub fn student_id(&self) -> Option<&str> {
        let id = self.arguments.as_ref()?.get("studentId")?.as_str()?;
        is_valid_student_id(id).then_some(id)
    }

    /// The validated item, asked by `caller` (its own [`Event::caller`]).
    pub fn into_request(self, caller: Caller) -> Result<ItemRequest, ResolveError> {
        if let Some(kind) = self.not_an_object {
            return Err(ResolveError::InvalidEvent(format!(
                "an event must be a JSON object, got {kind}"
            )));
        }
        check_field(self.info.as_ref())?;
        Ok(ItemRequest {
            args: parse_args(self.arguments.as_ref())?,
            caller,
        })
    }
}

/// Turns one event into validated arguments and the caller (the fuzzer
/// drives this directly).
pub fn parse_event(event: Event) -> Result<ItemRequest, ResolveError> {
    let caller = event.caller();
    event.into_request(caller)
}

/// The event's `info` names the field this function resolves.
fn check_field(info: Option<&Value>) -> Result<(), ResolveError> {
    let info = match info {
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
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
