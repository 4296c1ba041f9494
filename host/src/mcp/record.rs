//! The record of one MCP request: its span, its `mcp.server.operation.duration` sample, and
//! its audit event (#33).
//!
//! Owns: how a handled request appears in traces, metrics and the audit record
//! ([`RequestRecord`], [`Outcome`]): who asked, what was decided and what decided a refusal,
//! the plugin, the duration. Must not: decide outcomes (the handlers do) or open HTTP spans
//! (`transport` does).

use std::time::Instant;

use super::exchange::Exchange;
use super::refusal::Refused;
use super::tenant::TenantContext;
use crate::audit::{self, Audit};
use crate::telemetry::{self, McpRequest, keys};

/// How a request ended, as recorded on its span and metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Outcome {
    /// Answered with a result.
    Ok,
    /// A tool ran and reported an error (`isError`).
    ToolError,
    /// The arguments broke the tool's `inputSchema`; the plugin was not called.
    InvalidArguments,
    /// Answered with an `InputRequiredResult` (2026-07-28).
    InputRequired,
    /// The item does not exist (or is hidden from this caller).
    Unknown,
    /// The caller may not use the item.
    Denied,
    /// Answered with a protocol error.
    Error,
    /// Answered with a `CreateTaskResult`: the call goes on as an MCP Task.
    Task,
}

impl Outcome {
    /// `Ok` for a result, `Error` for a protocol error.
    pub(super) fn of<T, E>(result: &Result<T, E>) -> Self {
        if result.is_ok() {
            Self::Ok
        } else {
            Self::Error
        }
    }

    /// The `portcullis.outcome` value.
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::ToolError => "tool_error",
            Self::InvalidArguments => "invalid_arguments",
            Self::InputRequired => "input_required",
            Self::Unknown => "unknown",
            Self::Denied => "denied",
            Self::Error => "error",
            Self::Task => "task",
        }
    }
}

/// One request being handled: started when the handler begins, finished once.
pub(super) struct RequestRecord {
    /// The `mcp.request` span.
    pub(super) span: tracing::Span,
    started: Instant,
    tenant: std::sync::Arc<str>,
    /// `mcp.method.name`.
    pub(super) method: &'static str,
    /// The tool, prompt or resource targeted.
    pub(super) target: String,
    /// Who asked, as the audit record names them.
    caller: audit::Caller,
    audit: Audit,
}

impl RequestRecord {
    /// Start recording `method` on `target`, in the span the HTTP front opened or, on stdio,
    /// a root span continuing `_meta.traceparent`.
    pub(super) fn start(
        tenant: &TenantContext,
        ex: &Exchange,
        method: &'static str,
        target: Option<&str>,
    ) -> Self {
        let span = ex.span.clone().unwrap_or_else(|| {
            let request_id = Some(ex.id.to_string());
            telemetry::mcp_span(
                &McpRequest {
                    tenant: tenant.id(),
                    method,
                    target,
                    request_id,
                    ..Default::default()
                },
                Some(&ex.meta.0.0),
                true,
            )
        });
        Self {
            span,
            started: Instant::now(),
            tenant: tenant.id().clone(),
            method,
            target: target.unwrap_or_default().to_string(),
            caller: audit::Caller::of(&ex.who),
            audit: tenant.audit.clone(),
        }
    }

    /// Record a refused request: its outcome, and what refused it.
    pub(super) fn refused(&self, plugin: Option<&str>, refused: &Refused) {
        self.end(plugin, refused.outcome(), Some(refused.by()));
    }

    /// Record how the request ended: on its span and in the metrics. A tool call is also
    /// counted per plugin when `plugin`, the tool's owner, is known.
    pub(super) fn finish(&self, plugin: Option<&str>, outcome: Outcome) {
        self.end(plugin, outcome, None);
    }

    fn end(&self, plugin: Option<&str>, outcome: Outcome, by: Option<&str>) {
        if self.audit.on() {
            let denied = matches!(outcome, Outcome::Denied | Outcome::Unknown);
            self.audit.record(
                &self.tenant,
                telemetry::trace_id(&self.span),
                audit::What::Call {
                    method: self.method.to_string(),
                    target: self.target.clone(),
                    caller: self.caller.clone(),
                    decision: if denied { "deny" } else { "allow" },
                    by: by.map(str::to_string),
                    plugin: plugin.map(str::to_string),
                    version: None,
                    duration_ms: self.started.elapsed().as_secs_f64() * 1000.0,
                    outcome: outcome.as_str().to_string(),
                },
            );
        }
        if outcome != Outcome::Ok {
            telemetry::fail(&self.span, outcome.as_str());
        }
        if !telemetry::metrics::recording() {
            return;
        }
        let m = telemetry::metrics::get();
        let mut attrs = vec![
            (keys::METHOD, self.method),
            (keys::OUTCOME, outcome.as_str()),
        ];
        if self.method == "tools/call" {
            // A catalog name, or `unknown`: never a caller-chosen string (unbounded series).
            let tool = match outcome {
                Outcome::Unknown => "unknown",
                _ => self.target.as_str(),
            };
            attrs.push((keys::TOOL, tool));
            if let Some(plugin) = plugin {
                let mut with_plugin = attrs.clone();
                with_plugin.push((keys::PLUGIN, plugin));
                m.tool_calls
                    .add(1, &telemetry::metrics::attrs(&self.tenant, &with_plugin));
            }
        }
        m.mcp_duration.record(
            self.started.elapsed().as_secs_f64(),
            &telemetry::metrics::attrs(&self.tenant, &attrs),
        );
    }
}
