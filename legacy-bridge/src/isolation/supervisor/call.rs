//! One call's life in its own task: a worker for it, the exchange, what the
//! reply (or its absence) shows, and the worker looked after once the caller
//! has its answer: back to its slot, recycled, or buried and replaced.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use assessments_common::budget::{Budget, Limit};
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::{CallResult, HeldSlot, NoWorker, Supervisor, Tracked};
use crate::NativeStats;
use crate::error::LegacyError;
use crate::isolation::breaker::CallOutcome;
use crate::isolation::process::{Lost, describe_exit};
use crate::isolation::stats::SupervisorCounters;
use crate::protocol::{self, Reply, Request, WorkerProtocolError};
use crate::types::{AssessmentRow, StudentContext};

impl Supervisor {
    /// One call, in its own task: get a worker, send the request, read the
    /// reply within the call timeout, answer the caller, then look after the
    /// worker (back to its slot, recycled, or replaced).
    pub(super) async fn run_call(
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
    pub(super) async fn after_call(&self, tracked: Tracked) -> Option<Tracked> {
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
