//! The assessment processor end to end: SQS events through the handler,
//! DynamoDB through moto's server (behind the counting proxy), the scoring
//! API through the stand-in.

mod support;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use assessment_processor::assessments::HistoryLimits;
use assessment_processor::message::AssessmentMessage;
use assessment_processor::sqs::{Handled, handle_with_report};
use assessment_processor::{ProcessError, RecordOutcome};
use assessments_common::budget::Budget;
use aws_lambda_events::sqs::SqsEvent;
use aws_sdk_dynamodb::types::AttributeValue;
use serde_json::Value;
use testkit::dynamo::{history_item, put_items};
use testkit::sqs::{assessment_body, event};

use support::ProcessorStack;

fn sqs_event(records: Vec<(String, String)>) -> SqsEvent {
    serde_json::from_value(event(records)).expect("an SQS event")
}

async fn deliver(stack: &ProcessorStack, event: SqsEvent) -> Handled {
    let deadline = Budget::after(Duration::from_secs(60));
    handle_with_report(stack.processor(), event, "test-request", deadline).await
}

fn failed_ids(handled: &Handled) -> Vec<String> {
    handled
        .response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.clone())
        .collect()
}

/// The item the processor wrote, as JSON.
async fn written(stack: &ProcessorStack, student_id: &str, assessment_id: &str) -> Option<Value> {
    let dynamo = stack.dynamo();
    let item = dynamo
        .client()
        .get_item()
        .table_name(dynamo.assessments_table())
        .key("studentId", AttributeValue::S(student_id.to_owned()))
        .key("assessmentId", AttributeValue::S(assessment_id.to_owned()))
        .consistent_read(true)
        .send()
        .await
        .expect("get item")
        .item?;
    Some(serde_dynamo::from_item(item).expect("item as JSON"))
}

/// `n` history items for each student, `links[i]` on the first item of student `i`.
async fn seed_history(
    stack: &ProcessorStack,
    students: &[String],
    per_student: usize,
    links: &[Option<String>],
) {
    let mut items = Vec::new();
    for (i, student) in students.iter().enumerate() {
        for k in 0..per_student {
            let related = if k == 0 { links[i].as_deref() } else { None };
            items.push(history_item(
                student,
                &format!("{student}-h{k}"),
                "READING_COMPREHENSION",
                "2026-01-05T10:00:00.000Z",
                50.0 + k as f64,
                related,
            ));
        }
    }
    let dynamo = stack.dynamo();
    put_items(&dynamo.client(), dynamo.assessments_table(), items)
        .await
        .expect("seed history");
}

fn message(assessment_id: &str, student_id: &str) -> AssessmentMessage {
    AssessmentMessage::parse(Some(&assessment_body(assessment_id, student_id, 1))).expect("valid")
}

