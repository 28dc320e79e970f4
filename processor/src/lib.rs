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
//! memory: nothing here outlives an invocation but the clients.
//!
//! * [`message`]: a record body, validated;
//! * [`assessments`]: the Assessments table (history, idempotent write);
//! * [`scoring`]: the scoring API client;
//! * [`sqs`]: the event edge: SQS event in, partial batch response out;
//! * [`dead_letters`]: poison records sent straight to the dead-letter queue;
//! * [`report`]: what one invocation did, as a log line and EMF metrics;
//! * [`deps`]: settings, the clients built once, the Lambda function.
//!
//! Settings, the AWS SDK, DynamoDB error classification, the EMF builder and
//! the identifier rules come from `assessments-common` (`common/`), shared
//! with the resolver; nothing of the resolver's is linked here.

#![forbid(unsafe_code)]

pub mod assessments;
pub mod dead_letters;
pub mod deps;
pub mod message;
pub mod report;
pub mod scoring;
pub mod sqs;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use assessments_common::budget::Budget;
use assessments_common::dynamo::DynamoError;
use futures_util::StreamExt;
use serde_json::json;

use self::assessments::{AssessmentStore, History, HistoryLimits, ScoreWrite, WriteOutcome};
use self::message::{AssessmentMessage, InvalidMessage};
use self::scoring::{CallStats, ScoringClient, ScoringError};

pub use deps::{ProcessorDeps, ProcessorInitError, ProcessorSettings};

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
    /// outcome. Work still running `deadline_margin` before the invocation's
    /// `deadline` is dropped (in-flight requests are cancelled) and reported failed.
    pub async fn process_batch(
        &self,
        records: &[Record<'_>],
        deadline: &Budget,
    ) -> Vec<RecordReport> {
        let parsed: Vec<Result<AssessmentMessage, InvalidMessage>> = records
            .iter()
            .map(|r| AssessmentMessage::parse(r.body))
            .collect();
        let leader = leaders(&parsed);
        let stop_at = deadline.less(self.deadline_margin).deadline().into_std();
        // Collected: a lazy iterator of futures in this future would not be
        // `Send` for every lifetime (a known limit of the compiler's inference).
        let work: Vec<_> = (parsed.iter().enumerate())
            .filter(|(index, _)| leader[*index].is_none())
            .map(|(index, message)| {
                let record = records[index];
                async move { (index, self.run(message, record, stop_at).await) }
            })
            .collect();
        let mut reports: Vec<Option<RecordReport>> = vec![None; records.len()];
        let mut done = futures_util::stream::iter(work).buffer_unordered(self.concurrency);
        while let Some((index, report)) = done.next().await {
            reports[index] = Some(report);
        }
        drop(done);
        follow_leaders(&reports, &leader)
    }

    /// One record, to its end or to `stop_at`.
    async fn run(
        &self,
        message: &Result<AssessmentMessage, InvalidMessage>,
        record: Record<'_>,
        stop_at: Instant,
    ) -> RecordReport {
        let message = match message {
            Err(invalid) => {
                return RecordReport::new(RecordOutcome::Failed(ProcessError::Invalid(
                    invalid.clone(),
                )));
            }
            Ok(message) => message,
        };
        let started = Instant::now();
        let mut report = RecordReport::new(RecordOutcome::AlreadyScored);
        let run = self.process(message, record, stop_at, &mut report);
        report.outcome = match tokio::time::timeout_at(stop_at.into(), run).await {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(error)) => RecordOutcome::Failed(error),
            Err(_) => RecordOutcome::Failed(ProcessError::Deadline),
        };
        report.elapsed = started.elapsed();
        report
    }

    /// Reads the history (stopping if the assessment is scored already),
    /// scores the assessment, writes it.
    async fn process(
        &self,
        message: &AssessmentMessage,
        record: Record<'_>,
        stop_at: Instant,
        report: &mut RecordReport,
    ) -> Result<RecordOutcome, ProcessError> {
        let Some(history) = self.unscored_history(message, report).await? else {
            return Ok(RecordOutcome::AlreadyScored);
        };
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
        self.write(message, record, &score, report).await
    }

    /// The assessment's history, or `None` when it is scored already (a
    /// redelivery, or a duplicate).
    async fn unscored_history(
        &self,
        message: &AssessmentMessage,
        report: &mut RecordReport,
    ) -> Result<Option<History>, ProcessError> {
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
        Ok((!already_scored).then_some(history))
    }

    /// Writes the scored assessment (unless a concurrent delivery did).
    async fn write(
        &self,
        message: &AssessmentMessage,
        record: Record<'_>,
        score: &scoring::Score,
        report: &mut RecordReport,
    ) -> Result<RecordOutcome, ProcessError> {
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
        Ok(match written.map_err(ProcessError::Write)? {
            WriteOutcome::Written => RecordOutcome::Scored { score: score.score },
            WriteOutcome::AlreadyScored => RecordOutcome::AlreadyScored,
        })
    }
}

/// For each record, the earlier record of the same assessment that does
/// its work (`None`: it does its own).
fn leaders(parsed: &[Result<AssessmentMessage, InvalidMessage>]) -> Vec<Option<usize>> {
    let mut first: HashMap<(&str, &str), usize> = HashMap::new();
    let mut leader: Vec<Option<usize>> = vec![None; parsed.len()];
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
    leader
}

/// Every record's report: its own, or (a duplicate) its leader's failure or
/// `AlreadyScored`.
fn follow_leaders(reports: &[Option<RecordReport>], leader: &[Option<usize>]) -> Vec<RecordReport> {
    (0..reports.len())
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
