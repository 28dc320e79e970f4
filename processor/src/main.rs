//! The assessment processor Lambda: reads its settings, builds its clients
//! once, and handles SQS batches until the environment shuts down, answering
//! each with the records that failed (`batchItemFailures`).

use std::sync::Arc;

use assessment_processor::sqs::{self, deadline_from_epoch_ms};
use assessment_processor::{ProcessorDeps, ProcessorSettings};
use assessments_common::config::Env;
use assessments_common::lambda_init::report_init_failure;
use assessments_common::xray;
use aws_lambda_events::sqs::SqsEvent;
use lambda_runtime::{LambdaEvent, service_fn};
use tracing::Instrument;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    assessments_common::observability::init_tracing();
    // An init failure is logged and reported to Lambda with its errorType.
    let init = async {
        let settings = ProcessorSettings::from_env(&Env::from_process())?;
        ProcessorDeps::init(settings).await
    };
    let deps = match init.await {
        Ok(deps) => Arc::new(deps),
        Err(error) => {
            report_init_failure(&error).await;
            return Err(error.into());
        }
    };

    // SIGTERM: nothing is held across invocations but clients; log and exit.
    lambda_runtime::spawn_graceful_shutdown_handler(|| async {
        tracing::info!("shutting down");
    })
    .await;

    lambda_runtime::run_concurrent(service_fn(move |event: LambdaEvent<SqsEvent>| {
        let deps = Arc::clone(&deps);
        let span = xray::invocation_span(event.context.xray_trace_id.as_deref());
        async move {
            let deadline = deadline_from_epoch_ms(event.context.deadline);
            let response =
                sqs::handle(&deps, event.payload, &event.context.request_id, deadline).await;
            Ok::<_, lambda_runtime::Error>(response)
        }
        .instrument(span)
    }))
    .await
}
