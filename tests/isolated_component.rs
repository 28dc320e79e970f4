//! The resolver with its legacy component in worker processes (the default
//! mode) whose native code crashes: every invocation still answers, each
//! crash fails only its own item, and the reports count each crash once.

mod support;

use std::collections::HashMap;
use std::time::Duration;

use testkit::procfs::zombies;

use support::Stack;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_resolver_keeps_serving_while_its_workers_crash() {
    let worker = env!("CARGO_BIN_EXE_assessments-resolver");
    let stack = Stack::start(&[
        ("LEGACY_ISOLATION", "process"),
        ("LEGACY_WORKER_PATH", worker),
        ("LEGACY_CONFIG", "crash=segv;crash_every=10"),
    ])
    .await;
    let mut outcomes: HashMap<String, u64> = HashMap::new();
    for i in 0..100 {
        let student = format!("stu-{:04}", i % 30 + 1);
        let event = testkit::appsync::get_assessments(
            serde_json::json!({"studentId": student, "limit": 5}),
        );
        let outcome = match stack.invoke(event).await {
            Ok(_) => "ok".to_owned(),
            Err(error) => {
                assert!(
                    !error.message.contains("SIG") && !error.message.contains("signal"),
                    "the signal stays in the logs: {}",
                    error.message
                );
                error.error_type.as_str().to_owned()
            }
        };
        *outcomes.entry(outcome).or_insert(0) += 1;
    }
    let stats = (stack.deps().resolver.resources().legacy.isolation).expect("isolated");
    println!("100 invocations: {outcomes:?}; {stats:?}");
    let crashed = outcomes.get("LegacyComponentError").copied().unwrap_or(0);
    assert_eq!(crashed, stats.crashes, "{outcomes:?}");
    assert!(crashed >= 5, "the crash mode ran: {outcomes:?}");
    assert_eq!(
        outcomes.get("ok").copied().unwrap_or(0) + crashed,
        100,
        "{outcomes:?}"
    );
    // The invocations' reports took the crashes as they happened: the
    // running total is in the log fields, and nothing is left to report.
    let mut report = assessments_resolver::report::InvocationReport::new(
        "r",
        false,
        1,
        Duration::from_millis(1),
        Default::default(),
    );
    let resources = stack.deps().resource_state();
    report.resources = Some(resources);
    assert_eq!(resources.legacy.isolation.map(|t| t.crashes), Some(crashed));
    let emf = &report.emf(
        assessments_common::observability::FunctionId {
            name: "fn",
            version: "$LATEST",
        },
        0,
    )[0]
    .to_value();
    assert_eq!(emf["LegacyWorkerCrashes"], 0, "already reported: {emf}");
    assert_eq!(emf["LegacyBreakerOpen"], 0);
    stack.deps().shutdown().await;
    assert!(zombies().is_empty());
}
