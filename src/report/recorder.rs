//! What the execution environment's reports share: the running counters'
//! values already reported, the cold start, where the lines go.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use assessments_common::observability::MetricsSettings;
use legacy_bridge::{IsolationStats, LegacyStats};

use super::InvocationReport;
use crate::resolver::Resources;
use crate::sqlserver::PoolStatus;

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
/// invocation answered (filled in when it is recorded).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ResourceState {
    /// The pool, with its running totals (logs).
    pub pool: PoolStatus,
    /// The most connections in use at once during this invocation.
    pub pool_peak: usize,
    /// The legacy engine: its handle counters and (isolated) the
    /// supervisor's running totals since the environment started (logs).
    pub legacy: LegacyStats,
    /// New native violations during this invocation (metrics).
    pub native_violations: u64,
    /// With `LEGACY_ISOLATION=process`: the supervisor's counters' increase
    /// during this invocation, gauges as they are (metrics).
    pub isolation: Option<IsolationStats>,
}

/// Records invocations: each one's lines written at once to stdout (Lambda
/// sends it to CloudWatch Logs line by line), its EMF lines printed.
#[derive(Debug)]
pub struct Recorder {
    metrics: MetricsSettings,
    reported: ReportedTotals,
    /// How long init took, from loading the settings to the dependencies ready.
    init: Duration,
    /// Set until the first invocation is recorded (its `ColdStart`).
    cold: AtomicBool,
}

impl Recorder {
    pub fn new(metrics: MetricsSettings, init: Duration) -> Self {
        Recorder {
            metrics,
            reported: ReportedTotals::default(),
            init,
            cold: AtomicBool::new(true),
        }
    }

    /// The report's resource state from `resources`: the running counters'
    /// increase since the last report is taken here, so call this once per
    /// invocation.
    pub fn resource_state(&self, resources: Resources) -> ResourceState {
        let legacy = resources.legacy;
        ResourceState {
            pool: resources.pool,
            pool_peak: resources.pool_peak,
            legacy,
            native_violations: legacy
                .native
                .map_or(0, |n| self.reported.new_violations(n.violations)),
            isolation: legacy
                .isolation
                .map(|t| self.reported.isolation_increase(&t)),
        }
    }

    /// Completes `report` (its resources, its cold start), writes `lines`
    /// (its audit lines) and its own line after them in one write (its own at
    /// `info`), then prints its EMF lines.
    pub fn record(
        &self,
        report: &mut InvocationReport,
        resources: Resources,
        mut lines: Vec<u8>,
        at: &str,
    ) {
        report.resources = Some(self.resource_state(resources));
        if self.cold.swap(false, Ordering::Relaxed) {
            report.cold_start = Some(self.init);
        }
        if tracing::enabled!(tracing::Level::INFO) {
            report.write_line(&mut lines, at);
        }
        if !lines.is_empty() {
            let _ = std::io::Write::write_all(&mut std::io::stdout().lock(), &lines);
        }
        self.metrics
            .print(|function, now_ms| report.emf(function, now_ms));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
