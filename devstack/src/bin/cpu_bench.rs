//! What one invocation of the resolver costs in CPU: the figure Lambda bills
//! (on 256 MB, about 0.15 of a vCPU: 1 ms of CPU is ~7 ms billed).
//!
//! Runs the release `assessments-resolver` binary as Lambda runs it, under
//! testkit's Runtime API against the local stack (TDS server, moto behind its
//! keep-alive proxy), for a fixed event mix: a single `getAssessments`
//! (stu-0001, limit 20) and a batch of 10, each with the legacy component in
//! process and in worker processes, and a batch of 100 (over 30 students,
//! AppSync's BatchInvoke at scale) in process. Per scenario, two runs:
//!
//! * plain: init time (process start to its first `/next`), the first
//!   invocation's time, then after a warm-up, per invocation: CPU time
//!   user/system (`/proc/<pid>/stat`, and the exact on-CPU time from
//!   `schedstat`), context switches, wall time; the peak RSS. Workers
//!   (isolation) are counted with the function.
//! * under `valgrind --tool=callgrind`: after a warm-up the counters are
//!   zeroed (`callgrind_control -z`), then dumped after the measured
//!   invocations: instructions per invocation (deterministic: the same from
//!   run to run whatever else the machine does, the headline figure) and
//!   calls to malloc/calloc/realloc per invocation. The function process
//!   only: the legacy workers run natively, since valgrind implements neither
//!   `seccomp` nor Landlock and a worker that cannot apply its sandbox does not
//!   start; their cost is in the plain run's CPU time.
//!
//! ```sh
//! cargo build --release --bin assessments-resolver
//! cargo run --release -p devstack --bin cpu-bench            # prints the table, writes target/cpu-bench/latest.json
//! cargo run --release -p devstack --bin cpu-bench -- --save-baseline   # docs/cpu-bench-baseline.json
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use clap::Parser;
use devstack::stack::StackOptions;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use testkit::appsync::get_assessments;
use testkit::function::{Function, lambda_env};
use testkit::lambda_api::{InvocationResult, RuntimeApi};
use testkit::procfs::{self, ProcessCost};
use testkit::services::{LocalServices, ServicesOptions};

#[derive(Debug, Parser)]
#[command(
    about = "CPU per invocation of the release resolver binary: instructions (callgrind), CPU time, switches, allocations, RSS, init"
)]
struct Args {
    /// Measured invocations of the plain runs (CPU time, switches, wall time).
    #[arg(long, default_value_t = 500)]
    invocations: u64,
    /// Measured invocations under callgrind (instructions, allocations).
    #[arg(long, default_value_t = 100)]
    callgrind_invocations: u64,
    /// Invocations before measuring (connections open, workers started, caches warm).
    #[arg(long, default_value_t = 30)]
    warmup: u64,
    /// Only these scenarios (e.g. `single/in-process`); all by default.
    #[arg(long = "scenario")]
    scenarios: Vec<String>,
    /// Skip the callgrind runs (no valgrind needed; no instruction counts).
    #[arg(long)]
    no_callgrind: bool,
    /// The function binary (default: `assessments-resolver` beside this one, in target/release).
    #[arg(long)]
    binary: Option<PathBuf>,
    /// Where the figures go (JSON).
    #[arg(long, default_value = "target/cpu-bench/latest.json")]
    out: PathBuf,
    /// The committed baseline the figures are compared with.
    #[arg(long, default_value = "docs/cpu-bench-baseline.json")]
    baseline: PathBuf,
    /// Write this run's figures as the new baseline.
    #[arg(long)]
    save_baseline: bool,
}

/// One scenario's figures, per invocation unless said otherwise.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Figures {
    instructions: Option<u64>,
    allocations: Option<u64>,
    cpu_us: f64,
    user_us: f64,
    system_us: f64,
    voluntary_switches: f64,
    involuntary_switches: f64,
    wall_p50_ms: f64,
    peak_rss_mib: f64,
    init_ms: f64,
    first_invocation_ms: f64,
    /// Medians over the measured invocations, from the function's own
    /// `invocation` log lines: the handler's time and each dependency's.
    handler_p50_ms: f64,
    profiles_p50_ms: f64,
    sql_p50_ms: f64,
    legacy_p50_ms: f64,
}

