//! `parity` on the playground's stack and data: the test stack started on
//! 127.0.0.1, local targets run with its settings, and, without `--events`,
//! events over its demo data (every student read by an admin, by its own
//! school's teacher, refused to the other's; date ranges; a missing student;
//! invalid arguments; batches). The arguments are `parity`'s (docs/cutover.md).
//!
//! ```sh
//! cargo build --bin assessments-resolver --bin local-parity
//! target/debug/local-parity --old local --new local
//! target/debug/local-parity --old local --new local --new-setting LEGACY_CONFIG=fail_every=4
//! ```

use std::process::ExitCode;

use clap::Parser;
use testkit::services::{LocalServices, ServicesOptions};

#[tokio::main]
async fn main() -> ExitCode {
    devstack::init_local_tracing("warn");
    let args = parity::cli::Args::parse();
    let stack = match LocalServices::start(ServicesOptions::default()).await {
        Ok(stack) => stack,
        Err(e) => {
            eprintln!("local-parity: the local stack did not start: {e}");
            return ExitCode::from(2);
        }
    };
    let events = testkit::appsync::playground_events();
    parity::cli::main(args, stack.env().to_vec(), Some(events)).await
}
