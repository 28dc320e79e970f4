//! Process isolation (`LEGACY_ISOLATION=process`): the legacy component runs
//! in worker processes, so a segfault, an abort or a hang in native code
//! fails one call instead of the whole Lambda environment.
//!
//! The supervisor keeps at most `max_concurrency` workers, one call at a time
//! each. A call takes an idle worker (or starts one), sends the request, and
//! waits for the reply up to the call timeout. Then:
//! * a reply: the worker goes back to the idle set, unless it has served
//!   `max_calls` calls or its RSS passed `max_rss`: then it is retired (its
//!   stdin closed, so it exits) and the next call starts a fresh one: the
//!   max-requests pattern of pre-fork servers, containing native leaks;
//! * end of output: the worker died; it is reaped, how it died (the signal)
//!   is logged, the call fails with `WorkerCrashed`;
//! * the timeout: the worker is killed and reaped, the call fails with `WorkerHung`.
//!
//! Deaths make the next start wait (exponential backoff), and a circuit
//! breaker watches the last calls: when half of them killed their worker,
//! calls fail fast (`CircuitOpen`) for a cool-down, then one trial call
//! decides whether it closes again. Every child is waited for: no zombies;
//! its pipes close with it: no descriptor growth.

use std::collections::VecDeque;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::sync::Semaphore;
use tokio::time::{Instant, timeout_at};

use super::LegacySettings;
use super::engine::acquire_slot;
use super::error::LegacyError;
use super::protocol::{self, ProtocolError, Reply, Request};
use super::types::{AssessmentRow, ScoredAssessment, StudentContext, validate_input};
use super::worker::{ENV_CONFIG, ENV_LIB, WORKER_ARG};

/// How the supervisor runs workers (`LEGACY_WORKER_*`, `LEGACY_BREAKER_*`).
#[derive(Debug, Clone, PartialEq)]
pub struct IsolationSettings {
    /// `LEGACY_WORKER_PATH`: the executable started with `--legacy-worker`
    /// (default: this process's own executable).
    pub worker_path: Option<PathBuf>,
    /// `LEGACY_WORKER_MAX_CALLS`: calls before a worker is replaced (default 10,000).
    pub max_calls: u64,
    /// `LEGACY_WORKER_MAX_RSS_MB`: resident size past which a worker is replaced (default 200).
    pub max_rss_kib: u64,
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
            breaker_cooldown: Duration::from_secs(10),
            breaker_window: 20,
            breaker_threshold: 10,
            restart_backoff: Duration::from_millis(10),
            restart_backoff_max: Duration::from_secs(1),
        }
    }
}

/// The breaker's state, as `/stats` and the metrics show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

impl BreakerState {
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half-open",
        }
    }
}

/// What the supervisor did over the life of the process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct IsolationStats {
    /// Worker processes alive now (idle or running a call).
    pub workers: u64,
    pub max_workers: u64,
    pub started: u64,
    /// Workers that died by a signal (SIGSEGV, SIGABRT...).
    pub crashes: u64,
    /// Workers that exited on their own in the middle of a call.
    pub exits: u64,
    /// Workers killed for not answering within the call timeout.
    pub hangs: u64,
    /// Workers replaced after `max_calls` calls or past `max_rss`.
    pub recycled: u64,
    pub start_failures: u64,
    /// Calls refused by the open breaker.
    pub refused: u64,
    pub breaker_opened: u64,
    pub breaker: Option<BreakerState>,
}

#[derive(Debug, Default)]
struct Counters {
    workers: AtomicU64,
    started: AtomicU64,
    crashes: AtomicU64,
    exits: AtomicU64,
    hangs: AtomicU64,
    recycled: AtomicU64,
    start_failures: AtomicU64,
    refused: AtomicU64,
    breaker_opened: AtomicU64,
}

/// Counts a worker alive until dropped.
struct Alive(Arc<Counters>);

