//! Process isolation of the legacy component (`LEGACY_ISOLATION=process`):
//! crashes, hangs and leaks inside native code stay inside worker processes.
//! The workers are the crate's `legacy-worker` binary (the worker role alone),
//! loading the mocked shim with its crash, delay and leak modes.

#![allow(
    clippy::await_holding_lock,
    reason = "the tests hold SERIAL across awaits on purpose"
)]

mod support;

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use legacy_bridge::{
    BreakerState, Isolation, IsolationSettings, LegacyEngine, LegacyError, LegacySettings,
};
use testkit::procfs::{live_children, open_fds, zombies};

use support::{budget, grade3, rows, shim_settings};

/// The descriptors this process holds per worker: its stdin, its stdout, the
/// pipe its output is relayed from, and (tokio's reaping) a pidfd.
const WORKER_FDS: i64 = 4;

/// Descriptor and zombie counts are per process: these tests run one at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

fn isolated(
    config: &str,
    workers: usize,
    timeout: Duration,
    tune: impl FnOnce(&mut IsolationSettings),
) -> LegacySettings {
    let mut isolation = IsolationSettings {
        worker_path: Some(PathBuf::from(env!("CARGO_BIN_EXE_legacy-worker"))),
        ..IsolationSettings::default()
    };
    tune(&mut isolation);
    LegacySettings {
        max_concurrency: workers,
        call_timeout: timeout,
        isolation: Isolation::Process(isolation),
        ..shim_settings(config)
    }
}

/// Two workers that segfault on every call while the returned flag file
/// exists (a crash storm to switch off), restarting at once, with `cooldown`.
async fn crash_storm(
    name: &str,
    extra_config: &str,
    cooldown: Duration,
) -> (LegacyEngine, PathBuf) {
    let flag = std::env::temp_dir().join(format!("legacy-{name}-flag-{}", std::process::id()));
    std::fs::write(&flag, b"on").expect("flag");
    let config = format!("crash=segv;crash_flag={}{extra_config}", flag.display());
    let engine = LegacyEngine::start(&isolated(&config, 2, Duration::from_secs(5), |s| {
        s.breaker_cooldown = cooldown;
        s.restart_backoff = Duration::from_millis(1);
        s.restart_backoff_max = Duration::from_millis(5);
    }))
    .await
    .expect("start");
    (engine, flag)
}

/// Shuts the engine down and checks every worker was reaped.
async fn shut_down_leaving_no_zombie(engine: LegacyEngine) {
    engine
        .shutdown(Duration::from_secs(5))
        .await
        .expect("shutdown");
    testkit::wait_until("every worker reaped", || zombies().is_empty()).await;
}

