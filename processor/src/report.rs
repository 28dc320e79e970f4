//! What one assessment-processor invocation (an SQS batch) did: its
//! structured log line and its EMF metrics (the document is built by
//! [`assessments_common::observability`]).

use std::time::Duration;

use assessments_common::observability::{
    EmfDocument, FUNCTION_DIMENSIONS, FunctionId, MetricTable, ms, with_units,
};
use serde::Serialize;

use crate::{RecordOutcome, RecordReport};

/// The CloudWatch namespace of the assessment processor's EMF metrics.
pub const PROCESSOR_METRICS_NAMESPACE: &str = "AssessmentProcessor";

/// Every metric the processor emits per invocation (dimension
/// `FunctionName`): name, unit, meaning. The template's alarms and the
/// runbook (docs/operations.md) use these names.
pub const METRICS: &MetricTable = &[
    ("Records", "Count", "records in the SQS batch"),
    ("Scored", "Count", "records scored and written now"),
    (
        "AlreadyScored",
        "Count",
        "redeliveries and duplicates: not scored again",
    ),
    (
        "Failed",
        "Count",
        "records worth retrying, returned to the queue (batchItemFailures)",
    ),
    (
        "PoisonRecords",
        "Count",
        "records that can never succeed, sent to the dead-letter queue at once",
    ),
    (
        "DurationMs",
        "Milliseconds",
        "the handler's time for the batch",
    ),
    (
        "ScoringRequests",
        "Count",
        "requests sent to the scoring API, retries included",
    ),
    ("ScoringThrottled", "Count", "scoring API answers 429"),
    (
        "LimiterWaitMs",
        "Milliseconds",
        "time records waited for the rate limiter, summed",
    ),
    (
        "HistoryItems",
        "Count",
        "history items read from the Assessments table",
    ),
    (
        "HistoryQueries",
        "Count",
        "history queries sent to DynamoDB",
    ),
    (
        "HistoryTruncated",
        "Count",
        "records whose history hit a limit (HISTORY_MAX_*)",
    ),
];

/// What one assessment-processor invocation (an SQS batch) did.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchReport {
    pub request_id: String,
    pub records: usize,
    pub scored: usize,
    pub already_scored: usize,
    /// Failed and returned to the queue.
    pub failed: usize,
    /// Failed for good and sent to the dead-letter queue.
    pub dead_lettered: usize,
    /// Distinct failure kinds (`ProcessError::kind`).
    pub failure_kinds: Vec<&'static str>,
    pub duration: Duration,
    pub scoring_requests: u64,
    pub scoring_throttled: u64,
    pub limiter_wait: Duration,
    pub history_items: u64,
    pub history_queries: u64,
    pub history_truncated: u64,
}

impl BatchReport {
    pub fn new(request_id: &str, records: usize) -> Self {
        BatchReport {
            request_id: request_id.to_owned(),
            records,
            scored: 0,
            already_scored: 0,
            failed: 0,
            dead_lettered: 0,
            failure_kinds: Vec::new(),
            duration: Duration::ZERO,
            scoring_requests: 0,
            scoring_throttled: 0,
            limiter_wait: Duration::ZERO,
            history_items: 0,
            history_queries: 0,
            history_truncated: 0,
        }
    }

    /// Adds one record's outcome and cost.
    pub fn add(&mut self, record: &RecordReport) {
        match &record.outcome {
            RecordOutcome::Scored { .. } => self.scored += 1,
            RecordOutcome::AlreadyScored => self.already_scored += 1,
            RecordOutcome::Failed(error) => {
                if record.dead_lettered {
                    self.dead_lettered += 1;
                } else {
                    self.failed += 1;
                }
                if !self.failure_kinds.contains(&error.kind()) {
                    self.failure_kinds.push(error.kind());
                }
            }
        }
        self.scoring_requests += u64::from(record.scoring.requests);
        self.scoring_throttled += u64::from(record.scoring.throttled);
        self.limiter_wait += record.scoring.limiter_wait;
        self.history_items += record.history_items as u64;
        self.history_queries += record.history_queries as u64;
        self.history_truncated += u64::from(record.history_truncated);
    }

    pub fn log(&self) {
        tracing::info!(
            request_id = %self.request_id,
            records = self.records,
            scored = self.scored,
            already_scored = self.already_scored,
            failed = self.failed,
            dead_lettered = self.dead_lettered,
            failure_kinds = ?self.failure_kinds,
            duration_ms = ms(self.duration),
            scoring_requests = self.scoring_requests,
            scoring_throttled = self.scoring_throttled,
            limiter_wait_ms = ms(self.limiter_wait),
            history_items = self.history_items,
            history_queries = self.history_queries,
            history_truncated = self.history_truncated,
            "invocation"
        );
    }

    pub fn emf<'a>(
        &'a self,
        function: FunctionId<'a>,
        timestamp_ms: i64,
    ) -> EmfDocument<'a, EmfProperties<'a>> {
        let values = [
            ("Records", self.records as f64),
            ("Scored", self.scored as f64),
            ("AlreadyScored", self.already_scored as f64),
            ("Failed", self.failed as f64),
            ("PoisonRecords", self.dead_lettered as f64),
            ("DurationMs", ms(self.duration)),
            ("ScoringRequests", self.scoring_requests as f64),
            ("ScoringThrottled", self.scoring_throttled as f64),
            ("LimiterWaitMs", ms(self.limiter_wait)),
            ("HistoryItems", self.history_items as f64),
            ("HistoryQueries", self.history_queries as f64),
            ("HistoryTruncated", self.history_truncated as f64),
        ];
        let metrics = with_units(METRICS, &values);
        EmfDocument::new(
            PROCESSOR_METRICS_NAMESPACE,
            FUNCTION_DIMENSIONS,
            function,
            timestamp_ms,
            metrics,
            EmfProperties {
                request_id: &self.request_id,
                failure_kinds: &self.failure_kinds,
            },
        )
    }
}

/// The searchable fields of the processor's EMF document.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct EmfProperties<'a> {
    request_id: &'a str,
    failure_kinds: &'a [&'static str],
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn every_metric_is_documented_declared_and_numeric() {
        let report = BatchReport::new("req-1", 3);
        let doc = report
            .emf(
                FunctionId {
                    name: "fn",
                    version: "$LATEST",
                },
                1_700_000_000_000,
            )
            .to_value();
        let directive = &doc["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(
            directive["Dimensions"],
            json!([["FunctionName"], ["FunctionName", "Version"]])
        );
        assert_eq!(doc["Version"], "$LATEST");
        let declared = directive["Metrics"].as_array().expect("metrics");
        assert_eq!(declared.len(), METRICS.len());
        for (metric, (name, unit, _)) in declared.iter().zip(METRICS) {
            assert_eq!(metric, &json!({"Name": name, "Unit": unit}));
            assert!(doc[*name].is_number(), "{name}");
        }
        assert_eq!(doc["Records"], 3);
    }
}