impl Drop for Alive {
    fn drop(&mut self) {
        self.0.workers.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A worker process with its pipes. Dropping it kills the process (tokio then
/// reaps it); the supervisor reaps explicitly wherever it can.
struct Worker {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    pid: u32,
    calls: u64,
    _alive: Alive,
}

/// What ended a call that got no reply.
enum Lost {
    /// End of output: the process died or exited.
    Died,
    Timeout,
    Protocol(ProtocolError),
}

async fn read_reply(stdout: &mut BufReader<ChildStdout>) -> Result<Reply, Lost> {
    let mut header = [0u8; 4];
    stdout
        .read_exact(&mut header)
        .await
        .map_err(|_| Lost::Died)?;
    let len = protocol::payload_len(header).map_err(Lost::Protocol)?;
    let mut payload = vec![0u8; len];
    stdout
        .read_exact(&mut payload)
        .await
        .map_err(|_| Lost::Died)?;
    protocol::decode_reply(&payload).map_err(Lost::Protocol)
}

/// "signal 11 (SIGSEGV)", "exit code 3": how a worker ended, for the logs.
pub fn describe_exit(status: ExitStatus) -> String {
    match (status.signal(), status.code()) {
        (Some(signal), _) => {
            let name = match signal {
                libc::SIGSEGV => "SIGSEGV",
                libc::SIGABRT => "SIGABRT",
                libc::SIGBUS => "SIGBUS",
                libc::SIGFPE => "SIGFPE",
                libc::SIGILL => "SIGILL",
                libc::SIGKILL => "SIGKILL",
                libc::SIGTERM => "SIGTERM",
                _ => "signal",
            };
            format!("signal {signal} ({name})")
        }
        (None, Some(code)) => format!("exit code {code}"),
        (None, None) => "unknown".to_owned(),
    }
}

/// The resident set of a process, from /proc (KiB); `None` if unreadable.
fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

#[derive(Debug)]
struct Breaker {
    /// The last calls' outcomes: `true` where the worker died.
    recent: VecDeque<bool>,
    state: BreakerState,
    open_until: Option<Instant>,
    trial_running: bool,
}

/// Restart backoff and the breaker, behind one lock (short critical sections only).
#[derive(Debug)]
struct Health {
    consecutive_deaths: u32,
    next_start_at: Option<Instant>,
    breaker: Breaker,
}

/// Whether a call may go ahead, and whether it is the half-open trial.
enum Admission {
    Go { trial: bool },
    Refused { retry_in: Duration },
}

pub struct IsolatedEngine {
    lib_path: PathBuf,
    engine_config: String,
    worker_path: PathBuf,
    settings: IsolationSettings,
    call_timeout: Duration,
    max_workers: usize,
    idle: Mutex<Vec<Worker>>,
    permits: Arc<Semaphore>,
    next_id: AtomicU64,
    health: Mutex<Health>,
    counters: Arc<Counters>,
}

impl std::fmt::Debug for IsolatedEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IsolatedEngine")
            .field("worker_path", &self.worker_path)
            .field("max_workers", &self.max_workers)
            .finish_non_exhaustive()
    }
}

impl IsolatedEngine {
    /// Starts one worker to check that the library loads and the engine
    /// opens (failing init otherwise), and keeps it for the first call.
    pub async fn start(
        legacy: &LegacySettings,
        settings: IsolationSettings,
    ) -> Result<Self, LegacyError> {
        let worker_path = match &settings.worker_path {
            Some(path) => path.clone(),
            None => std::env::current_exe().map_err(|e| {
                LegacyError::WorkerUnavailable(format!("cannot find this executable: {e}"))
            })?,
        };
        let max_workers = legacy.max_concurrency.max(1);
        let engine = IsolatedEngine {
            lib_path: legacy.lib_path.clone(),
            engine_config: legacy.engine_config.clone(),
            worker_path,
            call_timeout: legacy.call_timeout,
            max_workers,
            idle: Mutex::new(Vec::with_capacity(max_workers)),
            permits: Arc::new(Semaphore::new(max_workers)),
            next_id: AtomicU64::new(1),
            health: Mutex::new(Health {
                consecutive_deaths: 0,
                next_start_at: None,
                breaker: Breaker {
                    recent: VecDeque::with_capacity(settings.breaker_window),
                    state: BreakerState::Closed,
                    open_until: None,
                    trial_running: false,
                },
            }),
            counters: Arc::new(Counters::default()),
            settings,
        };
        let first = engine
            .spawn(Instant::now() + legacy.call_timeout.max(Duration::from_secs(5)))
            .await?;
        engine.lock_idle().push(first);
        tracing::info!(
            library = %engine.lib_path.display(),
            worker = %engine.worker_path.display(),
            max_workers,
            max_calls = engine.settings.max_calls,
            max_rss_kib = engine.settings.max_rss_kib,
            "legacy component isolated in worker processes"
        );
        Ok(engine)
    }

