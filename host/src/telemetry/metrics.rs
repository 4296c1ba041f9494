//! The gateway's metric instruments.
//!
//! Created on first use from the global meter provider (installed by
//! [`Telemetry::init`](super::Telemetry::init) when export is on; a no-op otherwise, so
//! recording costs next to nothing without a collector). Attribute values are bounded sets:
//! tenant, plugin and tool names come from configuration and loaded plugins, outcomes and
//! reasons are fixed words. Never a subject, a token or a message.

use std::sync::OnceLock;

use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Histogram};

use super::keys::TENANT;

/// Every instrument the gateway records.
#[derive(Debug)]
pub struct Metrics {
    /// `http.server.request.duration` (s): every request to an MCP endpoint.
    pub http_duration: Histogram<f64>,
    /// `mcp.server.operation.duration` (s): every MCP request, by method and outcome.
    pub mcp_duration: Histogram<f64>,
    /// `portcullis.tool.calls`: tool calls by tenant, plugin, tool and outcome.
    pub tool_calls: Counter<u64>,
    /// `portcullis.plugin.call.duration` (s): time inside a plugin instance.
    pub plugin_duration: Histogram<f64>,
    /// `portcullis.sandbox.traps`: plugin calls stopped by the sandbox, by cause.
    pub traps: Counter<u64>,
    /// `portcullis.auth.denials`: requests refused at the edge, by reason.
    pub denials: Counter<u64>,
    /// `portcullis.quota.rejections`: requests refused by a rate limit or concurrency cap.
    pub quota_rejections: Counter<u64>,
    /// `portcullis.plugin.loads`: plugin loads (at start and on reload), by outcome.
    pub loads: Counter<u64>,
    /// `portcullis.downstream.requests`: requests plugins made to downstream services.
    pub downstream: Counter<u64>,
    /// `portcullis.downstream.duration` (s).
    pub downstream_duration: Histogram<f64>,
    /// `portcullis.token.requests`: downstream tokens obtained, by grant and outcome.
    pub tokens: Counter<u64>,
    /// `portcullis.cluster.redis.errors`: Redis commands that failed or timed out, by
    /// operation.
    pub redis_errors: Counter<u64>,
    /// `portcullis.cluster.forwarded`: requests forwarded to the replica holding their
    /// session, by outcome.
    pub forwarded: Counter<u64>,
}

/// The instruments (created on first use).
pub fn get() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(|| {
        let m = opentelemetry::global::meter("portcullis");
        let seconds = |name: &'static str, what: &'static str| {
            m.f64_histogram(name)
                .with_unit("s")
                .with_description(what)
                .with_boundaries(vec![
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                    10.0, 30.0,
                ])
                .build()
        };
        let count = |name: &'static str, what: &'static str| {
            m.u64_counter(name).with_description(what).build()
        };
        Metrics {
            http_duration: seconds(
                "http.server.request.duration",
                "Duration of HTTP requests to MCP endpoints",
            ),
            mcp_duration: seconds("mcp.server.operation.duration", "Duration of MCP requests"),
            tool_calls: count("portcullis.tool.calls", "Tool calls by outcome"),
            plugin_duration: seconds(
                "portcullis.plugin.call.duration",
                "Time spent in one plugin instance",
            ),
            traps: count(
                "portcullis.sandbox.traps",
                "Plugin calls stopped by the sandbox",
            ),
            denials: count(
                "portcullis.auth.denials",
                "Requests refused by authentication or authorization",
            ),
            quota_rejections: count(
                "portcullis.quota.rejections",
                "Requests refused by a rate limit or concurrency cap",
            ),
            loads: count(
                "portcullis.plugin.loads",
                "Plugin loads at start and on reload, by outcome",
            ),
            downstream: count(
                "portcullis.downstream.requests",
                "Requests from plugins to downstream services",
            ),
            downstream_duration: seconds(
                "portcullis.downstream.duration",
                "Duration of downstream requests",
            ),
            tokens: count(
                "portcullis.token.requests",
                "Downstream tokens obtained, by grant and outcome",
            ),
            redis_errors: count(
                "portcullis.cluster.redis.errors",
                "Redis commands that failed or timed out",
            ),
            forwarded: count(
                "portcullis.cluster.forwarded",
                "Requests forwarded to the replica holding their session",
            ),
        }
    })
}

/// Whether a meter provider records what the instruments are given (set once one is
/// installed). Without one every instrument is a no-op, and the hot path builds no attributes.
static RECORDING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// From now on measurements are recorded (a meter provider is installed).
pub(crate) fn start_recording() {
    RECORDING.store(true, std::sync::atomic::Ordering::Relaxed);
}

/// Whether measurements are recorded: callers skip building what only a sample needs.
pub fn recording() -> bool {
    RECORDING.load(std::sync::atomic::Ordering::Relaxed)
}

/// `portcullis.tenant` plus `rest` (nothing at all while no meter provider records).
pub fn attrs(tenant: &str, rest: &[(&'static str, &str)]) -> Vec<KeyValue> {
    if !recording() {
        return Vec::new();
    }
    std::iter::once(KeyValue::new(TENANT, tenant.to_string()))
        .chain(rest.iter().map(|(k, v)| KeyValue::new(*k, v.to_string())))
        .collect()
}

/// `rest` alone, for instruments about the whole gateway rather than one tenant (nothing at
/// all while no meter provider records).
pub fn gateway_attrs(rest: &[(&'static str, &str)]) -> Vec<KeyValue> {
    if !recording() {
        return Vec::new();
    }
    rest.iter()
        .map(|(k, v)| KeyValue::new(*k, v.to_string()))
        .collect()
}