struct Scenario {
    name: &'static str,
    isolation: &'static str,
    event: fn() -> Value,
}

fn single() -> Value {
    get_assessments(json!({"studentId": "stu-0001", "limit": 20}))
}

fn batch() -> Value {
    Value::Array(
        (0..10)
            .map(|i| {
                get_assessments(json!({"studentId": format!("stu-{:04}", 3 + i), "limit": 20}))
            })
            .collect(),
    )
}

fn batch_of_100() -> Value {
    Value::Array(
        (0..100)
            .map(|i| {
                get_assessments(json!({"studentId": format!("stu-{:04}", 3 + i % 30), "limit": 20}))
            })
            .collect(),
    )
}

const SCENARIOS: [Scenario; 5] = [
    Scenario {
        name: "single/in-process",
        isolation: "in-process",
        event: single,
    },
    Scenario {
        name: "batch/in-process",
        isolation: "in-process",
        event: batch,
    },
    Scenario {
        name: "single/process",
        isolation: "process",
        event: single,
    },
    Scenario {
        name: "batch/process",
        isolation: "process",
        event: batch,
    },
    Scenario {
        name: "batch100/in-process",
        isolation: "in-process",
        event: batch_of_100,
    },
];

/// The answer must be a page (or a batch of them): a benchmark of errors measures nothing.
fn check_answer(result: InvocationResult) -> Result<(), String> {
    match result {
        InvocationResult::Response(Value::Array(items))
            if items.iter().all(|i| i["data"]["items"].is_array()) =>
        {
            Ok(())
        }
        InvocationResult::Response(page) if page["items"].is_array() => Ok(()),
        other => Err(format!("unexpected answer: {other:?}")),
    }
}

/// The function and its legacy workers, together.
fn cost_of_tree(pid: u32) -> ProcessCost {
    let own = procfs::process_cost(pid).unwrap_or_default();
    procfs::children_of(pid)
        .into_iter()
        .filter_map(procfs::process_cost)
        .fold(own, |sum, child| sum.plus(&child))
}

fn peak_rss_of_tree_kib(pid: u32) -> u64 {
    std::iter::once(pid)
        .chain(procfs::children_of(pid))
        .filter_map(procfs::peak_rss_kib)
        .sum()
}

