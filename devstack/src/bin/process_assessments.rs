//! Sends an SQS event (by default the sample in `testkit/fixtures/sqs-event.json`)
//! through the assessment processor against the local stack (moto with the
//! demo history, the scoring API stand-in), prints what happened to each
//! record and the partial batch response, then delivers the event again to
//! show that nothing is scored or written twice.
//!
//! ```text
//! cargo run --bin process-assessments [-- --event my-event.json]
//! ```

use std::path::PathBuf;
use std::time::Duration;

use assessment_processor::RecordOutcome;
use assessment_processor::sqs::handle_with_report;
use aws_lambda_events::sqs::SqsEvent;
use aws_sdk_dynamodb::types::AttributeValue;
use clap::Parser;
use devstack::stack::{LocalStack, StackOptions};
use testkit::services::ServicesOptions;

#[derive(Parser, Debug)]
#[command(about = "Send an SQS event through the assessment processor, locally")]
struct Args {
    /// An SQS event (JSON); default: the sample event.
    #[arg(long)]
    event: Option<PathBuf>,
    /// Deliver the event only once.
    #[arg(long)]
    no_redeliver: bool,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Started as a legacy worker (LEGACY_ISOLATION=process): serve the supervisor, then exit.
    legacy_bridge::run_worker_if_requested();
    serve()
}

#[tokio::main]
async fn serve() -> Result<(), Box<dyn std::error::Error>> {
    // Failed records are shown in the table below; the logs stay quiet.
    devstack::init_local_tracing("error");
    let args = Args::parse();
    let text = match &args.event {
        Some(path) => std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?,
        None => testkit::sqs::SAMPLE_EVENT.to_owned(),
    };
    let event: SqsEvent =
        serde_json::from_str(&text).map_err(|e| format!("not an SQS event: {e}"))?;

    eprintln!("starting the local stack (moto, scoring API stand-in)...");
    let stack = LocalStack::start(StackOptions {
        services: ServicesOptions {
            scoring_track_ids: true,
            ..Default::default()
        },
        ..Default::default()
    })
    .await?;
    let deps = &stack.processor;

    let deadline = || assessments_common::budget::Budget::after(Duration::from_secs(60));
    let first = handle_with_report(deps, event.clone(), "local-1", deadline()).await;
    println!("delivery 1: {} records", event.records.len());
    println!(
        "  {:<38} {:<18} {:<9} {:>7}  outcome",
        "messageId", "assessmentId", "student", "history"
    );
    for (record, report) in event.records.iter().zip(&first.records) {
        let body: serde_json::Value = record
            .body
            .as_deref()
            .and_then(|b| serde_json::from_str(b).ok())
            .unwrap_or_default();
        let outcome = match &report.outcome {
            RecordOutcome::Scored { score } => format!("scored {score}"),
            RecordOutcome::AlreadyScored => "already scored".to_owned(),
            RecordOutcome::Failed(error) => format!("FAILED {}: {error}", error.kind()),
        };
        println!(
            "  {:<38} {:<18} {:<9} {:>7}  {outcome}",
            record.message_id.as_deref().unwrap_or("-"),
            body["assessmentId"].as_str().unwrap_or("-"),
            body["studentId"].as_str().unwrap_or("-"),
            report.history_items,
        );
    }
    println!("response: {}", serde_json::to_string(&first.response)?);

    if !args.no_redeliver {
        let again = handle_with_report(deps, event.clone(), "local-2", deadline()).await;
        println!(
            "delivery 2 (the same event again): {} scored, {} already scored, {} failed",
            again.report.scored, again.report.already_scored, again.report.failed
        );
    }

    // What the table now holds for the scored records.
    if let Some(dynamo) = stack.dynamo() {
        println!("Assessments table:");
        let client = dynamo.client();
        for record in &event.records {
            let Some(body) = record
                .body
                .as_deref()
                .and_then(|b| serde_json::from_str::<serde_json::Value>(b).ok())
            else {
                continue;
            };
            let (Some(student), Some(id)) =
                (body["studentId"].as_str(), body["assessmentId"].as_str())
            else {
                continue;
            };
            let item = client
                .get_item()
                .table_name(dynamo.assessments_table())
                .key("studentId", AttributeValue::S(student.to_owned()))
                .key("assessmentId", AttributeValue::S(id.to_owned()))
                .send()
                .await?
                .item;
            if let Some(item) = item {
                let item: serde_json::Value = serde_dynamo::from_item(item)?;
                println!(
                    "  {student}/{id}: score {} band {} scoredAt {}",
                    item["score"], item["result"]["band"], item["scoredAt"]
                );
            }
        }
    }
    if let Some(scoring) = stack.scoring() {
        let stats = scoring.stats();
        println!(
            "scoring API stand-in: {} requests, statuses {:?}, peak {} requests in one second, {} assessments scored more than once",
            stats.requests, stats.statuses, stats.peak_sliding_second, stats.scored_more_than_once
        );
    }
    Ok(())
}
