//! The SQS edge: an SQS event in, SQS's partial batch response out.
//!
//! The contract ("Handling errors for an SQS event source in Lambda",
//! <https://docs.aws.amazon.com/lambda/latest/dg/services-sqs-errorhandling.html>):
//! with `ReportBatchItemFailures` on the event source mapping, the function
//! returns `{"batchItemFailures": [{"itemIdentifier": messageId}, ...]}`;
//! Lambda deletes every other record of the batch, and the listed ones
//! become visible again for redelivery (to the dead-letter queue after the
//! queue's `maxReceiveCount`). An empty list means the whole batch succeeded.
//! A failed record without a message id is reported with an empty
//! identifier, which Lambda treats as the whole batch failing: safe, since
//! every write is idempotent. Records that can never succeed are sent to the
//! dead-letter queue here instead ([`crate::dead_letters`]) and left out of the list.

use std::sync::Arc;
use std::time::{Duration, Instant};

use assessments_common::budget::Budget;
use assessments_common::config::Env;
use assessments_common::lambda::Function;
use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::{Diagnostic, LambdaEvent};

use super::{
    ProcessorDeps, ProcessorInitError, ProcessorSettings, Record, RecordOutcome, RecordReport,
};
use crate::dead_letters::DeadLetters;
use crate::report::BatchReport;

/// A handled invocation: the response, its report, and each record's outcome.
#[derive(Debug)]
pub struct Handled {
    pub response: SqsBatchResponse,
    pub report: BatchReport,
    pub records: Vec<RecordReport>,
}

/// Handles one invocation; `deadline` is the invocation's, Lambda's
/// (the processor keeps its `DEADLINE_MARGIN_MS` before it).
pub async fn handle(
    deps: &ProcessorDeps,
    event: SqsEvent,
    request_id: &str,
    deadline: Budget,
) -> SqsBatchResponse {
    handle_with_report(deps, event, request_id, deadline)
        .await
        .response
}

/// Handles one invocation and says what happened (the soak and tests use this).
pub async fn handle_with_report(
    deps: &ProcessorDeps,
    event: SqsEvent,
    request_id: &str,
    deadline: Budget,
) -> Handled {
    let started = Instant::now();
    let records: Vec<Record<'_>> = event
        .records
        .iter()
        .map(|r| Record {
            message_id: r.message_id.as_deref().unwrap_or(""),
            body: r.body.as_deref(),
            sender_id: r.attributes.get("SenderId").map(String::as_str),
        })
        .collect();
    let mut reports = deps.processor.process_batch(&records, &deadline).await;
    if let Some(dead_letters) = &deps.dead_letters {
        dead_letter(dead_letters, &records, &mut reports, request_id, &deadline).await;
    }
    let mut response = SqsBatchResponse::default();
    let mut report = BatchReport::new(request_id, records.len());
    for (record, outcome) in records.iter().zip(&reports) {
        report.add(outcome);
        match &outcome.outcome {
            RecordOutcome::Failed(error) if !outcome.dead_lettered => {
                tracing::warn!(
                    request_id,
                    message_id = record.message_id,
                    kind = error.kind(),
                    %error,
                    "record failed; SQS will redeliver it"
                );
                response.add_failure(record.message_id);
            }
            _ => {}
        }
    }
    report.duration = started.elapsed();
    deps.record(&report);
    Handled {
        response,
        report,
        records: reports,
    }
}

/// Poison records to the dead-letter queue at once, concurrently, within
/// what is left of the invocation; any that cannot be sent are retried the
/// usual way.
async fn dead_letter(
    dead_letters: &DeadLetters,
    records: &[Record<'_>],
    reports: &mut [RecordReport],
    request_id: &str,
    deadline: &Budget,
) {
    let sends = (records.iter().zip(reports.iter()).enumerate()).filter_map(
        |(index, (record, outcome))| match &outcome.outcome {
            RecordOutcome::Failed(error) if error.is_permanent() => {
                Some(async move { (index, dead_letters.send(record, error, deadline).await) })
            }
            _ => None,
        },
    );
    for (index, sent) in futures_util::future::join_all(sends).await {
        let message_id = records[index].message_id;
        match sent {
            Ok(()) => {
                reports[index].dead_lettered = true;
                if let RecordOutcome::Failed(error) = &reports[index].outcome {
                    tracing::warn!(
                        request_id,
                        message_id,
                        kind = error.kind(),
                        %error,
                        "record can never succeed: sent to the dead-letter queue, not redelivered"
                    );
                }
            }
            Err(send_error) => tracing::warn!(
                request_id,
                message_id,
                %send_error,
                "poison record not sent to the dead-letter queue; SQS will redeliver it"
            ),
        }
    }
}

/// The processor as a Lambda function: settings and clients at init, then
/// one SQS batch per invocation, answered with the records that failed
/// (`batchItemFailures`). At SIGTERM nothing is held but clients: it logs.
impl Function for ProcessorDeps {
    type Event = SqsEvent;
    type Response = SqsBatchResponse;
    type InitError = ProcessorInitError;
    const GRACEFUL_SHUTDOWN: bool = true;

    async fn init() -> Result<Self, ProcessorInitError> {
        let settings = ProcessorSettings::from_env(&Env::from_process())?;
        ProcessorDeps::init(settings).await
    }

    async fn handle(
        self: Arc<Self>,
        event: LambdaEvent<SqsEvent>,
    ) -> Result<SqsBatchResponse, Diagnostic> {
        let deadline = Budget::from_lambda_deadline(event.context.deadline, Duration::ZERO);
        Ok(handle(&self, event.payload, &event.context.request_id, deadline).await)
    }

    async fn shutdown(self: Arc<Self>) {
        tracing::info!("shutting down");
    }
}
