//! Configuration and the dependencies built from it, once per execution
//! environment (cold start). Immutable afterwards, or internally synchronized
//! and bounded: the pool, the engine's permits, a few counters.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use aws_sdk_dynamodb::config::{Credentials, Region};

use crate::config::{ConfigError, Env};
use crate::legacy::{LegacyEngine, LegacyError, LegacySettings};
use crate::observability::InvocationReport;
use crate::profiles::ProfileStore;
use crate::resolver::{Resolver, TokenSigner};
use crate::sqlserver::{SqlError, SqlPool, SqlSettings};

/// Where the SQL Server connection string comes from.
#[derive(Clone, PartialEq, Eq)]
pub enum SqlSource {
    /// `SQLSERVER_CONNECTION_STRING`: local and development runs.
    ConnectionString(String),
    /// `SQLSERVER_SECRET_ARN`: production; the secret's value is the
    /// connection string, or JSON with a `connectionString` field.
    SecretArn(String),
}

impl std::fmt::Debug for SqlSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SqlSource::ConnectionString(_) => f.write_str("ConnectionString(<redacted>)"),
            SqlSource::SecretArn(arn) => write!(f, "SecretArn({arn})"),
        }
    }
}

/// Every setting of the function. See the README's configuration table.
#[derive(Debug, Clone)]
pub struct Settings {
    pub students_table: String,
    pub sql_source: SqlSource,
    /// Pool settings (`SQL_*`); the connection string is filled in from `sql_source` at init.
    pub sql: SqlSettings,
    pub legacy: LegacySettings,
    /// `AWS_ENDPOINT_URL_DYNAMODB`: the SDK's standard endpoint override.
    pub dynamodb_endpoint: Option<String>,
    /// `AWS_REGION` (or `AWS_DEFAULT_REGION`).
    pub region: Option<String>,
    /// `DYNAMODB_TIMEOUT_MS`: one DynamoDB operation, retries included (default 2000).
    pub dynamodb_timeout: Duration,
    /// `DYNAMODB_MAX_ATTEMPTS`: attempts per operation, first included (default 4).
    pub dynamodb_max_attempts: u32,
    /// `NEXT_TOKEN_KEY`: the key that signs `nextToken` (at least 32 bytes).
    pub next_token_key: Vec<u8>,
    /// `METRICS_EMF`: print one EMF line per invocation (default true).
    pub emit_metrics: bool,
    /// `AWS_LAMBDA_FUNCTION_NAME`, the metrics dimension.
    pub function_name: String,
    /// `SHUTDOWN_GRACE_MS`: how long shutdown waits for running native calls (default 400).
    pub shutdown_grace: Duration,
    /// Static credentials when the environment carries them (`AWS_ACCESS_KEY_ID`...).
    credentials: Option<(String, String, Option<String>)>,
}

