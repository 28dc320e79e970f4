//! The resolver's CodeDeploy `PreTraffic` hook: before a new version takes any
//! traffic, invoke that version (`TARGET_FUNCTION_ARN`, the template's
//! `ResolverFunction.Version`) with a smoke set of AppSync events, check the
//! answers' shape and errorTypes, and report `Succeeded` or `Failed` with
//! `PutLifecycleEventHookExecutionStatus`. A `Failed` report stops the
//! deployment before the alias moves; docs/cutover.md is the runbook.
//!
//! The smoke set needs no data of its own: a trusted caller reading a student
//! that cannot exist must get `NotFound`, an untrusted caller `Unauthorized`,
//! and a batch of both the same per item. With `SMOKE_STUDENT_ID` (a student
//! the deployment's database holds) a trusted read of it must answer a page.
//! The trusted caller is the hook's own role (`SMOKE_CALLER_ARN`), which the
//! template adds to the resolver's `AUTHZ_TRUSTED_ROLE_ARNS`: it grants that
//! role nothing it lacked, since whoever may invoke the function directly can
//! put any identity in the event.

#![forbid(unsafe_code)]

use std::sync::Arc;
use std::time::Duration;

use assessments_common::appsync::{ResolverEvent, identity};
use assessments_common::aws::AwsSettings;
use assessments_common::budget::{Budget, Limit};
use assessments_common::config::{ConfigError, Env};
use assessments_common::lambda::{Function, InitFailure};
use assessments_common::rules::{STUDENT_ID_RULE, is_valid_student_id};
use lambda_runtime::{Diagnostic, LambdaEvent};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// What CodeDeploy sends a lifecycle hook.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct HookEvent {
    pub deployment_id: String,
    pub lifecycle_event_hook_execution_id: String,
}

/// The hook's settings (environment variables; docs/cutover.md).
#[derive(Debug, Clone)]
pub struct HookSettings {
    /// `TARGET_FUNCTION_ARN`: the version under test (a qualified ARN or name).
    pub target: String,
    /// `SMOKE_CALLER_ARN`: the role the smoke events' trusted caller claims.
    pub caller_arn: String,
    /// `SMOKE_STUDENT_ID`: a student the database holds, for the allowed read (optional).
    pub student_id: Option<String>,
    /// `SMOKE_INVOKE_TIMEOUT_MS`: one invocation of the new version, its cold
    /// start included (default 25000; the resolver's own timeout is 20 s).
    pub invoke_timeout: Duration,
    /// `AWS_ENDPOINT_URL_LAMBDA` and `AWS_ENDPOINT_URL_CODEDEPLOY`: the SDK's
    /// standard endpoint overrides, read like the other settings (tests).
    pub lambda_endpoint: Option<String>,
    pub codedeploy_endpoint: Option<String>,
    pub aws: AwsSettings,
}

/// Kept from the hook's own deadline for reporting the status: a hook that
/// cannot report leaves the deployment waiting for CodeDeploy's hour-long timeout.
const REPORT_RESERVE: Duration = Duration::from_secs(5);

impl HookSettings {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let caller_arn = env.required("SMOKE_CALLER_ARN")?;
        if !caller_arn.starts_with("arn:") {
            return Err(ConfigError::Invalid {
                name: "SMOKE_CALLER_ARN",
                reason: format!("{caller_arn:?} is not an ARN"),
            });
        }
        let student_id = env.string("SMOKE_STUDENT_ID")?.filter(|s| !s.is_empty());
        if let Some(id) = &student_id
            && !is_valid_student_id(id)
        {
            return Err(ConfigError::Invalid {
                name: "SMOKE_STUDENT_ID",
                reason: format!("not a student id: it {STUDENT_ID_RULE}"),
            });
        }
        Ok(HookSettings {
            target: env.required("TARGET_FUNCTION_ARN")?,
            caller_arn,
            student_id,
            invoke_timeout: Duration::from_millis(
                env.number("SMOKE_INVOKE_TIMEOUT_MS", 100..=600_000)?
                    .unwrap_or(25_000),
            ),
            lambda_endpoint: env.string("AWS_ENDPOINT_URL_LAMBDA")?,
            codedeploy_endpoint: env.string("AWS_ENDPOINT_URL_CODEDEPLOY")?,
            aws: AwsSettings::from_env(env)?,
        })
    }

    /// An IAM caller in the same account that no setting trusts.
    fn untrusted_arn(&self) -> String {
        let mut parts = self.caller_arn.splitn(6, ':');
        let partition = parts.nth(1).unwrap_or("aws");
        let account = parts.nth(2).unwrap_or("000000000000");
        format!("arn:{partition}:iam::{account}:role/pre-traffic-hook-untrusted-probe")
    }
}

