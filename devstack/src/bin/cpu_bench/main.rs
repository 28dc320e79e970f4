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
//! Cold starts (`cold/in-process`, `cold/process`): the function started
//! afresh several times; per start, the process tree's CPU from exec to the
//! first answer (init and the first invocation) less a warm invocation's
//! (cold CPU), and the first invocation's round trip over a warm one's.
//! Under callgrind: init's instructions, split by stage (settings and
//! secrets, the legacy engine, the first SQL Server and DynamoDB
//! connections, logging), the first invocation's and a warm one's.
//!
//! The batch curve (`curve/1` ... `curve/2000`, 5 rows per item so that 2,000
//! items fit Lambda's 6 MB response): instructions per item by batch size.
//!
//! ```sh
//! cargo build --release --bin assessments-resolver
//! cargo run --release -p devstack --bin cpu-bench            # prints the table, writes target/cpu-bench/latest.json
//! cargo run --release -p devstack --bin cpu-bench -- --save-baseline   # docs/cpu-bench-baseline.json
//! cargo run --release -p devstack --bin cpu-bench -- --plot  # the curve and cold starts: docs/img/cpu-bench.png
//! ```

mod tiers;

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
    /// Fresh starts per cold scenario (plain runs; callgrind runs one).
    #[arg(long, default_value_t = 5)]
    starts: u32,
    /// Run the batch curve and the cold starts (besides any `--scenario`
    /// named) and draw them (instructions per item by batch size; cold
    /// against warm) into `--plot-out`.
    #[arg(long)]
    plot: bool,
    #[arg(long, default_value = "docs/img/cpu-bench.png")]
    plot_out: PathBuf,
    /// The tier benchmark instead (tiers.rs): the function in a cgroup at
    /// each memory tier, with Lambda's CPU share; with `--plot`, p99 and the
    /// bill against the tier into `--tier-plot-out`.
    #[arg(long)]
    tiers: bool,
    /// The tiers (MB) of `--tiers`.
    #[arg(long = "tier", default_values_t = [128, 256, 512, 1024])]
    tier_mb: Vec<u32>,
    /// The isolation modes of `--tiers`.
    #[arg(long = "mode", default_values = ["process", "in-process"])]
    modes: Vec<String>,
    /// Sequential invocations per tier and mode, after the cold start.
    #[arg(long, default_value_t = 400)]
    tier_invocations: u64,
    /// Fresh starts per tier and mode (`--tiers`): each figure is their median.
    #[arg(long, default_value_t = 3)]
    tier_runs: u32,
    /// With `--tiers`: this bootstrap command (run with `sh -c`) instead of
    /// the resolver, e.g. the service a team replaces.
    #[arg(long)]
    bootstrap: Option<String>,
    /// With `--tiers`: the core the function is pinned to (default: the last).
    #[arg(long)]
    cpu: Option<usize>,
    /// With `--tiers`: keep every other core busy (a spinning process each,
    /// outside the function's cgroup): the stack then shares its cores, as
    /// in the figures of issue #45.
    #[arg(long)]
    busy: bool,
    #[arg(long, default_value = "docs/img/tier-bench.png")]
    tier_plot_out: PathBuf,
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
    /// Items per invocation: instructions per item are `instructions / items`.
    items: u64,
    /// Cold scenarios only.
    #[serde(skip_serializing_if = "Option::is_none")]
    cold: Option<ColdFigures>,
}

/// A cold start's figures: medians over the fresh starts (plain), one start under callgrind.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ColdFigures {
    starts: u32,
    /// CPU from exec to the first answer, less a warm invocation's.
    cold_cpu_ms: f64,
    /// CPU from exec to the first answer.
    to_first_answer_cpu_ms: f64,
    warm_cpu_ms: f64,
    first_invocation_ms: f64,
    warm_invocation_ms: f64,
    /// The first invocation's round trip over a warm one's.
    first_over_warm: f64,
    /// Instructions of init (exec to the first `/next`), by stage.
    init_instructions: Option<u64>,
    init_stages: BTreeMap<String, u64>,
    first_invocation_instructions: Option<u64>,
    warm_invocation_instructions: Option<u64>,
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Warm,
    Cold,
    /// On the batch curve (drawn by `--plot`; run only when named or plotting).
    Curve,
}

