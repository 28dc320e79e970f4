//! The assessment processor Lambda: reads its settings, builds its clients
//! once, and handles SQS batches until the environment shuts down, answering
//! each with the records that failed (`batchItemFailures`).

fn main() -> Result<(), lambda_runtime::Error> {
    assessments_common::lambda::run::<assessment_processor::ProcessorDeps>()
}
