//! What one resolver invocation did: its structured log line ([`InvocationReport::write_line`]),
//! its EMF metrics ([`emf`]: the documents are built by
//! [`assessments_common::observability`]), and what the execution
//! environment's reports share ([`Recorder`]).
//!
//! The metrics are per invocation: values of this invocation (its items, its
//! time), gauges read at its end (workers alive, handles alive), and for the
//! execution environment's running counters (worker crashes, violations...)
//! the increase since the previous invocation's report ([`ReportedTotals`]),
//! so CloudWatch's Sum over any period counts each event once, across
//! sandboxes. The running totals themselves are in the log line only.
//! [`METRICS`] documents each one; `infra/check_template.py` checks that every
//! alarmed metric is in it.

mod emf;
mod recorder;

use std::time::Duration;

use assessments_common::observability::ms;
use serde::Serialize;

use crate::resolver::{ErrorType, Timings};

pub use emf::{EmfProperties, ITEM_ERRORS_METRIC, METRICS, METRICS_NAMESPACE};
pub use recorder::{Recorder, ReportedTotals, ResourceState};

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
    /// Filled in when it is recorded ([`Recorder::record`]).
    pub resources: Option<ResourceState>,
    /// The execution environment's first invocation: how long init took
    /// (filled in when it is recorded).
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
        let totals = resources.legacy.isolation;
        let native = resources.legacy.native;
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
            native_live_handles: native.map_or(0, |n| n.live_results()),
            native_violations_total: native.map_or(0, |n| n.violations),
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