fn history_ids(items: &[Value]) -> Vec<String> {
    items
        .iter()
        .map(|i| i["assessmentId"].as_str().expect("id").to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_history_cycle_is_read_once_and_a_deep_chain_stops_at_ten_links() {
    let stack = ProcessorStack::start(&[]).await;
    let store = stack.processor().processor.store();

    // A cycle: cyc-a -> cyc-b -> cyc-c -> cyc-a, two items each.
    let cycle: Vec<String> = ["cyc-a", "cyc-b", "cyc-c"].map(str::to_owned).to_vec();
    let links = vec![
        Some("cyc-b".to_owned()),
        Some("cyc-c".to_owned()),
        Some("cyc-a".to_owned()),
    ];
    seed_history(&stack, &cycle, 2, &links).await;
    let history = store
        .history(&message("new-1", "cyc-a"), HistoryLimits::default())
        .await
        .expect("history");
    let ids = history_ids(&history.items);
    let unique: HashSet<&String> = ids.iter().collect();
    assert_eq!(ids.len(), 6, "{ids:?}");
    assert_eq!(unique.len(), 6, "each item once: {ids:?}");
    assert_eq!(history.students_read, 3);
    assert_eq!(history.queries, 3);
    assert!(!history.truncated);

    // A chain of 16 students, one item each: deep-00 -> deep-01 -> ... -> deep-15.
    let chain: Vec<String> = (0..16).map(|i| format!("deep-{i:02}")).collect();
    let links: Vec<Option<String>> = (0..16)
        .map(|i| (i < 15).then(|| format!("deep-{:02}", i + 1)))
        .collect();
    seed_history(&stack, &chain, 1, &links).await;
    let history = store
        .history(&message("new-2", "deep-00"), HistoryLimits::default())
        .await
        .expect("history");
    let ids = history_ids(&history.items);
    let expected: Vec<String> = (0..=10).map(|i| format!("deep-{i:02}-h0")).collect();
    assert_eq!(ids, expected, "depths 0..=10, in order, once each");
    assert_eq!(history.students_read, 11);
    assert_eq!(
        history.queries, 11,
        "bounded work: one query per student read"
    );
    assert!(history.truncated, "the link past depth 10 is reported");

    // A wide graph: one student whose 300 items each link elsewhere: capped.
    let wide: Vec<String> = vec!["wide-root".to_owned()];
    seed_history(&stack, &wide, 300, &[None]).await;
    let fan: Vec<_> = (0..300)
        .map(|k| {
            history_item(
                "wide-root",
                &format!("wide-root-h{k}"),
                "READING_COMPREHENSION",
                "2026-01-05T10:00:00.000Z",
                1.0,
                Some(&format!("wide-{k:03}")),
            )
        })
        .collect();
    let dynamo = stack.dynamo();
    put_items(&dynamo.client(), dynamo.assessments_table(), fan)
        .await
        .expect("links");
    let limits = HistoryLimits::default();
    let history = store
        .history(&message("new-3", "wide-root"), limits)
        .await
        .expect("history");
    assert_eq!(history.items.len(), limits.max_items);
    assert!(history.students_read <= limits.max_students);
    assert!(history.truncated);
    println!(
        "wide graph: {} items from {} students in {} queries",
        history.items.len(),
        history.students_read,
        history.queries
    );

    // Through the whole pipeline: the scoring API saw the cycle's 6 items.
    let handled = deliver(
        &stack,
        sqs_event(vec![(
            "m-1".to_owned(),
            assessment_body("new-1", "cyc-a", 1),
        )]),
    )
    .await;
    assert!(handled.response.batch_item_failures.is_empty());
    assert_eq!(handled.records[0].history_items, 6);
    let item = written(&stack, "cyc-a", "new-1").await.expect("written");
    assert_eq!(item["result"]["historyCount"], 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_records_are_each_scored_once_within_the_rate_limit() {
    let limit = 40;
    let stack = ProcessorStack::start(&[
        ("SCORING_RATE_LIMIT", "40"),
        ("PROCESSOR_CONCURRENCY", "10"),
    ])
    .await;
    let records: Vec<(String, String)> = (0..100)
        .map(|i| {
            let student = format!("stu-{:04}", i % 40 + 1);
            (
                format!("msg-{i}"),
                assessment_body(&format!("rate-{i:03}"), &student, i),
            )
        })
        .collect();
    let started = Instant::now();
    let handled = deliver(&stack, sqs_event(records)).await;
    let elapsed = started.elapsed();

    assert!(failed_ids(&handled).is_empty(), "{:?}", handled.response);
    assert_eq!(handled.report.scored, 100);
    let scoring = stack.scoring();
    for i in 0..100 {
        assert_eq!(
            scoring.times_scored(&format!("rate-{i:03}")),
            1,
            "rate-{i:03}"
        );
    }
    let stats = scoring.stats();
    println!(
        "100 records in {elapsed:?}: stand-in saw {} requests, per 1-s window {:?}, peak {} (fixed windows) / {} (any second); limit {limit}",
        stats.requests, stats.per_second, stats.peak_per_second, stats.peak_sliding_second
    );
    assert_eq!(stats.requests, 100);
    assert_eq!(stats.scored_more_than_once, 0);
    assert!(stats.peak_per_second <= limit, "{stats:?}");
    assert!(stats.peak_sliding_second <= limit, "{stats:?}");
    // The limiter, not the dependencies, set the pace: 100 at 40/s takes over 2 s.
    assert!(elapsed >= Duration::from_secs(2), "{elapsed:?}");
    for i in [0, 57, 99] {
        let student = format!("stu-{:04}", i % 40 + 1);
        let item = written(&stack, &student, &format!("rate-{i:03}"))
            .await
            .expect("written");
        assert_eq!(item["messageId"], format!("msg-{i}"));
        // Who sent it, as SQS says (testkit's events carry SenderId AIDAEXAMPLE).
        assert_eq!(item["producerId"], "AIDAEXAMPLE");
        assert!(item["score"].is_number());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_records_are_reported_and_the_others_succeed() {
    let stack = ProcessorStack::start(&[
        ("SCORING_MAX_ATTEMPTS", "3"),
        ("SCORING_BACKOFF_BASE_MS", "10"),
        ("SCORING_BACKOFF_MAX_MS", "50"),
        ("SCORING_TIMEOUT_MS", "300"),
    ])
    .await;
    let scoring = stack.scoring();
    // Always 500 for one assessment: retried, then given up.
    scoring.faults().fail_assessment("fail-500", 500);
    let mut records: Vec<(String, String)> = (0..8)
        .map(|i| {
            (
                format!("ok-{i}"),
                assessment_body(&format!("fine-{i}"), "stu-0007", i),
            )
        })
        .collect();
    records.push(("bad-body".to_owned(), "{\"assessmentId\": 12".to_owned()));
    records.push((
        "perm".to_owned(),
        assessment_body("fail-500", "stu-0008", 3),
    ));
    // Transient trouble the retries absorb: two 429s and one answer past the timeout.
    scoring.faults().throttle.next(2);
    scoring.faults().set_slow_ms(600);
    scoring.faults().slow.next(1);

    let handled = deliver(&stack, sqs_event(records)).await;
    // The invalid body can never succeed: to the dead-letter queue, not redelivered.
    assert_eq!(failed_ids(&handled), vec!["perm".to_owned()]);
    assert!(handled.records[8].dead_lettered);
    assert_eq!(handled.report.scored, 8, "{:?}", handled.report);
    match &handled.records[8].outcome {
        RecordOutcome::Failed(ProcessError::Invalid(invalid)) => assert_eq!(invalid.field, "body"),
        other => panic!("expected an invalid body, got {other:?}"),
    }
    match &handled.records[9].outcome {
        RecordOutcome::Failed(error @ ProcessError::Scoring(_)) => {
            assert_eq!(error.kind(), "ScoringUnavailable");
            assert!(error.to_string().contains("3 attempts"), "{error}");
        }
        other => panic!("expected a scoring failure, got {other:?}"),
    }
    assert_eq!(scoring.times_scored("fail-500"), 0);
    assert!(written(&stack, "stu-0008", "fail-500").await.is_none());
    assert_eq!(handled.report.scoring_throttled, 2);
    let stats = scoring.stats();
    assert_eq!(stats.statuses.get(&500), Some(&3), "{stats:?}");
    assert_eq!(stats.statuses.get(&429), Some(&2), "{stats:?}");
    // 8 scored + 3 for fail-500 + 2 throttled + 1 timed out, each retried.
    assert_eq!(stats.requests, 14, "{stats:?}");
    assert_eq!(handled.report.failure_kinds.len(), 2);

    // A 4xx is final at once: no retry, no redelivery.
    scoring.reset_stats();
    scoring.faults().fail_assessment("fail-400", 400);
    let handled = deliver(
        &stack,
        sqs_event(vec![(
            "m".to_owned(),
            assessment_body("fail-400", "stu-0009", 1),
        )]),
    )
    .await;
    assert_eq!(failed_ids(&handled), Vec::<String>::new());
    assert!(handled.records[0].dead_lettered);
    assert_eq!(scoring.stats().requests, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_that_can_never_succeed_go_to_the_dead_letter_queue_once() {
    let stack = ProcessorStack::start(&[
        ("SCORING_MAX_ATTEMPTS", "3"),
        ("SCORING_BACKOFF_BASE_MS", "10"),
        ("SCORING_BACKOFF_MAX_MS", "50"),
    ])
    .await;
    let scoring = stack.scoring();
    scoring.faults().fail_assessment("refused", 422);
    scoring.faults().answer_score("huge", 1e200);
    scoring.faults().fail_assessment("flaky", 503);
    let bad_body = "{\"assessmentId\": 12".to_owned();
    let records = vec![
        ("good".to_owned(), assessment_body("fine", "stu-0011", 1)),
        ("bad-body".to_owned(), bad_body.clone()),
        (
            "refused".to_owned(),
            assessment_body("refused", "stu-0011", 2),
        ),
        ("huge".to_owned(), assessment_body("huge", "stu-0011", 3)),
        ("flaky".to_owned(), assessment_body("flaky", "stu-0011", 4)),
    ];
    let handled = deliver(&stack, sqs_event(records)).await;

    // Only the record worth retrying goes back to the queue.
    assert_eq!(failed_ids(&handled), vec!["flaky".to_owned()]);
    assert_eq!(
        (
            handled.report.scored,
            handled.report.failed,
            handled.report.dead_lettered
        ),
        (1, 1, 3)
    );
    let emf = handled
        .report
        .emf(
            assessments_common::observability::FunctionId {
                name: "fn",
                version: "$LATEST",
            },
            0,
        )
        .to_value();
    assert_eq!(
        (emf["PoisonRecords"].clone(), emf["Failed"].clone()),
        (3.into(), 1.into())
    );
    assert!(written(&stack, "stu-0011", "huge").await.is_none());

    // The dead-letter queue holds each poison record once, its body as sent
    // and the reason as attributes.
    let queue = stack
        .env()
        .into_iter()
        .find(|(k, _)| k == "DEAD_LETTER_QUEUE_URL")
        .map(|(_, v)| v)
        .expect("the local stack's dead-letter queue");
    let mut letters = testkit::queues::drain(&stack.dynamo().endpoint(), &queue)
        .await
        .expect("drain");
    letters.sort_by_key(|l| {
        l["attributes"]["SourceMessageId"]
            .as_str()
            .map(str::to_owned)
    });
    let summary: Vec<(&str, &str)> = letters
        .iter()
        .map(|l| {
            (
                l["attributes"]["SourceMessageId"].as_str().unwrap_or(""),
                l["attributes"]["FailureKind"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("bad-body", "InvalidMessage"),
            ("huge", "ScoreUnstorable"),
            ("refused", "ScoringRejected")
        ]
    );
    assert_eq!(letters[0]["body"], bad_body);
    let reason = letters[1]["attributes"]["FailureReason"]
        .as_str()
        .unwrap_or("");
    assert!(
        reason.contains("score = 1e200 is outside DynamoDB's number range"),
        "{reason}"
    );
    assert!(
        letters[2]["attributes"]["FailureReason"]
            .as_str()
            .unwrap_or("")
            .contains("HTTP 422")
    );

    // What it cost at the scoring API: nothing for the invalid body, one
    // request each for the refused and the unstorable, three for the flaky
    // one; every request about an assessment carried the same key.
    let stats = scoring.stats();
    assert_eq!(stats.statuses.get(&422), Some(&1), "{stats:?}");
    assert_eq!(stats.statuses.get(&503), Some(&3), "{stats:?}");
    assert_eq!(stats.requests, 1 + 1 + 1 + 3, "{stats:?}");
    assert_eq!(scoring.idempotency_keys("flaky"), ["stu-0011:flaky"]);
    assert_eq!(scoring.idempotency_keys("fine"), ["stu-0011:fine"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_is_honoured_as_seconds_or_a_date_within_the_invocation() {
    let stack = ProcessorStack::start(&[
        ("SCORING_BACKOFF_BASE_MS", "10"),
        ("SCORING_BACKOFF_MAX_MS", "50"),
    ])
    .await;
    let scoring = stack.scoring();
    // One 429 asking for 1 s, as an HTTP date: waited for, then scored.
    scoring.faults().set_retry_after_secs(1);
    scoring.faults().set_retry_after_as_date(true);
    scoring.faults().throttle.next(1);
    let started = Instant::now();
    let handled = deliver(
        &stack,
        sqs_event(vec![(
            "d".to_owned(),
            assessment_body("dated", "stu-0012", 1),
        )]),
    )
    .await;
    let took = started.elapsed();
    assert_eq!(handled.report.scored, 1, "{:?}", handled.report);
    assert!(
        took >= Duration::from_secs(1),
        "waited what the API asked: {took:?}"
    );

    // A 429 asking for 30 s with 3 s left: no wait past the deadline; the
    // record goes back to the queue at once.
    scoring.faults().set_retry_after_as_date(false);
    scoring.faults().set_retry_after_secs(30);
    scoring.faults().throttle.next(1);
    let handled = handle_with_report(
        stack.processor(),
        sqs_event(vec![(
            "l".to_owned(),
            assessment_body("later", "stu-0012", 2),
        )]),
        "test-request",
        Budget::after(Duration::from_secs(3)),
    )
    .await;
    // Not waited for: the message below says the wait was refused.
    assert_eq!(failed_ids(&handled), vec!["l".to_owned()]);
    match &handled.records[0].outcome {
        RecordOutcome::Failed(error) => {
            let message = error.to_string();
            assert!(message.contains("30000ms later (Retry-After)"), "{message}");
            assert!(
                message.contains("past the invocation's deadline"),
                "{message}"
            );
        }
        other => panic!("expected the record to fail, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redelivered_record_is_not_scored_or_written_twice() {
    let stack = ProcessorStack::start(&[]).await;
    let records = |prefix: &str| -> Vec<(String, String)> {
        (0..5)
            .map(|i| {
                (
                    format!("{prefix}-{i}"),
                    assessment_body(&format!("redo-{i}"), "stu-0011", i),
                )
            })
            .collect()
    };
    let first = deliver(&stack, sqs_event(records("first"))).await;
    assert_eq!(first.report.scored, 5);
    let before = written(&stack, "stu-0011", "redo-3")
        .await
        .expect("written");

    // SQS redelivers (another message id, same body): nothing is scored or written.
    let again = deliver(&stack, sqs_event(records("again"))).await;
    assert!(again.response.batch_item_failures.is_empty());
    assert_eq!(again.report.scored, 0);
    assert_eq!(again.report.already_scored, 5);
    let after = written(&stack, "stu-0011", "redo-3")
        .await
        .expect("written");
    assert_eq!(before, after, "the item is untouched");
    assert_eq!(after["messageId"], "first-3");
    for i in 0..5 {
        assert_eq!(stack.scoring().times_scored(&format!("redo-{i}")), 1);
    }

    // The same assessment twice in one batch: processed once.
    let twice = vec![
        ("dup-a".to_owned(), assessment_body("dup", "stu-0012", 1)),
        ("dup-b".to_owned(), assessment_body("dup", "stu-0012", 1)),
    ];
    let handled = deliver(&stack, sqs_event(twice)).await;
    assert_eq!(handled.report.scored, 1);
    assert_eq!(handled.report.already_scored, 1);
    assert_eq!(stack.scoring().times_scored("dup"), 1);

    // Two invocations delivering the same record at once: the conditional write
    // lets exactly one of them write.
    let one = || {
        sqs_event(vec![(
            "race".to_owned(),
            assessment_body("race", "stu-0013", 2),
        )])
    };
    let (a, b) = tokio::join!(deliver(&stack, one()), deliver(&stack, one()));
    assert_eq!(
        a.report.scored + b.report.scored,
        1,
        "{:?} {:?}",
        a.report,
        b.report
    );
    assert_eq!(a.report.already_scored + b.report.already_scored, 1);
    assert!(a.response.batch_item_failures.is_empty() && b.response.batch_item_failures.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_still_running_near_the_deadline_fail_fast_and_are_redelivered() {
    let stack = ProcessorStack::start(&[
        ("DEADLINE_MARGIN_MS", "200"),
        ("SCORING_TIMEOUT_MS", "5000"),
    ])
    .await;
    stack.scoring().faults().set_slow_ms(3000);
    stack.scoring().faults().slow.rate(1.0, 1);
    let records: Vec<(String, String)> = (0..3)
        .map(|i| {
            (
                format!("late-{i}"),
                assessment_body(&format!("late-{i}"), "stu-0014", i),
            )
        })
        .collect();
    // Each request takes 3 s: what stops them is the deadline (1.2 s, less
    // DEADLINE_MARGIN_MS), which every outcome names.
    let deadline = Budget::after(Duration::from_millis(1200));
    let handled = handle_with_report(stack.processor(), sqs_event(records), "late", deadline).await;
    assert_eq!(failed_ids(&handled).len(), 3);
    assert!(
        handled
            .records
            .iter()
            .all(|r| r.outcome == RecordOutcome::Failed(ProcessError::Deadline))
    );
    assert!(written(&stack, "stu-0014", "late-0").await.is_none());
}
