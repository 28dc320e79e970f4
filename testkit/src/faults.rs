//! The trigger behind every injected fault of the test peers: fire on the next
//! `n` requests, and/or on a share of them drawn from a seeded generator, so a
//! faulty run is reproducible.

use std::sync::atomic::{AtomicU64, Ordering};

/// When one kind of fault fires. Lock-free; shared by every connection.
#[derive(Debug, Default)]
pub struct Trigger {
    next: AtomicU64,
    per_million: AtomicU64,
    state: AtomicU64,
}

impl Trigger {
    /// Fire on the next `n` checks (in addition to the rate).
    pub fn next(&self, n: u64) {
        self.next.store(n, Ordering::SeqCst);
    }

    /// Fire on this share (0..1) of checks, drawn from a generator seeded with `seed`.
    pub fn rate(&self, share: f64, seed: u64) {
        self.per_million
            .store((share.clamp(0.0, 1.0) * 1e6) as u64, Ordering::SeqCst);
        self.state.store(seed.max(1), Ordering::SeqCst);
    }

    pub fn clear(&self) {
        self.next(0);
        self.rate(0.0, 1);
    }

    /// Whether the fault fires for this request.
    pub fn fires(&self) -> bool {
        if self
            .next
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return true;
        }
        let rate = self.per_million.load(Ordering::SeqCst);
        rate > 0 && self.draw() % 1_000_000 < rate
    }

    /// xorshift64: tiny, deterministic for a seed, good enough to spread faults.
    fn draw(&self) -> u64 {
        let step = |mut x: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let previous = self
            .state
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |x| Some(step(x.max(1))));
        step(previous.unwrap_or(1).max(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seeded_rate_fires_reproducibly_near_its_share() {
        let count = |seed| {
            let t = Trigger::default();
            t.rate(0.1, seed);
            (0..10_000).map(|_| t.fires()).collect::<Vec<_>>()
        };
        assert_eq!(count(5), count(5));
        let fired = count(5).iter().filter(|f| **f).count();
        assert!((800..=1200).contains(&fired), "{fired} of 10,000 at 10%");
        let t = Trigger::default();
        t.next(2);
        assert_eq!((t.fires(), t.fires(), t.fires()), (true, true, false));
    }
}
