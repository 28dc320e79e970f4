//! Every invocation answers before its deadline, and each item fails alone:
//! the `assessments-resolver` binary as a process under the local Runtime
//! API, with deadlines as Lambda gives them (`Lambda-Runtime-Deadline-Ms`).
//!
//! * a SQL Server that accepts connections and never answers;
//! * a queue of native calls longer than the call timeout (no worker killed,
//!   the breaker stays closed);
//! * a legacy component that stops starting (backoff and breaker, no fork loop);
//! * a malformed profile in a batch;
//! * a batch whose answer would pass Lambda's 6 MB response limit.

mod support;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use testkit::appsync::get_assessments;
use testkit::function::{Function, emf_documents, emf_sum, lambda_env};
use testkit::lambda_api::{InvocationResult, RESPONSE_LIMIT_BYTES, RuntimeApi};

use support::{RESOLVER_BINARY, Stack};

/// The resolver binary over `stack`, with `settings` on top, EMF on.
fn start_function(stack: &Stack, api: &RuntimeApi, settings: &[(&str, &str)]) -> Function {
    let mut env = stack.env();
    // The binary's own default: the legacy component in worker processes.
    env.retain(|(k, _)| k != "METRICS_EMF" && k != "LEGACY_ISOLATION");
    env.push(("METRICS_EMF".to_owned(), "true".to_owned()));
    for (k, v) in settings {
        env.retain(|(key, _)| key != k);
        env.push(((*k).to_owned(), (*v).to_owned()));
    }
    env.extend(lambda_env(api, "assessments-resolver"));
    Function::spawn(RESOLVER_BINARY, env)
}

/// Waits until the function has finished init: an invocation that touches no
/// dependency (a validation error) comes back.
async fn until_ready(api: &RuntimeApi) {
    let probe = get_assessments(json!({"studentId": "stu-0001", "limit": 0}));
    let answer = api
        .invoke(probe, Duration::from_secs(30))
        .await
        .expect("init finished");
    assert!(matches!(answer, InvocationResult::Error(_)), "{answer:?}");
}

/// One invocation with a deadline `deadline` after the function receives it:
/// the answer and how long it took from the queue.
async fn invoke(
    api: &RuntimeApi,
    payload: Value,
    deadline: Duration,
) -> (InvocationResult, Duration) {
    let started = Instant::now();
    let answer = api
        .invoke_with_deadline(payload, deadline, deadline + Duration::from_secs(10))
        .await
        .expect("an answer");
    (answer, started.elapsed())
}

fn batch_of(students: impl IntoIterator<Item = String>, limit: u32) -> Value {
    Value::Array(
        students
            .into_iter()
            .map(|id| get_assessments(json!({"studentId": id, "limit": limit})))
            .collect(),
    )
}

fn items(answer: &InvocationResult) -> &Vec<Value> {
    match answer {
        InvocationResult::Response(Value::Array(items)) => items,
        other => panic!("a batch always gets a list: {other:?}"),
    }
}

