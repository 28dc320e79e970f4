//! The legacy SQL Server database: a bounded pool of tiberius connections
//! ([`SqlPool`]) and the one query the resolver runs ([`SqlPool::fetch_page`]).
//!
//! Every connection comes from the pool and goes back when its lease drops;
//! the pool never holds more than `max_size` connections, whatever the load.
//! Statements are constants; request values travel only as parameters.

mod error;
mod pool;
mod query;

use std::time::Duration;

use assessments_common::config::{ConfigError, Env, InsecureSettings};

pub use error::SqlError;
pub use pool::{PoolStatus, SqlPool};
pub use query::{
    ASSESSMENTS_PAGE_SQL, ASSESSMENTS_PAGES_SQL, AssessmentRecord, Cursor, MAX_PAGE_SIZE,
    PAGE_STATEMENT, PAGES_STATEMENT, Page, PageRequest, SQL_MAX_DATE, SQL_MIN_DATE, compact,
};

/// Pool and connection settings.
#[derive(Clone, PartialEq, Eq)]
pub struct SqlSettings {
    /// ADO.NET-style, e.g. `Server=tcp:host,1433;Database=...;User Id=...;Password=...`.
    /// TLS is required unless it says `Encrypt=false` (TLS for the login only)
    /// or `Encrypt=DANGER_PLAINTEXT` (none: local test servers only), which
    /// only insecure settings allow (on Lambda TLS is required regardless);
    /// `TrustServerCertificate=true` skips certificate validation.
    pub connection_string: String,
    /// `SQL_POOL_MAX_SIZE` (1..=64, default 4).
    pub max_size: usize,
    /// `SQL_POOL_WAIT_TIMEOUT_MS`: waiting for a free connection (default 2000).
    pub wait_timeout: Duration,
    /// `SQL_CONNECT_TIMEOUT_MS`: TCP connect + prelogin + TLS + login (default 5000).
    pub connect_timeout: Duration,
    /// `SQL_RECYCLE_TIMEOUT_MS`: the health check of an idle connection (default 1000).
    pub recycle_timeout: Duration,
    /// `SQL_QUERY_TIMEOUT_MS`: one page query, first byte to last row (default 5000).
    pub query_timeout: Duration,
    /// `SQL_MAX_LIFETIME_S`: connections older than this are retired (default 1800).
    pub max_lifetime: Duration,
    /// `SQL_IDLE_TIMEOUT_S`: connections idle longer are retired (default 300).
    pub idle_timeout: Duration,
    /// `SQL_VALIDATE_AFTER_IDLE_MS`: idle longer than this, a connection runs
    /// `SELECT 1` before it is handed out (default 30000).
    pub validate_after_idle: Duration,
    /// `SQL_LEAK_WARN_MS`: warn when a connection is held longer (default 10000).
    pub leak_warn_after: Duration,
    /// Whether the string may lower the transport (see [`SqlSettings::tiberius_config`]).
    pub insecure: InsecureSettings,
}

impl std::fmt::Debug for SqlSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlSettings")
            .field("connection_string", &"<redacted>")
            .field("max_size", &self.max_size)
            .field("wait_timeout", &self.wait_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("query_timeout", &self.query_timeout)
            .field("max_lifetime", &self.max_lifetime)
            .field("idle_timeout", &self.idle_timeout)
            .field("insecure", &self.insecure)
            .finish_non_exhaustive()
    }
}

const CONNECTION_STRING: &str = "SQLSERVER_CONNECTION_STRING";

impl SqlSettings {
    /// Defaults for everything but the connection string and what it may
    /// turn off.
    pub fn new(connection_string: impl Into<String>, insecure: InsecureSettings) -> Self {
        SqlSettings {
            connection_string: connection_string.into(),
            insecure,
            max_size: 4,
            wait_timeout: Duration::from_secs(2),
            connect_timeout: Duration::from_secs(5),
            recycle_timeout: Duration::from_secs(1),
            query_timeout: Duration::from_secs(5),
            max_lifetime: Duration::from_secs(1800),
            idle_timeout: Duration::from_secs(300),
            validate_after_idle: Duration::from_secs(30),
            leak_warn_after: Duration::from_secs(10),
        }
    }

    /// The pool settings from the environment, around a connection string
    /// that the caller obtained (an env var locally, Secrets Manager in
    /// production; empty until then, and checked when the pool is built),
    /// checked against what `insecure` allows.
    pub fn from_env(
        env: &Env,
        connection_string: String,
        insecure: InsecureSettings,
    ) -> Result<Self, ConfigError> {
        let d = SqlSettings::new(connection_string, insecure);
        let ms = |name, range, default: Duration| -> Result<Duration, ConfigError> {
            Ok(env
                .number(name, range)?
                .map_or(default, Duration::from_millis))
        };
        let secs = |name, range, default: Duration| -> Result<Duration, ConfigError> {
            Ok(env
                .number(name, range)?
                .map_or(default, Duration::from_secs))
        };
        let settings = SqlSettings {
            max_size: env
                .number("SQL_POOL_MAX_SIZE", 1..=64)?
                .map_or(d.max_size, |n| n as usize),
            wait_timeout: ms("SQL_POOL_WAIT_TIMEOUT_MS", 1..=60_000, d.wait_timeout)?,
            connect_timeout: ms("SQL_CONNECT_TIMEOUT_MS", 1..=60_000, d.connect_timeout)?,
            recycle_timeout: ms("SQL_RECYCLE_TIMEOUT_MS", 1..=60_000, d.recycle_timeout)?,
            query_timeout: ms("SQL_QUERY_TIMEOUT_MS", 1..=300_000, d.query_timeout)?,
            max_lifetime: secs("SQL_MAX_LIFETIME_S", 1..=86_400, d.max_lifetime)?,
            idle_timeout: secs("SQL_IDLE_TIMEOUT_S", 1..=86_400, d.idle_timeout)?,
            validate_after_idle: ms(
                "SQL_VALIDATE_AFTER_IDLE_MS",
                0..=86_400_000,
                d.validate_after_idle,
            )?,
            leak_warn_after: ms("SQL_LEAK_WARN_MS", 1..=3_600_000, d.leak_warn_after)?,
            ..d
        };
        if !settings.connection_string.is_empty() {
            settings.tiberius_config()?;
        }
        Ok(settings)
    }

