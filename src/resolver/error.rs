//! The resolver's errors and their stable AppSync error types.

use assessments_common::dynamo::DynamoError;

use crate::profiles::ProfileError;
use crate::sqlserver::SqlError;
use legacy_bridge::LegacyError;

/// The `errorType` values clients see. Stable: clients branch on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorType {
    /// An argument is invalid; the message names it.
    ValidationError,
    /// The student has no profile (only for callers entitled to every student).
    NotFound,
    /// The caller may not read this student's assessments, or (for a caller
    /// limited to a school) the student does not exist: the two are not told apart.
    Unauthorized,
    /// The legacy assessment component failed or returned malformed output.
    LegacyComponentError,
    /// A dependency (DynamoDB, SQL Server, the legacy component) did not answer in time.
    DependencyTimeout,
    /// A dependency refused, failed or kept throttling.
    DependencyUnavailable,
    /// The event names a field this function does not resolve.
    UnsupportedField,
    /// The event is not an AppSync direct Lambda resolver event.
    InvalidEvent,
    /// A bug or corrupt data on our side.
    InternalError,
    /// The answer would not fit in Lambda's 6 MB response: ask for less.
    ResponseTooLarge,
}

impl ErrorType {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorType::ValidationError => "ValidationError",
            ErrorType::NotFound => "NotFound",
            ErrorType::Unauthorized => "Unauthorized",
            ErrorType::LegacyComponentError => "LegacyComponentError",
            ErrorType::DependencyTimeout => "DependencyTimeout",
            ErrorType::DependencyUnavailable => "DependencyUnavailable",
            ErrorType::UnsupportedField => "UnsupportedField",
            ErrorType::InvalidEvent => "InvalidEvent",
            ErrorType::InternalError => "InternalError",
            ErrorType::ResponseTooLarge => "ResponseTooLarge",
        }
    }
}

impl std::fmt::Display for ErrorType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error("{argument}: {message}")]
    Validation {
        argument: &'static str,
        message: String,
    },
    /// The messages name no student: AppSync logs errors, and the item's
    /// path already says which request it was.
    #[error("studentId: no student profile for this studentId")]
    NotFound,
    /// One message for "forbidden" and "does not exist".
    #[error("studentId: not authorized to read the assessments of this studentId")]
    Unauthorized,
    #[error("{0}")]
    Legacy(#[from] LegacyError),
    #[error("SQL Server (assessment records): {0}")]
    Sql(#[from] SqlError),
    #[error("{0}")]
    Profile(#[from] ProfileError),
    #[error("this function does not resolve {parent}.{field}")]
    UnsupportedField { parent: String, field: String },
    #[error("not an AppSync direct Lambda resolver event: {0}")]
    InvalidEvent(String),
    #[error("{}", if *batch {
        format!("this item was left out: the batch's answer would exceed Lambda's {limit_bytes}-byte response limit (ask for fewer items at once, or a smaller limit)")
    } else {
        format!("the page would exceed Lambda's {limit_bytes}-byte response limit (ask for a smaller limit)")
    })]
    ResponseTooLarge { limit_bytes: usize, batch: bool },
}

impl ResolveError {
    pub fn validation(argument: &'static str, message: impl Into<String>) -> Self {
        ResolveError::Validation {
            argument,
            message: message.into(),
        }
    }

