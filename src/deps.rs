//! Configuration and the dependencies built from it, once per execution
//! environment (cold start). Immutable afterwards, or internally synchronized
//! and bounded: the pool, the engine's permits, a few counters.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use assessments_common::aws::{AwsSettings, SecretError, resolve_secret};
use assessments_common::budget::Budget;
use assessments_common::config::{ConfigError, Env, InsecureSettings, SecretSetting};
use assessments_common::observability::MetricsSettings;

use crate::audit::AuditKey;
use crate::authz::AuthzPolicy;
use crate::legacy::{LegacyEngine, LegacyError, LegacySettings};
use crate::profiles::ProfileStore;
use crate::report::{InvocationReport, ReportedTotals, ResourceState};
use crate::resolver::keys::{self, KeyError};
use crate::resolver::{Resolver, TokenKeySettings};
use crate::sqlserver::{SqlError, SqlPool, SqlSettings};

/// The default `DEADLINE_MARGIN_MS`: serializing the largest response Lambda
/// accepts (6 MB) takes ~30 ms in a release build here; Lambda's CPU share at
/// 256 MB is ~0.15 of a vCPU, so ~200 ms there, and the answer must still be
/// posted to the Runtime API.
pub const DEFAULT_DEADLINE_MARGIN_MS: u64 = 250;

/// Every setting of the function. See docs/configuration.md.
#[derive(Debug, Clone)]
pub struct Settings {
    pub students_table: String,
    /// `SQLSERVER_CONNECTION_STRING` or `SQLSERVER_SECRET_ARN` (the secret's value is the
    /// connection string, or JSON with a `connectionString` field).
    pub sql_source: SecretSetting,
    /// Pool settings (`SQL_*`); the connection string is filled in from `sql_source` at init.
    pub sql: SqlSettings,
    pub legacy: LegacySettings,
    /// Region, credentials, DynamoDB endpoint, timeouts and retries.
    pub aws: AwsSettings,
    /// `NEXT_TOKEN_SECRET_ARN` (or `NEXT_TOKEN_KEY`) and the rotated-out key's grace period.
    pub next_token: TokenKeySettings,
    /// `AUTHZ_*`: who may read which student.
    pub authz: AuthzPolicy,
    /// `METRICS_EMF` and `AWS_LAMBDA_FUNCTION_NAME`.
    pub metrics: MetricsSettings,
    /// `SHUTDOWN_GRACE_MS`: how long shutdown waits for running native calls (default 400).
    pub shutdown_grace: Duration,
    /// `DEADLINE_MARGIN_MS`: the time kept, before the invocation's deadline,
    /// for serializing and returning the response (default 250).
    pub deadline_margin: Duration,
    /// `ALLOW_INSECURE_SETTINGS` (on Lambda): whether the connection string,
    /// once read from its secret, may turn TLS or its certificate check off.
    pub insecure: InsecureSettings,
}

