//! Every fault of the legacy component, through the resolver binary in both
//! isolation modes: the same fault gets the same answer (`errorType` and
//! message) in each, at init or per call. The one fault that cannot is a
//! crash: in process it ends the execution environment (why worker processes
//! are the default), in a worker it fails the call.
//!
//! `scripts/test` runs this file twice: against the debug binary with the other
//! tests, and against the release bootstrap `scripts/package` builds
//! (`RESOLVER_BINARY=target/lambda/assessments-resolver/bootstrap`), the binary
//! that ships.

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use testkit::appsync::get_assessments;
use testkit::function::{Function, init_failure, lambda_env};
use testkit::lambda_api::{InvocationResult, RuntimeApi};

use support::{MALFORMED_MODES, Stack};

const TIMEOUT: Duration = Duration::from_secs(20);

/// A fault: its name, the settings that cause it, the errorType and message expected.
type Fault<'a> = (String, Vec<(&'a str, &'a str)>, &'a str, &'a str);
const MODES: [&str; 2] = ["in-process", "process"];

/// The function on `stack` in `mode`, with `settings` over the stack's.
fn spawn(stack: &Stack, api: &RuntimeApi, mode: &str, settings: &[(&str, &str)]) -> Function {
    let mut env = stack.env();
    env.retain(|(k, _)| {
        k != "LEGACY_ISOLATION"
            && k != "LEGACY_WORKER_PATH"
            && !settings.iter().any(|(s, _)| s == k)
    });
    env.push(("LEGACY_ISOLATION".to_owned(), mode.to_owned()));
    env.extend(
        settings
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    env.extend(lambda_env(api, "assessments-resolver"));
    Function::spawn(&support::binary_under_test(), env)
}

/// `(errorType, errorMessage)`, the request id in the message replaced by `<id>`.
fn answer(error: &Value) -> (String, String) {
    let text = |key: &str| error[key].as_str().unwrap_or_default().to_owned();
    let mut message = text("errorMessage");
    if let Some(at) = message.find("request id ") {
        let start = at + "request id ".len();
        let end = message[start..]
            .find(')')
            .map_or(message.len(), |e| start + e);
        message.replace_range(start..end, "<id>");
    }
    (text("errorType"), message)
}

/// One call's answer with the component configured by `settings`.
async fn call_fault(stack: &Stack, mode: &str, settings: &[(&str, &str)]) -> (String, String) {
    let api = RuntimeApi::start().await.expect("runtime API");
    let mut function = spawn(stack, &api, mode, settings);
    let result = api
        .invoke(
            get_assessments(json!({"studentId": "stu-0001", "limit": 3})),
            TIMEOUT,
        )
        .await
        .expect("invoke");
    function.terminate();
    match result {
        InvocationResult::Error(error) => answer(&error),
        other => panic!("{mode} {settings:?}: expected an error, got {other:?}"),
    }
}

/// What init reports to Lambda (its errorType) and logs (its reason) with
/// the component at `lib_path`.
async fn init_fault(stack: &Stack, mode: &str, lib_path: &str) -> (String, String) {
    let api = RuntimeApi::start().await.expect("runtime API");
    let mut function = spawn(stack, &api, mode, &[("LEGACY_LIB_PATH", lib_path)]);
    assert!(!function.wait(TIMEOUT).success(), "{mode}: init must fail");
    let failure = init_failure(&api, &function).expect("reported and logged");
    (failure.error_type, failure.reason)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_component_fault_gets_one_answer_in_both_modes() {
    let stack = Stack::start(&[]).await;
    let could_not_score = "legacy assessment component: it could not score these assessments \
                           (the function's log has the detail under request id <id>)";
    let malformed = "legacy assessment component: it returned malformed output \
                     (the function's log has the detail under request id <id>)";
    let malformed_configs: Vec<String> = MALFORMED_MODES
        .iter()
        .map(|(m, _)| format!("malformed={m}"))
        .collect();
    let mut faults: Vec<Fault> = vec![
        (
            "slow call past LEGACY_CALL_TIMEOUT_MS".into(),
            vec![
                ("LEGACY_CONFIG", "delay_ms=2000"),
                ("LEGACY_CALL_TIMEOUT_MS", "100"),
            ],
            "DependencyTimeout",
            "legacy assessment component: the legacy component did not answer within 100ms (LEGACY_CALL_TIMEOUT_MS)",
        ),
        (
            "an error on every call".into(),
            vec![("LEGACY_CONFIG", "fail_every=1")],
            "LegacyComponentError",
            could_not_score,
        ),
    ];
    for config in &malformed_configs {
        faults.push((
            config.clone(),
            vec![("LEGACY_CONFIG", config.as_str())],
            "LegacyComponentError",
            malformed,
        ));
    }
    for (name, settings, error_type, message) in &faults {
        let mut answers = Vec::new();
        for mode in MODES {
            answers.push(call_fault(&stack, mode, settings).await);
        }
        assert_eq!(
            answers[0], answers[1],
            "{name}: in process, then in a worker"
        );
        assert_eq!(
            answers[0],
            ((*error_type).to_owned(), (*message).to_owned()),
            "{name}"
        );
    }

    // Faults found at init: Lambda is told the same in both modes.
    for (name, path, fragment) in [
        (
            "ABI mismatch",
            legacy_shim::ABI_MISMATCH_PATH,
            "has ABI version 99, this build needs 1",
        ),
        (
            "missing symbol",
            legacy_shim::MISSING_SYMBOL_PATH,
            "does not export `la_score`",
        ),
        (
            "no library",
            "/nonexistent/liblegacy.so",
            "cannot load the legacy library",
        ),
    ] {
        let mut answers = Vec::new();
        for mode in MODES {
            answers.push(init_fault(&stack, mode, path).await);
        }
        assert_eq!(
            answers[0], answers[1],
            "{name}: in process, then in a worker"
        );
        assert_eq!(answers[0].0, "InitError.LegacyComponent", "{name}");
        assert!(answers[0].1.contains(fragment), "{name}: {}", answers[0].1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_fails_the_call_in_a_worker_and_ends_the_environment_in_process() {
    use std::os::unix::process::ExitStatusExt;
    let stack = Stack::start(&[]).await;
    let crash = [("LEGACY_CONFIG", "crash=abort")];
    assert_eq!(
        call_fault(&stack, "process", &crash).await,
        (
            "LegacyComponentError".to_owned(),
            "legacy assessment component: it stopped while scoring \
             (the function's log has the detail under request id <id>)"
                .to_owned()
        )
    );
    let api = RuntimeApi::start().await.expect("runtime API");
    let mut function = spawn(&stack, &api, "in-process", &crash);
    let invocation = tokio::spawn({
        let event = get_assessments(json!({"studentId": "stu-0001", "limit": 3}));
        async move { api.invoke(event, TIMEOUT).await }
    });
    let status = function.wait(TIMEOUT);
    assert_eq!(status.signal(), Some(6), "SIGABRT: {status:?}");
    invocation.abort();
}
