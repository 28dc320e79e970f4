//! The async face of the legacy component, what the resolver uses: in this
//! process ([`InProcessEngine`], below) or in worker processes
//! ([`super::isolation::Supervisor`]), chosen by `LEGACY_ISOLATION`.
//!
//! In process, native calls block, so they run on tokio's blocking pool, at most
//! `max_concurrency` at a time, each bounded by `call_timeout`. Everything a
//! call needs (the engine `Arc`, its concurrency permit, its inputs) moves into
//! the blocking closure, and the native result is created, copied and freed
//! inside it. So a request that times out, or whose future is dropped, or whose
//! task panics, can neither leak a handle nor free one twice: the closure runs
//! to the end and releases it when the native call returns. The permit goes
//! back only then, so stuck native calls keep counting against the limit and
//! cannot pile up threads behind our back.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use assessments_common::budget::Budget;
use assessments_common::xray;
use tokio::sync::Semaphore;

use super::error::LegacyError;
use super::ffi::NativeLibrary;
use super::handle::EngineHandle;
use super::isolation::{IsolationStats, Supervisor};
use super::slots::acquire_slot;
use super::types::{AssessmentRow, ScoredAssessment, StudentContext, validate_input};
use super::{Isolation, LegacySettings, NativeStats};

/// The legacy engine, opened once per process and shared by every request.
///
/// `Sync`, immutable after `open` (the permits are internally synchronized and
/// bounded), so one instance serves concurrent invocations.
#[derive(Debug)]
pub struct LegacyEngine {
    mode: EngineMode,
}

#[derive(Debug)]
enum EngineMode {
    InProcess(InProcessEngine),
    Isolated(Arc<Supervisor>),
}

impl LegacyEngine {
    /// Opens the engine in this process (blocking; call it at init).
    pub fn open(settings: &LegacySettings) -> Result<Self, LegacyError> {
        Ok(LegacyEngine {
            mode: EngineMode::InProcess(InProcessEngine::open(settings)?),
        })
    }

    /// Opens the engine as `settings.isolation` says: in this process, or in
    /// worker processes (the first of which is started now, so a library
    /// that does not load fails init).
    pub async fn start(settings: &LegacySettings) -> Result<Self, LegacyError> {
        match &settings.isolation {
            Isolation::InProcess => Self::open(settings),
            Isolation::Process(isolation) => Ok(LegacyEngine {
                mode: EngineMode::Isolated(Supervisor::start(settings, isolation.clone()).await?),
            }),
        }
    }

    /// Scores one student's rows within `budget`: waiting for a call slot
    /// ends with the budget, the call itself with `LEGACY_CALL_TIMEOUT_MS` or
    /// the budget, whichever is first. Returns one scored assessment per row,
    /// in order.
    pub async fn score(
        &self,
        context: StudentContext,
        rows: Vec<AssessmentRow>,
        budget: &Budget,
    ) -> Result<Vec<ScoredAssessment>, LegacyError> {
        let span = tracing::trace_span!(
            target: "xray",
            "legacy component",
            isolation = self.mode_name(),
            rows = rows.len(),
            failure = tracing::field::Empty,
        );
        let call = async {
            match &self.mode {
                EngineMode::InProcess(engine) => engine.score(context, rows, budget).await,
                EngineMode::Isolated(engine) => engine.score(context, rows, budget).await,
            }
        };
        xray::traced(span, call).await
    }

    fn mode_name(&self) -> &'static str {
        match &self.mode {
            EngineMode::InProcess(_) => "in-process",
            EngineMode::Isolated(_) => "process",
        }
    }

    /// Calls running now.
    pub fn in_flight(&self) -> usize {
        match &self.mode {
            EngineMode::InProcess(engine) => engine.in_flight(),
            EngineMode::Isolated(engine) => engine.in_flight(),
        }
    }

    pub fn max_concurrency(&self) -> usize {
        match &self.mode {
            EngineMode::InProcess(engine) => engine.max_concurrency,
            EngineMode::Isolated(engine) => engine.max_concurrency(),
        }
    }

    /// The component's handle counters, when it exports them: this
    /// process's, or (isolated) the workers' together, as they reported them
    /// with their last replies.
    pub fn native_stats(&self) -> Option<NativeStats> {
        match &self.mode {
            EngineMode::InProcess(engine) => engine.native_stats(),
            EngineMode::Isolated(engine) => engine.native_stats(),
        }
    }

    /// The supervisor's counters, when the component runs in worker processes.
    pub fn isolation_stats(&self) -> Option<IsolationStats> {
        match &self.mode {
            EngineMode::InProcess(_) => None,
            EngineMode::Isolated(engine) => Some(engine.stats()),
        }
    }

    /// Isolated: the resident size of the idle workers together (KiB).
    pub fn workers_rss_kib(&self) -> Option<u64> {
        match &self.mode {
            EngineMode::InProcess(_) => None,
            EngineMode::Isolated(engine) => Some(engine.idle_workers_rss_kib()),
        }
    }

    /// Stops accepting calls and waits up to `grace` for running ones; then
    /// closes the engine (in process) or stops the workers (isolated).
    pub async fn shutdown(&self, grace: Duration) -> Result<(), LegacyError> {
        match &self.mode {
            EngineMode::InProcess(engine) => engine.shutdown(grace).await,
            EngineMode::Isolated(engine) => engine.shutdown(grace).await,
        }
    }
}

