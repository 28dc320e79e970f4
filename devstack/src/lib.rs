//! The local playground and the stack it runs on, shared with the tests:
//!
//! * [`stack`]: the TDS server, moto and the mocked shim on 127.0.0.1, and the
//!   resolver's `Deps` built from them;
//! * [`gateway`]: GraphQL requests executed the way AppSync calls a direct
//!   Lambda resolver;
//! * [`server`]: the HTTP endpoints and the query console.

pub mod gateway;
pub mod server;
pub mod stack;

/// `schema.graphql`, the API's one source of truth.
pub const SCHEMA_SDL: &str = include_str!("../../schema.graphql");
