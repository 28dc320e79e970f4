//! The playground over HTTP: GraphQL requests parsed and validated against
//! schema.graphql, resolved through the Lambda handler, answered like AppSync.

mod support;

use devstack::stack::StackOptions;
use serde_json::{Value, json};
use support::start;

const PAGE: &str = "query Page($id: ID!, $limit: Int) {
  getAssessments(studentId: $id, limit: $limit) {
    __typename
    items { id studentId assessmentType administeredAt scaledScore percentile benchmarkBand wordsCorrectPerMinute flags studentGrade readingLevel }
    nextToken
  }
}";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_variables_aliases_and_fragments_resolve_through_the_handler() {
    let playground = start(StackOptions::default(), 10).await;

    let body = playground
        .graphql(json!({"query": PAGE, "variables": {"id": "stu-0001", "limit": 3}}))
        .await;
    assert!(body.get("errors").is_none(), "{body}");
    let page = &body["data"]["getAssessments"];
    assert_eq!(page["__typename"], "AssessmentPage");
    let items = page["items"].as_array().expect("items");
    assert_eq!(items.len(), 3);
    assert!(
        items
            .iter()
            .all(|i| i["studentId"] == "stu-0001" && i["studentGrade"] == 3)
    );
    assert!(page["nextToken"].is_string());
    let keys: Vec<&String> = items[0].as_object().expect("object").keys().collect();
    assert_eq!(keys.len(), 11, "only the selected fields: {keys:?}");

    // The next page through the variable, with the token the first page gave.
    let next = playground
        .graphql(json!({"query": "query($t: String) { getAssessments(studentId: \"stu-0001\", limit: 3, nextToken: $t) { items { id } } }",
                        "variables": {"t": page["nextToken"]}}))
        .await;
    let next_ids: Vec<&Value> = next["data"]["getAssessments"]["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| &i["id"])
        .collect();
    assert!(!next_ids.contains(&&items[0]["id"]));

    // Two aliased root fields and a fragment: one batched invocation.
    let before = playground.stats().await["invocations"]
        .as_u64()
        .unwrap_or(0);
    let body = playground
        .graphql(json!({"query": "fragment F on AssessmentPage { items { id assessmentType } }
            query { first: getAssessments(studentId: \"stu-0003\", limit: 1) { ...F }
                    second: getAssessments(studentId: \"stu-0004\", limit: 2, assessmentType: READING_COMPREHENSION) { ...F nextToken } }"}))
        .await;
    assert!(body.get("errors").is_none(), "{body}");
    assert!(
        body["data"]["first"]["items"]
            .as_array()
            .is_some_and(|i| i.len() <= 1)
    );
    assert!(
        body["data"]["second"]["items"]
            .as_array()
            .expect("items")
            .iter()
            .all(|i| i["assessmentType"] == "READING_COMPREHENSION")
    );
    assert!(body["data"]["second"].get("nextToken").is_some());
    assert!(
        body["data"]["first"].get("nextToken").is_none(),
        "not selected, not returned"
    );
    assert_eq!(
        playground.stats().await["invocations"]
            .as_u64()
            .unwrap_or(0),
        before + 1,
        "batched into one invocation"
    );
    assert!(
        playground.stats().await["lastTrace"].is_null(),
        "tracing is off unless asked for"
    );
    playground.assert_clean().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_tracing_a_request_s_spans_and_timings_are_shown() {
    let playground = support::start_traced(StackOptions::default(), 10).await;
    let body = playground
        .graphql(json!({"query": PAGE, "variables": {"id": "stu-0001", "limit": 5}}))
        .await;
    assert!(body.get("errors").is_none(), "{body}");

    // The spans arrive over UDP just after the answer.
    let playground = &playground;
    testkit::wait_for("the invocation's spans at the X-Ray stand-in", || async {
        let stats = playground.stats().await;
        stats["lastTrace"]["spans"].as_array().map(Vec::len) >= Some(5)
    })
    .await;
    let stats = playground.stats().await;
    let trace = &stats["lastTrace"];
    assert_eq!(
        trace["traceId"], stats["lastInvocation"]["traceId"],
        "{stats}"
    );
    let spans = trace["spans"].as_array().expect("spans");
    let mut shape: Vec<(&str, u64)> = spans
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap_or("?"),
                s["depth"].as_u64().unwrap_or(99),
            )
        })
        .collect();
    // The profile and the page are read at once: their order may vary.
    shape[1..3].sort();
    assert_eq!(
        shape,
        [
            ("assessments-resolver (playground)", 0),
            ("DynamoDB", 1),
            ("SQL Server", 1),
            ("SQL Server connection", 2),
            ("legacy component", 1),
        ],
        "{trace:#}"
    );
    let whole = spans[0]["durationMs"].as_f64().expect("duration");
    for span in spans {
        let (start, duration) = (span["startMs"].as_f64(), span["durationMs"].as_f64());
        let (Some(start), Some(duration)) = (start, duration) else {
            panic!("timed spans: {span}")
        };
        assert!(
            start >= 0.0 && start + duration <= whole + 0.01,
            "{trace:#}"
        );
        assert_eq!(span["fault"], false, "{span}");
    }
    let dynamodb = spans
        .iter()
        .find(|s| s["name"] == "DynamoDB")
        .expect("DynamoDB");
    assert_eq!(dynamodb["detail"], "GetItem");
    playground.assert_clean().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_documents_get_graphql_errors_without_invoking_anything() {
    let playground = start(StackOptions::default(), 10).await;
    for (request, fragment) in [
        (
            json!({"query": "{ getAssessments(studentId: \"stu-0001\") { items { nope } } }"}),
            "nope",
        ),
        (json!({"query": "{ getStudents { id } }"}), "getStudents"),
        (
            json!({"query": "{ getAssessments { nextToken } }"}),
            "studentId",
        ),
        (
            json!({"query": PAGE, "variables": {"id": "stu-0001", "limit": "ten"}}),
            "limit",
        ),
        (json!({"query": PAGE, "variables": {}}), "id"),
        (
            json!({"query": "{ getAssessments(studentId: \"s\", assessmentType: SPELLING) { nextToken } }"}),
            "SPELLING",
        ),
        (json!({"query": "query {"}), "expected"),
    ] {
        let body = playground.graphql(request.clone()).await;
        assert_eq!(body["data"], Value::Null, "{request}: {body}");
        let messages: Vec<&str> = body["errors"]
            .as_array()
            .expect("errors")
            .iter()
            .filter_map(|e| e["message"].as_str())
            .collect();
        assert!(
            messages.iter().any(|m| m.contains(fragment)),
            "{request}: {messages:?}"
        );
    }
    let body = playground
        .graphql(json!({"query": "{ getStudents { id } }"}))
        .await;
    assert_eq!(
        body["errors"][0]["locations"][0],
        json!({"line": 1, "column": 3})
    );
    assert_eq!(
        playground.stats().await["invocations"],
        0,
        "nothing reached the resolver"
    );
}

/// The error of a query whose one root field fails: that field is null
/// (the root field is nullable), the error beside it.
async fn error_of(playground: &support::Playground, query: &str) -> Value {
    let body = playground.graphql(json!({"query": query})).await;
    let fields = body["data"].as_object().expect("data is an object");
    assert!(
        fields.len() == 1 && fields.values().all(Value::is_null),
        "the failed field is null: {body}"
    );
    body["errors"][0].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_failed_field_leaves_the_others_their_data() {
    let playground = start(StackOptions::default(), 10).await;
    let query = "{ a: getAssessments(studentId: \"stu-0001\", limit: 2) { items { id } }
                   b: getAssessments(studentId: \"stu-9999\") { items { id } } }";
    let body = playground.graphql(json!({ "query": query })).await;
    assert_eq!(
        body["data"]["a"]["items"].as_array().map(Vec::len),
        Some(2),
        "{body}"
    );
    assert_eq!(body["data"]["b"], Value::Null, "{body}");
    let errors = body["errors"].as_array().expect("errors");
    assert_eq!(errors.len(), 1, "{body}");
    assert_eq!(errors[0]["path"], json!(["b"]));
    assert_eq!(errors[0]["errorType"], "NotFound");

    // As a teacher of school A: stu-0002 (school B) and stu-9999 (no such
    // student) are refused alike, stu-0001 (school A) answered.
    let query = "{ a: getAssessments(studentId: \"stu-0001\", limit: 1) { items { id } }
                   b: getAssessments(studentId: \"stu-0002\") { items { id } }
                   c: getAssessments(studentId: \"stu-9999\") { items { id } } }";
    let body = playground
        .graphql_as(Some("teacher-a"), json!({ "query": query }))
        .await;
    assert_eq!(
        body["data"]["a"]["items"].as_array().map(Vec::len),
        Some(1),
        "{body}"
    );
    assert_eq!(body["data"]["b"], Value::Null);
    assert_eq!(body["data"]["c"], Value::Null);
    let errors = body["errors"].as_array().expect("errors");
    assert_eq!(errors.len(), 2, "{body}");
    for error in errors {
        assert_eq!(error["errorType"], "Unauthorized", "{body}");
        assert_eq!(
            error["message"],
            "studentId: not authorized to read the assessments of this studentId"
        );
    }
    // Teacher B reads stu-0002; an admin reads both schools.
    for (who, student) in [
        ("teacher-b", "stu-0002"),
        ("admin", "stu-0001"),
        ("admin", "stu-0002"),
    ] {
        let query = format!("{{ getAssessments(studentId: \"{student}\") {{ nextToken }} }}");
        let body = playground
            .graphql_as(Some(who), json!({ "query": query }))
            .await;
        assert!(body.get("errors").is_none(), "{who} {student}: {body}");
    }
    // An identity in JSON, as AppSync would send it; an unknown persona is refused.
    let lambda = json!({"resolverContext": {"schoolId": "sch-002"}}).to_string();
    let body = playground
        .graphql_as(
            Some(&lambda),
            json!({"query": "{ getAssessments(studentId: \"stu-0004\") { nextToken } }"}),
        )
        .await;
    assert!(body.get("errors").is_none(), "{body}");
    let body = playground
        .graphql_as(Some("principal"), json!({"query": "{ __typename }"}))
        .await;
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("admin, teacher-a, teacher-b, api-key")),
        "{body}"
    );
    playground.assert_clean().await;
}

/// The query GraphiQL sends to load a schema (abridged to what it reads).
const INTROSPECTION: &str = "query IntrospectionQuery {
  __schema {
    queryType { name }
    types { kind name description
      fields(includeDeprecated: true) { name args { name type { kind name ofType { kind name ofType { kind name } } } } type { kind name ofType { kind name } } }
      inputFields { name type { kind name } }
      enumValues(includeDeprecated: true) { name } }
    directives { name locations }
  }
}";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn introspection_serves_the_schema_without_invoking_the_resolver() {
    let playground = start(StackOptions::default(), 10).await;
    let body = playground.graphql(json!({ "query": INTROSPECTION })).await;
    assert!(body.get("errors").is_none(), "{body}");
    let schema = &body["data"]["__schema"];
    assert_eq!(schema["queryType"]["name"], "Query");
    let types = schema["types"].as_array().expect("types");
    let named = |name: &str| types.iter().find(|t| t["name"] == name).cloned();
    let query = named("Query").expect("Query");
    let field = &query["fields"][0];
    assert_eq!(field["name"], "getAssessments");
    assert_eq!(
        field["type"],
        json!({"kind": "OBJECT", "name": "AssessmentPage", "ofType": null})
    );
    let args: Vec<&str> = field["args"]
        .as_array()
        .expect("args")
        .iter()
        .filter_map(|a| a["name"].as_str())
        .collect();
    assert_eq!(
        args,
        [
            "studentId",
            "assessmentType",
            "dateRange",
            "limit",
            "nextToken"
        ]
    );
    let kinds = named("AssessmentType").expect("enum")["enumValues"].clone();
    let kinds: Vec<&str> = kinds
        .as_array()
        .expect("values")
        .iter()
        .filter_map(|v| v["name"].as_str())
        .collect();
    assert_eq!(
        kinds,
        [
            "ORAL_READING_FLUENCY",
            "READING_COMPREHENSION",
            "PHONOLOGICAL_AWARENESS"
        ]
    );
    for scalar in ["AWSDate", "AWSDateTime"] {
        assert_eq!(named(scalar).expect(scalar)["kind"], "SCALAR");
    }

    // __type, and introspection beside a concrete field.
    let body = playground
        .graphql(json!({"query": "{ __type(name: \"DateRangeInput\") { kind inputFields { name } }
                                    page: getAssessments(studentId: \"stu-0002\") { nextToken } }"}))
        .await;
    assert!(body.get("errors").is_none(), "{body}");
    assert_eq!(body["data"]["__type"]["kind"], "INPUT_OBJECT");
    assert_eq!(
        body["data"]["__type"]["inputFields"]
            .as_array()
            .map(Vec::len),
        Some(2)
    );
    assert_eq!(body["data"]["page"], json!({"nextToken": null}));
    assert_eq!(
        playground.stats().await["invocations"],
        1,
        "only the concrete field invoked"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resolver_errors_come_back_as_appsync_shows_them() {
    let playground = start(
        StackOptions {
            overrides: vec![("SQL_QUERY_TIMEOUT_MS".into(), "300".into())],
            ..StackOptions::default()
        },
        1,
    )
    .await;
    let error = error_of(
        &playground,
        "{ page: getAssessments(studentId: \"stu-0001\", limit: 0) { nextToken } }",
    )
    .await;
    assert_eq!(error["errorType"], "ValidationError");
    assert_eq!(error["path"], json!(["page"]));
    assert_eq!(error["locations"][0]["line"], 1);
    assert!(
        error["message"]
            .as_str()
            .unwrap_or_default()
            .starts_with("limit:")
    );
    assert_eq!(
        error_of(
            &playground,
            "{ getAssessments(studentId: \"stu-9999\") { nextToken } }"
        )
        .await["errorType"],
        "NotFound"
    );
    let tds = playground.app.stack.tds().expect("local TDS server");
    tds.faults().error_next_queries(1);
    assert_eq!(
        error_of(
            &playground,
            "{ getAssessments(studentId: \"stu-0001\") { nextToken } }"
        )
        .await["errorType"],
        "DependencyUnavailable"
    );
    tds.faults()
        .set_stall_queries(std::time::Duration::from_secs(2));
    assert_eq!(
        error_of(
            &playground,
            "{ getAssessments(studentId: \"stu-0001\") { nextToken } }"
        )
        .await["errorType"],
        "DependencyTimeout"
    );
    tds.faults().set_stall_queries(std::time::Duration::ZERO);
    playground.assert_clean().await;

    let broken = start(
        StackOptions {
            legacy_config: Some("fail_every=1".into()),
            ..StackOptions::default()
        },
        1,
    )
    .await;
    let error = error_of(
        &broken,
        "{ getAssessments(studentId: \"stu-0001\") { nextToken } }",
    )
    .await;
    assert_eq!(error["errorType"], "LegacyComponentError");
    broken.assert_clean().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_page_and_the_schema_are_served_offline() {
    let playground = start(StackOptions::default(), 10).await;
    let (status, page) = playground.get("/basic").await;
    assert_eq!(status, 200);
    assert!(
        page.contains("getAssessments(studentId: ID!"),
        "the schema's fields are listed"
    );
    assert!(
        !page.contains("http://") && !page.contains("https://"),
        "no CDN or remote asset"
    );
    // GraphiQL's page: every script and style from /assets, served here.
    if devstack::console::installed() {
        let (status, page) = playground.get("/").await;
        assert_eq!(status, 200);
        assert!(
            !page.contains("http://") && !page.contains("https://"),
            "no CDN or remote asset"
        );
        assert!(page.contains("\"name\":\"teacher-a\""), "the personas");
        for (name, _, _) in devstack::console::ASSETS {
            assert!(page.contains(&format!("/assets/{name}")), "{name}");
            let (status, body) = playground.get(&format!("/assets/{name}")).await;
            assert_eq!(status, 200, "{name}");
            assert!(body.len() > 1000, "{name}");
        }
        assert_eq!(playground.get("/assets/../Cargo.toml").await.0, 404);
    }
    let (status, schema) = playground.get("/schema.graphql").await;
    assert_eq!((status, schema.as_str()), (200, devstack::SCHEMA_SDL));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_on_another_site_cannot_drive_the_playground() {
    let playground = start(StackOptions::default(), 10).await;
    let query =
        json!({"query": "{ getAssessments(studentId: \"stu-0001\", limit: 1) { items { id } } }"})
            .to_string();
    let own = playground.url.clone();
    let host = own.trim_start_matches("http://").to_owned();
    let before = playground.stats().await["invocations"].as_u64();
    for headers in [
        // A cross-site POST from a browser carries the page's Origin.
        vec![("origin", "https://evil.example")],
        vec![("origin", "null")],
        vec![("origin", "http://localhost:1")],
        // DNS rebinding: another name for 127.0.0.1, with its own Origin.
        vec![("host", "evil.example"), ("origin", "http://evil.example")],
    ] {
        for path in ["/graphql", "/sqs"] {
            let (status, text) = playground.post_with(path, &headers, query.clone()).await;
            assert_eq!(status, 403, "{path} {headers:?}: {text}");
        }
    }
    assert_eq!(playground.stats().await["invocations"].as_u64(), before);
    // The console's own requests, and clients that send no Origin (curl, scripts).
    for headers in [
        vec![("origin", own.as_str())],
        vec![],
        vec![("host", host.as_str())],
    ] {
        let (status, text) = playground
            .post_with("/graphql", &headers, query.clone())
            .await;
        assert_eq!(status, 200, "{headers:?}: {text}");
        assert!(text.contains("\"items\""), "{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sqs_event_posted_to_the_playground_goes_through_the_processor() {
    let playground = start(StackOptions::default(), 10).await;
    let (status, text) = playground
        .post("/sqs", testkit::sqs::SAMPLE_EVENT.to_owned())
        .await;
    assert_eq!(status, 200, "{text}");
    let answer: Value = serde_json::from_str(&text).expect("JSON");
    let failures: Vec<&str> = answer["batchItemFailures"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|f| f["itemIdentifier"].as_str())
        .collect();
    // Records 7 and 8 can never succeed: dead-lettered, not handed back.
    assert!(failures.is_empty(), "{answer}");
    let records = answer["records"].as_array().expect("records");
    assert_eq!(records.len(), 8);
    assert_eq!(records[0]["result"]["outcome"], "scored");
    assert_eq!(records[6]["result"]["kind"], "InvalidMessage");
    assert_eq!(records[6]["deadLettered"], true);
    assert_eq!(records[7]["deadLettered"], true);
    assert_eq!(records[0]["deadLettered"], false);
    // stu-0003's history links to stu-0004 and back: both partitions, once each.
    let demo = testkit::fixtures::Fixtures::demo();
    let linked = demo.assessments_of("stu-0003").count() + demo.assessments_of("stu-0004").count();
    assert_eq!(records[1]["historyItems"], linked);

    let stats = playground.stats().await;
    assert_eq!(stats["processor"]["records"], 8, "{stats}");
    assert_eq!(stats["processor"]["failedRecords"], 0, "{stats}");
    assert_eq!(stats["processor"]["deadLetteredRecords"], 2, "{stats}");
    assert_eq!(stats["scoringStandIn"]["requests"], 7, "{stats}");

    let (status, text) = playground.post("/sqs", "{\"Records\": 3}".to_owned()).await;
    assert_eq!(status, 400);
    assert!(text.contains("not an SQS event"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_playground_runs_the_dotnet_component_and_shows_its_counters() {
    let assembly = legacy_shim::DOTNET_ASSEMBLY_PATH;
    if assembly.is_empty() {
        assert!(
            std::env::var_os("LEGACY_DOTNET_REQUIRED").is_none(),
            "LEGACY_DOTNET_REQUIRED is set but the .NET component was not built"
        );
        return;
    }
    // What `cargo run --bin playground -- --dotnet` runs: the assembly in worker processes.
    let playground = start(
        StackOptions {
            legacy_lib_path: Some(assembly.to_owned()),
            ..StackOptions::default()
        },
        10,
    )
    .await;
    let body = playground
        .graphql(json!({"query": PAGE, "variables": {"id": "stu-0001", "limit": 3}}))
        .await;
    assert!(body.get("errors").is_none(), "{body}");
    assert_eq!(
        body["data"]["getAssessments"]["items"]
            .as_array()
            .map(Vec::len),
        Some(3)
    );
    let stats = playground.stats().await;
    assert_eq!(stats["native"]["liveResultHandles"], 0, "{stats}");
    assert_eq!(stats["native"]["violations"], 0, "{stats}");
    assert!(stats["native"]["scoreCalls"].as_u64() >= Some(1), "{stats}");
    assert!(stats["isolation"]["workers"].as_u64() >= Some(1), "{stats}");
    // A worker hosting the CLR: tens of MB (the C++ mock's are ~4 MB).
    assert!(
        stats["idleWorkersRssKiB"].as_u64() > Some(10_000),
        "{stats}"
    );
    println!("playground with the .NET component: {stats}");
    playground.assert_clean().await;
}
