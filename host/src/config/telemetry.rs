//! `[telemetry]`: log lines and OpenTelemetry export.

use std::collections::BTreeMap;

use serde::Deserialize;

/// `[telemetry]`: log lines and OpenTelemetry export. Unset keys fall back to the standard
/// `OTEL_*` environment variables; export is off unless an endpoint is set in either place.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    /// `false` turns export off even when `OTEL_EXPORTER_OTLP_ENDPOINT` is set.
    pub enabled: Option<bool>,
    /// OTLP/HTTP base URL, e.g. `http://127.0.0.1:4318`; `/v1/traces` and `/v1/metrics` are
    /// appended. Default: `OTEL_EXPORTER_OTLP_ENDPOINT` (and the per-signal variables).
    pub endpoint: Option<String>,
    /// `"http/protobuf"` (default) or `"http/json"`. Default: `OTEL_EXPORTER_OTLP_PROTOCOL`.
    pub protocol: Option<String>,
    /// Headers sent with every export (added to `OTEL_EXPORTER_OTLP_HEADERS`).
    pub headers: BTreeMap<String, String>,
    /// Headers whose values are read from environment variables (API keys): name → variable.
    pub headers_env: BTreeMap<String, String>,
    /// `service.name`. Default: `OTEL_SERVICE_NAME`, else `portcullis`.
    pub service_name: Option<String>,
    /// Fraction of new traces to sample (0.0–1.0); a caller's sampling decision is followed.
    /// Default: `OTEL_TRACES_SAMPLER`/`OTEL_TRACES_SAMPLER_ARG`, else every trace.
    pub sample_ratio: Option<f64>,
    /// Export metrics as well as traces. Default true.
    pub metrics: bool,
    /// How often metrics are exported, in milliseconds. Default:
    /// `OTEL_METRIC_EXPORT_INTERVAL`, else 60000.
    pub metrics_interval_ms: Option<u64>,
    /// Extra resource attributes (e.g. `deployment.environment.name`), added to
    /// `OTEL_RESOURCE_ATTRIBUTES`.
    pub resource: BTreeMap<String, String>,
    /// Log lines on stderr: `"text"` (default) or `"json"`.
    pub log_format: LogFormat,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            enabled: None,
            endpoint: None,
            protocol: None,
            headers: BTreeMap::new(),
            headers_env: BTreeMap::new(),
            service_name: None,
            sample_ratio: None,
            metrics: true,
            metrics_interval_ms: None,
            resource: BTreeMap::new(),
            log_format: LogFormat::Text,
        }
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}
