//! The assessment processor: the SQS-triggered function that scores new
//! assessments through the external scoring API (the second seed, rebuilt).
//!
//! Per record, once: validate the body; read the student's history from the
//! Assessments table (iterative, bounded), stopping at once if the assessment
//! is already scored (a redelivery); score it (one shared HTTP client,
//! one shared rate limiter, retries with backoff); write the result with a
//! conditional put. Records run concurrently up to a bound; each finishes
//! or fails before the invocation's deadline. Failed records are reported
//! to SQS (`batchItemFailures`) and redelivered by the queue, never held in
//! memory: nothing here outlives an invocation but the clients and counters.
//!
//! * [`message`]: a record body, validated;
//! * [`assessments`]: the Assessments table (history, idempotent write);
//! * [`scoring`]: the scoring API client;
//! * [`sqs`]: the event edge: SQS event in, partial batch response out;
//! * [`dead_letters`]: poison records sent straight to the dead-letter queue;
//! * [`report`]: what one invocation did, as a log line and EMF metrics.
//!
//! Settings, the AWS SDK, DynamoDB error classification, the EMF builder and
//! the identifier rules come from `assessments-common` (`common/`), shared
//! with the resolver; nothing of the resolver's is linked here.

pub mod assessments;
pub mod dead_letters;
pub mod message;
pub mod report;
pub mod scoring;
pub mod sqs;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use assessments_common::aws::{AwsSettings, SecretError, Secrets};
use assessments_common::config::{ConfigError, Env};
use assessments_common::dynamo::DynamoError;
use assessments_common::observability::MetricsSettings;
use futures_util::StreamExt;
use serde_json::json;

use self::assessments::{AssessmentStore, History, HistoryLimits, ScoreWrite, WriteOutcome};
use self::dead_letters::DeadLetters;
use self::message::{AssessmentMessage, InvalidMessage};
use self::report::BatchReport;
use self::scoring::{CallStats, ScoringClient, ScoringError, ScoringSettings, ScoringTotals};

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

impl assessments_common::lambda_init::InitFailure for ProcessorInitError {
    fn error_type(&self) -> &'static str {
        match self {
            ProcessorInitError::Config(_) => "InitError.Configuration",
            ProcessorInitError::Secret(_) => "InitError.Secret",
            ProcessorInitError::Scoring(_) => "InitError.ScoringClient",
        }
    }
}

/// Why a record failed. A failure worth retrying is reported to SQS, which
/// redelivers the record until its receive count sends it to the dead-letter
/// queue; a permanent one ([`ProcessError::is_permanent`]) goes to the
/// dead-letter queue at once.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ProcessError {
    #[error("invalid message: {0}")]
    Invalid(#[from] InvalidMessage),
    #[error("{0}")]
    Read(DynamoError),
    #[error("{0}")]
    Scoring(#[from] ScoringError),
    #[error("writing the result: {0}")]
    Write(DynamoError),
    /// The answer holds a number outside DynamoDB's range: the write would
    /// fail on every delivery.
    #[error("the scoring API's answer cannot be stored: {0}")]
    Unstorable(String),
    #[error("not finished before the invocation's deadline")]
    Deadline,
}

impl ProcessError {
    /// A stable name for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            ProcessError::Invalid(_) => "InvalidMessage",
            ProcessError::Read(_) => "DynamoDBReadFailed",
            ProcessError::Scoring(ScoringError::Rejected { .. }) => "ScoringRejected",
            ProcessError::Scoring(ScoringError::Exhausted { .. }) => "ScoringUnavailable",
            ProcessError::Scoring(ScoringError::Malformed(_)) => "ScoringMalformed",
            ProcessError::Write(_) => "DynamoDBWriteFailed",
            ProcessError::Unstorable(_) => "ScoreUnstorable",
            ProcessError::Deadline => "DeadlineExceeded",
        }
    }

    /// Failures no redelivery can mend: the body is invalid, the scoring API
    /// refused the assessment itself (4xx other than 408 and 429), or its
    /// answer cannot be stored.
    pub fn is_permanent(&self) -> bool {
        matches!(
            self,
            ProcessError::Invalid(_)
                | ProcessError::Scoring(ScoringError::Rejected { .. })
                | ProcessError::Unstorable(_)
        )
    }
}

/// What became of one record.
#[derive(Debug, Clone, PartialEq)]
pub enum RecordOutcome {
    /// Scored and written now.
    Scored {
        score: f64,
    },
    /// Already scored (a redelivery, or a duplicate in the same batch): not
    /// scored or written again.
    AlreadyScored,
    Failed(ProcessError),
}

