//! What a worker prints is data, not log lines: the component's stdout and
//! stderr (a worker's fd 1 is its fd 2) come to the supervisor through a
//! pipe, and each line goes out as the string field `output` of a line the
//! function writes (`"message":"legacy worker output"`, with the worker's
//! pid), escaped by the JSON log layer. A component cannot print a line that
//! passes for the function's own: an audit line, an EMF document, a Lambda
//! `REPORT` line all arrive inside that field.
//!
//! Bounded: a line is cut at [`MAX_LINE`] bytes, and a worker gets
//! [`BURST`] lines, then [`PER_SECOND`] a second; what is over that is read
//! (the worker never blocks on a full pipe) and counted, and the count is
//! said in the next line let through.

use tokio::io::AsyncReadExt;
use tokio::process::ChildStderr;
use tokio::time::Instant;

/// The longest line passed on, in bytes (the rest of it is left out).
pub const MAX_LINE: usize = 1024;
/// Lines a worker may print at once, and then per second.
pub const BURST: u32 = 50;
pub const PER_SECOND: u32 = 10;

/// Starts passing on what worker `pid` prints, until its stderr closes.
pub(super) fn relay(pid: u32, stderr: ChildStderr) {
    tokio::spawn(relay_lines(pid, stderr));
}

async fn relay_lines(pid: u32, mut stderr: ChildStderr) {
    let mut lines = Lines::default();
    let mut budget = Budget::new(Instant::now());
    let mut chunk = [0u8; 8192];
    while let Ok(n @ 1..) = stderr.read(&mut chunk).await {
        for line in lines.push(&chunk[..n]) {
            emit(pid, &line, &mut budget);
        }
    }
    if let Some(line) = lines.finish() {
        emit(pid, &line, &mut budget);
    }
    if budget.dropped > 0 {
        tracing::warn!(
            worker = pid,
            dropped = budget.dropped,
            "legacy worker output dropped"
        );
    }
}

fn emit(pid: u32, line: &Line, budget: &mut Budget) {
    if !budget.take(Instant::now()) {
        return;
    }
    let text = String::from_utf8_lossy(&line.bytes);
    let dropped = std::mem::take(&mut budget.dropped);
    tracing::warn!(
        worker = pid,
        output = %text,
        cut = line.cut,
        dropped_before = dropped,
        "legacy worker output"
    );
}

/// A line as passed on: at most [`MAX_LINE`] bytes, and whether it was longer.
#[derive(Debug, Default, PartialEq, Eq)]
struct Line {
    bytes: Vec<u8>,
    cut: bool,
}

/// Splits a byte stream into lines, keeping at most [`MAX_LINE`] bytes of each.
#[derive(Debug, Default)]
struct Lines {
    current: Line,
}

impl Lines {
    fn push(&mut self, bytes: &[u8]) -> Vec<Line> {
        let mut done = Vec::new();
        for &byte in bytes {
            if byte == b'\n' {
                done.push(std::mem::take(&mut self.current));
            } else if self.current.bytes.len() < MAX_LINE {
                self.current.bytes.push(byte);
            } else {
                self.current.cut = true;
            }
        }
        done
    }

    /// The last line, if the stream did not end with a newline.
    fn finish(&mut self) -> Option<Line> {
        let last = std::mem::take(&mut self.current);
        (!last.bytes.is_empty() || last.cut).then_some(last)
    }
}

/// A token bucket: [`BURST`] lines, refilled at [`PER_SECOND`].
#[derive(Debug)]
struct Budget {
    tokens: f64,
    at: Instant,
    dropped: u64,
}

impl Budget {
    fn new(now: Instant) -> Self {
        Budget {
            tokens: f64::from(BURST),
            at: now,
            dropped: 0,
        }
    }

    fn take(&mut self, now: Instant) -> bool {
        let refill = now.saturating_duration_since(self.at).as_secs_f64() * f64::from(PER_SECOND);
        self.tokens = (self.tokens + refill).min(f64::from(BURST));
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            self.dropped += 1;
            false
        }
    }
}

/// How long the bucket takes to refill one line (for the tests).
#[cfg(test)]
const ONE_LINE: std::time::Duration = std::time::Duration::from_millis(1000 / PER_SECOND as u64);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_split_and_cut_at_the_bound() {
        let mut lines = Lines::default();
        let long = vec![b'x'; MAX_LINE + 10];
        let mut stream = b"one\ntw".to_vec();
        let done = lines.push(&stream);
        assert_eq!(
            done,
            vec![Line {
                bytes: b"one".to_vec(),
                cut: false
            }]
        );
        stream = b"o\n".to_vec();
        stream.extend(&long);
        stream.extend(b"\nlast");
        let done = lines.push(&stream);
        assert_eq!(done[0].bytes, b"two");
        assert_eq!((done[1].bytes.len(), done[1].cut), (MAX_LINE, true));
        assert_eq!(lines.finish().map(|l| l.bytes), Some(b"last".to_vec()));
        assert_eq!(lines.finish(), None);
    }

    #[test]
    fn a_flood_is_cut_to_the_burst_then_the_rate() {
        let start = Instant::now();
        let mut budget = Budget::new(start);
        let let_through = (0..1000).filter(|_| budget.take(start)).count();
        assert_eq!(let_through, BURST as usize);
        assert_eq!(budget.dropped, 1000 - u64::from(BURST));
        assert!(!budget.take(start + ONE_LINE / 2));
        assert!(budget.take(start + ONE_LINE * 2));
    }
}
