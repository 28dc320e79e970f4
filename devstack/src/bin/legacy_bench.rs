//! Compares the two implementations of the legacy component's C ABI, through
//! the same bridge code: the C++ mock (libloading) and the .NET component
//! (hostfxr): the time to load and open (the CLR's start), the first call,
//! the per-call cost of the same calls in process, and a worker's resident
//! memory when isolated. Prints one line of figures per implementation.
//!
//! ```sh
//! cargo run --release -p devstack --bin legacy-bench -- --calls 20000 --rows 10
//! ```

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Parser;
use legacy_bridge::{Isolation, IsolationSettings, LegacyEngine, LegacySettings};
use serde_json::json;

#[derive(Debug, Parser)]
#[command(about = "Compare the C++ and .NET legacy components through the same bridge")]
struct Args {
    /// Scoring calls measured per implementation (after 1,000 warm-up calls).
    #[arg(long, default_value_t = 20_000)]
    calls: u32,
    /// Rows per call.
    #[arg(long, default_value_t = 10)]
    rows: usize,
    /// Only this implementation (`cpp` or `dotnet`); both by default, in that order.
    #[arg(long)]
    only: Option<String>,
}

fn main() {
    // The isolated measurement starts this binary as a worker.
    legacy_bridge::run_worker_if_requested();
    if let Err(e) = run(Args::parse()) {
        eprintln!("legacy-bench: {e}");
        std::process::exit(2);
    }
}

#[tokio::main]
async fn run(args: Args) -> Result<(), String> {
    if legacy_shim::DOTNET_ASSEMBLY_PATH.is_empty() {
        return Err("the .NET component was not built (install mono-mcs, then build)".to_owned());
    }
    let context = testkit::legacy::grade3();
    let input = testkit::legacy::rows(args.rows);
    let budget = || assessments_common::budget::Budget::after(Duration::from_secs(60));
    let chosen = [
        ("cpp", legacy_shim::SHIM_PATH),
        ("dotnet", legacy_shim::DOTNET_ASSEMBLY_PATH),
    ]
    .into_iter()
    .filter(|(name, _)| args.only.as_deref().is_none_or(|only| only == *name));
    for (name, path) in chosen {
        let in_process = LegacySettings {
            lib_path: PathBuf::from(path),
            isolation: Isolation::InProcess,
            ..LegacySettings::default()
        };
        let started = Instant::now();
        let engine = LegacyEngine::start(&in_process)
            .await
            .map_err(|e| e.to_string())?;
        let open = started.elapsed();
        let first = Instant::now();
        engine
            .score(context, input.clone(), &budget())
            .await
            .map_err(|e| e.to_string())?;
        let first_call = first.elapsed();
        for _ in 0..1000 {
            engine
                .score(context, input.clone(), &budget())
                .await
                .map_err(|e| e.to_string())?;
        }
        let measured = Instant::now();
        for _ in 0..args.calls {
            engine
                .score(context, input.clone(), &budget())
                .await
                .map_err(|e| e.to_string())?;
        }
        let per_call = measured.elapsed() / args.calls.max(1);
        engine
            .shutdown(Duration::from_secs(5))
            .await
            .map_err(|e| e.to_string())?;

        // One worker process, idle after a call: its resident memory.
        let isolated = LegacySettings {
            max_concurrency: 1,
            isolation: Isolation::Process(IsolationSettings {
                worker_path: Some(std::env::current_exe().map_err(|e| e.to_string())?),
                ..IsolationSettings::default()
            }),
            ..in_process.clone()
        };
        let worker_started = Instant::now();
        let workers = LegacyEngine::start(&isolated)
            .await
            .map_err(|e| e.to_string())?;
        workers
            .score(context, input.clone(), &budget())
            .await
            .map_err(|e| e.to_string())?;
        let worker_first_answer = worker_started.elapsed();
        // The worker is idle once its reply is processed: give that a moment.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let worker_rss_kib = workers_rss_kib();
        workers
            .shutdown(Duration::from_secs(5))
            .await
            .map_err(|e| e.to_string())?;
        println!(
            "{}",
            json!({
                "implementation": name,
                "load_and_open_ms": ms(open),
                "first_call_us": first_call.as_micros() as u64,
                "per_call_us": (per_call.as_secs_f64() * 1e7).round() / 10.0,
                "rows_per_call": args.rows,
                "calls": args.calls,
                "worker_start_to_first_answer_ms": ms(worker_first_answer),
                "idle_worker_rss_kib": worker_rss_kib,
            })
        );
    }
    Ok(())
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e4).round() / 10.0
}

/// The resident size of this process's worker processes together (KiB).
fn workers_rss_kib() -> u64 {
    testkit::procfs::children_of(std::process::id())
        .into_iter()
        .filter_map(testkit::procfs::rss_kib)
        .sum()
}