    fn lock_idle(&self) -> std::sync::MutexGuard<'_, Vec<Worker>> {
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_health(&self) -> std::sync::MutexGuard<'_, Health> {
        self.health.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn max_concurrency(&self) -> usize {
        self.max_workers
    }

    pub fn in_flight(&self) -> usize {
        self.max_workers - self.permits.available_permits()
    }

    pub fn stats(&self) -> IsolationStats {
        let c = &self.counters;
        IsolationStats {
            workers: c.workers.load(Ordering::Relaxed),
            max_workers: self.max_workers as u64,
            started: c.started.load(Ordering::Relaxed),
            crashes: c.crashes.load(Ordering::Relaxed),
            exits: c.exits.load(Ordering::Relaxed),
            hangs: c.hangs.load(Ordering::Relaxed),
            recycled: c.recycled.load(Ordering::Relaxed),
            start_failures: c.start_failures.load(Ordering::Relaxed),
            refused: c.refused.load(Ordering::Relaxed),
            breaker_opened: c.breaker_opened.load(Ordering::Relaxed),
            breaker: Some(self.lock_health().breaker.state),
        }
    }

    /// The resident size of the idle workers together (KiB), from /proc: what
    /// isolation costs in memory. Busy workers are not counted.
    pub fn idle_workers_rss_kib(&self) -> u64 {
        self.lock_idle().iter().filter_map(|w| rss_kib(w.pid)).sum()
    }

    /// Scores one student's rows in a worker.
    pub async fn score(
        &self,
        context: StudentContext,
        rows: Vec<AssessmentRow>,
    ) -> Result<Vec<ScoredAssessment>, LegacyError> {
        validate_input(&context, &rows)?;
        let deadline = Instant::now() + self.call_timeout;
        let trial = match self.admit() {
            Admission::Go { trial } => trial,
            Admission::Refused { retry_in } => {
                self.counters.refused.fetch_add(1, Ordering::Relaxed);
                return Err(LegacyError::CircuitOpen { retry_in });
            }
        };
        // If this future is dropped mid-call, the guard hands the half-open
        // trial back, so the breaker cannot stay waiting for it forever.
        let mut admitted = Admitted {
            engine: self,
            trial,
            recorded: false,
        };
        let outcome = self.call(context, rows, deadline).await;
        let worker_died = matches!(
            outcome,
            Err(LegacyError::WorkerCrashed | LegacyError::WorkerHung { .. })
        );
        self.record(worker_died, trial);
        admitted.recorded = true;
        outcome
    }

