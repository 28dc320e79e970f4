//! What the soak measures: each invocation's sample, latency histograms
//! (allocated once, never growing), and checkpoints of RSS and latency.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

pub fn histogram() -> Histogram<u64> {
    // 1 µs .. 60 s at 3 significant digits: allocated once, never grows.
    Histogram::new_with_bounds(1, 60_000_000, 3).unwrap_or_else(|e| panic!("histogram bounds: {e}"))
}

pub fn us(d: Duration) -> u64 {
    d.as_micros().clamp(1, 60_000_000) as u64
}

#[derive(Debug, Clone)]
pub struct Checkpoint {
    pub invocations: u64,
    pub rss_kib: u64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub throughput: f64,
}

pub struct Measure {
    pub all: Histogram<u64>,
    pub overhead: Histogram<u64>,
    /// Time in each dependency: DynamoDB, SQL Server, and the legacy
    /// component (resolver) or the scoring API (processor).
    pub dynamodb: Histogram<u64>,
    pub sql: Histogram<u64>,
    pub third: Histogram<u64>,
    pub window: Histogram<u64>,
    pub window_started: Instant,
    pub checkpoints: Vec<Checkpoint>,
    pub errors: BTreeMap<String, u64>,
    pub outcomes: BTreeMap<&'static str, u64>,
}

/// What one invocation did, in either mode.
pub struct Sample {
    pub elapsed: Duration,
    /// Per invocation (resolver) or per record (processor): time not spent
    /// waiting on a dependency.
    pub overheads: Vec<Duration>,
    pub dynamodb: Vec<Duration>,
    pub sql: Vec<Duration>,
    pub third: Vec<Duration>,
    pub errors: Vec<String>,
    pub outcomes: Vec<&'static str>,
}
