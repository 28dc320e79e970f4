//! Logs and metrics, generic: JSON logs through tracing (CloudWatch parses
//! them), and the CloudWatch Embedded Metric Format (EMF) document each
//! function prints once per invocation about what it did (its own report type).

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;

use crate::config::{ConfigError, Env};

/// Whether and under which function name the EMF lines are printed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricsSettings {
    /// `METRICS_EMF`: print one EMF line per invocation (default true).
    pub emit: bool,
    /// `AWS_LAMBDA_FUNCTION_NAME`, the metrics dimension.
    pub function_name: String,
    /// `AWS_LAMBDA_FUNCTION_VERSION` (`$LATEST` when unset): the second
    /// dimension set's `Version`, so a canary's figures read apart from the
    /// version it replaces.
    pub function_version: String,
}

/// The dimension sets of a function's metrics: by function, and by function and version.
pub const FUNCTION_DIMENSIONS: &[&[&str]] = &[&["FunctionName"], &["FunctionName", "Version"]];

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
            function_version: env
                .string("AWS_LAMBDA_FUNCTION_VERSION")?
                .unwrap_or_else(|| "$LATEST".to_owned()),
        })
    }

    /// Prints the EMF documents `build(function, now_ms)` makes, one
    /// line each, when enabled. Lambda sends stdout, line by line, to
    /// CloudWatch Logs. The lines are serialized into one buffer and written
    /// at once (`println!` of each went through `core::fmt`, line by line).
    pub fn print<'s, D, I>(&'s self, build: impl FnOnce(FunctionId<'s>, i64) -> I)
    where
        D: Serialize,
        I: IntoIterator<Item = D>,
    {
        if !self.emit {
            return;
        }
        let function = FunctionId {
            name: &self.function_name,
            version: &self.function_version,
        };
        let documents = build(function, chrono::Utc::now().timestamp_millis());
        let mut out = Vec::with_capacity(2048);
        for document in documents {
            // Our own types: string keys, finite numbers; cannot fail.
            if serde_json::to_writer(&mut out, &document).is_ok() {
                out.push(b'\n');
            }
        }
        let _ = std::io::Write::write_all(&mut std::io::stdout().lock(), &out);
    }
}

/// The function the metrics are about: the `FunctionName` and `Version` properties.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FunctionId<'a> {
    pub name: &'a str,
    pub version: &'a str,
}

/// A metric's value and CloudWatch unit.
pub type Metric = (&'static str, &'static str, f64);