    async fn call(
        &self,
        context: StudentContext,
        rows: Vec<AssessmentRow>,
        deadline: Instant,
    ) -> Result<Vec<ScoredAssessment>, LegacyError> {
        let permit =
            acquire_slot(&self.permits, deadline, self.call_timeout, self.max_workers).await?;
        let idle = self.lock_idle().pop();
        let mut worker = match idle {
            Some(worker) => worker,
            None => self.spawn(deadline).await?,
        };
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let request = Request::Score {
            id,
            context,
            rows: rows.clone(),
        };
        let frame =
            protocol::encode(&request).map_err(|e| LegacyError::InvalidInput(e.to_string()))?;
        let exchange = async {
            worker
                .stdin
                .write_all(&frame)
                .await
                .map_err(|_| Lost::Died)?;
            worker.stdin.flush().await.map_err(|_| Lost::Died)?;
            read_reply(&mut worker.stdout).await
        };
        let reply = match timeout_at(deadline, exchange).await {
            Ok(reply) => reply,
            Err(_elapsed) => Err(Lost::Timeout),
        };
        let outcome = match reply {
            Ok(Reply::Scored {
                id: reply_id,
                results,
            }) => {
                if let Err(e) = protocol::check_scored_reply(id, &rows, reply_id, &results) {
                    return Err(self.discard(worker, e).await);
                }
                Ok(results)
            }
            Ok(Reply::Failed {
                id: reply_id,
                error,
            }) if reply_id == id => Err(error.into()),
            Ok(other) => {
                let problem = ProtocolError::Mismatch(format!(
                    "unexpected reply {:?} to request {id}",
                    std::mem::discriminant(&other)
                ));
                return Err(self.discard(worker, problem).await);
            }
            Err(Lost::Protocol(e)) => return Err(self.discard(worker, e).await),
            Err(Lost::Died) => return Err(self.bury(worker).await),
            Err(Lost::Timeout) => return Err(self.kill_hung(worker).await),
        };
        worker.calls += 1;
        self.after_call(worker);
        drop(permit);
        outcome
    }

    /// A worker that answered: back to the idle set, or retired.
    fn after_call(&self, worker: Worker) {
        let worn = worker.calls >= self.settings.max_calls;
        let rss = rss_kib(worker.pid);
        let bloated = rss.is_some_and(|kib| kib > self.settings.max_rss_kib);
        if worn || bloated {
            self.counters.recycled.fetch_add(1, Ordering::Relaxed);
            tracing::info!(
                pid = worker.pid,
                calls = worker.calls,
                rss_kib = rss.unwrap_or(0),
                reason = if worn { "max calls" } else { "max RSS" },
                "recycling legacy worker"
            );
            tokio::spawn(retire(worker));
        } else {
            self.lock_idle().push(worker);
        }
    }

    /// The worker's output ended: reap it and say how it died.
    async fn bury(&self, mut worker: Worker) -> LegacyError {
        // Closing stdin first lets a worker that merely exited finish; a
        // crashed one is already gone. Either way `wait` reaps it.
        let status = match tokio::time::timeout(Duration::from_secs(2), worker.child.wait()).await {
            Ok(Ok(status)) => Some(status),
            _ => {
                let _ = worker.child.start_kill();
                worker.child.wait().await.ok()
            }
        };
        let how = status.map_or_else(|| "unknown".to_owned(), describe_exit);
        if status.is_some_and(|s| s.signal().is_some()) {
            self.counters.crashes.fetch_add(1, Ordering::Relaxed);
        } else {
            self.counters.exits.fetch_add(1, Ordering::Relaxed);
        }
        tracing::error!(pid = worker.pid, exit = %how, calls = worker.calls, "legacy worker died during a call");
        self.note_death();
        LegacyError::WorkerCrashed
    }

    async fn kill_hung(&self, mut worker: Worker) -> LegacyError {
        let _ = worker.child.start_kill();
        let _ = worker.child.wait().await;
        self.counters.hangs.fetch_add(1, Ordering::Relaxed);
        tracing::error!(
            pid = worker.pid,
            timeout_ms = self.call_timeout.as_millis() as u64,
            "legacy worker did not answer in time; killed"
        );
        self.note_death();
        LegacyError::WorkerHung {
            after: self.call_timeout,
        }
    }