/// What an answer must be.
#[derive(Debug, Clone, PartialEq)]
pub enum Expect {
    /// An `AssessmentPage`: `items` a list, `nextToken` a string or null.
    Page,
    /// A Lambda error with this `errorType`.
    Error(&'static str),
    /// A batch answer: a list of this length, item by item
    /// `{"data": <page>}` or `{"data": null, "errorType": ...}`.
    Batch(Vec<Expect>),
}

/// One smoke check: a name for the report, the event, what it must answer.
#[derive(Debug, Clone)]
pub struct Check {
    pub name: &'static str,
    pub event: Value,
    pub expect: Expect,
}

/// `Query.getAssessments(studentId, limit: 1)` as AppSync sends it, from the caller `caller_arn`.
fn get_assessments(student_id: &str, caller_arn: &str) -> Value {
    ResolverEvent::get_assessments(json!({ "studentId": student_id, "limit": 1 }))
        .headers([("x-smoke-check".to_owned(), "pre-traffic-hook".to_owned())])
        .identity(identity::iam(caller_arn))
        .into_json()
}

/// The smoke set. `missing` is a student id no database holds (random per run).
pub fn smoke_checks(settings: &HookSettings, missing: &str) -> Vec<Check> {
    let trusted = settings.caller_arn.as_str();
    let untrusted = settings.untrusted_arn();
    let mut checks = Vec::new();
    let mut batch = vec![
        (get_assessments(missing, trusted), Expect::Error("NotFound")),
        (
            get_assessments(missing, &untrusted),
            Expect::Error("Unauthorized"),
        ),
    ];
    if let Some(student) = &settings.student_id {
        checks.push(Check {
            name: "allowed read",
            event: get_assessments(student, trusted),
            expect: Expect::Page,
        });
        batch.push((get_assessments(student, trusted), Expect::Page));
    }
    checks.push(Check {
        name: "unauthorized",
        event: get_assessments(missing, &untrusted),
        expect: Expect::Error("Unauthorized"),
    });
    checks.push(Check {
        name: "not found",
        event: get_assessments(missing, trusted),
        expect: Expect::Error("NotFound"),
    });
    let (events, expects): (Vec<Value>, Vec<Expect>) = batch.into_iter().unzip();
    checks.push(Check {
        name: "batch",
        event: Value::Array(events),
        expect: Expect::Batch(expects),
    });
    checks
}

/// How an invocation of the new version ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    Response(Value),
    /// Lambda's `FunctionError` was set: the payload is the error document.
    FunctionError(Value),
}

fn is_page(value: &Value) -> Result<(), String> {
    let items_ok = value.get("items").is_some_and(Value::is_array);
    let token_ok = value
        .get("nextToken")
        .is_none_or(|t| t.is_null() || t.is_string());
    if items_ok && token_ok {
        Ok(())
    } else {
        Err(format!(
            "expected a page (items, nextToken), got {}",
            shape(value)
        ))
    }
}

/// What a value looks like, for a report: its kind and keys, never its data
/// (a page of a real student's assessments must not reach the hook's log).
fn shape(value: &Value) -> String {
    match value {
        Value::Object(map) => {
            let keys: Vec<&str> = map.keys().map(String::as_str).collect();
            format!("an object with {keys:?}")
        }
        Value::Array(items) => format!("a list of {}", items.len()),
        Value::Null => "null".to_owned(),
        other => format!("a {}", kind(other)),
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "list",
        Value::Object(_) => "object",
        Value::Null => "null",
    }
}

