//! Real protocol peers for tests and local runs, shared by the integration
//! tests and the local playground:
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
//! * [`lambda_api`]: a local Lambda Runtime API, to run a function binary as in Lambda.

pub mod dynamo;
pub mod faults;
pub mod fixtures;
pub mod http;
pub mod lambda_api;
pub mod scoring;
pub mod sqs;
pub mod tds;
