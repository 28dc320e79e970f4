//! The supervisor: call slots, each holding a worker process (or none yet),
//! and the three clocks of a call kept apart.
//!
//! 1. **Waiting** for admission (the breaker) and for a free slot: the
//!    caller's time, bounded by the caller's budget only. A call whose budget
//!    runs out here fails with `Saturated` and touches no worker.
//! 2. **Starting** a worker (when its slot has none): bounded by
//!    `LEGACY_WORKER_START_TIMEOUT_MS`, after the restart backoff.
//! 3. **The call** in the worker: bounded by `LEGACY_CALL_TIMEOUT_MS` from
//!    the moment the request is written. Only this clock makes a worker "hung".
//!
//! Each call runs in a task of its own that owns the slot (its permit and its
//! worker). The caller waits for the task's answer within its budget; if the
//! budget runs out first, the caller gets `Timeout` and the task goes on: the
//! worker finishes the call and goes back to its slot, or is killed if it
//! passes the call timeout. So a caller that gives up (or whose future is
//! dropped) never kills a healthy worker, and never leaves one mid-reply.
//!
//! After a death (a crash, an exit, a hang, an invalid reply, a failed start)
//! the task answers its caller first, then starts the replacement in the
//! background, after the restart backoff, while still holding the slot.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use assessments_common::budget::Budget;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};
use tokio::time::Instant;

mod call;

use super::IsolationSettings;
use super::breaker::{Admission, Breaker, BreakerState, CallOutcome, Transition};
use super::directory::workers_directory;
use super::process::{Launch, StartFailure, Worker};
use super::stats::{IsolationStats, NativeTotals, SupervisorCounters};
use crate::error::LegacyError;
use crate::slots::acquire_slot;
use crate::types::{AssessmentRow, ScoredAssessment, StudentContext};
use crate::{LegacySettings, NativeStats};

/// What a call's outcome is, for its caller.
type CallResult = Result<Vec<ScoredAssessment>, LegacyError>;

/// The counters a worker's guard updates when it ends, however it ends.
#[derive(Debug, Default)]
struct SupervisorShared {
    counters: SupervisorCounters,
    native: NativeTotals,
}

/// Counts a worker process from before it is spawned until this guard drops
/// with it, after it was reaped: the count covers every process whose pipes
/// are open, starting ones included.
struct Alive {
    shared: Arc<SupervisorShared>,
    /// Known once the worker is ready.
    pid: Option<u32>,
}

impl Alive {
    fn new(shared: &Arc<SupervisorShared>) -> Self {
        SupervisorCounters::add(&shared.counters.workers);
        Alive {
            shared: Arc::clone(shared),
            pid: None,
        }
    }
}

impl Drop for Alive {
    fn drop(&mut self) {
        self.shared.counters.workers.fetch_sub(1, Ordering::Relaxed);
        if let Some(pid) = self.pid {
            self.shared.native.ended(pid);
        }
    }
}

/// A worker process and the guard that counts it.
struct Tracked {
    worker: Worker,
    _alive: Alive,
}

/// Restart backoff: each death doubles the wait before the next start.
#[derive(Debug, Default)]
struct Backoff {
    consecutive_deaths: u32,
    next_start_at: Option<Instant>,
}

#[derive(Debug)]
struct Health {
    breaker: Breaker,
    backoff: Backoff,
}

/// Why a call could not get a worker.
enum NoWorker {
    /// The restart backoff ends after the caller's budget: no process was
    /// started, nothing was learned about the component.
    BackingOff(LegacyError),
    /// A start was tried and failed: a death.
    StartFailed(LegacyError),
}

pub struct Supervisor {
    lib_path: PathBuf,
    engine_config: String,
    worker_path: PathBuf,
    /// The workers' directory, holding one directory per worker (the one
    /// place it may write, removed with it); removed at shutdown.
    directory: PathBuf,
    /// Workers started, naming their directories.
    started: AtomicU64,
    settings: IsolationSettings,
    call_timeout: Duration,
    max_workers: usize,
    /// The free slots: a worker ready for a call, or `None` (to be started).
    /// Slots out of this list are held by calls, each with a permit.
    slots: Mutex<Vec<Option<Tracked>>>,
    permits: Arc<Semaphore>,
    next_id: AtomicU64,
    health: Mutex<Health>,
    shared: Arc<SupervisorShared>,
}

