//! The tier benchmark (`cpu-bench --tiers`): what a user waits for and pays
//! at the memory they deploy. Lambda gives a function CPU in proportion to
//! its memory (one vCPU at 1,769 MB) and bills duration × memory; this runs
//! the function as Lambda would at each tier: in a cgroup with the tier's
//! memory limit and a CPU quota of memory/1,769 of a core per 100 ms period,
//! pinned to one core, with `AWS_LAMBDA_FUNCTION_MEMORY_SIZE` set, under the
//! local Runtime API against the local stack (which runs outside the cgroup,
//! as Lambda's services do). The function's legacy workers are its children:
//! in the cgroup, they count against the tier's memory and CPU.
//!
//! Per tier and isolation mode: init (exec to the first `/next`), the cold
//! start (init and the first invocation's round trip), then a fixed mix of
//! sequential invocations (stu-0001 limit 20, stu-0002, a student with no
//! profile, an invalid request): p50 and p99 round trip, the mean billed
//! duration (each invocation's time from `/next` to its answer, rounded up to
//! the millisecond, as Lambda bills), the periods the quota throttled, OOM
//! kills, the peak memory of the function with its workers, and the bill per
//! million invocations at x86 and arm64 prices (with the $0.20 per million
//! requests), and what a cold start's init costs.
//!
//! `--bootstrap CMD` runs another bootstrap (the service a user replaces)
//! under the same harness and events, for a like-for-like comparison.
//!
//! Hand-written here: cgroup v1/v2 setup (a few files written): no crate
//! does both versions' CPU quota, memory limit, cpuset and counters.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{Value, json};
use testkit::appsync::get_assessments;
use testkit::function::Function;
use testkit::lambda_api::{InvocationResult, RuntimeApi};
use testkit::services::LocalServices;

/// The memory at which Lambda gives a function one whole vCPU.
const VCPU_MB: f64 = 1769.0;
/// The CPU quota's period (CFS bandwidth control's default).
const PERIOD_US: u64 = 100_000;
/// Lambda's prices (us-east-1): per GB-second of duration, and per request.
const X86_PER_GB_S: f64 = 0.000_016_666_7;
const ARM_PER_GB_S: f64 = 0.000_013_333_4;
const PER_MILLION_REQUESTS: f64 = 0.20;

/// What to run.
pub struct TierOptions {
    pub tiers: Vec<u32>,
    pub modes: Vec<String>,
    pub invocations: u64,
    /// Fresh starts per tier and mode; each figure is their median (OOM
    /// kills: their sum).
    pub runs: u32,
    /// Another bootstrap command (run with `sh -c`) instead of the resolver.
    pub bootstrap: Option<String>,
    /// The core the function is pinned to.
    pub cpu: usize,
}

/// One tier and mode's figures.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TierFigures {
    pub tier_mb: u32,
    pub mode: String,
    pub init_ms: f64,
    pub cold_start_ms: f64,
    pub first_ms: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub mean_billed_ms: f64,
    /// CPU of the function and its workers per warm invocation (the cgroup's).
    pub cpu_us: f64,
    /// The share of that CPU spent in the kernel (system time), in percent.
    pub sys_percent: f64,
    pub throttled_periods: u64,
    pub oom_kills: u64,
    pub peak_mib: f64,
    pub x86_per_million: f64,
    pub arm_per_million: f64,
    /// What one cold start's init costs, per million cold starts (x86).
    pub init_per_million_starts: f64,
}

