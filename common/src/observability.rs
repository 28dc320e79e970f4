//! Logs and metrics, generic: JSON logs through tracing (CloudWatch parses
//! them), and the CloudWatch Embedded Metric Format (EMF) document each
//! function prints once per invocation about what it did (its own report type).

use std::time::Duration;

use serde_json::{Value, json};

use crate::config::{ConfigError, Env};

/// Whether and under which function name the EMF lines are printed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricsSettings {
    /// `METRICS_EMF`: print one EMF line per invocation (default true).
    pub emit: bool,
    /// `AWS_LAMBDA_FUNCTION_NAME`, the metrics dimension.
    pub function_name: String,
}

impl MetricsSettings {
    pub fn from_env(env: &Env, default_name: &str) -> Result<Self, ConfigError> {
        let emit = match env.string("METRICS_EMF")?.as_deref() {
            None | Some("true" | "1" | "on") => true,
            Some("false" | "0" | "off") => false,
            Some(_) => {
                return Err(ConfigError::Invalid {
                    name: "METRICS_EMF",
                    reason: "expected true or false".to_owned(),
                });
            }
        };
        Ok(MetricsSettings {
            emit,
            function_name: env
                .string("AWS_LAMBDA_FUNCTION_NAME")?
                .unwrap_or_else(|| default_name.to_owned()),
        })
    }

    /// Prints the EMF documents `build(function_name, now_ms)` makes, one
    /// line each, when enabled. Lambda sends stdout, line by line, to CloudWatch Logs.
    pub fn print<D: IntoIterator<Item = Value>>(&self, build: impl FnOnce(&str, i64) -> D) {
        if self.emit {
            let documents = build(&self.function_name, chrono::Utc::now().timestamp_millis());
            for document in documents {
                println!("{document}");
            }
        }
    }
}

/// A metric's value and CloudWatch unit.
pub type Metric = (&'static str, &'static str, f64);

/// One EMF document: `metrics` declared under `namespace` with `dimensions`
/// (sets of property names; `FunctionName` is set here, any other dimension
/// must be among `properties`), plus `properties` (searchable, not metrics).
/// The format: <https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html>.
pub fn emf_document(
    namespace: &str,
    dimensions: &[&[&str]],
    function_name: &str,
    timestamp_ms: i64,
    metrics: &[Metric],
    properties: serde_json::Map<String, Value>,
) -> Value {
    let mut doc = properties;
    doc.insert(
        "_aws".to_owned(),
        json!({
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{
                "Namespace": namespace,
                "Dimensions": dimensions,
                "Metrics": metrics.iter().map(|(name, unit, _)| json!({"Name": name, "Unit": unit})).collect::<Vec<_>>(),
            }],
        }),
    );
    doc.insert("FunctionName".to_owned(), json!(function_name));
    for (name, _, value) in metrics {
        // Whole numbers print as integers (counts read naturally in the logs).
        let value = if value.fract() == 0.0 && value.abs() < 9.0e15 {
            json!(*value as i64)
        } else {
            json!(value)
        };
        doc.insert((*name).to_owned(), value);
    }
    Value::Object(doc)
}

/// JSON logs to stdout, level from `RUST_LOG` (default `info`); and X-Ray
/// subsegments when `AWS_XRAY_DAEMON_ADDRESS` is set ([`crate::xray`]).
/// Each has its own filter, so the logs' level never enables the tracing
/// spans, nor the other way round.
pub fn init_tracing() {
    use tracing_subscriber::Layer;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt::layer()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_span_list(false)
        .with_target(false)
        .with_writer(std::io::stdout)
        .with_filter(filter);
    tracing_subscriber::registry()
        .with(logs)
        .with(crate::xray::layer_from_env())
        .init();
}

/// Milliseconds with microsecond precision.
pub fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_emf_document_declares_its_metrics_under_the_function_dimension() {
        let mut properties = serde_json::Map::new();
        properties.insert("RequestId".to_owned(), json!("req-1"));
        let doc = emf_document(
            "Namespace",
            &[&["FunctionName"]],
            "fn",
            1_700_000_000_000,
            &[("Items", "Count", 3.0), ("DurationMs", "Milliseconds", 1.5)],
            properties,
        );
        assert_eq!(
            doc["_aws"]["CloudWatchMetrics"][0]["Namespace"],
            "Namespace"
        );
        assert_eq!(
            doc["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            json!([["FunctionName"]])
        );
        assert_eq!(doc["FunctionName"], "fn");
        assert_eq!(doc["Items"], json!(3));
        assert_eq!(doc["DurationMs"], json!(1.5));
        assert_eq!(doc["RequestId"], "req-1");
    }
}