impl Settings {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let sql_source = env.secret("SQLSERVER_CONNECTION_STRING", "SQLSERVER_SECRET_ARN")?;
        let connection_string = match &sql_source {
            SecretSetting::Value(s) => s.clone(),
            SecretSetting::SecretArn(_) => String::new(),
        };
        Ok(Settings {
            students_table: env.required("STUDENTS_TABLE")?,
            sql: SqlSettings::from_env(env, connection_string)?,
            sql_source,
            legacy: LegacySettings::from_env(env)?,
            aws: AwsSettings::from_env(env)?,
            next_token: TokenKeySettings::from_env(env)?,
            authz: AuthzPolicy::from_env(env)?,
            metrics: MetricsSettings::from_env(env, "assessments-resolver")?,
            shutdown_grace: Duration::from_millis(
                env.number("SHUTDOWN_GRACE_MS", 0..=10_000)?.unwrap_or(400),
            ),
            deadline_margin: Duration::from_millis(
                env.number("DEADLINE_MARGIN_MS", 0..=60_000)?
                    .unwrap_or(DEFAULT_DEADLINE_MARGIN_MS),
            ),
            insecure: InsecureSettings::from_env(env)?,
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

impl assessments_common::lambda_init::InitFailure for InitError {
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

/// Counts of invocations and items over the life of the execution environment.
#[derive(Debug, Default)]
pub struct InvocationCounters {
    pub invocations: AtomicU64,
    pub items: AtomicU64,
    pub item_errors: AtomicU64,
}

/// What the handler needs, built once.
#[derive(Debug)]
pub struct Deps {
    pub resolver: Resolver,
    /// Hashes the student ids of the audit lines (derived from the `nextToken`
    /// key current at init).
    pub audit: AuditKey,
    pub counters: InvocationCounters,
    /// The running counters' values the metrics have reported.
    reported: ReportedTotals,
    metrics: MetricsSettings,
    shutdown_grace: Duration,
    deadline_margin: Duration,
}

impl Deps {
    /// Builds everything from the settings. The SQL pool connects lazily;
    /// the legacy library is loaded and its engine opened now.
    pub async fn init(mut settings: Settings) -> Result<Deps, InitError> {
        let sdk = settings.aws.sdk_config().await;
        settings.sql.connection_string =
            resolve_secret(&sdk, &settings.sql_source, "connectionString").await?;
        settings.sql.check_transport(settings.insecure)?;
        let sql = &settings.sql;
        let profiles = ProfileStore::new(
            settings.aws.dynamodb_client(&sdk),
            settings.students_table.clone(),
            settings.aws.dynamodb_timeouts(),
        );
        let pool = SqlPool::new(sql)?;
        let legacy = LegacyEngine::start(&settings.legacy).await?;
        let tokens = keys::load(&sdk, &settings.next_token).await?;
        tracing::info!(
            table = %settings.students_table,
            pool_max = settings.sql.max_size,
            legacy_library = %settings.legacy.lib_path.display(),
            "dependencies ready"
        );
        let resolver = Resolver::new(profiles, pool, legacy, tokens, settings.authz);
        Ok(Deps {
            audit: AuditKey::derive(&resolver.token_keys().current),
            resolver,
            counters: InvocationCounters::default(),
            reported: ReportedTotals::default(),
            metrics: settings.metrics,
            shutdown_grace: settings.shutdown_grace,
            deadline_margin: settings.deadline_margin,
        })
    }

    /// The time budget of an invocation whose deadline is `deadline_ms` (ms
    /// since the epoch, Lambda's `context.deadline`): that, less `DEADLINE_MARGIN_MS`.
    pub fn invocation_budget(&self, deadline_ms: u64) -> Budget {
        Budget::from_lambda_deadline(deadline_ms, self.deadline_margin)
    }

    /// The report with the state of the environment's resources added: the
    /// pool, the native handles (in process) or the workers (isolated); the
    /// running counters' increase since the last report is taken here, so
    /// call this once per invocation.
    pub fn with_resource_state(&self, report: &InvocationReport) -> InvocationReport {
        let mut report = report.clone();
        let legacy = self.resolver.legacy();
        let native = legacy.native_stats();
        let isolation_total = legacy.isolation_stats();
        report.resources = Some(ResourceState {
            pool: self.resolver.sql().status(),
            pool_peak: self.resolver.sql().take_recent_peak(),
            native_live_handles: native.map(|n| n.live_results()),
            native_violations_total: native.map(|n| n.violations),
            native_violations: native.map(|n| self.reported.new_violations(n.violations)),
            isolation_total,
            isolation: isolation_total.map(|t| self.reported.isolation_increase(&t)),
        });
        report
    }

    /// Logs the invocation and prints its EMF lines; updates the counters.
    pub fn record(&self, report: &InvocationReport) {
        let report = self.with_resource_state(report);
        self.counters.invocations.fetch_add(1, Ordering::Relaxed);
        self.counters
            .items
            .fetch_add(report.items as u64, Ordering::Relaxed);
        self.counters
            .item_errors
            .fetch_add(report.errors as u64, Ordering::Relaxed);
        report.log();
        self.metrics
            .print(|function_name, now_ms| report.emf(function_name, now_ms));
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
