//! What one resolver invocation did: its structured log line and its EMF
//! metrics (the documents are built by [`assessments_common::observability`]).
//!
//! The metrics are per invocation: values of this invocation (its items, its
//! time), gauges read at its end (workers alive, handles alive), and for the
//! execution environment's running counters (worker crashes, violations...)
//! the increase since the previous invocation's report ([`ReportedTotals`]),
//! so CloudWatch's Sum over any period counts each event once, across
//! sandboxes. The running totals themselves are in the log line only.
//! [`METRICS`] documents each one; `infra/check_template.py` checks that every
//! alarmed metric is in it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use assessments_common::observability::{
    EmfDocument, FUNCTION_DIMENSIONS, FunctionId, MetricTable, ms, with_units,
};
use serde::Serialize;

use crate::legacy::{BreakerState, IsolationStats};
use crate::resolver::{ErrorType, Timings};
use crate::sqlserver::PoolStatus;

/// The CloudWatch namespace of the resolver's EMF metrics.
pub const METRICS_NAMESPACE: &str = "AssessmentsResolver";

/// The metric of the per-error-type documents (dimensions `FunctionName` and
/// `ErrorType`, with and without `Version`).
pub const ITEM_ERRORS_METRIC: &str = "ItemErrors";

/// Every metric the resolver emits (dimensions `FunctionName`, and
/// `FunctionName` with `Version`): name, unit,
/// what it means and what normal looks like. The runbook (docs/operations.md) and the
/// template's alarms use these names.
pub const METRICS: &MetricTable = &[
    (
        "Items",
        "Count",
        "fields resolved (1 per single invoke; the batch's length)",
    ),
    (
        "ColdStart",
        "Count",
        "1 on an execution environment's first invocation, 0 after: Sum counts cold starts, Average is their share",
    ),
    (
        "Errors",
        "Count",
        "items that failed, any type (per type: ItemErrors by ErrorType)",
    ),
    (
        "DurationMs",
        "Milliseconds",
        "the handler's time, from event to answer",
    ),
    (
        "ProfilesMs",
        "Milliseconds",
        "waiting for DynamoDB (the profiles)",
    ),
    (
        "SqlMs",
        "Milliseconds",
        "waiting for SQL Server (pool, connect, page queries), summed over a batch's items",
    ),
    (
        "LegacyMs",
        "Milliseconds",
        "scoring through the legacy component (slot wait and calls), summed over a batch's items",
    ),
    (
        "ProfilesRequested",
        "Count",
        "distinct student profiles read from DynamoDB",
    ),
    (
        "PoolInUse",
        "Count",
        "SQL connections still checked out when the invocation answered: 0 normally",
    ),
    (
        "PoolPeak",
        "Count",
        "most SQL connections in use at once during the invocation (at most SQL_POOL_MAX_SIZE)",
    ),
    (
        "NativeLiveHandles",
        "Count",
        "legacy result handles alive when the invocation answered: 0 normally (a leak otherwise)",
    ),
    (
        "NativeViolations",
        "Count",
        "new double or foreign releases seen by the legacy component: 0 always (a bug otherwise)",
    ),
    (
        "InitMs",
        "Milliseconds",
        "init's time, from reading the settings to the dependencies ready (first invocation only)",
    ),
    (
        "LegacyWorkers",
        "Count",
        "legacy worker processes alive at the end (isolation)",
    ),
    (
        "LegacyWorkersStarted",
        "Count",
        "worker processes started during the invocation",
    ),
    (
        "LegacyWorkerCrashes",
        "Count",
        "workers that died by a signal (SIGSEGV, SIGABRT...) during the invocation",
    ),
    (
        "LegacyWorkerHangs",
        "Count",
        "workers killed for a call past LEGACY_CALL_TIMEOUT_MS during the invocation",
    ),
    (
        "LegacyWorkersRecycled",
        "Count",
        "workers replaced after LEGACY_WORKER_MAX_CALLS or past their RSS limit",
    ),
    (
        "LegacyWorkerStartFailures",
        "Count",
        "worker starts that failed during the invocation",
    ),
    (
        "LegacyBreakerOpened",
        "Count",
        "times the breaker opened during the invocation",
    ),
    (
        "LegacyBreakerOpen",
        "Count",
        "1 while the breaker refuses calls, 0 when closed",
    ),
];

/// The running counters' values already reported: each increase is reported
/// once, by the first invocation that sees it (also when invocations run
/// concurrently: `fetch_max` hands each unit to one of them).
#[derive(Debug, Default)]
pub struct ReportedTotals {
    violations: AtomicU64,
    started: AtomicU64,
    crashes: AtomicU64,
    exits: AtomicU64,
    hangs: AtomicU64,
    invalid_replies: AtomicU64,
    recycled: AtomicU64,
    start_failures: AtomicU64,
    refused: AtomicU64,
    breaker_opened: AtomicU64,
}

