//! The soak benchmark: the real handler, in-process, against the local stack
//! (mocked shim, TDS server, moto behind its fault proxy), for many
//! invocations. Prints progress, writes a CSV of checkpoints and a PNG of RSS
//! and p99 against invocations, and ends with one JSON line of figures.
//!
//! ```sh
//! cargo run --release -p devstack --bin soak -- --invocations 200000 --concurrency 4 --faults mix
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use devstack::stack::{LocalStack, StackOptions};
use hdrhistogram::Histogram;
use serde_json::{Value, json};

#[derive(Debug, Parser)]
#[command(
    about = "Drive the resolver's handler for many invocations and measure memory and latency"
)]
struct Args {
    /// Measured invocations (after the warm-up).
    #[arg(long, default_value_t = 20_000)]
    invocations: u64,
    /// Invocations in flight at once.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// Events per invocation (1: single invokes; more: AppSync batches).
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// `none`, `mix` (native 1%, dropped SQL connections 0.2%, DynamoDB throttles 1%),
    /// or `native=P,sql_drop=P,throttle=P`.
    #[arg(long, default_value = "none")]
    faults: String,
    /// Invocations before the measurement starts (default: a tenth of --invocations, at most 10,000).
    #[arg(long)]
    warmup: Option<u64>,
    /// Checkpoints over the run (RSS and latency window).
    #[arg(long, default_value_t = 40)]
    checkpoints: u64,
    /// Where the CSV and the PNG go.
    #[arg(long, default_value = "target/soak")]
    out_dir: PathBuf,
    /// Fail (exit 1) if a target breaks: RSS growth over `--max-growth-kib`, native handles
    /// alive or violations at the end, pool peak above its max.
    #[arg(long)]
    check: bool,
    /// The RSS growth allowed from the end of the warm-up to the end (KiB).
    #[arg(long, default_value_t = 2048)]
    max_growth_kib: u64,
}

#[derive(Debug, Clone, Copy, Default)]
struct FaultMix {
    native: f64,
    sql_drop: f64,
    throttle: f64,
}

fn parse_faults(text: &str) -> Result<FaultMix, String> {
    match text {
        "none" => return Ok(FaultMix::default()),
        "mix" => {
            return Ok(FaultMix {
                native: 0.01,
                sql_drop: 0.002,
                throttle: 0.01,
            });
        }
        _ => {}
    }
    let mut mix = FaultMix::default();
    for part in text.split(',') {
        let (key, value) = part
            .split_once('=')
            .ok_or_else(|| format!("--faults: {part:?} is not key=value"))?;
        let value: f64 = value
            .parse()
            .map_err(|_| format!("--faults: {value:?} is not a number"))?;
        if !(0.0..=1.0).contains(&value) {
            return Err(format!("--faults: {key} must be within 0..1"));
        }
        match key {
            "native" => mix.native = value,
            "sql_drop" => mix.sql_drop = value,
            "throttle" => mix.throttle = value,
            _ => return Err(format!("--faults: unknown fault {key:?}")),
        }
    }
    Ok(mix)
}

/// The process's resident set, from /proc (KiB).
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn event(i: u64, j: usize) -> Value {
    let n = i.wrapping_mul(7).wrapping_add(j as u64);
    let student = if n % 50 == 49 {
        "stu-9999".to_owned()
    } else {
        format!("stu-{:04}", n % 40 + 1)
    };
    let mut arguments = json!({ "studentId": student, "limit": 5 + n % 46 });
    if n.is_multiple_of(5) {
        arguments["assessmentType"] = json!("READING_COMPREHENSION");
    }
    json!({
        "arguments": arguments,
        "identity": null, "source": null, "prev": null, "stash": {},
        "request": { "headers": {}, "domainName": null },
        "info": { "parentTypeName": "Query", "fieldName": "getAssessments",
                  "selectionSetList": ["items", "items/id", "nextToken"],
                  "selectionSetGraphQL": "{ items { id } nextToken }", "variables": {} }
    })
}

fn histogram() -> Histogram<u64> {
    // 1 µs .. 60 s at 3 significant digits: allocated once, never grows.
    Histogram::new_with_bounds(1, 60_000_000, 3).unwrap_or_else(|e| panic!("histogram bounds: {e}"))
}

