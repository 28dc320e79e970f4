//! The PreTraffic hook (`deploy-hook/`) checking the resolver's binary, run
//! as Lambda runs it, behind local stand-ins for Lambda's `Invoke` and
//! CodeDeploy's `PutLifecycleEventHookExecutionStatus`: a good version is
//! reported `Succeeded`; a version that answers wrongly, or whose init fails,
//! is reported `Failed`, and CodeDeploy is told so exactly once.

use std::sync::Arc;
use std::time::Duration;

use assessments_common::budget::Budget;
use assessments_common::config::Env;
use pre_traffic_hook::{Hook, HookEvent, HookReport, HookSettings};
use testkit::function::{Function, lambda_env};
use testkit::lambda_api::RuntimeApi;
use testkit::lambda_service::{HookStatus, LambdaService};

use testkit::services::{LocalServices, ServicesOptions};

/// The new version as the template names it to the hook (`ResolverFunction.Version`).
const TARGET: &str = "arn:aws:lambda:us-east-1:123456789012:function:stack-resolver:7";
/// The hook's role, which the template adds to the resolver's trusted roles.
const HOOK_ROLE: &str = "arn:aws:iam::123456789012:role/stack-pre-traffic-hook";

/// Starts the resolver with the local stack's settings changed by
/// `overrides` (`None` removes a setting), runs the hook on it, and returns
/// what the hook answered and what CodeDeploy received.
async fn hook_on(overrides: &[(&str, Option<&str>)]) -> (HookReport, Vec<HookStatus>) {
    let stack = LocalServices::start(ServicesOptions {
        settings: vec![("LEGACY_ISOLATION".to_owned(), "in-process".to_owned())],
        ..Default::default()
    })
    .await
    .expect("the test stack");
    let service = LambdaService::start().await.expect("lambda stand-in");
    let api = Arc::new(RuntimeApi::start().await.expect("runtime API"));
    let mut env = stack.env().to_vec();
    for (name, value) in overrides {
        env.retain(|(k, _)| k != name);
        if let Some(value) = value {
            env.push(((*name).to_owned(), (*value).to_owned()));
        }
    }
    env.extend(lambda_env(&api, "stack-resolver"));
    let resolver = testkit::built_binary("assessments-resolver");
    let _version = Function::spawn(&resolver, env);
    service.register(TARGET, Arc::clone(&api));

    let url = service.url();
    let settings = HookSettings::from_env(&Env::from_pairs([
        ("TARGET_FUNCTION_ARN", TARGET),
        ("SMOKE_CALLER_ARN", HOOK_ROLE),
        ("SMOKE_STUDENT_ID", "stu-0001"),
        ("AWS_ENDPOINT_URL_LAMBDA", url.as_str()),
        ("AWS_ENDPOINT_URL_CODEDEPLOY", url.as_str()),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
    ]))
    .expect("hook settings");
    let hook = Hook::init(settings).await;
    let event = HookEvent {
        deployment_id: "d-TEST0001".to_owned(),
        lifecycle_event_hook_execution_id: "hook-execution-1".to_owned(),
    };
    let report = hook
        .handle(&event, Budget::after(Duration::from_secs(90)))
        .await
        .expect("the hook reports");
    assert!(
        service.invocations().iter().all(|name| name == TARGET),
        "only the new version is invoked: {:?}",
        service.invocations()
    );
    (report, service.statuses())
}

fn failed_checks(report: &HookReport) -> Vec<&str> {
    report
        .checks
        .iter()
        .filter(|c| !c.passed)
        .map(|c| c.name)
        .collect()
}

fn reported(statuses: &[HookStatus], status: &str) {
    assert_eq!(
        statuses,
        [HookStatus {
            deployment_id: "d-TEST0001".to_owned(),
            lifecycle_event_hook_execution_id: "hook-execution-1".to_owned(),
            status: status.to_owned(),
        }]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_good_version_is_reported_succeeded() {
    let (report, statuses) = hook_on(&[("AUTHZ_TRUSTED_ROLE_ARNS", Some(HOOK_ROLE))]).await;
    assert_eq!(report.status, "Succeeded", "{report:?}");
    let names: Vec<&str> = report.checks.iter().map(|c| c.name).collect();
    assert_eq!(
        names,
        ["allowed read", "unauthorized", "not found", "batch"]
    );
    reported(&statuses, "Succeeded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_that_answers_wrongly_is_reported_failed() {
    // Deployed without the hook's role among the trusted ones: every
    // trusted read answers Unauthorized.
    let (report, statuses) = hook_on(&[("AUTHZ_TRUSTED_ROLE_ARNS", None)]).await;
    assert_eq!(report.status, "Failed");
    assert_eq!(
        failed_checks(&report),
        ["allowed read", "not found", "batch"]
    );
    let reason = report.checks[0].reason.as_deref().unwrap_or_default();
    assert!(reason.contains("Unauthorized"), "{reason}");
    reported(&statuses, "Failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_whose_init_fails_is_reported_failed() {
    let (report, statuses) = hook_on(&[
        ("AUTHZ_TRUSTED_ROLE_ARNS", Some(HOOK_ROLE)),
        ("LEGACY_LIB_PATH", Some("/nonexistent/liblegacy.so")),
    ])
    .await;
    assert_eq!(report.status, "Failed");
    assert_eq!(
        failed_checks(&report).len(),
        report.checks.len(),
        "{report:?}"
    );
    reported(&statuses, "Failed");
}