/// The component in this process, on tokio's blocking pool.
#[derive(Debug)]
struct InProcessEngine {
    /// `None` once `shutdown` has closed it.
    engine: Mutex<Option<Arc<EngineHandle>>>,
    permits: Arc<Semaphore>,
    max_concurrency: usize,
    call_timeout: Duration,
}

impl InProcessEngine {
    /// Loads the library, checks its ABI, resolves its symbols and opens one
    /// engine. Blocking; call it at init, not on the request path.
    pub fn open(settings: &LegacySettings) -> Result<Self, LegacyError> {
        let library = Arc::new(NativeLibrary::load(&settings.lib_path)?);
        let engine = EngineHandle::open(library, &settings.engine_config)?;
        tracing::info!(
            library = %settings.lib_path.display(),
            max_concurrency = settings.max_concurrency,
            call_timeout_ms = settings.call_timeout.as_millis() as u64,
            "legacy engine open"
        );
        let max_concurrency = settings.max_concurrency.max(1);
        Ok(InProcessEngine {
            engine: Mutex::new(Some(Arc::new(engine))),
            permits: Arc::new(Semaphore::new(max_concurrency)),
            max_concurrency,
            call_timeout: settings.call_timeout,
        })
    }

    /// Scores one student's rows. Returns one scored assessment per row, in order.
    pub async fn score(
        &self,
        context: StudentContext,
        rows: Vec<AssessmentRow>,
        budget: &Budget,
    ) -> Result<Vec<ScoredAssessment>, LegacyError> {
        validate_input(&context, &rows)?;
        let permit = acquire_slot(&self.permits, budget, self.max_concurrency).await?;
        // The call's own clock starts now that it has a slot.
        let bound = budget.bound(self.call_timeout, "LEGACY_CALL_TIMEOUT_MS");
        let engine = self.engine_ref().ok_or(LegacyError::ShuttingDown)?;
        let task = tokio::task::spawn_blocking(move || {
            let outcome = engine.score_copied(&context, &rows);
            // The engine reference goes before the permit, so that once every
            // permit is back no call holds the engine (see `shutdown`).
            drop(engine);
            drop(permit);
            outcome
        });
        match bound.run(task).await {
            Err(limit) => {
                tracing::warn!(
                    %limit,
                    "legacy call timed out; its handle is released when the native call returns"
                );
                Err(LegacyError::Timeout { limit })
            }
            Ok(Err(join_error)) if join_error.is_panic() => Err(LegacyError::WorkerPanicked),
            // Cancelled: the runtime is shutting down.
            Ok(Err(_)) => Err(LegacyError::ShuttingDown),
            Ok(Ok(outcome)) => outcome,
        }
    }

    /// Native calls running now (each holds a permit until its native call returns).
    pub fn in_flight(&self) -> usize {
        self.max_concurrency - self.permits.available_permits()
    }

    fn engine_ref(&self) -> Option<Arc<EngineHandle>> {
        self.engine
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The component's process-wide handle counters, when it exports them.
    pub fn native_stats(&self) -> Option<NativeStats> {
        self.engine_ref()?.library().stats()
    }

    /// Stops accepting calls, waits up to `grace` for running ones, then
    /// closes the engine exactly once and returns its native status. Later
    /// calls get `ShuttingDown`; a second `shutdown` does nothing.
    ///
    /// If calls are still running after `grace`, returns `ShutdownIncomplete`;
    /// the engine is then closed by the last of them when its native call returns.
    pub async fn shutdown(&self, grace: Duration) -> Result<(), LegacyError> {
        let all = u32::try_from(self.max_concurrency).unwrap_or(u32::MAX);
        let waited = tokio::time::timeout(grace, self.permits.acquire_many(all)).await;
        self.permits.close();
        let engine = self.engine.lock().unwrap_or_else(|p| p.into_inner()).take();
        let Some(engine) = engine else { return Ok(()) };
        match waited {
            Ok(Ok(_all_permits)) => {}
            Ok(Err(_closed)) => return Ok(()),
            Err(_elapsed) => {
                return Err(LegacyError::ShutdownIncomplete {
                    in_flight: self.in_flight(),
                    grace,
                });
            }
        }
        match Arc::try_unwrap(engine) {
            Ok(engine) => engine.close(),
            // Unreachable while every call drops its engine reference before
            // its permit; if it ever happens, the last holder's Drop closes it.
            Err(_still_shared) => Err(LegacyError::ShutdownIncomplete {
                in_flight: 0,
                grace,
            }),
        }
    }
}