impl Settings {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let sql_source = match (
            env.string("SQLSERVER_CONNECTION_STRING")?,
            env.string("SQLSERVER_SECRET_ARN")?,
        ) {
            (Some(s), None) => SqlSource::ConnectionString(s),
            (None, Some(arn)) => SqlSource::SecretArn(arn),
            (None, None) => {
                return Err(ConfigError::Invalid {
                    name: "SQLSERVER_SECRET_ARN",
                    reason: "set it (production) or SQLSERVER_CONNECTION_STRING (local runs)"
                        .to_owned(),
                });
            }
            (Some(_), Some(_)) => {
                return Err(ConfigError::Invalid {
                    name: "SQLSERVER_CONNECTION_STRING",
                    reason: "set either it or SQLSERVER_SECRET_ARN, not both".to_owned(),
                });
            }
        };
        let credentials = match (
            env.string("AWS_ACCESS_KEY_ID")?,
            env.string("AWS_SECRET_ACCESS_KEY")?,
        ) {
            (Some(id), Some(secret)) => Some((id, secret, env.string("AWS_SESSION_TOKEN")?)),
            _ => None,
        };
        let emit_metrics = match env.string("METRICS_EMF")?.as_deref() {
            None | Some("true" | "1" | "on") => true,
            Some("false" | "0" | "off") => false,
            Some(_) => {
                return Err(ConfigError::Invalid {
                    name: "METRICS_EMF",
                    reason: "expected true or false".to_owned(),
                });
            }
        };
        let connection_string = match &sql_source {
            SqlSource::ConnectionString(s) => s.clone(),
            SqlSource::SecretArn(_) => String::new(),
        };
        Ok(Settings {
            students_table: env.required("STUDENTS_TABLE")?,
            sql: SqlSettings::from_env(env, connection_string)?,
            sql_source,
            legacy: LegacySettings::from_env(env)?,
            dynamodb_endpoint: env.string("AWS_ENDPOINT_URL_DYNAMODB")?,
            region: env
                .string("AWS_REGION")?
                .or(env.string("AWS_DEFAULT_REGION")?),
            dynamodb_timeout: Duration::from_millis(
                env.number("DYNAMODB_TIMEOUT_MS", 1..=60_000)?
                    .unwrap_or(2000),
            ),
            dynamodb_max_attempts: env.number("DYNAMODB_MAX_ATTEMPTS", 1..=10)?.unwrap_or(4) as u32,
            next_token_key: env.required("NEXT_TOKEN_KEY")?.into_bytes(),
            emit_metrics,
            function_name: env
                .string("AWS_LAMBDA_FUNCTION_NAME")?
                .unwrap_or_else(|| "assessments-resolver".to_owned()),
            shutdown_grace: Duration::from_millis(
                env.number("SHUTDOWN_GRACE_MS", 0..=10_000)?.unwrap_or(400),
            ),
            credentials,
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error("configuration: {0}")]
    Config(#[from] ConfigError),
    #[error("legacy component: {0}")]
    Legacy(#[from] LegacyError),
    #[error("SQL Server pool: {0}")]
    Sql(#[from] SqlError),
    #[error("cannot read the SQL Server secret {arn}: {reason}")]
    Secret { arn: String, reason: String },
}

/// Counters over the life of the execution environment.
#[derive(Debug, Default)]
pub struct Counters {
    pub invocations: AtomicU64,
    pub items: AtomicU64,
    pub item_errors: AtomicU64,
}

/// What the handler needs, built once.
#[derive(Debug)]
pub struct Deps {
    pub resolver: Resolver,
    pub counters: Counters,
    emit_metrics: bool,
    function_name: String,
    shutdown_grace: Duration,
}

impl Deps {
    /// Builds everything from the settings. The SQL pool connects lazily;
    /// the legacy library is loaded and its engine opened now.
    pub async fn init(mut settings: Settings) -> Result<Deps, InitError> {
        let sdk = Self::aws_config(&settings).await;
        if let SqlSource::SecretArn(arn) = &settings.sql_source {
            settings.sql.connection_string = read_secret(&sdk, arn).await?;
        }
        let sql = &settings.sql;
        let mut dynamo = aws_sdk_dynamodb::config::Builder::from(&sdk);
        if let Some(endpoint) = &settings.dynamodb_endpoint {
            dynamo = dynamo.endpoint_url(endpoint);
        }
        let client = aws_sdk_dynamodb::Client::from_conf(dynamo.build());
        let profiles = ProfileStore::new(
            client,
            settings.students_table.clone(),
            settings.dynamodb_timeout,
        );
        let pool = SqlPool::new(sql)?;
        let legacy = LegacyEngine::open(&settings.legacy)?;
        let tokens = TokenSigner::new(&settings.next_token_key)?;
        tracing::info!(
            table = %settings.students_table,
            pool_max = settings.sql.max_size,
            legacy_library = %settings.legacy.lib_path.display(),
            "dependencies ready"
        );
        Ok(Deps {
            resolver: Resolver::new(profiles, pool, legacy, tokens),
            counters: Counters::default(),
            emit_metrics: settings.emit_metrics,
            function_name: settings.function_name,
            shutdown_grace: settings.shutdown_grace,
        })
    }

    async fn aws_config(settings: &Settings) -> aws_config::SdkConfig {
        use aws_config::retry::RetryConfig;
        use aws_config::timeout::TimeoutConfig;
        let attempts = settings.dynamodb_max_attempts;
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
            // Throttling and transient errors: exponential backoff with jitter,
            // starting small so retries fit in a resolver's time budget.
            .retry_config(
                RetryConfig::standard()
                    .with_max_attempts(attempts)
                    .with_initial_backoff(Duration::from_millis(20))
                    .with_max_backoff(Duration::from_millis(400)),
            )
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_millis(500).min(settings.dynamodb_timeout))
                    .operation_timeout(settings.dynamodb_timeout)
                    .operation_attempt_timeout(settings.dynamodb_timeout / attempts.max(1))
                    .build(),
            );
        if let Some(region) = &settings.region {
            loader = loader.region(Region::new(region.clone()));
        }
        if let Some((id, secret, token)) = &settings.credentials {
            loader = loader.credentials_provider(Credentials::new(
                id,
                secret,
                token.clone(),
                None,
                "environment",
            ));
        }
        loader.load().await
    }

    /// Logs the invocation and prints its EMF line; updates the counters.
    pub fn record(&self, report: &InvocationReport) {
        let mut report = report.clone();
        report.pool = Some(self.resolver.sql().status());
        if let Some(native) = self.resolver.legacy().native_stats() {
            report.native_live_handles = Some(native.live_results());
            report.native_violations = Some(native.violations);
        }
        self.counters.invocations.fetch_add(1, Ordering::Relaxed);
        self.counters
            .items
            .fetch_add(report.items as u64, Ordering::Relaxed);
        self.counters
            .item_errors
            .fetch_add(report.errors as u64, Ordering::Relaxed);
        report.log();
        if self.emit_metrics {
            let line = report.emf(&self.function_name, chrono::Utc::now().timestamp_millis());
            println!("{line}");
        }
    }

    /// Graceful shutdown: the legacy engine closed exactly once, the pool closed.
    pub async fn shutdown(&self) {
        match self.resolver.legacy().shutdown(self.shutdown_grace).await {
            Ok(()) => tracing::info!("legacy engine closed"),
            Err(error) => tracing::warn!(%error, "legacy engine shutdown incomplete"),
        }
        self.resolver.sql().close();
        tracing::info!(pool = ?self.resolver.sql().status(), "SQL Server pool closed");
    }
}

async fn read_secret(sdk: &aws_config::SdkConfig, arn: &str) -> Result<String, InitError> {
    let client = aws_sdk_secretsmanager::Client::new(sdk);
    let failed = |reason: String| InitError::Secret {
        arn: arn.to_owned(),
        reason,
    };
    let output = client
        .get_secret_value()
        .secret_id(arn)
        .send()
        .await
        .map_err(|e| failed(aws_sdk_secretsmanager::error::DisplayErrorContext(e).to_string()))?;
    let value = output
        .secret_string()
        .ok_or_else(|| failed("the secret has no string value".to_owned()))?;
    // Either the connection string itself, or JSON carrying it.
    match serde_json::from_str::<serde_json::Value>(value) {
        Ok(json) => json
            .get("connectionString")
            .and_then(|v| v.as_str())
            .map(str::to_owned)
            .ok_or_else(|| failed("the secret's JSON has no connectionString field".to_owned())),
        Err(_) => Ok(value.to_owned()),
    }
}
