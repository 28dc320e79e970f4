//! The command line of `parity` (and of the playground's `local-parity`,
//! which gives it the local stack's environment and events).

use std::path::PathBuf;
use std::process::ExitCode;

use assessments_common::aws::AwsSettings;
use assessments_common::config::Env;
use clap::Parser;
use serde_json::Value;

use crate::{Options, Target};

#[derive(Debug, Parser)]
#[command(
    about = "Compare two getAssessments resolvers on the same AppSync events, item by item",
    long_about = "Compare two getAssessments resolvers on the same AppSync events, item by item. \
        A target is `local` (the assessments-resolver beside this program, run as Lambda runs it, \
        with this program's environment and the target's settings), `local:PATH` (another \
        bootstrap), or `lambda:NAME` (a deployed function, version or alias: name, ARN or \
        name:qualifier; your AWS credentials and region). \
        Exits 1 if any item differs or any invocation failed, 2 if it cannot compare."
)]
pub struct Args {
    /// The running service.
    #[arg(long, value_parser = Target::parse)]
    pub old: Target,
    /// The candidate.
    #[arg(long, value_parser = Target::parse)]
    pub new: Target,
    /// AppSync events, one per line (an object, or an array for a batch).
    #[arg(long)]
    pub events: Option<PathBuf>,
    /// Write the events used to this file (e.g. the generated ones, to replay elsewhere).
    #[arg(long)]
    pub write_events: Option<PathBuf>,
    /// A setting of the old local target (KEY=VALUE, repeatable).
    #[arg(long = "old-setting", value_parser = crate::parse_setting)]
    pub old_settings: Vec<(String, String)>,
    /// A setting of the new local target (KEY=VALUE, repeatable).
    #[arg(long = "new-setting", value_parser = crate::parse_setting)]
    pub new_settings: Vec<(String, String)>,
    /// Where the differing pairs go (JSON Lines; written only when some differ).
    #[arg(long, default_value = "parity-diff.jsonl")]
    pub diff: PathBuf,
    /// No progress bar (it is drawn only on a terminal anyway).
    #[arg(long)]
    pub quiet: bool,
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

/// Runs the comparison `args` ask for: local targets start from `local_env`;
/// without `--events`, `default_events` (or an error saying `--events` is needed).
/// Exit status 0 when parity is shown, 1 when not, 2 when it cannot compare.
pub async fn main(
    args: Args,
    local_env: Vec<(String, String)>,
    default_events: Option<Vec<Value>>,
) -> ExitCode {
    match compare(args, local_env, default_events).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("parity: {e}");
            ExitCode::from(2)
        }
    }
}

async fn compare(
    args: Args,
    local_env: Vec<(String, String)>,
    default_events: Option<Vec<Value>>,
) -> Result<bool, String> {
    let events = match (&args.events, default_events) {
        (Some(path), _) => crate::read_events(path)?,
        (None, Some(events)) => events,
        (None, None) => return Err("--events FILE is required".to_owned()),
    };
    if let Some(path) = &args.write_events {
        crate::write_events(path, &events)?;
    }
    let env = Env::from_process();
    let options = Options {
        events,
        old: with_settings(args.old, args.old_settings, "old")?,
        new: with_settings(args.new, args.new_settings, "new")?,
        local_env,
        diff_file: args.diff,
        progress: !args.quiet,
        aws: AwsSettings::from_env(&env).map_err(|e| e.to_string())?,
        lambda_endpoint: env
            .string("AWS_ENDPOINT_URL_LAMBDA")
            .map_err(|e| e.to_string())?,
    };
    let summary = crate::run(options).await?;
    println!("{summary}");
    Ok(summary.passed())
}
