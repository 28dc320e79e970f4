//! Configuration and the dependencies built from it, once per execution
//! environment (cold start). Immutable afterwards, or internally synchronized
//! and bounded: the pool, the engine's permits, the reports' running totals.

use std::time::Duration;

use assessments_common::aws::{AwsSettings, SecretError, Secrets};
use assessments_common::budget::Budget;
use assessments_common::config::{ConfigError, Env, InsecureSettings};
use assessments_common::lambda::InitFailure;
use assessments_common::observability::MetricsSettings;

use crate::audit::AuditKey;
use crate::authz::AuthzPolicy;
use crate::profiles::ProfileStore;
use crate::report::{InvocationReport, Recorder, ResourceState};
use crate::resolver::keys::{self, KeyError};
use crate::resolver::{NextTokens, Resolver, TokenKeySettings};
use crate::sqlserver::{SqlError, SqlPool, SqlSettings};
use legacy_bridge::{LegacyEngine, LegacyError, LegacySettings};

/// The default `DEADLINE_MARGIN_MS`: serializing the largest response Lambda
/// accepts (6 MB) takes ~30 ms in a release build here; Lambda's CPU share at
/// 256 MB is ~0.15 of a vCPU, so ~200 ms there, and the answer must still be
/// posted to the Runtime API.
pub const DEFAULT_DEADLINE_MARGIN_MS: u64 = 250;

/// Every setting of the function, complete: the environment's values and
/// the secrets they name. See docs/configuration.md.
#[derive(Debug)]
pub struct Settings {
    pub students_table: String,
    /// Pool settings (`SQL_*`) and the connection string: `SQLSERVER_CONNECTION_STRING`,
    /// or the value of `SQLSERVER_SECRET_ARN` (the connection string, or JSON
    /// with a `connectionString` field).
    pub sql: SqlSettings,
    pub legacy: LegacySettings,
    /// Region, credentials, DynamoDB endpoint, timeouts and retries.
    pub aws: AwsSettings,
    /// The SDK configuration built from `aws`.
    pub sdk: aws_config::SdkConfig,
    /// The `nextToken` keys (`NEXT_TOKEN_KEY`, or `NEXT_TOKEN_SECRET_ARN`'s
    /// current and previous versions) and where they are re-read after a rotation.
    pub tokens: NextTokens,
    /// `AUTHZ_*`: who may read which student.
    pub authz: AuthzPolicy,
    /// `METRICS_EMF` and `AWS_LAMBDA_FUNCTION_NAME`.
    pub metrics: MetricsSettings,
    /// `SHUTDOWN_GRACE_MS`: how long shutdown waits for running native calls (default 400).
    pub shutdown_grace: Duration,
    /// `INIT_CONNECT_TIMEOUT_MS`: how long init waits for the first SQL
    /// Server and DynamoDB connections (default 2000; Lambda's init phase has 10 s).
    pub init_connect: Duration,
    /// `DEADLINE_MARGIN_MS`: the time kept, before the invocation's deadline,
    /// for serializing and returning the response (default 250).
    pub deadline_margin: Duration,
    /// When loading began: the start of init.
    pub started: std::time::Instant,
}

