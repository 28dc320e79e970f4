//! The local playground and the stack it runs on, shared with the tests:
//!
//! * [`stack`]: the TDS server, moto, the mocked shim and the scoring API
//!   stand-in on 127.0.0.1, and both functions' dependencies built from them;
//! * [`gateway`]: GraphQL requests executed the way AppSync calls a direct
//!   Lambda resolver;
//! * [`server`]: the HTTP endpoints;
//! * [`console`]: the query console's files (GraphiQL from npm, our page and panel);
//! * [`import_graph`]: the workspace's module import graph, checked for cycles.

pub mod console;
pub mod gateway;
pub mod import_graph;
pub mod server;
pub mod stack;

/// `schema.graphql`, the API's one source of truth.
pub const SCHEMA_SDL: &str = include_str!("../../schema.graphql");

/// Human-readable logs on stderr for the local commands, at `RUST_LOG` or `default`.
pub fn init_local_tracing(default: &str) {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| default.into()),
        )
        .with_writer(std::io::stderr)
        .init();
}
