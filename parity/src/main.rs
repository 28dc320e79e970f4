//! Replays AppSync events against the running service and the candidate and
//! compares the answers item by item (docs/cutover.md).
//!
//! ```sh
//! parity --events recorded.jsonl --old lambda:OLD_FUNCTION --new lambda:STACK-resolver:live
//! parity --events recorded.jsonl --old local:./old-bootstrap --new local   # with this shell's settings
//! ```

use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();
    // Local targets run with this program's environment (the operator's settings).
    let local_env = std::env::vars().collect();
    parity::cli::main(parity::cli::Args::parse(), local_env, None).await
}
