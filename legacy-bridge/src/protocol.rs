//! The supervisor–worker protocol of process isolation: frames of a 4-byte
//! little-endian length and a postcard payload, over the worker's stdin
//! (requests) and a private copy of its stdout (replies).
//!
//! The supervisor treats what comes back as untrusted: a worker whose memory
//! the native component corrupted may write anything. Every length is checked
//! before anything is allocated, every reply is decoded into owned values and
//! checked against the request (same id, one entry per row, same ids, every
//! number in range) before the resolver sees it. `fuzz/` drives the decoder.

use serde::{Deserialize, Serialize};

use crate::NativeStats;
use crate::error::{LegacyError, NativeStatus};
use crate::sandbox::Confinement;
use crate::types::{AssessmentRow, ScoredAssessment, StudentContext, check_scored};

/// The largest frame either side accepts: a full call (500 rows of 64-byte
/// ids) is under 60 KiB.
pub const MAX_FRAME: usize = 1 << 20;

/// Supervisor to worker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Request {
    Score {
        id: u64,
        context: StudentContext,
        rows: Vec<AssessmentRow>,
    },
}

/// Worker to supervisor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Reply {
    /// The first frame of a worker that loaded the library and opened its
    /// engine. Every frame but `InitFailed` carries the component's handle
    /// counters in the worker, read after the call's result was freed
    /// (`None` when the library does not export them).
    Ready {
        pid: u32,
        native: Option<NativeStats>,
        /// The sandbox it has in force.
        confinement: Confinement,
    },
    /// The first (and last) frame of a worker that could not.
    InitFailed { message: String },
    Scored {
        id: u64,
        results: Vec<ScoredAssessment>,
        native: Option<NativeStats>,
    },
    /// The call failed inside the worker (a native error status, invalid
    /// input, malformed native output); the worker is healthy.
    Failed {
        id: u64,
        error: WireError,
        native: Option<NativeStats>,
    },
}

/// A `LegacyError` that can cross the pipe.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum WireError {
    Native {
        operation: String,
        status: i32,
        message: String,
    },
    InvalidInput(String),
    MalformedOutput(String),
    Other(String),
}

/// Longest message a reply may carry (longer ones are cut).
const MAX_MESSAGE: usize = 512;

fn bounded(text: &str) -> String {
    let mut end = text.len().min(MAX_MESSAGE);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

impl From<&LegacyError> for WireError {
    fn from(error: &LegacyError) -> Self {
        match error {
            LegacyError::Native {
                operation,
                status,
                message,
            } => WireError::Native {
                operation: (*operation).to_owned(),
                status: status.to_raw(),
                message: bounded(message),
            },
            LegacyError::InvalidInput(m) => WireError::InvalidInput(bounded(m)),
            LegacyError::MalformedOutput(m) => WireError::MalformedOutput(bounded(m)),
            other => WireError::Other(bounded(&other.to_string())),
        }
    }
}

impl From<WireError> for LegacyError {
    fn from(error: WireError) -> Self {
        match error {
            WireError::Native {
                operation,
                status,
                message,
            } => LegacyError::Native {
                // The operations the worker performs; anything else is named generically.
                operation: match operation.as_str() {
                    "score" => "score",
                    "result read" => "result read",
                    "result free" => "result free",
                    _ => "call",
                },
                status: NativeStatus::from_raw(status),
                message: bounded(&message),
            },
            WireError::InvalidInput(m) => LegacyError::InvalidInput(bounded(&m)),
            WireError::MalformedOutput(m) => LegacyError::MalformedOutput(bounded(&m)),
            WireError::Other(m) => LegacyError::MalformedOutput(format!("worker: {}", bounded(&m))),
        }
    }
}

/// Why bytes from the other side are not a valid frame or message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WorkerProtocolError {
    #[error("frame of {0} bytes exceeds the {MAX_FRAME}-byte limit")]
    TooLarge(usize),
    #[error("frame cut off after {got} of {expected} bytes")]
    Truncated { expected: usize, got: usize },
    #[error("undecodable message: {0}")]
    Decode(String),
    #[error("reply does not match the request: {0}")]
    Mismatch(String),
}

/// One frame: length header, then the payload.
pub fn encode<T: Serialize>(message: &T) -> Result<Vec<u8>, WorkerProtocolError> {
    let payload =
        postcard::to_allocvec(message).map_err(|e| WorkerProtocolError::Decode(e.to_string()))?;
    if payload.len() > MAX_FRAME {
        return Err(WorkerProtocolError::TooLarge(payload.len()));
    }
    let mut frame = Vec::with_capacity(4 + payload.len());
    frame.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    frame.extend_from_slice(&payload);
    Ok(frame)
}

/// The payload length a header announces, checked against the limit before
/// anyone allocates for it.
pub fn payload_len(header: [u8; 4]) -> Result<usize, WorkerProtocolError> {
    let len = u32::from_le_bytes(header) as usize;
    if len > MAX_FRAME {
        return Err(WorkerProtocolError::TooLarge(len));
    }
    Ok(len)
}

pub fn decode_request(payload: &[u8]) -> Result<Request, WorkerProtocolError> {
    postcard::from_bytes(payload).map_err(|e| WorkerProtocolError::Decode(e.to_string()))
}