fn error_type(value: &Value) -> Option<&str> {
    value.get("errorType").and_then(Value::as_str)
}

/// Whether `answer` is what `expect` says.
pub fn verify(expect: &Expect, answer: &Answer) -> Result<(), String> {
    match (expect, answer) {
        (Expect::Page, Answer::Response(value)) => is_page(value),
        (Expect::Error(want), Answer::FunctionError(error)) => match error_type(error) {
            Some(got) if got == *want => Ok(()),
            got => Err(format!("expected errorType {want}, got {got:?}")),
        },
        (Expect::Batch(expects), Answer::Response(Value::Array(items))) => {
            if items.len() != expects.len() {
                return Err(format!(
                    "expected {} items, got {}",
                    expects.len(),
                    items.len()
                ));
            }
            for (i, (expect, item)) in expects.iter().zip(items).enumerate() {
                let data = item.get("data").unwrap_or(&Value::Null);
                let outcome = match (expect, error_type(item)) {
                    (Expect::Page, None) => is_page(data),
                    (Expect::Error(want), Some(got)) if got == *want && data.is_null() => Ok(()),
                    (Expect::Error(want), got) => Err(format!(
                        "expected errorType {want} and no data, got {got:?}"
                    )),
                    (_, got) => Err(format!("expected a page, got errorType {got:?}")),
                };
                outcome.map_err(|e| format!("item {i}: {e}"))?;
            }
            Ok(())
        }
        (Expect::Batch(_), Answer::Response(other)) => {
            Err(format!("expected a list, got {}", shape(other)))
        }
        (_, Answer::FunctionError(error)) => Err(format!(
            "expected an answer, got the error {:?}",
            error_type(error).unwrap_or("(no errorType)")
        )),
        (Expect::Error(want), Answer::Response(value)) => Err(format!(
            "expected errorType {want}, got an answer: {}",
            shape(value)
        )),
    }
}

/// One check's outcome, as the hook logs and returns it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CheckResult {
    pub name: &'static str,
    pub passed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// What the hook reported.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct HookReport {
    pub status: &'static str,
    pub checks: Vec<CheckResult>,
}

/// The hook's failures that leave CodeDeploy without a status.
#[derive(Debug, thiserror::Error)]
pub enum HookError {
    #[error("could not report {status} to CodeDeploy within {limit}: {reason}")]
    Report {
        status: &'static str,
        limit: Limit,
        reason: String,
    },
}

/// Kept from the invocation's deadline for returning the answer.
const MARGIN: Duration = Duration::from_millis(200);

/// An init failure: a setting missing or invalid.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct HookInitError(#[from] ConfigError);

impl InitFailure for HookInitError {
    fn error_type(&self) -> &'static str {
        "InitError.Configuration"
    }
}

/// The hook as a Lambda function: settings and clients at init, then one
/// CodeDeploy lifecycle event per invocation.
impl Function for Hook {
    type Event = HookEvent;
    type Response = HookReport;
    type InitError = HookInitError;

    async fn init() -> Result<Self, HookInitError> {
        let settings = HookSettings::from_env(&Env::from_process())?;
        Ok(Hook::init(settings).await)
    }

    async fn handle(
        self: Arc<Self>,
        event: LambdaEvent<HookEvent>,
    ) -> Result<HookReport, Diagnostic> {
        let budget = Budget::from_lambda_deadline(event.context.deadline, MARGIN);
        Hook::handle(&self, &event.payload, budget)
            .await
            .map_err(|e| Diagnostic {
                error_type: "HookError.Report".to_owned(),
                error_message: e.to_string(),
            })
    }
}

/// The hook's clients, built once at init.
pub struct Hook {
    lambda: aws_sdk_lambda::Client,
    codedeploy: aws_sdk_codedeploy::Client,
    settings: HookSettings,
}

