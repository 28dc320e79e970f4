//! The local playground and the stack it runs on, shared with the tests:
//!
//! * [`stack`]: the TDS server, moto, the mocked shim and the scoring API
//!   stand-in on 127.0.0.1, and both functions' dependencies built from them;
//! * [`gateway`]: GraphQL requests executed the way AppSync calls a direct
//!   Lambda resolver;
//! * [`server`]: the HTTP endpoints;
//! * [`console`]: the query console's files (GraphiQL from npm, our page and panel);
//! * [`import_graph`]: the workspace's module import graph, checked for cycles;
//! * [`layout`]: lines per package, the shipped crates' largest files and functions.

pub mod console;
pub mod gateway;
pub mod import_graph;
pub mod layout;
pub mod server;
pub mod stack;
pub mod tally;

/// `schema.graphql`, the API's one source of truth.
pub const SCHEMA_SDL: &str = include_str!("../../schema.graphql");

/// Human-readable logs on stderr for the local commands, at `RUST_LOG` or `default`.
pub fn init_local_tracing(default: &str) {
    let _ = tracing::dispatcher::set_global_default(local_subscriber(default, None));
}

/// The local commands' logs (stderr, at `RUST_LOG` or `default`) and, with
/// `xray` (an X-Ray daemon's address), the functions' X-Ray subsegments
/// sent there, as the Lambda binaries send them with active tracing.
pub fn local_subscriber(
    default: &str,
    xray: Option<assessments_common::xray::XrayLayer>,
) -> tracing::Dispatch {
    use tracing_subscriber::Layer;
    use tracing_subscriber::layer::SubscriberExt;
    let logs = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| default.into()),
        );
    let xray = xray.map(|layer| layer.with_filter(assessments_common::xray::filter()));
    tracing::Dispatch::new(tracing_subscriber::registry().with(logs).with(xray))
}

/// Registers the system's sans-serif font (Debian's fonts-dejavu-core, or
/// Liberation) for the charts plotters draws (the soak's, the CPU
/// benchmark's); false when there is none, and the charts go unlabelled.
pub fn register_chart_font() -> bool {
    static REGISTERED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *REGISTERED.get_or_init(|| {
        let font = [
            "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
            "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
        ]
        .iter()
        .find_map(|p| std::fs::read(p).ok());
        match font {
            // Registered once per process; the bytes must live as long as it.
            Some(bytes) => plotters::style::register_font(
                "sans-serif",
                plotters::style::FontStyle::Normal,
                Box::leak(bytes.into_boxed_slice()),
            )
            .is_ok(),
            None => false,
        }
    })
}
