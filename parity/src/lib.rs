//! `parity`: replays AppSync events against two targets (the running service
//! and the candidate) and compares their answers item by item
//! (docs/cutover.md). A target is a deployed function or alias (`lambda:NAME`,
//! invoked with the AWS SDK as AppSync invokes it) or a local bootstrap
//! (`local[:PATH]`, run as Lambda runs it, with the environment it is given).
//!
//! What may legitimately differ is left out of the comparison: `processedAt`
//! (when the legacy component scored the row), the request id an error message
//! names, and the bytes of a `nextToken` when both tokens page to the same next
//! page (each side's token is followed on its own side, page by page).
//!
//! An operations tool: it links no test support. The playground's
//! `local-parity` runs the same comparison on the local stack and its data.

#![forbid(unsafe_code)]

pub mod cli;
mod compare;
mod summary;
mod target;

use std::path::{Path, PathBuf};
use std::time::Duration;

use assessments_common::aws::AwsSettings;
use serde_json::{Value, json};

use compare::{Compared, Item, compare_item, items_of};
use target::{Runner, Shared, start_runner};

pub use summary::{Latency, Summary};
pub use target::{Answer, Target};

/// How long one invocation may take before it counts as failed: the
/// function's own timeout (20 s) and a cold start.
pub const INVOKE_TIMEOUT: Duration = Duration::from_secs(30);
/// The most pages followed for one item when the tokens differ.
pub const MAX_FOLLOWED_PAGES: usize = 50;
/// The most differing paths listed per item.
const MAX_PATHS: usize = 10;

/// What to run.
pub struct Options {
    pub events: Vec<Value>,
    pub old: Target,
    pub new: Target,
    /// The environment local targets start from (their own settings over it).
    pub local_env: Vec<(String, String)>,
    /// Where the differing pairs go (JSON Lines); written only when some differ.
    pub diff_file: PathBuf,
    /// A progress bar on stderr (drawn only on a terminal).
    pub progress: bool,
    /// The AWS settings of `lambda:` targets (region, credentials), and
    /// `AWS_ENDPOINT_URL_LAMBDA` when set.
    pub aws: AwsSettings,
    pub lambda_endpoint: Option<String>,
}

/// Runs the comparison; the summary, and the differing pairs in `diff_file`.
pub async fn run(options: Options) -> Result<Summary, String> {
    let mut shared = Shared {
        local_env: options.local_env.clone(),
        sdk: None,
        aws: options.aws.clone(),
        lambda_endpoint: options.lambda_endpoint.clone(),
    };
    let old = start_runner(&options.old, "old", &mut shared).await?;
    let new = start_runner(&options.new, "new", &mut shared).await?;
    let mut summary = Summary {
        old: options.old.describe(),
        new: options.new.describe(),
        events: options.events.len(),
        ..Summary::default()
    };
    let bar = if options.progress {
        indicatif::ProgressBar::new(options.events.len() as u64)
    } else {
        indicatif::ProgressBar::hidden()
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} events {msg}")
            .map_err(|e| e.to_string())?,
    );
    let mut differences = Vec::new();
    for event in &options.events {
        compare_event(&old, &new, event, &mut summary, &mut differences).await;
        bar.set_message(format!("({} items differ)", summary.differ));
        bar.inc(1);
    }
    bar.finish_and_clear();
    if differences.is_empty() {
        // A stale file from an earlier run must not be read as this one's.
        let _ = std::fs::remove_file(&options.diff_file);
    } else {
        write_lines(&options.diff_file, &differences)?;
        summary.diff_file = Some(options.diff_file.clone());
        summary.diff_pairs = differences.len();
    }
    Ok(summary)
}

/// One event on both sides, item by item; what differs goes to `differences`.
async fn compare_event(
    old: &Runner,
    new: &Runner,
    event: &Value,
    summary: &mut Summary,
    differences: &mut Vec<Value>,
) {
    let ((ra, da), (rb, db)) = tokio::join!(old.timed(event), new.timed(event));
    summary.latency_old.record(da);
    summary.latency_new.record(db);
    let count = event.as_array().map_or(1, Vec::len);
    summary.items += count;
    match (ra, rb) {
        (Ok(ra), Ok(rb)) => {
            let (ia, ib) = (items_of(event, &ra), items_of(event, &rb));
            for (index, (a, b)) in ia.into_iter().zip(ib).enumerate() {
                summary.error_answers_old += usize::from(matches!(a, Item::Error { .. }));
                summary.error_answers_new += usize::from(matches!(b, Item::Error { .. }));
                match compare_item(old, new, event, index, (a, b), summary).await {
                    Compared::Equal => summary.equal += 1,
                    Compared::Differ(pair) => {
                        summary.differ += 1;
                        differences.push(pair);
                    }
                }
            }
        }
        (ra, rb) => {
            summary.failed_old += usize::from(ra.is_err());
            summary.failed_new += usize::from(rb.is_err());
            summary.differ += count;
            differences.push(json!({
                "event": event,
                "old": ra.map(|a| format!("{a:?}")).unwrap_or_else(|e| e),
                "new": rb.map(|a| format!("{a:?}")).unwrap_or_else(|e| e),
                "paths": ["(a failed invocation)"],
            }));
        }
    }
}

fn write_lines(path: &Path, values: &[Value]) -> Result<(), String> {
    let mut text = String::new();
    for value in values {
        text.push_str(&value.to_string());
        text.push('\n');
    }
    std::fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// Reads a file of events: one AppSync direct-resolver event (an object, or
/// a batch: an array of them) per line; blank lines are skipped.
pub fn read_events(path: &Path) -> Result<Vec<Value>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut events = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let event: Value = serde_json::from_str(line)
            .map_err(|e| format!("{}:{}: not JSON: {e}", path.display(), n + 1))?;
        if !(event.is_object() || event.is_array()) {
            return Err(format!(
                "{}:{}: not an AppSync event (an object, or an array for a batch)",
                path.display(),
                n + 1
            ));
        }
        events.push(event);
    }
    Ok(events)
}

/// Writes `events` as [`read_events`] reads them.
pub fn write_events(path: &Path, events: &[Value]) -> Result<(), String> {
    write_lines(path, events)
}

/// `KEY=VALUE` as a setting.
pub fn parse_setting(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
        _ => Err(format!("{text:?} is not KEY=VALUE")),
    }
}