async fn wait_for_init(api: &RuntimeApi, limit: Duration) -> Result<Instant, String> {
    let started = Instant::now();
    loop {
        if let Some(at) = api.first_poll() {
            return Ok(at);
        }
        if started.elapsed() > limit {
            return Err(format!("no /next within {limit:?}: did init fail?"));
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

async fn invoke(api: &RuntimeApi, event: Value) -> Result<Duration, String> {
    let started = Instant::now();
    check_answer(api.invoke(event, Duration::from_secs(120)).await?)?;
    Ok(started.elapsed())
}

fn function_env(
    services: &LocalServices,
    api: &RuntimeApi,
    isolation: &str,
) -> Vec<(String, String)> {
    let mut env = services.env().to_vec();
    env.retain(|(k, _)| !["LEGACY_ISOLATION", "METRICS_EMF", "RUST_LOG"].contains(&k.as_str()));
    env.push(("LEGACY_ISOLATION".to_owned(), isolation.to_owned()));
    // As the template deploys it: info logs, one EMF line per invocation
    // (the local stack's settings turn EMF off for tests that read the log).
    env.push(("RUST_LOG".to_owned(), "info".to_owned()));
    env.push(("METRICS_EMF".to_owned(), "true".to_owned()));
    env.extend(lambda_env(api, "assessments-resolver"));
    env
}

/// The plain run: time, CPU, switches, memory.
async fn plain_run(
    binary: &Path,
    services: &LocalServices,
    scenario: &Scenario,
    args: &Args,
) -> Result<Figures, String> {
    let api = RuntimeApi::start().await.map_err(|e| e.to_string())?;
    let spawned = Instant::now();
    let function = Function::spawn(
        &binary.to_string_lossy(),
        function_env(services, &api, scenario.isolation),
    );
    let pid = function.child.id();
    let init = wait_for_init(&api, Duration::from_secs(30)).await? - spawned;
    let first = invoke(&api, (scenario.event)()).await?;
    for _ in 1..args.warmup {
        invoke(&api, (scenario.event)()).await?;
    }
    let before = cost_of_tree(pid);
    let mut walls = Vec::with_capacity(args.invocations as usize);
    for _ in 0..args.invocations {
        walls.push(invoke(&api, (scenario.event)()).await?);
    }
    let spent = cost_of_tree(pid).since(&before);
    let peak = peak_rss_of_tree_kib(pid);
    let logged: Vec<Value> = function
        .output()
        .iter()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|line| line["message"] == "invocation")
        .collect();
    let measured = &logged[logged.len().saturating_sub(args.invocations as usize)..];
    let median = |field: &str| -> f64 {
        let mut values: Vec<f64> = measured.iter().filter_map(|l| l[field].as_f64()).collect();
        values.sort_by(f64::total_cmp);
        values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
    };
    drop(function);
    walls.sort_unstable();
    let n = args.invocations.max(1) as f64;
    Ok(Figures {
        cpu_us: spent.on_cpu_ns as f64 / 1000.0 / n,
        user_us: spent.user_us as f64 / n,
        system_us: spent.system_us as f64 / n,
        voluntary_switches: spent.voluntary_switches as f64 / n,
        involuntary_switches: spent.involuntary_switches as f64 / n,
        wall_p50_ms: walls
            .get(walls.len() / 2)
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0),
        peak_rss_mib: peak as f64 / 1024.0,
        init_ms: init.as_secs_f64() * 1000.0,
        first_invocation_ms: first.as_secs_f64() * 1000.0,
        handler_p50_ms: median("duration_ms"),
        profiles_p50_ms: median("profiles_ms"),
        sql_p50_ms: median("sql_ms"),
        legacy_p50_ms: median("legacy_ms"),
        ..Figures::default()
    })
}

fn callgrind_control(flag: &str, pids: &[u32]) -> Result<(), String> {
    for pid in pids {
        let status = Command::new("callgrind_control")
            .args([flag, &pid.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map_err(|e| format!("callgrind_control (valgrind installed?): {e}"))?;
        if !status.success() {
            return Err(format!("callgrind_control {flag} {pid}: {status}"));
        }
    }
    Ok(())
}

/// Instructions and allocation calls in a callgrind dump
/// (`--compress-strings=no`: every callee is named in full).
fn parse_dump(text: &str) -> (u64, u64) {
    let mut summary = None;
    let mut totals = None;
    let mut allocations = 0;
    let mut callee_allocates = false;
    let number = |text: &str| {
        text.split_whitespace()
            .next()
            .and_then(|n| n.parse::<u64>().ok())
    };
    for line in text.lines() {
        if let Some(total) = line.strip_prefix("summary:") {
            summary = number(total);
        } else if let Some(total) = line.strip_prefix("totals:") {
            totals = number(total);
        } else if let Some(callee) = line.strip_prefix("cfn=") {
            let name = callee.rsplit(' ').next().unwrap_or(callee);
            callee_allocates = matches!(name, "malloc" | "calloc" | "realloc");
        } else if let Some(calls) = line.strip_prefix("calls=") {
            if callee_allocates {
                allocations += number(calls).unwrap_or(0);
            }
            callee_allocates = false;
        }
    }
    (summary.or(totals).unwrap_or(0), allocations)
}

/// The callgrind run: instructions and allocations per invocation.
async fn callgrind_run(
    binary: &Path,
    services: &LocalServices,
    scenario: &Scenario,
    args: &Args,
    dir: &Path,
) -> Result<(u64, u64), String> {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    let api = RuntimeApi::start().await.map_err(|e| e.to_string())?;
    let mut env = function_env(services, &api, scenario.isolation);
    // Everything runs ~50 times slower under callgrind.
    env.push((
        "LEGACY_WORKER_START_TIMEOUT_MS".to_owned(),
        "120000".to_owned(),
    ));
    env.push(("DYNAMODB_TIMEOUT_MS".to_owned(), "20000".to_owned()));
    env.push(("SQL_CONNECT_TIMEOUT_MS".to_owned(), "20000".to_owned()));
    env.push(("SQL_QUERY_TIMEOUT_MS".to_owned(), "20000".to_owned()));
    let wrapper = dir.join("run-under-callgrind");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nexec valgrind --tool=callgrind --trace-children=no --compress-strings=no \
             --compress-pos=no --callgrind-out-file={}/callgrind.%p -q {} \"$@\"\n",
            dir.display(),
            binary.display()
        ),
    )
    .map_err(|e| e.to_string())?;
    std::fs::set_permissions(
        &wrapper,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .map_err(|e| e.to_string())?;
    // The workers (isolation) are the binary itself, run natively (see the module's doc).
    env.push((
        "LEGACY_WORKER_PATH".to_owned(),
        binary.display().to_string(),
    ));
    let mut function = Function::spawn(&wrapper.to_string_lossy(), env);
    wait_for_init(&api, Duration::from_secs(120)).await?;
    for _ in 0..args.warmup.clamp(1, 10) {
        invoke(&api, (scenario.event)()).await?;
    }
    let pids = vec![function.child.id()];
    callgrind_control("-z", &pids)?;
    for _ in 0..args.callgrind_invocations {
        invoke(&api, (scenario.event)()).await?;
    }
    callgrind_control("-d", &pids)?;
    // The dumps are written by the processes themselves: wait for them.
    let deadline = Instant::now() + Duration::from_secs(60);
    let dumps = loop {
        let dumps: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|e| e.to_string())?
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "1"))
            .collect();
        let complete = dumps.len() >= pids.len()
            && dumps.iter().all(|p| {
                std::fs::read_to_string(p)
                    .is_ok_and(|t| t.contains("\ntotals:") || t.contains("\nsummary:"))
            });
        if complete || Instant::now() > deadline {
            break dumps;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let _ = function.child.kill();
    let _ = function.child.wait();
    let mut totals = (0, 0);
    for dump in &dumps {
        let text = std::fs::read_to_string(dump).map_err(|e| e.to_string())?;
        let (instructions, allocations) = parse_dump(&text);
        totals.0 += instructions;
        totals.1 += allocations;
    }
    if totals.0 == 0 {
        return Err(format!("no callgrind dump in {}", dir.display()));
    }
    let n = args.callgrind_invocations.max(1);
    Ok((totals.0 / n, totals.1 / n))
}

fn change(now: f64, before: f64) -> String {
    if before == 0.0 {
        return String::new();
    }
    format!(" ({:+.0}%)", (now - before) / before * 100.0)
}

fn print_table(figures: &BTreeMap<String, Figures>, baseline: &BTreeMap<String, Figures>) {
    println!(
        "\n{:<20} {:>16} {:>12} {:>14} {:>10} {:>10} {:>9} {:>9} {:>9} {:>9} {:>10}",
        "scenario",
        "instructions",
        "allocations",
        "CPU µs",
        "user µs",
        "sys µs",
        "vol csw",
        "wall p50",
        "peak MiB",
        "init ms",
        "1st inv ms"
    );
    for (name, f) in figures {
        let base = baseline.get(name);
        let instructions = match (f.instructions, base.and_then(|b| b.instructions)) {
            (Some(now), Some(before)) => format!("{now}{}", change(now as f64, before as f64)),
            (Some(now), None) => now.to_string(),
            _ => "-".to_owned(),
        };
        let cpu = match base {
            Some(b) => format!("{:.0}{}", f.cpu_us, change(f.cpu_us, b.cpu_us)),
            None => format!("{:.0}", f.cpu_us),
        };
        println!(
            "{:<20} {:>16} {:>12} {:>14} {:>10.0} {:>10.0} {:>9.1} {:>9.2} {:>9.1} {:>9.0} {:>10.1}",
            name,
            instructions,
            f.allocations.map_or("-".to_owned(), |a| a.to_string()),
            cpu,
            f.user_us,
            f.system_us,
            f.voluntary_switches,
            f.wall_p50_ms,
            f.peak_rss_mib,
            f.init_ms,
            f.first_invocation_ms
        );
    }
    println!(
        "\n{:<20} {:>12} {:>12} {:>12} {:>12}",
        "where the time went", "handler p50", "DynamoDB", "SQL Server", "legacy"
    );
    for (name, f) in figures {
        println!(
            "{:<20} {:>9.2} ms {:>9.2} ms {:>9.2} ms {:>9.2} ms",
            name, f.handler_p50_ms, f.profiles_p50_ms, f.sql_p50_ms, f.legacy_p50_ms
        );
    }
    println!(
        "\nper invocation after the warm-up; CPU µs exact (schedstat), user/sys in 10 ms ticks over the run; \
         instructions and allocations (malloc/calloc/realloc calls) from callgrind, the function process only (workers run natively: valgrind has no seccomp)"
    );
}

#[tokio::main]
async fn main() -> Result<(), String> {
    devstack::init_local_tracing("error");
    let args = Args::parse();
    let binary = match &args.binary {
        Some(path) => path.clone(),
        None => std::env::current_exe()
            .map_err(|e| e.to_string())?
            .with_file_name("assessments-resolver"),
    };
    if !binary.is_file() {
        return Err(format!(
            "{} not found: build it first (cargo build --release --bin assessments-resolver)",
            binary.display()
        ));
    }
    let chosen: Vec<&Scenario> = SCENARIOS
        .iter()
        .filter(|s| args.scenarios.is_empty() || args.scenarios.iter().any(|n| n == s.name))
        .collect();
    if chosen.is_empty() {
        let names: Vec<&str> = SCENARIOS.iter().map(|s| s.name).collect();
        return Err(format!("no such scenario; the scenarios: {names:?}"));
    }
    let options = StackOptions::default();
    let services = LocalServices::start(ServicesOptions {
        settings: options.function_settings(),
        ..ServicesOptions::default()
    })
    .await?;
    eprintln!("binary: {}", binary.display());
    let mut figures = BTreeMap::new();
    for scenario in chosen {
        eprintln!("{}: {} invocations...", scenario.name, args.invocations);
        let mut f = plain_run(&binary, &services, scenario, &args).await?;
        if !args.no_callgrind {
            eprintln!(
                "{}: {} invocations under callgrind...",
                scenario.name, args.callgrind_invocations
            );
            let dir =
                PathBuf::from("target/cpu-bench/callgrind").join(scenario.name.replace('/', "-"));
            let (instructions, allocations) =
                callgrind_run(&binary, &services, scenario, &args, &dir).await?;
            f.instructions = Some(instructions);
            f.allocations = Some(allocations);
        }
        figures.insert(scenario.name.to_owned(), f);
    }
    let baseline: BTreeMap<String, Figures> = std::fs::read_to_string(&args.baseline)
        .ok()
        .and_then(|text| serde_json::from_str::<Value>(&text).ok())
        .and_then(|doc| serde_json::from_value(doc["scenarios"].clone()).ok())
        .unwrap_or_default();
    print_table(&figures, &baseline);
    let document = json!({
        "binary": binary.display().to_string(),
        "invocations": args.invocations,
        "callgrindInvocations": args.callgrind_invocations,
        "warmup": args.warmup,
        "scenarios": figures,
    });
    let text = serde_json::to_string_pretty(&document).map_err(|e| e.to_string())?;
    if let Some(dir) = args.out.parent() {
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    }
    std::fs::write(&args.out, &text).map_err(|e| e.to_string())?;
    println!("figures: {}", args.out.display());
    if args.save_baseline {
        std::fs::write(&args.baseline, text).map_err(|e| e.to_string())?;
        println!("baseline saved: {}", args.baseline.display());
    } else if !baseline.is_empty() {
        println!("compared with: {}", args.baseline.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dump_gives_its_instructions_and_allocation_calls() {
        let dump = "events: Ir\nfn=main\ncfn=malloc\ncalls=3 0x0\n12 40\ncfn=free\ncalls=2 0x0\n13 9\n\
                    fn=other\ncfn=realloc\ncalls=1 0x0\n5 7\nsummary: 1234\n";
        assert_eq!(parse_dump(dump), (1234, 4));
    }
}
