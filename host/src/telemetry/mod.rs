//! Traces, metrics and log lines.
//!
//! Owns the process-wide `tracing` subscriber (log lines on stderr, each carrying the trace id
//! of the request it belongs to), OpenTelemetry export over OTLP/HTTP (endpoint, protocol,
//! headers, sampling and resource from `[telemetry]` and the standard `OTEL_*` variables), W3C
//! trace-context propagation (in from `traceparent`/`tracestate` headers and MCP `_meta`, out to
//! downstream services and the authorization server), the spans every layer opens (their names
//! and attributes live here so the span tree is described in one place) and the metric
//! instruments ([`metrics`]). It must not decide anything about requests: layers call in to
//! describe what they did. Nothing here records a token, a secret or a request body; span
//! attributes are names, ids, statuses and durations only.
//!
//! The span tree of one request:
//!
//! ```text
//! http.request (server)            POST /mcp                 ← traceparent header continues here
//! └─ mcp.request                   tools/call notes.add      ← or _meta.traceparent (stdio, or no header)
//!    └─ plugin.call                plugin notes call-tool    outcome, trap cause
//!       └─ downstream.request (client) POST notes-api        status; carries traceparent
//!          └─ oauth.token (client) token_exchange notes-api  cache hit/miss, AS status
//! ```

mod log_line;
mod logs;
pub mod metrics;

pub use logs::LogExport;

pub use log_line::untrusted;

use std::collections::HashMap;
use std::time::Duration;

use anyhow::Context as _;
use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use opentelemetry_sdk::{Resource, metrics::SdkMeterProvider};
use serde_json::Value;
use sha2::{Digest, Sha256};
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::Layer as _;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

use crate::config::{LogFormat, TelemetryConfig};

/// Span and metric attribute keys shared by several layers. (Integer attributes are recorded
/// as `i64`: tracing-opentelemetry exports other integer types as strings.)
pub mod keys {
    /// The tenant a request was routed to.
    pub const TENANT: &str = "portcullis.tenant";
    /// How an operation ended (`ok`, `error`, `denied`, …).
    pub const OUTCOME: &str = "portcullis.outcome";
    /// The plugin that served an operation.
    pub const PLUGIN: &str = "portcullis.plugin";
    /// The downstream service a plugin called.
    pub const SERVICE: &str = "portcullis.service";
    /// The MCP method (OpenTelemetry MCP semantic conventions).
    pub const METHOD: &str = "mcp.method.name";
    /// The tool a `tools/call` names (OpenTelemetry GenAI semantic conventions).
    pub const TOOL: &str = "gen_ai.tool.name";
}

/// The running telemetry pipeline; flushes and stops exporting when dropped.
#[derive(Debug, Default)]
pub struct Telemetry {
    tracer: Option<SdkTracerProvider>,
    meter: Option<SdkMeterProvider>,
}

/// Where and how to export, resolved from `[telemetry]` and the environment. Its headers may
/// hold secrets (`headers_env`): `Debug` shows their names only.
#[derive(Clone, PartialEq)]
struct Export {
    /// Base URL; `None` lets the exporter read `OTEL_EXPORTER_OTLP_*` itself.
    endpoint: Option<String>,
    json: bool,
    headers: HashMap<String, String>,
    sample_ratio: Option<f64>,
    metrics: bool,
    metrics_interval: Option<Duration>,
    service_name: String,
    resource: Vec<(String, String)>,
}

