//! The legacy bridge against the mocked shim, loaded through libloading like
//! production loads the real component. Every test that touches the shim ends
//! by checking its handle registry: nothing live, no violation.
//!
//! The test command also runs this file under valgrind memcheck.
#![allow(
    clippy::await_holding_lock,
    reason = "the counters lock is held by a test's own block_on thread for the whole test; \
              no other future on that runtime takes it"
)]

mod support;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use legacy_bridge::{
    AssessmentType, Band, Flags, LegacyEngine, LegacyError, NativeStatus, StudentContext,
};

use support::*;

const FLUENCY: AssessmentType = AssessmentType::OralReadingFluency;
const COMPREHENSION: AssessmentType = AssessmentType::ReadingComprehension;
const PHONOLOGICAL: AssessmentType = AssessmentType::PhonologicalAwareness;

#[tokio::test]
async fn scores_follow_the_documented_norm_tables() {
    let _lock = native_counters_lock();
    let engine = LegacyEngine::start(&shim_settings("")).await.expect("open");
    let input = vec![
        row("orf-at", FLUENCY, 115, 110, 60), // 110 wcpm = grade-3 norm: z = 0
        row("orf-above", FLUENCY, 140, 135, 60), // 135 wcpm: z = +1
        row("comp-at", COMPREHENSION, 20, 14, 300), // 70 %: z = 0, accuracy 0.7
        row("phon-low", PHONOLOGICAL, 10, 6, 15), // 60 %: z = -2, 1.5 s per item
    ];
    let scored = engine
        .score(grade3(), input, &budget())
        .await
        .expect("score");
    assert_eq!(scored.len(), 4);

    let at = &scored[0];
    assert_eq!(
        (at.id.as_str(), at.percentile, at.scaled_score, at.band),
        ("orf-at", 50.0, 400.0, Band::At)
    );
    assert_eq!(at.wcpm, Some(110.0));
    assert_eq!(at.accuracy, 110.0 / 115.0);
    assert_eq!(at.flags, Flags::empty());

    let above = &scored[1];
    assert_eq!(
        (above.percentile, above.scaled_score, above.band),
        (84.0, 500.0, Band::Above)
    );

    let comp = &scored[2];
    assert_eq!(
        (comp.percentile, comp.scaled_score, comp.band, comp.wcpm),
        (50.0, 400.0, Band::At, None)
    );
    assert_eq!(comp.flags, Flags::LOW_ACCURACY);

    let phon = &scored[3];
    // 50 + 34 * -2 = -18, clamped to 1; 400 + 100 * -2 = 200.
    assert_eq!(
        (phon.percentile, phon.scaled_score, phon.band),
        (1.0, 200.0, Band::WellBelow)
    );
    assert_eq!(phon.flags, Flags::LOW_ACCURACY | Flags::RAPID_GUESSING);
    assert_eq!(
        phon.flags.names().collect::<Vec<_>>(),
        ["LOW_ACCURACY", "RAPID_GUESSING"]
    );

    // A reading level more than a grade below flags every assessment.
    let behind = StudentContext {
        grade: 3,
        reading_level: 1.5,
    };
    let scored = engine
        .score(
            behind,
            vec![row("orf-at", FLUENCY, 115, 110, 60)],
            &budget(),
        )
        .await
        .expect("score");
    assert_eq!(scored[0].flags, Flags::BELOW_READING_LEVEL);

    assert_eq!(
        engine
            .score(grade3(), Vec::new(), &budget())
            .await
            .expect("empty"),
        Vec::new()
    );
    engine
        .shutdown(Duration::from_secs(5))
        .await
        .expect("shutdown");
    assert_native_clean("norm tables");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_mixed_calls_release_every_handle() {
    let _lock = native_counters_lock();
    let shim = PathBuf::from(legacy_shim::SHIM_PATH);
    let before = mixed::counters(&shim);
    let (fast, slow) = mixed::open_engines(&shim).await;
    let tally = mixed::sequential(&fast, &slow).await;
    mixed::close_engines(fast, slow).await;
    mixed::check("sequential", &tally, &shim, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_concurrent_tasks_release_every_handle() {
    let _lock = native_counters_lock();
    let shim = PathBuf::from(legacy_shim::SHIM_PATH);
    let before = mixed::counters(&shim);
    let (fast, slow) = mixed::open_engines(&shim).await;
    let tally = mixed::concurrent(&fast, &slow, 64).await;
    mixed::close_engines(fast, slow).await;
    mixed::check("64 tasks", &tally, &shim, before);
}

#[tokio::test]
async fn a_call_past_its_timeout_keeps_its_slot_until_the_native_call_returns() {
    let _lock = native_counters_lock();
    let engine = Arc::new(
        LegacyEngine::start(&settings_with("delay_ms=300", 1, Duration::from_millis(50)))
            .await
            .expect("open"),
    );
    let first = tokio::spawn({
        let engine = Arc::clone(&engine);
        async move { engine.score(grade3(), rows(1), &budget()).await }
    });
    testkit::wait_until("the first call to hold the only slot", || {
        engine.stats().in_flight == 1
    })
    .await;
    // Waiting for a slot is bounded by the caller's budget: 100 ms here.
    let short = assessments_common::budget::Budget::after(Duration::from_millis(100));
    let second = engine.score(grade3(), rows(1), &short).await;
    assert!(
        matches!(second, Err(LegacyError::Saturated { running: 1, .. })),
        "{second:?}"
    );
    let first = first.await.expect("task");
    let Err(error) = first else {
        panic!("expected a timeout, got {first:?}")
    };
    assert!(matches!(error, LegacyError::Timeout { .. }));
    assert_eq!(
        error.to_string(),
        "the legacy component did not answer within 50ms (LEGACY_CALL_TIMEOUT_MS)"
    );
    // The timed-out native call still runs and holds the only slot.
    assert_eq!(engine.stats().in_flight, 1);
    let engine = Arc::into_inner(engine).expect("sole owner");
    engine
        .shutdown(Duration::from_secs(5))
        .await
        .expect("waits for the call, then closes");
    assert_native_clean("timeout");
}

#[tokio::test]
async fn shutdown_during_a_call_closes_the_engine_when_the_call_returns() {
    let _lock = native_counters_lock();
    let engine = Arc::new(
        LegacyEngine::start(&settings_with("delay_ms=300", 2, Duration::from_millis(20)))
            .await
            .expect("open"),
    );
    let before = shim_stats();
    assert!(matches!(
        engine.score(grade3(), rows(1), &budget()).await,
        Err(LegacyError::Timeout { .. })
    ));
    let engine = Arc::into_inner(engine).expect("sole owner");
    let shutdown = engine.shutdown(Duration::from_millis(10)).await;
    assert!(
        matches!(
            shutdown,
            Err(LegacyError::ShutdownIncomplete { in_flight: 1, .. })
        ),
        "{shutdown:?}"
    );
    // The engine is still open: the running call owns a reference to it.
    assert_eq!(shim_stats().engines_closed, before.engines_closed);
    // When the native call returns, its blocking task frees the result and,
    // as the last owner, closes the engine: once.
    testkit::wait_until("the running call to return and close the engine", || {
        shim_stats().engines_closed > before.engines_closed
    })
    .await;
    assert_eq!(shim_stats().engines_closed, before.engines_closed + 1);
    assert_native_clean("shutdown during a call");
}

#[tokio::test]
async fn after_shutdown_calls_are_refused_and_a_second_shutdown_closes_nothing() {
    let _lock = native_counters_lock();
    let before = shim_stats();
    let engine = LegacyEngine::start(&shim_settings("")).await.expect("open");
    engine
        .score(grade3(), rows(1), &budget())
        .await
        .expect("served before shutdown");
    engine
        .shutdown(Duration::from_secs(5))
        .await
        .expect("first shutdown closes");
    let refused = engine.score(grade3(), rows(1), &budget()).await;
    assert!(
        matches!(refused, Err(LegacyError::ShuttingDown)),
        "{refused:?}"
    );
    engine
        .shutdown(Duration::from_secs(5))
        .await
        .expect("second shutdown is a no-op");
    assert_eq!(engine.stats().native, None, "no engine left to ask");
    drop(engine);
    let after = shim_stats();
    assert_eq!(
        after.engines_closed - before.engines_closed,
        1,
        "closed exactly once"
    );
    assert_native_clean("double shutdown");
}

#[tokio::test]
async fn a_missing_library_is_an_error_naming_the_path() {
    let settings = legacy_bridge::LegacySettings {
        lib_path: PathBuf::from("/nonexistent/liblegacy_assessment.so"),
        ..shim_settings("")
    };
    let error = LegacyEngine::start(&settings)
        .await
        .expect_err("no such file");
    assert!(matches!(error, LegacyError::Load { .. }), "{error:?}");
    let message = error.to_string();
    assert!(
        message.contains("/nonexistent/liblegacy_assessment.so"),
        "{message}"
    );
}

#[tokio::test]
async fn a_missing_symbol_is_an_error_naming_it_and_the_path() {
    let path = legacy_shim::MISSING_SYMBOL_PATH;
    let settings = legacy_bridge::LegacySettings {
        lib_path: PathBuf::from(path),
        ..shim_settings("")
    };
    let error = LegacyEngine::start(&settings)
        .await
        .expect_err("la_score is missing");
    let LegacyError::MissingSymbol { symbol, .. } = &error else {
        panic!("{error:?}")
    };
    assert_eq!(*symbol, "la_score");
    assert!(error.to_string().contains(path));
}

#[tokio::test]
async fn an_abi_version_mismatch_is_refused_at_load() {
    let path = legacy_shim::ABI_MISMATCH_PATH;
    let settings = legacy_bridge::LegacySettings {
        lib_path: PathBuf::from(path),
        ..shim_settings("")
    };
    let error = LegacyEngine::start(&settings).await.expect_err("ABI 99");
    assert!(
        matches!(
            error,
            LegacyError::AbiMismatch {
                found: 99,
                expected: 1,
                ..
            }
        ),
        "{error:?}"
    );
    assert!(
        error
            .to_string()
            .contains("ABI version 99, this build needs 1"),
        "{error}"
    );
}

#[tokio::test]
async fn a_bad_engine_config_is_refused_with_the_native_message() {
    let _lock = native_counters_lock();
    for (config, expected) in [
        ("bogus=1", "unknown config key 'bogus'"),
        (
            "fail_every=x",
            "invalid value 'x' for config key 'fail_every'",
        ),
        (
            "fail_prob=2",
            "invalid value '2' for config key 'fail_prob'",
        ),
        ("delay_ms", "config entry 'delay_ms' is not key=value"),
    ] {
        let error = LegacyEngine::start(&shim_settings(config))
            .await
            .expect_err(config);
        let LegacyError::Native {
            status: NativeStatus::Config,
            message,
            ..
        } = &error
        else {
            panic!("{config}: {error:?}")
        };
        assert_eq!(message, expected);
    }
    let error = LegacyEngine::start(&shim_settings("seed=1\0"))
        .await
        .expect_err("NUL");
    assert!(matches!(error, LegacyError::InvalidInput(_)));
    assert_native_clean("bad config");
}

#[tokio::test]
async fn every_malformed_output_mode_is_a_typed_error_and_the_engine_keeps_serving() {
    let _lock = native_counters_lock();
    let healthy = LegacyEngine::start(&shim_settings("")).await.expect("open");
    for (mode, expected) in MALFORMED_MODES {
        let broken = LegacyEngine::start(&shim_settings(&format!("malformed={mode}")))
            .await
            .expect("open");
        let error = broken
            .score(grade3(), rows(3), &budget())
            .await
            .expect_err(mode);
        let LegacyError::MalformedOutput(message) = &error else {
            panic!("{mode}: {error:?}")
        };
        assert_eq!(message, expected, "{mode}");
        broken
            .shutdown(Duration::from_secs(5))
            .await
            .expect("shutdown");
        // The process keeps serving.
        assert_eq!(
            healthy
                .score(grade3(), rows(3), &budget())
                .await
                .expect("healthy")
                .len(),
            3
        );
    }
    healthy
        .shutdown(Duration::from_secs(5))
        .await
        .expect("shutdown");
    assert_native_clean("malformed output");
}

#[tokio::test]
async fn input_the_boundary_cannot_carry_is_rejected_before_the_call() {
    let _lock = native_counters_lock();
    let engine = LegacyEngine::start(&shim_settings("")).await.expect("open");
    let calls_before = shim_stats().score_calls;
    let mut nul = rows(1);
    nul[0].id = "a\0b".to_owned();
    let mut long = rows(1);
    long[0].id = "x".repeat(65);
    for (input, expected) in [
        (nul, "rows[0].id must be 1..=64 bytes without NUL"),
        (long, "rows[0].id must be 1..=64 bytes without NUL"),
        (rows(10_001), "10001 rows exceed the 10000 a call accepts"),
    ] {
        let error = engine
            .score(grade3(), input, &budget())
            .await
            .expect_err(expected);
        assert_eq!(
            error.to_string(),
            format!("invalid input for the legacy component: {expected}")
        );
    }
    let error = engine
        .score(
            StudentContext {
                grade: 13,
                reading_level: 3.0,
            },
            rows(1),
            &budget(),
        )
        .await
        .expect_err("grade 13");
    assert!(error.to_string().contains("grade 13 is above 12"));
    let error = engine
        .score(
            StudentContext {
                grade: 3,
                reading_level: f64::NAN,
            },
            rows(1),
            &budget(),
        )
        .await
        .expect_err("NaN reading level");
    assert!(error.to_string().contains("reading level"));
    assert_eq!(
        shim_stats().score_calls,
        calls_before,
        "nothing reached the component"
    );
    engine
        .shutdown(Duration::from_secs(5))
        .await
        .expect("shutdown");
    assert_native_clean("input validation");
}

#[tokio::test]
async fn seeded_failure_probability_is_reproducible() {
    let _lock = native_counters_lock();
    let mut patterns = Vec::new();
    for _ in 0..2 {
        let engine = LegacyEngine::start(&shim_settings("fail_prob=0.3;seed=7"))
            .await
            .expect("open");
        let mut pattern = Vec::new();
        for _ in 0..200 {
            pattern.push(engine.score(grade3(), rows(1), &budget()).await.is_ok());
        }
        engine
            .shutdown(Duration::from_secs(5))
            .await
            .expect("shutdown");
        patterns.push(pattern);
    }
    assert_eq!(patterns[0], patterns[1]);
    let failures = patterns[0].iter().filter(|ok| !**ok).count();
    assert!(
        (30..=90).contains(&failures),
        "{failures} failures of 200 at p = 0.3"
    );
    assert_native_clean("fail_prob");
}

/// The crash modes kill the process that loaded the component: only process
/// isolation contains them. This runs each in a child process (this same test
/// binary, re-entered through `LEGACY_CRASH_CHILD`) and checks the signal.
#[test]
fn crash_modes_kill_only_the_process_that_loaded_the_component() {
    use std::os::unix::process::ExitStatusExt;
    if let Ok(mode) = std::env::var("LEGACY_CRASH_CHILD") {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let _ = runtime.block_on(async {
            let engine = LegacyEngine::start(&shim_settings(&format!("crash={mode}")))
                .await
                .expect("open");
            engine.score(grade3(), rows(1), &budget()).await
        });
        unreachable!("crash={mode} returned");
    }
    let exe = std::env::current_exe().expect("test binary path");
    for (mode, signal) in [("segv", 11), ("abort", 6)] {
        let status = std::process::Command::new(&exe)
            .args([
                "--exact",
                "crash_modes_kill_only_the_process_that_loaded_the_component",
                "--nocapture",
            ])
            .env("LEGACY_CRASH_CHILD", mode)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .expect("spawn child");
        assert_eq!(status.signal(), Some(signal), "crash={mode}: {status:?}");
    }
}