impl Settings {
    /// Reads every setting in one phase: the environment, then the secrets it
    /// names (each read bounded by `SECRETS_TIMEOUT_MS`), then the pool
    /// settings with the connection string. `ALLOW_INSECURE_SETTINGS`
    /// (on Lambda) decides whether the connection string, once read, may turn
    /// TLS or its certificate check off.
    pub async fn load(env: &Env) -> Result<Settings, InitError> {
        let started = std::time::Instant::now();
        let sql_source = env.secret("SQLSERVER_CONNECTION_STRING", "SQLSERVER_SECRET_ARN")?;
        let next_token = TokenKeySettings::from_env(env)?;
        let insecure = InsecureSettings::from_env(env)?;
        let aws = AwsSettings::from_env(env)?;
        let students_table = env.required("STUDENTS_TABLE")?;
        let legacy = LegacySettings::from_env(env, insecure)?;
        let authz = AuthzPolicy::from_env(env)?;
        let metrics = MetricsSettings::from_env(env, "assessments-resolver")?;
        let shutdown_grace = env.number("SHUTDOWN_GRACE_MS", 0..=10_000)?.unwrap_or(400);
        let init_connect = env
            .number("INIT_CONNECT_TIMEOUT_MS", 0..=9_000)?
            .unwrap_or(2_000);
        let deadline_margin = env.number("DEADLINE_MARGIN_MS", 0..=60_000)?;

        let sdk = aws.sdk_config().await;
        let secrets = Secrets::new(&sdk, &aws);
        let connection_string = secrets.resolve(&sql_source, "connectionString").await?;
        let sql = SqlSettings::from_env(env, connection_string, insecure)?;
        let tokens = keys::load(&secrets, &next_token).await?;
        Ok(Settings {
            students_table,
            sql,
            legacy,
            aws,
            sdk,
            tokens,
            authz,
            metrics,
            shutdown_grace: Duration::from_millis(shutdown_grace),
            init_connect: Duration::from_millis(init_connect),
            deadline_margin: Duration::from_millis(
                deadline_margin.unwrap_or(DEFAULT_DEADLINE_MARGIN_MS),
            ),
            started,
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
    #[error("SQL Server connection string: {0}")]
    Secret(#[from] SecretError),
    #[error("nextToken keys: {0}")]
    TokenKeys(#[from] KeyError),
}

impl InitFailure for InitError {
    fn error_type(&self) -> &'static str {
        match self {
            InitError::Config(_) => "InitError.Configuration",
            InitError::Legacy(_) => "InitError.LegacyComponent",
            InitError::Sql(_) => "InitError.SqlServer",
            InitError::Secret(_) | InitError::TokenKeys(KeyError::Secret(_)) => "InitError.Secret",
            InitError::TokenKeys(KeyError::Config(_)) => "InitError.Configuration",
        }
    }
}

/// What the handler needs, built once.
#[derive(Debug)]
pub struct Deps {
    pub resolver: Resolver,
    /// Hashes the student ids of the audit lines (derived from the `nextToken`
    /// key current at init).
    pub audit: AuditKey,
    recorder: Recorder,
    shutdown_grace: Duration,
    deadline_margin: Duration,
}

/// What `work` gave, and how long it took.
async fn timed<T>(work: impl std::future::Future<Output = T>) -> (T, Duration) {
    let at = std::time::Instant::now();
    let output = work.await;
    (output, at.elapsed())
}

impl Deps {
    /// Builds everything from the settings: the legacy library loaded and
    /// its engine opened while the first SQL Server connection and the
    /// DynamoDB connection open, all at once, so that the first invocation
    /// finds them ready. A connection that does not open within
    /// `INIT_CONNECT_TIMEOUT_MS` is logged, not fatal: the first request
    /// opens it, as any request opens one it lacks.
    pub async fn init(settings: Settings) -> Result<Deps, InitError> {
        let settings_ms = settings.started.elapsed().as_millis() as u64;
        let profiles = ProfileStore::new(
            settings.aws.dynamodb_client(&settings.sdk),
            settings.students_table.clone(),
            settings.aws.dynamodb_timeouts(),
        );
        let pool = SqlPool::new(&settings.sql)?;
        let connect = Budget::after(settings.init_connect);
        let ((legacy, legacy_ms), (sql, sql_ms), (dynamodb, dynamodb_ms)) = tokio::join!(
            timed(LegacyEngine::start(&settings.legacy)),
            timed(Box::pin(pool.open_connection(&connect))),
            timed(Box::pin(profiles.open_connection(&connect))),
        );
        let legacy = legacy?;
        let init = settings.started.elapsed();
        if let Err(error) = &sql {
            tracing::warn!(%error, "SQL Server connection not opened at init; the first request opens it");
        }
        if let Err(error) = &dynamodb {
            tracing::warn!(%error, "DynamoDB connection not opened at init; the first request opens it");
        }
        tracing::info!(
            table = %settings.students_table,
            pool_max = settings.sql.max_size,
            legacy_library = %settings.legacy.lib_path.display(),
            legacy_ms = legacy_ms.as_millis() as u64,
            sql_connection_ms = sql_ms.as_millis() as u64,
            sql_connected = sql.is_ok(),
            dynamodb_connection_ms = dynamodb_ms.as_millis() as u64,
            dynamodb_connected = dynamodb.is_ok(),
            settings_ms,
            init_ms = init.as_millis() as u64,
            "dependencies ready"
        );
        Ok(Deps {
            audit: AuditKey::derive(&settings.tokens.signer.keys().current),
            resolver: Resolver::new(profiles, pool, legacy, settings.tokens, settings.authz),
            recorder: Recorder::new(settings.metrics, init),
            shutdown_grace: settings.shutdown_grace,
            deadline_margin: settings.deadline_margin,
        })
    }

    /// The time budget of an invocation whose deadline is `deadline_ms` (ms
    /// since the epoch, Lambda's `context.deadline`): that, less `DEADLINE_MARGIN_MS`.
    pub fn invocation_budget(&self, deadline_ms: u64) -> Budget {
        Budget::from_lambda_deadline(deadline_ms, self.deadline_margin)
    }

    /// Records the invocation (see [`Recorder::record`]) with the state of
    /// the resolver's resources now.
    pub fn record(&self, report: &mut InvocationReport, lines: Vec<u8>, at: &str) {
        self.recorder
            .record(report, self.resolver.resources(), lines, at);
    }

    /// What the next report's resource state would be (taking the running
    /// counters' increase since the last report, as a report does).
    pub fn resource_state(&self) -> ResourceState {
        self.recorder.resource_state(self.resolver.resources())
    }

    /// Graceful shutdown: the legacy engine closed exactly once, the pool closed.
    pub async fn shutdown(&self) {
        self.resolver.shutdown(self.shutdown_grace).await;
    }
}