impl std::fmt::Debug for Export {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut names: Vec<&String> = self.headers.keys().collect();
        names.sort();
        f.debug_struct("Export")
            .field("endpoint", &self.endpoint)
            .field("json", &self.json)
            .field("headers (values withheld)", &names)
            .field("sample_ratio", &self.sample_ratio)
            .field("metrics", &self.metrics)
            .field("metrics_interval", &self.metrics_interval)
            .field("service_name", &self.service_name)
            .field("resource", &self.resource)
            .finish()
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

impl Export {
    /// `None` when nothing asks for export: no endpoint in the file or the environment, or
    /// `OTEL_SDK_DISABLED=true`, or `enabled = false`.
    fn resolve(config: &TelemetryConfig) -> anyhow::Result<Option<Self>> {
        let disabled = env("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true"));
        let from_env = [
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        ]
        .iter()
        .any(|v| env(v).is_some());
        if config.enabled == Some(false) || disabled || (config.endpoint.is_none() && !from_env) {
            return Ok(None);
        }
        let protocol = config
            .protocol
            .clone()
            .or_else(|| env("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"))
            .or_else(|| env("OTEL_EXPORTER_OTLP_PROTOCOL"))
            .unwrap_or_else(|| "http/protobuf".into());
        let json = match protocol.as_str() {
            "http/protobuf" => false,
            "http/json" => true,
            other => anyhow::bail!(
                "telemetry.protocol: `{other}` is not supported; use \"http/protobuf\" (port 4318 on \
                 collectors, Jaeger and Tempo) or \"http/json\""
            ),
        };
        let mut headers: HashMap<String, String> = config.headers.clone().into_iter().collect();
        for (name, var) in &config.headers_env {
            let value = crate::config::secret_from_env(var)
                .with_context(|| format!("telemetry.headers_env.{name}"))?;
            headers.insert(name.clone(), value);
        }
        let service_name = config
            .service_name
            .clone()
            .or_else(|| env("OTEL_SERVICE_NAME"))
            .unwrap_or_else(|| "portcullis".into());
        Ok(Some(Self {
            endpoint: config
                .endpoint
                .as_ref()
                .map(|e| e.trim_end_matches('/').to_string()),
            json,
            headers,
            sample_ratio: config.sample_ratio,
            metrics: config.metrics,
            metrics_interval: config.metrics_interval_ms.map(Duration::from_millis),
            service_name,
            resource: config
                .resource
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        }))
    }

    fn protocol(&self) -> opentelemetry_otlp::Protocol {
        if self.json {
            opentelemetry_otlp::Protocol::HttpJson
        } else {
            opentelemetry_otlp::Protocol::HttpBinary
        }
    }

    fn resource(&self) -> Resource {
        Resource::builder()
            .with_service_name(self.service_name.clone())
            .with_attributes(
                self.resource
                    .iter()
                    .map(|(k, v)| opentelemetry::KeyValue::new(k.clone(), v.clone()))
                    .chain([opentelemetry::KeyValue::new(
                        "service.version",
                        env!("CARGO_PKG_VERSION"),
                    )]),
            )
            .build()
    }

    /// Protocol, headers and (when configured) the signal's endpoint on an exporter builder.
    fn http<B: WithExportConfig + WithHttpConfig>(&self, builder: B, signal_path: &str) -> B {
        let builder = builder
            .with_protocol(self.protocol())
            .with_headers(self.headers.clone());
        match &self.endpoint {
            Some(base) => builder.with_endpoint(format!("{base}{signal_path}")),
            None => builder,
        }
    }

    fn tracer(&self) -> anyhow::Result<SdkTracerProvider> {
        let exporter = self
            .http(
                opentelemetry_otlp::SpanExporter::builder().with_http(),
                "/v1/traces",
            )
            .build()
            .context("telemetry: the OTLP span exporter")?;
        let mut builder = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(self.resource());
        if let Some(ratio) = self.sample_ratio {
            builder = builder.with_sampler(Sampler::ParentBased(Box::new(
                Sampler::TraceIdRatioBased(ratio),
            )));
        }
        Ok(builder.build())
    }

    fn meter(&self) -> anyhow::Result<SdkMeterProvider> {
        let exporter = self
            .http(
                opentelemetry_otlp::MetricExporter::builder().with_http(),
                "/v1/metrics",
            )
            .build()
            .context("telemetry: the OTLP metric exporter")?;
        let mut reader = opentelemetry_sdk::metrics::PeriodicReader::builder(exporter);
        if let Some(every) = self.metrics_interval {
            reader = reader.with_interval(every);
        }
        Ok(SdkMeterProvider::builder()
            .with_reader(reader.build())
            .with_resource(self.resource())
            .build())
    }
}

impl Telemetry {
    /// Install the process-wide subscriber: log lines on stderr (filtered by `PORTCULLIS_LOG`
    /// or `RUST_LOG`, default `info`, rmcp's own from `warn`) and, when `config` asks for export, OpenTelemetry spans
    /// and metrics over OTLP. Call once, before the gateway starts, from a Tokio runtime.
    pub fn init(config: Option<&TelemetryConfig>) -> anyhow::Result<Self> {
        Self::init_at(config, "info")
    }

