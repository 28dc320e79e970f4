//! legacy-bridge: the legacy assessment component, a native library with a C
//! ABI (`legacy-shim/include/legacy_assessment.h`), loaded with libloading, in
//! this process or in sandboxed worker processes. Every raw pointer of the
//! project lives in this crate.
//!
//! The face is small: [`LegacyEngine::start`], [`LegacyEngine::score`],
//! [`LegacyEngine::stats`], [`LegacyEngine::shutdown`], and
//! [`run_worker_if_requested`], which every binary that may host workers calls
//! first thing in `main`.
//!
//! Layers, inside out:
//! * `abi`, `ffi`, `clr`: the C types, the loaded library (every symbol
//!   resolved at load) or the hosted .NET assembly;
//! * `handle`: one owner per native handle, released exactly once;
//! * `engine`: the async face ([`LegacyEngine`]): in process on tokio's
//!   blocking pool, with a concurrency limit and a per-call timeout;
//! * [`isolation`], [`worker`], [`protocol`], `sandbox`: the same face with the
//!   component in worker processes (`LEGACY_ISOLATION=process`, the default),
//!   so a crash in native code fails one call, not the process.
//!
//! ```no_run
//! # async fn demo() -> Result<(), legacy_bridge::LegacyError> {
//! use legacy_bridge::*;
//! let settings = LegacySettings {
//!     lib_path: "/opt/lib/liblegacy_assessment.so".into(),
//!     ..LegacySettings::default()
//! };
//! let engine = LegacyEngine::start(&settings).await?;
//! let context = StudentContext { grade: 3, reading_level: 3.2 };
//! let rows = vec![AssessmentRow {
//!     id: "a-1".into(),
//!     assessment_type: AssessmentType::OralReadingFluency,
//!     administered_at_unix_ms: 1_700_000_000_000,
//!     raw_score: 110.0,
//!     items_attempted: 115,
//!     items_correct: 110,
//!     duration_seconds: 60,
//! }];
//! let budget = assessments_common::budget::Budget::after(std::time::Duration::from_secs(5));
//! let scored = engine.score(context, rows, &budget).await?;
//! assert_eq!(scored[0].percentile, 50.0);
//! engine.shutdown(std::time::Duration::from_secs(5)).await
//! # }
//! ```

mod abi;
mod clr;
mod engine;
mod error;
mod ffi;
mod handle;
pub mod isolation;
pub mod protocol;
mod sandbox;
mod slots;
mod types;
pub mod worker;

use std::path::{Path, PathBuf};
use std::time::Duration;

use assessments_common::config::{ConfigError, Env, InsecureSettings};

pub use abi::NativeStats;
pub use engine::{LegacyEngine, LegacyStats};
pub use error::{LegacyError, NativeStatus};
pub use ffi::ABI_VERSION;
pub use isolation::{BreakerState, IsolationSettings, IsolationStats};
pub use sandbox::{Confinement, Writes};
pub use types::{
    AssessmentRow, AssessmentType, Band, Flags, MAX_GRADE, MAX_ID_LEN, MAX_ROWS_PER_CALL,
    ScoredAssessment, StudentContext,
};
pub use worker::run_worker_if_requested;

/// Most native calls a process allows at once (`LEGACY_MAX_CONCURRENCY` upper bound).
pub const MAX_CONCURRENCY_LIMIT: usize = 256;

/// How to load and run the legacy component.
#[derive(Debug, Clone, PartialEq)]
pub struct LegacySettings {
    /// `LEGACY_LIB_PATH` (required): the shared library, or a .NET assembly.
    /// No default: this build carries no component of its own (the mock
    /// the tests load is the `legacy-shim` crate's).
    pub lib_path: PathBuf,
    /// `LEGACY_CONFIG`: the engine's configuration string.
    pub engine_config: String,
    /// `LEGACY_MAX_CONCURRENCY`: native calls at once (1..=256). Default: on
    /// Lambda, from the function's memory ([`default_concurrency`]); 4 elsewhere.
    pub max_concurrency: usize,
    /// `LEGACY_CALL_TIMEOUT_MS`: one call's own time, from when it has a slot
    /// (waiting for one is bounded by the invocation's budget) (default 5000).
    pub call_timeout: Duration,
    /// `LEGACY_ISOLATION`: `process` (worker processes, the default) or `in-process`.
    pub isolation: Isolation,
}

/// Where the component runs.
#[derive(Debug, Clone, PartialEq)]
pub enum Isolation {
    /// In this process: fastest; a crash in native code ends the process.
    InProcess,
    /// In worker processes: a crash fails one call.
    Process(IsolationSettings),
}

