//! The legacy component as .NET (`legacy-shim/dotnet/`: the managed facade over
//! its unmanaged C++ core), hosted through hostfxr, against the same proofs as
//! the C++ mock. `scripts/test` installs the runtime and `mcs` and sets
//! `LEGACY_DOTNET_REQUIRED=1`: there, a missing assembly fails these tests.

mod support;

use std::path::PathBuf;
use std::time::Duration;

use assessments_resolver::legacy::{
    AssessmentRow, AssessmentType, Isolation, IsolationSettings, LegacyEngine, LegacyError,
    LegacySettings, StudentContext,
};
use support::{budget, native_counters_lock, rows};
use testkit::fixtures::Fixtures;

/// The assembly build.rs compiled; `None` (the test returns) only where the
/// .NET tests are not required and `mcs` is missing.
fn assembly() -> Option<PathBuf> {
    let built = env!("LEGACY_DOTNET_ASSEMBLY");
    if built.is_empty() {
        assert!(
            std::env::var_os("LEGACY_DOTNET_REQUIRED").is_none(),
            "LEGACY_DOTNET_REQUIRED is set but mcs was missing when build.rs ran"
        );
        eprintln!("skipped: the .NET component is not built (install mono-mcs)");
        return None;
    }
    Some(PathBuf::from(built))
}

fn in_process(lib_path: PathBuf, config: &str) -> LegacySettings {
    LegacySettings {
        lib_path,
        engine_config: config.to_owned(),
        isolation: Isolation::InProcess,
        ..LegacySettings::default()
    }
}

/// Every demo student's assessments, as the resolver would send them.
fn demo_calls() -> Vec<(StudentContext, Vec<AssessmentRow>)> {
    let fixtures = Fixtures::demo();
    fixtures
        .students
        .iter()
        .map(|student| {
            let rows = fixtures
                .assessments
                .iter()
                .filter(|a| a.student_id == student.student_id)
                .map(|a| AssessmentRow {
                    id: a.assessment_id.to_string(),
                    assessment_type: AssessmentType::parse(&a.assessment_type)
                        .expect("a demo type"),
                    administered_at_unix_ms: a.administered_at.and_utc().timestamp_millis(),
                    raw_score: a.raw_score,
                    items_attempted: a.items_attempted,
                    items_correct: a.items_correct,
                    duration_seconds: a.duration_seconds,
                })
                .collect();
            let context = StudentContext {
                grade: student.grade,
                reading_level: student.reading_level,
            };
            (context, rows)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dotnet_component_scores_every_demo_student_exactly_as_the_cpp_mock() {
    let Some(assembly) = assembly() else { return };
    // The component's counters are process-wide: no other test's calls meanwhile.
    let _counters = native_counters_lock();
    let dotnet = LegacyEngine::start(&in_process(assembly, ""))
        .await
        .expect("the .NET component starts");
    let cpp = LegacyEngine::start(&in_process(
        PathBuf::from(assessments_resolver::legacy::DEFAULT_LIB_PATH),
        "",
    ))
    .await
    .expect("the C++ mock starts");
    let before = dotnet
        .native_stats()
        .expect("the .NET component's counters");
    let calls = demo_calls();
    let mut scored = 0;
    for (context, rows) in &calls {
        let from_dotnet = dotnet
            .score(*context, rows.clone(), &budget())
            .await
            .expect("scored by .NET");
        let from_cpp = cpp
            .score(*context, rows.clone(), &budget())
            .await
            .expect("scored by C++");
        assert_eq!(from_dotnet, from_cpp);
        scored += from_dotnet.len();
    }
    let fixtures = Fixtures::demo();
    assert_eq!(calls.len(), fixtures.students.len());
    // Every row of every profiled student (a few demo rows have no profile).
    assert_eq!(
        scored,
        calls.iter().map(|(_, rows)| rows.len()).sum::<usize>()
    );
    assert!(scored > 200, "{scored}");
    let stats = dotnet
        .native_stats()
        .expect("the .NET component's counters");
    assert_eq!(stats.score_calls - before.score_calls, calls.len() as u64);
    assert_eq!(stats.live_results(), 0, "{stats:?}");
    assert_eq!(stats.violations, 0);
    dotnet
        .shutdown(Duration::from_secs(5))
        .await
        .expect("close");
    cpp.shutdown(Duration::from_secs(5)).await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_managed_exception_inside_a_call_is_an_error_code() {
    let Some(assembly) = assembly() else { return };
    let _counters = native_counters_lock();
    let engine = LegacyEngine::start(&in_process(assembly, "throw=managed;throw_every=2"))
        .await
        .expect("start");
    let context = StudentContext {
        grade: 3,
        reading_level: 3.2,
    };
    assert!(engine.score(context, rows(3), &budget()).await.is_ok());
    let error = engine
        .score(context, rows(3), &budget())
        .await
        .expect_err("the second call throws inside the component");
    let LegacyError::Native { message, .. } = &error else {
        panic!("{error:?}")
    };
    assert!(message.contains("InvalidOperationException"), "{message}");
    assert!(engine.score(context, rows(3), &budget()).await.is_ok());
    engine
        .shutdown(Duration::from_secs(5))
        .await
        .expect("close");
}

/// The component in worker processes (the resolver's binary in its worker role),
/// each hosting its own runtime.
fn isolated(lib_path: PathBuf, config: &str, workers: usize) -> LegacySettings {
    LegacySettings {
        lib_path,
        engine_config: config.to_owned(),
        max_concurrency: workers,
        call_timeout: Duration::from_secs(10),
        isolation: Isolation::Process(IsolationSettings {
            worker_path: Some(PathBuf::from(env!("CARGO_BIN_EXE_assessments-resolver"))),
            restart_backoff: Duration::from_millis(1),
            restart_backoff_max: Duration::from_millis(5),
            ..IsolationSettings::default()
        }),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unhandled_exception_or_a_crash_in_a_worker_fails_one_call_and_the_next_is_served() {
    let Some(assembly) = assembly() else { return };
    let context = StudentContext {
        grade: 3,
        reading_level: 3.2,
    };
    for crash in ["unhandled", "segv", "abort"] {
        // Every third call of a worker ends its process.
        let engine = LegacyEngine::start(&isolated(
            assembly.clone(),
            &format!("crash={crash};crash_every=3"),
            1,
        ))
        .await
        .unwrap_or_else(|e| panic!("{crash}: start: {e}"));
        let mut outcomes = Vec::new();
        for _ in 0..5 {
            outcomes.push(engine.score(context, rows(4), &budget()).await.is_ok());
        }
        // Calls 1, 2 scored; 3 killed the worker; a new worker scores 4, 5.
        assert_eq!(outcomes, [true, true, false, true, true], "{crash}");
        let stats = engine.isolation_stats().expect("isolated");
        assert_eq!(stats.crashes, 1, "{crash}: {stats:?}");
        engine
            .shutdown(Duration::from_secs(5))
            .await
            .unwrap_or_else(|e| panic!("{crash}: shutdown: {e}"));
    }
}