#[derive(Debug, Clone)]
struct Checkpoint {
    invocations: u64,
    rss_kib: u64,
    p50_us: u64,
    p99_us: u64,
    throughput: f64,
}

struct Measure {
    all: Histogram<u64>,
    overhead: Histogram<u64>,
    /// Time in each dependency, per invocation.
    profiles: Histogram<u64>,
    sql: Histogram<u64>,
    legacy: Histogram<u64>,
    window: Histogram<u64>,
    window_started: Instant,
    checkpoints: Vec<Checkpoint>,
    errors: BTreeMap<String, u64>,
}

#[tokio::main]
async fn main() {
    if let Err(e) = run(Args::parse()).await {
        eprintln!("soak: {e}");
        std::process::exit(2);
    }
}

async fn run(args: Args) -> Result<(), String> {
    devstack::init_local_tracing("error");
    let faults = parse_faults(&args.faults)?;
    let warmup = args.warmup.unwrap_or((args.invocations / 10).min(10_000));
    let stack = LocalStack::start(StackOptions {
        legacy_config: (faults.native > 0.0).then(|| format!("fail_prob={};seed=7", faults.native)),
        ..Default::default()
    })
    .await?;
    let tds = stack.tds().ok_or("no local TDS server")?;
    let dynamo = stack.dynamo().ok_or("no local DynamoDB")?;
    tds.faults().set_rates(faults.sql_drop, 0.0, 11);
    dynamo
        .proxy()
        .faults()
        .set_throttle_rate(faults.throttle, 13);
    let deps = Arc::clone(&stack.deps);
    eprintln!(
        "soak: {} invocations (+{warmup} warm-up), concurrency {}, batch {}, faults {:?}",
        args.invocations, args.concurrency, args.batch, faults
    );

    let total = warmup + args.invocations;
    let every = (args.invocations / args.checkpoints.max(1)).max(1);
    let next = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let measure = Arc::new(Mutex::new(Measure {
        all: histogram(),
        overhead: histogram(),
        profiles: histogram(),
        sql: histogram(),
        legacy: histogram(),
        window: histogram(),
        window_started: Instant::now(),
        checkpoints: Vec::with_capacity(args.checkpoints as usize + 2),
        errors: BTreeMap::new(),
    }));
    let rss_start = Arc::new(AtomicU64::new(0));
    let measured_from = Arc::new(Mutex::new(Instant::now()));
    dynamo.proxy().reset_stats();

    let workers: Vec<_> = (0..args.concurrency.max(1))
        .map(|_| {
            let (deps, next, done, measure) = (Arc::clone(&deps), Arc::clone(&next), Arc::clone(&done), Arc::clone(&measure));
            let (rss_start, measured_from) = (Arc::clone(&rss_start), Arc::clone(&measured_from));
            let batch = args.batch;
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= total {
                        return;
                    }
                    let payload =
                        if batch == 1 { event(i, 0) } else { Value::Array((0..batch).map(|j| event(i, j)).collect()) };
                    let started = Instant::now();
                    let (result, report) =
                        assessments_resolver::appsync::handle_with_report(&deps, payload, "soak").await;
                    let elapsed = started.elapsed();
                    let t = report.timings;
                    let dependencies = t.profiles.max(t.sql) + t.legacy;
                    let overhead = elapsed.saturating_sub(dependencies);
                    let completed = done.fetch_add(1, Ordering::Relaxed) + 1;
                    let mut m = measure.lock().unwrap_or_else(|p| p.into_inner());
                    if completed == warmup {
                        rss_start.store(rss_kib(), Ordering::Relaxed);
                        *measured_from.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
                        m.window.reset();
                        m.window_started = Instant::now();
                    }
                    if completed > warmup {
                        let us = elapsed.as_micros().clamp(1, 60_000_000) as u64;
                        let _ = m.all.record(us);
                        let _ = m.window.record(us);
                        let _ = m.overhead.record(overhead.as_micros().clamp(1, 60_000_000) as u64);
                        let _ = m.profiles.record(t.profiles.as_micros().clamp(1, 60_000_000) as u64);
                        let _ = m.sql.record(t.sql.as_micros().clamp(1, 60_000_000) as u64);
                        let _ = m.legacy.record(t.legacy.as_micros().clamp(1, 60_000_000) as u64);
                        if let Err(e) = &result {
                            *m.errors.entry(e.error_type.as_str().to_owned()).or_insert(0) += 1;
                        }
                        for error_type in &report.error_types {
                            if batch > 1 {
                                *m.errors.entry(error_type.as_str().to_owned()).or_insert(0) += 1;
                            }
                        }
                        let measured = completed - warmup;
                        if measured.is_multiple_of(every) || completed == total {
                            let window_secs = m.window_started.elapsed().as_secs_f64().max(1e-9);
                            let checkpoint = Checkpoint {
                                invocations: measured,
                                rss_kib: rss_kib(),
                                p50_us: m.window.value_at_quantile(0.5),
                                p99_us: m.window.value_at_quantile(0.99),
                                throughput: m.window.len() as f64 / window_secs,
                            };
                            eprintln!(
                                "  {:>8} invocations  rss {:>7} KiB  p50 {:>6} µs  p99 {:>7} µs  {:>7.0}/s",
                                checkpoint.invocations, checkpoint.rss_kib, checkpoint.p50_us, checkpoint.p99_us, checkpoint.throughput
                            );
                            m.checkpoints.push(checkpoint);
                            m.window.reset();
                            m.window_started = Instant::now();
                        }
                    }
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.map_err(|e| format!("worker: {e}"))?;
    }
    let duration = measured_from
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .elapsed();
    let rss_end = rss_kib();
    let pool = deps.resolver.sql().status();
    let proxy = dynamo.proxy().stats();
    let dynamodb_calls: u64 = proxy.requests.values().sum();
    deps.shutdown().await;
    // Native calls that timed out finish in the background: give them a moment.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let native = assessments_resolver::legacy::library_stats(Path::new(
        assessments_resolver::legacy::DEFAULT_LIB_PATH,
    ))
    .map_err(|e| e.to_string())?
    .unwrap_or_default();

    let m = measure.lock().unwrap_or_else(|p| p.into_inner());
    let items = args.invocations * args.batch as u64;
    let rss_start = rss_start.load(Ordering::Relaxed);
    let label = format!(
        "soak-{}-c{}-b{}-{}",
        args.invocations,
        args.concurrency,
        args.batch,
        args.faults.replace([',', '='], "_")
    );
    std::fs::create_dir_all(&args.out_dir)
        .map_err(|e| format!("{}: {e}", args.out_dir.display()))?;
    let csv = args.out_dir.join(format!("{label}.csv"));
    let png = args.out_dir.join(format!("{label}.png"));
    write_csv(&csv, &m.checkpoints)?;
    plot(&png, &m.checkpoints, &label)?;

    let summary = json!({
        "invocations": args.invocations,
        "warmup": warmup,
        "concurrency": args.concurrency,
        "batch": args.batch,
        "faults": args.faults,
        "duration_s": (duration.as_secs_f64() * 10.0).round() / 10.0,
        "rss_start_kib": rss_start,
        "rss_end_kib": rss_end,
        "rss_growth_kib": rss_end as i64 - rss_start as i64,
        "native_live_handles": native.live_handles(),
        "native_violations": native.violations,
        "pool_peak": pool.peak_in_use,
        "pool_max": pool.max_size,
        "p50_us": m.all.value_at_quantile(0.5),
        "p95_us": m.all.value_at_quantile(0.95),
        "p99_us": m.all.value_at_quantile(0.99),
        "overhead_p50_us": m.overhead.value_at_quantile(0.5),
        "overhead_p99_us": m.overhead.value_at_quantile(0.99),
        "dynamodb_p50_us": m.profiles.value_at_quantile(0.5),
        "sql_p50_us": m.sql.value_at_quantile(0.5),
        "legacy_p50_us": m.legacy.value_at_quantile(0.5),
        "throughput_per_s": (args.invocations as f64 / duration.as_secs_f64().max(1e-9)).round(),
        "dynamodb_calls_per_item": ((dynamodb_calls as f64 / (total * args.batch as u64) as f64) * 1000.0).round() / 1000.0,
        "items": items,
        "errors": m.errors,
        "csv": csv.display().to_string(),
        "png": png.display().to_string(),
    });
    println!("{summary}");

    if args.check {
        let mut broken = Vec::new();
        if rss_end.saturating_sub(rss_start) > args.max_growth_kib {
            broken.push(format!(
                "RSS grew {} KiB (allowed {})",
                rss_end.saturating_sub(rss_start),
                args.max_growth_kib
            ));
        }
        if native.live_handles() != 0 {
            broken.push(format!("{} native handles alive", native.live_handles()));
        }
        if native.violations != 0 {
            broken.push(format!("{} native violations", native.violations));
        }
        if pool.peak_in_use > pool.max_size {
            broken.push(format!(
                "pool peak {} above its max {}",
                pool.peak_in_use, pool.max_size
            ));
        }
        if !broken.is_empty() {
            return Err(format!("targets broken: {}", broken.join("; ")));
        }
        eprintln!("soak: every target met");
    }
    Ok(())
}

