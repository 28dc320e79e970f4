//! What the playground's `/stats` and the soak count: the functions' own
//! reports of their invocations (what their log and EMF lines say), added
//! up here, outside the functions.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use assessment_processor::sqs::Handled;
use assessment_processor::{ProcessError, RecordOutcome};
use assessments_resolver::report::{InvocationReport, ResourceState};
use serde_json::{Value, json};

/// The resolver's invocations, from their reports.
#[derive(Debug, Default)]
pub struct ResolverTally {
    invocations: AtomicU64,
    items: AtomicU64,
    item_errors: AtomicU64,
    /// The resources as the last invocation's report gave them.
    last: Mutex<Option<ResourceState>>,
}

impl ResolverTally {
    pub fn add(&self, report: &InvocationReport) {
        self.invocations.fetch_add(1, Relaxed);
        self.items.fetch_add(report.items as u64, Relaxed);
        self.item_errors.fetch_add(report.errors as u64, Relaxed);
        *self.last.lock().unwrap_or_else(|p| p.into_inner()) = report.resources;
    }

    pub fn invocations(&self) -> u64 {
        self.invocations.load(Relaxed)
    }

    pub fn items(&self) -> u64 {
        self.items.load(Relaxed)
    }

    pub fn item_errors(&self) -> u64 {
        self.item_errors.load(Relaxed)
    }

    /// The resources when the last invocation answered (`None` before the first).
    pub fn last_resources(&self) -> Option<ResourceState> {
        *self.last.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The processor's invocations, from their reports.
#[derive(Debug, Default)]
pub struct ProcessorTally {
    invocations: AtomicU64,
    records: AtomicU64,
    failed: AtomicU64,
    dead_lettered: AtomicU64,
    scoring_requests: AtomicU64,
    scoring_retries: AtomicU64,
    scoring_throttled: AtomicU64,
    scoring_failures: AtomicU64,
}

impl ProcessorTally {
    pub fn add(&self, handled: &Handled) {
        let report = &handled.report;
        self.invocations.fetch_add(1, Relaxed);
        self.records.fetch_add(report.records as u64, Relaxed);
        self.failed.fetch_add(report.failed as u64, Relaxed);
        self.dead_lettered
            .fetch_add(report.dead_lettered as u64, Relaxed);
        for record in &handled.records {
            let requests = u64::from(record.scoring.requests);
            self.scoring_requests.fetch_add(requests, Relaxed);
            self.scoring_retries
                .fetch_add(requests.saturating_sub(1), Relaxed);
            self.scoring_throttled
                .fetch_add(u64::from(record.scoring.throttled), Relaxed);
            if matches!(
                record.outcome,
                RecordOutcome::Failed(ProcessError::Scoring(_))
            ) {
                self.scoring_failures.fetch_add(1, Relaxed);
            }
        }
    }

    pub fn scoring_requests(&self) -> u64 {
        self.scoring_requests.load(Relaxed)
    }

    pub fn scoring_retries(&self) -> u64 {
        self.scoring_retries.load(Relaxed)
    }

    /// `/stats`' processor figures.
    pub fn json(&self) -> Value {
        json!({
            "invocations": self.invocations.load(Relaxed),
            "records": self.records.load(Relaxed),
            "failedRecords": self.failed.load(Relaxed),
            "deadLetteredRecords": self.dead_lettered.load(Relaxed),
            "scoring": {
                "requests": self.scoring_requests(),
                "retries": self.scoring_retries(),
                "throttled": self.scoring_throttled.load(Relaxed),
                "failures": self.scoring_failures.load(Relaxed),
            },
        })
    }
}
