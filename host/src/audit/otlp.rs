//! The audit record as OpenTelemetry log records (`[audit] otlp = true`), exported where the
//! traces go, each in the trace of the request it records.
//!
//! Owns: naming each event's record (`portcullis.audit.<event>`). Must not: build the
//! exporter (`telemetry` does) or change an event.

use serde_json::{Map, Value};

use crate::telemetry::LogExport;

/// Events as log records.
#[derive(Debug)]
pub(super) struct OtlpSink(LogExport);

impl OtlpSink {
    pub(super) fn new(logs: LogExport) -> Self {
        Self(logs)
    }
}

/// The record name of an event (a fixed set: the exporter takes static names).
fn name(event: &Map<String, Value>) -> &'static str {
    match event.get("event").and_then(Value::as_str) {
        Some("request") => "portcullis.audit.request",
        Some("call") => "portcullis.audit.call",
        Some("downstream") => "portcullis.audit.downstream",
        Some("task") => "portcullis.audit.task",
        Some("reload") => "portcullis.audit.reload",
        _ => "portcullis.audit",
    }
}

impl super::Sink for OtlpSink {
    fn write(&self, event: &Map<String, Value>) {
        let trace_id = event.get("trace_id").and_then(Value::as_str);
        self.0.emit(name(event), event, trace_id);
    }

    fn stop(&self, bound: std::time::Duration) {
        self.0.stop(bound);
    }
}
