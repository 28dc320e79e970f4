//! The async face of the legacy component, what the resolver uses: in this
//! process ([`InProcessEngine`], below) or in worker processes
//! ([`crate::isolation::Supervisor`]), chosen by `LEGACY_ISOLATION`.
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

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use assessments_common::budget::Budget;
use assessments_common::xray;
use tokio::sync::Semaphore;

use crate::error::LegacyError;
use crate::ffi::NativeLibrary;
use crate::handle::EngineHandle;
use crate::isolation::{IsolationStats, Supervisor};
use crate::slots::acquire_slot;
use crate::types::{AssessmentRow, ScoredAssessment, StudentContext, validate_input};
use crate::{Isolation, LegacySettings, NativeStats};

/// The legacy engine, opened once per process and shared by every request:
/// the component in this process or in worker processes, behind one face.
///
/// `Sync`, immutable after `start` (the permits are internally synchronized and
/// bounded), so one instance serves concurrent invocations.
#[derive(Debug)]
pub struct LegacyEngine {
    backend: Box<dyn Backend>,
    mode: &'static str,
}

/// What the engine's state looks like now: one view for reports and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LegacyStats {
    /// Calls running now (each holds a slot until its native call returns;
    /// isolated: also worker starts).
    pub in_flight: usize,
    pub max_concurrency: usize,
    /// The component's handle counters, when it exports them: this
    /// process's, or (isolated) the workers' together, as they reported them
    /// with their last replies. `None` in process once the engine is closed.
    pub native: Option<NativeStats>,
    /// The supervisor's counters, when the component runs in worker processes.
    pub isolation: Option<IsolationStats>,
}

/// A boxed future of a mode's work.
pub(crate) type Work<'a, T> = Pin<Box<dyn Future<Output = Result<T, LegacyError>> + Send + 'a>>;

/// Where the component runs: in this process ([`InProcessEngine`]) or in
/// worker processes ([`Supervisor`]). The engine validates the input and
/// traces the call; a mode runs it.
pub(crate) trait Backend: Send + Sync + std::fmt::Debug {
    /// Scores validated input within `budget`.
    fn score<'a>(
        &'a self,
        context: StudentContext,
        rows: Vec<AssessmentRow>,
        budget: &'a Budget,
    ) -> Work<'a, Vec<ScoredAssessment>>;
    fn stats(&self) -> LegacyStats;
    fn shutdown(&self, grace: Duration) -> Work<'_, ()>;
}

impl LegacyEngine {
    /// Opens the engine as `settings.isolation` says: in this process
    /// (blocking: call it at init), or in worker processes (the first of
    /// which is started now, so a library that does not load fails init).
    pub async fn start(settings: &LegacySettings) -> Result<Self, LegacyError> {
        let (backend, mode): (Box<dyn Backend>, _) = match &settings.isolation {
            Isolation::InProcess => (Box::new(InProcessEngine::open(settings)?), "in-process"),
            Isolation::Process(isolation) => (
                Box::new(Supervisor::start(settings, isolation.clone()).await?),
                "process",
            ),
        };
        Ok(LegacyEngine { backend, mode })
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
            isolation = self.mode,
            rows = rows.len(),
            failure = tracing::field::Empty,
        );
        let call = async {
            validate_input(&context, &rows)?;
            self.backend.score(context, rows, budget).await
        };
        xray::traced(span, call).await
    }

    /// The engine's state now (see [`LegacyStats`]).
    pub fn stats(&self) -> LegacyStats {
        self.backend.stats()
    }

    /// Stops accepting calls and waits up to `grace` for running ones; then
    /// closes the engine (in process) or stops the workers (isolated).
    pub async fn shutdown(&self, grace: Duration) -> Result<(), LegacyError> {
        self.backend.shutdown(grace).await
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
    fn open(settings: &LegacySettings) -> Result<Self, LegacyError> {
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
    async fn call(
        &self,
        context: StudentContext,
        rows: Vec<AssessmentRow>,
        budget: &Budget,
    ) -> Result<Vec<ScoredAssessment>, LegacyError> {
        let permit = acquire_slot(&self.permits, budget, self.max_concurrency).await?;
        // The call's own clock starts now that it has a slot.
        let bound = budget.bound(self.call_timeout, "LEGACY_CALL_TIMEOUT_MS");
        let engine = self.engine_ref().ok_or(LegacyError::ShuttingDown)?;
        let task = tokio::task::spawn_blocking(move || {
            let outcome = engine.score_copied(&context, &rows);
            // The engine reference goes before the permit, so that once every
            // permit is back no call holds the engine (see `close`).
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

    fn engine_ref(&self) -> Option<Arc<EngineHandle>> {
        self.engine
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Stops accepting calls, waits up to `grace` for running ones, then
    /// closes the engine exactly once and returns its native status. Later
    /// calls get `ShuttingDown`; a second `shutdown` does nothing.
    ///
    /// If calls are still running after `grace`, returns `ShutdownIncomplete`;
    /// the engine is then closed by the last of them when its native call returns.
    async fn close(&self, grace: Duration) -> Result<(), LegacyError> {
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
                    in_flight: self.stats().in_flight,
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

impl Backend for InProcessEngine {
    fn score<'a>(
        &'a self,
        context: StudentContext,
        rows: Vec<AssessmentRow>,
        budget: &'a Budget,
    ) -> Work<'a, Vec<ScoredAssessment>> {
        Box::pin(self.call(context, rows, budget))
    }

    fn stats(&self) -> LegacyStats {
        LegacyStats {
            in_flight: self.max_concurrency - self.permits.available_permits(),
            max_concurrency: self.max_concurrency,
            native: self.engine_ref().and_then(|e| e.library().stats()),
            isolation: None,
        }
    }

    fn shutdown(&self, grace: Duration) -> Work<'_, ()> {
        Box::pin(self.close(grace))
    }
}

impl Backend for Arc<Supervisor> {
    fn score<'a>(
        &'a self,
        context: StudentContext,
        rows: Vec<AssessmentRow>,
        budget: &'a Budget,
    ) -> Work<'a, Vec<ScoredAssessment>> {
        Box::pin(Supervisor::score(self, context, rows, budget))
    }

    fn stats(&self) -> LegacyStats {
        LegacyStats {
            in_flight: self.in_flight(),
            max_concurrency: self.max_concurrency(),
            native: self.native_stats(),
            isolation: Some(self.isolation_stats()),
        }
    }

    fn shutdown(&self, grace: Duration) -> Work<'_, ()> {
        Box::pin(Supervisor::shutdown(self, grace))
    }
}
