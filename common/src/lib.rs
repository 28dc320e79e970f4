//! What every Lambda function of the workspace (the resolver in `src/`, the
//! assessment processor in `processor/`, the PreTraffic hook in
//! `deploy-hook/`) shares, and nothing one alone needs:
//!
//! * [`lambda`]: the entry skeleton each binary's `main` runs (logs, X-Ray,
//!   the runtime, init failures reported to the Runtime API, SIGTERM);
//! * [`config`]: reading settings from the environment;
//! * [`aws`]: the AWS SDK's configuration, built once, and secrets from Secrets Manager;
//! * [`dynamo`]: DynamoDB failures, classified once for every table;
//! * [`budget`]: the invocation's time budget that bounds every wait;
//! * [`observability`]: JSON logs and the EMF document builder (each function
//!   describes its own invocations with it);
//! * [`rules`]: the identifier rules every function applies to its input;
//! * [`appsync`]: AppSync direct-resolver events as AppSync sends them (the
//!   hook's smoke events, the tests', the playground's);
//! * [`xray`]: X-Ray subsegments for every dependency call, sent to the daemon.

#![forbid(unsafe_code)]

pub mod appsync;
pub mod aws;
pub mod budget;
pub mod config;
pub mod dynamo;
pub mod lambda;
pub mod observability;
pub mod rules;
pub mod xray;