/// A slot taken for a call: its permit, and its worker if it has one. Given
/// back on drop, the slot first, then the permit, so that whoever gets the
/// permit next finds a slot.
struct HeldSlot {
    supervisor: Arc<Supervisor>,
    worker: Option<Tracked>,
    permit: Option<OwnedSemaphorePermit>,
}

impl Drop for HeldSlot {
    fn drop(&mut self) {
        let worker = self.worker.take();
        self.supervisor.lock_slots().push(worker);
        drop(self.permit.take());
    }
}

/// A call let through by the breaker, until it reaches a worker: if it ends
/// before (timeout, saturation, its future dropped), a trial is handed back.
struct Admitted<'a> {
    supervisor: &'a Supervisor,
    trial: bool,
    handed_over: bool,
}

impl Drop for Admitted<'_> {
    fn drop(&mut self) {
        if !self.handed_over {
            self.supervisor.abandon(self.trial);
        }
    }
}

impl Supervisor {
    /// Starts one worker to check that the library loads and the engine
    /// opens (failing init otherwise), and keeps it for the first call.
    pub async fn start(
        legacy: &LegacySettings,
        settings: IsolationSettings,
    ) -> Result<Arc<Self>, LegacyError> {
        let worker_path = match &settings.worker_path {
            Some(path) => path.clone(),
            None => std::env::current_exe().map_err(|e| {
                LegacyError::WorkerUnavailable(format!("cannot find this executable: {e}"))
            })?,
        };
        // Before any worker exists: none can read this process's environment or memory.
        crate::sandbox::protect_parent().map_err(LegacyError::WorkerUnavailable)?;
        let directory = workers_directory().map_err(|e| {
            LegacyError::WorkerUnavailable(format!("cannot make the workers' directory: {e}"))
        })?;
        let max_workers = legacy.max_concurrency.max(1);
        let now = Instant::now();
        let supervisor = Arc::new(Supervisor {
            lib_path: legacy.lib_path.clone(),
            engine_config: legacy.engine_config.clone(),
            worker_path,
            directory,
            started: AtomicU64::new(0),
            call_timeout: legacy.call_timeout,
            max_workers,
            slots: Mutex::new(Vec::with_capacity(max_workers)),
            permits: Arc::new(Semaphore::new(max_workers)),
            next_id: AtomicU64::new(1),
            health: Mutex::new(Health {
                breaker: Breaker::new(
                    settings.breaker_window,
                    settings.breaker_threshold,
                    settings.breaker_cooldown,
                    now,
                ),
                backoff: Backoff::default(),
            }),
            shared: Arc::new(SupervisorShared::default()),
            settings,
        });
        let first = supervisor.start_worker().await?;
        let confinement = first.worker.confinement.as_ref().map(ToString::to_string);
        {
            let mut slots = supervisor.lock_slots();
            slots.extend((1..max_workers).map(|_| None));
            slots.push(Some(first));
        }
        tracing::info!(
            library = %supervisor.lib_path.display(),
            worker = %supervisor.worker_path.display(),
            max_workers,
            max_calls = supervisor.settings.max_calls,
            max_rss_kib = supervisor.settings.max_rss_kib,
            confinement = confinement.as_deref().unwrap_or("unknown"),
            "legacy component isolated in worker processes"
        );
        Ok(supervisor)
    }

    fn lock_slots(&self) -> std::sync::MutexGuard<'_, Vec<Option<Tracked>>> {
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_health(&self) -> std::sync::MutexGuard<'_, Health> {
        self.health.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Slots held now: calls running, or workers being started.
    pub(crate) fn in_flight(&self) -> usize {
        self.max_workers - self.permits.available_permits()
    }

    pub(crate) fn max_concurrency(&self) -> usize {
        self.max_workers
    }

