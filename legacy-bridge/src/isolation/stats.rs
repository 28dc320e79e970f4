//! What the supervisor counts: its own events (workers started, deaths by
//! kind, recycling, refusals) and the component's handle counters that the
//! workers report with every reply, added up across workers.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use super::breaker::BreakerState;
use crate::NativeStats;

/// What the supervisor did over the life of the process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct IsolationStats {
    /// Worker processes alive now (idle or running a call).
    pub workers: u64,
    pub max_workers: u64,
    pub started: u64,
    /// Workers that died by a signal (SIGSEGV, SIGABRT...), in a call or idle.
    pub crashes: u64,
    /// Workers that exited on their own, in a call or idle.
    pub exits: u64,
    /// Workers killed for running a call past `LEGACY_CALL_TIMEOUT_MS`.
    pub hangs: u64,
    /// Workers killed for an invalid reply.
    pub invalid_replies: u64,
    /// Workers replaced after `max_calls` calls or past `max_rss`.
    pub recycled: u64,
    /// Starts that failed (spawn, `InitFailed`, death or silence before `Ready`).
    pub start_failures: u64,
    /// Calls refused by the open breaker.
    pub refused: u64,
    pub breaker_opened: u64,
    pub breaker: Option<BreakerState>,
}

/// The event counters (lock-free).
#[derive(Debug, Default)]
pub(super) struct SupervisorCounters {
    pub workers: AtomicU64,
    pub started: AtomicU64,
    pub crashes: AtomicU64,
    pub exits: AtomicU64,
    pub hangs: AtomicU64,
    pub invalid_replies: AtomicU64,
    pub recycled: AtomicU64,
    pub start_failures: AtomicU64,
    pub refused: AtomicU64,
    pub breaker_opened: AtomicU64,
}

impl SupervisorCounters {
    pub fn add(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn snapshot(&self, max_workers: usize, breaker: BreakerState) -> IsolationStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        IsolationStats {
            workers: get(&self.workers),
            max_workers: max_workers as u64,
            started: get(&self.started),
            crashes: get(&self.crashes),
            exits: get(&self.exits),
            hangs: get(&self.hangs),
            invalid_replies: get(&self.invalid_replies),
            recycled: get(&self.recycled),
            start_failures: get(&self.start_failures),
            refused: get(&self.refused),
            breaker_opened: get(&self.breaker_opened),
            breaker: Some(breaker),
        }
    }
}

/// The workers' handle counters together: each live worker's last report,
/// plus the last reports of the workers that ended. A worker that ended took
/// its handles with it (its engine closed on retirement, or the kernel
/// reclaimed its memory after a crash), so its engines count as closed; its
/// results were all freed before its last report, which is written after
/// the call's free.
#[derive(Debug, Default)]
pub(super) struct NativeTotals {
    inner: Mutex<NativeInner>,
}

#[derive(Debug, Default)]
struct NativeInner {
    live: HashMap<u32, NativeStats>,
    ended: NativeStats,
    reported: bool,
}

fn add(into: &mut NativeStats, from: &NativeStats) {
    into.engines_opened += from.engines_opened;
    into.engines_closed += from.engines_closed;
    into.results_opened += from.results_opened;
    into.results_closed += from.results_closed;
    into.score_calls += from.score_calls;
    into.violations += from.violations;
}

impl NativeTotals {
    fn lock(&self) -> std::sync::MutexGuard<'_, NativeInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A live worker's latest report.
    pub fn report(&self, pid: u32, stats: NativeStats) {
        let mut inner = self.lock();
        inner.reported = true;
        inner.live.insert(pid, stats);
    }

    /// A worker ended: its last report moves to the totals of ended workers.
    pub fn ended(&self, pid: u32) {
        let mut inner = self.lock();
        if let Some(mut last) = inner.live.remove(&pid) {
            last.engines_closed = last.engines_opened;
            add(&mut inner.ended, &last);
        }
    }

    /// The sum, or `None` if no worker ever reported (a library without `la_stats_get`).
    pub fn total(&self) -> Option<NativeStats> {
        let inner = self.lock();
        if !inner.reported {
            return None;
        }
        let mut total = inner.ended;
        for stats in inner.live.values() {
            add(&mut total, stats);
        }
        Some(total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(results: u64, freed: u64, violations: u64) -> NativeStats {
        NativeStats {
            engines_opened: 1,
            engines_closed: 0,
            results_opened: results,
            results_closed: freed,
            score_calls: results,
            violations,
        }
    }

    #[test]
    fn live_workers_and_ended_ones_add_up() {
        let totals = NativeTotals::default();
        assert_eq!(totals.total(), None);
        totals.report(10, report(5, 5, 0));
        totals.report(11, report(3, 3, 0));
        totals.report(10, report(7, 7, 1));
        let sum = totals.total().expect("reported");
        assert_eq!((sum.results_opened, sum.live_results()), (10, 0));
        assert_eq!((sum.live_engines(), sum.violations), (2, 1));
        totals.ended(10);
        let sum = totals.total().expect("reported");
        assert_eq!(
            sum.live_engines(),
            1,
            "the ended worker's engine went with it"
        );
        assert_eq!((sum.results_opened, sum.violations), (10, 1));
        totals.ended(10);
        assert_eq!(totals.total().map(|s| s.results_opened), Some(10));
    }
}
