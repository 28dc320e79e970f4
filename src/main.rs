//! The Lambda function: reads its settings, builds its dependencies once, and
//! serves AppSync direct resolver invocations until the environment shuts down.

use std::sync::Arc;

use assessments_common::config::Env;
use assessments_common::lambda_init::report_init_failure;
use assessments_common::xray;
use assessments_resolver::appsync::{self, Payload};
use assessments_resolver::deps::{Deps, Settings};
use lambda_runtime::{LambdaEvent, service_fn};
use tracing::Instrument;

fn main() -> Result<(), lambda_runtime::Error> {
    // Started as a legacy worker (LEGACY_ISOLATION=process): serve the supervisor, then exit.
    assessments_resolver::legacy::run_worker_if_requested();
    // Invocations one at a time (classic Lambda): one thread runs everything,
    // with no wake-ups across threads (futex calls, context switches). Managed
    // instances (AWS_LAMBDA_MAX_CONCURRENCY > 1) run invocations at once: a
    // thread per core. Blocking work (in-process legacy calls) has its own pool either way.
    let concurrent = std::env::var("AWS_LAMBDA_MAX_CONCURRENCY")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .is_some_and(|n| n > 1);
    let runtime = if concurrent {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    };
    runtime.block_on(serve())
}

async fn serve() -> Result<(), lambda_runtime::Error> {
    assessments_common::observability::init_tracing();
    // An init failure is logged and reported to Lambda with its errorType.
    let init = async { Deps::init(Settings::load(&Env::from_process()).await?).await };
    let deps = match init.await {
        Ok(deps) => Arc::new(deps),
        Err(error) => {
            report_init_failure(&error).await;
            return Err(error.into());
        }
    };

    // SIGTERM: close the legacy engine exactly once and the pool; stdout is line-flushed.
    let on_shutdown = Arc::clone(&deps);
    lambda_runtime::spawn_graceful_shutdown_handler(
        move || async move { on_shutdown.shutdown().await },
    )
    .await;

    // Sequential on classic Lambda; AWS_LAMBDA_MAX_CONCURRENCY > 1 (managed
    // instances) runs that many invocations at once over the same `Deps`.
    lambda_runtime::run_concurrent(service_fn(move |event: LambdaEvent<Payload>| {
        let deps = Arc::clone(&deps);
        // The invocation's X-Ray trace: AppSync's, continued in Lambda's segment.
        let span = xray::invocation_span(event.context.xray_trace_id.as_deref());
        // Boxed: the handler's future is large (every dependency's future is
        // in it), and lambda_runtime's layers move it by value several times.
        Box::pin(
            async move {
                let budget = deps.invocation_budget(event.context.deadline);
                appsync::handle(&deps, event.payload, &event.context.request_id, budget).await
            }
            .instrument(span),
        )
    }))
    .await
}