    pub fn error_type(&self) -> ErrorType {
        match self {
            ResolveError::Validation { .. } => ErrorType::ValidationError,
            ResolveError::NotFound => ErrorType::NotFound,
            ResolveError::Unauthorized => ErrorType::Unauthorized,
            ResolveError::Legacy(LegacyError::Timeout { .. } | LegacyError::Saturated { .. }) => {
                ErrorType::DependencyTimeout
            }
            ResolveError::Legacy(LegacyError::ShuttingDown) => ErrorType::DependencyUnavailable,
            ResolveError::Legacy(_) => ErrorType::LegacyComponentError,
            ResolveError::Sql(e) if e.is_timeout() => ErrorType::DependencyTimeout,
            ResolveError::Sql(
                SqlError::Decode { .. } | SqlError::InvalidRequest(_) | SqlError::Config(_),
            ) => ErrorType::InternalError,
            ResolveError::Sql(_) => ErrorType::DependencyUnavailable,
            ResolveError::Profile(ProfileError::Dynamo(e)) if e.is_timeout() => {
                ErrorType::DependencyTimeout
            }
            ResolveError::Profile(ProfileError::Malformed { .. }) => ErrorType::InternalError,
            ResolveError::Profile(_) => ErrorType::DependencyUnavailable,
            ResolveError::UnsupportedField { .. } => ErrorType::UnsupportedField,
            ResolveError::InvalidEvent(_) => ErrorType::InvalidEvent,
            ResolveError::ResponseTooLarge { .. } => ErrorType::ResponseTooLarge,
        }
    }

    /// The message clients see: what was wrong with the request, which
    /// bound fired, or which dependency failed. A failure whose detail is
    /// the dependency's own text (the component's message, a TLS or network
    /// error, a decode problem) gets a fixed message naming `request_id`,
    /// under which the detail is logged. Never SQL text, connection strings
    /// or credentials (none of the wrapped errors carry them).
    pub fn client_message(&self, request_id: &str) -> String {
        match self.fixed_message() {
            Some(fixed) => {
                format!("{fixed} (the function's log has the detail under request id {request_id})")
            }
            None => match self {
                ResolveError::Legacy(e) => format!("legacy assessment component: {e}"),
                other => other.to_string(),
            },
        }
    }

    /// The fixed message of an error whose own text comes from a dependency.
    fn fixed_message(&self) -> Option<&'static str> {
        use LegacyError as L;
        match self {
            ResolveError::Legacy(L::Native { .. } | L::InvalidInput(_)) => {
                Some("legacy assessment component: it could not score these assessments")
            }
            ResolveError::Legacy(L::MalformedOutput(_)) => {
                Some("legacy assessment component: it returned malformed output")
            }
            ResolveError::Legacy(L::WorkerCrashed | L::WorkerPanicked) => {
                Some("legacy assessment component: it stopped while scoring")
            }
            ResolveError::Legacy(
                L::Load { .. }
                | L::Hosting { .. }
                | L::MissingSymbol { .. }
                | L::AbiMismatch { .. }
                | L::WorkerInit(_)
                | L::WorkerUnavailable(_)
                | L::ShutdownIncomplete { .. },
            ) => Some("legacy assessment component: it is not available"),
            ResolveError::Sql(SqlError::Tls(_)) => {
                Some("SQL Server (assessment records): the TLS handshake failed")
            }
            ResolveError::Sql(SqlError::Connect(_)) => {
                Some("SQL Server (assessment records): cannot connect")
            }
            ResolveError::Sql(SqlError::ConnectionLost(_)) => {
                Some("SQL Server (assessment records): the connection was lost during the query")
            }
            ResolveError::Sql(SqlError::Decode { .. } | SqlError::Config(_)) => {
                Some("SQL Server (assessment records): the rows could not be read")
            }
            ResolveError::Profile(ProfileError::Dynamo(DynamoError::Unavailable { .. })) => {
                Some("DynamoDB (student profiles) is unavailable")
            }
            _ => None,
        }
    }

    /// Whether the caller caused it (invalid request, not entitled, no such
    /// student): the audit line says so, and no other line is logged.
    pub fn is_callers(&self) -> bool {
        matches!(
            self.error_type(),
            ErrorType::ValidationError
                | ErrorType::NotFound
                | ErrorType::Unauthorized
                | ErrorType::UnsupportedField
                | ErrorType::InvalidEvent
                | ErrorType::ResponseTooLarge
        )
    }
}
