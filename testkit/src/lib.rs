//! Real protocol peers and test support for tests and local runs:
//!
//! * [`tds`]: a TDS (SQL Server wire protocol) server over fixture data, with
//!   statement recording, connection counting and fault injection;
//! * [`dynamo`]: moto (a DynamoDB-API server) behind a fault-injecting proxy;
//! * [`faults`]: the seeded trigger behind every injected fault;
//! * [`fixtures`]: the demo data (`fixtures/demo.json`);
//! * [`scoring`]: a stand-in for the external scoring API, with request counting per
//!   second and fault injection;
//! * [`sqs`]: SQS events for the assessment processor (the demo's, generated ones);
//! * [`http`]: serving an axum app on loopback until dropped;
//! * [`lambda_api`], [`function`]: a function binary run as Lambda runs it (the
//!   `local-lambda` crate's, which `parity` uses too);
//! * [`lambda_service`]: Lambda's `Invoke` (onto such binaries) and CodeDeploy's hook status, stood in;
//! * [`services`]: the peers above started together, and the settings that point a function at them;
//! * [`secrets`]: Secrets Manager secrets in the local moto, created and rotated;
//! * [`queues`]: SQS queues in the local moto (the processor's dead-letter queue);
//! * [`legacy`]: the legacy component's fixtures (the mock's settings, rows, its counters);
//! * [`appsync`]: AppSync direct-resolver events (single and batched) and caller identities;
//! * [`procfs`]: memory, descriptors and child processes from `/proc`;
//! * [`xray`]: an X-Ray daemon stand-in receiving the functions' segment documents.
//!
//! One place for test support: the tests of both functions, the playground,
//! the soak and the fuzz targets use these, and nothing here depends on either function.

pub mod appsync;
pub mod dynamo;
pub mod faults;
pub mod fixtures;
pub mod http;
pub mod lambda_service;
pub mod legacy;
pub mod procfs;
pub mod queues;
pub mod scoring;
pub mod secrets;
pub mod services;
pub mod sqs;
pub mod tds;
pub mod xray;

pub use local_lambda::function;
pub use local_lambda::loopback;
pub use local_lambda::runtime_api as lambda_api;

/// A budget for calls made outside an invocation: generous, so that what a
/// test sees is the call's own limits.
pub fn budget() -> assessments_common::budget::Budget {
    assessments_common::budget::Budget::after(std::time::Duration::from_secs(60))
}

/// A binary of the workspace, as `cargo build` left it beside this test's own
/// (`target/<profile>/<name>`): how a crate's tests run another package's
/// binary (Cargo gives `CARGO_BIN_EXE_<name>` for a package's own only).
/// Panics, saying how to build it, when it is not there.
pub fn built_binary(name: &str) -> String {
    let exe = std::env::current_exe().expect("the test binary's path");
    // target/<profile>/deps/<test>: the binaries are in target/<profile>.
    let dir = exe.parent().and_then(std::path::Path::parent);
    let path = dir.map(|d| d.join(name));
    match path {
        Some(path) if path.is_file() => path.to_string_lossy().into_owned(),
        _ => panic!(
            "no {name} beside this test's target directory: `cargo build --workspace` \
             (scripts/test does) builds it"
        ),
    }
}

/// How long a test waits for a condition before it fails: generous, since a
/// loaded machine is slow, not wrong.
pub const PATIENCE: std::time::Duration = std::time::Duration::from_secs(60);

/// Waits until `condition` holds, checking it every few milliseconds, up to
/// [`PATIENCE`]; panics naming `what` if it never does. How a test waits for
/// something to happen (never a sleep of a guessed length).
pub async fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    wait_for(what, || std::future::ready(condition())).await;
}

/// [`wait_until`] with a condition that has to wait for its answer itself
/// (an HTTP call, a process's output).
pub async fn wait_for<F: std::future::Future<Output = bool>>(
    what: &str,
    mut condition: impl FnMut() -> F,
) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !condition().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not within {PATIENCE:?}"
        );
        // The polling interval, not a guess at how long anything takes.
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}
