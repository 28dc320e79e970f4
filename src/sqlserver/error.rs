//! Errors of the SQL Server boundary. Messages say which step failed; they
//! never carry the connection string, credentials, SQL text or row data.

use std::time::Duration;

use assessments_common::budget::Limit;
use assessments_common::config::ConfigError;

/// Clone: a batch's statement that fails is each of its items' error.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SqlError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("no SQL Server connection became free within {limit} (pool of {max_size})")]
    PoolTimeout { limit: Limit, max_size: usize },
    #[error("connecting to SQL Server did not finish within {limit}")]
    ConnectTimeout { limit: Limit },
    #[error("cannot connect to SQL Server: {0}")]
    Connect(String),
    /// The TLS handshake failed: most often a certificate the client does
    /// not trust (`TrustServerCertificateCA` names the CA to trust).
    #[error("SQL Server's TLS handshake failed: {0}")]
    Tls(String),
    #[error("SQL Server rejected the login (error {code})")]
    LoginRejected { code: u32 },
    #[error("the SQL Server query did not finish within {limit}")]
    QueryTimeout { limit: Limit },
    #[error("the SQL Server connection was lost during the query: {0}")]
    ConnectionLost(String),
    #[error("SQL Server returned error {code} (severity {class})")]
    Server { code: u32, class: u8 },
    #[error("column {column}: {reason}")]
    Decode {
        column: &'static str,
        reason: String,
    },
    #[error("the SQL Server pool is closed")]
    PoolClosed,
    #[error("invalid page request: {0}")]
    InvalidRequest(String),
}

/// SQL Server's error numbers for a failed login.
const LOGIN_FAILED: u32 = 18456;
const CANNOT_OPEN_DATABASE: u32 = 4060;

impl SqlError {
    /// Classifies a tiberius error raised while connecting and logging in
    /// (its handshake is bounded by `connect_timeout`).
    pub(crate) fn from_connect(error: tiberius::error::Error, connect_timeout: Duration) -> Self {
        match error {
            tiberius::error::Error::Io {
                kind: std::io::ErrorKind::TimedOut,
                ..
            } => SqlError::ConnectTimeout {
                limit: Limit::Own {
                    after: connect_timeout,
                    setting: "SQL_CONNECT_TIMEOUT_MS",
                },
            },
            tiberius::error::Error::Server(token)
                if matches!(token.code(), LOGIN_FAILED | CANNOT_OPEN_DATABASE) =>
            {
                SqlError::LoginRejected { code: token.code() }
            }
            tiberius::error::Error::Server(token) => SqlError::Server {
                code: token.code(),
                class: token.class(),
            },
            tiberius::error::Error::Io { kind, .. } => {
                SqlError::Connect(format!("i/o error ({kind:?})"))
            }
            tiberius::error::Error::Tls(reason) => SqlError::Tls(reason),
            tiberius::error::Error::Protocol(message) => {
                SqlError::Connect(format!("protocol error: {message}"))
            }
            other => SqlError::Connect(format!("{other}")),
        }
    }

    /// Classifies a tiberius error raised by a query on an established
    /// connection (its reads are bounded by `query_timeout`).
    pub(crate) fn from_query(error: tiberius::error::Error, query_timeout: Duration) -> Self {
        match error {
            tiberius::error::Error::Io {
                kind: std::io::ErrorKind::TimedOut,
                ..
            } => SqlError::QueryTimeout {
                limit: Limit::Own {
                    after: query_timeout,
                    setting: "SQL_QUERY_TIMEOUT_MS",
                },
            },
            tiberius::error::Error::Server(token) => {
                tracing::warn!(code = token.code(), class = token.class(), message = %token.message(), "SQL Server error");
                SqlError::Server {
                    code: token.code(),
                    class: token.class(),
                }
            }
            tiberius::error::Error::Io { kind, .. } => {
                SqlError::ConnectionLost(format!("i/o error ({kind:?})"))
            }
            tiberius::error::Error::Protocol(message) => {
                SqlError::ConnectionLost(format!("protocol error: {message}"))
            }
            other => SqlError::ConnectionLost(format!("{other}")),
        }
    }

    /// The connection this error happened on cannot be used again.
    pub(crate) fn breaks_connection(&self) -> bool {
        !matches!(
            self,
            SqlError::Server { .. } | SqlError::Decode { .. } | SqlError::InvalidRequest(_)
        )
    }

    /// A retry on a fresh connection may succeed (the connection died, not the query).
    pub fn is_connection_lost(&self) -> bool {
        matches!(self, SqlError::ConnectionLost(_))
    }

    /// A timeout of some step (pool wait, connect, query).
    pub fn is_timeout(&self) -> bool {
        matches!(
            self,
            SqlError::PoolTimeout { .. }
                | SqlError::ConnectTimeout { .. }
                | SqlError::QueryTimeout { .. }
        )
    }
}
