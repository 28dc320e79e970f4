//! The built binaries (`assessments-resolver`, `assessment-processor`), run as
//! processes against a local Lambda Runtime API: init, real invocations,
//! errors as Lambda reports them, EMF lines on stdout, and graceful shutdown
//! on SIGTERM.

mod support;

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use support::function::{Function, lambda_env};
use support::{Stack, appsync_event};
use testkit::lambda_api::{InvocationResult, RuntimeApi};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_serves_real_invocations_and_shuts_down_gracefully() {
    let stack = Stack::start(&[]).await;
    let api = RuntimeApi::start().await.expect("runtime API");
    let mut env = stack.env();
    // The binary's own default: the legacy component in worker processes
    // (the binary itself, in its worker role).
    env.retain(|(k, _)| k != "METRICS_EMF" && k != "LEGACY_ISOLATION");
    env.push(("METRICS_EMF".to_owned(), "true".to_owned()));
    env.extend(lambda_env(&api));
    let mut function = Function::spawn(env);
    let timeout = Duration::from_secs(20);

    let page = api
        .invoke(
            appsync_event(json!({"studentId": "stu-0001", "limit": 4})),
            timeout,
        )
        .await
        .expect("invoke");
    let InvocationResult::Response(page) = page else {
        panic!("expected a response, got {page:?}")
    };
    assert_eq!(page["items"].as_array().map(Vec::len), Some(4));
    assert!(page["nextToken"].is_string());

    let error = api
        .invoke(appsync_event(json!({"studentId": "stu-9999"})), timeout)
        .await
        .expect("invoke");
    assert_eq!(
        error,
        InvocationResult::Error(json!({
            "errorType": "NotFound",
            "errorMessage": "no student profile for studentId \"stu-9999\""
        }))
    );

    let batch = Value::Array(vec![
        appsync_event(json!({"studentId": "stu-0002"})),
        appsync_event(json!({"studentId": "stu-0001", "limit": 0})),
    ]);
    let InvocationResult::Response(batch) = api.invoke(batch, timeout).await.expect("invoke")
    else {
        panic!("a batch always gets a response")
    };
    assert_eq!(batch[0], json!({"data": {"items": [], "nextToken": null}}));
    assert_eq!(batch[1]["errorType"], "ValidationError");

    // The process's memory after serving (the source of the template's MemorySize).
    let pid = function.child.id().to_string();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let memory: Vec<&str> = status
        .lines()
        .filter(|l| l.starts_with("VmHWM") || l.starts_with("VmRSS"))
        .collect();
    println!(
        "assessments-resolver (debug build) after 3 invocations: {}",
        memory.join(", ")
    );

    // SIGTERM: the shutdown hook closes the engine and the pool, then exits 0.
    let (output, emf) = function.terminate();
    assert_eq!(emf.len(), 3, "one EMF line per invocation: {output:#?}");
    assert_eq!(emf[2]["Items"], 2);
    assert_eq!(emf[2]["Errors"], 1);
    assert!(emf.iter().all(|doc| doc["NativeLiveHandles"] == 0));
    assert!(
        emf.iter().all(|doc| doc["LegacyWorkers"]
            .as_u64()
            .is_some_and(|n| (1..=4).contains(&n))),
        "isolated by default, the workers counted: {emf:#?}"
    );
    assert!(emf.iter().all(|doc| doc["LegacyWorkerCrashes"] == 0));
    let logs = output.join("\n");
    assert!(logs.contains("legacy engine closed"), "{logs}");
    assert!(logs.contains("SQL Server pool closed"), "{logs}");
    assert!(
        !logs.contains("local-only-Passw0rd"),
        "credentials never logged"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_processor_binary_answers_an_sqs_event_with_its_failed_records() {
    let stack = Stack::start(&[]).await;
    let api = RuntimeApi::start().await.expect("runtime API");
    let mut env = stack.env();
    env.retain(|(k, _)| k != "METRICS_EMF");
    env.push(("METRICS_EMF".to_owned(), "true".to_owned()));
    env.extend(lambda_env(&api));
    env.retain(|(k, _)| k != "AWS_LAMBDA_FUNCTION_NAME");
    env.push((
        "AWS_LAMBDA_FUNCTION_NAME".to_owned(),
        "assessment-processor".to_owned(),
    ));
    let mut function = Function::spawn_binary(env!("CARGO_BIN_EXE_assessment-processor"), env);
    let event: Value = serde_json::from_str(testkit::sqs::SAMPLE_EVENT).expect("sample event");
    let timeout = Duration::from_secs(20);

    let InvocationResult::Response(answer) =
        api.invoke(event.clone(), timeout).await.expect("invoke")
    else {
        panic!("the processor answers every SQS event")
    };
    // Record 7 has an unknown type, record 8 raw data the API cannot score.
    assert_eq!(
        answer,
        json!({"batchItemFailures": [
            {"itemIdentifier": "00000000-0000-4000-8000-000000000007"},
            {"itemIdentifier": "00000000-0000-4000-8000-000000000008"},
        ]})
    );
    // The same event again: nothing scored twice, the same two failures.
    let InvocationResult::Response(again) = api.invoke(event, timeout).await.expect("invoke")
    else {
        panic!("the processor answers every SQS event")
    };
    assert_eq!(again, answer);
    assert_eq!(stack.scoring().stats().scored, 6);
    assert_eq!(stack.scoring().stats().scored_more_than_once, 0);

    let (output, emf) = function.terminate();
    assert_eq!(emf.len(), 2, "one EMF line per invocation: {output:#?}");
    assert_eq!(
        emf[0]["_aws"]["CloudWatchMetrics"][0]["Namespace"],
        "AssessmentProcessor"
    );
    assert_eq!(emf[0]["FunctionName"], "assessment-processor");
    assert_eq!(
        (
            emf[0]["Records"].clone(),
            emf[0]["Scored"].clone(),
            emf[0]["Failed"].clone()
        ),
        (json!(8), json!(6), json!(2))
    );
    assert_eq!(
        (emf[1]["Scored"].clone(), emf[1]["AlreadyScored"].clone()),
        (json!(0), json!(6))
    );
    let logs = output.join("\n");
    assert!(logs.contains("\"kind\":\"ScoringRejected\""), "{logs}");
    assert!(
        !logs.contains(devstack::stack::LOCAL_SCORING_KEY),
        "the API key is never logged"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_setting_fails_init_with_a_message_naming_it() {
    let api = RuntimeApi::start().await.expect("runtime API");
    let mut env = lambda_env(&api);
    env.push((
        "SQLSERVER_CONNECTION_STRING".to_owned(),
        "Server=tcp:127.0.0.1,1;Encrypt=DANGER_PLAINTEXT".to_owned(),
    ));
    env.push((
        "NEXT_TOKEN_KEY".to_owned(),
        support::TEST_TOKEN_KEY.to_owned(),
    ));
    let mut function = Function::spawn(env);
    let status = function.wait(Duration::from_secs(10));
    assert!(!status.success());
    let logs = function.output().join("\n");
    assert!(
        logs.contains("STUDENTS_TABLE is required and not set"),
        "{logs}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_managed_concurrency_the_binary_serves_invocations_at_once() {
    let stack = Stack::start(&[]).await;
    let tds = stack.tds();
    let api = Arc::new(RuntimeApi::start().await.expect("runtime API"));
    // Slow SQL answers make overlapping invocations visible at the server.
    tds.faults().set_stall_queries(Duration::from_millis(100));
    let mut env = stack.env();
    env.retain(|(k, _)| k != "SQL_POOL_MAX_SIZE");
    env.push(("SQL_POOL_MAX_SIZE".to_owned(), "4".to_owned()));
    env.extend(lambda_env(&api));
    env.push(("AWS_LAMBDA_MAX_CONCURRENCY".to_owned(), "4".to_owned()));
    let _function = Function::spawn(env);
    let calls: Vec<_> = (0..8)
        .map(|i| {
            let api = Arc::clone(&api);
            tokio::spawn(async move {
                let args = json!({"studentId": format!("stu-{:04}", 3 + i), "limit": 2});
                api.invoke(appsync_event(args), Duration::from_secs(20))
                    .await
            })
        })
        .collect();
    for call in calls {
        let result = call.await.expect("task").expect("answered");
        assert!(
            matches!(result, InvocationResult::Response(_)),
            "{result:?}"
        );
    }
    let stats = tds.stats();
    assert!(
        stats.peak_connections > 1,
        "invocations overlapped: {stats:?}"
    );
    assert!(stats.peak_connections <= 4, "{stats:?}");
}

/// Creates a Secrets Manager secret in the local moto (through boto3, which
/// moto installs), returning its ARN.
fn create_secret(endpoint: &str, name: &str, value: &str) -> String {
    let script = "import boto3, sys\n\
        c = boto3.client('secretsmanager', endpoint_url=sys.argv[1], region_name='us-east-1',\n\
            aws_access_key_id='test', aws_secret_access_key='test')\n\
        print(c.create_secret(Name=sys.argv[2], SecretString=sys.argv[3])['ARN'])";
    let output = Command::new(testkit::dynamo::venv_python())
        .args(["-c", script, endpoint, name, value])
        .output()
        .expect("run boto3");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_production_mode_the_connection_string_comes_from_secrets_manager() {
    let stack = Stack::start(&[]).await;
    let (tds, dynamo) = (stack.tds(), stack.dynamo());
    let api = RuntimeApi::start().await.expect("runtime API");
    let secret = json!({ "connectionString": tds.connection_string() }).to_string();
    let arn = create_secret(&dynamo.endpoint(), "assessments/sqlserver", &secret);
    let mut env = stack.env();
    env.retain(|(k, _)| k != "SQLSERVER_CONNECTION_STRING");
    env.push(("SQLSERVER_SECRET_ARN".to_owned(), arn));
    // The SDK's standard per-service endpoint override, as for DynamoDB.
    env.push((
        "AWS_ENDPOINT_URL_SECRETS_MANAGER".to_owned(),
        dynamo.endpoint(),
    ));
    env.extend(lambda_env(&api));
    let _function = Function::spawn(env);
    let page = api
        .invoke(
            appsync_event(json!({"studentId": "stu-0001", "limit": 1})),
            Duration::from_secs(20),
        )
        .await
        .expect("invoke");
    assert!(
        matches!(page, InvocationResult::Response(ref p) if p["items"].as_array().map(Vec::len) == Some(1)),
        "{page:?}"
    );
    assert_eq!(
        tds.stats().logins_ok,
        1,
        "connected with the secret's connection string"
    );
}
