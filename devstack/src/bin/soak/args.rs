//! The soak's command line and its fault mix.

use std::path::PathBuf;

use clap::Parser;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FunctionKind {
    /// The resolver: AppSync events (`--batch` > 1: AppSync batches).
    Resolver,
    /// The assessment processor: SQS events of `--batch` records.
    Processor,
}

#[derive(Debug, Parser)]
#[command(about = "Drive a function's handler for many invocations and measure memory and latency")]
pub struct Args {
    /// Which function's handler to drive.
    #[arg(long, value_enum, default_value_t = FunctionKind::Resolver)]
    pub mode: FunctionKind,
    /// Measured invocations (after the warm-up).
    #[arg(long, default_value_t = 20_000)]
    pub invocations: u64,
    /// Invocations in flight at once.
    #[arg(long, default_value_t = 4)]
    pub concurrency: usize,
    /// Events (resolver) or SQS records (processor) per invocation.
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    /// `none`, `mix` (native 1%, dropped SQL connections 0.2%, DynamoDB throttles 1%;
    /// processor: scoring 429 1%, 500 0.5%, slow 0.5%, invalid bodies 0.5%,
    /// redelivered records 1%), or `native=P,sql_drop=P,throttle=P,scoring_429=P,...`.
    #[arg(long, default_value = "none")]
    pub faults: String,
    /// Resolver: where the legacy component runs (`LEGACY_ISOLATION`): `process`
    /// (the function's default, so the default is what the soak proves) or `in-process`.
    #[arg(long, default_value = "process")]
    pub isolation: String,
    /// Processor: `SCORING_RATE_LIMIT`, requests per second to the scoring API.
    #[arg(long, default_value_t = 100)]
    pub rate_limit: u32,
    /// Invocations before the measurement starts (default: a tenth of --invocations, at most 10,000).
    #[arg(long)]
    pub warmup: Option<u64>,
    /// The local SQL Server's TLS: `required` (every connection encrypted, as
    /// production) or `not-supported` (plaintext, to compare).
    #[arg(long, value_enum, default_value_t = SqlTls::Required)]
    pub sql_tls: SqlTls,
    /// Checkpoints over the run (RSS and latency window).
    #[arg(long, default_value_t = 40)]
    pub checkpoints: u64,
    /// Where the CSV and the PNG go.
    #[arg(long, default_value = "target/soak")]
    pub out_dir: PathBuf,
    /// Fail (exit 1) if a target breaks: RSS growth over `--max-growth-kib`, native handles
    /// alive or violations at the end, pool peak above its max.
    #[arg(long)]
    pub check: bool,
    /// The RSS growth allowed over the measured run (KiB): the median of the last
    /// quarter of checkpoints less that of the first (see `report::rss_trend_kib`).
    #[arg(long, default_value_t = 2048)]
    pub max_growth_kib: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SqlTls {
    Required,
    NotSupported,
}

impl SqlTls {
    pub fn encryption(self) -> testkit::tds::tls::Encryption {
        match self {
            SqlTls::Required => testkit::tds::tls::Encryption::Required,
            SqlTls::NotSupported => testkit::tds::tls::Encryption::NotSupported,
        }
    }
}

#[derive(Debug, Clone, Copy, Default)]
pub struct FaultMix {
    pub native: f64,
    /// Share of native calls that crash their process (SIGSEGV): with
    /// `--isolation process` they fail one call each; in process they end the run.
    pub crash: f64,
    pub sql_drop: f64,
    pub throttle: f64,
    pub scoring_429: f64,
    pub scoring_500: f64,
    pub scoring_slow: f64,
    pub invalid: f64,
    pub redelivered: f64,
}

pub fn parse_faults(text: &str) -> Result<FaultMix, String> {
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