    /// [`Telemetry::init`] whose log lines default to `level` (a one-shot command shows its
    /// own output, and the gateway's only from `warn` up).
    pub fn init_at(config: Option<&TelemetryConfig>, level: &str) -> anyhow::Result<Self> {
        let default = TelemetryConfig::default();
        let config = config.unwrap_or(&default);
        let export = Export::resolve(config)?;
        let filter = tracing_subscriber::EnvFilter::try_from_env("PORTCULLIS_LOG")
            .or_else(|_| tracing_subscriber::EnvFilter::try_from_default_env())
            // rmcp logs every client's whole `initialize` parameters at INFO: only its
            // warnings by default.
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("{level},rmcp=warn")));
        let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
        let fmt = tracing_subscriber::fmt::layer()
            .with_ansi(ansi)
            .with_writer(log_line::OneLinePerEvent { ansi });
        let fmt = match config.log_format {
            LogFormat::Text => fmt.boxed(),
            LogFormat::Json => fmt.json().boxed(),
        }
        .with_filter(filter);
        let mut telemetry = Self::default();
        let otel = match &export {
            Some(export) => {
                opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
                let provider = export.tracer()?;
                let tracer = provider.tracer("portcullis");
                telemetry.tracer = Some(provider);
                if export.metrics {
                    let meter = export.meter()?;
                    opentelemetry::global::set_meter_provider(meter.clone());
                    metrics::start_recording();
                    telemetry.meter = Some(meter);
                }
                // Only the gateway's own spans: dependencies' spans (hyper, h2, reqwest) would
                // bury the request tree.
                let only_ours = tracing_subscriber::filter::Targets::new()
                    .with_target("portcullis", tracing::Level::INFO);
                Some(
                    tracing_opentelemetry::layer()
                        .with_tracer(tracer)
                        .with_filter(only_ours),
                )
            }
            None => None,
        };
        tracing_subscriber::registry()
            .with(fmt)
            .with(otel)
            .try_init()
            .context("installing the log subscriber")?;
        if let Some(e) = &export {
            tracing::info!(
                endpoint = e.endpoint.as_deref().unwrap_or("from OTEL_EXPORTER_OTLP_*"),
                protocol = if e.json { "http/json" } else { "http/protobuf" },
                metrics = e.metrics,
                service = %e.service_name,
                "OpenTelemetry export on"
            );
        }
        Ok(telemetry)
    }

    /// Whether spans are being exported.
    pub fn exporting(&self) -> bool {
        self.tracer.is_some()
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        // Flush what is buffered; a collector that is gone costs at most the export timeout.
        if let Some(t) = self.tracer.take()
            && let Err(e) = t.shutdown()
        {
            tracing::warn!("flushing spans at exit failed: {e}");
        }
        if let Some(m) = self.meter.take()
            && let Err(e) = m.shutdown()
        {
            tracing::warn!("flushing metrics at exit failed: {e}");
        }
    }
}

/// W3C trace context read from a JSON object (MCP `params._meta`).
struct MetaExtractor<'a>(&'a serde_json::Map<String, Value>);

impl Extractor for MetaExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(Value::as_str)
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(String::as_str).collect()
    }
}

fn remote(cx: opentelemetry::Context) -> Option<opentelemetry::Context> {
    cx.span().span_context().is_valid().then_some(cx)
}

/// The remote parent named by `traceparent`/`tracestate` headers, if valid.
pub fn from_headers(headers: &http::HeaderMap) -> Option<opentelemetry::Context> {
    if !headers.contains_key("traceparent") {
        return None;
    }
    remote(TraceContextPropagator::new().extract(&opentelemetry_http::HeaderExtractor(headers)))
}

/// The remote parent named by an MCP request's `params._meta.traceparent`, if valid.
pub fn from_meta(meta: Option<&serde_json::Map<String, Value>>) -> Option<opentelemetry::Context> {
    let meta = meta.filter(|m| m.contains_key("traceparent"))?;
    remote(TraceContextPropagator::new().extract(&MetaExtractor(meta)))
}

/// Write the current span's trace context into outgoing request headers (replacing any the
/// plugin set). Returns false when there is no exported trace to continue.
pub fn inject(headers: &mut http::HeaderMap) -> bool {
    let cx = Span::current().context();
    if !cx.span().span_context().is_valid() {
        return false;
    }
    TraceContextPropagator::new()
        .inject_context(&cx, &mut opentelemetry_http::HeaderInjector(headers));
    true
}

/// The trace id of `span` as 32 hex digits, when it belongs to an exported trace.
pub fn trace_id(span: &Span) -> Option<String> {
    let cx = span.context();
    let sc = cx.span().span_context().clone();
    sc.is_valid().then(|| sc.trace_id().to_string())
}

/// Give `span` a remote parent (when there is one) and record its trace id as the
/// `trace_id` field, so every log line inside it names the trace.
pub fn adopt(span: &Span, parent: Option<opentelemetry::Context>) {
    if let Some(cx) = parent {
        let _ = span.set_parent(cx);
    }
    if let Some(id) = trace_id(span) {
        span.record("trace_id", tracing::field::display(id));
    }
}