/// One record's outcome and cost.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordReport {
    pub outcome: RecordOutcome,
    /// Wall time of the record, and the parts spent waiting on DynamoDB and on
    /// the scoring API (its retries, backoff and rate limiter included).
    pub elapsed: Duration,
    pub dynamodb_time: Duration,
    pub scoring_time: Duration,
    pub scoring: CallStats,
    pub history_items: usize,
    pub history_students: usize,
    pub history_queries: usize,
    pub history_truncated: bool,
    /// A permanent failure sent to the dead-letter queue (not redelivered).
    pub dead_lettered: bool,
}

impl RecordReport {
    fn new(outcome: RecordOutcome) -> Self {
        RecordReport {
            outcome,
            elapsed: Duration::ZERO,
            dynamodb_time: Duration::ZERO,
            scoring_time: Duration::ZERO,
            scoring: CallStats::default(),
            history_items: 0,
            history_students: 0,
            history_queries: 0,
            history_truncated: false,
            dead_lettered: false,
        }
    }

    fn history(&mut self, history: &History) {
        self.history_items = history.items.len();
        self.history_students = history.students_read;
        self.history_queries = history.queries;
        self.history_truncated = history.truncated;
    }
}

/// One record of a batch: its id (for `batchItemFailures`), body, and who
/// sent it.
#[derive(Debug, Clone, Copy)]
pub struct Record<'a> {
    pub message_id: &'a str,
    pub body: Option<&'a str>,
    /// SQS's `SenderId` attribute: the principal that sent the message, as
    /// SQS saw it (a producer cannot set it). The queue policy admits only
    /// the named producers; the written item keeps it as `producerId`.
    pub sender_id: Option<&'a str>,
}

/// The processor's clients, built once.
#[derive(Debug)]
pub struct Processor {
    store: AssessmentStore,
    scoring: ScoringClient,
    limits: HistoryLimits,
    concurrency: usize,
    deadline_margin: Duration,
}

impl Processor {
    pub fn new(
        store: AssessmentStore,
        scoring: ScoringClient,
        limits: HistoryLimits,
        concurrency: usize,
        deadline_margin: Duration,
    ) -> Self {
        Processor {
            store,
            scoring,
            limits,
            concurrency: concurrency.max(1),
            deadline_margin,
        }
    }

    pub fn scoring(&self) -> &ScoringClient {
        &self.scoring
    }

    pub fn store(&self) -> &AssessmentStore {
        &self.store
    }

