//! The built binary (`assessment-processor`), run as a process against a
//! local Lambda Runtime API: real SQS events, partial batch responses, EMF
//! lines on stdout, and graceful shutdown on SIGTERM.

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use testkit::function::{Function, init_failure, lambda_env};
use testkit::lambda_api::{InvocationResult, RuntimeApi};

use support::{PROCESSOR_BINARY, ProcessorStack};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_processor_binary_answers_an_sqs_event_with_its_failed_records() {
    let stack = ProcessorStack::start(&[]).await;
    let api = RuntimeApi::start().await.expect("runtime API");
    let mut env = stack.env();
    env.retain(|(k, _)| k != "METRICS_EMF");
    env.push(("METRICS_EMF".to_owned(), "true".to_owned()));
    env.extend(lambda_env(&api, "assessment-processor"));
    let mut function = Function::spawn(PROCESSOR_BINARY, env);
    let event: Value = serde_json::from_str(testkit::sqs::SAMPLE_EVENT).expect("sample event");
    let timeout = Duration::from_secs(20);

    let InvocationResult::Response(answer) =
        api.invoke(event.clone(), timeout).await.expect("invoke")
    else {
        panic!("the processor answers every SQS event")
    };
    // Record 7 has an unknown type, record 8 raw data the API refuses (422):
    // neither can ever succeed, so both went to the dead-letter queue and
    // none is handed back for redelivery.
    assert_eq!(answer, json!({"batchItemFailures": []}));
    let queue = stack
        .env()
        .into_iter()
        .find(|(k, _)| k == "DEAD_LETTER_QUEUE_URL")
        .map(|(_, v)| v)
        .expect("the local dead-letter queue");
    let letters = testkit::queues::drain(&stack.dynamo().endpoint(), &queue)
        .await
        .expect("drain");
    let mut kinds: Vec<(String, String)> = letters
        .iter()
        .map(|l| {
            (
                l["attributes"]["SourceMessageId"]
                    .as_str()
                    .unwrap_or("")
                    .to_owned(),
                l["attributes"]["FailureKind"]
                    .as_str()
                    .unwrap_or("")
                    .to_owned(),
            )
        })
        .collect();
    kinds.sort();
    assert_eq!(
        kinds,
        [
            (
                "00000000-0000-4000-8000-000000000007".to_owned(),
                "InvalidMessage".to_owned()
            ),
            (
                "00000000-0000-4000-8000-000000000008".to_owned(),
                "ScoringRejected".to_owned()
            ),
        ]
    );
    // The same event again (as if delivered twice): nothing scored twice.
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
            emf[0]["Failed"].clone(),
            emf[0]["PoisonRecords"].clone()
        ),
        (json!(8), json!(6), json!(0), json!(2))
    );
    assert_eq!(
        (emf[1]["Scored"].clone(), emf[1]["AlreadyScored"].clone()),
        (json!(0), json!(6))
    );
    let logs = output.join("\n");
    assert!(logs.contains("\"kind\":\"ScoringRejected\""), "{logs}");
    assert!(
        !logs.contains(testkit::services::LOCAL_SCORING_KEY),
        "the API key is never logged"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_init_failure_is_reported_to_lambda_with_its_error_type() {
    // (scoring URL, the key's setting, the message Lambda is told)
    let cases = [
        (
            "http://scoring.example.com",
            (
                "SCORING_API_KEY_SECRET_ARN",
                "arn:aws:secretsmanager:us-east-1:1:secret:k",
            ),
            "configuration: SCORING_API_URL is invalid: must be https (http only for a loopback stand-in)",
        ),
        // On Lambda, without ALLOW_INSECURE_SETTINGS: not even a loopback stand-in,
        // and never the key itself in the environment.
        (
            "http://127.0.0.1:9",
            (
                "SCORING_API_KEY_SECRET_ARN",
                "arn:aws:secretsmanager:us-east-1:1:secret:k",
            ),
            "configuration: SCORING_API_URL is refused on Lambda: an http:// URL (the API key and the students' records would cross in the clear) (ALLOW_INSECURE_SETTINGS=true allows it, for a test or demo stack only)",
        ),
        (
            "https://scoring.example.com",
            ("SCORING_API_KEY", "k"),
            "configuration: SCORING_API_KEY is refused on Lambda: a secret in plaintext in the environment (use SCORING_API_KEY_SECRET_ARN) (ALLOW_INSECURE_SETTINGS=true allows it, for a test or demo stack only)",
        ),
    ];
    for (url, (key_name, key), message) in cases {
        let api = RuntimeApi::start().await.expect("runtime API");
        let mut env = lambda_env(&api, "assessment-processor");
        env.push(("ASSESSMENTS_TABLE".to_owned(), "Assessments".to_owned()));
        env.push(("SCORING_API_URL".to_owned(), url.to_owned()));
        env.push((key_name.to_owned(), key.to_owned()));
        let mut function = Function::spawn(PROCESSOR_BINARY, env);
        let status = function.wait(Duration::from_secs(10));
        assert!(!status.success());
        let failure = init_failure(&api, &function).expect("reported and logged");
        assert_eq!(failure.error_type, "InitError.Configuration");
        assert_eq!(failure.reason, message);
        assert!(!failure.posted.contains("arn:"), "{failure:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sampled_batch_sends_its_dynamodb_scoring_and_dead_letter_calls_as_subsegments() {
    let stack = ProcessorStack::start(&[]).await;
    let daemon = testkit::xray::XrayDaemon::start().expect("X-Ray daemon stand-in");
    let api = RuntimeApi::start().await.expect("runtime API");
    let mut env = stack.env();
    env.push(daemon.env_var());
    env.extend(lambda_env(&api, "assessment-processor"));
    let mut function = Function::spawn(PROCESSOR_BINARY, env);
    let event: Value = serde_json::from_str(testkit::sqs::SAMPLE_EVENT).expect("sample event");
    let root = "1-6756a1c0-00112233445566778899aabb";
    let lambda_segment = "1f2e3d4c5b6a7988";
    let answer = api
        .invoke_traced(
            event,
            &format!("Root={root};Parent={lambda_segment};Sampled=1"),
            Duration::from_secs(20),
        )
        .await
        .expect("invoke");
    assert!(
        matches!(answer, InvocationResult::Response(_)),
        "{answer:?}"
    );
    // Seven records reach the scoring API (one of them refused with 422),
    // six are written, one invalid and one refused go to the dead-letter queue.
    // Besides the history reads: wait for every one of these, whatever the order they arrive in.
    let count = |documents: &[Value], name: &str, operation: Option<&str>| {
        documents
            .iter()
            .filter(|d| d["name"] == name)
            .filter(|d| operation.is_none_or(|op| d["aws"]["operation"] == op))
            .count()
    };
    let documents = daemon.wait_for_trace(root, Duration::from_secs(5), |d| {
        count(d, "scoring API", None) >= 7
            && count(d, "DynamoDB", Some("PutItem")) >= 6
            && count(d, "SQS", Some("SendMessage")) >= 2
    });
    let scoring: Vec<&Value> = documents
        .iter()
        .filter(|d| d["name"] == "scoring API")
        .collect();
    let mut statuses: Vec<u64> = scoring
        .iter()
        .filter_map(|d| d["http"]["response"]["status"].as_u64())
        .collect();
    statuses.sort_unstable();
    assert_eq!(
        statuses,
        [200, 200, 200, 200, 200, 200, 422],
        "{documents:#?}"
    );
    for call in &scoring {
        assert_eq!(call["namespace"], "remote");
        assert!(
            call["http"]["request"]["url"]
                .as_str()
                .is_some_and(|u| u.ends_with("/score")),
            "{call}"
        );
        let refused = call["http"]["response"]["status"] == 422;
        assert_eq!(
            call.get("error").is_some(),
            refused,
            "a 4xx is an error: {call}"
        );
    }
    let operations = |name: &str| {
        documents
            .iter()
            .filter(|d| d["name"] == name)
            .filter_map(|d| d["aws"]["operation"].as_str())
            .filter(|op| *op == "PutItem" || *op == "SendMessage")
            .count()
    };
    assert_eq!(operations("DynamoDB"), 6, "{documents:#?}");
    assert_eq!(operations("SQS"), 2, "{documents:#?}");
    assert!(
        documents
            .iter()
            .all(|d| d["parent_id"] == lambda_segment && d.get("fault").is_none()),
        "{documents:#?}"
    );
    function.terminate();
}