    /// A worker that broke the protocol cannot be trusted with another call.
    async fn discard(&self, mut worker: Worker, problem: ProtocolError) -> LegacyError {
        let _ = worker.child.start_kill();
        let _ = worker.child.wait().await;
        tracing::error!(pid = worker.pid, %problem, "legacy worker sent an invalid reply; killed");
        LegacyError::MalformedOutput(format!("worker reply: {problem}"))
    }

    fn note_death(&self) {
        let mut health = self.lock_health();
        health.consecutive_deaths = health.consecutive_deaths.saturating_add(1);
        let backoff = self
            .settings
            .restart_backoff
            .saturating_mul(1 << (health.consecutive_deaths - 1).min(16))
            .min(self.settings.restart_backoff_max);
        health.next_start_at = Some(Instant::now() + backoff);
    }

    /// Starts a worker (after the restart backoff, if one is due) and waits
    /// for its `Ready`.
    async fn spawn(&self, deadline: Instant) -> Result<Worker, LegacyError> {
        let wait_until = self.lock_health().next_start_at;
        if let Some(at) = wait_until
            && at > Instant::now()
        {
            if at > deadline {
                return Err(LegacyError::WorkerUnavailable(
                    "restarting after a worker died".to_owned(),
                ));
            }
            tokio::time::sleep_until(at).await;
        }
        let started = self.start_process(deadline).await;
        if started.is_err() {
            self.counters.start_failures.fetch_add(1, Ordering::Relaxed);
            self.note_death();
        }
        started
    }

    async fn start_process(&self, deadline: Instant) -> Result<Worker, LegacyError> {
        let mut command = Command::new(&self.worker_path);
        command
            .arg(WORKER_ARG)
            // Only what the worker needs: not the function's credentials.
            .env_clear()
            .env(ENV_LIB, &self.lib_path)
            .env(ENV_CONFIG, &self.engine_config)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        for name in ["PATH", "LD_LIBRARY_PATH", "TZ"] {
            if let Some(value) = std::env::var_os(name) {
                command.env(name, value);
            }
        }
        let mut child = command.spawn().map_err(|e| {
            LegacyError::WorkerUnavailable(format!("{}: {e}", self.worker_path.display()))
        })?;
        let (Some(stdin), Some(stdout), Some(pid)) =
            (child.stdin.take(), child.stdout.take(), child.id())
        else {
            let _ = child.start_kill();
            let _ = child.wait().await;
            return Err(LegacyError::WorkerUnavailable(
                "the worker's pipes are missing".to_owned(),
            ));
        };
        self.counters.started.fetch_add(1, Ordering::Relaxed);
        self.counters.workers.fetch_add(1, Ordering::Relaxed);
        let mut worker = Worker {
            child,
            stdin,
            stdout: BufReader::new(stdout),
            pid,
            calls: 0,
            _alive: Alive(Arc::clone(&self.counters)),
        };
        let ready = timeout_at(deadline, read_reply(&mut worker.stdout)).await;
        match ready {
            Ok(Ok(Reply::Ready { .. })) => Ok(worker),
            Ok(Ok(Reply::InitFailed { message })) => {
                let _ = worker.child.wait().await;
                Err(LegacyError::WorkerUnavailable(format!(
                    "the worker could not open the component: {message}"
                )))
            }
            other => {
                let _ = worker.child.start_kill();
                let status = worker.child.wait().await.ok();
                let why = match other {
                    Err(_) => "did not start in time".to_owned(),
                    _ => format!(
                        "ended before it was ready ({})",
                        status.map_or_else(|| "unknown".to_owned(), describe_exit)
                    ),
                };
                Err(LegacyError::WorkerUnavailable(format!("the worker {why}")))
            }
        }
    }