    /// Processes a batch; one report per record, in order. Records with the
    /// same student and assessment ids are processed once and share the
    /// outcome. Work still running `deadline_margin` before `deadline` is
    /// dropped (in-flight requests are cancelled) and reported failed.
    pub async fn process_batch(
        &self,
        records: &[Record<'_>],
        deadline: Instant,
    ) -> Vec<RecordReport> {
        let parsed: Vec<Result<AssessmentMessage, InvalidMessage>> = records
            .iter()
            .map(|r| AssessmentMessage::parse(r.body))
            .collect();
        // The first record of each assessment does the work.
        let mut first: HashMap<(&str, &str), usize> = HashMap::new();
        let mut leader: Vec<Option<usize>> = vec![None; records.len()];
        for (index, message) in parsed.iter().enumerate() {
            if let Ok(m) = message {
                let key = (m.student_id.as_str(), m.assessment_id.as_str());
                match first.get(&key) {
                    Some(&lead) => leader[index] = Some(lead),
                    None => {
                        first.insert(key, index);
                    }
                }
            }
        }

        let stop_at = deadline
            .checked_sub(self.deadline_margin)
            .unwrap_or(deadline);
        let work: Vec<_> = parsed
            .iter()
            .enumerate()
            .filter(|(index, _)| leader[*index].is_none())
            .map(|(index, message)| {
                let record = records[index];
                async move {
                    let report = match message {
                        Err(invalid) => RecordReport::new(RecordOutcome::Failed(
                            ProcessError::Invalid(invalid.clone()),
                        )),
                        Ok(message) => {
                            let started = Instant::now();
                            let mut report = RecordReport::new(RecordOutcome::AlreadyScored);
                            let run = self.process(message, record, stop_at, &mut report);
                            report.outcome =
                                match tokio::time::timeout_at(stop_at.into(), run).await {
                                    Ok(Ok(outcome)) => outcome,
                                    Ok(Err(error)) => RecordOutcome::Failed(error),
                                    Err(_) => RecordOutcome::Failed(ProcessError::Deadline),
                                };
                            report.elapsed = started.elapsed();
                            report
                        }
                    };
                    (index, report)
                }
            })
            .collect();
        let mut reports: Vec<Option<RecordReport>> = vec![None; records.len()];
        let mut done = futures_util::stream::iter(work).buffer_unordered(self.concurrency);
        while let Some((index, report)) = done.next().await {
            reports[index] = Some(report);
        }
        drop(done);

        (0..records.len())
            .map(|index| match (&reports[index], leader[index]) {
                (Some(report), _) => report.clone(),
                (None, Some(lead)) => {
                    let outcome = match reports[lead].as_ref().map(|r| &r.outcome) {
                        Some(RecordOutcome::Failed(error)) => RecordOutcome::Failed(error.clone()),
                        _ => RecordOutcome::AlreadyScored,
                    };
                    RecordReport::new(outcome)
                }
                // Every index either ran or has a leader that ran.
                (None, None) => RecordReport::new(RecordOutcome::Failed(ProcessError::Deadline)),
            })
            .collect()
    }

    async fn process(
        &self,
        message: &AssessmentMessage,
        record: Record<'_>,
        stop_at: Instant,
        report: &mut RecordReport,
    ) -> Result<RecordOutcome, ProcessError> {
        let reading = Instant::now();
        let history = self.store.history(message, self.limits).await;
        report.dynamodb_time += reading.elapsed();
        let history = history.map_err(ProcessError::Read)?;
        report.history(&history);
        let already_scored = match history.already_scored {
            Some(known) => known,
            // The student's partition is larger than the item cap: ask directly.
            None => {
                let reading = Instant::now();
                let scored = self
                    .store
                    .is_scored(&message.student_id, &message.assessment_id)
                    .await;
                report.dynamodb_time += reading.elapsed();
                scored.map_err(ProcessError::Read)?
            }
        };
        if already_scored {
            return Ok(RecordOutcome::AlreadyScored);
        }

        let body = serde_json::to_vec(&json!({
            "assessment": message.to_json(),
            "history": history.items,
            "timestamp": chrono::Utc::now().timestamp_millis(),
        }))
        .map_err(|e| ScoringError::Malformed(format!("request not encodable: {e}")))?;
        drop(history);
        let scoring = Instant::now();
        // Stable per assessment: the API can recognise retries and redeliveries.
        let idempotency_key = format!("{}:{}", message.student_id, message.assessment_id);
        let score = self
            .scoring
            .score(
                &message.student_id,
                &idempotency_key,
                body,
                stop_at,
                &mut report.scoring,
            )
            .await;
        report.scoring_time = scoring.elapsed();
        let score = score?;
        assessments::check_storable(score.score, &score.result)
            .map_err(ProcessError::Unstorable)?;
        let scored_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let writing = Instant::now();
        let written = self
            .store
            .put_scored(&ScoreWrite {
                message,
                message_id: record.message_id,
                producer_id: record.sender_id,
                score: score.score,
                result: &score.result,
                scored_at: &scored_at,
            })
            .await;
        report.dynamodb_time += writing.elapsed();
        let written = written.map_err(ProcessError::Write)?;
        Ok(match written {
            WriteOutcome::Written => RecordOutcome::Scored { score: score.score },
            WriteOutcome::AlreadyScored => RecordOutcome::AlreadyScored,
        })
    }
}

/// Counters over the life of the execution environment.
#[derive(Debug, Default)]
pub struct ProcessorCounters {
    pub invocations: AtomicU64,
    pub records: AtomicU64,
    /// Records returned to the queue.
    pub failures: AtomicU64,
    /// Records sent to the dead-letter queue.
    pub dead_lettered: AtomicU64,
}

/// What the handler needs, built once per execution environment.
#[derive(Debug)]
pub struct ProcessorDeps {
    pub processor: Processor,
    pub counters: ProcessorCounters,
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
            counters: ProcessorCounters::default(),
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

    pub fn scoring_totals(&self) -> ScoringTotals {
        self.processor.scoring.totals()
    }

    /// Logs the invocation and prints its EMF line; updates the counters.
    pub fn record(&self, report: &BatchReport) {
        self.counters.invocations.fetch_add(1, Ordering::Relaxed);
        self.counters
            .records
            .fetch_add(report.records as u64, Ordering::Relaxed);
        self.counters
            .failures
            .fetch_add(report.failed as u64, Ordering::Relaxed);
        self.counters
            .dead_lettered
            .fetch_add(report.dead_lettered as u64, Ordering::Relaxed);
        report.log();
        self.metrics
            .print(|function, now_ms| [report.emf(function, now_ms)]);
    }
}