/// The four events the mix cycles through, with the answer each must get
/// (`None`: a page; `Some(type)`: that error type). A bootstrap of another
/// service is held to answering only.
fn mix() -> [(Value, Option<&'static str>); 4] {
    [
        (
            get_assessments(json!({"studentId": "stu-0001", "limit": 20})),
            None,
        ),
        (get_assessments(json!({"studentId": "stu-0002"})), None),
        (
            get_assessments(json!({"studentId": "stu-9999"})),
            Some("NotFound"),
        ),
        (
            get_assessments(json!({"studentId": "stu-0001", "limit": 0})),
            Some("ValidationError"),
        ),
    ]
}

fn check(result: &InvocationResult, expected: Option<&str>, strict: bool) -> Result<(), String> {
    if !strict {
        return Ok(());
    }
    let good = match (result, expected) {
        (InvocationResult::Response(page), None) => page["items"].is_array(),
        (InvocationResult::Error(error), Some(kind)) => error["errorType"] == kind,
        _ => false,
    };
    if good {
        Ok(())
    } else {
        Err(format!("expected {expected:?}, got {result:?}"))
    }
}

/// Runs every tier in every mode and prints the table.
pub async fn run(
    binary: &Path,
    services: &LocalServices,
    options: &TierOptions,
) -> Result<Vec<TierFigures>, String> {
    let mut all = Vec::new();
    for &tier in &options.tiers {
        for mode in &options.modes {
            let mut runs = Vec::new();
            for run in 1..=options.runs.max(1) {
                eprintln!(
                    "{tier} MB, {mode}, run {run}: {} invocations...",
                    options.invocations
                );
                runs.push(run_one(binary, services, options, tier, mode).await?);
            }
            all.push(median_of(runs));
        }
    }
    print_table(&all);
    Ok(all)
}

async fn run_one(
    binary: &Path,
    services: &LocalServices,
    options: &TierOptions,
    tier: u32,
    mode: &str,
) -> Result<TierFigures, String> {
    let name = format!("tier-bench-{}-{tier}-{mode}", std::process::id());
    let cgroup = Cgroup::create(&name, tier, options.cpu)?;
    let dir = PathBuf::from("target/cpu-bench/tiers");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let wrapper = dir.join(format!("{name}.sh"));
    // On the function's core only (the stack's processes are kept off it).
    let cpu = options.cpu;
    let command = match &options.bootstrap {
        Some(command) => format!(
            "exec taskset -c {cpu} sh -c '{}'",
            command.replace('\'', r"'\''")
        ),
        // The binary's and the component's pages out of the page cache
        // first (GNU dd: fadvise DONTNEED over the whole file), so that the
        // function reads them in and they are charged to its cgroup, as on
        // Lambda, where the code is read anew into each execution environment.
        None => format!(
            "for f in '{0}' \"$LEGACY_LIB_PATH\"; do dd if=\"$f\" iflag=nocache count=0 status=none 2>/dev/null; done\n\
             exec taskset -c {cpu} '{0}' \"$@\"",
            binary.display()
        ),
    };
    let joins: String = cgroup
        .procs_files()
        .iter()
        .map(|f| format!("echo $$ > '{}' || exit 90\n", f.display()))
        .collect();
    std::fs::write(&wrapper, format!("#!/bin/sh\n{joins}{command}\n"))
        .map_err(|e| e.to_string())?;
    std::fs::set_permissions(
        &wrapper,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .map_err(|e| e.to_string())?;

    let api = RuntimeApi::start().await.map_err(|e| e.to_string())?;
    let mut env = super::function_env(services, &api, mode);
    env.retain(|(k, _)| k != "AWS_LAMBDA_FUNCTION_MEMORY_SIZE");
    env.push((
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE".to_owned(),
        tier.to_string(),
    ));
    let strict = options.bootstrap.is_none();
    let events = mix();

    let spawned = Instant::now();
    let function = Function::spawn(&wrapper.to_string_lossy(), env);
    let outcome = measure(&api, &events, options.invocations, strict, spawned, &cgroup).await;
    let throttled = cgroup.throttled_periods();
    let (peak, ooms) = (cgroup.peak_bytes(), cgroup.oom_kills());
    drop(function);
    cgroup.remove();
    let _ = std::fs::remove_file(&wrapper);
    let timing = outcome?;

    let gb = f64::from(tier) / 1024.0;
    let per_million =
        |price: f64| timing.mean_billed_ms / 1000.0 * gb * price * 1e6 + PER_MILLION_REQUESTS;
    Ok(TierFigures {
        tier_mb: tier,
        mode: options
            .bootstrap
            .as_ref()
            .map_or_else(|| mode.to_owned(), |_| "bootstrap".to_owned()),
        init_ms: timing.init_ms,
        cold_start_ms: timing.init_ms + timing.first_ms,
        first_ms: timing.first_ms,
        p50_ms: timing.p50_ms,
        p99_ms: timing.p99_ms,
        mean_billed_ms: timing.mean_billed_ms,
        cpu_us: timing.cpu_us,
        sys_percent: timing.sys_percent,
        throttled_periods: throttled,
        oom_kills: ooms,
        peak_mib: peak as f64 / (1024.0 * 1024.0),
        x86_per_million: per_million(X86_PER_GB_S),
        arm_per_million: per_million(ARM_PER_GB_S),
        init_per_million_starts: timing.init_ms.ceil() / 1000.0 * gb * X86_PER_GB_S * 1e6,
    })
}

/// Each figure's median over the runs (the middle run's, for an odd count),
/// OOM kills summed.
fn median_of(mut runs: Vec<TierFigures>) -> TierFigures {
    let oom_kills = runs.iter().map(|r| r.oom_kills).sum();
    let middle = runs.len() / 2;
    let median = |runs: &mut Vec<TierFigures>, key: fn(&TierFigures) -> f64| {
        runs.sort_by(|a, b| key(a).total_cmp(&key(b)));
        key(&runs[middle])
    };
    let mut figures = runs[middle].clone();
    figures.init_ms = median(&mut runs, |f| f.init_ms);
    figures.cold_start_ms = median(&mut runs, |f| f.cold_start_ms);
    figures.first_ms = median(&mut runs, |f| f.first_ms);
    figures.p50_ms = median(&mut runs, |f| f.p50_ms);
    figures.p99_ms = median(&mut runs, |f| f.p99_ms);
    figures.mean_billed_ms = median(&mut runs, |f| f.mean_billed_ms);
    figures.cpu_us = median(&mut runs, |f| f.cpu_us);
    figures.sys_percent = median(&mut runs, |f| f.sys_percent);
    figures.throttled_periods = median(&mut runs, |f| f.throttled_periods as f64) as u64;
    figures.peak_mib = median(&mut runs, |f| f.peak_mib);
    figures.x86_per_million = median(&mut runs, |f| f.x86_per_million);
    figures.arm_per_million = median(&mut runs, |f| f.arm_per_million);
    figures.init_per_million_starts = median(&mut runs, |f| f.init_per_million_starts);
    figures.oom_kills = oom_kills;
    figures
}

struct Timing {
    init_ms: f64,
    first_ms: f64,
    p50_ms: f64,
    p99_ms: f64,
    mean_billed_ms: f64,
    cpu_us: f64,
    sys_percent: f64,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Init, the first invocation, then `invocations` more through the mix.
async fn measure(
    api: &RuntimeApi,
    events: &[(Value, Option<&'static str>)],
    invocations: u64,
    strict: bool,
    spawned: Instant,
    cgroup: &Cgroup,
) -> Result<Timing, String> {
    let init = super::wait_for_init(api, Duration::from_secs(60)).await? - spawned;
    let invoke = |event: Value| async move {
        let started = Instant::now();
        let (result, held) = api.invoke_timed(event, Duration::from_secs(120)).await?;
        Ok::<_, String>((result, started.elapsed(), held))
    };
    let (result, first, _) = invoke(events[0].0.clone()).await?;
    check(&result, events[0].1, strict)?;
    let mut round_trips = Vec::with_capacity(invocations as usize);
    let mut billed_ms = 0.0;
    let (cpu_before, sys_before) = (cgroup.cpu_ns(), cgroup.sys_ns());
    for i in 0..invocations {
        let (event, expected) = &events[(i as usize + 1) % events.len()];
        let (result, round_trip, held) = invoke(event.clone()).await?;
        check(&result, *expected, strict)?;
        round_trips.push(round_trip);
        billed_ms += ms(held).ceil().max(1.0);
    }
    let cpu_ns = cgroup.cpu_ns().saturating_sub(cpu_before);
    let sys_ns = cgroup.sys_ns().saturating_sub(sys_before);
    round_trips.sort_unstable();
    let at = |q: f64| {
        let index = ((round_trips.len() as f64 * q).ceil() as usize).saturating_sub(1);
        round_trips.get(index).map_or(f64::NAN, |d| ms(*d))
    };
    Ok(Timing {
        init_ms: ms(init),
        first_ms: ms(first),
        p50_ms: at(0.50),
        p99_ms: at(0.99),
        mean_billed_ms: billed_ms / invocations.max(1) as f64,
        cpu_us: cpu_ns as f64 / 1000.0 / invocations.max(1) as f64,
        sys_percent: 100.0 * sys_ns as f64 / cpu_ns.max(1) as f64,
    })
}

fn print_table(all: &[TierFigures]) {
    println!(
        "\n{:>6} {:<12} {:>8} {:>10} {:>8} {:>8} {:>8} {:>10} {:>7} {:>6} {:>9} {:>4} {:>8} {:>9} {:>9} {:>12}",
        "tier",
        "mode",
        "init ms",
        "cold ms",
        "1st ms",
        "p50 ms",
        "p99 ms",
        "billed ms",
        "CPU µs",
        "sys %",
        "throttled",
        "OOM",
        "peak MiB",
        "$/1M x86",
        "$/1M arm",
        "init $/1M st"
    );
    for f in all {
        println!(
            "{:>6} {:<12} {:>8.1} {:>10.1} {:>8.1} {:>8.2} {:>8.1} {:>10.2} {:>7.0} {:>6.0} {:>9} {:>4} {:>8.1} {:>9.3} {:>9.3} {:>12.2}",
            format!("{} MB", f.tier_mb),
            f.mode,
            f.init_ms,
            f.cold_start_ms,
            f.first_ms,
            f.p50_ms,
            f.p99_ms,
            f.mean_billed_ms,
            f.cpu_us,
            f.sys_percent,
            f.throttled_periods,
            f.oom_kills,
            f.peak_mib,
            f.x86_per_million,
            f.arm_per_million,
            f.init_per_million_starts
        );
    }
    println!(
        "\neach figure the median of the runs (OOM kills summed); per tier: memory limit = the tier, CPU quota = tier/{VCPU_MB} of a core per {} ms, pinned to one core; \
         p50/p99: round trip of sequential invocations (stu-0001 limit 20, stu-0002, no profile, invalid); \
         billed: /next to answer, rounded up to 1 ms; $ per 1M invocations incl. ${PER_MILLION_REQUESTS} of requests; \
         init $ per 1M cold starts (x86)",
        PERIOD_US / 1000
    );
}

/// A chart's caption and the figure it draws.
type Panel = (&'static str, fn(&TierFigures) -> f64);

/// The p99 and the bill against the tier, one line per mode.
pub fn plot(path: &Path, all: &[TierFigures]) -> Result<(), String> {
    use plotters::prelude::*;
    let labelled = devstack::register_chart_font();
    let mut by_mode: BTreeMap<&str, Vec<&TierFigures>> = BTreeMap::new();
    for f in all {
        by_mode.entry(f.mode.as_str()).or_default().push(f);
    }
    let root = BitMapBackend::new(path, (1200, 500)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let (left, right) = root.split_horizontally(600);
    let colors = [BLUE, RED, GREEN, MAGENTA];
    let max_tier = all.iter().map(|f| f.tier_mb).max().unwrap_or(1024);
    let p99: Panel = ("p99 round trip (ms) by memory (MB)", |f| f.p99_ms);
    let bill: Panel = ("$ per million invocations (x86) by memory (MB)", |f| {
        f.x86_per_million
    });
    let panels = [(&left, p99), (&right, bill)];
    for (area, (caption, value)) in panels {
        let top = all.iter().map(value).fold(0.0, f64::max) * 1.15;
        let mut chart = ChartBuilder::on(area);
        let axes = if labelled { 50 } else { 0 };
        chart
            .margin(20)
            .x_label_area_size(axes)
            .y_label_area_size(axes);
        if labelled {
            chart.caption(caption, ("sans-serif", 18));
        }
        let mut chart = chart
            .build_cartesian_2d(0u32..(max_tier + 128), 0.0..top.max(0.001))
            .map_err(|e| e.to_string())?;
        if labelled {
            chart.configure_mesh().draw().map_err(|e| e.to_string())?;
        }
        for (i, (mode, figures)) in by_mode.iter().enumerate() {
            let color = colors[i % colors.len()];
            let points: Vec<(u32, f64)> = figures.iter().map(|f| (f.tier_mb, value(f))).collect();
            let series = chart
                .draw_series(LineSeries::new(points.clone(), color))
                .map_err(|e| e.to_string())?;
            if labelled {
                series
                    .label(*mode)
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
            }
            chart
                .draw_series(points.iter().map(|&p| Circle::new(p, 4, color.filled())))
                .map_err(|e| e.to_string())?;
        }
        if labelled {
            chart
                .configure_series_labels()
                .border_style(BLACK)
                .draw()
                .map_err(|e| e.to_string())?;
        }
    }
    root.present().map_err(|e| e.to_string())
}

/// Moves every thread of this process (and so what it starts next) off
/// core `cpu`, onto the others.
pub fn keep_off_core(cpu: usize, cores: usize) -> Result<(), String> {
    let others: Vec<String> = (0..cores)
        .filter(|&c| c != cpu)
        .map(|c| c.to_string())
        .collect();
    if others.is_empty() {
        return Err(
            "the tier benchmark needs two cores: one for the function, one for the stack"
                .to_owned(),
        );
    }
    let status = std::process::Command::new("taskset")
        .args([
            "-a",
            "-p",
            "-c",
            &others.join(","),
            &std::process::id().to_string(),
        ])
        .stdout(std::process::Stdio::null())
        .status()
        .map_err(|e| format!("taskset (util-linux): {e}"))?;
    if !status.success() {
        return Err(format!("taskset: {status}"));
    }
    Ok(())
}

/// Processes spinning on the given cores until dropped.
pub struct Spinners(Vec<std::process::Child>);

impl Spinners {
    pub fn start(cores: impl Iterator<Item = usize>) -> Result<Spinners, String> {
        let mut children = Vec::new();
        for core in cores {
            let child = std::process::Command::new("taskset")
                .args(["-c", &core.to_string(), "sh", "-c", "while :; do :; done"])
                .spawn()
                .map_err(|e| format!("taskset (util-linux): {e}"))?;
            children.push(child);
        }
        Ok(Spinners(children))
    }
}

impl Drop for Spinners {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A cgroup (v1: one directory per controller; v2: one directory) with the
/// tier's memory limit, CPU quota and core.
struct Cgroup {
    /// The directories made, in the order they are removed.
    dirs: Vec<PathBuf>,
    version: Version,
}

enum Version {
    V1 {
        cpu: PathBuf,
        memory: PathBuf,
        cpuacct: Option<PathBuf>,
    },
    V2 {
        dir: PathBuf,
    },
}

fn write(path: &Path, value: &str) -> Result<(), String> {
    std::fs::write(path, value).map_err(|e| format!("{}: {e}", path.display()))
}

fn read_number(path: &Path) -> u64 {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or(0)
}

/// `key value` lines (cpu.stat, memory.events, memory.oom_control): `key`'s value.
fn read_key(path: &Path, key: &str) -> u64 {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix(key)?.trim().parse().ok())
        })
        .unwrap_or(0)
}

const ROOT: &str = "/sys/fs/cgroup";

impl Cgroup {
    fn create(name: &str, tier_mb: u32, cpu: usize) -> Result<Cgroup, String> {
        let root = Path::new(ROOT);
        let quota = (f64::from(tier_mb) / VCPU_MB * PERIOD_US as f64).round() as u64;
        let memory = u64::from(tier_mb) << 20;
        let v2_controllers =
            std::fs::read_to_string(root.join("cgroup.controllers")).unwrap_or_default();
        if v2_controllers.contains("cpu") && v2_controllers.contains("memory") {
            let _ = write(&root.join("cgroup.subtree_control"), "+cpu +memory +cpuset");
            let dir = root.join(name);
            std::fs::create_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            let group = Cgroup {
                dirs: vec![dir.clone()],
                version: Version::V2 { dir: dir.clone() },
            };
            write(&dir.join("cpu.max"), &format!("{quota} {PERIOD_US}"))?;
            write(&dir.join("memory.max"), &memory.to_string())?;
            let _ = write(&dir.join("memory.swap.max"), "0");
            let _ = write(&dir.join("cpuset.cpus"), &cpu.to_string());
            return Ok(group);
        }
        let (cpu_root, memory_root) = (root.join("cpu"), root.join("memory"));
        if !cpu_root.join("cpu.cfs_quota_us").exists()
            || !memory_root.join("memory.limit_in_bytes").exists()
        {
            return Err(format!(
                "cannot make a cgroup: {ROOT} has neither cgroup v2 with the cpu and memory \
                 controllers nor cgroup v1's cpu and memory hierarchies (the tier benchmark \
                 needs them, and root)"
            ));
        }
        let mut group = Cgroup {
            dirs: Vec::new(),
            version: Version::V1 {
                cpu: cpu_root.join(name),
                memory: memory_root.join(name),
                cpuacct: None,
            },
        };
        let made = |dir: PathBuf, group: &mut Cgroup| -> Result<PathBuf, String> {
            std::fs::create_dir(&dir)
                .map_err(|e| format!("{}: {e} (root needed)", dir.display()))?;
            group.dirs.push(dir.clone());
            Ok(dir)
        };
        let cpu_dir = made(cpu_root.join(name), &mut group)?;
        write(&cpu_dir.join("cpu.cfs_period_us"), &PERIOD_US.to_string())?;
        write(&cpu_dir.join("cpu.cfs_quota_us"), &quota.to_string())?;
        let memory_dir = made(memory_root.join(name), &mut group)?;
        write(
            &memory_dir.join("memory.limit_in_bytes"),
            &memory.to_string(),
        )?;
        let _ = write(&memory_dir.join("memory.swappiness"), "0");
        // cpuacct (CPU time) where it is a hierarchy of its own; with cpu, it is cpu's.
        let cpuacct_root = root.join("cpuacct");
        let cpuacct = if cpu_dir.join("cpuacct.usage").exists() {
            Some(cpu_dir.clone())
        } else if cpuacct_root.join("cpuacct.usage").exists() {
            Some(made(cpuacct_root.join(name), &mut group)?)
        } else {
            None
        };
        if let Version::V1 { cpuacct: slot, .. } = &mut group.version {
            *slot = cpuacct;
        }
        let cpuset_root = root.join("cpuset");
        if cpuset_root.join("cpuset.cpus").exists() {
            let mems = std::fs::read_to_string(cpuset_root.join("cpuset.mems")).unwrap_or_default();
            let cpuset_dir = made(cpuset_root.join(name), &mut group)?;
            write(&cpuset_dir.join("cpuset.cpus"), &cpu.to_string())?;
            write(&cpuset_dir.join("cpuset.mems"), mems.trim())?;
        }
        Ok(group)
    }

    /// The files a process writes its pid to, to join.
    fn procs_files(&self) -> Vec<PathBuf> {
        self.dirs.iter().map(|d| d.join("cgroup.procs")).collect()
    }

    fn peak_bytes(&self) -> u64 {
        match &self.version {
            Version::V1 { memory, .. } => read_number(&memory.join("memory.max_usage_in_bytes")),
            Version::V2 { dir } => read_number(&dir.join("memory.peak")),
        }
    }

    fn oom_kills(&self) -> u64 {
        match &self.version {
            Version::V1 { memory, .. } => read_key(&memory.join("memory.oom_control"), "oom_kill "),
            Version::V2 { dir } => read_key(&dir.join("memory.events"), "oom_kill "),
        }
    }

    /// CPU time used so far by its processes (ns).
    fn cpu_ns(&self) -> u64 {
        self.cpuacct_ns("cpuacct.usage", "usage_usec ")
    }

    /// The part of [`Cgroup::cpu_ns`] spent in the kernel (ns).
    fn sys_ns(&self) -> u64 {
        self.cpuacct_ns("cpuacct.usage_sys", "system_usec ")
    }

    /// A CPU time (ns): cgroup v1's cpuacct file `v1_file` (ns), or v2's
    /// cpu.stat line `v2_key` (µs).
    fn cpuacct_ns(&self, v1_file: &str, v2_key: &str) -> u64 {
        match &self.version {
            Version::V1 { cpuacct, .. } => cpuacct
                .as_ref()
                .map_or(0, |dir| read_number(&dir.join(v1_file))),
            Version::V2 { dir } => read_key(&dir.join("cpu.stat"), v2_key) * 1000,
        }
    }

    fn throttled_periods(&self) -> u64 {
        match &self.version {
            Version::V1 { cpu, .. } => read_key(&cpu.join("cpu.stat"), "nr_throttled "),
            Version::V2 { dir } => read_key(&dir.join("cpu.stat"), "nr_throttled "),
        }
    }

    /// Kills what is left in it and removes its directories.
    fn remove(self) {
        for dir in self.dirs.iter().rev() {
            for _ in 0..200 {
                let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
                for pid in procs.split_whitespace() {
                    let _ = std::process::Command::new("kill")
                        .args(["-KILL", pid])
                        .status();
                }
                if std::fs::remove_dir(dir).is_ok() || !dir.exists() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}
