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
//! * [`lambda_api`]: a local Lambda Runtime API, to run a function binary as in Lambda;
//! * [`function`]: a function binary run as a process against it;
//! * [`lambda_service`]: Lambda's `Invoke` (onto such binaries) and CodeDeploy's hook status, stood in;
//! * [`services`]: the peers above started together, and the settings that point a function at them;
//! * [`secrets`]: Secrets Manager secrets in the local moto, created and rotated;
//! * [`queues`]: SQS queues in the local moto (the processor's dead-letter queue);
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
pub mod function;
pub mod http;
pub mod lambda_api;
pub mod lambda_service;
pub mod procfs;
pub mod queues;
pub mod scoring;
pub mod secrets;
pub mod services;
pub mod sqs;
pub mod tds;
pub mod xray;