/// A session id as it may appear in telemetry: a short hash, since the id is a bearer
/// capability for the session's stream.
pub fn hashed_session(id: &str) -> String {
    hex::encode(&Sha256::digest(id.as_bytes())[..8])
}

/// The server span for one HTTP request to a tenant's MCP endpoint. Its parent is the
/// caller's `traceparent` when the request carries one.
pub fn http_span(
    tenant: &str,
    method: &http::Method,
    path: &str,
    headers: &http::HeaderMap,
) -> Span {
    let known = http_method(method);
    let original = (known == OTHER_METHOD).then(|| truncated(method.as_str(), 32));
    let span = tracing::info_span!(
        "http.request",
        otel.name = %format!("{known} {path}"),
        otel.kind = "server",
        otel.status_code = tracing::field::Empty,
        http.request.method = known,
        http.request.method_original = original,
        http.route = %path,
        url.path = %path,
        http.response.status_code = tracing::field::Empty,
        portcullis.tenant = %tenant,
        trace_id = tracing::field::Empty,
    );
    adopt(&span, from_headers(headers));
    span
}

/// What stands for a method outside [`http_method`]'s set (OTel HTTP semantic conventions).
pub const OTHER_METHOD: &str = "_OTHER";

/// `method` as a metric attribute or span name: one of the RFC 9110 methods (and `PATCH`),
/// else `_OTHER`. A request may carry any token as its method (hyper accepts extension
/// methods of hundreds of KiB); none of them may become a series or a span name.
pub fn http_method(method: &http::Method) -> &'static str {
    use http::Method as M;
    match *method {
        M::GET => "GET",
        M::POST => "POST",
        M::PUT => "PUT",
        M::DELETE => "DELETE",
        M::HEAD => "HEAD",
        M::OPTIONS => "OPTIONS",
        M::PATCH => "PATCH",
        M::TRACE => "TRACE",
        M::CONNECT => "CONNECT",
        _ => OTHER_METHOD,
    }
}

/// Whether the request spans (`http.request`, `mcp.request`, `plugin.call`; all INFO spans
/// of this module) are recorded by anything: when not, callers skip building their inputs.
pub fn spans_enabled() -> bool {
    tracing::span_enabled!(tracing::Level::INFO)
}

/// The span of one MCP request, carried in the request's extensions from the HTTP front to
/// the protocol handler (which runs in another task).
#[derive(Clone, Debug)]
pub struct RequestSpan(pub Span);

/// Describes one MCP request for its span.
#[derive(Debug, Default, Clone)]
pub struct McpRequest<'a> {
    /// The tenant.
    pub tenant: &'a str,
    /// `mcp.method.name`.
    pub method: &'a str,
    /// The tool, prompt or resource the request targets.
    pub target: Option<&'a str>,
    /// The JSON-RPC request id.
    pub request_id: Option<String>,
    /// The session id (recorded hashed).
    pub session: Option<&'a str>,
    /// The protocol revision the client speaks.
    pub protocol_version: Option<&'a str>,
}

/// The span for one MCP request. Under HTTP it is a child of the HTTP span unless the
/// request's `_meta` names another parent; on stdio it is the root (kind server).
pub fn mcp_span(
    req: &McpRequest<'_>,
    meta: Option<&serde_json::Map<String, Value>>,
    server: bool,
) -> Span {
    if !spans_enabled() {
        return Span::none();
    }
    // The method and target come from the request: bounded before they become attributes.
    let method = truncated(req.method, MAX_ATTRIBUTE_CHARS);
    let target = req.target.map(|t| truncated(t, MAX_ATTRIBUTE_CHARS));
    let req = &McpRequest {
        method,
        target,
        ..req.clone()
    };
    let name = match req.target {
        Some(t) => format!("{} {t}", req.method),
        None => req.method.to_string(),
    };
    let is_tool = req.method == "tools/call";
    let span = tracing::info_span!(
        "mcp.request",
        otel.name = %name,
        otel.kind = if server { "server" } else { "internal" },
        otel.status_code = tracing::field::Empty,
        mcp.method.name = %req.method,
        mcp.session.id = req.session.map(hashed_session),
        mcp.protocol.version = req.protocol_version,
        jsonrpc.request.id = req.request_id.as_deref(),
        gen_ai.operation.name = if is_tool { Some("execute_tool") } else { None },
        gen_ai.tool.name = if is_tool { req.target } else { None },
        mcp.target = if is_tool { None } else { req.target },
        portcullis.tenant = %req.tenant,
        portcullis.plugin = tracing::field::Empty,
        portcullis.plugin.version = tracing::field::Empty,
        error.type = tracing::field::Empty,
        rpc.jsonrpc.error_code = tracing::field::Empty,
        trace_id = tracing::field::Empty,
    );
    adopt(&span, from_meta(meta));
    span
}

