//! Logs and metrics: JSON logs through tracing (CloudWatch parses them), and
//! one CloudWatch Embedded Metric Format (EMF) line per invocation.

use std::time::Duration;

use serde_json::{Value, json};

use crate::config::{ConfigError, Env};
use crate::resolver::{ErrorType, Timings};
use crate::sqlserver::PoolStatus;

/// The CloudWatch namespace of the resolver's EMF metrics.
pub const METRICS_NAMESPACE: &str = "AssessmentsResolver";

/// Whether and under which function name the EMF lines are printed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricsSettings {
    /// `METRICS_EMF`: print one EMF line per invocation (default true).
    pub emit: bool,
    /// `AWS_LAMBDA_FUNCTION_NAME`, the metrics dimension.
    pub function_name: String,
}

impl MetricsSettings {
    pub fn from_env(env: &Env, default_name: &str) -> Result<Self, ConfigError> {
        let emit = match env.string("METRICS_EMF")?.as_deref() {
            None | Some("true" | "1" | "on") => true,
            Some("false" | "0" | "off") => false,
            Some(_) => {
                return Err(ConfigError::Invalid {
                    name: "METRICS_EMF",
                    reason: "expected true or false".to_owned(),
                });
            }
        };
        Ok(MetricsSettings {
            emit,
            function_name: env
                .string("AWS_LAMBDA_FUNCTION_NAME")?
                .unwrap_or_else(|| default_name.to_owned()),
        })
    }

    /// Prints the EMF document `build(function_name, now_ms)` makes, when enabled.
    /// Lambda sends stdout, line by line, to CloudWatch Logs.
    pub fn print(&self, build: impl FnOnce(&str, i64) -> Value) {
        if self.emit {
            let line = build(&self.function_name, chrono::Utc::now().timestamp_millis());
            println!("{line}");
        }
    }
}

/// A metric's value and CloudWatch unit.
pub type Metric = (&'static str, &'static str, f64);

/// One EMF document: `metrics` declared under `namespace` with the
/// `FunctionName` dimension, plus `properties` (searchable, not metrics).
/// The format: <https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html>.
pub fn emf_document(
    namespace: &str,
    function_name: &str,
    timestamp_ms: i64,
    metrics: &[Metric],
    properties: serde_json::Map<String, Value>,
) -> Value {
    let mut doc = properties;
    doc.insert(
        "_aws".to_owned(),
        json!({
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{
                "Namespace": namespace,
                "Dimensions": [["FunctionName"]],
                "Metrics": metrics.iter().map(|(name, unit, _)| json!({"Name": name, "Unit": unit})).collect::<Vec<_>>(),
            }],
        }),
    );
    doc.insert("FunctionName".to_owned(), json!(function_name));
    for (name, _, value) in metrics {
        // Whole numbers print as integers (counts read naturally in the logs).
        let value = if value.fract() == 0.0 && value.abs() < 9.0e15 {
            json!(*value as i64)
        } else {
            json!(value)
        };
        doc.insert((*name).to_owned(), value);
    }
    Value::Object(doc)
}

/// JSON logs to stdout, level from `RUST_LOG` (default `info`).
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_span_list(false)
        .with_target(false)
        .with_env_filter(filter)
        .with_writer(std::io::stdout)
        .init();
}

/// What one invocation did.
#[derive(Debug, Clone, PartialEq)]
pub struct InvocationReport {
    pub request_id: String,
    pub batch: bool,
    pub items: usize,
    pub errors: usize,
    pub error_types: Vec<ErrorType>,
    pub duration: Duration,
    pub timings: Timings,
    /// Filled in by `Deps::record`.
    pub pool: Option<PoolStatus>,
    pub native_live_handles: Option<u64>,
    pub native_violations: Option<u64>,
    /// With `LEGACY_ISOLATION=process`: the supervisor's counters.
    pub isolation: Option<crate::legacy::IsolationStats>,
}

impl InvocationReport {
    pub fn new(
        request_id: &str,
        batch: bool,
        items: usize,
        duration: Duration,
        timings: Timings,
    ) -> Self {
        InvocationReport {
            request_id: request_id.to_owned(),
            batch,
            items,
            errors: 0,
            error_types: Vec::new(),
            duration,
            timings,
            pool: None,
            native_live_handles: None,
            native_violations: None,
            isolation: None,
        }
    }

    /// An invocation refused before any item was looked at.
    pub fn rejected(request_id: &str, duration: Duration, error_type: ErrorType) -> Self {
        let mut report = InvocationReport::new(request_id, true, 0, duration, Timings::default());
        report.count_error(error_type);
        report
    }

    pub fn count_error(&mut self, error_type: ErrorType) {
        self.errors += 1;
        if !self.error_types.contains(&error_type) {
            self.error_types.push(error_type);
        }
    }

    /// The structured log line's fields.
    pub fn log(&self) {
        let pool = self.pool.unwrap_or_default();
        tracing::info!(
            request_id = %self.request_id,
            field = "Query.getAssessments",
            batch = self.batch,
            items = self.items,
            errors = self.errors,
            duration_ms = ms(self.duration),
            profiles_ms = ms(self.timings.profiles),
            sql_ms = ms(self.timings.sql),
            legacy_ms = ms(self.timings.legacy),
            profiles_requested = self.timings.profiles_requested,
            pool_size = pool.size,
            pool_in_use = pool.in_use,
            pool_peak = pool.peak_in_use,
            pool_max = pool.max_size,
            native_live_handles = self.native_live_handles.unwrap_or(0),
            native_violations = self.native_violations.unwrap_or(0),
            legacy_workers = self.isolation.map(|i| i.workers),
            legacy_worker_crashes = self.isolation.map(|i| i.crashes),
            legacy_worker_hangs = self.isolation.map(|i| i.hangs),
            legacy_workers_started = self.isolation.map(|i| i.started),
            legacy_worker_start_failures = self.isolation.map(|i| i.start_failures),
            legacy_breaker = self.isolation.and_then(|i| i.breaker).map(|b| b.as_str()),
            "invocation"
        );
    }

