//! Real protocol peers for tests and local runs, shared by the integration
//! tests and the local playground:
//!
//! * [`tds`]: a TDS (SQL Server wire protocol) server over fixture data, with
//!   statement recording, connection counting and fault injection;
//! * [`fixtures`]: the demo data (`fixtures/demo.json`).

pub mod fixtures;
pub mod tds;