/// The last EMF document the function printed (the latest invocation's).
fn last_emf(function: &Function) -> Value {
    emf_documents(&function.output())
        .pop()
        .expect("an EMF line per invocation")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_black_hole_sql_server_gets_typed_timeouts_before_the_deadline() {
    let stack = Stack::start(&[]).await;
    let api = RuntimeApi::start().await.expect("runtime API");
    let function = start_function(&stack, &api, &[]);
    until_ready(&api).await;
    // Connections are accepted, logins and queries never answered.
    stack
        .tds()
        .faults()
        .set_stall_logins(Duration::from_secs(600));
    stack
        .tds()
        .faults()
        .set_stall_queries(Duration::from_secs(600));
    let deadline = Duration::from_secs(3);

    // The connection init opened is idle in the pool: the first invocation's
    // query is what never answers. It is discarded after its timeout, so the
    // second invocation connects, and the login is what never answers.
    for bound in [
        "the SQL Server query did not finish within the ",
        "connecting to SQL Server did not finish within the ",
    ] {
        let single = get_assessments(json!({"studentId": "stu-0001", "limit": 5}));
        let (answer, took) = invoke(&api, single, deadline).await;
        println!(
            "black hole, single invocation, deadline {deadline:?}: answered in {took:?}: {answer:?}"
        );
        let InvocationResult::Error(error) = &answer else {
            panic!("a typed error, got {answer:?}")
        };
        assert_eq!(error["errorType"], "DependencyTimeout", "{error}");
        let message = error["errorMessage"].as_str().unwrap_or_default();
        assert!(
            message.starts_with(&format!("SQL Server (assessment records): {bound}"))
                && message.ends_with("ms left before the invocation's deadline"),
            "the bound that fired: {message}"
        );
    }

    let students = (3..13).map(|i| format!("stu-{i:04}"));
    let (answer, took) = invoke(&api, batch_of(students, 5), deadline).await;
    println!("black hole, batch of 10, deadline {deadline:?}: answered in {took:?}");
    for item in items(&answer) {
        println!("  {}", item["errorMessage"]);
        assert_eq!(item["errorType"], "DependencyTimeout", "{item}");
        assert!(
            item["errorMessage"]
                .as_str()
                .is_some_and(|m| m.starts_with("SQL Server")
                    && m.contains("left before the invocation's deadline")),
            "{item}"
        );
    }
    drop(function);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_of_native_calls_longer_than_the_call_timeout_kills_no_worker() {
    let stack = Stack::start(&[]).await;
    let api = RuntimeApi::start().await.expect("runtime API");
    // One worker, 300 ms a call, a 1 s call timeout: 8 calls queue for 2.4 s.
    let function = start_function(
        &stack,
        &api,
        &[
            ("LEGACY_MAX_CONCURRENCY", "1"),
            ("LEGACY_CONFIG", "delay_ms=300"),
            ("LEGACY_CALL_TIMEOUT_MS", "1000"),
        ],
    );
    until_ready(&api).await;
    let students = || (3..11).map(|i| format!("stu-{i:04}"));

    let (answer, took) = invoke(&api, batch_of(students(), 3), Duration::from_secs(10)).await;
    println!("8 queued native calls, deadline 10 s: answered in {took:?}");
    assert!(
        items(&answer).iter().all(|i| i["data"]["items"].is_array()),
        "every item scored: {answer:?}"
    );
    assert!(
        took >= Duration::from_millis(2400),
        "they did queue: {took:?}"
    );

    // A deadline shorter than the queue: the tail fails as a timeout of its
    // wait, answered in time; the worker is not blamed.
    let deadline = Duration::from_millis(1500);
    let (answer, took) = invoke(&api, batch_of(students(), 3), deadline).await;
    let timed_out = items(&answer)
        .iter()
        .filter(|i| i["errorType"] == "DependencyTimeout")
        .count();
    let scored = items(&answer)
        .iter()
        .filter(|i| i["data"].is_object())
        .count();
    println!(
        "8 queued native calls, deadline {deadline:?}: answered in {took:?}, {scored} scored, {timed_out} timed out"
    );
    assert_eq!(scored + timed_out, 8, "{answer:?}");
    assert!(scored >= 2 && timed_out >= 1, "{answer:?}");
    for item in items(&answer)
        .iter()
        .filter(|i| i["errorType"] == "DependencyTimeout")
    {
        let message = item["errorMessage"].as_str().unwrap_or_default();
        assert!(
            message.contains("before the invocation's deadline"),
            "{message}"
        );
    }

    // The call cut by the deadline finishes in the background; the next
    // invocation's calls queue behind it and all is well.
    let (answer, _) = invoke(&api, batch_of(students(), 3), Duration::from_secs(10)).await;
    assert!(
        items(&answer).iter().all(|i| i["data"]["items"].is_array()),
        "{answer:?}"
    );
    let all = emf_documents(&function.output());
    let emf = last_emf(&function);
    let sum = |metric| emf_sum(&all, metric);
    println!(
        "workers started {}, hangs {}, crashes {}, breaker open {}",
        sum("LegacyWorkersStarted"),
        sum("LegacyWorkerHangs"),
        sum("LegacyWorkerCrashes"),
        emf["LegacyBreakerOpen"]
    );
    assert_eq!(sum("LegacyWorkerHangs"), 0, "no worker killed: {all:#?}");
    assert_eq!(sum("LegacyWorkerCrashes"), 0, "{all:#?}");
    assert_eq!(emf["LegacyBreakerOpen"], 0, "{emf}");
    assert_eq!(
        sum("LegacyWorkersStarted"),
        1,
        "the one worker served every call: {all:#?}"
    );
    assert_eq!(emf["NativeLiveHandles"], 0, "{emf}");
    assert_eq!(sum("NativeViolations"), 0, "{all:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_component_that_stops_starting_backs_off_and_opens_the_breaker() {
    let stack = Stack::start(&[]).await;
    let api = RuntimeApi::start().await.expect("runtime API");
    let flag = std::env::temp_dir().join(format!("legacy-start-flag-{}", std::process::id()));
    let _ = std::fs::remove_file(&flag);
    // While the flag exists, a call crashes its worker and no new worker can
    // open the component (InitFailed before Ready).
    let config = format!(
        "crash=segv;crash_flag={0};open_fail_flag={0}",
        flag.display()
    );
    let function = start_function(
        &stack,
        &api,
        &[
            ("LEGACY_MAX_CONCURRENCY", "1"),
            ("LEGACY_CONFIG", &config),
            ("LEGACY_BREAKER_COOLDOWN_MS", "2000"),
        ],
    );
    until_ready(&api).await;
    let call = || get_assessments(json!({"studentId": "stu-0001", "limit": 1}));
    let (answer, _) = invoke(&api, call(), Duration::from_secs(5)).await;
    assert!(
        matches!(answer, InvocationResult::Response(_)),
        "{answer:?}"
    );

    std::fs::write(&flag, b"on").expect("flag");
    let mut refused = 0;
    for _ in 0..STORM_INVOCATIONS {
        let (answer, _) = invoke(&api, call(), Duration::from_secs(1)).await;
        let InvocationResult::Error(error) = &answer else {
            panic!("no worker can serve: {answer:?}")
        };
        // The worker failed, or the only slot was busy restarting one.
        assert!(
            error["errorType"] == "LegacyComponentError"
                || error["errorType"] == "DependencyTimeout",
            "{error}"
        );
        if error["errorMessage"]
            .as_str()
            .is_some_and(|m| m.contains("calls are refused"))
        {
            refused += 1;
        }
    }
    let all = emf_documents(&function.output());
    let failures = emf_sum(&all, "LegacyWorkerStartFailures");
    println!(
        "{STORM_INVOCATIONS} invocations while the component cannot start: {failures} start attempts failed, {refused} refused by the breaker, {} workers started in all",
        emf_sum(&all, "LegacyWorkersStarted")
    );
    // Ten deaths open the breaker (with backoff 10 ms .. 1 s between starts),
    // then one trial start per 2 s cool-down: far from one exec per call.
    assert!((9..=16).contains(&failures), "start attempts: {failures}");
    assert!(refused > 0, "the breaker refused calls");
    assert!(
        STORM_INVOCATIONS > 2 * failures,
        "{failures} start attempts"
    );
    assert_eq!(emf_sum(&all, "LegacyWorkersStarted"), 1, "{all:#?}");
    assert!(emf_sum(&all, "LegacyBreakerOpened") >= 1, "{all:#?}");

    // The component recovers: once a cool-down is over, the trial call starts
    // a worker and closes the breaker (asked until it does: before that, the
    // calls are refused).
    std::fs::remove_file(&flag).expect("flag");
    let (api, function) = (&api, &function);
    testkit::wait_for(
        "a trial call to start a worker and close the breaker",
        move || async move {
            let (answer, _) = invoke(api, call(), Duration::from_secs(5)).await;
            matches!(answer, InvocationResult::Response(_))
                && last_emf(function)["LegacyBreakerOpen"] == 0
        },
    )
    .await;
    let all = emf_documents(&function.output());
    assert_eq!(emf_sum(&all, "LegacyWorkersStarted"), 2, "{all:#?}");
}

/// The storm's invocations: enough to open the breaker and see it refuse.
/// Start attempts are paced by the backoff and the cool-down, not by calls.
const STORM_INVOCATIONS: u64 = 40;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_profile_fails_only_its_own_items() {
    let stack = Stack::start(&[]).await;
    let dynamo = stack.dynamo();
    let item = std::collections::HashMap::from([
        (
            "PK".to_owned(),
            aws_sdk_dynamodb::types::AttributeValue::S("STUDENT#stu-0003".to_owned()),
        ),
        (
            "SK".to_owned(),
            aws_sdk_dynamodb::types::AttributeValue::S("PROFILE".to_owned()),
        ),
        (
            "grade".to_owned(),
            aws_sdk_dynamodb::types::AttributeValue::S("third".to_owned()),
        ),
        (
            "readingLevel".to_owned(),
            aws_sdk_dynamodb::types::AttributeValue::N("3.1".to_owned()),
        ),
    ]);
    testkit::dynamo::put_items(&dynamo.client(), dynamo.table(), vec![item])
        .await
        .expect("a malformed profile");
    let api = RuntimeApi::start().await.expect("runtime API");
    let _function = start_function(&stack, &api, &[]);

    let ids = ["stu-0001", "stu-0003", "stu-0004", "stu-0003"].map(str::to_owned);
    let (answer, _) = invoke(&api, batch_of(ids, 2), Duration::from_secs(20)).await;
    let items = items(&answer);
    assert!(items[0]["data"]["items"].is_array(), "{answer:?}");
    assert!(items[2]["data"]["items"].is_array(), "{answer:?}");
    for bad in [&items[1], &items[3]] {
        assert_eq!(bad["errorType"], "InternalError", "{bad}");
        let message = bad["errorMessage"].as_str().unwrap_or_default();
        assert!(message.contains("profile is malformed: grade"), "{message}");
        assert!(!message.contains("stu-"), "no request's data: {message}");
    }
    let single = get_assessments(json!({"studentId": "stu-0003"}));
    let (answer, _) = invoke(&api, single, Duration::from_secs(20)).await;
    assert!(
        matches!(&answer, InvocationResult::Error(e) if e["errorType"] == "InternalError"),
        "{answer:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_over_six_megabytes_is_cut_item_by_item_from_the_end() {
    let stack = Stack::start(&[]).await;
    let api = RuntimeApi::start().await.expect("runtime API");
    let _function = start_function(&stack, &api, &[]);
    // stu-0001's 74 assessments are ~30 KB of JSON: 300 of them pass 6 MB.
    let batch = batch_of((0..300).map(|_| "stu-0001".to_owned()), 500);
    let (answer, took) = invoke(&api, batch, Duration::from_secs(30)).await;
    let items = items(&answer);
    let size = serde_json::to_vec(&Value::Array(items.clone()))
        .expect("JSON")
        .len();
    let kept = items.iter().take_while(|i| i["data"].is_object()).count();
    println!(
        "batch of 300 full pages: answered in {took:?}, {size} bytes, {kept} pages kept, {} cut",
        items.len() - kept
    );
    assert_eq!(items.len(), 300);
    assert!(size <= RESPONSE_LIMIT_BYTES, "{size}");
    assert!(
        size > RESPONSE_LIMIT_BYTES - 40_000,
        "no more was cut than needed: {size}"
    );
    assert!((150..300).contains(&kept), "{kept}");
    for cut in &items[kept..] {
        assert_eq!(cut["errorType"], "ResponseTooLarge", "{cut}");
        assert!(
            cut["errorMessage"]
                .as_str()
                .is_some_and(|m| m.contains("6291456-byte response limit")),
            "{cut}"
        );
    }
}

/// One page, answered.
async fn assert_page(api: &RuntimeApi) {
    let page = get_assessments(json!({"studentId": "stu-0001"}));
    let (answer, _) = invoke(api, page, Duration::from_secs(5)).await;
    assert!(
        matches!(answer, InvocationResult::Response(_)),
        "{answer:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_opens_the_first_connections_and_a_slow_dependency_does_not_fail_it() {
    let stack = Stack::start(&[]).await;
    let (tds, proxy) = (stack.tds(), stack.dynamo().proxy());

    // Healthy: init logs in to SQL Server and reads DynamoDB once (the key no
    // student has); the first invocation then opens nothing new.
    let api = RuntimeApi::start().await.expect("runtime API");
    let logins = tds.stats().logins_ok;
    proxy.reset_stats();
    let function = start_function(&stack, &api, &[]);
    until_ready(&api).await;
    assert_eq!(
        tds.stats().logins_ok - logins,
        1,
        "a connection opened at init"
    );
    assert_eq!(
        proxy.stats().count("GetItem"),
        1,
        "DynamoDB's connection opened at init"
    );
    let connections = proxy.stats().connections;
    assert_page(&api).await;
    assert_eq!(
        tds.stats().logins_ok - logins,
        1,
        "the first invocation used it"
    );
    assert_eq!(proxy.stats().connections, connections, "and DynamoDB's");
    let ready = function.output();
    assert!(
        ready.iter().any(|l| l.contains("dependencies ready")
            && l.contains("\"sql_connected\":true")
            && l.contains("\"dynamodb_connected\":true")),
        "init's line names its stages: {ready:?}"
    );
    drop(function);

    // SQL Server's logins stall: init gives up on the connection after its
    // bound, says so, and the function still serves once the server answers.
    tds.faults().set_stall_logins(Duration::from_secs(600));
    let api = RuntimeApi::start().await.expect("runtime API");
    let function = start_function(&stack, &api, &[("INIT_CONNECT_TIMEOUT_MS", "300")]);
    until_ready(&api).await;
    assert!(
        function
            .output()
            .iter()
            .any(|l| l.contains("SQL Server connection not opened at init")),
        "{:?}",
        function.output()
    );
    tds.faults().clear();
    assert_page(&api).await;
}
