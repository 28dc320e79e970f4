//! What both Lambda functions (the resolver in `src/`, the assessment
//! processor in `processor/`) share, and nothing either one alone needs:
//!
//! * [`config`]: reading settings from the environment;
//! * [`aws`]: the AWS SDK's configuration, built once, and secrets from Secrets Manager;
//! * [`dynamo`]: DynamoDB failures, classified once for every table;
//! * [`budget`]: the invocation's time budget that bounds every wait;
//! * [`observability`]: JSON logs and the EMF document builder (each function
//!   describes its own invocations with it);
//! * [`rules`]: the identifier rules every function applies to its input;
//! * [`lambda_init`]: init failures reported to the Lambda Runtime API;
//! * [`xray`]: X-Ray subsegments for every dependency call, sent to the daemon.

pub mod aws;
pub mod budget;
pub mod config;
pub mod dynamo;
pub mod lambda_init;
pub mod observability;
pub mod rules;
pub mod xray;
