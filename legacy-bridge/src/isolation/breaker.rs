//! The circuit breaker of process isolation, as a pure state machine: no
//! clock of its own (every transition takes `now`), no I/O, no locks.
//!
//! ```text
//!            deaths >= threshold in the last `window` outcomes
//!   Closed ─────────────────────────────────────────────────────▶ Open
//!     ▲                                                            │ cooldown over:
//!     │ the trial's worker answered                                │ the next call is
//!     │                                                            ▼ the one trial
//!     └──────────────────────────────────────────────────────── HalfOpen
//!                   the trial's worker died: Open again ──────────▶ Open
//! ```
//!
//! What counts: only calls that reached a worker (or started one) say
//! anything about the component. A worker that answered, even with an error
//! status, is healthy; one that crashed, hung, failed to start or broke the
//! protocol is a death. A call that never reached a worker (it timed out
//! waiting, the pool was saturated, its caller went away) is abandoned: it
//! leaves the window as it was, and a trial that ends that way is handed back
//! so the next call becomes the trial. The breaker stays half-open until a
//! trial has actually tested a worker.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

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

/// Whether a call may go ahead, and whether it is the half-open trial.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Go { trial: bool },
    Refused { retry_in: Duration },
}

/// What a call (or a worker start) that reached a worker showed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallOutcome {
    /// The worker answered (a result or an error status).
    Healthy,
    /// The worker crashed, hung, failed to start or sent an invalid reply.
    Death,
}

/// A change of state, for the logs and the counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// Closed to open: `deaths` in the window reached the threshold.
    Opened { deaths: usize },
    /// The half-open trial's worker died.
    Reopened,
    /// The half-open trial's worker answered.
    Closed,
}

#[derive(Debug)]
pub struct Breaker {
    window: usize,
    threshold: usize,
    cooldown: Duration,
    /// The last outcomes while closed: `true` where the worker died.
    recent: VecDeque<bool>,
    state: BreakerState,
    open_until: Instant,
    trial_running: bool,
}

impl Breaker {
    /// Opens when `threshold` of the last `window` outcomes were deaths;
    /// refuses calls for `cooldown`, then lets one trial through.
    pub fn new(window: usize, threshold: usize, cooldown: Duration, now: Instant) -> Self {
        let window = window.max(1);
        Breaker {
            window,
            threshold: threshold.clamp(1, window),
            cooldown,
            recent: VecDeque::with_capacity(window),
            state: BreakerState::Closed,
            open_until: now,
            trial_running: false,
        }
    }

    pub fn state(&self) -> BreakerState {
        self.state
    }

    /// Whether a call may go ahead now.
    pub fn admit(&mut self, now: Instant) -> Admission {
        match self.state {
            BreakerState::Closed => Admission::Go { trial: false },
            BreakerState::Open if self.open_until > now => Admission::Refused {
                retry_in: self.open_until - now,
            },
            BreakerState::Open | BreakerState::HalfOpen if !self.trial_running => {
                self.state = BreakerState::HalfOpen;
                self.trial_running = true;
                Admission::Go { trial: true }
            }
            // Half-open with its trial under way: wait for its outcome.
            BreakerState::Open | BreakerState::HalfOpen => Admission::Refused {
                retry_in: Duration::ZERO,
            },
        }
    }

    /// An admitted call ended without reaching a worker: nothing learned.
    /// A trial is handed back (the next call becomes the trial).
    pub fn abandon(&mut self, trial: bool) {
        if trial && self.state == BreakerState::HalfOpen {
            self.trial_running = false;
        }
    }