pub fn decode_reply(payload: &[u8]) -> Result<Reply, WorkerProtocolError> {
    postcard::from_bytes(payload).map_err(|e| WorkerProtocolError::Decode(e.to_string()))
}

/// Checks a `Scored` reply against its request: same id, one result per row,
/// the rows' ids in order, every value in range.
pub fn check_scored_reply(
    request_id: u64,
    rows: &[AssessmentRow],
    reply_id: u64,
    results: &[ScoredAssessment],
) -> Result<(), WorkerProtocolError> {
    if reply_id != request_id {
        return Err(WorkerProtocolError::Mismatch(format!(
            "reply {reply_id} to request {request_id}"
        )));
    }
    if results.len() != rows.len() {
        return Err(WorkerProtocolError::Mismatch(format!(
            "{} results for {} rows",
            results.len(),
            rows.len()
        )));
    }
    for (index, (result, row)) in results.iter().zip(rows).enumerate() {
        if result.id != row.id {
            return Err(WorkerProtocolError::Mismatch(format!(
                "entry {index} is for another assessment than row {index}"
            )));
        }
        check_scored(index, result).map_err(|e| WorkerProtocolError::Mismatch(e.to_string()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{AssessmentType, Band, Flags};

    fn row(id: &str) -> AssessmentRow {
        AssessmentRow {
            id: id.to_owned(),
            assessment_type: AssessmentType::ReadingComprehension,
            administered_at_unix_ms: 1_700_000_000_000,
            raw_score: 17.0,
            items_attempted: 20,
            items_correct: 17,
            duration_seconds: 300,
        }
    }

    fn scored(id: &str) -> ScoredAssessment {
        ScoredAssessment {
            id: id.to_owned(),
            scaled_score: 512.0,
            percentile: 61.0,
            band: Band::At,
            wcpm: None,
            accuracy: 0.85,
            flags: Flags::empty(),
        }
    }

    #[test]
    fn frames_round_trip() {
        let request = Request::Score {
            id: 7,
            context: StudentContext {
                grade: 3,
                reading_level: 3.4,
            },
            rows: vec![row("a-1"), row("a-2")],
        };
        let frame = encode(&request).expect("encode");
        let len = payload_len(frame[..4].try_into().expect("header")).expect("len");
        assert_eq!(decode_request(&frame[4..4 + len]).expect("decode"), request);

        let replies = [
            Reply::Ready {
                pid: 42,
                native: None,
                confinement: Confinement {
                    writes: crate::sandbox::Writes::Partial { abi: 3 },
                    syscalls_allowed: 120,
                    data_limit_mib: 192,
                    address_space_gib: 16,
                    open_files: 256,
                    oom_score_adj: 1000,
                },
            },
            Reply::Scored {
                id: 7,
                results: vec![scored("a-1"), scored("a-2")],
                native: Some(NativeStats {
                    engines_opened: 1,
                    results_opened: 3,
                    results_closed: 3,
                    score_calls: 3,
                    ..NativeStats::default()
                }),
            },
        ];
        for reply in &replies {
            let frame = encode(reply).expect("encode");
            let len = payload_len(frame[..4].try_into().expect("header")).expect("len");
            assert_eq!(len, frame.len() - 4);
            assert_eq!(&decode_reply(&frame[4..]).expect("decode"), reply);
        }
        // A stream of frames, cut or oversized: tests/fuzz_corpus.rs, through the fuzz target's decoder.
    }

    #[test]
    fn oversized_lengths_are_refused_before_allocating() {
        let header = (MAX_FRAME as u32 + 1).to_le_bytes();
        assert_eq!(
            payload_len(header),
            Err(WorkerProtocolError::TooLarge(MAX_FRAME + 1))
        );
    }

    #[test]
    fn replies_must_match_their_request() {
        let rows = [row("a-1"), row("a-2")];
        let ok = [scored("a-1"), scored("a-2")];
        assert!(check_scored_reply(1, &rows, 1, &ok).is_ok());
        assert!(check_scored_reply(1, &rows, 2, &ok).is_err());
        assert!(check_scored_reply(1, &rows, 1, &ok[..1]).is_err());
        let swapped = [scored("a-2"), scored("a-1")];
        assert!(check_scored_reply(1, &rows, 1, &swapped).is_err());
        let mut nan = ok.clone();
        nan[1].percentile = f64::NAN;
        assert!(check_scored_reply(1, &rows, 1, &nan).is_err());
        // wcpm within the scale: no room for a payload in a huge value.
        let mut fluent = ok.clone();
        fluent[0].wcpm = Some(crate::types::MAX_WCPM);
        assert!(check_scored_reply(1, &rows, 1, &fluent).is_ok());
        fluent[0].wcpm = Some(1.0e300);
        assert!(check_scored_reply(1, &rows, 1, &fluent).is_err());
    }

    #[test]
    fn errors_cross_the_pipe_bounded() {
        let native = LegacyError::Native {
            operation: "score",
            status: NativeStatus::Scoring,
            message: "x".repeat(5000),
        };
        let back = LegacyError::from(WireError::from(&native));
        match back {
            LegacyError::Native {
                operation,
                status,
                message,
            } => {
                assert_eq!((operation, status), ("score", NativeStatus::Scoring));
                assert_eq!(message.len(), MAX_MESSAGE);
            }
            other => panic!("{other:?}"),
        }
    }
}
