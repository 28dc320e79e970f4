//! Errors of the legacy boundary. The resolver maps them once into AppSync
//! error types; messages name the library path or the failing operation and
//! never carry row data.

use std::ffi::c_int;
use std::path::PathBuf;
use std::time::Duration;

use assessments_common::budget::Limit;

/// A `la_status` value returned by the native component.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NativeStatus {
    Ok,
    InvalidArgument,
    Config,
    Scoring,
    UnknownHandle,
    OutOfRange,
    Internal,
    /// A value the header does not define.
    Unrecognized(c_int),
}

impl NativeStatus {
    pub fn from_raw(raw: c_int) -> Self {
        match raw {
            0 => NativeStatus::Ok,
            1 => NativeStatus::InvalidArgument,
            2 => NativeStatus::Config,
            3 => NativeStatus::Scoring,
            4 => NativeStatus::UnknownHandle,
            5 => NativeStatus::OutOfRange,
            6 => NativeStatus::Internal,
            other => NativeStatus::Unrecognized(other),
        }
    }
}

impl NativeStatus {
    /// The `la_status` value (the inverse of `from_raw`).
    pub fn to_raw(self) -> c_int {
        match self {
            NativeStatus::Ok => 0,
            NativeStatus::InvalidArgument => 1,
            NativeStatus::Config => 2,
            NativeStatus::Scoring => 3,
            NativeStatus::UnknownHandle => 4,
            NativeStatus::OutOfRange => 5,
            NativeStatus::Internal => 6,
            NativeStatus::Unrecognized(raw) => raw,
        }
    }
}

impl std::fmt::Display for NativeStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NativeStatus::Ok => f.write_str("LA_OK"),
            NativeStatus::InvalidArgument => f.write_str("LA_ERR_INVALID_ARGUMENT"),
            NativeStatus::Config => f.write_str("LA_ERR_CONFIG"),
            NativeStatus::Scoring => f.write_str("LA_ERR_SCORING"),
            NativeStatus::UnknownHandle => f.write_str("LA_ERR_UNKNOWN_HANDLE"),
            NativeStatus::OutOfRange => f.write_str("LA_ERR_OUT_OF_RANGE"),
            NativeStatus::Internal => f.write_str("LA_ERR_INTERNAL"),
            NativeStatus::Unrecognized(raw) => write!(f, "unrecognized status {raw}"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LegacyError {
    #[error("cannot load the legacy library {}: {source}", path.display())]
    Load {
        path: PathBuf,
        #[source]
        source: libloading::Error,
    },
    #[error("cannot host the .NET legacy component {}: {reason}", path.display())]
    Hosting { path: PathBuf, reason: String },
    #[error("the legacy library {} does not export `{symbol}`: {source}", path.display())]
    MissingSymbol {
        path: PathBuf,
        symbol: &'static str,
        #[source]
        source: libloading::Error,
    },
    #[error("the legacy library {} has ABI version {found}, this build needs {expected}", path.display())]
    AbiMismatch {
        path: PathBuf,
        found: u32,
        expected: u32,
    },
    #[error("legacy {operation} failed with {status}: {message}")]
    Native {
        operation: &'static str,
        status: NativeStatus,
        message: String,
    },
    #[error("invalid input for the legacy component: {0}")]
    InvalidInput(String),
    #[error("malformed output from the legacy component: {0}")]
    MalformedOutput(String),
    /// The call's own timeout, or the invocation's deadline, ended the wait
    /// for its answer. In process, a call cut short finishes in the
    /// background; in a worker, a call past `LEGACY_CALL_TIMEOUT_MS` has its
    /// worker killed (logged, and counted as a hang).
    #[error("the legacy component did not answer within {limit}")]
    Timeout { limit: Limit },
    /// Every call slot stayed busy until the invocation's deadline; the call
    /// never reached the component.
    #[error("no legacy call slot became free within {waited} ({running} calls already running)")]
    Saturated { waited: Limit, running: usize },
    #[error("the legacy engine is shutting down")]
    ShuttingDown,
    #[error("the legacy call's worker task panicked")]
    WorkerPanicked,
    #[error("{in_flight} legacy calls were still running after {}ms; the engine will be closed when they return", grace.as_millis())]
    ShutdownIncomplete { in_flight: usize, grace: Duration },
    /// Process isolation: the worker running the call died (a crash, or an
    /// exit). How it died is logged, not put in the message clients see.
    #[error("the call failed: its worker process stopped")]
    WorkerCrashed,
    /// Process isolation: a worker could not open the component (load, ABI
    /// check, symbols, engine): the component's error as the worker reported
    /// it, the same text as the error in process.
    #[error("{0}")]
    WorkerInit(String),
    /// Process isolation: no worker could be started.
    #[error("no worker process could be started: {0}")]
    WorkerUnavailable(String),
    /// Process isolation: workers kept dying; calls fail fast for a cool-down.
    #[error("the component is failing repeatedly; calls are refused for {}ms", retry_in.as_millis())]
    CircuitOpen { retry_in: Duration },
}
