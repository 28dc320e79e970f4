//! The built binary (`assessments-resolver`), run as a process against a local Lambda Runtime API: init, real invocations,
//! errors as Lambda reports them, EMF lines on stdout, and graceful shutdown
//! on SIGTERM.

mod support;

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use testkit::appsync::get_assessments;
use testkit::function::{Function, init_failure, lambda_env};
use testkit::lambda_api::{InvocationResult, RuntimeApi};

use support::{RESOLVER_BINARY, Stack};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_serves_real_invocations_and_shuts_down_gracefully() {
    let stack = Stack::start(&[]).await;
    let api = RuntimeApi::start().await.expect("runtime API");
    let mut env = stack.env();
    // The binary's own default: the legacy component in worker processes
    // (the binary itself, in its worker role).
    env.retain(|(k, _)| k != "METRICS_EMF" && k != "LEGACY_ISOLATION");
    env.push(("METRICS_EMF".to_owned(), "true".to_owned()));
    env.extend(lambda_env(&api, "assessments-resolver"));
    let mut function = Function::spawn(RESOLVER_BINARY, env);
    let timeout = Duration::from_secs(20);

    let page = api
        .invoke(
            get_assessments(json!({"studentId": "stu-0001", "limit": 4})),
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
        .invoke(get_assessments(json!({"studentId": "stu-9999"})), timeout)
        .await
        .expect("invoke");
    assert_eq!(
        error,
        InvocationResult::Error(json!({
            "errorType": "NotFound",
            "errorMessage": "studentId: no student profile for this studentId"
        }))
    );

    let batch = Value::Array(vec![
        get_assessments(json!({"studentId": "stu-0002"})),
        get_assessments(json!({"studentId": "stu-0001", "limit": 0})),
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
    // The failed items, by error type, one document per type and invocation.
    let by_type: Vec<(Value, Value)> = testkit::function::error_type_documents(&output)
        .iter()
        .map(|doc| (doc["ErrorType"].clone(), doc["ItemErrors"].clone()))
        .collect();
    assert_eq!(
        by_type,
        [
            (json!("NotFound"), json!(1)),
            (json!("ValidationError"), json!(1))
        ]
    );
    let logs = output.join("\n");
    assert!(logs.contains("legacy engine closed"), "{logs}");
    assert!(logs.contains("SQL Server pool closed"), "{logs}");
    assert!(
        !logs.contains("local-only-Passw0rd"),
        "credentials never logged"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_setting_fails_init_with_a_message_naming_it() {
    // LEGACY_LIB_PATH has no default: the binary carries no component of its own.
    for (missing, present) in [
        (
            "STUDENTS_TABLE",
            ("LEGACY_LIB_PATH", legacy_shim::SHIM_PATH),
        ),
        ("LEGACY_LIB_PATH", ("STUDENTS_TABLE", "students")),
    ] {
        let api = RuntimeApi::start().await.expect("runtime API");
        let mut env = lambda_env(&api, "assessments-resolver");
        env.push((
            "SQLSERVER_CONNECTION_STRING".to_owned(),
            "Server=tcp:127.0.0.1,1;Encrypt=DANGER_PLAINTEXT".to_owned(),
        ));
        env.push((
            "NEXT_TOKEN_KEY".to_owned(),
            support::TEST_TOKEN_KEY.to_owned(),
        ));
        env.push(("ALLOW_INSECURE_SETTINGS".to_owned(), "true".to_owned()));
        env.push((present.0.to_owned(), present.1.to_owned()));
        let mut function = Function::spawn(RESOLVER_BINARY, env);
        let status = function.wait(Duration::from_secs(10));
        assert!(!status.success(), "{missing}");
        // Lambda is told with a stable errorType (not only "Runtime exited"),
        // the log says why, under the id Lambda was told.
        let failure = init_failure(&api, &function).expect("reported and logged");
        assert_eq!(failure.error_type, "InitError.Configuration");
        assert_eq!(
            failure.reason,
            format!("configuration: {missing} is required and not set")
        );
    }
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
    env.extend(lambda_env(&api, "assessments-resolver"));
    env.push(("AWS_LAMBDA_MAX_CONCURRENCY".to_owned(), "4".to_owned()));
    // The local stack's own dependencies hold a connection of their own.
    let before = tds.stats().open_connections;
    let _function = Function::spawn(RESOLVER_BINARY, env);
    let calls: Vec<_> = (0..8)
        .map(|i| {
            let api = Arc::clone(&api);
            tokio::spawn(async move {
                let args = json!({"studentId": format!("stu-{:04}", 3 + i), "limit": 2});
                api.invoke(get_assessments(args), Duration::from_secs(20))
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
    let peak = stats.peak_connections - before;
    assert!(peak > 1, "invocations overlapped: {stats:?}");
    assert!(peak <= 4, "the function's pool of 4: {stats:?}");
}

/// The resolver as a deployed stack runs it: the connection string and the
/// `nextToken` key from Secrets Manager, no `ALLOW_INSECURE_SETTINGS`, the
/// component in its default isolation (workers).
fn production_env(
    stack: &Stack,
    api: &RuntimeApi,
    sql_secret: &str,
    key_secret: &str,
) -> Vec<(String, String)> {
    let mut env = stack.env();
    env.retain(|(k, _)| {
        !matches!(
            k.as_str(),
            "SQLSERVER_CONNECTION_STRING"
                | "NEXT_TOKEN_KEY"
                | "ALLOW_INSECURE_SETTINGS"
                | "LEGACY_ISOLATION"
        )
    });
    env.extend([
        ("SQLSERVER_SECRET_ARN".to_owned(), sql_secret.to_owned()),
        ("NEXT_TOKEN_SECRET_ARN".to_owned(), key_secret.to_owned()),
        // The SDK's standard per-service endpoint override, as for DynamoDB.
        (
            "AWS_ENDPOINT_URL_SECRETS_MANAGER".to_owned(),
            stack.dynamo().endpoint(),
        ),
    ]);
    env.extend(lambda_env(api, "assessments-resolver"));
    env
}

/// Replaces (or adds) one setting.
fn with(mut env: Vec<(String, String)>, name: &str, value: &str) -> Vec<(String, String)> {
    env.retain(|(k, _)| k != name);
    env.push((name.to_owned(), value.to_owned()));
    env
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_lambda_secrets_come_from_secrets_manager_and_insecure_settings_are_refused() {
    async fn page(api: &RuntimeApi) -> Result<InvocationResult, String> {
        api.invoke(
            get_assessments(json!({"studentId": "stu-0001", "limit": 1})),
            Duration::from_secs(20),
        )
        .await
    }
    let stack = Stack::start(&[]).await;
    let (tds, dynamo) = (stack.tds(), stack.dynamo());
    let endpoint = dynamo.endpoint();
    let secret = |name: &str, value: serde_json::Value| {
        testkit::secrets::create_secret(&endpoint, name, &value.to_string())
            .expect("create the secret")
    };
    // The local server's string checks its certificate against its CA, as a
    // production string names the RDS CA bundle.
    let sql = secret(
        "assessments/sqlserver",
        json!({ "connectionString": tds.connection_string() }),
    );
    let unchecked = secret(
        "assessments/sqlserver-unchecked",
        json!({ "connectionString": tds.connection_string_with("Encrypt=true;TrustServerCertificate=true") }),
    );
    let key = secret(
        "assessments/next-token",
        json!({ "nextTokenKey": support::TEST_TOKEN_KEY }),
    );
    // The production path needs no switch.
    let api = RuntimeApi::start().await.expect("runtime API");
    // The local stack's own dependencies logged in already.
    let logins_before = tds.stats().logins_ok;
    let _function = Function::spawn(RESOLVER_BINARY, production_env(&stack, &api, &sql, &key));
    let answer = page(&api).await.expect("invoke");
    assert!(
        matches!(answer, InvocationResult::Response(ref p) if p["items"].as_array().map(Vec::len) == Some(1)),
        "{answer:?}"
    );
    assert_eq!(
        tds.stats().logins_ok - logins_before,
        1,
        "connected with the secret's connection string"
    );

    // Each insecure setting fails init, naming it, unless ALLOW_INSECURE_SETTINGS=true.
    let cases = [
        (
            "NEXT_TOKEN_KEY",
            support::TEST_TOKEN_KEY,
            &key,
            "NEXT_TOKEN_KEY is refused on Lambda: a secret in plaintext in the environment (use NEXT_TOKEN_SECRET_ARN)",
        ),
        (
            "SQLSERVER_SECRET_ARN",
            unchecked.as_str(),
            &sql,
            "SQLSERVER_CONNECTION_STRING is refused on Lambda: TrustServerCertificate=true",
        ),
    ];
    for (name, value, replaced, message) in cases {
        let api = RuntimeApi::start().await.expect("runtime API");
        let mut env = production_env(&stack, &api, &sql, &key);
        if name == "NEXT_TOKEN_KEY" {
            env.retain(|(k, v)| !(k == "NEXT_TOKEN_SECRET_ARN" && v == replaced));
        }
        let env = with(env, name, value);
        let mut refused = Function::spawn(RESOLVER_BINARY, env.clone());
        assert!(!refused.wait(Duration::from_secs(10)).success(), "{name}");
        let failure = init_failure(&api, &refused).expect("reported and logged");
        assert_eq!(failure.error_type, "InitError.Configuration");
        assert!(failure.reason.contains(message), "{name}: {failure:?}");
        assert!(
            failure.reason.contains("ALLOW_INSECURE_SETTINGS=true"),
            "{failure:?}"
        );

        let api = RuntimeApi::start().await.expect("runtime API");
        let mut env = with(env, "ALLOW_INSECURE_SETTINGS", "true");
        env.retain(|(k, _)| k != "AWS_LAMBDA_RUNTIME_API");
        env.push(("AWS_LAMBDA_RUNTIME_API".to_owned(), api.address()));
        let _allowed = Function::spawn(RESOLVER_BINARY, env);
        let answer = page(&api).await.expect("invoke");
        assert!(
            matches!(answer, InvocationResult::Response(_)),
            "{name}: {answer:?}"
        );
    }
}

/// What Lambda is told of an init failure goes back to whoever invokes the
/// function: no secret's ARN, no account id; the log has them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_init_failure_posts_no_arn_or_account_id_to_lambda() {
    let stack = Stack::start(&[]).await;
    let api = RuntimeApi::start().await.expect("runtime API");
    let missing = "arn:aws:secretsmanager:us-east-1:123456789012:secret:assessments/gone-AbCdEf";
    let mut function = Function::spawn(
        RESOLVER_BINARY,
        production_env(&stack, &api, missing, missing),
    );
    assert!(!function.wait(Duration::from_secs(20)).success());
    let failure = init_failure(&api, &function).expect("reported and logged");
    assert_eq!(failure.error_type, "InitError.Secret");
    assert!(
        failure.reason.contains(missing),
        "the log has it: {failure:?}"
    );
    for secret in ["arn:", "123456789012", "assessments/gone"] {
        assert!(
            !failure.posted.contains(secret),
            "{secret} posted: {failure:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_invocation_reports_its_own_worker_crashes_and_the_logs_keep_the_totals() {
    let stack = Stack::start(&[]).await;
    let api = RuntimeApi::start().await.expect("runtime API");
    let mut env = stack.env();
    env.retain(|(k, _)| !matches!(k.as_str(), "LEGACY_ISOLATION" | "LEGACY_CONFIG"));
    env.extend([
        ("METRICS_EMF".to_owned(), "true".to_owned()),
        ("LEGACY_MAX_CONCURRENCY".to_owned(), "1".to_owned()),
        // The worker's fifth call kills it (SIGSEGV).
        (
            "LEGACY_CONFIG".to_owned(),
            "crash=segv;crash_every=5".to_owned(),
        ),
    ]);
    env.extend(lambda_env(&api, "assessments-resolver"));
    let mut function = Function::spawn(RESOLVER_BINARY, env);
    let mut outcomes = Vec::new();
    for _ in 0..7 {
        let result = api
            .invoke(
                get_assessments(json!({"studentId": "stu-0001", "limit": 1})),
                Duration::from_secs(20),
            )
            .await
            .expect("invoke");
        outcomes.push(match result {
            InvocationResult::Response(_) => "ok".to_owned(),
            InvocationResult::Error(e) => e["errorType"].as_str().unwrap_or("?").to_owned(),
        });
    }
    assert_eq!(outcomes[4], "LegacyComponentError", "{outcomes:?}");
    let (output, emf) = function.terminate();
    assert_eq!(emf.len(), 7, "{output:#?}");
    let crashes: Vec<u64> = emf
        .iter()
        .map(|doc| doc["LegacyWorkerCrashes"].as_u64().unwrap_or(u64::MAX))
        .collect();
    assert_eq!(
        crashes,
        [0, 0, 0, 0, 1, 0, 0],
        "the crash in invocation 5 only"
    );
    // Started: the first worker in invocation 1, its replacement once (in the
    // background after invocation 5 answered, so reported by 5 or 6).
    assert_eq!(
        testkit::function::emf_sum(&emf, "LegacyWorkersStarted"),
        2,
        "{emf:#?}"
    );
    // The running totals are in the log lines, not in the metrics.
    let last_log = output
        .iter()
        .rev()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .find(|line| line["message"] == "invocation")
        .expect("an invocation log line");
    assert_eq!(last_log["legacy_worker_crashes_total"], 1, "{last_log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sampled_invocation_sends_each_dependency_call_as_an_x_ray_subsegment() {
    let stack = Stack::start(&[]).await;
    let daemon = testkit::xray::XrayDaemon::start().expect("X-Ray daemon stand-in");
    let api = RuntimeApi::start().await.expect("runtime API");
    let mut env = stack.env();
    env.push(daemon.env_var());
    env.extend(lambda_env(&api, "assessments-resolver"));
    let table = env
        .iter()
        .find(|(k, _)| k == "STUDENTS_TABLE")
        .map(|(_, v)| v.clone())
        .expect("STUDENTS_TABLE");
    let mut function = Function::spawn(RESOLVER_BINARY, env);
    let timeout = Duration::from_secs(20);
    // Lambda's segment for the invocation: the parent of ours.
    let lambda_segment = "53995c3f42cd8ad8";
    let header = |root: &str| format!("Root={root};Parent={lambda_segment};Sampled=1");

    let root = "1-6756a1c0-0123456789abcdef01234567";
    let answer = api
        .invoke_traced(
            get_assessments(json!({"studentId": "stu-0001", "limit": 3})),
            &header(root),
            timeout,
        )
        .await
        .expect("invoke");
    assert!(
        matches!(answer, InvocationResult::Response(_)),
        "{answer:?}"
    );
    let documents = daemon.wait_for_trace(root, Duration::from_secs(5), |d| d.len() >= 4);
    let named = |name: &str| {
        documents
            .iter()
            .find(|d| d["name"] == name)
            .unwrap_or_else(|| panic!("no {name} subsegment in {documents:#?}"))
    };
    let dynamodb = named("DynamoDB");
    assert_eq!(dynamodb["namespace"], "aws");
    assert_eq!(
        dynamodb["aws"],
        json!({"operation": "GetItem", "table_name": table})
    );
    let sql = named("SQL Server");
    assert_eq!(sql["namespace"], "remote");
    let connection = named("SQL Server connection");
    let legacy = named("legacy component");
    assert_eq!(legacy["metadata"]["default"]["rows"], 3);
    for document in [dynamodb, sql, legacy] {
        assert_eq!(document["parent_id"], lambda_segment, "{document}");
    }
    assert_eq!(
        connection["parent_id"], sql["id"],
        "the checkout is part of the page read"
    );
    for document in &documents {
        assert_eq!(document["type"], "subsegment");
        assert!(document.get("fault").is_none(), "{document}");
        let (start, end) = (&document["start_time"], &document["end_time"]);
        assert!(start.as_f64() <= end.as_f64(), "{document}");
    }
    // The profile and the page are read at once (this caller may read any
    // student); the legacy call comes after both.
    let time = |d: &Value, field: &str| d[field].as_f64().unwrap_or(f64::NAN);
    assert!(time(legacy, "start_time") >= time(dynamodb, "end_time"));
    assert!(time(legacy, "start_time") >= time(sql, "end_time"));

    // Not sampled: nothing is sent.
    let answer = api
        .invoke(get_assessments(json!({"studentId": "stu-0001"})), timeout)
        .await
        .expect("invoke");
    assert!(matches!(answer, InvocationResult::Response(_)));

    // A failing dependency: its subsegment is a fault, with the cause.
    stack.tds().faults().set_rates(0.0, 1.0, 7);
    let failing = "1-6756a1c0-fedcba9876543210fedcba98";
    let answer = api
        .invoke_traced(
            get_assessments(json!({"studentId": "stu-0001"})),
            &header(failing),
            timeout,
        )
        .await
        .expect("invoke");
    assert!(matches!(answer, InvocationResult::Error(_)), "{answer:?}");
    let documents = daemon.wait_for_trace(failing, Duration::from_secs(5), |d| d.len() >= 3);
    let sql = documents
        .iter()
        .find(|d| d["name"] == "SQL Server")
        .unwrap_or_else(|| panic!("no SQL subsegment in {documents:#?}"));
    assert_eq!(sql["fault"], true, "{sql}");
    assert!(
        sql["cause"]["exceptions"][0]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{sql}"
    );
    assert!(
        documents.iter().all(|d| d["name"] != "legacy component"),
        "no legacy call after the page failed: {documents:#?}"
    );
    function.terminate();
    let all = daemon.documents();
    assert!(
        all.iter()
            .all(|d| d["trace_id"] == root || d["trace_id"] == failing),
        "only the sampled invocations are traced: {all:#?}"
    );
    assert!(daemon.malformed().is_empty(), "{:?}", daemon.malformed());
}
