//! What a comparison found, and how it is printed.

use std::path::PathBuf;
use std::time::Duration;

/// What the run found.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    pub old: String,
    pub new: String,
    pub events: usize,
    pub items: usize,
    pub equal: usize,
    pub differ: usize,
    /// Invocations that failed on each side (no answer to compare).
    pub failed_old: usize,
    pub failed_new: usize,
    /// Items answered with an errorType on each side (compared like data).
    pub error_answers_old: usize,
    pub error_answers_new: usize,
    /// Pages read to compare differing tokens, per side.
    pub followed_pages: usize,
    pub latency_old: Latency,
    pub latency_new: Latency,
    pub diff_file: Option<PathBuf>,
    /// Entries written to it: one per differing item, one per failed invocation.
    pub diff_pairs: usize,
}

impl Summary {
    /// Exit status 1 for any difference or failed invocation: parity is not shown.
    pub fn passed(&self) -> bool {
        self.differ == 0 && self.failed_old == 0 && self.failed_new == 0
    }
}

/// Percentiles of one side's invocation times.
#[derive(Debug, Clone, Default)]
pub struct Latency {
    samples_us: Vec<u64>,
}

impl Latency {
    pub(crate) fn record(&mut self, elapsed: Duration) {
        self.samples_us
            .push(u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX));
    }

    /// The `q` quantile (0..=1) in milliseconds, nearest rank.
    pub fn quantile_ms(&self, q: f64) -> f64 {
        if self.samples_us.is_empty() {
            return 0.0;
        }
        let mut sorted = self.samples_us.clone();
        sorted.sort_unstable();
        let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
        sorted[rank - 1] as f64 / 1000.0
    }

    pub fn count(&self) -> usize {
        self.samples_us.len()
    }
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "parity: {} events, {} items", self.events, self.items)?;
        writeln!(f, "  old      {}", self.old)?;
        writeln!(f, "  new      {}", self.new)?;
        writeln!(f, "  equal    {}", self.equal)?;
        writeln!(f, "  differ   {}", self.differ)?;
        writeln!(
            f,
            "  failed   old {}, new {} (invocations with no answer to compare)",
            self.failed_old, self.failed_new
        )?;
        writeln!(
            f,
            "  errors   old {}, new {} (items answered with an errorType, compared like data)",
            self.error_answers_old, self.error_answers_new
        )?;
        writeln!(
            f,
            "  tokens   {} further pages read on each side where the nextTokens' bytes differed",
            self.followed_pages
        )?;
        for (name, latency) in [("old", &self.latency_old), ("new", &self.latency_new)] {
            writeln!(
                f,
                "  latency  {name} p50 {:.1} ms, p99 {:.1} ms ({} invocations)",
                latency.quantile_ms(0.50),
                latency.quantile_ms(0.99),
                latency.count()
            )?;
        }
        match &self.diff_file {
            Some(path) => write!(
                f,
                "  diff     {} ({} pairs)",
                path.display(),
                self.diff_pairs
            )?,
            None => write!(f, "  diff     none written")?,
        }
        Ok(())
    }
}