    /// One EMF document: metrics CloudWatch extracts from the log line.
    pub fn emf(&self, function_name: &str, timestamp_ms: i64) -> Value {
        let pool = self.pool.unwrap_or_default();
        let mut metrics: Vec<Metric> = vec![
            ("Items", "Count", self.items as f64),
            ("Errors", "Count", self.errors as f64),
            ("DurationMs", "Milliseconds", ms(self.duration)),
            ("ProfilesMs", "Milliseconds", ms(self.timings.profiles)),
            ("SqlMs", "Milliseconds", ms(self.timings.sql)),
            ("LegacyMs", "Milliseconds", ms(self.timings.legacy)),
            (
                "ProfilesRequested",
                "Count",
                self.timings.profiles_requested as f64,
            ),
            ("PoolInUse", "Count", pool.in_use as f64),
            ("PoolPeak", "Count", pool.peak_in_use as f64),
            ("PoolSize", "Count", pool.size as f64),
            (
                "NativeLiveHandles",
                "Count",
                self.native_live_handles.unwrap_or(0) as f64,
            ),
            (
                "NativeViolations",
                "Count",
                self.native_violations.unwrap_or(0) as f64,
            ),
        ];
        if let Some(isolation) = self.isolation {
            // Counters since the environment started; CloudWatch's Maximum over a
            // period shows their growth, LegacyBreakerOpen is 1 while refusing.
            let open = isolation.breaker != Some(crate::legacy::BreakerState::Closed);
            metrics.extend([
                ("LegacyWorkers", "Count", isolation.workers as f64),
                ("LegacyWorkersStarted", "Count", isolation.started as f64),
                ("LegacyWorkerCrashes", "Count", isolation.crashes as f64),
                ("LegacyWorkerHangs", "Count", isolation.hangs as f64),
                ("LegacyWorkersRecycled", "Count", isolation.recycled as f64),
                (
                    "LegacyWorkerStartFailures",
                    "Count",
                    isolation.start_failures as f64,
                ),
                ("LegacyBreakerOpen", "Count", f64::from(u8::from(open))),
            ]);
        }
        let mut properties = serde_json::Map::new();
        properties.insert("RequestId".to_owned(), json!(self.request_id));
        properties.insert("Batch".to_owned(), json!(self.batch));
        properties.insert(
            "ErrorTypes".to_owned(),
            json!(
                self.error_types
                    .iter()
                    .map(|t| t.as_str())
                    .collect::<Vec<_>>()
            ),
        );
        emf_document(
            METRICS_NAMESPACE,
            function_name,
            timestamp_ms,
            &metrics,
            properties,
        )
    }
}

/// The CloudWatch namespace of the assessment processor's EMF metrics.
pub const PROCESSOR_METRICS_NAMESPACE: &str = "AssessmentProcessor";

/// What one assessment-processor invocation (an SQS batch) did.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchReport {
    pub request_id: String,
    pub records: usize,
    pub scored: usize,
    pub already_scored: usize,
    pub failed: usize,
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
    pub fn add(&mut self, record: &crate::processor::RecordReport) {
        use crate::processor::Outcome;
        match &record.outcome {
            Outcome::Scored { .. } => self.scored += 1,
            Outcome::AlreadyScored => self.already_scored += 1,
            Outcome::Failed(error) => {
                self.failed += 1;
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

    pub fn emf(&self, function_name: &str, timestamp_ms: i64) -> Value {
        let metrics: [Metric; 11] = [
            ("Records", "Count", self.records as f64),
            ("Scored", "Count", self.scored as f64),
            ("AlreadyScored", "Count", self.already_scored as f64),
            ("Failed", "Count", self.failed as f64),
            ("DurationMs", "Milliseconds", ms(self.duration)),
            ("ScoringRequests", "Count", self.scoring_requests as f64),
            ("ScoringThrottled", "Count", self.scoring_throttled as f64),
            ("LimiterWaitMs", "Milliseconds", ms(self.limiter_wait)),
            ("HistoryItems", "Count", self.history_items as f64),
            ("HistoryQueries", "Count", self.history_queries as f64),
            ("HistoryTruncated", "Count", self.history_truncated as f64),
        ];
        let mut properties = serde_json::Map::new();
        properties.insert("RequestId".to_owned(), json!(self.request_id));
        properties.insert("FailureKinds".to_owned(), json!(self.failure_kinds));
        emf_document(
            PROCESSOR_METRICS_NAMESPACE,
            function_name,
            timestamp_ms,
            &metrics,
            properties,
        )
    }
}

/// Milliseconds with microsecond precision.
pub fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_emf_document_declares_every_metric_it_carries() {
        let mut report = InvocationReport::new(
            "req-1",
            true,
            3,
            Duration::from_millis(12),
            Timings::default(),
        );
        report.count_error(ErrorType::NotFound);
        let doc = report.emf("fn", 1_700_000_000_000);
        let declared = doc["_aws"]["CloudWatchMetrics"][0]["Metrics"]
            .as_array()
            .expect("metrics");
        for metric in declared {
            let name = metric["Name"].as_str().expect("name");
            assert!(
                doc.get(name).is_some_and(Value::is_number),
                "{name} has no numeric value"
            );
        }
        assert_eq!(doc["Errors"], 1);
        assert_eq!(doc["ErrorTypes"], json!(["NotFound"]));
        assert_eq!(doc["DurationMs"], 12.0);
    }
}
