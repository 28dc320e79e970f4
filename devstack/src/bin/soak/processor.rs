//! The soak of the assessment processor: SQS events of `--batch` records
//! through `sqs::handle_with_report`, new assessments of 2,000 soak students,
//! with invalid bodies and redeliveries from the fault mix; the table is kept
//! small by deleting what was written a while ago.

use std::time::{Duration, Instant};

use assessment_processor::ProcessorDeps;
use serde_json::json;

use crate::args::FaultMix;
use crate::measure::Sample;

/// The processor, and moto straight (for the housekeeping below).
pub struct ProcessorRun {
    pub deps: std::sync::Arc<ProcessorDeps>,
    /// The invocations' reports, added up (the scoring API's requests and retries).
    pub tally: devstack::tally::ProcessorTally,
    pub moto: aws_sdk_dynamodb::Client,
    pub table: String,
}

/// Record `k` of the processor soak: a new assessment of one of 2,000 soak
/// students (one in five linked to a demo student's history); with the fault mix, some
/// bodies are invalid and some records redeliver an earlier one.
fn sqs_record(k: u64, faults: &FaultMix) -> (String, String) {
    let every = |share: f64| (share > 0.0).then(|| (1.0 / share).round().max(1.0) as u64);
    let message_id = format!("soak-msg-{k}");
    if every(faults.invalid).is_some_and(|n| k % n == n - 1) {
        return (message_id, "{\"assessmentId\": \"cut off".to_owned());
    }
    // A redelivery repeats record k - 97 (same assessment, new message id).
    let source = match every(faults.redelivered) {
        Some(n) if k >= 97 && k % n == n / 2 => k - 97,
        _ => k,
    };
    let mut body = testkit::sqs::assessment(
        &format!("soak-{source}"),
        &format!("soak-stu-{:04}", source % 2000),
        source,
    );
    // One record in five links to a demo student's history (a second partition read).
    if source.is_multiple_of(5) {
        body["relatedId"] = json!(format!("stu-{:04}", source % 40 + 1));
    }
    (message_id, body.to_string())
}

/// Processor mode: invocations whose records are deleted again, this many
/// invocations later. moto's Query scans the whole table (O(items) per
/// call), so a table that grew by every record would slow moto down, not
/// us; deleting what was written a few hundred records ago (redeliveries
/// look 97 records back) keeps it at ~850 items. Every record is still
/// read, scored and written by the processor.
const CLEANUP_LAG: u64 = 60;

pub async fn clean_up(run: &ProcessorRun, i: u64, batch: usize) {
    let (moto, table) = (&run.moto, &run.table);
    let Some(old) = i.checked_sub(CLEANUP_LAG) else {
        return;
    };
    let deletes: Vec<_> = (0..batch as u64)
        .filter_map(|j| {
            let k = old * batch as u64 + j;
            let key = |name: &str, value: String| {
                (
                    name.to_owned(),
                    aws_sdk_dynamodb::types::AttributeValue::S(value),
                )
            };
            aws_sdk_dynamodb::types::DeleteRequest::builder()
                .set_key(Some(std::collections::HashMap::from([
                    key("studentId", format!("soak-stu-{:04}", k % 2000)),
                    key("assessmentId", format!("soak-{k}")),
                ])))
                .build()
                .ok()
                .map(|d| {
                    aws_sdk_dynamodb::types::WriteRequest::builder()
                        .delete_request(d)
                        .build()
                })
        })
        .collect();
    for chunk in deletes.chunks(25) {
        // Housekeeping: a failed delete only leaves the table a little larger.
        let _ = moto
            .batch_write_item()
            .request_items(table.clone(), chunk.to_vec())
            .send()
            .await;
    }
}

/// Invocation `i`: an SQS event of `batch` records.
pub async fn invoke(run: &ProcessorRun, i: u64, batch: usize, faults: &FaultMix) -> Sample {
    let deps = &run.deps;
    let started = Instant::now();
    use assessment_processor::RecordOutcome;
    let records = (0..batch as u64).map(|j| sqs_record(i * batch as u64 + j, faults));
    let event: aws_lambda_events::sqs::SqsEvent =
        serde_json::from_value(testkit::sqs::event(records))
            .unwrap_or_else(|e| panic!("the soak's own event: {e}"));
    let deadline = assessments_common::budget::Budget::after(Duration::from_secs(30));
    let handled =
        assessment_processor::sqs::handle_with_report(deps, event, "soak", deadline).await;
    run.tally.add(&handled);
    let elapsed = started.elapsed();
    let mut sample = Sample {
        elapsed,
        overheads: Vec::with_capacity(batch),
        dynamodb: Vec::with_capacity(batch),
        sql: Vec::new(),
        third: Vec::with_capacity(batch),
        errors: Vec::new(),
        outcomes: Vec::with_capacity(batch),
    };
    for record in &handled.records {
        match &record.outcome {
            RecordOutcome::Scored { .. } => sample.outcomes.push("scored"),
            RecordOutcome::AlreadyScored => sample.outcomes.push("already_scored"),
            RecordOutcome::Failed(error) => {
                sample.outcomes.push("failed");
                sample.errors.push(error.kind().to_owned());
            }
        }
        if record.elapsed > Duration::ZERO {
            sample.overheads.push(
                record
                    .elapsed
                    .saturating_sub(record.dynamodb_time + record.scoring_time),
            );
            sample.dynamodb.push(record.dynamodb_time);
            if record.scoring_time > Duration::ZERO {
                sample.third.push(record.scoring_time);
            }
        }
    }
    sample
}