    /// The connection as tiberius will open it, parsed from the connection
    /// string by tiberius's own parser: the one parse that connects is the one
    /// that decides the transport (a second parser once read
    /// `...;\r\nEncrypt=false` differently). The error never echoes the
    /// string: it may hold a password.
    ///
    /// Where [`InsecureSettings`] refuse (on Lambda): a control character in
    /// the string is refused (parsers disagree on them); so is a string that
    /// turns the certificate check off (`TrustServerCertificate=true`); and
    /// the whole session is encrypted (`Required`) whatever `Encrypt` says.
    ///
    /// The server's certificate is checked against the Mozilla root
    /// programme's CAs compiled in (webpki-roots) and the CA the string names
    /// (`TrustServerCertificateCA`), not the system's store: tiberius reads
    /// and parses that store again for every connection it opens (19 M
    /// instructions, ~5 ms of a cold start's ~10 ms here, and again for each
    /// connection the pool adds). docs/security.md says what this gives up.
    pub(crate) fn tiberius_config(&self) -> Result<tiberius::Config, ConfigError> {
        let invalid = |what: &str| ConfigError::Invalid {
            name: CONNECTION_STRING,
            reason: format!("{what} (value not shown: it may hold credentials)"),
        };
        let text = &self.connection_string;
        if text.chars().any(char::is_control) {
            return Err(invalid("contains a control character"));
        }
        let mut config = tiberius::Config::from_ado_string(text)
            .map_err(|_| invalid("not a valid ADO.NET connection string"))?;
        let unchecked = skips_certificate_check(text);
        self.insecure.check(CONNECTION_STRING, unchecked, || {
            "TrustServerCertificate=true (the server's certificate would not be checked; name its CA with TrustServerCertificateCA)".to_owned()
        })?;
        // With the check off (allowed only off Lambda) there are no roots to choose.
        if !unchecked {
            config.trust_webpki_roots();
        }
        if self.insecure.refused() {
            config.encryption(tiberius::EncryptionLevel::Required);
        }
        Ok(config)
    }
}

/// Whether tiberius reads `text` (which it parsed) as `TrustServerCertificate=true`.
/// tiberius keeps what it parsed private, and refuses a string that both
/// turns the check off and names a CA: so naming one more CA at the end (a
/// pair of its own: every quote in `text` is closed) asks its own parser.
fn skips_certificate_check(text: &str) -> bool {
    tiberius::Config::from_ado_string(&format!("{text};TrustServerCertificateCA=probe")).is_err()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn on_lambda_the_certificate_is_checked_and_control_characters_refused() {
        let on_lambda = Env::from_pairs([("AWS_LAMBDA_FUNCTION_NAME", "resolver")]);
        let refused = InsecureSettings::from_env(&on_lambda).expect("valid");
        let check = |s: &str, insecure| SqlSettings::new(s, insecure).tiberius_config().map(drop);
        for secure in [
            "Server=tcp:db,1433;User Id=u;Password=p",
            "Server=tcp:db,1433;Encrypt=true;TrustServerCertificateCA=/opt/rds-ca.pem",
            "Server=tcp:db,1433;TrustServerCertificate=false;Password='a;b=c'",
            // Encrypt=false is no longer the string's to decide on Lambda: TLS is required.
            "Server=tcp:db,1433;Encrypt=false",
            "Server=tcp:db,1433;Encrypt=DANGER_PLAINTEXT",
            // A base64 password: `=` in a value.
            "Server=tcp:db,1433;User Id=u;Password=cGFzcw==",
        ] {
            assert_eq!(check(secure, refused), Ok(()), "{secure}");
        }
        for (insecure, names) in [
            (
                "Server=tcp:db,1433;TrustServerCertificate=true",
                "TrustServerCertificate=true",
            ),
            (
                "Server=tcp:db,1433; trustservercertificate = YES ",
                "TrustServerCertificate=true",
            ),
            (
                "Server=tcp:db,1433;TrustServerCertificate='true'",
                "TrustServerCertificate=true",
            ),
        ] {
            let error = check(insecure, refused).unwrap_err().to_string();
            assert!(
                error.starts_with("SQLSERVER_CONNECTION_STRING is refused on Lambda: ")
                    && error.contains(names),
                "{error}"
            );
            assert!(!error.contains("tcp:db"), "never echoed: {error}");
            assert_eq!(check(insecure, InsecureSettings::ALLOWED), Ok(()));
        }
        // A control character is refused wherever it is, on Lambda.
        for smuggled in [
            "Server=tcp:db,1433;Password=p;\r\nEncrypt=false",
            "Server=tcp:db,1433;\tTrustServerCertificate=true",
        ] {
            let error = check(smuggled, refused).unwrap_err().to_string();
            assert!(error.contains("contains a control character"), "{error}");
            assert!(!error.contains("tcp:db"), "never echoed: {error}");
        }
    }
}
