//! The soak benchmark: a function's real handler, in-process, against the
//! local stack (mocked shim, TDS server, moto behind its fault proxy, the
//! scoring API stand-in), for many invocations. Prints progress, writes a CSV
//! of checkpoints and a PNG of RSS and p99 against invocations, and ends with
//! one JSON line of figures.
//!
//! ```sh
//! # the resolver (AppSync events)
//! cargo run --release -p devstack --bin soak -- --invocations 200000 --concurrency 4 --faults mix
//! # the assessment processor (SQS batches of 10 records)
//! cargo run --release -p devstack --bin soak -- --mode processor --invocations 2000 --batch 10 --faults mix
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Mode {
    /// The resolver: AppSync events (`--batch` > 1: AppSync batches).
    Resolver,
    /// The assessment processor: SQS events of `--batch` records.
    Processor,
}

#[derive(Debug, Parser)]
#[command(about = "Drive a function's handler for many invocations and measure memory and latency")]
struct Args {
    /// Which function's handler to drive.
    #[arg(long, value_enum, default_value_t = Mode::Resolver)]
    mode: Mode,
    /// Measured invocations (after the warm-up).
    #[arg(long, default_value_t = 20_000)]
    invocations: u64,
    /// Invocations in flight at once.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// Events (resolver) or SQS records (processor) per invocation.
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// `none`, `mix` (native 1%, dropped SQL connections 0.2%, DynamoDB throttles 1%;
    /// processor: scoring 429 1%, 500 0.5%, slow 0.5%, invalid bodies 0.5%,
    /// redelivered records 1%), or `native=P,sql_drop=P,throttle=P,scoring_429=P,...`.
    #[arg(long, default_value = "none")]
    faults: String,
    /// Resolver: where the legacy component runs (`LEGACY_ISOLATION`): `in-process` or `process`.
    #[arg(long, default_value = "in-process")]
    isolation: String,
    /// Processor: `SCORING_RATE_LIMIT`, requests per second to the scoring API.
    #[arg(long, default_value_t = 100)]
    rate_limit: u32,
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
    /// Share of native calls that crash their process (SIGSEGV): with
    /// `--isolation process` they fail one call each; in process they end the run.
    crash: f64,
    sql_drop: f64,
    throttle: f64,
    scoring_429: f64,
    scoring_500: f64,
    scoring_slow: f64,
    invalid: f64,
    redelivered: f64,
}