fn newly(reported: &AtomicU64, total: u64) -> u64 {
    total.saturating_sub(reported.fetch_max(total, Ordering::Relaxed))
}

impl ReportedTotals {
    /// New native violations since the last report.
    pub fn new_violations(&self, total: u64) -> u64 {
        newly(&self.violations, total)
    }

    /// The supervisor's counters as increases since the last report; the
    /// gauges (`workers`, `max_workers`, `breaker`) as they are.
    pub fn isolation_increase(&self, total: &IsolationStats) -> IsolationStats {
        IsolationStats {
            workers: total.workers,
            max_workers: total.max_workers,
            started: newly(&self.started, total.started),
            crashes: newly(&self.crashes, total.crashes),
            exits: newly(&self.exits, total.exits),
            hangs: newly(&self.hangs, total.hangs),
            invalid_replies: newly(&self.invalid_replies, total.invalid_replies),
            recycled: newly(&self.recycled, total.recycled),
            start_failures: newly(&self.start_failures, total.start_failures),
            refused: newly(&self.refused, total.refused),
            breaker_opened: newly(&self.breaker_opened, total.breaker_opened),
            breaker: total.breaker,
        }
    }
}

/// What the execution environment's resources looked like when the
/// invocation answered (filled in by `Deps::record`).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ResourceState {
    /// The pool, with its running totals (logs).
    pub pool: PoolStatus,
    /// The most connections in use at once during this invocation.
    pub pool_peak: usize,
    pub native_live_handles: Option<u64>,
    /// Since the environment started (logs).
    pub native_violations_total: Option<u64>,
    /// New during this invocation (metrics).
    pub native_violations: Option<u64>,
    /// With `LEGACY_ISOLATION=process`: the supervisor's running totals (logs).
    pub isolation_total: Option<IsolationStats>,
    /// Their increase during this invocation, gauges as they are (metrics).
    pub isolation: Option<IsolationStats>,
}