impl Default for LegacySettings {
    fn default() -> Self {
        LegacySettings {
            lib_path: PathBuf::new(),
            engine_config: String::new(),
            max_concurrency: 4,
            call_timeout: Duration::from_secs(5),
            // The soak (docs/PERFORMANCE.md) measured ~60 µs per call for isolation;
            // a crash in the real component would otherwise cost the environment.
            isolation: Isolation::Process(IsolationSettings::default()),
        }
    }
}

impl LegacySettings {
    /// Reads the `LEGACY_*` settings: `LEGACY_LIB_PATH` is required, a
    /// missing other one takes its default, an invalid one is an error naming
    /// the variable. `in-process` is an insecure setting: on Lambda it is
    /// refused unless `insecure` allows it (the component would share the
    /// function's memory, credentials and fate).
    pub fn from_env(env: &Env, insecure: InsecureSettings) -> Result<Self, ConfigError> {
        let defaults = LegacySettings::default();
        let memory_mb = env.number("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", 1..=1_048_576)?;
        let max_concurrency = env
            .number("LEGACY_MAX_CONCURRENCY", 1..=MAX_CONCURRENCY_LIMIT as u64)?
            .map(|n| n as usize)
            .or(memory_mb.map(default_concurrency))
            .unwrap_or(defaults.max_concurrency);
        Ok(LegacySettings {
            lib_path: PathBuf::from(env.required("LEGACY_LIB_PATH")?),
            engine_config: env
                .string("LEGACY_CONFIG")?
                .unwrap_or(defaults.engine_config),
            max_concurrency,
            call_timeout: env
                .number("LEGACY_CALL_TIMEOUT_MS", 1..=600_000)?
                .map_or(defaults.call_timeout, Duration::from_millis),
            isolation: match env.string("LEGACY_ISOLATION")?.as_deref() {
                Some("in-process") => {
                    insecure.check("LEGACY_ISOLATION", true, || {
                        "in-process runs the legacy component inside the function: it can read \
                         the function's credentials and memory, and a crash in it ends the \
                         execution environment"
                            .to_owned()
                    })?;
                    Isolation::InProcess
                }
                None | Some("process") => {
                    Isolation::Process(isolation_from_env(env, max_concurrency, memory_mb)?)
                }
                Some(_) => {
                    return Err(ConfigError::Invalid {
                        name: "LEGACY_ISOLATION",
                        reason: "expected in-process or process".to_owned(),
                    });
                }
            },
        })
    }
}

/// The memory at which Lambda gives a function one vCPU; its CPU share
/// grows in proportion (six at 10,240 MB).
pub const MB_PER_VCPU: u64 = 1769;

/// The default of `LEGACY_MAX_CONCURRENCY` on a function of `memory_mb`: one
/// call per vCPU Lambda gives it (the component's work is CPU: more at once
/// only share the same CPU), plus one, so that a slow or hung call does not
/// hold up the rest; at most 4. So 2 up to 1,769 MB (where each worker also
/// counts against a small memory), 3 up to 3,538 MB, then 4.
pub fn default_concurrency(memory_mb: u64) -> usize {
    let vcpus = memory_mb.div_ceil(MB_PER_VCPU).max(1);
    (vcpus as usize + 1).min(4)
}

/// Process isolation's settings for `workers` workers on a function of
/// `memory_mb` (`AWS_LAMBDA_FUNCTION_MEMORY_SIZE`, `None` off Lambda).
fn isolation_from_env(
    env: &Env,
    workers: usize,
    memory_mb: Option<u64>,
) -> Result<IsolationSettings, ConfigError> {
    let defaults = IsolationSettings::default();
    // Explicit, or derived from the memory Lambda gives the function.
    let max_rss_kib = match env.number("LEGACY_WORKER_MAX_RSS_MB", 1..=65_536)? {
        Some(mb) => mb * 1024,
        None => memory_mb.map_or(defaults.max_rss_kib, |mb| {
            isolation::worker_rss_limit_kib(mb, workers)
        }),
    };
    let max_data_mib = match env.number("LEGACY_WORKER_MAX_DATA_MB", 16..=1_048_576)? {
        Some(mb) => mb,
        None => memory_mb.map_or(defaults.max_data_mib, isolation::worker_data_limit_mib),
    };
    Ok(IsolationSettings {
        worker_path: env.string("LEGACY_WORKER_PATH")?.map(PathBuf::from),
        max_calls: env
            .number("LEGACY_WORKER_MAX_CALLS", 1..=100_000_000)?
            .unwrap_or(defaults.max_calls),
        max_rss_kib,
        max_data_mib,
        start_timeout: env
            .number("LEGACY_WORKER_START_TIMEOUT_MS", 1..=600_000)?
            .map_or(defaults.start_timeout, Duration::from_millis),
        breaker_cooldown: env
            .number("LEGACY_BREAKER_COOLDOWN_MS", 1..=3_600_000)?
            .map_or(defaults.breaker_cooldown, Duration::from_millis),
        ..defaults
    })
}

