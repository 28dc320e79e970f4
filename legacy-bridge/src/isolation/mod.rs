//! Process isolation (`LEGACY_ISOLATION=process`): the legacy component runs
//! in worker processes, so a segfault, an abort or a hang in native code
//! fails one call instead of the whole Lambda environment.
//!
//! * [`supervisor`]: call slots, the call's three clocks (waiting, starting,
//!   running), replacement and recycling, shutdown;
//! * [`process`]: one worker process, in its own process group and
//!   directory: start until `Ready`, one exchange, reaping, retirement;
//! * [`output`]: what a worker prints, passed on as data of the function's
//!   own log lines, bounded;
//! * [`breaker`]: the circuit breaker, a pure state machine;
//! * [`stats`]: the supervisor's counters and the workers' native counters.
//!
//! The supervisor keeps at most `max_concurrency` workers, one call at a time
//! each. A reply puts the worker back in its slot, unless it has served
//! `max_calls` calls or its RSS passed `max_rss`: then it is retired (stdin
//! closed, so it closes its engine and exits) and replaced: the
//! max-requests pattern of pre-fork servers, containing native leaks. A
//! worker that dies (crash, exit, hang past the call timeout, invalid reply,
//! failed start) fails its call; the next start waits (exponential backoff);
//! when half of the last calls killed their worker the breaker opens and
//! calls fail fast (`CircuitOpen`) for a cool-down, then one trial call
//! decides. Every child is waited for: no zombies, no descriptor growth.

mod breaker;
mod directory;
mod output;
mod process;
mod stats;
mod supervisor;

use std::path::PathBuf;
use std::time::Duration;

pub(crate) use supervisor::Supervisor;

pub use breaker::BreakerState;
pub use process::describe_exit;
pub use stats::IsolationStats;

/// How the supervisor runs workers (`LEGACY_WORKER_*`, `LEGACY_BREAKER_*`).
#[derive(Debug, Clone, PartialEq)]
pub struct IsolationSettings {
    /// `LEGACY_WORKER_PATH`: the executable started with `--legacy-worker`
    /// (default: this process's own executable).
    pub worker_path: Option<PathBuf>,
    /// `LEGACY_WORKER_MAX_CALLS`: calls before a worker is replaced (default 10,000).
    pub max_calls: u64,
    /// `LEGACY_WORKER_MAX_RSS_MB`: resident size past which a worker is
    /// replaced. Default: derived from the function's memory (see
    /// [`worker_rss_limit_kib`]), 200 MB outside Lambda.
    pub max_rss_kib: u64,
    /// `LEGACY_WORKER_MAX_DATA_MB`: a worker's private writable memory
    /// (`RLIMIT_DATA`), the bound that holds during a call (an allocation
    /// past it fails). Default: derived from the function's memory (see
    /// [`worker_data_limit_mib`]), 1,024 MiB outside Lambda.
    pub max_data_mib: u64,
    /// `LEGACY_WORKER_START_TIMEOUT_MS`: from exec to `Ready` (default 5,000).
    pub start_timeout: Duration,
    /// `LEGACY_BREAKER_COOLDOWN_MS`: how long the open breaker refuses calls (default 10,000).
    pub breaker_cooldown: Duration,
    /// The breaker's window (calls) and how many worker deaths in it open it.
    pub breaker_window: usize,
    pub breaker_threshold: usize,
    /// Backoff before starting a worker after a death: base, doubled per
    /// consecutive death, capped.
    pub restart_backoff: Duration,
    pub restart_backoff_max: Duration,
}

impl Default for IsolationSettings {
    fn default() -> Self {
        IsolationSettings {
            worker_path: None,
            max_calls: 10_000,
            max_rss_kib: 200 * 1024,
            max_data_mib: 1024,
            start_timeout: Duration::from_secs(5),
            breaker_cooldown: Duration::from_secs(10),
            breaker_window: 20,
            breaker_threshold: 10,
            restart_backoff: Duration::from_millis(10),
            restart_backoff_max: Duration::from_secs(1),
        }
    }
}

/// What the function's own process is given of the memory before the
/// workers share the rest: its measured RSS is ~20 MB, batches of large pages
/// need headroom on top.
pub const FUNCTION_RESERVE_MB: u64 = 64;
/// No worker limit below this: the mocked component's workers use ~6 MB.
pub const MIN_WORKER_RSS_MB: u64 = 16;

/// The default RSS limit of one worker (KiB) on a function of `memory_mb`
/// (`AWS_LAMBDA_FUNCTION_MEMORY_SIZE`) with `workers` workers: what is left
/// after the function's own share ([`FUNCTION_RESERVE_MB`], or a quarter of
/// the memory if more), split evenly, at least [`MIN_WORKER_RSS_MB`]. So on
/// 256 MB with 4 workers: (256 − 64) / 4 = 48 MB each, and the sandbox is
/// never killed before a worker reaches its own limit.
pub fn worker_rss_limit_kib(memory_mb: u64, workers: usize) -> u64 {
    let reserve = FUNCTION_RESERVE_MB.max(memory_mb / 4);
    let share = memory_mb.saturating_sub(reserve) / workers.max(1) as u64;
    share.max(MIN_WORKER_RSS_MB) * 1024
}

/// The default `RLIMIT_DATA` of a worker (MiB) on a function of
/// `memory_mb`: all the memory but the function's own share (as in
/// [`worker_rss_limit_kib`]), so that one call, however it allocates, cannot
/// take what the function needs; several workers together past the
/// environment's memory meet the OOM killer, which takes a worker first
/// (`oom_score_adj` 1000). At least [`MIN_WORKER_DATA_MB`].
pub fn worker_data_limit_mib(memory_mb: u64) -> u64 {
    let reserve = FUNCTION_RESERVE_MB.max(memory_mb / 4);
    memory_mb.saturating_sub(reserve).max(MIN_WORKER_DATA_MB)
}

/// No data limit below this: a .NET worker's private writable mappings
/// (`VmData`) reach about 43 MiB (seen while `legacy_dotnet` runs).
pub const MIN_WORKER_DATA_MB: u64 = 64;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worker_memory_follows_the_function_memory() {
        assert_eq!(worker_rss_limit_kib(256, 4), 48 * 1024);
        assert_eq!(worker_rss_limit_kib(1024, 4), 192 * 1024);
        assert_eq!(worker_rss_limit_kib(128, 4), 16 * 1024, "the floor");
        assert_eq!(worker_rss_limit_kib(3008, 1), (3008 - 752) * 1024);
        assert_eq!(worker_data_limit_mib(256), 192);
        assert_eq!(worker_data_limit_mib(10_240), 7_680);
        assert_eq!(worker_data_limit_mib(128), 64, "the floor");
    }
}
