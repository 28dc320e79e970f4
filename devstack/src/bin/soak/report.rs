//! The soak's report: one JSON line of figures, the targets a `--check` run
//! enforces, the CSV of checkpoints and the PNG of RSS and p99 against invocations.

use std::path::{Path, PathBuf};
use std::time::Duration;

use assessments_resolver::sqlserver::PoolStatus;
use legacy_bridge::{IsolationStats, NativeStats};
use serde_json::{Value, json};
use testkit::dynamo::ProxyStats;
use testkit::scoring::ScoringStats;

use crate::args::{Args, FunctionKind};
use crate::measure::{Checkpoint, Measure};

/// Everything measured by the end of a run.
pub struct Ends<'a> {
    pub args: &'a Args,
    pub warmup: u64,
    pub duration: Duration,
    pub rss_start: u64,
    pub rss_end: u64,
    pub native: NativeStats,
    pub pool: PoolStatus,
    pub isolation: Option<IsolationStats>,
    pub workers_rss_kib: Option<u64>,
    pub proxy: ProxyStats,
    pub tds: testkit::tds::TdsStats,
    pub stand_in: ScoringStats,
    /// The scoring API's requests and retries (the processor's runs).
    pub scoring_totals: (u64, u64),
    pub measure: &'a Measure,
    pub csv: PathBuf,
    pub png: PathBuf,
}

/// The run's figures, one JSON object.
pub fn summary(ends: &Ends) -> Value {
    let Ends {
        args,
        warmup,
        duration,
        rss_start,
        rss_end,
        native,
        pool,
        isolation,
        workers_rss_kib,
        proxy,
        tds,
        stand_in,
        scoring_totals,
        measure: m,
        csv,
        png,
    } = ends;
    let total = warmup + args.invocations;
    let items = args.invocations * args.batch as u64;
    let dynamodb_calls: u64 = proxy.requests.values().sum();
    let mode = match args.mode {
        FunctionKind::Resolver => "resolver",
        FunctionKind::Processor => "processor",
    };
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
        "rss_growth_kib": *rss_end as i64 - *rss_start as i64,
        "rss_trend_kib": rss_trend_kib(&m.checkpoints),
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
        "legacy_p50_us": if args.mode == FunctionKind::Resolver { third_p50 } else { 0 },
        "legacy_p99_us": if args.mode == FunctionKind::Resolver { m.third.value_at_quantile(0.99) } else { 0 },
        "isolation": isolation,
        "workers_rss_kib": workers_rss_kib,
        "throughput_per_s": (args.invocations as f64 / duration.as_secs_f64().max(1e-9)).round(),
        "dynamodb_requests": proxy.requests,
        // Connections opened vs requests: DynamoDB's are kept alive.
        "dynamodb_connections": proxy.connections,
        "dynamodb_requests_total": dynamodb_calls,
        "sql_tls": args.sql_tls == crate::args::SqlTls::Required,
        "sql_logins": tds.logins_ok,
        "sql_tls_handshakes": tds.tls_handshakes,
        "sql_requests": tds.requests,
        "dynamodb_calls_per_item": ((dynamodb_calls as f64 / (total * args.batch as u64) as f64) * 1000.0).round() / 1000.0,
        "items": items,
        "errors": m.errors,
        "csv": csv.display().to_string(),
        "png": png.display().to_string(),
    });
    if args.mode == FunctionKind::Processor {
        // Overhead is per record here; the scoring API's time includes its retries and the limiter.
        summary["records"] = json!(items);
        summary["outcomes"] = json!(m.outcomes);
        summary["scoring_p50_us"] = json!(third_p50);
        summary["scoring_p99_us"] = json!(m.third.value_at_quantile(0.99));
        summary["rate_limit"] = json!(args.rate_limit);
        summary["scoring_requests"] = json!(scoring_totals.0);
        summary["scoring_retries"] = json!(scoring_totals.1);
        summary["standin_peak_per_second"] = json!(stand_in.peak_per_second);
        summary["standin_peak_sliding_second"] = json!(stand_in.peak_sliding_second);
        summary["standin_scored"] = json!(stand_in.scored);
    }
    summary
}

/// How much RSS grew over the measured run: the median of the last quarter
/// of checkpoints less the median of the first. A leak grows steadily and
/// shows here at about three quarters of its size; a single reading swings by
/// up to ±600 KiB as glibc's per-thread arenas grow and trim (seen in the
/// processor's runs: a flat line with 1 MB steps either way), which a
/// comparison of two single readings would take for growth.
pub fn rss_trend_kib(checkpoints: &[Checkpoint]) -> i64 {
    let quarter = (checkpoints.len() / 4).max(1);
    let median = |part: &[Checkpoint]| -> i64 {
        let mut values: Vec<u64> = part.iter().map(|c| c.rss_kib).collect();
        values.sort_unstable();
        values.get(values.len() / 2).copied().unwrap_or(0) as i64
    };
    if checkpoints.is_empty() {
        return 0;
    }
    median(&checkpoints[checkpoints.len() - quarter.min(checkpoints.len())..])
        - median(&checkpoints[..quarter.min(checkpoints.len())])
}

/// The targets a `--check` run breaks, if any.
pub fn broken_targets(ends: &Ends) -> Vec<String> {
    let Ends {
        args,
        rss_start,
        rss_end,
        native,
        pool,
        stand_in,
        measure: m,
        ..
    } = ends;
    let mut broken = Vec::new();
    let trend = rss_trend_kib(&m.checkpoints);
    if trend > args.max_growth_kib as i64 {
        broken.push(format!(
            "RSS grew {trend} KiB from the first quarter of the run to the last (medians; allowed {}; end - start: {} KiB)",
            args.max_growth_kib,
            *rss_end as i64 - *rss_start as i64
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
    if args.mode == FunctionKind::Processor {
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
    broken
}

pub fn write_csv(path: &Path, checkpoints: &[Checkpoint]) -> Result<(), String> {
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
pub fn plot(path: &Path, checkpoints: &[Checkpoint], title: &str) -> Result<(), String> {
    use plotters::prelude::*;
    let labelled = devstack::register_chart_font();
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
