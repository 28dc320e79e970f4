//! The legacy component as .NET (`legacy-shim/dotnet/`: the managed facade over
//! its unmanaged C++ core), hosted through hostfxr, against the same proofs as
//! the C++ mock. `scripts/test` installs the runtime and `mcs` and sets
//! `LEGACY_DOTNET_REQUIRED=1`: there, a missing assembly fails these tests.
#![allow(
    clippy::await_holding_lock,
    reason = "the counters lock is held by a test's own block_on thread for the whole test; \
              no other future on that runtime takes it"
)]

mod support;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use legacy_bridge::{
    Isolation, IsolationSettings, LegacyEngine, LegacyError, LegacySettings, NativeStatus,
    StudentContext,
};
use support::{
    INJECTED_PANIC, MALFORMED_MODES, budget, mixed, native_counters_lock, quiet_injected_panics,
    rows,
};
use testkit::fixtures::Fixtures;

/// The assembly build.rs compiled; `None` (the test returns) only where the
/// .NET tests are not required and `mcs` is missing.
fn assembly() -> Option<PathBuf> {
    let built = legacy_shim::DOTNET_ASSEMBLY_PATH;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dotnet_component_scores_every_demo_student_exactly_as_the_cpp_mock() {
    let Some(assembly) = assembly() else { return };
    // The component's counters are process-wide: no other test's calls meanwhile.
    let _counters = native_counters_lock();
    let dotnet = LegacyEngine::start(&in_process(assembly, ""))
        .await
        .expect("the .NET component starts");
    let cpp = LegacyEngine::start(&in_process(PathBuf::from(legacy_shim::SHIM_PATH), ""))
        .await
        .expect("the C++ mock starts");
    let before = dotnet
        .stats()
        .native
        .expect("the .NET component's counters");
    let calls = testkit::legacy::demo_calls();
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
        .stats()
        .native
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
            worker_path: Some(PathBuf::from(env!("CARGO_BIN_EXE_legacy-worker"))),
            restart_backoff: Duration::from_millis(1),
            restart_backoff_max: Duration::from_millis(5),
            // A .NET worker starts in ~50 ms here; on a loaded machine (seven
            // tests at once on two cores) one once took over the default 5 s.
            // These tests check answers, not start times.
            start_timeout: Duration::from_secs(30),
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
        let stats = engine.stats().isolation.expect("isolated");
        assert_eq!(stats.crashes, 1, "{crash}: {stats:?}");
        engine
            .shutdown(Duration::from_secs(5))
            .await
            .unwrap_or_else(|e| panic!("{crash}: shutdown: {e}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_mixed_calls_in_process_release_every_dotnet_handle() {
    let Some(assembly) = assembly() else { return };
    let _counters = native_counters_lock();
    let before = mixed::counters(&assembly);
    let (fast, slow) = mixed::open_engines(&assembly).await;
    let tally = mixed::sequential(&fast, &slow).await;
    mixed::close_engines(fast, slow).await;
    mixed::check(".NET sequential", &tally, &assembly, before);

    let before = mixed::counters(&assembly);
    let (fast, slow) = mixed::open_engines(&assembly).await;
    let tally = mixed::concurrent(&fast, &slow, 64).await;
    mixed::close_engines(fast, slow).await;
    mixed::check(".NET 64 tasks", &tally, &assembly, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_mixed_calls_in_dotnet_workers_release_every_handle() {
    let Some(assembly) = assembly() else { return };
    quiet_injected_panics();
    let fast = Arc::new(
        LegacyEngine::start(&isolated(assembly.clone(), "fail_every=5", 2))
            .await
            .expect("fast"),
    );
    // Its calls outlive their 5 ms: each one is a hung worker, killed and replaced.
    let mut slow_settings = isolated(assembly.clone(), "delay_ms=50", 1);
    slow_settings.call_timeout = Duration::from_millis(5);
    let slow = LegacyEngine::start(&slow_settings).await.expect("slow");
    let context = StudentContext {
        grade: 3,
        reading_level: 3.2,
    };
    let mut tally: BTreeMap<&'static str, usize> = BTreeMap::new();
    for i in 0..mixed::STRESS_CALLS {
        let outcome = match i % 100 {
            0 if i % 1000 == 0 => match slow.score(context, rows(2), &budget()).await {
                Err(LegacyError::Timeout { .. }) => "timed out (worker killed)",
                other => panic!("call {i}: expected a hung worker, got {other:?}"),
            },
            2 | 3 => {
                let engine = Arc::clone(&fast);
                let task =
                    tokio::spawn(async move { engine.score(context, rows(3), &budget()).await });
                task.abort();
                match task.await {
                    Err(e) if e.is_cancelled() => "future dropped",
                    Ok(_) => "finished before the drop",
                    Err(e) => panic!("call {i}: {e}"),
                }
            }
            4 if i % 500 == 4 => {
                let engine = Arc::clone(&fast);
                let task = tokio::spawn(async move {
                    let budget = budget();
                    let _ = engine.score(context, rows(1), &budget).await;
                    std::panic::panic_any(INJECTED_PANIC)
                });
                match task.await {
                    Err(e) if e.is_panic() => "caller panicked",
                    other => panic!("call {i}: expected a panic, got {other:?}"),
                }
            }
            5..=9 => {
                let mut bad = rows(1);
                bad[0].items_correct = bad[0].items_attempted + 1;
                match fast.score(context, bad, &budget()).await {
                    Err(LegacyError::Native {
                        status: NativeStatus::InvalidArgument,
                        message,
                        ..
                    }) if message.contains("rows[0].items_correct") => "invalid argument",
                    other => panic!("call {i}: expected an invalid argument, got {other:?}"),
                }
            }
            _ => match fast.score(context, rows(1 + i % 7), &budget()).await {
                Ok(scored) if scored.len() == 1 + i % 7 => "scored",
                Err(LegacyError::Native {
                    status: NativeStatus::Scoring,
                    ..
                }) => "scoring failed",
                other => panic!("call {i}: unexpected {other:?}"),
            },
        };
        *tally.entry(outcome).or_insert(0) += 1;
    }
    // Background calls (dropped futures, the panicking callers') finish first.
    testkit::wait_until("the background calls to finish", || {
        fast.stats().in_flight == 0
    })
    .await;
    let native = fast
        .stats()
        .native
        .expect("the workers report their counters");
    let isolation = fast.stats().isolation.expect("isolated");
    let slow_isolation = slow.stats().isolation.expect("isolated");
    println!(
        ".NET workers: outcomes {tally:?}; counters {native:?}; fast {isolation:?}; slow {slow_isolation:?}"
    );
    for kind in [
        "scored",
        "scoring failed",
        "invalid argument",
        "timed out (worker killed)",
        "caller panicked",
    ] {
        assert!(
            tally.get(kind).copied().unwrap_or(0) > 0,
            "no {kind}: {tally:?}"
        );
    }
    assert_eq!(tally.values().sum::<usize>(), mixed::STRESS_CALLS);
    assert_eq!(native.live_results(), 0, "{native:?}");
    assert_eq!(native.violations, 0, "{native:?}");
    assert_eq!(isolation.crashes + isolation.hangs, 0, "{isolation:?}");
    assert_eq!(
        slow_isolation.hangs, 10,
        "each timed-out call: {slow_isolation:?}"
    );
    for engine in [Arc::into_inner(fast).expect("no task holds it"), slow] {
        engine
            .shutdown(Duration::from_secs(5))
            .await
            .expect("shutdown");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_assembly_runtimeconfig_or_export_is_an_init_error_naming_it() {
    let Some(assembly) = assembly() else { return };
    let dir = std::env::temp_dir().join(format!("legacy-dotnet-init-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let message = |result: Result<LegacyEngine, LegacyError>| match result {
        Ok(_) => panic!("started"),
        Err(e) => e.to_string(),
    };

    let missing = dir.join("Missing.dll");
    let error = message(LegacyEngine::start(&in_process(missing.clone(), "")).await);
    assert!(
        error.contains("Missing.dll") && error.contains("no such assembly"),
        "{error}"
    );

    // The assembly alone, without its runtimeconfig.
    let alone = dir.join("alone");
    std::fs::create_dir_all(&alone).expect("dir");
    std::fs::copy(&assembly, alone.join("LegacyApi.dll")).expect("copy");
    let error = message(LegacyEngine::start(&in_process(alone.join("LegacyApi.dll"), "")).await);
    assert!(
        error.contains("LegacyApi.runtimeconfig.json beside it"),
        "{error}"
    );

    // An assembly that does not export the header's functions (its name is
    // not the one `Amira.Legacy.Exports` is found in), in a worker: a fresh
    // process, whose runtime is not started yet.
    let renamed = dir.join("Renamed.dll");
    std::fs::copy(&assembly, &renamed).expect("copy");
    std::fs::copy(
        assembly.with_extension("runtimeconfig.json"),
        renamed.with_extension("runtimeconfig.json"),
    )
    .expect("copy");
    let error = message(LegacyEngine::start(&isolated(renamed, "", 1)).await);
    assert!(
        error.contains("Amira.Legacy.Exports.la_abi_version"),
        "names the missing export: {error}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_malformed_output_mode_of_the_dotnet_component_is_a_typed_error() {
    let Some(assembly) = assembly() else { return };
    let _counters = native_counters_lock();
    let context = StudentContext {
        grade: 3,
        reading_level: 3.2,
    };
    for (mode, expected) in MALFORMED_MODES {
        let broken =
            LegacyEngine::start(&in_process(assembly.clone(), &format!("malformed={mode}")))
                .await
                .expect("open");
        let error = broken
            .score(context, rows(3), &budget())
            .await
            .expect_err(mode);
        let LegacyError::MalformedOutput(message) = &error else {
            panic!("{mode}: {error:?}")
        };
        assert_eq!(message, expected, "{mode}");
        let stats = broken.stats().native.expect("counters");
        broken
            .shutdown(Duration::from_secs(5))
            .await
            .expect("shutdown");
        // The malformed result was still freed, once.
        assert_eq!(
            (stats.live_results(), stats.violations),
            (0, 0),
            "{mode}: {stats:?}"
        );
    }
}
