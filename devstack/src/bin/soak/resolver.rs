//! The soak of the resolver: AppSync events (`--batch` > 1: AppSync
//! batches) through `appsync::handle_with_report`, over 40 demo students and
//! one unknown one.

use std::sync::Arc;
use std::time::Instant;

use assessments_resolver::deps::Deps;
use serde_json::json;
use testkit::appsync;

use crate::measure::Sample;

/// Event `j` of invocation `i`: a demo student (one in 50 unknown), a limit
/// of 5 to 50, every fifth filtered by type.
fn event(i: u64, j: usize) -> serde_json::Value {
    let n = i.wrapping_mul(7).wrapping_add(j as u64);
    let student = if n % 50 == 49 {
        "stu-9999".to_owned()
    } else {
        format!("stu-{:04}", n % 40 + 1)
    };
    let mut arguments = json!({ "studentId": student, "limit": 5 + n % 46 });
    if n.is_multiple_of(5) {
        arguments["assessmentType"] = json!("READING_COMPREHENSION");
    }
    appsync::get_assessments(arguments)
}

/// Invocation `i`: one event, or a batch of `batch`.
pub async fn invoke(deps: &Arc<Deps>, i: u64, batch: usize) -> Sample {
    let started = Instant::now();
    let payload = if batch == 1 {
        event(i, 0)
    } else {
        appsync::batch((0..batch).map(|j| event(i, j)))
    };
    let budget = devstack::stack::invocation_budget(deps);
    let (result, report) =
        assessments_resolver::appsync::handle_with_report(deps, payload, "soak", budget).await;
    let elapsed = started.elapsed();
    let t = report.timings;
    let mut errors = Vec::new();
    if let Err(e) = &result {
        errors.push(e.error_type.as_str().to_owned());
    }
    if batch > 1 {
        for (error_type, count) in &report.error_types {
            errors.extend(std::iter::repeat_n(error_type.as_str().to_owned(), *count));
        }
    }
    Sample {
        elapsed,
        overheads: vec![elapsed.saturating_sub(t.profiles.max(t.sql) + t.legacy)],
        dynamodb: vec![t.profiles],
        sql: vec![t.sql],
        third: vec![t.legacy],
        errors,
        outcomes: Vec::new(),
    }
}
