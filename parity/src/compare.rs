//! Comparing two answers item by item: what may legitimately differ left out,
//! differing tokens followed page by page.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use crate::summary::Summary;
use crate::target::{Answer, Runner};
use crate::{MAX_FOLLOWED_PAGES, MAX_PATHS};

/// One field's answer: a page, or an error (`errorType`, message).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Item {
    Page(Value),
    Error {
        error_type: Value,
        message: Value,
    },
    /// Not an answer AppSync could use (a batch answer of the wrong shape...).
    Malformed(Value),
}

impl Item {
    fn to_json(&self) -> Value {
        match self {
            Item::Page(page) => json!({ "data": page }),
            Item::Error {
                error_type,
                message,
            } => json!({ "data": null, "errorType": error_type, "errorMessage": message }),
            Item::Malformed(value) => json!({ "malformed": value }),
        }
    }

    fn next_token(&self) -> Option<&str> {
        match self {
            Item::Page(page) => page.get("nextToken").and_then(Value::as_str),
            _ => None,
        }
    }

    /// The item with what may differ taken out: `processedAt`, the request id
    /// of a message, the token's bytes (kept only as present or absent).
    fn normalized(&self) -> Value {
        let mut value = self.to_json();
        strip_processed_at(&mut value);
        if let Some(token) = value.pointer_mut("/data/nextToken")
            && token.is_string()
        {
            *token = json!("<token>");
        }
        if let Some(Value::String(message)) = value.get_mut("errorMessage") {
            *message = mask_request_id(message);
        }
        value
    }
}

fn strip_processed_at(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.remove("processedAt");
            map.values_mut().for_each(strip_processed_at);
        }
        Value::Array(values) => values.iter_mut().for_each(strip_processed_at),
        _ => {}
    }
}

/// `... request id 8f1c-...)` → `... request id <id>)`: each invocation has its own.
fn mask_request_id(message: &str) -> String {
    const MARK: &str = "request id ";
    let Some(at) = message.find(MARK) else {
        return message.to_owned();
    };
    let start = at + MARK.len();
    let end = message[start..]
        .find(|c: char| c.is_whitespace() || c == ')' || c == ',')
        .map_or(message.len(), |n| start + n);
    format!("{}<id>{}", &message[..start], &message[end..])
}

/// The items of an answer: one for a single field, one per event of a batch.
pub(crate) fn items_of(event: &Value, answer: &Answer) -> Vec<Item> {
    let error = |doc: &Value| Item::Error {
        error_type: doc.get("errorType").cloned().unwrap_or(Value::Null),
        message: doc.get("errorMessage").cloned().unwrap_or(Value::Null),
    };
    match (event.as_array(), answer) {
        (None, Answer::Response(page)) => vec![Item::Page(page.clone())],
        (None, Answer::FunctionError(doc)) => vec![error(doc)],
        (Some(events), Answer::Response(Value::Array(answers)))
            if answers.len() == events.len() =>
        {
            answers
                .iter()
                .map(|answer| match answer.get("data") {
                    Some(data) if !data.is_null() => Item::Page(data.clone()),
                    _ if answer.get("errorType").is_some_and(|t| !t.is_null()) => error(answer),
                    _ => Item::Malformed(answer.clone()),
                })
                .collect()
        }
        (Some(events), other) => {
            let whole = match other {
                Answer::Response(value) => Item::Malformed(value.clone()),
                Answer::FunctionError(doc) => error(doc),
            };
            vec![whole; events.len()]
        }
    }
}

/// The single-field event of item `index` of `event`.
fn item_event(event: &Value, index: usize) -> Value {
    match event.as_array() {
        Some(events) => events.get(index).cloned().unwrap_or(Value::Null),
        None => event.clone(),
    }
}

fn with_token(event: &Value, token: &str) -> Value {
    let mut event = event.clone();
    if let Some(arguments) = event.get_mut("arguments").and_then(Value::as_object_mut) {
        arguments.insert("nextToken".to_owned(), json!(token));
    }
    event
}

/// Where two JSON values differ (JSON pointers), at most [`MAX_PATHS`].
fn differing_paths(a: &Value, b: &Value, path: &str, found: &mut Vec<String>) {
    if found.len() >= MAX_PATHS || a == b {
        return;
    }
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for key in keys {
                let (va, vb) = (
                    x.get(key).unwrap_or(&Value::Null),
                    y.get(key).unwrap_or(&Value::Null),
                );
                differing_paths(va, vb, &format!("{path}/{key}"), found);
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (va, vb)) in x.iter().zip(y).enumerate() {
                differing_paths(va, vb, &format!("{path}/{i}"), found);
            }
        }
        _ => found.push(if path.is_empty() {
            "/".to_owned()
        } else {
            path.to_owned()
        }),
    }
}

