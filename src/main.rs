//! The Lambda function: reads its settings, builds its dependencies once, and
//! serves AppSync direct resolver invocations until the environment shuts down
//! (`assessments_common::lambda`, with `Deps` as the function).

fn main() -> Result<(), lambda_runtime::Error> {
    // Started as a legacy worker (LEGACY_ISOLATION=process): serve the supervisor, then exit.
    legacy_bridge::run_worker_if_requested();
    assessments_common::lambda::run::<assessments_resolver::deps::Deps>()
}