    fn admit(&self) -> Admission {
        let mut health = self.lock_health();
        let breaker = &mut health.breaker;
        match breaker.state {
            BreakerState::Closed => Admission::Go { trial: false },
            BreakerState::Open => {
                let now = Instant::now();
                match breaker.open_until {
                    Some(until) if until > now => Admission::Refused {
                        retry_in: until - now,
                    },
                    _ => {
                        breaker.state = BreakerState::HalfOpen;
                        breaker.trial_running = true;
                        Admission::Go { trial: true }
                    }
                }
            }
            BreakerState::HalfOpen if breaker.trial_running => Admission::Refused {
                retry_in: Duration::ZERO,
            },
            BreakerState::HalfOpen => {
                breaker.trial_running = true;
                Admission::Go { trial: true }
            }
        }
    }

    fn record(&self, worker_died: bool, trial: bool) {
        let mut health = self.lock_health();
        if !worker_died {
            health.consecutive_deaths = 0;
            health.next_start_at = None;
        }
        let cooldown = self.settings.breaker_cooldown;
        let (window, threshold) = (
            self.settings.breaker_window,
            self.settings.breaker_threshold,
        );
        let breaker = &mut health.breaker;
        if trial {
            breaker.trial_running = false;
            if worker_died {
                breaker.state = BreakerState::Open;
                breaker.open_until = Some(Instant::now() + cooldown);
                tracing::warn!("legacy breaker trial failed; open again");
            } else {
                breaker.state = BreakerState::Closed;
                breaker.recent.clear();
                tracing::info!("legacy breaker closed");
            }
            return;
        }
        if breaker.state != BreakerState::Closed {
            return;
        }
        if breaker.recent.len() == window {
            breaker.recent.pop_front();
        }
        breaker.recent.push_back(worker_died);
        let deaths = breaker.recent.iter().filter(|d| **d).count();
        if deaths >= threshold {
            breaker.state = BreakerState::Open;
            breaker.open_until = Some(Instant::now() + cooldown);
            breaker.recent.clear();
            self.counters.breaker_opened.fetch_add(1, Ordering::Relaxed);
            tracing::error!(
                deaths,
                window,
                cooldown_ms = cooldown.as_millis() as u64,
                "legacy workers keep dying; breaker open"
            );
        }
    }

    /// Stops every idle worker (closing its stdin lets it close its engine and
    /// exit), waiting up to `grace` for calls still running.
    pub async fn shutdown(&self, grace: Duration) -> Result<(), LegacyError> {
        let all = u32::try_from(self.max_workers).unwrap_or(u32::MAX);
        let waited = tokio::time::timeout(grace, self.permits.acquire_many(all)).await;
        self.permits.close();
        let workers: Vec<Worker> = self.lock_idle().drain(..).collect();
        for worker in workers {
            retire(worker).await;
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

/// A call let through by the breaker, until its outcome is recorded.
struct Admitted<'a> {
    engine: &'a IsolatedEngine,
    trial: bool,
    recorded: bool,
}

impl Drop for Admitted<'_> {
    fn drop(&mut self) {
        if self.trial && !self.recorded {
            self.engine.lock_health().breaker.trial_running = false;
        }
    }
}

/// Ends a worker gracefully: stdin closed, it closes its engine and exits;
/// killed if it has not within a second. Always reaped.
async fn retire(worker: Worker) {
    let Worker {
        mut child,
        stdin,
        stdout,
        pid,
        calls,
        _alive,
    } = worker;
    drop(stdin);
    drop(stdout);
    let status = match tokio::time::timeout(Duration::from_secs(1), child.wait()).await {
        Ok(Ok(status)) => Some(status),
        _ => {
            let _ = child.start_kill();
            child.wait().await.ok()
        }
    };
    tracing::debug!(
        pid,
        calls,
        exit = %status.map_or_else(|| "unknown".to_owned(), describe_exit),
        "legacy worker retired"
    );
}
