//! Replays AppSync events against the running service and the candidate and
//! compares the answers item by item (docs/cutover.md).
//!
//! ```sh
//! cargo build --bin assessments-resolver --bin parity
//! target/debug/parity --old local --new local          # the playground's data, two local bootstraps
//! target/debug/parity --events recorded.jsonl --old lambda:OLD_FUNCTION --new lambda:STACK-resolver:live
//! ```

use std::path::PathBuf;
use std::process::ExitCode;

use assessments_common::aws::AwsSettings;
use assessments_common::config::Env;
use clap::Parser;
use devstack::parity::{self, Options, Target};

#[derive(Debug, Parser)]
#[command(
    about = "Compare two getAssessments resolvers on the same AppSync events, item by item",
    long_about = "Compare two getAssessments resolvers on the same AppSync events, item by item. \
        A target is `local` (the assessments-resolver beside this program, on the playground's \
        local stack), `local:PATH` (another bootstrap), or `lambda:NAME` (a deployed function, \
        version or alias: name, ARN or name:qualifier; your AWS credentials and region). \
        Exits 1 if any item differs or any invocation failed."
)]
struct Args {
    /// The running service.
    #[arg(long, value_parser = Target::parse)]
    old: Target,
    /// The candidate.
    #[arg(long, value_parser = Target::parse)]
    new: Target,
    /// AppSync events, one per line (an object, or an array for a batch).
    /// Default: events over the playground's data (local targets only hold it).
    #[arg(long)]
    events: Option<PathBuf>,
    /// Write the events used to this file (e.g. the generated ones, to replay elsewhere).
    #[arg(long)]
    write_events: Option<PathBuf>,
    /// A setting of the old local target over the local stack's (KEY=VALUE, repeatable).
    #[arg(long = "old-setting", value_parser = parity::parse_setting)]
    old_settings: Vec<(String, String)>,
    /// A setting of the new local target over the local stack's (KEY=VALUE, repeatable).
    #[arg(long = "new-setting", value_parser = parity::parse_setting)]
    new_settings: Vec<(String, String)>,
    /// Where the differing pairs go (JSON Lines; written only when some differ).
    #[arg(long, default_value = "parity-diff.jsonl")]
    diff: PathBuf,
    /// No progress bar (it is drawn only on a terminal anyway).
    #[arg(long)]
    quiet: bool,
}

fn with_settings(
    target: Target,
    extra: Vec<(String, String)>,
    side: &str,
) -> Result<Target, String> {
    match target {
        Target::Local {
            binary,
            mut settings,
        } => {
            settings.extend(extra);
            Ok(Target::Local { binary, settings })
        }
        lambda if extra.is_empty() => Ok(lambda),
        _ => Err(format!("--{side}-setting applies to a local target only")),
    }
}

async fn main_inner(args: Args) -> Result<bool, String> {
    let events = match &args.events {
        Some(path) => parity::read_events(path)?,
        None => parity::playground_events(),
    };
    if let Some(path) = &args.write_events {
        parity::write_events(path, &events)?;
    }
    let env = Env::from_process();
    let options = Options {
        events,
        old: with_settings(args.old, args.old_settings, "old")?,
        new: with_settings(args.new, args.new_settings, "new")?,
        diff_file: args.diff,
        progress: !args.quiet,
        aws: AwsSettings::from_env(&env).map_err(|e| e.to_string())?,
        lambda_endpoint: env
            .string("AWS_ENDPOINT_URL_LAMBDA")
            .map_err(|e| e.to_string())?,
    };
    let summary = parity::run(options).await?;
    println!("{summary}");
    Ok(summary.passed())
}

#[tokio::main]
async fn main() -> ExitCode {
    devstack::init_local_tracing("warn");
    match main_inner(Args::parse()).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("parity: {e}");
            ExitCode::from(2)
        }
    }
}
