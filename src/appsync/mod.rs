//! The AppSync edge: direct Lambda resolver events in, field values or
//! AppSync-shaped errors out. The only module that knows the event format.
//!
//! The contract, from the AppSync developer guide ("Direct Lambda resolvers"
//! in <https://docs.aws.amazon.com/appsync/latest/devguide/resolver-mapping-template-reference-lambda.html>
//! and "Returning individual errors" in
//! <https://docs.aws.amazon.com/appsync/latest/devguide/tutorial-lambda-resolvers.html>):
//! * single invoke: the event is one object; the function returns the
//!   field's value, or fails, and AppSync shows the Lambda error's
//!   `errorType` and `errorMessage` to the client;
//! * batch invoke (batching on, `MaxBatchSize` > 1): the event is a list of
//!   those objects; the function returns a list of the same length and
//!   order in which every element is `{"data": ..., "errorMessage": ...,
//!   "errorType": ...}`, so one item can fail without failing the others.
//!
//! One invocation, in order ([`handle_with_report`]): the payload read
//! ([`event`]), each event turned into its caller and validated item, the
//! items resolved ([`crate::resolver::Resolver::get_assessments`]: each
//! item's outcome and the access decision made for it), the audit lines and
//! the invocation's report written ([`crate::deps::Deps::record`]), the
//! answer fitted under Lambda's response limit ([`response`]).

mod event;
mod response;

use std::sync::Arc;
use std::time::Instant;

use assessments_common::budget::Budget;
use assessments_common::config::Env;
use assessments_common::lambda::Function;
use lambda_runtime::{Diagnostic, LambdaEvent};

use crate::audit::{self, AuditEntry, StudentRefs};
use crate::deps::{Deps, InitError, Settings};
use crate::report::InvocationReport;
use crate::resolver::{ItemRequest, ResolveError};

pub use event::{Event, Invocation, Payload, parse_event};
pub use response::{AppSyncError, BatchElement, RESPONSE_LIMIT_BYTES, Response, answer, fit_batch};

/// The field this function resolves.
pub const PARENT_TYPE: &str = "Query";
pub const FIELD_NAME: &str = "getAssessments";
/// AppSync's largest `MaxBatchSize`; a bigger list is not an AppSync event.
pub const MAX_BATCH: usize = 2000;

/// Handles one Lambda invocation: a single event or a batch, every item's
/// waits bounded by `budget` (see [`Deps::invocation_budget`]).
pub async fn handle(
    deps: &Deps,
    payload: impl Into<Invocation>,
    request_id: &str,
    budget: Budget,
) -> Result<Response, AppSyncError> {
    handle_with_report(deps, payload, request_id, budget)
        .await
        .0
}

/// `handle`, also returning what the invocation reported (its log line's
/// figures: for the playground and the benchmarks).
pub async fn handle_with_report(
    deps: &Deps,
    payload: impl Into<Invocation>,
    request_id: &str,
    budget: Budget,
) -> (Result<Response, AppSyncError>, InvocationReport) {
    let started = Instant::now();
    let now = chrono::Utc::now();
    let (batch, events) = match payload.into() {
        Invocation::Batch(events) if events.len() > MAX_BATCH => {
            return reject(deps, events.len(), request_id, started);
        }
        Invocation::Batch(events) => (true, events),
        Invocation::Single(event) => (false, vec![event]),
    };
    let (audit, items) = read_items(deps, events);
    let (mut outcomes, timings) = deps.resolver.get_assessments(items, now, &budget).await;
    if batch {
        fit_batch(&mut outcomes, request_id);
    }
    let mut report = InvocationReport::new(
        request_id,
        batch,
        outcomes.len(),
        started.elapsed(),
        timings,
    );
    let at = audit::log_timestamp();
    let mut lines = Vec::with_capacity(256 * audit.len());
    for (outcome, entry) in outcomes.iter().zip(&audit) {
        entry.write(&mut lines, &at, request_id, &deps.audit, outcome);
        if let Err(e) = &outcome.result {
            report.count_error(e.error_type());
            log_failure(e, request_id);
        }
    }
    deps.record(&mut report, lines, &at);
    (answer(outcomes, batch, request_id), report)
}

/// Each event's caller and validated item, and what its audit line will say
/// of them (taken before validation: an invalid item is audited too).
fn read_items(
    deps: &Deps,
    events: Vec<Event>,
) -> (Vec<AuditEntry>, Vec<Result<ItemRequest, ResolveError>>) {
    let mut refs = StudentRefs::new(&deps.audit);
    events
        .into_iter()
        .map(|event| {
            let caller = event.caller();
            let entry = AuditEntry::new(&caller, event.student_id(), &mut refs);
            (entry, event.into_request(caller))
        })
        .unzip()
}

/// An invocation refused before any item was looked at: a batch larger
/// than AppSync sends.
fn reject(
    deps: &Deps,
    events: usize,
    request_id: &str,
    started: Instant,
) -> (Result<Response, AppSyncError>, InvocationReport) {
    let e =
        ResolveError::InvalidEvent(format!("a batch of {events} exceeds AppSync's {MAX_BATCH}"));
    let mut report = InvocationReport::rejected(request_id, started.elapsed(), e.error_type());
    deps.record(&mut report, Vec::new(), &audit::log_timestamp());
    (Err(AppSyncError::new(&e, request_id)), report)
}

/// A failed item's log line, unless the caller caused it: the caller's own
/// errors name the student, and the audit line already has them.
fn log_failure(e: &ResolveError, request_id: &str) {
    if !e.is_callers() {
        tracing::warn!(request_id, error_type = %e.error_type(), error = %e, "getAssessments item failed");
    }
}

/// The resolver as a Lambda function: settings and dependencies at init,
/// then AppSync's invocations, each within its deadline less
/// `DEADLINE_MARGIN_MS`; at SIGTERM, the legacy engine closed exactly once
/// and the pool.
impl Function for Deps {
    type Event = Payload;
    type Response = Response;
    type InitError = InitError;
    const GRACEFUL_SHUTDOWN: bool = true;

    async fn init() -> Result<Self, InitError> {
        Deps::init(Settings::load(&Env::from_process()).await?).await
    }

    async fn handle(self: Arc<Self>, event: LambdaEvent<Payload>) -> Result<Response, Diagnostic> {
        let budget = self.invocation_budget(event.context.deadline);
        handle(&self, event.payload, &event.context.request_id, budget)
            .await
            .map_err(Diagnostic::from)
    }

    async fn shutdown(self: Arc<Self>) {
        Deps::shutdown(&self).await;
    }
}
