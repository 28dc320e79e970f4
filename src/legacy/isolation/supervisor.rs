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

use assessments_common::budget::{Budget, Limit};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};
use tokio::time::Instant;

use super::super::error::LegacyError;
use super::super::protocol::{self, Reply, Request, WorkerProtocolError};
use super::super::slots::acquire_slot;
use super::super::types::{AssessmentRow, ScoredAssessment, StudentContext, validate_input};
use super::super::{LegacySettings, NativeStats};
use super::IsolationSettings;
use super::breaker::{Admission, Breaker, BreakerState, CallOutcome, Transition};
use super::process::{Launch, Lost, StartFailure, Worker, describe_exit};
use super::stats::{IsolationStats, NativeTotals, SupervisorCounters};

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
    /// The workers' directory (the one place they may write); removed at shutdown.
    directory: PathBuf,
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
        crate::legacy::sandbox::protect_parent().map_err(LegacyError::WorkerUnavailable)?;
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

    pub fn max_concurrency(&self) -> usize {
        self.max_workers
    }

    /// Slots held now: calls running, or workers being started.
    pub fn in_flight(&self) -> usize {
        self.max_workers - self.permits.available_permits()
    }

    pub fn stats(&self) -> IsolationStats {
        let breaker = self.lock_health().breaker.state();
        self.shared.counters.snapshot(self.max_workers, breaker)
    }

    /// The workers' handle counters together (see [`NativeTotals`]).
    pub fn native_stats(&self) -> Option<NativeStats> {
        self.shared.native.total()
    }

    /// The resident size of the idle workers together (KiB), from /proc: what
    /// isolation costs in memory. Busy workers are not counted.
    pub fn idle_workers_rss_kib(&self) -> u64 {
        self.lock_slots()
            .iter()
            .flatten()
            .filter_map(|t| t.worker.rss_kib())
            .sum()
    }

    /// Scores one student's rows in a worker.
    pub async fn score(
        self: &Arc<Self>,
        context: StudentContext,
        rows: Vec<AssessmentRow>,
        budget: &Budget,
    ) -> CallResult {
        validate_input(&context, &rows)?;
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

    /// One call, in its own task: get a worker, send the request, read the
    /// reply within the call timeout, answer the caller, then look after the
    /// worker (back to its slot, recycled, or replaced).
    async fn run_call(
        self: Arc<Self>,
        mut held: HeldSlot,
        context: StudentContext,
        rows: Vec<AssessmentRow>,
        trial: bool,
        budget: Budget,
        answer: oneshot::Sender<CallResult>,
    ) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let request = Request::Score { id, context, rows };
        let frame = match protocol::encode(&request) {
            Ok(frame) => frame,
            Err(e) => {
                self.abandon(trial);
                let _ = answer.send(Err(LegacyError::InvalidInput(e.to_string())));
                return;
            }
        };
        let Request::Score { rows, .. } = request;
        let mut retried_idle_death = false;
        let (result, worker) = loop {
            let mut worker = match self.worker_for_call(&mut held, &budget, trial).await {
                Ok(worker) => worker,
                Err(e) => break (Err(e), None),
            };
            if answer.is_closed() {
                // The caller gave up before dispatch: keep the worker for the next call.
                held.worker = Some(worker);
                self.abandon(trial);
                return;
            }
            let reply_by = Instant::now() + self.call_timeout;
            let reply = worker.worker.exchange(&frame, reply_by).await;
            match self.settle(id, &rows, reply, worker).await {
                Settled::DiedIdle if !retried_idle_death => {
                    // An innocent call: the worker had died before it was sent.
                    retried_idle_death = true;
                }
                Settled::DiedIdle => {
                    self.record(CallOutcome::Death, trial);
                    break (Err(LegacyError::WorkerCrashed), None);
                }
                Settled::Healthy(result, worker) => {
                    self.record(CallOutcome::Healthy, trial);
                    break (result, Some(*worker));
                }
                Settled::Died(error) => {
                    self.record(CallOutcome::Death, trial);
                    break (Err(error), None);
                }
            }
        };
        let _ = answer.send(result);
        held.worker = match worker {
            Some(worker) => self.after_call(worker).await,
            None => self.start_replacement().await,
        };
    }

    /// The slot's worker, or one started for this call; a start that fails
    /// (or is not tried, the breaker backing off) is the call's answer.
    async fn worker_for_call(
        &self,
        held: &mut HeldSlot,
        budget: &Budget,
        trial: bool,
    ) -> Result<Tracked, LegacyError> {
        if let Some(worker) = held.worker.take() {
            return Ok(worker);
        }
        match self.start_for_call(budget).await {
            Ok(worker) => Ok(worker),
            Err(NoWorker::BackingOff(e)) => {
                self.abandon(trial);
                Err(e)
            }
            Err(NoWorker::StartFailed(e)) => {
                self.record(CallOutcome::Death, trial);
                Err(e)
            }
        }
    }

    /// What an exchange showed; ends a worker that cannot serve again.
    async fn settle(
        &self,
        id: u64,
        rows: &[AssessmentRow],
        reply: Result<Reply, Lost>,
        mut tracked: Tracked,
    ) -> Settled {
        let pid = tracked.worker.pid;
        let problem = match reply {
            Ok(Reply::Scored {
                id: reply_id,
                results,
                native,
            }) => match protocol::check_scored_reply(id, rows, reply_id, &results) {
                Ok(()) => {
                    self.answered(&mut tracked, native);
                    return Settled::Healthy(Ok(results), Box::new(tracked));
                }
                Err(problem) => problem,
            },
            Ok(Reply::Failed {
                id: reply_id,
                error,
                native,
            }) if reply_id == id => {
                self.answered(&mut tracked, native);
                return Settled::Healthy(Err(error.into()), Box::new(tracked));
            }
            Ok(other) => WorkerProtocolError::Mismatch(format!(
                "unexpected reply {:?} to request {id}",
                std::mem::discriminant(&other)
            )),
            Err(Lost::Protocol(problem)) => problem,
            Err(Lost::DeadBeforeRequest) => {
                self.bury(tracked, "while idle").await;
                return Settled::DiedIdle;
            }
            Err(Lost::Died) => {
                self.bury(tracked, "during a call").await;
                return Settled::Died(LegacyError::WorkerCrashed);
            }
            Err(Lost::Timeout) => return self.hung(tracked).await,
        };
        // A worker that broke the protocol cannot be trusted with another call.
        let Tracked { worker, _alive } = tracked;
        worker.end().await;
        SupervisorCounters::add(&self.shared.counters.invalid_replies);
        tracing::error!(pid, %problem, "legacy worker sent an invalid reply; killed");
        self.note_death();
        Settled::Died(LegacyError::MalformedOutput(format!(
            "worker reply: {problem}"
        )))
    }

    /// A worker that ran a call past `LEGACY_CALL_TIMEOUT_MS`: killed, and
    /// the call answered as a call timing out in process is (the bound that
    /// fired; that the worker was killed is logged).
    async fn hung(&self, tracked: Tracked) -> Settled {
        let Tracked { worker, _alive } = tracked;
        let pid = worker.pid;
        worker.end().await;
        SupervisorCounters::add(&self.shared.counters.hangs);
        tracing::error!(
            pid,
            timeout_ms = self.call_timeout.as_millis() as u64,
            "legacy worker ran a call past LEGACY_CALL_TIMEOUT_MS; killed"
        );
        self.note_death();
        Settled::Died(LegacyError::Timeout {
            limit: Limit::Own {
                after: self.call_timeout,
                setting: "LEGACY_CALL_TIMEOUT_MS",
            },
        })
    }

    fn answered(&self, tracked: &mut Tracked, native: Option<NativeStats>) {
        tracked.worker.calls += 1;
        if let Some(native) = native {
            tracked.worker.native = Some(native);
            self.shared.native.report(tracked.worker.pid, native);
        }
    }

    /// A worker whose output ended: reap it, count how it died.
    async fn bury(&self, tracked: Tracked, when: &'static str) {
        let Tracked { worker, _alive } = tracked;
        let (pid, calls) = (worker.pid, worker.calls);
        let status = worker.reap().await;
        let how = status.map_or_else(|| "unknown".to_owned(), describe_exit);
        if status.is_some_and(|s| std::os::unix::process::ExitStatusExt::signal(&s).is_some()) {
            SupervisorCounters::add(&self.shared.counters.crashes);
        } else {
            SupervisorCounters::add(&self.shared.counters.exits);
        }
        tracing::error!(pid, exit = %how, calls, when, "legacy worker died");
        self.note_death();
    }

    /// A worker that answered: kept, or retired (after `max_calls`, or past
    /// `max_rss`) and replaced. This runs after the caller was answered; the
    /// old worker is gone before the new one starts, so processes never
    /// outnumber slots.
    async fn after_call(&self, tracked: Tracked) -> Option<Tracked> {
        let worn = tracked.worker.calls >= self.settings.max_calls;
        let rss = tracked.worker.rss_kib();
        let bloated = rss.is_some_and(|kib| kib > self.settings.max_rss_kib);
        if !(worn || bloated) {
            return Some(tracked);
        }
        SupervisorCounters::add(&self.shared.counters.recycled);
        tracing::info!(
            pid = tracked.worker.pid,
            calls = tracked.worker.calls,
            rss_kib = rss.unwrap_or(0),
            reason = if worn { "max calls" } else { "max RSS" },
            "recycling legacy worker"
        );
        let Tracked { worker, _alive } = tracked;
        worker.retire(Instant::now() + RETIRE_WAIT).await;
        drop(_alive);
        self.start_replacement().await
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
        let launch = Launch {
            worker_path: &self.worker_path,
            lib_path: &self.lib_path,
            engine_config: &self.engine_config,
            directory: &self.directory,
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
    pub async fn shutdown(&self, grace: Duration) -> Result<(), LegacyError> {
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

/// A new directory for one supervisor's workers, private to this user
/// (`$TMPDIR/legacy-workers-<pid>-<n>`: the only writable place on Lambda is /tmp).
///
/// A process that was killed (a Lambda timeout, the OOM killer) leaves its
/// directory behind, and /tmp outlives it in the execution environment, where
/// the next process may well get the same pid. So the leftovers of processes
/// no longer running are removed first, and a name already taken moves on to
/// the next `<n>` instead of failing init.
fn workers_directory() -> std::io::Result<PathBuf> {
    use std::os::unix::fs::DirBuilderExt;
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let temp = std::env::temp_dir();
    remove_dead_workers_directories(&temp);
    let pid = std::process::id();
    let mut attempts = 0;
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = temp.join(format!("legacy-workers-{pid}-{n}"));
        match std::fs::DirBuilder::new().mode(0o700).create(&path) {
            Ok(()) => return Ok(path),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && attempts < 100 => {
                attempts += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Removes the `legacy-workers-<pid>-<n>` directories of processes that are
/// not running (best effort: what cannot be removed is left).
fn remove_dead_workers_directories(temp: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(temp) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let owner = (name.to_str())
            .and_then(|n| n.strip_prefix("legacy-workers-"))
            .and_then(|rest| rest.split_once('-'))
            .and_then(|(pid, _)| pid.parse::<u32>().ok());
        let dead = owner.is_some_and(|pid| {
            pid != std::process::id() && !std::path::Path::new(&format!("/proc/{pid}")).exists()
        });
        if dead {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// How long a recycled worker gets to close its engine and exit.
const RETIRE_WAIT: Duration = Duration::from_secs(1);

/// What one exchange showed.
enum Settled {
    /// The worker answered (a result, or an error status); it can serve again.
    Healthy(CallResult, Box<Tracked>),
    /// The worker had died while idle: the request never reached it.
    DiedIdle,
    /// The worker died, hung or broke the protocol during the call.
    Died(LegacyError),
}
