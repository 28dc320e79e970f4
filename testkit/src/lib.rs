//! Real protocol peers for tests and local runs, shared by the integration
//! tests and the local playground:
//!
//! * [`tds`]: a TDS (SQL Server wire protocol) server over fixture data, with
//!   statement recording, connection counting and fault injection;
//! * [`dynamo`]: moto (a DynamoDB-API server) behind a fault-injecting proxy;
//! * [`faults`]: the seeded trigger behind every injected fault;
//! * [`fixtures`]: the demo data (`fixtures/demo.json`);
//! * [`lambda_api`]: a local Lambda Runtime API, to run a function binary as in Lambda.

pub mod dynamo;
pub mod faults;
pub mod fixtures;
pub mod lambda_api;
pub mod tds;
