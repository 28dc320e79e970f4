//! The invocation's time budget: every wait on the outside world ends by the
//! invocation's deadline (less a margin for returning the response), or by
//! its own timeout, whichever comes first, and says which one fired.
//!
//! Lambda gives each invocation a deadline (`context.deadline`, ms since the
//! epoch). An invocation still running then is killed with no typed error and
//! its execution environment thrown away, so a slow dependency must fail the
//! item that waits on it, in time for the response to leave.
//!
//! ```
//! use std::time::Duration;
//! use assessments_common::budget::{Budget, Limit};
//! # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
//! let budget = Budget::after(Duration::from_millis(50));
//! // A step with a 5 s timeout of its own gets what is left of the budget...
//! let bound = budget.bound(Duration::from_secs(5), "SQL_QUERY_TIMEOUT_MS");
//! let outcome = bound.run(std::future::pending::<()>()).await;
//! // ...and the error says the deadline fired, not the 5 s.
//! assert!(matches!(outcome, Err(Limit::Deadline { .. })));
//! # });
//! ```

use std::time::Duration;

use tokio::time::Instant;

/// Until when an invocation may wait on its dependencies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    deadline: Instant,
}

impl Budget {
    /// A budget that ends at `deadline`.
    pub fn until(deadline: Instant) -> Self {
        Budget { deadline }
    }

    /// A budget that ends `time` from now.
    pub fn after(time: Duration) -> Self {
        Budget::until(Instant::now() + time)
    }

    /// The budget of a Lambda invocation: its deadline (`deadline_ms`, ms
    /// since the epoch, as the Runtime API gives it) less `margin`, the time
    /// kept for serializing and returning the response.
    pub fn from_lambda_deadline(deadline_ms: u64, margin: Duration) -> Self {
        Budget::until(Instant::from_std(instant_of_epoch_ms(deadline_ms))).less(margin)
    }

    /// This budget, ending `margin` earlier (never before now).
    pub fn less(self, margin: Duration) -> Self {
        let now = Instant::now();
        let deadline = self
            .deadline
            .checked_sub(margin)
            .unwrap_or(now)
            .max(now.min(self.deadline));
        Budget { deadline }
    }

    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// What is left (zero once spent).
    pub fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }

    /// Whether an attempt that may take `attempt` can still finish in time:
    /// a retry starts only when it does.
    pub fn fits(&self, attempt: Duration) -> bool {
        self.remaining() >= attempt
    }

    /// The bound of a step whose own timeout is `own` (the setting `setting`):
    /// whichever of it and the budget ends first.
    pub fn bound(&self, own: Duration, setting: &'static str) -> Bound {
        let left = self.remaining();
        if own <= left {
            Bound {
                at: Instant::now() + own,
                limit: Limit::Own {
                    after: own,
                    setting,
                },
            }
        } else {
            Bound {
                at: self.deadline,
                limit: Limit::Deadline { after: left },
            }
        }
    }

    /// A bound that is the budget itself (a step with no timeout of its own).
    pub fn as_bound(&self) -> Bound {
        Bound {
            at: self.deadline,
            limit: Limit::Deadline {
                after: self.remaining(),
            },
        }
    }
}

/// When a step must end, and which limit that is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bound {
    pub at: Instant,
    pub limit: Limit,
}

impl Bound {
    /// Runs `step` until the bound; `Err(limit)` if it fired first.
    pub async fn run<F: std::future::Future>(&self, step: F) -> Result<F::Output, Limit> {
        tokio::time::timeout_at(self.at, step)
            .await
            .map_err(|_elapsed| self.limit)
    }

    /// The time this bound allows (from when it was made).
    pub fn allowed(&self) -> Duration {
        self.limit.after()
    }

    /// Whether the invocation's deadline is what ends this step.
    pub fn is_deadline(&self) -> bool {
        matches!(self.limit, Limit::Deadline { .. })
    }
}

/// The limit that ended a wait, for messages: "within {limit}".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// The step's own timeout: `after`, the value of `setting`.
    Own {
        after: Duration,
        setting: &'static str,
    },
    /// The invocation's deadline: `after` was what remained of the budget.
    Deadline { after: Duration },
}

impl Limit {
    pub fn after(&self) -> Duration {
        match self {
            Limit::Own { after, .. } | Limit::Deadline { after } => *after,
        }
    }
}

impl std::fmt::Display for Limit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Limit::Own { after, setting } => write!(f, "{}ms ({setting})", after.as_millis()),
            Limit::Deadline { after } => write!(
                f,
                "the {}ms left before the invocation's deadline",
                after.as_millis()
            ),
        }
    }
}

/// The `Instant` of a time given in milliseconds since the epoch (a Lambda deadline).
pub fn instant_of_epoch_ms(epoch_ms: u64) -> std::time::Instant {
    let now_ms = chrono::Utc::now().timestamp_millis().max(0) as u64;
    std::time::Instant::now() + Duration::from_millis(epoch_ms.saturating_sub(now_ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_earlier_limit_bounds_a_step_and_is_named() {
        let budget = Budget::after(Duration::from_secs(3));
        let own = budget.bound(Duration::from_secs(1), "SQL_QUERY_TIMEOUT_MS");
        assert_eq!(
            own.limit.to_string(),
            "1000ms (SQL_QUERY_TIMEOUT_MS)",
            "its own timeout is shorter"
        );
        let cut = budget.bound(Duration::from_secs(5), "SQL_QUERY_TIMEOUT_MS");
        assert!(cut.is_deadline());
        assert_eq!(
            cut.limit.to_string(),
            "the 3000ms left before the invocation's deadline"
        );
        let started = Instant::now();
        assert_eq!(
            cut.run(std::future::pending::<()>()).await,
            Err(Limit::Deadline {
                after: Duration::from_secs(3)
            })
        );
        assert_eq!(started.elapsed(), Duration::from_secs(3));
        assert_eq!(budget.remaining(), Duration::ZERO);
        assert!(!budget.fits(Duration::from_millis(1)));
        assert_eq!(own.run(async { 7 }).await, Ok(7));
    }

    #[tokio::test(start_paused = true)]
    async fn a_margin_never_moves_the_deadline_into_the_past() {
        let budget = Budget::after(Duration::from_millis(100)).less(Duration::from_millis(250));
        assert_eq!(budget.remaining(), Duration::ZERO);
        let budget = Budget::after(Duration::from_millis(1000)).less(Duration::from_millis(250));
        assert_eq!(budget.remaining(), Duration::from_millis(750));
    }

    #[test]
    fn a_lambda_deadline_converts_from_epoch_milliseconds() {
        let now_ms = chrono::Utc::now().timestamp_millis() as u64;
        let at = instant_of_epoch_ms(now_ms + 3000);
        let left = at.saturating_duration_since(std::time::Instant::now());
        assert!(
            left > Duration::from_millis(2900) && left <= Duration::from_millis(3000),
            "{left:?}"
        );
        assert_eq!(
            instant_of_epoch_ms(now_ms.saturating_sub(10_000))
                .saturating_duration_since(std::time::Instant::now()),
            Duration::ZERO
        );
    }
}