fn write_csv(path: &Path, checkpoints: &[Checkpoint]) -> Result<(), String> {
    let mut text = String::from("invocations,rss_kib,p50_us,p99_us,throughput_per_s\n");
    for c in checkpoints {
        text.push_str(&format!(
            "{},{},{},{},{:.1}\n",
            c.invocations, c.rss_kib, c.p50_us, c.p99_us, c.throughput
        ));
    }
    std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))
}

/// RSS and p99 against invocations, with plotters. The font comes from the
/// system (Debian's fonts-dejavu-core); without it the chart has no labels.
fn plot(path: &Path, checkpoints: &[Checkpoint], title: &str) -> Result<(), String> {
    use plotters::prelude::*;
    let font = [
        "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
        "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    ]
    .iter()
    .find_map(|p| std::fs::read(p).ok());
    let labelled = match font {
        // Registered once per process; the bytes must live as long as it.
        Some(bytes) => plotters::style::register_font(
            "sans-serif",
            FontStyle::Normal,
            Box::leak(bytes.into_boxed_slice()),
        )
        .is_ok(),
        None => false,
    };
    let root = BitMapBackend::new(path, (1200, 800)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let (upper, lower) = root.split_vertically(400);
    let max_x = checkpoints.last().map_or(1, |c| c.invocations).max(1);
    let draw = |area: &DrawingArea<BitMapBackend, plotters::coord::Shift>,
                name: &str,
                values: Vec<(u64, u64)>,
                color: RGBColor|
     -> Result<(), String> {
        let lo = values.iter().map(|v| v.1).min().unwrap_or(0);
        let hi = values.iter().map(|v| v.1).max().unwrap_or(1);
        let pad = ((hi - lo) / 10).max(1);
        let mut builder = ChartBuilder::on(area);
        builder
            .margin(20)
            .x_label_area_size(if labelled { 40 } else { 0 })
            .y_label_area_size(if labelled { 80 } else { 0 });
        if labelled {
            builder.caption(format!("{name} ({title})"), ("sans-serif", 20));
        }
        let mut chart = builder
            .build_cartesian_2d(0..max_x, lo.saturating_sub(pad)..hi + pad)
            .map_err(|e| e.to_string())?;
        if labelled {
            chart
                .configure_mesh()
                .x_desc("invocations")
                .y_desc(name)
                .draw()
                .map_err(|e| e.to_string())?;
        }
        chart
            .draw_series(LineSeries::new(values, &color))
            .map_err(|e| e.to_string())?;
        Ok(())
    };
    draw(
        &upper,
        "RSS (KiB)",
        checkpoints
            .iter()
            .map(|c| (c.invocations, c.rss_kib))
            .collect(),
        BLUE,
    )?;
    draw(
        &lower,
        "p99 latency (µs)",
        checkpoints
            .iter()
            .map(|c| (c.invocations, c.p99_us))
            .collect(),
        RED,
    )?;
    root.present().map_err(|e| e.to_string())
}
