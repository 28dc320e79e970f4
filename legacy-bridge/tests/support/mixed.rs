//! The mixed workload of the bridge's stress tests, run against any
//! implementation of the C ABI (the C++ mock, the .NET component): successes,
//! scoring errors, invalid arguments, timeouts, dropped futures and panics in
//! the calling task, 10,000 calls.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use legacy_bridge::{
    AssessmentType, Isolation, LegacyEngine, LegacyError, LegacySettings, NativeStats,
    NativeStatus, library_stats,
};

use super::{INJECTED_PANIC, budget, grade3, quiet_injected_panics, row, rows, settings_with};

/// Calls in the mixed-outcome stress tests (the figure).
pub const STRESS_CALLS: usize = 10_000;

const COMPREHENSION: AssessmentType = AssessmentType::ReadingComprehension;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum MixOutcome {
    Scored,
    ScoringFailed,
    InvalidArgument,
    TimedOut,
    Saturated,
    FutureDropped,
    TaskPanicked,
    /// A slow call that completed before its timeout fired: possible when the
    /// scheduler runs late (valgrind), and as clean as any other outcome.
    ScoredLate,
}

/// One call of the mixed workload; `i` picks the kind.
pub async fn call(i: usize, fast: Arc<LegacyEngine>, slow: Arc<LegacyEngine>) -> MixOutcome {
    match i % 100 {
        // The slow engine answers after 20 ms; its calls time out after 5 ms.
        0 | 1 => slow_outcome(i, slow.score(grade3(), rows(2), &budget()).await),
        // A future dropped while its native call runs: right after its first
        // poll started the call (a timer here would race the call's own 5 ms
        // timeout on a loaded machine; a thread stalled inside that one poll
        // may still see the call end in it).
        2 | 3 => {
            let budget = budget();
            let mut call = Box::pin(slow.score(grade3(), rows(3), &budget));
            match poll_once(&mut call).await {
                Poll::Pending => MixOutcome::FutureDropped,
                Poll::Ready(result) => slow_outcome(i, result),
            }
        }
        // The calling task panics while its native call runs (after the
        // first poll started it, as above).
        4 if i % 500 == 4 => {
            let task = tokio::spawn(async move {
                let budget = budget();
                let mut call = Box::pin(slow.score(grade3(), rows(1), &budget));
                match poll_once(&mut call).await {
                    Poll::Ready(result) => result.map(|_| ()),
                    Poll::Pending => std::panic::panic_any(INJECTED_PANIC),
                }
            });
            match task.await {
                Err(e) if e.is_panic() => MixOutcome::TaskPanicked,
                Ok(result) => slow_outcome(i, result),
                Err(other) => panic!("call {i}: expected a panic, got {other:?}"),
            }
        }
        // A row the component rejects: items_correct > items_attempted.
        5..=9 => match fast
            .score(
                grade3(),
                vec![row("bad", COMPREHENSION, 10, 11, 60)],
                &budget(),
            )
            .await
        {
            Err(LegacyError::Native {
                status: NativeStatus::InvalidArgument,
                message,
                ..
            }) => {
                assert!(message.contains("rows[0].items_correct"), "{message}");
                MixOutcome::InvalidArgument
            }
            other => panic!("call {i}: expected an invalid-argument error, got {other:?}"),
        },
        // The fast engine fails every 5th call it receives.
        _ => match fast.score(grade3(), rows(1 + i % 7), &budget()).await {
            Ok(scored) => {
                assert_eq!(scored.len(), 1 + i % 7);
                MixOutcome::Scored
            }
            Err(LegacyError::Native {
                status: NativeStatus::Scoring,
                ..
            }) => MixOutcome::ScoringFailed,
            Err(other) => panic!("call {i}: unexpected {other:?}"),
        },
    }
}

/// What a finished call of the slow engine (20 ms, timing out after 5) ended with.
fn slow_outcome<T: std::fmt::Debug>(i: usize, result: Result<T, LegacyError>) -> MixOutcome {
    match result {
        Err(LegacyError::Timeout { .. }) => MixOutcome::TimedOut,
        Err(LegacyError::Saturated { .. }) => MixOutcome::Saturated,
        Ok(_) => MixOutcome::ScoredLate,
        other => panic!("call {i}: expected a timeout, got {other:?}"),
    }
}

/// Polls `call` once and returns what it said: `Pending` once it has started
/// and not finished.
async fn poll_once<F: Future + Unpin>(call: &mut F) -> Poll<F::Output> {
    std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut *call).poll(cx))).await
}

