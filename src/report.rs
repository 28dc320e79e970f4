//! What one resolver invocation did: its structured log line and its EMF
//! metrics (the document is built by [`assessments_common::observability`]).

use std::time::Duration;

use assessments_common::observability::{Metric, emf_document, ms};
use serde_json::{Value, json};

use crate::legacy::{BreakerState, IsolationStats};
use crate::resolver::{ErrorType, Timings};
use crate::sqlserver::PoolStatus;

/// The CloudWatch namespace of the resolver's EMF metrics.
pub const METRICS_NAMESPACE: &str = "AssessmentsResolver";

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
    pub isolation: Option<IsolationStats>,
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
            let open = isolation.breaker != Some(BreakerState::Closed);
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