/// A function's metrics, each with its CloudWatch unit and what it means:
/// what the runbook documents and the template's alarms use.
pub type MetricTable = [(&'static str, &'static str, &'static str)];

/// `values` with their units from `table`, the one place a metric's unit is
/// written. A name missing from the table (a bug the reports' tests catch)
/// goes out with CloudWatch's unit `None`.
pub fn with_units(table: &MetricTable, values: &[(&'static str, f64)]) -> Vec<Metric> {
    let unit = |name: &str| {
        let found = table.iter().find(|(n, _, _)| *n == name);
        debug_assert!(found.is_some(), "metric {name} is not in its table");
        found.map_or("None", |(_, unit, _)| *unit)
    };
    values
        .iter()
        .map(|&(name, value)| (name, unit(name), value))
        .collect()
}

/// One EMF document: `metrics` declared under `namespace` with `dimensions`
/// (sets of property names; `FunctionName` and `Version` are set here, any
/// other dimension must be among `properties`), plus `properties` (a struct of searchable
/// fields, not metrics). Serialized straight into the log line, with no
/// `serde_json::Value` in between (building one cost ~50 k instructions per invocation).
/// The format: <https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html>.
#[derive(Debug, Clone, Serialize)]
pub struct EmfDocument<'a, P: Serialize> {
    #[serde(rename = "_aws")]
    aws: Directive<'a>,
    #[serde(rename = "FunctionName")]
    function_name: &'a str,
    #[serde(rename = "Version")]
    version: &'a str,
    #[serde(flatten)]
    properties: P,
    #[serde(flatten)]
    metrics: MetricValues,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
struct Directive<'a> {
    timestamp: i64,
    cloud_watch_metrics: [MetricDirective<'a>; 1],
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
struct MetricDirective<'a> {
    namespace: &'a str,
    dimensions: &'a [&'a [&'a str]],
    metrics: MetricDeclarations,
}

/// `[{"Name": ..., "Unit": ...}, ...]`
#[derive(Debug, Clone)]
struct MetricDeclarations(Arc<[Metric]>);

impl Serialize for MetricDeclarations {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        #[serde(rename_all = "PascalCase")]
        struct Declaration<'m> {
            name: &'m str,
            unit: &'m str,
        }
        serializer.collect_seq(
            self.0
                .iter()
                .map(|(name, unit, _)| Declaration { name, unit }),
        )
    }
}

/// `"Name": value` for each metric: whole numbers as integers.
#[derive(Debug, Clone)]
struct MetricValues(Arc<[Metric]>);

impl Serialize for MetricValues {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let metrics = &self.0;
        let mut map = serializer.serialize_map(Some(metrics.len()))?;
        for (name, _, value) in metrics.iter() {
            // Counts as integers (9e15 < 2^53: exact).
            if value.fract() == 0.0 && value.abs() < 9.0e15 {
                map.serialize_entry(name, &(*value as i64))?;
            } else {
                map.serialize_entry(name, value)?;
            }
        }
        map.end()
    }
}

impl<'a, P: Serialize> EmfDocument<'a, P> {
    pub fn new(
        namespace: &'a str,
        dimensions: &'a [&'a [&'a str]],
        function: FunctionId<'a>,
        timestamp_ms: i64,
        metrics: Vec<Metric>,
        properties: P,
    ) -> Self {
        let metrics: Arc<[Metric]> = metrics.into();
        EmfDocument {
            aws: Directive {
                timestamp: timestamp_ms,
                cloud_watch_metrics: [MetricDirective {
                    namespace,
                    dimensions,
                    metrics: MetricDeclarations(Arc::clone(&metrics)),
                }],
            },
            function_name: function.name,
            version: function.version,
            properties,
            metrics: MetricValues(metrics),
        }
    }

    /// The document as a JSON value, for tests that inspect it.
    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
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
    use serde_json::json;

    use super::*;

    #[test]
    fn an_emf_document_declares_its_metrics_under_the_function_dimension() {
        #[derive(Serialize)]
        struct Properties {
            #[serde(rename = "RequestId")]
            request_id: &'static str,
        }
        let doc = EmfDocument::new(
            "Namespace",
            FUNCTION_DIMENSIONS,
            FunctionId {
                name: "fn",
                version: "7",
            },
            1_700_000_000_000,
            vec![("Items", "Count", 3.0), ("DurationMs", "Milliseconds", 1.5)],
            Properties {
                request_id: "req-1",
            },
        )
        .to_value();
        assert_eq!(
            doc["_aws"]["CloudWatchMetrics"][0]["Namespace"],
            "Namespace"
        );
        assert_eq!(
            doc["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            json!([["FunctionName"], ["FunctionName", "Version"]])
        );
        assert_eq!(doc["FunctionName"], "fn");
        assert_eq!(doc["Version"], "7");
        assert_eq!(doc["Items"], json!(3));
        assert_eq!(doc["DurationMs"], json!(1.5));
        assert_eq!(doc["RequestId"], "req-1");
        assert_eq!(doc["_aws"]["Timestamp"], json!(1_700_000_000_000_i64));
        assert_eq!(
            doc["_aws"]["CloudWatchMetrics"][0]["Metrics"],
            json!([{"Name": "Items", "Unit": "Count"}, {"Name": "DurationMs", "Unit": "Milliseconds"}])
        );
    }
}