/// What one invocation did.
#[derive(Debug, Clone, PartialEq)]
pub struct InvocationReport {
    pub request_id: String,
    pub batch: bool,
    pub items: usize,
    pub errors: usize,
    /// Each error type that occurred, with its count.
    pub error_types: Vec<(ErrorType, usize)>,
    pub duration: Duration,
    pub timings: Timings,
    /// Filled in by `Deps::record`.
    pub resources: Option<ResourceState>,
    /// The execution environment's first invocation: how long init took
    /// (filled in by `Deps::record`).
    pub cold_start: Option<Duration>,
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
            resources: None,
            cold_start: None,
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
        match self.error_types.iter_mut().find(|(t, _)| *t == error_type) {
            Some((_, count)) => *count += 1,
            None => self.error_types.push((error_type, 1)),
        }
    }

    /// Appends the structured log line (`"message":"invocation"`, JSON and
    /// a newline) to `out`: this invocation's figures and the environment's
    /// running totals, in the shape of the other JSON log lines (`at` is its
    /// `timestamp`). Serialized by serde_json straight into the buffer the
    /// audit lines are in: through tracing's JSON layer its thirty fields
    /// cost ~30 k instructions, 2% of an invocation.
    pub fn write_line(&self, out: &mut Vec<u8>, at: &str) {
        let resources = self.resources.unwrap_or_default();
        let pool = resources.pool;
        let totals = resources.isolation_total;
        let line = InvocationLine {
            timestamp: at,
            level: "INFO",
            request_id: &self.request_id,
            field: "Query.getAssessments",
            batch: self.batch,
            items: self.items,
            errors: self.errors,
            error_types: ErrorCounts(&self.error_types),
            duration_ms: ms(self.duration),
            cold_start: self.cold_start.is_some(),
            init_ms: self.cold_start.map(ms),
            profiles_ms: ms(self.timings.profiles),
            sql_ms: ms(self.timings.sql),
            legacy_ms: ms(self.timings.legacy),
            profiles_requested: self.timings.profiles_requested,
            pool_size: pool.size,
            pool_in_use: pool.in_use,
            pool_peak_invocation: resources.pool_peak,
            pool_peak_total: pool.peak_in_use,
            pool_max: pool.max_size,
            native_live_handles: resources.native_live_handles.unwrap_or(0),
            native_violations_total: resources.native_violations_total.unwrap_or(0),
            legacy_workers: totals.map(|i| i.workers),
            legacy_worker_crashes_total: totals.map(|i| i.crashes),
            legacy_worker_hangs_total: totals.map(|i| i.hangs),
            legacy_workers_started_total: totals.map(|i| i.started),
            legacy_worker_start_failures_total: totals.map(|i| i.start_failures),
            legacy_breaker_opened_total: totals.map(|i| i.breaker_opened),
            legacy_breaker: totals.and_then(|i| i.breaker).map(|b| b.as_str()),
            message: "invocation",
        };
        // Our own type: strings and finite numbers; cannot fail.
        if serde_json::to_writer(&mut *out, &line).is_ok() {
            out.push(b'\n');
        }
    }

    /// The EMF documents: one with this invocation's metrics, and one per
    /// error type that occurred (`ItemErrors` under the `ErrorType` dimension,
    /// whose values are the bounded set of [`ErrorType`]).
    pub fn emf<'a>(
        &'a self,
        function: FunctionId<'a>,
        timestamp_ms: i64,
    ) -> Vec<EmfDocument<'a, EmfProperties<'a>>> {
        let resources = self.resources.unwrap_or_default();
        let native = |n: Option<u64>| n.unwrap_or(0) as f64;
        let mut values = vec![
            ("Items", self.items as f64),
            ("ColdStart", f64::from(u8::from(self.cold_start.is_some()))),
            ("Errors", self.errors as f64),
            ("DurationMs", ms(self.duration)),
            ("ProfilesMs", ms(self.timings.profiles)),
            ("SqlMs", ms(self.timings.sql)),
            ("LegacyMs", ms(self.timings.legacy)),
            ("ProfilesRequested", self.timings.profiles_requested as f64),
            ("PoolInUse", resources.pool.in_use as f64),
            ("PoolPeak", resources.pool_peak as f64),
            ("NativeLiveHandles", native(resources.native_live_handles)),
            ("NativeViolations", native(resources.native_violations)),
        ];
        if let Some(init) = self.cold_start {
            values.push(("InitMs", ms(init)));
        }
        if let Some(isolation) = resources.isolation {
            let open = isolation.breaker != Some(BreakerState::Closed);
            values.extend([
                ("LegacyWorkers", isolation.workers as f64),
                ("LegacyWorkersStarted", isolation.started as f64),
                ("LegacyWorkerCrashes", isolation.crashes as f64),
                ("LegacyWorkerHangs", isolation.hangs as f64),
                ("LegacyWorkersRecycled", isolation.recycled as f64),
                ("LegacyWorkerStartFailures", isolation.start_failures as f64),
                ("LegacyBreakerOpened", isolation.breaker_opened as f64),
                ("LegacyBreakerOpen", f64::from(u8::from(open))),
            ]);
        }
        let metrics = with_units(METRICS, &values);
        let mut documents = Vec::with_capacity(1 + self.error_types.len());
        documents.push(EmfDocument::new(
            METRICS_NAMESPACE,
            FUNCTION_DIMENSIONS,
            function,
            timestamp_ms,
            metrics,
            EmfProperties {
                request_id: &self.request_id,
                batch: Some(self.batch),
                error_type: None,
            },
        ));
        for (error_type, count) in &self.error_types {
            documents.push(EmfDocument::new(
                METRICS_NAMESPACE,
                &[
                    &["FunctionName", "ErrorType"],
                    &["FunctionName", "Version", "ErrorType"],
                ],
                function,
                timestamp_ms,
                vec![(ITEM_ERRORS_METRIC, "Count", *count as f64)],
                EmfProperties {
                    request_id: &self.request_id,
                    batch: None,
                    error_type: Some(error_type.as_str()),
                },
            ));
        }
        documents
    }
}

/// The invocation's log line; absent values left out, as tracing leaves them.
#[derive(Serialize)]
struct InvocationLine<'a> {
    timestamp: &'a str,
    level: &'static str,
    request_id: &'a str,
    field: &'static str,
    batch: bool,
    items: usize,
    errors: usize,
    error_types: ErrorCounts<'a>,
    duration_ms: f64,
    cold_start: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    init_ms: Option<f64>,
    profiles_ms: f64,
    sql_ms: f64,
    legacy_ms: f64,
    profiles_requested: u32,
    pool_size: usize,
    pool_in_use: usize,
    pool_peak_invocation: usize,
    pool_peak_total: usize,
    pool_max: usize,
    native_live_handles: u64,
    native_violations_total: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    legacy_workers: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    legacy_worker_crashes_total: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    legacy_worker_hangs_total: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    legacy_workers_started_total: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    legacy_worker_start_failures_total: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    legacy_breaker_opened_total: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    legacy_breaker: Option<&'static str>,
    message: &'static str,
}

/// `{"NotFound": 2, ...}`: each error type that occurred, with its count.
struct ErrorCounts<'a>(&'a [(ErrorType, usize)]);