/// How one item compared.
pub(crate) enum Compared {
    Equal,
    Differ(Value),
}

/// Compares item `index` of both answers, following the tokens while they
/// differ in their bytes only.
pub(crate) async fn compare_item(
    old: &Runner,
    new: &Runner,
    event: &Value,
    index: usize,
    first: (Item, Item),
    summary: &mut Summary,
) -> Compared {
    let (mut a, mut b) = first;
    let mut page = 0;
    let base = item_event(event, index);
    loop {
        let (na, nb) = (a.normalized(), b.normalized());
        if na != nb {
            let mut paths = Vec::new();
            differing_paths(&na, &nb, "", &mut paths);
            return Compared::Differ(json!({
                "item": index,
                "page": page,
                "event": base,
                "old": a.to_json(),
                "new": b.to_json(),
                "paths": paths,
            }));
        }
        let (Some(ta), Some(tb)) = (a.next_token(), b.next_token()) else {
            return Compared::Equal;
        };
        if ta == tb || page >= MAX_FOLLOWED_PAGES {
            return Compared::Equal;
        }
        page += 1;
        summary.followed_pages += 1;
        let events = (with_token(&base, ta), with_token(&base, tb));
        match next_pages(old, new, events, summary).await {
            Ok(next) => (a, b) = next,
            Err((event, old, new)) => {
                return Compared::Differ(json!({
                    "item": index,
                    "page": page,
                    "event": event,
                    "old": old,
                    "new": new,
                    "paths": ["(a failed invocation)"],
                }));
            }
        }
    }
}

/// Each side's next page, with its own token; a failed invocation on either
/// side is the difference to report: old's event and each side's error.
async fn next_pages(
    old: &Runner,
    new: &Runner,
    (ea, eb): (Value, Value),
    summary: &mut Summary,
) -> Result<(Item, Item), (Value, Option<String>, Option<String>)> {
    let ((ra, da), (rb, db)) = tokio::join!(old.timed(&ea), new.timed(&eb));
    summary.latency_old.record(da);
    summary.latency_new.record(db);
    match (ra, rb) {
        (Ok(ra), Ok(rb)) => {
            // One item each (a follow-up is one field's event); none would be malformed.
            let first = |items: Vec<Item>| {
                items
                    .into_iter()
                    .next()
                    .unwrap_or(Item::Malformed(Value::Null))
            };
            Ok((first(items_of(&ea, &ra)), first(items_of(&eb, &rb))))
        }
        (ra, rb) => {
            summary.failed_old += usize::from(ra.is_err());
            summary.failed_new += usize::from(rb.is_err());
            Err((ea, ra.err(), rb.err()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn processed_at_request_ids_and_token_bytes_are_left_out() {
        let a = Item::Page(json!({
            "items": [{"id": "1", "processedAt": "2026-12-07T01:00:00Z"}],
            "nextToken": "aaa"
        }));
        let b = Item::Page(json!({
            "items": [{"id": "1", "processedAt": "2026-12-07T02:00:00Z"}],
            "nextToken": "bbb"
        }));
        assert_eq!(a.normalized(), b.normalized());
        let c = Item::Page(json!({"items": [{"id": "1"}], "nextToken": null}));
        assert_ne!(
            a.normalized(),
            c.normalized(),
            "a last page is not a middle page"
        );
        let e1 = Item::Error {
            error_type: json!("LegacyComponentError"),
            message: json!("failed (the function's log has the detail under request id 12-ab)"),
        };
        let e2 = Item::Error {
            error_type: json!("LegacyComponentError"),
            message: json!("failed (the function's log has the detail under request id 99)"),
        };
        assert_eq!(e1.normalized(), e2.normalized());
    }

    #[test]
    fn a_batch_answer_is_one_item_per_event_and_a_wrong_shape_is_malformed() {
        let event = json!([{"arguments": {}}, {"arguments": {}}]);
        let answer = Answer::Response(json!([
            {"data": {"items": [], "nextToken": null}},
            {"data": null, "errorType": "Unauthorized", "errorMessage": "no"}
        ]));
        let items = items_of(&event, &answer);
        assert!(matches!(items[0], Item::Page(_)));
        assert!(matches!(items[1], Item::Error { .. }));
        let short = items_of(&event, &Answer::Response(json!([{"data": {}}])));
        assert!(short.iter().all(|i| matches!(i, Item::Malformed(_))));
    }

    #[test]
    fn differing_paths_name_where() {
        let mut paths = Vec::new();
        differing_paths(
            &json!({"data": {"items": [{"score": 1}, {"score": 2}]}}),
            &json!({"data": {"items": [{"score": 1}, {"score": 3}]}}),
            "",
            &mut paths,
        );
        assert_eq!(paths, ["/data/items/1/score"]);
    }
}
