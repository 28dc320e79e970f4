//! The legacy component's fixtures, one place for every test, benchmark and
//! fuzz target that talks to it: the mocked shim's settings, student
//! contexts and rows, and the shim's process-wide handle counters.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use legacy_bridge::{
    AssessmentRow, AssessmentType, LegacySettings, NativeStats, StudentContext, library_stats,
};

/// Each `malformed=` mode of the mock's config, and the error the bridge
/// gives for it (three rows scored).
pub const MALFORMED_MODES: [(&str, &str); 5] = [
    (
        "nan",
        "entry 0: scaled_score is not a number within 100..900",
    ),
    ("range", "entry 0: percentile is not a number within 1..99"),
    ("utf8", "entry 0: id is not valid UTF-8"),
    ("id_len", "entry 0: id length is outside 1..=64 bytes"),
    ("count", "result holds 1099511627776 entries for 3 rows"),
];

/// The shim's handle counters are process-wide: tests that assert them take
/// this lock so that no other test's calls are in flight meanwhile.
pub fn native_counters_lock() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    // A test that failed while holding the lock poisons it; the counters are
    // still meaningful for the next test, so carry on.
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Settings for the mocked shim (the `legacy-shim` crate built it), with
/// `config`, in this process.
pub fn shim_settings(config: &str) -> LegacySettings {
    LegacySettings {
        lib_path: PathBuf::from(legacy_shim::SHIM_PATH),
        engine_config: config.to_owned(),
        isolation: legacy_bridge::Isolation::InProcess,
        ..LegacySettings::default()
    }
}

/// [`shim_settings`] with a concurrency limit and a call timeout.
pub fn settings_with(
    config: &str,
    max_concurrency: usize,
    call_timeout: Duration,
) -> LegacySettings {
    LegacySettings {
        max_concurrency,
        call_timeout,
        ..shim_settings(config)
    }
}

/// A third grader reading at grade level.
pub fn grade3() -> StudentContext {
    StudentContext {
        grade: 3,
        reading_level: 3.2,
    }
}

/// A valid row of the given type.
pub fn row(
    id: &str,
    assessment_type: AssessmentType,
    attempted: i32,
    correct: i32,
    seconds: i32,
) -> AssessmentRow {
    AssessmentRow {
        id: id.to_owned(),
        assessment_type,
        administered_at_unix_ms: 1_700_000_000_000,
        raw_score: f64::from(correct),
        items_attempted: attempted,
        items_correct: correct,
        duration_seconds: seconds,
    }
}

/// `n` valid rows cycling through the assessment types.
pub fn rows(n: usize) -> Vec<AssessmentRow> {
    (0..n)
        .map(|i| {
            let t = AssessmentType::ALL[i % AssessmentType::ALL.len()];
            row(
                &format!("asm-{i:05}"),
                t,
                100,
                90 + (i % 10) as i32,
                60 + i as i32,
            )
        })
        .collect()
}

/// Every demo student's assessments (the fixtures), as the resolver sends
/// them to the component: the student's context and rows.
pub fn demo_calls() -> Vec<(StudentContext, Vec<AssessmentRow>)> {
    let fixtures = crate::fixtures::Fixtures::demo();
    (fixtures.students.iter())
        .map(|student| {
            let rows = (fixtures.assessments.iter())
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

/// The shim's process-wide counters.
pub fn shim_stats() -> NativeStats {
    library_stats(Path::new(legacy_shim::SHIM_PATH))
        .expect("the shim loads")
        .expect("the shim exports la_stats_get")
}

/// Asserts the shim holds no live handle and saw no violation.
pub fn assert_native_clean(context: &str) {
    let stats = shim_stats();
    assert_eq!(stats.violations, 0, "{context}: violations in {stats:?}");
    assert_eq!(
        stats.live_results(),
        0,
        "{context}: live results in {stats:?}"
    );
    assert_eq!(
        stats.live_engines(),
        0,
        "{context}: live engines in {stats:?}"
    );
}