/// The two engines of the mix over the component at `lib`, in this process:
/// `fast` fails every 5th call, `slow` answers after 20 ms and times out after 5.
pub async fn open_engines(lib: &Path) -> (Arc<LegacyEngine>, Arc<LegacyEngine>) {
    quiet_injected_panics();
    let settings = |config: &str, workers, timeout| LegacySettings {
        lib_path: lib.to_path_buf(),
        isolation: Isolation::InProcess,
        ..settings_with(config, workers, timeout)
    };
    let fast = LegacyEngine::start(&settings("fail_every=5", 4, Duration::from_secs(10)))
        .await
        .expect("fast");
    let slow = LegacyEngine::start(&settings("delay_ms=20", 8, Duration::from_millis(5)))
        .await
        .expect("slow");
    (Arc::new(fast), Arc::new(slow))
}

/// The mix's calls one after another.
pub async fn sequential(
    fast: &Arc<LegacyEngine>,
    slow: &Arc<LegacyEngine>,
) -> BTreeMap<MixOutcome, usize> {
    let mut tally = BTreeMap::new();
    for i in 0..STRESS_CALLS {
        let outcome = call(i, Arc::clone(fast), Arc::clone(slow)).await;
        *tally.entry(outcome).or_insert(0) += 1;
    }
    tally
}

/// The mix's calls from `tasks` tasks at once.
pub async fn concurrent(
    fast: &Arc<LegacyEngine>,
    slow: &Arc<LegacyEngine>,
    tasks: usize,
) -> BTreeMap<MixOutcome, usize> {
    let running: Vec<_> = (0..tasks)
        .map(|task| {
            let (fast, slow) = (Arc::clone(fast), Arc::clone(slow));
            tokio::spawn(async move {
                let mut outcomes = Vec::new();
                for i in (task..STRESS_CALLS).step_by(tasks) {
                    outcomes.push(call(i, Arc::clone(&fast), Arc::clone(&slow)).await);
                }
                outcomes
            })
        })
        .collect();
    let mut tally = BTreeMap::new();
    for task in running {
        for outcome in task.await.expect("worker task") {
            *tally.entry(outcome).or_insert(0) += 1;
        }
    }
    tally
}

pub async fn close_engines(fast: Arc<LegacyEngine>, slow: Arc<LegacyEngine>) {
    for engine in [fast, slow] {
        let engine = Arc::into_inner(engine).expect("no task holds the engine any more");
        engine
            .shutdown(Duration::from_secs(10))
            .await
            .expect("engine closes once, cleanly");
    }
}

/// The component's process-wide counters (the library at `lib`, loaded in this process).
pub fn counters(lib: &Path) -> NativeStats {
    library_stats(lib)
        .expect("the component loads")
        .expect("the component exports la_stats_get")
}

/// Every outcome of the mix happened, each engine closed once, and the
/// component at `lib` holds no live handle and saw no violation.
pub fn check(label: &str, tally: &BTreeMap<MixOutcome, usize>, lib: &Path, before: NativeStats) {
    assert_eq!(tally.values().sum::<usize>(), STRESS_CALLS, "{tally:?}");
    for kind in [
        MixOutcome::Scored,
        MixOutcome::ScoringFailed,
        MixOutcome::InvalidArgument,
        MixOutcome::TimedOut,
        MixOutcome::FutureDropped,
        MixOutcome::TaskPanicked,
    ] {
        assert!(
            tally.get(&kind).copied().unwrap_or(0) > 0,
            "{label}: no {kind:?} in {tally:?}"
        );
    }
    let after = counters(lib);
    println!(
        "{label}: outcomes {tally:?}; component counters delta: engines opened {} closed {}, results opened {} closed {}, score calls {}, live handles {}, violations {}",
        after.engines_opened - before.engines_opened,
        after.engines_closed - before.engines_closed,
        after.results_opened - before.results_opened,
        after.results_closed - before.results_closed,
        after.score_calls - before.score_calls,
        after.live_handles(),
        after.violations,
    );
    assert_eq!(
        after.engines_closed - before.engines_closed,
        2,
        "each engine closed exactly once"
    );
    assert!(after.results_opened - before.results_opened >= tally[&MixOutcome::Scored] as u64);
    assert_eq!(after.violations, 0, "{label}: violations in {after:?}");
    assert_eq!(
        after.live_results(),
        0,
        "{label}: live results in {after:?}"
    );
    assert_eq!(
        after.live_engines(),
        0,
        "{label}: live engines in {after:?}"
    );
}
