//! The PreTraffic hook Lambda (see the library's documentation): settings
//! and clients at init, then one CodeDeploy lifecycle event per invocation.

use std::sync::Arc;
use std::time::Duration;

use assessments_common::budget::Budget;
use assessments_common::config::{ConfigError, Env};
use assessments_common::lambda_init::{InitFailure, report_init_failure};
use lambda_runtime::{LambdaEvent, service_fn};
use pre_traffic_hook::{Hook, HookEvent, HookSettings};

/// Kept from the invocation's deadline for returning the answer.
const MARGIN: Duration = Duration::from_millis(200);

struct InitError(ConfigError);

impl std::fmt::Display for InitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl InitFailure for InitError {
    fn error_type(&self) -> &'static str {
        "InitError.Configuration"
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    assessments_common::observability::init_tracing();
    let settings = match HookSettings::from_env(&Env::from_process()) {
        Ok(settings) => settings,
        Err(error) => {
            let error = InitError(error);
            report_init_failure(&error).await;
            return Err(error.0.into());
        }
    };
    let hook = Arc::new(Hook::init(settings).await);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<HookEvent>| {
        let hook = Arc::clone(&hook);
        async move {
            let budget = Budget::from_lambda_deadline(event.context.deadline, MARGIN);
            hook.handle(&event.payload, budget)
                .await
                .map_err(|e| lambda_runtime::Diagnostic {
                    error_type: "HookError.Report".to_owned(),
                    error_message: e.to_string(),
                })
        }
    }))
    .await
}