fn parse_faults(text: &str) -> Result<FaultMix, String> {
    match text {
        "none" => return Ok(FaultMix::default()),
        "mix" => {
            // No crashes in the mix: in process they would end the run.
            return Ok(FaultMix {
                native: 0.01,
                crash: 0.0,
                sql_drop: 0.002,
                throttle: 0.01,
                scoring_429: 0.01,
                scoring_500: 0.005,
                scoring_slow: 0.005,
                invalid: 0.005,
                redelivered: 0.01,
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
            "crash" => mix.crash = value,
            "sql_drop" => mix.sql_drop = value,
            "throttle" => mix.throttle = value,
            "scoring_429" => mix.scoring_429 = value,
            "scoring_500" => mix.scoring_500 = value,
            "scoring_slow" => mix.scoring_slow = value,
            "invalid" => mix.invalid = value,
            "redelivered" => mix.redelivered = value,
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

fn appsync_event(i: u64, j: usize) -> Value {
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

/// Record `k` of the processor soak: a new assessment of one of 2,000 soak
/// students (one in five linked to a demo student's history); with the fault mix, some
/// bodies are invalid and some records redeliver an earlier one.
fn sqs_record(k: u64, faults: &FaultMix) -> (String, String) {
    let every = |share: f64| (share > 0.0).then(|| (1.0 / share).round().max(1.0) as u64);
    let message_id = format!("soak-msg-{k}");
    if every(faults.invalid).is_some_and(|n| k % n == n - 1) {
        return (message_id, "{\"assessmentId\": \"cut off".to_owned());
    }
    // A redelivery repeats record k - 97 (same assessment, new message id).
    let source = match every(faults.redelivered) {
        Some(n) if k >= 97 && k % n == n / 2 => k - 97,
        _ => k,
    };
    let mut body = testkit::sqs::assessment(
        &format!("soak-{source}"),
        &format!("soak-stu-{:04}", source % 2000),
        source,
    );
    // One record in five links to a demo student's history (a second partition read).
    if source.is_multiple_of(5) {
        body["relatedId"] = json!(format!("stu-{:04}", source % 40 + 1));
    }
    (message_id, body.to_string())
}

fn histogram() -> Histogram<u64> {
    // 1 µs .. 60 s at 3 significant digits: allocated once, never grows.
    Histogram::new_with_bounds(1, 60_000_000, 3).unwrap_or_else(|e| panic!("histogram bounds: {e}"))
}

fn us(d: Duration) -> u64 {
    d.as_micros().clamp(1, 60_000_000) as u64
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
    /// Time in each dependency: DynamoDB, SQL Server, and the legacy
    /// component (resolver) or the scoring API (processor).
    dynamodb: Histogram<u64>,
    sql: Histogram<u64>,
    third: Histogram<u64>,
    window: Histogram<u64>,
    window_started: Instant,
    checkpoints: Vec<Checkpoint>,
    errors: BTreeMap<String, u64>,
    outcomes: BTreeMap<&'static str, u64>,
}

/// What one invocation did, in either mode.
struct Sample {
    elapsed: Duration,
    /// Per invocation (resolver) or per record (processor): time not spent
    /// waiting on a dependency.
    overheads: Vec<Duration>,
    dynamodb: Vec<Duration>,
    sql: Vec<Duration>,
    third: Vec<Duration>,
    errors: Vec<String>,
    outcomes: Vec<&'static str>,
}

enum Target {
    Resolver(Arc<assessments_resolver::deps::Deps>),
    Processor {
        deps: Arc<assessments_resolver::processor::ProcessorDeps>,
        /// Straight to moto, for the housekeeping below.
        moto: aws_sdk_dynamodb::Client,
        table: String,
    },
}

/// Processor mode: invocations whose records are deleted again, this many
/// invocations later. moto's Query scans the whole table (O(items) per
/// call), so a table that grew by every record would slow moto down, not
/// us; deleting what was written a few hundred records ago (redeliveries
/// look 97 records back) keeps it at ~850 items. Every record is still
/// read, scored and written by the processor.
const CLEANUP_LAG: u64 = 60;

async fn clean_up(target: &Target, i: u64, batch: usize) {
    let Target::Processor { moto, table, .. } = target else {
        return;
    };
    let Some(old) = i.checked_sub(CLEANUP_LAG) else {
        return;
    };
    let deletes: Vec<_> = (0..batch as u64)
        .filter_map(|j| {
            let k = old * batch as u64 + j;
            let key = |name: &str, value: String| {
                (
                    name.to_owned(),
                    aws_sdk_dynamodb::types::AttributeValue::S(value),
                )
            };
            aws_sdk_dynamodb::types::DeleteRequest::builder()
                .set_key(Some(std::collections::HashMap::from([
                    key("studentId", format!("soak-stu-{:04}", k % 2000)),
                    key("assessmentId", format!("soak-{k}")),
                ])))
                .build()
                .ok()
                .map(|d| {
                    aws_sdk_dynamodb::types::WriteRequest::builder()
                        .delete_request(d)
                        .build()
                })
        })
        .collect();
    for chunk in deletes.chunks(25) {
        // Housekeeping: a failed delete only leaves the table a little larger.
        let _ = moto
            .batch_write_item()
            .request_items(table.clone(), chunk.to_vec())
            .send()
            .await;
    }
}

async fn invoke(target: &Target, i: u64, batch: usize, faults: &FaultMix) -> Sample {
    let started = Instant::now();
    match target {
        Target::Resolver(deps) => {
            let payload = if batch == 1 {
                appsync_event(i, 0)
            } else {
                Value::Array((0..batch).map(|j| appsync_event(i, j)).collect())
            };
            let budget = devstack::stack::invocation_budget(deps);
            let (result, report) =
                assessments_resolver::appsync::handle_with_report(deps, payload, "soak", budget)
                    .await;
            let elapsed = started.elapsed();
            let t = report.timings;
            let mut errors = Vec::new();
            if let Err(e) = &result {
                errors.push(e.error_type.as_str().to_owned());
            }
            if batch > 1 {
                errors.extend(report.error_types.iter().map(|t| t.as_str().to_owned()));
            }
            Sample {
                elapsed,
                overheads: vec![elapsed.saturating_sub(t.profiles.max(t.sql) + t.legacy)],
                dynamodb: vec![t.profiles],
                sql: vec![t.sql],
                third: vec![t.legacy],
                errors,
                outcomes: Vec::new(),
            }
        }
        Target::Processor { deps, .. } => {
            use assessments_resolver::processor::Outcome;
            let records = (0..batch as u64).map(|j| sqs_record(i * batch as u64 + j, faults));
            let event: aws_lambda_events::sqs::SqsEvent =
                serde_json::from_value(testkit::sqs::event(records))
                    .unwrap_or_else(|e| panic!("the soak's own event: {e}"));
            let deadline = Instant::now() + Duration::from_secs(30);
            let handled = assessments_resolver::processor::sqs::handle_with_report(
                deps, event, "soak", deadline,
            )
            .await;
            let elapsed = started.elapsed();
            let mut sample = Sample {
                elapsed,
                overheads: Vec::with_capacity(batch),
                dynamodb: Vec::with_capacity(batch),
                sql: Vec::new(),
                third: Vec::with_capacity(batch),
                errors: Vec::new(),
                outcomes: Vec::with_capacity(batch),
            };
            for record in &handled.records {
                match &record.outcome {
                    Outcome::Scored { .. } => sample.outcomes.push("scored"),
                    Outcome::AlreadyScored => sample.outcomes.push("already_scored"),
                    Outcome::Failed(error) => {
                        sample.outcomes.push("failed");
                        sample.errors.push(error.kind().to_owned());
                    }
                }
                if record.elapsed > Duration::ZERO {
                    sample.overheads.push(
                        record
                            .elapsed
                            .saturating_sub(record.dynamodb_time + record.scoring_time),
                    );
                    sample.dynamodb.push(record.dynamodb_time);
                    if record.scoring_time > Duration::ZERO {
                        sample.third.push(record.scoring_time);
                    }
                }
            }
            sample
        }
    }
}

fn main() {
    // Started as a legacy worker (LEGACY_ISOLATION=process): serve the supervisor, then exit.
    assessments_resolver::legacy::run_worker_if_requested();
    serve()
}

#[tokio::main]
async fn serve() {
    if let Err(e) = run(Args::parse()).await {
        eprintln!("soak: {e}");
        std::process::exit(2);
    }
}

async fn run(args: Args) -> Result<(), String> {
    devstack::init_local_tracing("error");
    let faults = parse_faults(&args.faults)?;
    let warmup = args.warmup.unwrap_or((args.invocations / 10).min(10_000));
    let mut legacy_config = Vec::new();
    if faults.native > 0.0 {
        legacy_config.push(format!("fail_prob={};seed=7", faults.native));
    }
    if faults.crash > 0.0 {
        let every = (1.0 / faults.crash).round().max(1.0) as u64;
        legacy_config.push(format!("crash=segv;crash_every={every}"));
    }
    let stack = LocalStack::start(StackOptions {
        legacy_config: (!legacy_config.is_empty()).then(|| legacy_config.join(";")),
        overrides: vec![
            ("SCORING_RATE_LIMIT".to_owned(), args.rate_limit.to_string()),
            ("LEGACY_ISOLATION".to_owned(), args.isolation.clone()),
        ],
        ..Default::default()
    })
    .await?;
    let tds = stack.tds().ok_or("no local TDS server")?;
    let dynamo = stack.dynamo().ok_or("no local DynamoDB")?;
    let scoring = stack.scoring().ok_or("no scoring API stand-in")?;
    tds.faults().set_rates(faults.sql_drop, 0.0, 11);
    dynamo
        .proxy()
        .faults()
        .set_throttle_rate(faults.throttle, 13);
    scoring.faults().throttle.rate(faults.scoring_429, 17);
    scoring.faults().server_error.rate(faults.scoring_500, 19);
    scoring.faults().slow.rate(faults.scoring_slow, 23);
    scoring.faults().set_slow_ms(100);
    let target = Arc::new(match args.mode {
        Mode::Resolver => Target::Resolver(Arc::clone(&stack.deps)),
        Mode::Processor => Target::Processor {
            deps: Arc::clone(&stack.processor),
            moto: dynamo.direct_client(),
            table: dynamo.assessments_table().to_owned(),
        },
    });
    eprintln!(
        "soak: {:?}, {} invocations (+{warmup} warm-up), concurrency {}, batch {}, faults {:?}",
        args.mode, args.invocations, args.concurrency, args.batch, faults
    );

    let total = warmup + args.invocations;
    let every = (args.invocations / args.checkpoints.max(1)).max(1);
    let next = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let measure = Arc::new(Mutex::new(Measure {
        all: histogram(),
        overhead: histogram(),
        dynamodb: histogram(),
        sql: histogram(),
        third: histogram(),
        window: histogram(),
        window_started: Instant::now(),
        checkpoints: Vec::with_capacity(args.checkpoints as usize + 2),
        errors: BTreeMap::new(),
        outcomes: BTreeMap::new(),
    }));
    let rss_start = Arc::new(AtomicU64::new(0));
    let measured_from = Arc::new(Mutex::new(Instant::now()));
    dynamo.proxy().reset_stats();
    scoring.reset_stats();

    let workers: Vec<_> = (0..args.concurrency.max(1))
        .map(|_| {
            let (target, next, done, measure) = (Arc::clone(&target), Arc::clone(&next), Arc::clone(&done), Arc::clone(&measure));
            let (rss_start, measured_from) = (Arc::clone(&rss_start), Arc::clone(&measured_from));
            let batch = args.batch;
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= total {
                        return;
                    }
                    let sample = invoke(&target, i, batch, &faults).await;
                    clean_up(&target, i, batch).await;
                    let completed = done.fetch_add(1, Ordering::Relaxed) + 1;
                    let mut m = measure.lock().unwrap_or_else(|p| p.into_inner());
                    if completed == warmup {
                        rss_start.store(rss_kib(), Ordering::Relaxed);
                        *measured_from.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
                        m.window.reset();
                        m.window_started = Instant::now();
                    }
                    if completed > warmup {
                        let _ = m.all.record(us(sample.elapsed));
                        let _ = m.window.record(us(sample.elapsed));
                        for d in &sample.overheads {
                            let _ = m.overhead.record(us(*d));
                        }
                        for d in &sample.dynamodb {
                            let _ = m.dynamodb.record(us(*d));
                        }
                        for d in &sample.sql {
                            let _ = m.sql.record(us(*d));
                        }
                        for d in &sample.third {
                            let _ = m.third.record(us(*d));
                        }
                        for e in sample.errors {
                            *m.errors.entry(e).or_insert(0) += 1;
                        }
                        for o in sample.outcomes {
                            *m.outcomes.entry(o).or_insert(0) += 1;
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
    let deps = &stack.deps;
    let isolation = deps.resolver.legacy().isolation_stats();
    let workers_rss_kib = deps.resolver.legacy().workers_rss_kib();
    let pool = deps.resolver.sql().status();
    let proxy = dynamo.proxy().stats();
    let dynamodb_calls: u64 = proxy.requests.values().sum();
    let stand_in = scoring.stats();
    let scoring_totals = stack.processor.scoring_totals();
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
    let mode = match args.mode {
        Mode::Resolver => "resolver",
        Mode::Processor => "processor",
    };
    let label = format!(
        "soak-{}{}{}-c{}-b{}-{}",
        if args.mode == Mode::Processor {
            "processor-"
        } else {
            ""
        },
        if isolation.is_some() { "isolated-" } else { "" },
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

    let third_p50 = m.third.value_at_quantile(0.5);
    let mut summary = json!({
        "mode": mode,
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
        "dynamodb_p50_us": m.dynamodb.value_at_quantile(0.5),
        "sql_p50_us": m.sql.value_at_quantile(0.5),
        "legacy_p50_us": if args.mode == Mode::Resolver { third_p50 } else { 0 },
        "legacy_p99_us": if args.mode == Mode::Resolver { m.third.value_at_quantile(0.99) } else { 0 },
        "isolation": isolation,
        "workers_rss_kib": workers_rss_kib,
        "throughput_per_s": (args.invocations as f64 / duration.as_secs_f64().max(1e-9)).round(),
        "dynamodb_requests": proxy.requests,
        "dynamodb_calls_per_item": ((dynamodb_calls as f64 / (total * args.batch as u64) as f64) * 1000.0).round() / 1000.0,
        "items": items,
        "errors": m.errors,
        "csv": csv.display().to_string(),
        "png": png.display().to_string(),
    });
    if args.mode == Mode::Processor {
        // Overhead is per record here; the scoring API's time includes its retries and the limiter.
        summary["records"] = json!(items);
        summary["outcomes"] = json!(m.outcomes);
        summary["scoring_p50_us"] = json!(third_p50);
        summary["scoring_p99_us"] = json!(m.third.value_at_quantile(0.99));
        summary["rate_limit"] = json!(args.rate_limit);
        summary["scoring_requests"] = json!(scoring_totals.requests);
        summary["scoring_retries"] = json!(scoring_totals.retries);
        summary["standin_peak_per_second"] = json!(stand_in.peak_per_second);
        summary["standin_peak_sliding_second"] = json!(stand_in.peak_sliding_second);
        summary["standin_scored"] = json!(stand_in.scored);
    }
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
        if args.mode == Mode::Processor {
            if stand_in.peak_sliding_second > u64::from(args.rate_limit) {
                broken.push(format!(
                    "the scoring API saw {} requests within one second (limit {})",
                    stand_in.peak_sliding_second, args.rate_limit
                ));
            }
            let unexpected: u64 = m
                .errors
                .iter()
                .filter(|(kind, _)| kind.as_str() != "InvalidMessage")
                .map(|(_, n)| n)
                .sum();
            if unexpected > 0 {
                broken.push(format!(
                    "records failed beyond the invalid bodies: {:?}",
                    m.errors
                ));
            }
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