impl Hook {
    pub async fn init(settings: HookSettings) -> Self {
        use aws_sdk_lambda::config::timeout::TimeoutConfig;
        let sdk = settings.aws.sdk_config().await;
        // An invocation of the new version may include its cold start: its
        // own timeout, not DynamoDB's, and one retry at most (throttling).
        let mut lambda = aws_sdk_lambda::config::Builder::from(&sdk);
        if let Some(url) = &settings.lambda_endpoint {
            lambda = lambda.endpoint_url(url);
        }
        let lambda = lambda
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_millis(500))
                    .operation_timeout(settings.invoke_timeout)
                    .build(),
            )
            .retry_config(
                aws_sdk_lambda::config::retry::RetryConfig::standard().with_max_attempts(2),
            )
            .build();
        // The report's own bound is the time kept for it, not DynamoDB's setting.
        let mut codedeploy = aws_sdk_codedeploy::config::Builder::from(&sdk).timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_millis(500))
                .operation_timeout(REPORT_RESERVE)
                .build(),
        );
        if let Some(url) = &settings.codedeploy_endpoint {
            codedeploy = codedeploy.endpoint_url(url);
        }
        Hook {
            lambda: aws_sdk_lambda::Client::from_conf(lambda),
            codedeploy: aws_sdk_codedeploy::Client::from_conf(codedeploy.build()),
            settings,
        }
    }

    /// Invokes the version under test with `event`, within `budget`.
    async fn invoke(&self, event: &Value, budget: Budget) -> Result<Answer, String> {
        let bound = budget.bound(self.settings.invoke_timeout, "SMOKE_INVOKE_TIMEOUT_MS");
        let body = serde_json::to_vec(event).map_err(|e| e.to_string())?;
        let call = self
            .lambda
            .invoke()
            .function_name(&self.settings.target)
            .payload(aws_sdk_lambda::primitives::Blob::new(body))
            .send();
        let output = match bound.run(call).await {
            Ok(Ok(output)) => output,
            Ok(Err(e)) => {
                let e = aws_sdk_lambda::error::DisplayErrorContext(e);
                return Err(format!("Invoke failed: {e}"));
            }
            Err(limit) => return Err(format!("no answer within {limit}")),
        };
        let payload = output.payload().map(|p| p.as_ref()).unwrap_or_default();
        let value: Value =
            serde_json::from_slice(payload).map_err(|e| format!("the answer is not JSON: {e}"))?;
        Ok(match output.function_error() {
            Some(_) => Answer::FunctionError(value),
            None => Answer::Response(value),
        })
    }

    /// Runs the smoke set, one check after another, each within what is left
    /// of `budget` less the time kept for reporting.
    pub async fn check(&self, budget: Budget) -> Vec<CheckResult> {
        let missing = format!("smoke-missing-{:016x}", fastrand::u64(..));
        let checks_budget = budget.less(REPORT_RESERVE);
        let mut results = Vec::new();
        for check in smoke_checks(&self.settings, &missing) {
            let outcome = match self.invoke(&check.event, checks_budget).await {
                Ok(answer) => verify(&check.expect, &answer),
                Err(e) => Err(e),
            };
            match &outcome {
                Ok(()) => tracing::info!(check = check.name, "smoke check passed"),
                Err(reason) => tracing::warn!(check = check.name, %reason, "smoke check failed"),
            }
            results.push(CheckResult {
                name: check.name,
                passed: outcome.is_ok(),
                reason: outcome.err(),
            });
        }
        results
    }

    /// Checks the new version and reports the status to CodeDeploy.
    pub async fn handle(&self, event: &HookEvent, budget: Budget) -> Result<HookReport, HookError> {
        let checks = self.check(budget).await;
        let status = if checks.iter().all(|c| c.passed) {
            "Succeeded"
        } else {
            "Failed"
        };
        let bound = budget.as_bound();
        let report = self
            .codedeploy
            .put_lifecycle_event_hook_execution_status()
            .deployment_id(&event.deployment_id)
            .lifecycle_event_hook_execution_id(&event.lifecycle_event_hook_execution_id)
            .status(aws_sdk_codedeploy::types::LifecycleEventStatus::from(
                status,
            ))
            .send();
        let failed = |reason: String| HookError::Report {
            status,
            limit: bound.limit,
            reason,
        };
        match bound.run(report).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                let e = aws_sdk_codedeploy::error::DisplayErrorContext(e);
                return Err(failed(e.to_string()));
            }
            Err(_) => return Err(failed("no answer".to_owned())),
        }
        tracing::info!(
            status,
            deployment_id = %event.deployment_id,
            "reported the new version's status to CodeDeploy"
        );
        Ok(HookReport { status, checks })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(student: Option<&str>) -> HookSettings {
        let mut pairs = vec![
            (
                "TARGET_FUNCTION_ARN",
                "arn:aws:lambda:eu-west-1:123456789012:function:s-resolver:7",
            ),
            ("SMOKE_CALLER_ARN", "arn:aws:iam::123456789012:role/s-hook"),
        ];
        if let Some(s) = student {
            pairs.push(("SMOKE_STUDENT_ID", s));
        }
        HookSettings::from_env(&Env::from_pairs(pairs)).expect("settings")
    }

    fn page() -> Value {
        json!({"items": [{"id": "1"}], "nextToken": null})
    }

    fn error(t: &str) -> Answer {
        Answer::FunctionError(json!({"errorType": t, "errorMessage": "m"}))
    }

    #[test]
    fn the_smoke_set_has_a_read_an_unauthorized_a_not_found_and_a_batch() {
        let names: Vec<_> = smoke_checks(&settings(Some("stu-0001")), "smoke-missing-1")
            .iter()
            .map(|c| c.name)
            .collect();
        assert_eq!(
            names,
            ["allowed read", "unauthorized", "not found", "batch"]
        );
        let without = smoke_checks(&settings(None), "smoke-missing-1");
        assert_eq!(without.len(), 3, "no allowed read without SMOKE_STUDENT_ID");
        let untrusted = &without[0].event["identity"]["userArn"];
        assert_eq!(
            untrusted,
            "arn:aws:iam::123456789012:role/pre-traffic-hook-untrusted-probe"
        );
    }

    #[test]
    fn answers_are_checked_by_shape_and_error_type() {
        assert_eq!(verify(&Expect::Page, &Answer::Response(page())), Ok(()));
        assert!(verify(&Expect::Page, &Answer::Response(json!({"items": 3}))).is_err());
        assert!(verify(&Expect::Page, &error("InternalError")).is_err());
        assert_eq!(
            verify(&Expect::Error("NotFound"), &error("NotFound")),
            Ok(())
        );
        let wrong = verify(&Expect::Error("NotFound"), &error("Unauthorized")).unwrap_err();
        assert!(wrong.contains("Unauthorized"), "{wrong}");
        assert!(verify(&Expect::Error("NotFound"), &Answer::Response(page())).is_err());
        let batch = Expect::Batch(vec![Expect::Error("NotFound"), Expect::Page]);
        let good =
            json!([{"data": null, "errorType": "NotFound", "errorMessage": "m"}, {"data": page()}]);
        assert_eq!(verify(&batch, &Answer::Response(good)), Ok(()));
        let swapped = json!([{"data": page()}, {"data": null, "errorType": "NotFound"}]);
        assert!(verify(&batch, &Answer::Response(swapped)).is_err());
        assert!(verify(&batch, &Answer::Response(json!([{"data": null}]))).is_err());
    }

    #[test]
    fn a_report_shows_no_data_only_its_shape() {
        let answer = Answer::Response(json!({"studentId": "stu-0001", "score": 3}));
        let reason = verify(&Expect::Error("NotFound"), &answer).unwrap_err();
        assert!(!reason.contains("stu-0001"), "{reason}");
    }

    #[test]
    fn a_bad_smoke_student_is_refused_naming_the_setting() {
        let env = Env::from_pairs([
            ("TARGET_FUNCTION_ARN", "f:1"),
            ("SMOKE_CALLER_ARN", "arn:aws:iam::1:role/h"),
            ("SMOKE_STUDENT_ID", "no spaces"),
        ]);
        let e = HookSettings::from_env(&env).unwrap_err().to_string();
        assert!(e.contains("SMOKE_STUDENT_ID"), "{e}");
    }
}