/// Reads the handle counters of the library at `lib_path` without opening an
/// engine: loading a library this process already loaded yields the same
/// instance, so these are the counters of the engines it runs. `None` when the
/// library does not export them.
pub fn library_stats(lib_path: &Path) -> Result<Option<NativeStats>, LegacyError> {
    Ok(ffi::NativeLibrary::load(lib_path)?.stats())
}

impl NativeStats {
    /// Handles opened and not yet released, engines and results together.
    pub fn live_handles(&self) -> u64 {
        (self.engines_opened + self.results_opened)
            .saturating_sub(self.engines_closed + self.results_closed)
    }

    pub fn live_results(&self) -> u64 {
        self.results_opened.saturating_sub(self.results_closed)
    }

    pub fn live_engines(&self) -> u64 {
        self.engines_opened.saturating_sub(self.engines_closed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn isolation_is_the_default_and_reads_its_settings() {
        let env = Env::from_pairs([
            ("LEGACY_LIB_PATH", "/opt/lib/liblegacy_assessment.so"),
            ("LEGACY_WORKER_PATH", "/opt/bin/worker"),
            ("LEGACY_WORKER_MAX_CALLS", "500"),
            ("LEGACY_WORKER_MAX_RSS_MB", "64"),
        ]);
        let Isolation::Process(isolation) =
            LegacySettings::from_env(&env, InsecureSettings::ALLOWED)
                .expect("settings")
                .isolation
        else {
            panic!("process isolation is the default")
        };
        assert_eq!(
            isolation.worker_path,
            Some(PathBuf::from("/opt/bin/worker"))
        );
        assert_eq!(
            (isolation.max_calls, isolation.max_rss_kib),
            (500, 64 * 1024)
        );
        // Without an explicit limit, the function's memory is shared out.
        let lambda = Env::from_pairs([
            ("LEGACY_LIB_PATH", "/opt/lib/liblegacy_assessment.so"),
            ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256"),
            ("LEGACY_MAX_CONCURRENCY", "2"),
        ]);
        let Isolation::Process(isolation) =
            LegacySettings::from_env(&lambda, InsecureSettings::ALLOWED)
                .expect("settings")
                .isolation
        else {
            panic!("process isolation is the default")
        };
        assert_eq!(isolation.max_rss_kib, 96 * 1024);
        // The worker count follows the memory unless set.
        let small = Env::from_pairs([
            ("LEGACY_LIB_PATH", "/opt/lib/liblegacy_assessment.so"),
            ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128"),
        ]);
        let settings =
            LegacySettings::from_env(&small, InsecureSettings::ALLOWED).expect("settings");
        assert_eq!(settings.max_concurrency, 2);
        assert_eq!(
            [256, 1769, 1770, 3538, 3539, 10_240].map(default_concurrency),
            [2, 2, 3, 3, 4, 4]
        );
        assert_eq!(isolation.max_data_mib, 192);
        let in_process = Env::from_pairs([
            ("LEGACY_LIB_PATH", "/opt/lib/liblegacy_assessment.so"),
            ("LEGACY_ISOLATION", "in-process"),
        ]);
        assert_eq!(
            LegacySettings::from_env(&in_process, InsecureSettings::ALLOWED)
                .expect("settings")
                .isolation,
            Isolation::InProcess
        );
        // On Lambda, in-process only with ALLOW_INSECURE_SETTINGS.
        let on_lambda = Env::from_pairs([
            ("LEGACY_LIB_PATH", "/opt/lib/liblegacy_assessment.so"),
            ("LEGACY_ISOLATION", "in-process"),
            ("AWS_LAMBDA_FUNCTION_NAME", "assessments-resolver"),
        ]);
        let refused = InsecureSettings::from_env(&on_lambda).expect("flag");
        let error = LegacySettings::from_env(&on_lambda, refused).unwrap_err();
        assert!(
            matches!(
                error,
                ConfigError::Insecure {
                    name: "LEGACY_ISOLATION",
                    ..
                }
            ),
            "{error}"
        );
        let bad = Env::from_pairs([
            ("LEGACY_LIB_PATH", "/opt/lib/liblegacy_assessment.so"),
            ("LEGACY_ISOLATION", "threads"),
        ]);
        assert!(
            LegacySettings::from_env(&bad, InsecureSettings::ALLOWED)
                .unwrap_err()
                .to_string()
                .starts_with("LEGACY_ISOLATION")
        );
    }
}
