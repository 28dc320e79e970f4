//! The boundary around the legacy component in worker mode (the default),
//! through the built binary: a hostile component (the probe variant of the
//! mock, `legacy-shim/src/sandbox_probe.hpp`) tries, as its library loads, to
//! read its parent's environment (the function's AWS credentials), to attach
//! to its parent with ptrace and to write outside its own directory. Each
//! attempt fails, and the call still answers.

mod support;

use std::time::Duration;

use serde_json::json;
use testkit::appsync::ResolverEvent;
use testkit::function::{Function, lambda_env, worker_output};
use testkit::lambda_api::{InvocationResult, RuntimeApi};

use support::{RESOLVER_BINARY, Stack};

const PROBE: &str = legacy_shim::SANDBOX_PROBE_PATH;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_component_in_a_worker_reads_no_credentials_attaches_to_nothing_writes_nowhere_else()
 {
    let stack = Stack::start(&[]).await;
    let api = RuntimeApi::start().await.expect("runtime API");
    let mut env = stack.env();
    env.retain(|(k, _)| !matches!(k.as_str(), "LEGACY_ISOLATION" | "LEGACY_LIB_PATH"));
    env.push(("LEGACY_LIB_PATH".to_owned(), PROBE.to_owned()));
    env.extend(lambda_env(&api, "assessments-resolver"));
    // The function holds credentials, as on Lambda (the stack's are moto's).
    assert!(env.iter().any(|(k, _)| k == "AWS_SECRET_ACCESS_KEY"));
    let mut function = Function::spawn(RESOLVER_BINARY, env);

    let event = ResolverEvent::get_assessments(json!({"studentId": "stu-0001", "limit": 2}));
    let answer = api
        .invoke(event.into_json(), Duration::from_secs(20))
        .await
        .expect("invoke");
    assert!(
        matches!(&answer, InvocationResult::Response(page) if page["items"].as_array().map(Vec::len) == Some(2)),
        "the call answers: {answer:?}"
    );
    // One line per worker started (init's, and none other here). Printed as
    // the worker started, before the call; passed on by the function as data.
    let probes: Vec<String> = worker_output(&function.output())
        .into_iter()
        .map(|(_, text)| text)
        .filter(|text| text.starts_with("legacy sandbox probe:"))
        .collect();
    assert!(
        !probes.is_empty(),
        "the probe ran: {:#?}",
        function.output()
    );
    for probe in probes {
        assert_eq!(
            probe,
            "legacy sandbox probe: parent environ: denied (Permission denied); \
             ptrace parent: denied (Operation not permitted); \
             write outside its directory: denied (Permission denied); \
             write in its directory: written"
        );
    }
    // Without the sandbox the component attaches to the function, which then
    // stops at its next signal: SIGTERM's graceful exit is the proof it did not.
    function.terminate();
}
