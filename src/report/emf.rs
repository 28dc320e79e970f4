//! The resolver's EMF metrics: the table of every metric ([`METRICS`]) and
//! the documents one invocation prints ([`InvocationReport::emf`]).

use assessments_common::observability::{
    EmfDocument, FUNCTION_DIMENSIONS, FunctionId, MetricTable, ms, with_units,
};
use legacy_bridge::BreakerState;
use serde::Serialize;

use super::InvocationReport;

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

impl InvocationReport {
    /// The EMF documents: one with this invocation's metrics, and one per
    /// error type that occurred (`ItemErrors` under the `ErrorType` dimension,
    /// whose values are the bounded set of [`crate::resolver::ErrorType`]).
    pub fn emf<'a>(
        &'a self,
        function: FunctionId<'a>,
        timestamp_ms: i64,
    ) -> Vec<EmfDocument<'a, EmfProperties<'a>>> {
        let metrics = with_units(METRICS, &self.metric_values());
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

    /// This invocation's metrics, by name (units from [`METRICS`]).
    fn metric_values(&self) -> Vec<(&'static str, f64)> {
        let resources = self.resources.unwrap_or_default();
        let native = resources.legacy.native;
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
            (
                "NativeLiveHandles",
                native.map_or(0.0, |n| n.live_results() as f64),
            ),
            ("NativeViolations", resources.native_violations as f64),
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
        values
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
    use legacy_bridge::{IsolationStats, LegacyStats};
    use serde_json::json;
    use std::time::Duration;

    use super::*;
    use crate::report::ResourceState;
    use crate::resolver::{ErrorType, Timings};

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
            legacy: LegacyStats::default(),
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
}