struct Scenario {
    name: &'static str,
    isolation: &'static str,
    event: fn() -> Value,
    kind: Kind,
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

/// `n` items over 30 students, 5 rows each: the batch curve.
fn items(n: usize) -> Value {
    Value::Array(
        (0..n)
            .map(|i| {
                get_assessments(json!({"studentId": format!("stu-{:04}", 3 + i % 30), "limit": 5}))
            })
            .collect(),
    )
}

const fn scenario(
    name: &'static str,
    isolation: &'static str,
    event: fn() -> Value,
    kind: Kind,
) -> Scenario {
    Scenario {
        name,
        isolation,
        event,
        kind,
    }
}

const SCENARIOS: [Scenario; 11] = [
    scenario("single/in-process", "in-process", single, Kind::Warm),
    scenario("batch/in-process", "in-process", batch, Kind::Warm),
    scenario("single/process", "process", single, Kind::Warm),
    scenario("batch/process", "process", batch, Kind::Warm),
    scenario(
        "batch100/in-process",
        "in-process",
        batch_of_100,
        Kind::Warm,
    ),
    scenario("cold/in-process", "in-process", single, Kind::Cold),
    scenario("cold/process", "process", single, Kind::Cold),
    scenario("curve/1", "in-process", || items(1)[0].clone(), Kind::Curve),
    scenario("curve/10", "in-process", || items(10), Kind::Curve),
    scenario("curve/100", "in-process", || items(100), Kind::Curve),
    scenario("curve/2000", "in-process", || items(2000), Kind::Curve),
];

/// Items in an event.
fn items_of(event: &Value) -> u64 {
    event.as_array().map_or(1, |a| a.len() as u64)
}

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

/// How many invocations a run makes: fewer for big batches (a 2,000-item
/// batch is as much work as 2,000 single invocations).
#[derive(Clone, Copy)]
struct Counts {
    warmup: u64,
    invocations: u64,
    callgrind_invocations: u64,
}

impl Counts {
    fn for_scenario(args: &Args, scenario: &Scenario) -> Counts {
        let items = items_of(&(scenario.event)());
        if scenario.kind != Kind::Curve || items <= 10 {
            return Counts {
                warmup: args.warmup,
                invocations: args.invocations,
                callgrind_invocations: args.callgrind_invocations,
            };
        }
        Counts {
            warmup: (args.warmup * 10 / items).max(1),
            invocations: (args.invocations * 10 / items).max(2),
            callgrind_invocations: (args.callgrind_invocations * 10 / items).max(2),
        }
    }
}

/// The plain run: time, CPU, switches, memory.
async fn plain_run(
    binary: &Path,
    services: &LocalServices,
    scenario: &Scenario,
    args: Counts,
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
        items: items_of(&(scenario.event)()),
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

/// The function under callgrind, its Runtime API, and where its dumps go.
async fn spawn_under_callgrind(
    binary: &Path,
    services: &LocalServices,
    isolation: &str,
    dir: &Path,
) -> Result<(Function, RuntimeApi), String> {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    let api = RuntimeApi::start().await.map_err(|e| e.to_string())?;
    let mut env = function_env(services, &api, isolation);
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
    let function = Function::spawn(&wrapper.to_string_lossy(), env);
    wait_for_init(&api, Duration::from_secs(120)).await?;
    Ok((function, api))
}

/// Dumps (and zeroes) the function's counters; waits for dump number `part`
/// (the process writes it itself) and returns its path.
async fn dump(function: &Function, dir: &Path, part: u32) -> Result<PathBuf, String> {
    callgrind_control("-d", &[function.child.id()])?;
    let path = dir.join(format!("callgrind.{}.{part}", function.child.id()));
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let complete = std::fs::read_to_string(&path)
            .is_ok_and(|t| t.contains("\ntotals:") || t.contains("\nsummary:"));
        if complete {
            return Ok(path);
        }
        if Instant::now() > deadline {
            return Err(format!("no callgrind dump {}", path.display()));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn read_dump(path: &Path) -> Result<(u64, u64), String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    Ok(parse_dump(&text))
}

/// The callgrind run: instructions and allocations per invocation.
async fn callgrind_run(
    binary: &Path,
    services: &LocalServices,
    scenario: &Scenario,
    args: Counts,
    dir: &Path,
) -> Result<(u64, u64), String> {
    let (mut function, api) =
        spawn_under_callgrind(binary, services, scenario.isolation, dir).await?;
    for _ in 0..args.warmup.clamp(1, 10) {
        invoke(&api, (scenario.event)()).await?;
    }
    callgrind_control("-z", &[function.child.id()])?;
    for _ in 0..args.callgrind_invocations {
        invoke(&api, (scenario.event)()).await?;
    }
    let (instructions, allocations) = read_dump(&dump(&function, dir, 1).await?)?;
    let _ = function.child.kill();
    let _ = function.child.wait();
    let n = args.callgrind_invocations.max(1);
    Ok((instructions / n, allocations / n))
}

/// Init's stages, each the inclusive instructions of functions callgrind sees
/// as their own (the release build inlines our async fns' bodies into `main`,
/// so a stage is named by the first non-inlined function it calls).
const INIT_STAGES: [(&str, &[&str]); 6] = [
    ("1 the binary's dynamic linking", &["_dl_start"]),
    (
        "2 logging",
        &["assessments_common::observability::init_tracing"],
    ),
    (
        "3 AWS SDK clients",
        &[
            "assessments_common::aws::AwsSettings::dynamodb_client",
            "assessments_common::aws::Secrets::new",
        ],
    ),
    (
        "4 legacy engine (library loaded, or workers spawned)",
        &[
            "legacy_bridge::engine::InProcessEngine::open",
            "<std::process::Command>::spawn",
        ],
    ),
    (
        "5 first SQL Server connection",
        &["assessments_resolver::sqlserver::pool::SqlPool::checkout"],
    ),
    (
        "6 DynamoDB connection",
        &["aws_smithy_runtime::client::orchestrator::try_op"],
    ),
];

/// Inclusive instructions of each of `INIT_STAGES` in a dump (`callgrind_annotate`).
fn stages_of(dump: &Path) -> Result<BTreeMap<String, u64>, String> {
    let out = Command::new("callgrind_annotate")
        .args(["--inclusive=yes", "--threshold=100"])
        .arg(dump)
        .output()
        .map_err(|e| format!("callgrind_annotate: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    // Per function, the largest entry (an async fn's body is its closure).
    let mut functions: BTreeMap<&str, u64> = BTreeMap::new();
    for line in text.lines() {
        let Some((count, name)) = line.trim_start().split_once(' ') else {
            continue;
        };
        let Ok(count) = count.replace(',', "").parse::<u64>() else {
            continue;
        };
        let name = function_name(name);
        for function in INIT_STAGES
            .iter()
            .flat_map(|(_, functions)| functions.iter())
        {
            if name.starts_with(function) {
                let entry = functions.entry(function).or_insert(0);
                *entry = (*entry).max(count);
            }
        }
    }
    Ok(INIT_STAGES
        .iter()
        .map(|(stage, names)| {
            let sum = names.iter().filter_map(|n| functions.get(n)).sum();
            ((*stage).to_owned(), sum)
        })
        .collect())
}

/// The function of a `callgrind_annotate` line's `file:function [object]`
/// (after the count, and the percentage newer versions print): the text after
/// the first single `:` (a Rust path's `::` is not one), the object dropped.
fn function_name(rest: &str) -> &str {
    let rest = rest.trim_start();
    let rest = match rest.strip_prefix('(') {
        Some(after) => after
            .split_once(')')
            .map_or(rest, |(_, tail)| tail.trim_start()),
        None => rest,
    };
    let bytes = rest.as_bytes();
    let colon = (0..bytes.len()).find(|&i| {
        bytes[i] == b':' && bytes.get(i + 1) != Some(&b':') && (i == 0 || bytes[i - 1] != b':')
    });
    let function = colon.map_or(rest, |i| &rest[i + 1..]);
    function.split(" [").next().unwrap_or(function).trim_end()
}

/// The cold start under callgrind: init (exec to the first `/next`) by
/// stage, the first invocation, then a warm one (after the warm-up).
async fn cold_callgrind_run(
    binary: &Path,
    services: &LocalServices,
    scenario: &Scenario,
    args: Counts,
    dir: &Path,
) -> Result<ColdFigures, String> {
    let (mut function, api) =
        spawn_under_callgrind(binary, services, scenario.isolation, dir).await?;
    let init_dump = dump(&function, dir, 1).await?;
    invoke(&api, (scenario.event)()).await?;
    let first = read_dump(&dump(&function, dir, 2).await?)?.0;
    for _ in 1..args.warmup.clamp(2, 10) {
        invoke(&api, (scenario.event)()).await?;
    }
    callgrind_control("-z", &[function.child.id()])?;
    let n = args.callgrind_invocations.clamp(1, 20);
    for _ in 0..n {
        invoke(&api, (scenario.event)()).await?;
    }
    let warm = read_dump(&dump(&function, dir, 3).await?)?.0 / n;
    let _ = function.child.kill();
    let _ = function.child.wait();
    Ok(ColdFigures {
        init_instructions: Some(read_dump(&init_dump)?.0),
        init_stages: stages_of(&init_dump)?,
        first_invocation_instructions: Some(first),
        warm_invocation_instructions: Some(warm),
        ..ColdFigures::default()
    })
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

/// Fresh starts: CPU to the first answer and a warm invocation's, round trips.
async fn cold_plain_run(
    binary: &Path,
    services: &LocalServices,
    scenario: &Scenario,
    args: Counts,
    starts: u32,
) -> Result<ColdFigures, String> {
    let (mut to_first, mut warm_cpu, mut first_ms, mut warm_ms) = (vec![], vec![], vec![], vec![]);
    for _ in 0..starts.max(1) {
        let api = RuntimeApi::start().await.map_err(|e| e.to_string())?;
        let function = Function::spawn(
            &binary.to_string_lossy(),
            function_env(services, &api, scenario.isolation),
        );
        let pid = function.child.id();
        wait_for_init(&api, Duration::from_secs(30)).await?;
        let first = invoke(&api, (scenario.event)()).await?;
        let at_first = cost_of_tree(pid);
        for _ in 1..args.warmup {
            invoke(&api, (scenario.event)()).await?;
        }
        let before = cost_of_tree(pid);
        let mut walls = Vec::new();
        let n = args.invocations.clamp(1, 100);
        for _ in 0..n {
            walls.push(invoke(&api, (scenario.event)()).await?.as_secs_f64() * 1000.0);
        }
        let warm = cost_of_tree(pid).since(&before).on_cpu_ns as f64 / 1e6 / n as f64;
        drop(function);
        to_first.push(at_first.on_cpu_ns as f64 / 1e6);
        warm_cpu.push(warm);
        first_ms.push(first.as_secs_f64() * 1000.0);
        warm_ms.push(median(walls));
    }
    let cold: Vec<f64> = (to_first.iter().zip(&warm_cpu))
        .map(|(t, w)| t - w)
        .collect();
    let ratio: Vec<f64> = (first_ms.iter().zip(&warm_ms))
        .map(|(f, w)| f / w)
        .collect();
    Ok(ColdFigures {
        starts: starts.max(1),
        cold_cpu_ms: median(cold),
        to_first_answer_cpu_ms: median(to_first),
        warm_cpu_ms: median(warm_cpu),
        first_invocation_ms: median(first_ms),
        warm_invocation_ms: median(warm_ms),
        first_over_warm: median(ratio),
        ..ColdFigures::default()
    })
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
    for (name, f) in figures.iter().filter(|(_, f)| f.cold.is_none()) {
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
    for (name, f) in figures.iter().filter(|(_, f)| f.cold.is_none()) {
        println!(
            "{:<20} {:>9.2} ms {:>9.2} ms {:>9.2} ms {:>9.2} ms",
            name, f.handler_p50_ms, f.profiles_p50_ms, f.sql_p50_ms, f.legacy_p50_ms
        );
    }
    let per_item: Vec<String> = (figures.iter())
        .filter_map(|(name, f)| {
            let i = f.instructions?;
            (f.items > 1).then(|| format!("{name}: {} per item", i / f.items.max(1)))
        })
        .collect();
    if !per_item.is_empty() {
        println!("\ninstructions per item: {}", per_item.join("; "));
    }
    print_cold(figures);
    println!(
        "\nper invocation after the warm-up; CPU µs exact (schedstat), user/sys in 10 ms ticks over the run; \
         instructions and allocations (malloc/calloc/realloc calls) from callgrind, the function process only (workers run natively: valgrind has no seccomp)"
    );
}

fn print_cold(figures: &BTreeMap<String, Figures>) {
    let cold: Vec<(&String, &ColdFigures)> = (figures.iter())
        .filter_map(|(name, f)| Some((name, f.cold.as_ref()?)))
        .collect();
    if cold.is_empty() {
        return;
    }
    println!(
        "\n{:<20} {:>7} {:>12} {:>14} {:>10} {:>12} {:>10} {:>11} {:>14} {:>12} {:>12}",
        "cold start",
        "starts",
        "cold CPU ms",
        "to 1st ans ms",
        "warm ms",
        "1st inv ms",
        "warm inv",
        "1st / warm",
        "init instr",
        "1st instr",
        "warm instr"
    );
    let count = |n: Option<u64>| n.map_or("-".to_owned(), |n| n.to_string());
    for (name, c) in &cold {
        println!(
            "{:<20} {:>7} {:>12.2} {:>14.2} {:>10.3} {:>12.2} {:>10.2} {:>11.2} {:>14} {:>12} {:>12}",
            name,
            c.starts,
            c.cold_cpu_ms,
            c.to_first_answer_cpu_ms,
            c.warm_cpu_ms,
            c.first_invocation_ms,
            c.warm_invocation_ms,
            c.first_over_warm,
            count(c.init_instructions),
            count(c.first_invocation_instructions),
            count(c.warm_invocation_instructions),
        );
    }
    for (name, c) in &cold {
        if c.init_stages.is_empty() {
            continue;
        }
        let mut stages: Vec<String> = (c.init_stages.iter())
            .map(|(stage, n)| format!("{stage} {:.2} M", *n as f64 / 1e6))
            .collect();
        if let Some(total) = c.init_instructions {
            let named: u64 = c.init_stages.values().sum();
            let other = total.saturating_sub(named) as f64 / 1e6;
            stages.push(format!("other {other:.2} M of {:.2} M", total as f64 / 1e6));
        }
        println!("{name} init by stage (inclusive instructions):");
        for stage in stages {
            println!("  {stage}");
        }
    }
    println!(
        "cold CPU: the process tree's CPU from exec to the first answer less a warm invocation's \
         (schedstat, medians over the starts); the function under callgrind for instructions"
    );
}

/// Instructions per item by batch size, and cold against warm, as a PNG.
fn plot(path: &Path, figures: &BTreeMap<String, Figures>) -> Result<(), String> {
    use plotters::prelude::*;
    let labelled = devstack::register_chart_font();
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    }
    let curve: Vec<(u64, f64)> = (SCENARIOS.iter())
        .filter(|s| s.kind == Kind::Curve)
        .filter_map(|s| {
            let f = figures.get(s.name)?;
            Some((
                f.items,
                f.instructions? as f64 / f.items.max(1) as f64 / 1000.0,
            ))
        })
        .collect();
    let cold: Vec<(&str, f64, f64)> = (SCENARIOS.iter())
        .filter(|s| s.kind == Kind::Cold)
        .filter_map(|s| {
            let c = figures.get(s.name)?.cold.as_ref()?;
            let first = c.first_invocation_instructions? as f64 / 1e6;
            let init = c.init_instructions? as f64 / 1e6;
            Some((
                s.isolation,
                init + first,
                c.warm_invocation_instructions? as f64 / 1e6,
            ))
        })
        .collect();
    if curve.is_empty() && cold.is_empty() {
        return Err("nothing to plot: the curve and cold scenarios need callgrind".to_owned());
    }
    let root = BitMapBackend::new(path, (1200, 500)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let (left, right) = root.split_horizontally(700);
    let font = ("sans-serif", 18);
    let axes = if labelled { 60 } else { 0 };
    let top = curve.iter().map(|c| c.1).fold(1.0, f64::max) * 1.15;
    let mut chart = ChartBuilder::on(&left);
    chart
        .margin(20)
        .x_label_area_size(axes)
        .y_label_area_size(axes);
    if labelled {
        chart.caption(
            "thousand instructions per item, by batch size (5 rows each)",
            font,
        );
    }
    let mut chart = chart
        .build_cartesian_2d((1u64..3000u64).log_scale(), 0.0..top)
        .map_err(|e| e.to_string())?;
    if labelled {
        chart
            .configure_mesh()
            .x_desc("items per invocation")
            .draw()
            .map_err(|e| e.to_string())?;
    }
    chart
        .draw_series(LineSeries::new(curve.iter().copied(), &BLUE))
        .map_err(|e| e.to_string())?;
    chart
        .draw_series(
            curve
                .iter()
                .map(|&(x, y)| Circle::new((x, y), 5, BLUE.filled())),
        )
        .map_err(|e| e.to_string())?;
    if labelled {
        chart
            .draw_series(curve.iter().map(|&(x, y)| {
                Text::new(format!("{y:.0} k"), (x, y + top * 0.04), ("sans-serif", 16))
            }))
            .map_err(|e| e.to_string())?;
    }
    let high = cold.iter().map(|c| c.1.max(c.2)).fold(1.0, f64::max) * 1.15;
    let mut bars = ChartBuilder::on(&right);
    bars.margin(20)
        .x_label_area_size(axes)
        .y_label_area_size(axes);
    if labelled {
        bars.caption("million instructions: cold (init + 1st) vs warm", font);
    }
    let mut bars = bars
        .build_cartesian_2d(0.0..(cold.len() as f64 * 3.0), 0.0..high)
        .map_err(|e| e.to_string())?;
    if labelled {
        bars.configure_mesh()
            .disable_x_mesh()
            .x_labels(0)
            .draw()
            .map_err(|e| e.to_string())?;
    }
    for (i, (mode, cold_m, warm_m)) in cold.iter().enumerate() {
        let x = i as f64 * 3.0 + 0.5;
        let drawn = [
            Rectangle::new([(x, 0.0), (x + 1.0, *cold_m)], RED.filled()),
            Rectangle::new([(x + 1.0, 0.0), (x + 2.0, *warm_m)], GREEN.filled()),
        ];
        bars.draw_series(drawn).map_err(|e| e.to_string())?;
        if labelled {
            let labels = [
                Text::new(
                    format!("{mode}: cold {cold_m:.1}"),
                    (x, cold_m + high * 0.05),
                    ("sans-serif", 15),
                ),
                Text::new(
                    format!("warm {warm_m:.2}"),
                    (x + 1.0, warm_m + high * 0.02),
                    ("sans-serif", 15),
                ),
            ];
            bars.draw_series(labels).map_err(|e| e.to_string())?;
        }
    }
    root.present().map_err(|e| e.to_string())
}

/// `--tiers`: the tier benchmark, its figures in target/cpu-bench/tiers.json.
async fn run_tiers(args: &Args, binary: &Path) -> Result<(), String> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let cpu = args.cpu.unwrap_or(cores - 1);
    // The stack (this process's TDS server, proxy and Runtime API, and moto,
    // started after this) runs on the other cores, as Lambda's services run
    // elsewhere: the function's core is its own.
    tiers::keep_off_core(cpu, cores)?;
    let options = StackOptions::default();
    let services = LocalServices::start(ServicesOptions {
        settings: options.function_settings(),
        ..ServicesOptions::default()
    })
    .await?;
    let tier_options = tiers::TierOptions {
        tiers: args.tier_mb.clone(),
        modes: args.modes.clone(),
        invocations: args.tier_invocations,
        runs: args.tier_runs,
        bootstrap: args.bootstrap.clone(),
        cpu,
    };
    eprintln!("binary: {}", binary.display());
    let _spinners = args
        .busy
        .then(|| tiers::Spinners::start((0..cores).filter(|&c| c != tier_options.cpu)))
        .transpose()?;
    let figures = tiers::run(binary, &services, &tier_options).await?;
    let out = PathBuf::from("target/cpu-bench/tiers.json");
    let text = serde_json::to_string_pretty(&figures).map_err(|e| e.to_string())?;
    std::fs::write(&out, text).map_err(|e| e.to_string())?;
    println!("figures: {}", out.display());
    if args.plot {
        tiers::plot(&args.tier_plot_out, &figures)?;
        println!("plot: {}", args.tier_plot_out.display());
    }
    Ok(())
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
    if args.tiers {
        return run_tiers(&args, &binary).await;
    }
    let chosen: Vec<&Scenario> = SCENARIOS
        .iter()
        // `--plot` adds what the plot draws (the curve and the cold starts)
        // to the scenarios named, or runs only those when none is named.
        .filter(|s| {
            let named = args.scenarios.iter().any(|n| n == s.name);
            let plotted = args.plot && s.kind != Kind::Warm;
            if args.scenarios.is_empty() {
                plotted || (!args.plot && s.kind != Kind::Curve)
            } else {
                named || plotted
            }
        })
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
        let counts = Counts::for_scenario(&args, scenario);
        let dir = PathBuf::from("target/cpu-bench/callgrind").join(scenario.name.replace('/', "-"));
        if scenario.kind == Kind::Cold {
            eprintln!("{}: {} fresh starts...", scenario.name, args.starts);
            let mut cold =
                cold_plain_run(&binary, &services, scenario, counts, args.starts).await?;
            if !args.no_callgrind {
                eprintln!("{}: one start under callgrind...", scenario.name);
                let counted =
                    cold_callgrind_run(&binary, &services, scenario, counts, &dir).await?;
                cold = ColdFigures {
                    init_instructions: counted.init_instructions,
                    init_stages: counted.init_stages,
                    first_invocation_instructions: counted.first_invocation_instructions,
                    warm_invocation_instructions: counted.warm_invocation_instructions,
                    ..cold
                };
            }
            let f = Figures {
                items: 1,
                cold: Some(cold),
                ..Figures::default()
            };
            figures.insert(scenario.name.to_owned(), f);
            continue;
        }
        eprintln!("{}: {} invocations...", scenario.name, counts.invocations);
        let mut f = plain_run(&binary, &services, scenario, counts).await?;
        if !args.no_callgrind {
            eprintln!(
                "{}: {} invocations under callgrind...",
                scenario.name, counts.callgrind_invocations
            );
            let (instructions, allocations) =
                callgrind_run(&binary, &services, scenario, counts, &dir).await?;
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
    if args.plot {
        plot(&args.plot_out, &figures)?;
        println!("plot: {}", args.plot_out.display());
    }
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

    #[test]
    fn an_annotate_line_gives_its_function() {
        let expect = "assessments_resolver::deps::Settings::load::{{closure}}";
        for rest in [
            "src/deps.rs:assessments_resolver::deps::Settings::load::{{closure}} [/x/bin]",
            "???:assessments_resolver::deps::Settings::load::{{closure}} [/x/bin]",
            "(12.5%)  src/deps.rs:assessments_resolver::deps::Settings::load::{{closure}}",
        ] {
            assert_eq!(function_name(rest), expect, "{rest}");
        }
    }
}
