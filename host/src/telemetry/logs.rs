//! OpenTelemetry log records over OTLP, through the same exporter settings as the traces
//! (`[telemetry]` and `OTEL_*`: endpoint, protocol, headers, resource), to `/v1/logs`.
//!
//! Owns: the logger provider (batched, flushed at stop) and turning one JSON event into a
//! log record — the event's fields as attributes, the whole event as the body, the trace it
//! belongs to as the record's trace context. Must not: decide what is logged (the audit
//! record does) or hold a secret (the events it is given carry none).

use anyhow::Context as _;
use opentelemetry::logs::{AnyValue, LogRecord as _, Logger as _, LoggerProvider as _, Severity};
use opentelemetry::{Key, SpanId, TraceFlags, TraceId};
use opentelemetry_sdk::logs::{SdkLogger, SdkLoggerProvider};
use serde_json::{Map, Value};

use super::Export;
use crate::config::TelemetryConfig;

/// Where log records go; flushed and closed by [`LogExport::stop`].
pub struct LogExport {
    provider: SdkLoggerProvider,
    logger: SdkLogger,
}

impl std::fmt::Debug for LogExport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogExport").finish_non_exhaustive()
    }
}

impl LogExport {
    /// Export under the instrumentation scope `scope`, where `config` (or the `OTEL_*`
    /// variables) exports traces; `None` when nothing is exported.
    pub fn start(
        config: Option<&TelemetryConfig>,
        scope: &'static str,
    ) -> anyhow::Result<Option<Self>> {
        let default = TelemetryConfig::default();
        let Some(export) = Export::resolve(config.unwrap_or(&default))? else {
            return Ok(None);
        };
        let exporter = export
            .http(
                opentelemetry_otlp::LogExporter::builder().with_http(),
                "/v1/logs",
            )
            .build()
            .context("the OTLP log exporter")?;
        let provider = SdkLoggerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(export.resource())
            .build();
        let logger = provider.logger(scope);
        Ok(Some(Self { provider, logger }))
    }

    /// One record: `event` (a JSON object) as attributes and, whole, as the body; named
    /// `name`; in the trace `trace_id` (32 hex) when given.
    pub fn emit(&self, name: &'static str, event: &Map<String, Value>, trace_id: Option<&str>) {
        let mut record = self.logger.create_log_record();
        record.set_event_name(name);
        record.set_severity_number(Severity::Info);
        record.set_severity_text("INFO");
        record.set_timestamp(std::time::SystemTime::now());
        record.set_body(AnyValue::String(
            Value::Object(event.clone()).to_string().into(),
        ));
        record.add_attributes(event.iter().map(|(k, v)| (Key::new(k.clone()), any(v, 0))));
        if let Some(id) = trace_id.and_then(|t| TraceId::from_hex(t).ok()) {
            record.set_trace_context(id, SpanId::INVALID, Some(TraceFlags::SAMPLED));
        }
        self.logger.emit(record);
    }

    /// Flush what is buffered and stop, within `bound`.
    pub fn stop(&self, bound: std::time::Duration) {
        if let Err(e) = self.provider.shutdown_with_timeout(bound) {
            tracing::warn!("flushing log records at exit failed: {e}");
        }
    }
}

/// `value` as an OpenTelemetry value (nesting cut at 8 levels, as text below that).
fn any(value: &Value, depth: usize) -> AnyValue {
    match value {
        Value::Null => AnyValue::String("".into()),
        Value::Bool(b) => AnyValue::Boolean(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => AnyValue::Int(i),
            None => AnyValue::Double(n.as_f64().unwrap_or_default()),
        },
        Value::String(s) => AnyValue::String(s.clone().into()),
        _ if depth >= 8 => AnyValue::String(value.to_string().into()),
        Value::Array(items) => {
            AnyValue::ListAny(Box::new(items.iter().map(|v| any(v, depth + 1)).collect()))
        }
        Value::Object(fields) => AnyValue::Map(Box::new(
            fields
                .iter()
                .map(|(k, v)| (Key::new(k.clone()), any(v, depth + 1)))
                .collect(),
        )),
    }
}
