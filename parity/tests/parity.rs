//! The `parity` command's comparison (`parity::run`, what `parity` runs
//! after reading its arguments) on the resolver's binary, over the test
//! stack: two local bootstraps answer the playground's events alike,
//! nextTokens signed with different keys included; a changed answer is
//! found and written to the diff file; a deployed target (`lambda:`, through
//! a local stand-in for Lambda's Invoke) compares like a local one.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use assessments_common::aws::AwsSettings;
use assessments_common::config::Env;
use parity::{Options, Summary, Target};
use serde_json::Value;
use testkit::appsync::playground_events;
use testkit::function::{Function, lambda_env};
use testkit::lambda_api::RuntimeApi;
use testkit::lambda_service::LambdaService;
use testkit::services::{LocalServices, ServicesOptions};

fn resolver() -> String {
    testkit::built_binary("assessments-resolver")
}

/// The test stack the local targets run against.
async fn stack() -> LocalServices {
    LocalServices::start(ServicesOptions::default())
        .await
        .expect("the test stack")
}

fn local(settings: &[(&str, &str)]) -> Target {
    Target::Local {
        binary: PathBuf::from(resolver()),
        settings: settings
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
    }
}

fn diff_file(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("parity-{name}-{}.jsonl", std::process::id()))
}

fn aws(endpoint: Option<&str>) -> AwsSettings {
    let mut pairs = vec![
        ("AWS_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
    ];
    if let Some(url) = endpoint {
        pairs.push(("AWS_ENDPOINT_URL_LAMBDA", url));
    }
    AwsSettings::from_env(&Env::from_pairs(pairs)).expect("AWS settings")
}

async fn compare(old: Target, new: Target, events: Vec<Value>, diff: &Path) -> Summary {
    let stack = stack().await;
    parity::run(Options {
        events,
        old,
        new,
        local_env: stack.env().to_vec(),
        diff_file: diff.to_path_buf(),
        progress: false,
        aws: aws(None),
        lambda_endpoint: None,
    })
    .await
    .expect("parity runs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_bootstraps_of_the_same_build_answer_alike_even_with_different_token_keys() {
    let diff = diff_file("equal");
    std::fs::write(&diff, "stale\n").expect("write");
    let events = playground_events();
    let summary = compare(
        local(&[]),
        // Another nextToken key: every token's bytes differ, the pages they lead to do not.
        local(&[(
            "NEXT_TOKEN_KEY",
            "another-local-next-token-key-for-the-parity-test",
        )]),
        events.clone(),
        &diff,
    )
    .await;
    println!("{summary}");
    assert!(summary.passed(), "{summary}");
    assert_eq!(summary.events, events.len());
    assert!(summary.items > summary.events, "batches count per item");
    assert_eq!(summary.equal, summary.items);
    assert!(
        summary.followed_pages > 0,
        "the differing tokens were followed"
    );
    assert!(
        summary.error_answers_old > 0 && summary.error_answers_old == summary.error_answers_new,
        "refusals, not-found and invalid arguments are compared too: {summary}"
    );
    assert_eq!(summary.latency_old.count(), summary.latency_new.count());
    assert!(
        !diff.exists(),
        "no difference, no diff file (the stale one is gone)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_answer_is_found_and_written_to_the_diff_file() {
    let diff = diff_file("planted");
    // The candidate's legacy component fails every 4th call.
    let summary = compare(
        local(&[]),
        local(&[("LEGACY_CONFIG", "fail_every=4")]),
        playground_events(),
        &diff,
    )
    .await;
    println!("{summary}");
    assert!(!summary.passed());
    assert!(summary.differ > 0 && summary.equal > 0, "{summary}");
    assert!(summary.error_answers_new > summary.error_answers_old);
    let text = std::fs::read_to_string(&diff).expect("the diff file is written");
    let pairs: Vec<Value> = text
        .lines()
        .map(|line| serde_json::from_str(line).expect("JSON lines"))
        .collect();
    assert_eq!(pairs.len(), summary.differ);
    assert_eq!(summary.diff_pairs, pairs.len());
    let pair = &pairs[0];
    assert!(pair["old"]["data"].is_object(), "{pair}");
    assert_eq!(pair["new"]["errorType"], "LegacyComponentError", "{pair}");
    assert!(pair["event"]["arguments"]["studentId"].is_string());
    assert!(
        pair["paths"]
            .as_array()
            .is_some_and(|p| p.iter().any(|p| p == "/data" || p == "/errorType")),
        "{pair}"
    );
    let _ = std::fs::remove_file(&diff);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployed_target_is_invoked_through_lambda_and_compares_like_a_local_one() {
    // The "deployed" candidate: the same binary behind a stand-in for Lambda's
    // Invoke, on a local stack of its own with the same data.
    let services = stack().await;
    let service = LambdaService::start().await.expect("lambda stand-in");
    let api = Arc::new(RuntimeApi::start().await.expect("runtime API"));
    let mut env = services.env().to_vec();
    env.extend(lambda_env(&api, "stack-resolver"));
    let _candidate = Function::spawn(&resolver(), env);
    service.register("stack-resolver:live", Arc::clone(&api));

    let events: Vec<Value> = playground_events().into_iter().take(40).collect();
    let diff = diff_file("lambda");
    let summary = parity::run(Options {
        events: events.clone(),
        old: local(&[]),
        new: Target::parse("lambda:stack-resolver:live").expect("target"),
        local_env: services.env().to_vec(),
        diff_file: diff.clone(),
        progress: false,
        aws: aws(Some(&service.url())),
        lambda_endpoint: Some(service.url()),
    })
    .await
    .expect("parity runs");
    println!("{summary}");
    assert!(summary.passed(), "{summary}");
    assert_eq!(summary.equal, summary.items);
    let invoked = service.invocations();
    assert!(
        invoked.len() >= events.len() && invoked.iter().all(|n| n == "stack-resolver:live"),
        "every event went through Invoke: {} calls",
        invoked.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_candidate_whose_init_fails_is_an_error_at_once_not_a_timeout_per_event() {
    let stack = stack().await;
    let outcome = parity::run(Options {
        events: playground_events(),
        old: local(&[]),
        new: local(&[("LEGACY_LIB_PATH", "/nonexistent/liblegacy_assessment.so")]),
        local_env: stack.env().to_vec(),
        diff_file: diff_file("init"),
        progress: false,
        aws: aws(None),
        lambda_endpoint: None,
    })
    .await;
    let error = outcome.expect_err("no comparison without a candidate");
    // The init's own error, not a timeout per event.
    assert!(
        error.starts_with("new: the bootstrap's init failed"),
        "{error}"
    );
    assert!(error.contains("InitError.LegacyComponent"), "{error}");
}