impl Serialize for ErrorCounts<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.0.iter().map(|(t, n)| (t.as_str(), n)))
    }
}

/// The searchable fields of the resolver's EMF documents.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct EmfProperties<'a> {
    request_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    batch: Option<bool>,
    /// The dimension of `ItemErrors`.
    #[serde(skip_serializing_if = "Option::is_none")]
    error_type: Option<&'static str>,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn report_with_errors() -> InvocationReport {
        let mut report = InvocationReport::new(
            "req-1",
            true,
            3,
            Duration::from_millis(12),
            Timings::default(),
        );
        report.count_error(ErrorType::NotFound);
        report.count_error(ErrorType::Unauthorized);
        report.count_error(ErrorType::NotFound);
        report
    }

    #[test]
    fn every_metric_is_documented_declared_and_numeric() {
        let mut report = report_with_errors();
        report.cold_start = Some(Duration::from_millis(40));
        report.resources = Some(ResourceState {
            isolation: Some(IsolationStats {
                breaker: Some(BreakerState::Closed),
                ..IsolationStats::default()
            }),
            ..ResourceState::default()
        });
        let documents = report.emf(
            FunctionId {
                name: "fn",
                version: "$LATEST",
            },
            1_700_000_000_000,
        );
        let doc = &documents[0].to_value();
        let directive = &doc["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(
            directive["Dimensions"],
            json!([["FunctionName"], ["FunctionName", "Version"]])
        );
        assert_eq!(doc["Version"], "$LATEST");
        let declared = directive["Metrics"].as_array().expect("metrics");
        assert_eq!(
            declared.len(),
            METRICS.len(),
            "every metric, with isolation, on a cold start"
        );
        for (metric, (name, unit, _)) in declared.iter().zip(METRICS) {
            assert_eq!(metric, &json!({"Name": name, "Unit": unit}));
            assert!(doc[*name].is_number(), "{name} has no numeric value");
        }
        assert_eq!(doc["Errors"], 3);
        assert_eq!(
            (doc["ColdStart"].clone(), doc["InitMs"].clone()),
            (json!(1), json!(40))
        );
        // A warm invocation: ColdStart 0, no InitMs.
        report.cold_start = None;
        let warm = report.emf(
            FunctionId {
                name: "fn",
                version: "3",
            },
            0,
        )[0]
        .to_value();
        assert_eq!(warm["ColdStart"], 0);
        assert!(warm.get("InitMs").is_none());
        assert_eq!(warm["Version"], "3");
        assert_eq!(doc["DurationMs"], 12.0);
    }

    #[test]
    fn each_error_type_has_its_own_document_under_the_error_type_dimension() {
        let report = report_with_errors();
        let documents: Vec<_> = report
            .emf(
                FunctionId {
                    name: "fn",
                    version: "$LATEST",
                },
                0,
            )
            .iter()
            .map(|d| d.to_value())
            .collect();
        assert_eq!(documents.len(), 3);
        for (doc, (error_type, count)) in documents[1..]
            .iter()
            .zip([("NotFound", 2), ("Unauthorized", 1)])
        {
            let directive = &doc["_aws"]["CloudWatchMetrics"][0];
            assert_eq!(
                directive["Dimensions"],
                json!([
                    ["FunctionName", "ErrorType"],
                    ["FunctionName", "Version", "ErrorType"]
                ])
            );
            assert_eq!(
                directive["Metrics"],
                json!([{"Name": ITEM_ERRORS_METRIC, "Unit": "Count"}])
            );
            assert_eq!(doc["ErrorType"], error_type);
            assert_eq!(doc[ITEM_ERRORS_METRIC], count);
        }
    }

    #[test]
    fn running_totals_are_reported_once_as_increases() {
        let reported = ReportedTotals::default();
        let total = |crashes, started| IsolationStats {
            workers: 2,
            crashes,
            started,
            ..IsolationStats::default()
        };
        let first = reported.isolation_increase(&total(1, 2));
        assert_eq!((first.crashes, first.started, first.workers), (1, 2, 2));
        let same = reported.isolation_increase(&total(1, 2));
        assert_eq!((same.crashes, same.started, same.workers), (0, 0, 2));
        let later = reported.isolation_increase(&total(4, 2));
        assert_eq!(later.crashes, 3);
        // A report that read older totals (a concurrent invocation) adds nothing.
        assert_eq!(reported.isolation_increase(&total(2, 1)).crashes, 0);
        assert_eq!(reported.new_violations(0), 0);
        assert_eq!(reported.new_violations(2), 2);
        assert_eq!(reported.new_violations(2), 0);
    }
}