/// Longest caller-chosen value recorded as a span attribute.
const MAX_ATTRIBUTE_CHARS: usize = 128;

/// `text` cut to at most `max` characters.
pub fn truncated(text: &str, max: usize) -> &str {
    match text.char_indices().nth(max) {
        Some((at, _)) => &text[..at],
        None => text,
    }
}

/// The span around one call into a plugin (one fresh instance).
pub fn plugin_span(
    parent: &Span,
    plugin: &str,
    version: &str,
    export: &str,
    item: Option<&str>,
) -> Span {
    tracing::info_span!(
        parent: parent,
        "plugin.call",
        otel.name = %format!("plugin {plugin} {export}"),
        otel.status_code = tracing::field::Empty,
        portcullis.plugin = %plugin,
        portcullis.plugin.version = %version,
        portcullis.plugin.export = %export,
        portcullis.item = item,
        portcullis.outcome = tracing::field::Empty,
        portcullis.trap.cause = tracing::field::Empty,
        error.type = tracing::field::Empty,
    )
}

/// The client span of one downstream request (a child of the current plugin call).
pub fn downstream_span(service: &str, method: &str, url: &reqwest::Url) -> Span {
    tracing::info_span!(
        "downstream.request",
        otel.name = %format!("{method} {service}"),
        otel.kind = "client",
        otel.status_code = tracing::field::Empty,
        portcullis.service = %service,
        http.request.method = %method,
        server.address = url.host_str(),
        server.port = url.port_or_known_default().map(i64::from),
        url.path = %url.path(),
        http.response.status_code = tracing::field::Empty,
        error.type = tracing::field::Empty,
    )
}

/// The span of obtaining a downstream token (cache lookup and, on a miss, the request to
/// the authorization server).
pub fn token_span(grant: &str, service: &str, audience: &str) -> Span {
    tracing::info_span!(
        "oauth.token",
        otel.name = %format!("{grant} {service}"),
        otel.kind = "client",
        otel.status_code = tracing::field::Empty,
        oauth.grant_type = %grant,
        oauth.audience = %audience,
        portcullis.service = %service,
        portcullis.cache = tracing::field::Empty,
        http.response.status_code = tracing::field::Empty,
        oauth.error = tracing::field::Empty,
        error.type = tracing::field::Empty,
    )
}

/// Mark `span` failed with a short error type (never a message that might carry data).
pub fn fail(span: &Span, error_type: &str) {
    span.record("otel.status_code", "ERROR");
    span.record("error.type", error_type);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_context_is_read_from_headers_and_meta() {
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let mut h = http::HeaderMap::new();
        assert!(from_headers(&h).is_none());
        h.insert("traceparent", tp.parse().unwrap());
        let cx = from_headers(&h).unwrap();
        assert_eq!(
            cx.span().span_context().trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        let meta = serde_json::json!({"traceparent": tp});
        assert!(from_meta(meta.as_object()).is_some());
        let bad = serde_json::json!({"traceparent": "00-0000-bad"});
        assert!(from_meta(bad.as_object()).is_none());
        assert!(from_meta(None).is_none());
    }

    /// #28. Before: `Export` derived `Debug` over its resolved headers, secrets from
    /// `headers_env` included.
    #[test]
    fn an_export_prints_its_header_names_never_their_values() {
        let export = Export {
            endpoint: Some("http://collector:4318".into()),
            json: false,
            headers: [(
                "authorization".to_string(),
                "Bearer otlp-secret-value".to_string(),
            )]
            .into_iter()
            .collect(),
            sample_ratio: None,
            metrics: true,
            metrics_interval: None,
            service_name: "portcullis".into(),
            resource: vec![],
        };
        let printed = format!("{export:?}");
        assert!(printed.contains("authorization"), "{printed}");
        assert!(!printed.contains("otlp-secret-value"), "{printed}");
    }

    #[test]
    fn session_ids_are_hashed() {
        let h = hashed_session("secret-session");
        assert_eq!(h.len(), 16);
        assert!(!h.contains("secret"));
    }
}
