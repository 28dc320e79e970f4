//! The fuzz targets' entry points (`fuzz_targets/`), shared with their
//! regression test (`tests/fuzz_corpus.rs` includes this file, and replays
//! the committed corpus and every input that once broke something on stable
//! Rust). Each takes arbitrary bytes and must return without panicking,
//! however malformed they are. Only the resolver's public API is used: the
//! product carries no fuzzing code.
#![allow(dead_code)] // each includer uses its own part

use assessments_resolver::appsync::{Invocation, MAX_BATCH, Payload, parse_event};
use assessments_resolver::resolver::{TokenScope, TokenSigner};
use legacy_bridge::protocol::{
    Reply, WorkerProtocolError, check_scored_reply, decode_reply, payload_len,
};
use legacy_bridge::{AssessmentRow, AssessmentType};

const KEY: &[u8] = b"fuzzing-key-fuzzing-key-fuzzing-key!";

/// AppSync direct-resolver events as bytes off the wire: JSON, the event
/// shape (single or batch), argument validation and `nextToken` verification.
pub fn appsync_event(data: &[u8]) {
    // As lambda_runtime reads the request body.
    let Ok(Payload(payload)) = serde_json::from_slice::<Payload>(data) else {
        return;
    };
    let events = match payload {
        Invocation::Batch(events) if events.len() > MAX_BATCH => return,
        Invocation::Batch(events) => events,
        Invocation::Single(event) => vec![event],
    };
    let Ok(signer) = TokenSigner::new(KEY) else {
        return;
    };
    for event in events {
        let Ok(item) = parse_event(event) else {
            continue;
        };
        let args = item.args;
        if let Some(token) = &args.next_token {
            let scope = TokenScope {
                student_id: &args.student_id,
                assessment_type: args.assessment_type,
                from: args.from,
                to: args.to,
            };
            let _ = signer.verify(token, &scope, chrono::Utc::now());
        }
    }
}

/// What a legacy worker writes back, as the supervisor reads it (a worker
/// whose memory the native code corrupted may write anything): frames,
/// replies, and the checks of a reply against its request. An accepted reply
/// must be exactly what the checks promise.
pub fn worker_reply(data: &[u8]) {
    let rows: Vec<AssessmentRow> = ["a-1", "a-2"]
        .iter()
        .map(|id| testkit::legacy::row(id, AssessmentType::ReadingComprehension, 20, 17, 300))
        .collect();
    for reply in decode_reply_stream(data).into_iter().flatten() {
        if let Reply::Scored { id, results, .. } = reply
            && check_scored_reply(1, &rows, id, &results).is_ok()
        {
            assert_eq!(results.len(), rows.len());
            assert!(results.iter().zip(&rows).all(|(r, row)| r.id == row.id
                && r.percentile.is_finite()
                && r.scaled_score.is_finite()
                && r.accuracy.is_finite()));
        }
    }
}

/// Splits a byte stream into frames and decodes each as a reply: what the
/// supervisor does with a worker's output, as one function (the `worker_reply` target).
/// Stops at the first frame that is too large or cut off.
pub fn decode_reply_stream(mut stream: &[u8]) -> Vec<Result<Reply, WorkerProtocolError>> {
    let mut replies = Vec::new();
    while !stream.is_empty() {
        let Some((header, rest)) = stream.split_first_chunk::<4>() else {
            replies.push(Err(WorkerProtocolError::Truncated {
                expected: 4,
                got: stream.len(),
            }));
            break;
        };
        let len = match payload_len(*header) {
            Ok(len) => len,
            Err(e) => {
                replies.push(Err(e));
                break;
            }
        };
        if rest.len() < len {
            replies.push(Err(WorkerProtocolError::Truncated {
                expected: len,
                got: rest.len(),
            }));
            break;
        }
        let (payload, rest) = rest.split_at(len);
        replies.push(decode_reply(payload));
        stream = rest;
    }
    replies
}
