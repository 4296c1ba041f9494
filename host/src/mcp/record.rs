//! The record of one MCP request: its span, its `mcp.server.operation.duration` sample, and
//! its audit event (#33).
//!
//! Owns: how a handled request appears in traces, metrics and the audit record
//! ([`RequestRecord`], [`Outcome`]): who asked, what was decided and what decided a refusal,
//! the plugin, the duration. Must not: decide outcomes (the handlers do) or open HTTP spans
//! (`transport` does).

use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;
use serde_json::Value;

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
    /// The approval the request carried (its type), if any.
    approval: Option<String>,
    audit: Audit,
    /// What the request's plugin calls did below this layer (downstream requests, faults).
    pub(super) trail: Arc<audit::Trail>,
    /// What the handler learned along the way: the plugin's version, the task the call
    /// became, the arguments where the operator wants them recorded.
    noted: Mutex<Noted>,
}

#[derive(Default)]
struct Noted {
    version: Option<String>,
    task: Option<String>,
    arguments: Option<Value>,
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
            approval: tenant
                .audit
                .on()
                .then(|| crate::authz::approval_type(&ex.who))
                .flatten(),
            audit: tenant.audit.clone(),
            trail: Arc::default(),
            noted: Mutex::default(),
        }
    }

    /// The version (12 hex of the component's SHA-256) of the plugin that serves the request.
    pub(super) fn note_version(&self, version: &str) {
        self.noted.lock().version = Some(version.to_string());
    }

    /// The call became task `id`.
    pub(super) fn note_task(&self, id: &str) {
        self.noted.lock().task = Some(id.to_string());
    }

    /// The call's arguments, recorded when the operator asked for them for `tool`
    /// (`[audit] arguments`), cut at the configured size.
    pub(super) fn note_arguments(&self, tool: &str, arguments: &Value) {
        if let Some(recorded) = self.audit.arguments(&self.tenant, tool, arguments) {
            self.noted.lock().arguments = Some(recorded);
        }
    }

    /// What the record needs to write a task's end after this request has ended.
    pub(super) fn for_task(&self) -> TaskRecord {
        TaskRecord {
            tenant: self.tenant.clone(),
            trace_id: telemetry::trace_id(&self.span),
            caller: self.caller.clone(),
            audit: self.audit.clone(),
            trail: self.trail.clone(),
            plugin: None,
            started: Instant::now(),
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
            let trace_id = telemetry::trace_id(&self.span);
            let fault = downstream(
                &self.audit,
                &self.tenant,
                &trace_id,
                plugin,
                &self.caller,
                &self.trail,
            );
            let noted = std::mem::take(&mut *self.noted.lock());
            self.audit.record(
                &self.tenant,
                trace_id,
                audit::What::Call {
                    method: self.method.to_string(),
                    target: self.target.clone(),
                    caller: self.caller.clone(),
                    decision: if denied { "deny" } else { "allow" },
                    by: by.map(str::to_string),
                    approval: self.approval.clone(),
                    plugin: plugin.map(str::to_string),
                    version: noted.version,
                    duration_ms: self.started.elapsed().as_secs_f64() * 1000.0,
                    outcome: outcome.as_str().to_string(),
                    fault,
                    task: noted.task,
                    arguments: noted.arguments,
                },
            );
            self.trail.recorded();
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

/// Record the downstream requests `trail` gathered (one event each, in the order they were
/// sent), and return the fault it holds.
fn downstream(
    audit: &Audit,
    tenant: &str,
    trace_id: &Option<String>,
    plugin: Option<&str>,
    caller: &audit::Caller,
    trail: &audit::Trail,
) -> Option<&'static str> {
    let (calls, more, fault) = trail.take();
    for call in calls {
        audit.record(
            tenant,
            trace_id.clone(),
            audit::What::Downstream {
                plugin: plugin.unwrap_or_default().to_string(),
                call,
                caller: caller.clone(),
            },
        );
    }
    if more > 0 {
        tracing::warn!(
            tenant,
            plugin,
            more,
            "downstream requests past the record's limit were counted, not listed"
        );
    }
    fault
}

/// A task's record: written when the task ends, long after the request that created it.
pub(super) struct TaskRecord {
    tenant: Arc<str>,
    trace_id: Option<String>,
    caller: audit::Caller,
    audit: Audit,
    trail: Arc<audit::Trail>,
    plugin: Option<String>,
    started: Instant,
}

impl TaskRecord {
    /// The plugin that runs the task.
    pub(super) fn of_plugin(mut self, plugin: &str) -> Self {
        self.plugin = Some(plugin.to_string());
        self
    }

    /// Record the task's end: the downstream requests it sent after its request ended, then
    /// its status.
    pub(super) async fn ended(&self, task: &crate::tasks::TaskHandle) {
        if !self.audit.on() {
            return;
        }
        // After the call that created it, in the record too.
        self.trail
            .after_recorded(std::time::Duration::from_secs(5))
            .await;
        let Some(snapshot) = task.snapshot() else {
            return;
        };
        let fault = downstream(
            &self.audit,
            &self.tenant,
            &self.trace_id,
            self.plugin.as_deref(),
            &self.caller,
            &self.trail,
        );
        self.audit.record(
            &self.tenant,
            self.trace_id.clone(),
            audit::What::Task {
                task: snapshot.id,
                tool: snapshot.tool,
                caller: self.caller.clone(),
                status: snapshot.status.as_str().to_string(),
                duration_ms: self.started.elapsed().as_secs_f64() * 1000.0,
                fault,
            },
        );
    }
}