    /// The outcome of a call that reached a worker, or of a worker start
    /// (`trial` when it was the half-open trial).
    pub fn record(
        &mut self,
        now: Instant,
        outcome: CallOutcome,
        trial: bool,
    ) -> Option<Transition> {
        let died = outcome == CallOutcome::Death;
        if trial && self.state == BreakerState::HalfOpen {
            self.trial_running = false;
            self.recent.clear();
            return if died {
                self.state = BreakerState::Open;
                self.open_until = now + self.cooldown;
                Some(Transition::Reopened)
            } else {
                self.state = BreakerState::Closed;
                Some(Transition::Closed)
            };
        }
        if self.state != BreakerState::Closed {
            // Outcomes of calls admitted before it opened: already counted in.
            return None;
        }
        if self.recent.len() == self.window {
            self.recent.pop_front();
        }
        self.recent.push_back(died);
        let deaths = self.recent.iter().filter(|d| **d).count();
        if deaths < self.threshold {
            return None;
        }
        self.state = BreakerState::Open;
        self.open_until = now + self.cooldown;
        self.recent.clear();
        Some(Transition::Opened { deaths })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const COOLDOWN: Duration = Duration::from_secs(10);

    fn breaker(now: Instant) -> Breaker {
        Breaker::new(4, 2, COOLDOWN, now)
    }

    fn open(now: Instant) -> Breaker {
        let mut b = breaker(now);
        assert_eq!(b.record(now, CallOutcome::Death, false), None);
        assert_eq!(
            b.record(now, CallOutcome::Death, false),
            Some(Transition::Opened { deaths: 2 })
        );
        b
    }

    #[test]
    fn closed_lets_calls_through_and_opens_at_the_threshold_within_the_window() {
        let t0 = Instant::now();
        let mut b = breaker(t0);
        assert_eq!(b.admit(t0), Admission::Go { trial: false });
        // One death, then enough healthy calls to push it out of the window.
        assert_eq!(b.record(t0, CallOutcome::Death, false), None);
        for _ in 0..4 {
            assert_eq!(b.record(t0, CallOutcome::Healthy, false), None);
        }
        assert_eq!(b.record(t0, CallOutcome::Death, false), None);
        assert_eq!(b.state(), BreakerState::Closed);
        assert_eq!(
            b.record(t0, CallOutcome::Death, false),
            Some(Transition::Opened { deaths: 2 })
        );
        assert_eq!(b.state(), BreakerState::Open);
    }

    #[test]
    fn open_refuses_until_the_cooldown_then_admits_exactly_one_trial() {
        let t0 = Instant::now();
        let mut b = open(t0);
        assert_eq!(
            b.admit(t0 + Duration::from_secs(4)),
            Admission::Refused {
                retry_in: Duration::from_secs(6)
            }
        );
        let later = t0 + COOLDOWN;
        assert_eq!(b.admit(later), Admission::Go { trial: true });
        assert_eq!(b.state(), BreakerState::HalfOpen);
        assert_eq!(
            b.admit(later),
            Admission::Refused {
                retry_in: Duration::ZERO
            }
        );
        // Late outcomes of calls admitted before it opened change nothing.
        assert_eq!(b.record(later, CallOutcome::Death, false), None);
        assert_eq!(b.record(later, CallOutcome::Healthy, false), None);
        assert_eq!(b.state(), BreakerState::HalfOpen);
    }

    #[test]
    fn a_healthy_trial_closes_it_with_an_empty_window() {
        let t0 = Instant::now();
        let mut b = open(t0);
        let later = t0 + COOLDOWN;
        assert_eq!(b.admit(later), Admission::Go { trial: true });
        assert_eq!(
            b.record(later, CallOutcome::Healthy, true),
            Some(Transition::Closed)
        );
        assert_eq!(b.state(), BreakerState::Closed);
        assert_eq!(b.admit(later), Admission::Go { trial: false });
        // The old deaths are forgotten: one new death does not reopen it.
        assert_eq!(b.record(later, CallOutcome::Death, false), None);
    }

    #[test]
    fn a_trial_that_dies_reopens_it_for_a_new_cooldown() {
        let t0 = Instant::now();
        let mut b = open(t0);
        let later = t0 + COOLDOWN;
        assert_eq!(b.admit(later), Admission::Go { trial: true });
        assert_eq!(
            b.record(later, CallOutcome::Death, true),
            Some(Transition::Reopened)
        );
        assert_eq!(
            b.admit(later + Duration::from_secs(1)),
            Admission::Refused {
                retry_in: Duration::from_secs(9)
            }
        );
    }

    #[test]
    fn a_trial_that_times_out_or_finds_no_slot_neither_closes_nor_wedges_it() {
        let t0 = Instant::now();
        let mut b = open(t0);
        let later = t0 + COOLDOWN;
        // The trial waited for a slot until its deadline (saturation), or its
        // caller's budget ran out before dispatch: it is handed back.
        assert_eq!(b.admit(later), Admission::Go { trial: true });
        b.abandon(true);
        assert_eq!(b.state(), BreakerState::HalfOpen, "not closed");
        // The next call is the new trial, at once (no second cooldown).
        assert_eq!(b.admit(later), Admission::Go { trial: true });
        b.abandon(true);
        assert_eq!(b.admit(later), Admission::Go { trial: true });
        assert_eq!(
            b.record(later, CallOutcome::Healthy, true),
            Some(Transition::Closed)
        );
        // Abandoning a call that was not the trial changes nothing.
        b.abandon(false);
        assert_eq!(b.state(), BreakerState::Closed);
    }

    #[test]
    fn abandoned_calls_do_not_fill_the_window() {
        let t0 = Instant::now();
        let mut b = breaker(t0);
        assert_eq!(b.record(t0, CallOutcome::Death, false), None);
        for _ in 0..100 {
            b.abandon(false);
        }
        assert_eq!(
            b.record(t0, CallOutcome::Death, false),
            Some(Transition::Opened { deaths: 2 })
        );
    }
}