    /// The workers' handle counters together (see `NativeTotals`).
    pub(crate) fn native_stats(&self) -> Option<NativeStats> {
        self.shared.native.total()
    }

    /// What the supervisor did over the life of the process.
    pub(crate) fn isolation_stats(&self) -> IsolationStats {
        let breaker = self.lock_health().breaker.state();
        self.shared.counters.snapshot(self.max_workers, breaker)
    }

    /// Scores one student's rows (validated) in a worker.
    pub(crate) async fn score(
        self: &Arc<Self>,
        context: StudentContext,
        rows: Vec<AssessmentRow>,
        budget: &Budget,
    ) -> CallResult {
        let trial = match self.admit() {
            Admission::Go { trial } => trial,
            Admission::Refused { retry_in } => {
                SupervisorCounters::add(&self.shared.counters.refused);
                return Err(LegacyError::CircuitOpen { retry_in });
            }
        };
        let mut admitted = Admitted {
            supervisor: self,
            trial,
            handed_over: false,
        };
        let permit = acquire_slot(&self.permits, budget, self.max_workers).await?;
        let held = self.take_slot(permit);
        let (answer, answered) = oneshot::channel();
        admitted.handed_over = true;
        let call = Arc::clone(self).run_call(held, context, rows, trial, *budget, answer);
        tokio::spawn(call);
        match budget.as_bound().run(answered).await {
            Ok(Ok(outcome)) => outcome,
            // The task was dropped unanswered: the runtime is shutting down.
            Ok(Err(_dropped)) => Err(LegacyError::ShuttingDown),
            Err(limit) => Err(LegacyError::Timeout { limit }),
        }
    }

    fn take_slot(self: &Arc<Self>, permit: OwnedSemaphorePermit) -> HeldSlot {
        let mut slots = self.lock_slots();
        // A ready worker if there is one; a permit always finds a slot.
        let index = slots.iter().rposition(Option::is_some);
        let worker = match index {
            Some(i) => slots.swap_remove(i),
            None => slots.pop().flatten(),
        };
        drop(slots);
        HeldSlot {
            supervisor: Arc::clone(self),
            worker,
            permit: Some(permit),
        }
    }

    /// After a death or a recycling: a new worker for the slot, after the
    /// backoff, unless the breaker is open (its trial will start one).
    async fn start_replacement(&self) -> Option<Tracked> {
        if self.lock_health().breaker.state() != BreakerState::Closed {
            return None;
        }
        let at = self.lock_health().backoff.next_start_at;
        if let Some(at) = at {
            tokio::time::sleep_until(at).await;
        }
        match self.start_worker().await {
            Ok(worker) => Some(worker),
            Err(_) => {
                self.record(CallOutcome::Death, false);
                None
            }
        }
    }

    /// A worker for a call whose slot has none: after the backoff, if the
    /// caller's budget reaches that far.
    async fn start_for_call(&self, budget: &Budget) -> Result<Tracked, NoWorker> {
        let (at, deaths) = {
            let health = self.lock_health();
            (
                health.backoff.next_start_at,
                health.backoff.consecutive_deaths,
            )
        };
        if let Some(at) = at.filter(|at| *at > Instant::now()) {
            if at > budget.deadline() {
                return Err(NoWorker::BackingOff(LegacyError::WorkerUnavailable(
                    format!(
                        "restarting after {deaths} worker failures; the next start is in {}ms, after the invocation's deadline",
                        at.saturating_duration_since(Instant::now()).as_millis()
                    ),
                )));
            }
            tokio::time::sleep_until(at).await;
        }
        self.start_worker().await.map_err(NoWorker::StartFailed)
    }

