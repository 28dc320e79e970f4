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

mod args;
mod measure;
mod processor;
mod report;
mod resolver;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use devstack::stack::{LocalStack, StackOptions};
use testkit::procfs;

use args::{Args, FaultMix, FunctionKind, parse_faults};
use measure::{Checkpoint, Measure, Sample, histogram, us};
use processor::ProcessorRun;
use report::{Ends, plot, write_csv};

/// The handler a soak drives.
enum Handler {
    Resolver(Arc<assessments_resolver::deps::Deps>),
    Processor(ProcessorRun),
}

impl Handler {
    async fn invoke(&self, i: u64, batch: usize, faults: &FaultMix) -> Sample {
        match self {
            Handler::Resolver(deps) => resolver::invoke(deps, i, batch).await,
            Handler::Processor(run) => processor::invoke(run, i, batch, faults).await,
        }
    }

    async fn clean_up(&self, i: u64, batch: usize) {
        if let Handler::Processor(run) = self {
            processor::clean_up(run, i, batch).await;
        }
    }
}

fn main() {
    // Started as a legacy worker (LEGACY_ISOLATION=process): serve the supervisor, then exit.
    legacy_bridge::run_worker_if_requested();
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
    let mut overrides = vec![
        ("SCORING_RATE_LIMIT".to_owned(), args.rate_limit.to_string()),
        ("LEGACY_ISOLATION".to_owned(), args.isolation.clone()),
    ];
    if args.mode == FunctionKind::Processor {
        // moto is the processor soak's bottleneck: 20 records in flight put its
        // p50 at 130–190 ms and its tail past the 2 s default on a loaded machine
        // (3 writes of 20,000 timed out in one CI run). The soak checks memory
        // and the rate limit, not moto's latency.
        overrides.push(("DYNAMODB_TIMEOUT_MS".to_owned(), "10000".to_owned()));
    }
    let stack = LocalStack::start(StackOptions {
        legacy_config: (!legacy_config.is_empty()).then(|| legacy_config.join(";")),
        overrides,
        services: testkit::services::ServicesOptions {
            sql_encryption: args.sql_tls.encryption(),
            ..Default::default()
        },
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
        FunctionKind::Resolver => Handler::Resolver(Arc::clone(&stack.deps)),
        FunctionKind::Processor => Handler::Processor(ProcessorRun {
            deps: Arc::clone(&stack.processor),
            tally: Default::default(),
            moto: dynamo.direct_client(),
            table: dynamo.assessments_table().to_owned(),
        }),
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
                    let sample = target.invoke(i, batch, &faults).await;
                    target.clean_up(i, batch).await;
                    let completed = done.fetch_add(1, Ordering::Relaxed) + 1;
                    let mut m = measure.lock().unwrap_or_else(|p| p.into_inner());
                    if completed == warmup {
                        rss_start.store(procfs::self_rss_kib(), Ordering::Relaxed);
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
                                rss_kib: procfs::self_rss_kib(),
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
    let rss_end = procfs::self_rss_kib();
    let deps = &stack.deps;
    let isolation = deps.resolver.resources().legacy.isolation;
    // The workers' resident size together, from /proc (none in process).
    let workers_rss_kib = isolation.map(|_| {
        procfs::children_of(std::process::id())
            .into_iter()
            .filter_map(procfs::rss_kib)
            .sum::<u64>()
    });
    let pool = deps.resolver.resources().pool;
    let proxy = dynamo.proxy().stats();
    let tds_stats = tds.stats();
    let stand_in = scoring.stats();
    let scoring_totals = match target.as_ref() {
        Handler::Processor(run) => (run.tally.scoring_requests(), run.tally.scoring_retries()),
        Handler::Resolver(_) => (0, 0),
    };
    deps.shutdown().await;
    // Native calls that timed out finish in the background: give them a moment.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let native = legacy_bridge::library_stats(Path::new(legacy_shim::SHIM_PATH))
        .map_err(|e| e.to_string())?
        .unwrap_or_default();

    let m = measure.lock().unwrap_or_else(|p| p.into_inner());
    let rss_start = rss_start.load(Ordering::Relaxed);
    let label = format!(
        "soak-{}{}{}-c{}-b{}-{}",
        if args.mode == FunctionKind::Processor {
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

    let ends = Ends {
        args: &args,
        warmup,
        duration,
        rss_start,
        rss_end,
        native,
        pool,
        isolation,
        workers_rss_kib,
        proxy,
        tds: tds_stats,
        stand_in,
        scoring_totals,
        measure: &m,
        csv,
        png,
    };
    println!("{}", report::summary(&ends));
    if args.check {
        let broken = report::broken_targets(&ends);
        if !broken.is_empty() {
            return Err(format!("targets broken: {}", broken.join("; ")));
        }
        eprintln!("soak: every target met");
    }
    Ok(())
}
