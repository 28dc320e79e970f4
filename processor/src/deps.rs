//! The processor's settings, the clients built from them once per execution
//! environment, and the processor as a Lambda function.

use std::time::Duration;

use assessments_common::aws::{AwsSettings, SecretError, Secrets};
use assessments_common::config::{ConfigError, Env};
use assessments_common::lambda::InitFailure;
use assessments_common::observability::MetricsSettings;

use crate::Processor;
use crate::assessments::{AssessmentStore, HistoryLimits};
use crate::dead_letters::DeadLetters;
use crate::report::BatchReport;
use crate::scoring::{ScoringClient, ScoringSettings};

/// Every setting of the processor. See docs/configuration.md.
#[derive(Debug, Clone)]
pub struct ProcessorSettings {
    /// `ASSESSMENTS_TABLE`.
    pub assessments_table: String,
    pub aws: AwsSettings,
    pub scoring: ScoringSettings,
    /// `PROCESSOR_CONCURRENCY`: records processed at once (default 10).
    pub concurrency: usize,
    /// `HISTORY_MAX_DEPTH` (default 10, at most 10), `HISTORY_MAX_ITEMS`
    /// (default 200), `HISTORY_MAX_STUDENTS` (default 25).
    pub history: HistoryLimits,
    /// `DEADLINE_MARGIN_MS`: records still running this long before the
    /// invocation's deadline are stopped and reported failed (default 1000).
    pub deadline_margin: Duration,
    pub metrics: MetricsSettings,
    /// `DEAD_LETTER_QUEUE_URL`: where poison records go at once (see [`dead_letters`]).
    pub dead_letter_queue_url: Option<String>,
}

impl ProcessorSettings {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(ProcessorSettings {
            assessments_table: env.required("ASSESSMENTS_TABLE")?,
            aws: AwsSettings::from_env(env)?,
            scoring: ScoringSettings::from_env(env)?,
            concurrency: env.number("PROCESSOR_CONCURRENCY", 1..=100)?.unwrap_or(10) as usize,
            history: HistoryLimits {
                max_depth: env.number("HISTORY_MAX_DEPTH", 0..=10)?.unwrap_or(10) as u32,
                max_items: env.number("HISTORY_MAX_ITEMS", 1..=1000)?.unwrap_or(200) as usize,
                max_students: env.number("HISTORY_MAX_STUDENTS", 1..=100)?.unwrap_or(25) as usize,
            },
            deadline_margin: Duration::from_millis(
                env.number("DEADLINE_MARGIN_MS", 0..=60_000)?
                    .unwrap_or(1000),
            ),
            metrics: MetricsSettings::from_env(env, "assessment-processor")?,
            dead_letter_queue_url: env.string("DEAD_LETTER_QUEUE_URL")?,
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ProcessorInitError {
    #[error("configuration: {0}")]
    Config(#[from] ConfigError),
    #[error("scoring API key: {0}")]
    Secret(#[from] SecretError),
    #[error("scoring API client: {0}")]
    Scoring(String),
}

impl InitFailure for ProcessorInitError {
    fn error_type(&self) -> &'static str {
        match self {
            ProcessorInitError::Config(_) => "InitError.Configuration",
            ProcessorInitError::Secret(_) => "InitError.Secret",
            ProcessorInitError::Scoring(_) => "InitError.ScoringClient",
        }
    }
}

/// What the handler needs, built once per execution environment.
#[derive(Debug)]
pub struct ProcessorDeps {
    pub processor: Processor,
    /// Where poison records go (`DEAD_LETTER_QUEUE_URL`).
    pub dead_letters: Option<DeadLetters>,
    metrics: MetricsSettings,
}

impl ProcessorDeps {
    pub async fn init(settings: ProcessorSettings) -> Result<ProcessorDeps, ProcessorInitError> {
        let sdk = settings.aws.sdk_config().await;
        let api_key = Secrets::new(&sdk, &settings.aws)
            .resolve(&settings.scoring.api_key, "apiKey")
            .await?;
        let store = AssessmentStore::new(
            settings.aws.dynamodb_client(&sdk),
            settings.assessments_table.clone(),
            settings.aws.dynamodb_timeouts(),
        );
        let scoring = ScoringClient::new(settings.scoring.clone(), &api_key, settings.concurrency)
            .map_err(ProcessorInitError::Scoring)?;
        tracing::info!(
            table = %settings.assessments_table,
            scoring_endpoint = %scoring.endpoint(),
            rate_limit = settings.scoring.rate_limit,
            concurrency = settings.concurrency,
            "dependencies ready"
        );
        Ok(ProcessorDeps {
            processor: Processor::new(
                store,
                scoring,
                settings.history,
                settings.concurrency,
                settings.deadline_margin,
            ),
            dead_letters: settings.dead_letter_queue_url.map(|url| {
                let mut config = aws_sdk_sqs::config::Builder::from(&sdk);
                if let Some(endpoint) = &settings.aws.sqs_endpoint {
                    config = config.endpoint_url(endpoint);
                }
                DeadLetters::new(aws_sdk_sqs::Client::from_conf(config.build()), url)
            }),
            metrics: settings.metrics,
        })
    }

    /// Logs the invocation and prints its EMF line.
    pub fn record(&self, report: &BatchReport) {
        report.log();
        self.metrics
            .print(|function, now_ms| [report.emf(function, now_ms)]);
    }
}