fn kind(result: &Result<Vec<legacy_bridge::ScoredAssessment>, LegacyError>) -> &'static str {
    match result {
        Ok(_) => "ok",
        Err(LegacyError::WorkerCrashed) => "crashed",
        Err(LegacyError::Timeout { .. }) => "hung",
        Err(LegacyError::CircuitOpen { .. }) => "refused",
        Err(_) => "other",
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_every_fifty_calls_fails_only_those_calls_over_five_thousand() {
    let _serial = serial();
    let engine = LegacyEngine::start(&isolated(
        "crash=segv;crash_every=50",
        4,
        Duration::from_secs(5),
        |_| {},
    ))
    .await
    .expect("start");
    let started = Instant::now();
    let mut outcomes: HashMap<&'static str, u64> = HashMap::new();
    let mut max_workers_seen = 0;
    // Descriptors besides the workers' own (each worker: stdin, stdout, the pipe
    // its output is relayed from and, with tokio's pidfd reaping, a pidfd),
    // sampled every 500 calls: must not grow.
    let mut baseline: Vec<i64> = Vec::new();
    let budget = budget();
    let calls =
        futures_util::stream::iter(0..5000).map(|_| engine.score(grade3(), rows(3), &budget));
    let mut results = calls.buffer_unordered(8);
    let mut done = 0;
    while let Some(result) = results.next().await {
        *outcomes.entry(kind(&result)).or_insert(0) += 1;
        done += 1;
        let stats = engine.stats().isolation.expect("isolated");
        max_workers_seen = max_workers_seen.max(stats.workers);
        if done % 500 == 0 {
            let alive = engine.stats().isolation.expect("isolated").workers as i64;
            baseline.push(open_fds() as i64 - WORKER_FDS * alive);
        }
    }
    drop(results);
    let elapsed = started.elapsed();
    let stats = engine.stats().isolation.expect("isolated");
    println!(
        "5,000 calls in {elapsed:?}: {outcomes:?}; {stats:?}; descriptors besides workers, every 500 calls: {baseline:?}"
    );

    // Each worker crashes on its 50th call: ~100 crashes, each failing its call only.
    let crashed = outcomes.get("crashed").copied().unwrap_or(0);
    assert!((90..=100).contains(&crashed), "{outcomes:?}");
    assert_eq!(
        outcomes.get("ok").copied().unwrap_or(0) + crashed,
        5000,
        "{outcomes:?}"
    );
    assert_eq!(stats.crashes, crashed, "every crash detected: {stats:?}");
    assert_eq!(stats.breaker_opened, 0, "2% is no storm");
    assert!(max_workers_seen <= 4, "bounded: {max_workers_seen}");
    assert!(
        stats.started >= crashed,
        "each crashed worker replaced: {stats:?}"
    );
    // A sample can catch a worker counted before its pipes are open, or dead
    // and not yet buried, or reaped with its output pipe not yet read to its
    // end (one worker's descriptors either way, seen under load); a leak
    // would move every later sample up by ~10 per 500 calls (a crash every 50
    // calls). So compare the halves' medians, within one worker's descriptors.
    let median = |samples: &[i64]| {
        let mut sorted = samples.to_vec();
        sorted.sort_unstable();
        sorted.get(sorted.len() / 2).copied().unwrap_or(0)
    };
    let (first, last) = baseline.split_at(baseline.len() / 2);
    assert!(
        (median(last) - median(first)).abs() <= WORKER_FDS,
        "no descriptor growth: {baseline:?}"
    );

    engine
        .shutdown(Duration::from_secs(5))
        .await
        .expect("shutdown");
    assert_eq!(engine.stats().isolation.expect("isolated").workers, 0);
    assert!(zombies().is_empty(), "zombies: {:?}", zombies());
    // Only the runtime's own (the process driver's signal pipe...) stay: the
    // workers' descriptors all closed (their output pipes once read to the end).
    let most = median(&baseline);
    testkit::wait_until("the workers' descriptors closed", || {
        open_fds() as i64 <= most
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abort_is_contained_like_a_segfault() {
    let _serial = serial();
    let engine = LegacyEngine::start(&isolated(
        "crash=abort;crash_every=3",
        1,
        Duration::from_secs(5),
        |_| {},
    ))
    .await
    .expect("start");
    let mut kinds = Vec::new();
    for _ in 0..6 {
        kinds.push(kind(&engine.score(grade3(), rows(2), &budget()).await));
    }
    assert_eq!(kinds, ["ok", "ok", "crashed", "ok", "ok", "crashed"]);
    let stats = engine.stats().isolation.expect("isolated");
    assert_eq!(stats.crashes, 2);
    // The client's message names no signal (the log does).
    let message = LegacyError::WorkerCrashed.to_string();
    assert!(
        !message.contains("SIG") && !message.contains("signal"),
        "{message}"
    );
    engine
        .shutdown(Duration::from_secs(5))
        .await
        .expect("shutdown");
    assert!(zombies().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_worker_is_killed_at_the_call_timeout() {
    let _serial = serial();
    let timeout = Duration::from_millis(300);
    let engine = LegacyEngine::start(&isolated("delay_ms=20000", 2, timeout, |_| {}))
        .await
        .expect("start");
    let started = Instant::now();
    let result = engine.score(grade3(), rows(1), &budget()).await;
    let elapsed = started.elapsed();
    // The same answer as a call past its timeout in process: the bound that fired.
    let message = result.expect_err("hung").to_string();
    assert_eq!(
        message,
        "the legacy component did not answer within 300ms (LEGACY_CALL_TIMEOUT_MS)"
    );
    assert!(elapsed >= timeout, "not before its timeout: {elapsed:?}");
    let stats = engine.stats().isolation.expect("isolated");
    assert_eq!(
        (stats.hangs, stats.workers),
        (1, 0),
        "killed and reaped: {stats:?}"
    );
    assert!(zombies().is_empty(), "{:?}", zombies());
    engine
        .shutdown(Duration::from_secs(1))
        .await
        .expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_are_recycled_after_max_calls_and_past_max_rss() {
    let _serial = serial();
    let engine = LegacyEngine::start(&isolated("", 1, Duration::from_secs(5), |s| {
        s.max_calls = 10
    }))
    .await
    .expect("start");
    for _ in 0..35 {
        engine
            .score(grade3(), rows(2), &budget())
            .await
            .expect("scored");
    }
    let stats = engine.stats().isolation.expect("isolated");
    assert_eq!(stats.recycled, 3, "{stats:?}");
    assert_eq!(stats.started, 4, "{stats:?}");
    engine
        .shutdown(Duration::from_secs(5))
        .await
        .expect("shutdown");

    // A component that leaks 4 MiB per call, under a 40 MiB limit: replaced
    // before it grows past it, and every call still succeeds.
    let leaky = LegacyEngine::start(&isolated("leak_kib=4096", 1, Duration::from_secs(5), |s| {
        s.max_rss_kib = 40 * 1024
    }))
    .await
    .expect("start");
    for _ in 0..30 {
        leaky
            .score(grade3(), rows(1), &budget())
            .await
            .expect("scored");
    }
    let stats = leaky.stats().isolation.expect("isolated");
    println!("leaking worker: {stats:?}");
    assert!(stats.recycled >= 2, "{stats:?}");
    leaky
        .shutdown(Duration::from_secs(5))
        .await
        .expect("shutdown");
    assert!(zombies().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_breaker_opens_under_a_crash_storm_and_closes_after_its_cooldown() {
    let _serial = serial();
    let (engine, flag) = crash_storm("breaker", "", Duration::from_secs(2)).await;

    // The storm: every call kills its worker, until half the window has.
    let mut kinds = Vec::new();
    for _ in 0..12 {
        kinds.push(kind(&engine.score(grade3(), rows(1), &budget()).await));
    }
    assert_eq!(&kinds[..10], ["crashed"; 10]);
    assert_eq!(&kinds[10..], ["refused"; 2], "open: fail fast");
    let stats = engine.stats().isolation.expect("isolated");
    assert_eq!(stats.breaker, Some(BreakerState::Open));
    assert_eq!(stats.breaker_opened, 1);
    let started_while_open = stats.started;
    assert_eq!(
        kind(&engine.score(grade3(), rows(1), &budget()).await),
        "refused"
    );
    assert_eq!(
        engine.stats().isolation.expect("isolated").started,
        started_while_open,
        "no fork loop while open"
    );

    // The component recovers; once the cool-down is over, one trial call
    // closes the breaker (the calls before it are refused).
    std::fs::remove_file(&flag).expect("flag");
    let engine = &engine;
    testkit::wait_for("a trial call after the cool-down", || async {
        match kind(&engine.score(grade3(), rows(1), &budget()).await) {
            "refused" => false,
            other => {
                assert_eq!(other, "ok", "the trial's worker serves");
                true
            }
        }
    })
    .await;
    let stats = engine.stats().isolation.expect("isolated");
    assert_eq!(stats.breaker, Some(BreakerState::Closed), "{stats:?}");
    for _ in 0..5 {
        assert_eq!(
            kind(&engine.score(grade3(), rows(1), &budget()).await),
            "ok"
        );
    }
    engine
        .shutdown(Duration::from_secs(5))
        .await
        .expect("shutdown");
    assert!(zombies().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_library_that_does_not_load_fails_init_with_its_reason() {
    let _serial = serial();
    let mut settings = isolated("", 1, Duration::from_secs(5), |_| {});
    settings.lib_path = PathBuf::from("/nonexistent/liblegacy.so");
    let workers_dirs = || -> std::collections::BTreeSet<PathBuf> {
        let prefix = format!("legacy-workers-{}-", std::process::id());
        (std::fs::read_dir(std::env::temp_dir()).expect("temp dir"))
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
            .map(|e| e.path())
            .collect()
    };
    let before = workers_dirs();
    let error = LegacyEngine::start(&settings)
        .await
        .expect_err("no library");
    // The workers' directory made for the failed start is gone with it.
    let left: Vec<_> = workers_dirs().difference(&before).cloned().collect();
    assert!(left.is_empty(), "{left:?}");
    let message = error.to_string();
    assert!(matches!(error, LegacyError::WorkerInit(_)), "{error:?}");
    assert!(message.contains("/nonexistent/liblegacy.so"), "{message}");
    // Word for word what the same library says in process.
    let mut in_process = settings.clone();
    in_process.isolation = Isolation::InProcess;
    let same = LegacyEngine::start(&in_process)
        .await
        .expect_err("no library");
    assert_eq!(message, same.to_string());
    assert!(zombies().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_directories_left_by_killed_processes_neither_block_init_nor_pile_up() {
    let _serial = serial();
    let temp = std::env::temp_dir();
    // A process that was killed left its directory, with a file in it.
    let mut gone = std::process::Command::new("true").spawn().expect("spawn");
    let dead_pid = gone.id();
    gone.wait().expect("wait");
    let dead = temp.join(format!("legacy-workers-{dead_pid}-0"));
    std::fs::create_dir_all(&dead).expect("leftover");
    std::fs::write(dead.join("scratch"), b"x").expect("leftover file");
    // And names this process would take next are taken (the same pid, in a
    // later environment of the same /tmp).
    let taken: Vec<PathBuf> = (0..60)
        .map(|n| temp.join(format!("legacy-workers-{}-{n}", std::process::id())))
        .filter(|path| std::fs::create_dir(path).is_ok())
        .collect();
    let engine = LegacyEngine::start(&isolated("", 1, Duration::from_secs(5), |_| {}))
        .await
        .expect("init is not blocked by a leftover directory");
    assert_eq!(
        kind(&engine.score(grade3(), rows(1), &budget()).await),
        "ok"
    );
    assert!(!dead.exists(), "a dead process's directory is removed");
    engine
        .shutdown(Duration::from_secs(5))
        .await
        .expect("shutdown");
    for path in taken {
        let _ = std::fs::remove_dir(path);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trial_call_whose_caller_gives_up_still_decides_the_breaker() {
    let _serial = serial();
    let (engine, flag) = crash_storm("trial", ";delay_ms=800", Duration::from_millis(300)).await;
    for _ in 0..10 {
        assert_eq!(
            kind(&engine.score(grade3(), rows(1), &budget()).await),
            "crashed"
        );
    }
    assert_eq!(
        engine.stats().isolation.expect("isolated").breaker,
        Some(BreakerState::Open)
    );
    std::fs::remove_file(&flag).expect("flag");
    // The trial call's caller gives up (its future is dropped) while the
    // worker runs it: the first call admitted once the cool-down is over
    // (a refused call answers at once, within the 100 ms).
    let running = &engine;
    testkit::wait_for("the cool-down to end and a trial call to start", || async {
        let budget = budget();
        let call = running.score(grade3(), rows(1), &budget);
        match tokio::time::timeout(Duration::from_millis(100), call).await {
            Err(_still_running) => true,
            Ok(Err(LegacyError::CircuitOpen { .. })) => false,
            Ok(other) => panic!("a refusal or a running trial, got {other:?}"),
        }
    })
    .await;
    // The trial goes on without its caller (its worker is not killed): until
    // it ends, the breaker waits for it...
    assert_eq!(
        kind(&engine.score(grade3(), rows(1), &budget()).await),
        "refused"
    );
    // ...and its outcome closes it: never wedged, never decided by a caller's patience.
    testkit::wait_until("the abandoned trial to decide", || {
        engine.stats().isolation.expect("isolated").breaker == Some(BreakerState::Closed)
    })
    .await;
    assert_eq!(
        kind(&engine.score(grade3(), rows(1), &budget()).await),
        "ok"
    );
    assert_eq!(engine.stats().isolation.expect("isolated").hangs, 0);
    shut_down_leaving_no_zombie(engine).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_that_died_while_idle_is_replaced_and_the_call_succeeds() {
    let _serial = serial();
    let engine = LegacyEngine::start(&isolated("", 1, Duration::from_secs(5), |_| {}))
        .await
        .expect("start");
    assert_eq!(
        kind(&engine.score(grade3(), rows(1), &budget()).await),
        "ok"
    );
    let workers = live_children();
    assert_eq!(workers.len(), 1, "{workers:?}");
    // The idle worker is killed behind the supervisor's back.
    let killed = std::process::Command::new("kill")
        .args(["-KILL", &workers[0].to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    testkit::wait_until(
        "the killed worker to be dead (a zombie until reaped)",
        || zombies().contains(&workers[0]),
    )
    .await;
    // The next call finds it dead when it writes the request, buries it,
    // starts a new worker and sends the call there: the caller sees no error.
    assert_eq!(
        kind(&engine.score(grade3(), rows(2), &budget()).await),
        "ok"
    );
    let stats = engine.stats().isolation.expect("isolated");
    assert_eq!((stats.started, stats.crashes), (2, 1), "{stats:?}");
    assert_eq!(stats.breaker, Some(BreakerState::Closed));
    assert_ne!(live_children(), workers, "a new worker serves");
    let native = engine
        .stats()
        .native
        .expect("the workers report their counters");
    assert_eq!(
        (native.live_results(), native.violations),
        (0, 0),
        "{native:?}"
    );
    shut_down_leaving_no_zombie(engine).await;
}