    /// Starts a worker and waits for its `Ready`. A failure is a death:
    /// counted, logged, and the backoff grows (the caller tells the breaker).
    async fn start_worker(&self) -> Result<Tracked, LegacyError> {
        let n = self.started.fetch_add(1, Ordering::Relaxed);
        let directory = self.directory.join(format!("w{n}"));
        let launch = Launch {
            worker_path: &self.worker_path,
            lib_path: &self.lib_path,
            engine_config: &self.engine_config,
            directory: &directory,
            data_limit_mib: self.settings.max_data_mib,
        };
        let mut alive = Alive::new(&self.shared);
        match Worker::start(&launch, self.settings.start_timeout).await {
            Ok(worker) => {
                SupervisorCounters::add(&self.shared.counters.started);
                if let Some(native) = worker.native {
                    self.shared.native.report(worker.pid, native);
                }
                alive.pid = Some(worker.pid);
                Ok(Tracked {
                    worker,
                    _alive: alive,
                })
            }
            Err(failure) => {
                SupervisorCounters::add(&self.shared.counters.start_failures);
                tracing::error!(%failure, "legacy worker failed to start");
                self.note_death();
                Err(match failure {
                    // The component's own error, as the worker read it: the
                    // same text as in process.
                    StartFailure::InitFailed(message) => LegacyError::WorkerInit(message),
                    other => LegacyError::WorkerUnavailable(other.to_string()),
                })
            }
        }
    }

    fn admit(&self) -> Admission {
        self.lock_health().breaker.admit(Instant::now())
    }

    fn abandon(&self, trial: bool) {
        self.lock_health().breaker.abandon(trial);
    }

    fn note_death(&self) {
        let mut health = self.lock_health();
        let backoff = &mut health.backoff;
        backoff.consecutive_deaths = backoff.consecutive_deaths.saturating_add(1);
        let wait = self
            .settings
            .restart_backoff
            .saturating_mul(1 << (backoff.consecutive_deaths - 1).min(16))
            .min(self.settings.restart_backoff_max);
        backoff.next_start_at = Some(Instant::now() + wait);
    }

    fn record(&self, outcome: CallOutcome, trial: bool) {
        let mut health = self.lock_health();
        if outcome == CallOutcome::Healthy {
            health.backoff = Backoff::default();
        }
        let transition = health.breaker.record(Instant::now(), outcome, trial);
        drop(health);
        let cooldown_ms = self.settings.breaker_cooldown.as_millis() as u64;
        match transition {
            Some(Transition::Opened { deaths }) => {
                SupervisorCounters::add(&self.shared.counters.breaker_opened);
                tracing::error!(
                    deaths,
                    window = self.settings.breaker_window,
                    cooldown_ms,
                    "legacy workers keep dying; breaker open"
                );
            }
            Some(Transition::Reopened) => {
                tracing::warn!(cooldown_ms, "legacy breaker trial failed; open again");
            }
            Some(Transition::Closed) => tracing::info!("legacy breaker closed"),
            None => {}
        }
    }

    /// Stops accepting calls, waits up to `grace` for the running ones (and
    /// background starts), then retires every worker at once, each given
    /// what is left of `grace` to close its engine and exit.
    pub(crate) async fn shutdown(&self, grace: Duration) -> Result<(), LegacyError> {
        let by = Instant::now() + grace;
        let all = u32::try_from(self.max_workers).unwrap_or(u32::MAX);
        let waited = tokio::time::timeout_at(by, self.permits.acquire_many(all)).await;
        self.permits.close();
        let workers: Vec<Tracked> = self.lock_slots().drain(..).flatten().collect();
        futures_util::future::join_all(workers.into_iter().map(|tracked| {
            let Tracked { worker, _alive } = tracked;
            async move {
                worker.retire(by).await;
                drop(_alive);
            }
        }))
        .await;
        if let Err(error) = std::fs::remove_dir_all(&self.directory) {
            tracing::warn!(%error, "the legacy workers' directory could not be removed");
        }
        match waited {
            Ok(_) => Ok(()),
            Err(_) => Err(LegacyError::ShutdownIncomplete {
                in_flight: self.in_flight(),
                grace,
            }),
        }
    }
}

impl std::fmt::Debug for Supervisor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Supervisor")
            .field("max_workers", &self.max_workers)
            .finish_non_exhaustive()
    }
}

/// The workers' directory goes with the supervisor, also when init fails
/// after it was made or shutdown never ran (shutdown removes it first, and says
/// when it cannot).
impl Drop for Supervisor {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.directory);
    }
}
