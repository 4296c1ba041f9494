//! The audit record (#33): one typed event per decision the gateway makes about a request,
//! in a file nobody can quietly edit.
//!
//! Owns: the events ([`What`]: a request's end at the front — who, how authenticated, what
//! refused it —, a protocol request's end — the decision and what decided it, the plugin, its
//! version, the duration, the outcome —, a downstream call, a reload, a task's change), their
//! common fields (time, tenant, trace id), and handing them to the sinks ([`Audit`]: the
//! hash-chained file, stdout, OTLP logs — each a [`Sink`]). Never a token, a proof or a secret: callers are named by
//! issuer, subject and client; argument values only where the operator opts in. Must not:
//! decide anything, or block the request path (a sink that falls behind drops, and records
//! that it did).

pub mod chain;
pub mod file;
mod otlp;

use std::collections::HashSet;
use std::sync::Arc;

use serde::Serialize;
use serde_json::{Map, Value};

/// Who made a request, as the record names them.
#[derive(Debug, Clone, Serialize)]
pub struct Caller {
    /// The validating issuer (`(configured)` for a configured identity).
    pub issuer: String,
    /// `sub`, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// The OAuth client, if known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
}

impl Caller {
    /// How the record names `who`: issuer, subject, client — never a token.
    pub fn of(who: &crate::auth::Principal) -> Self {
        Self {
            issuer: who.issuer.as_deref().unwrap_or("(configured)").to_string(),
            subject: who.subject.clone(),
            client_id: who.client_id.clone(),
        }
    }
}

/// What happened.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum What {
    /// A request ended at the HTTP front, answered there or handed on.
    Request {
        /// The JSON-RPC method, if the body was read.
        method: Option<String>,
        /// The caller, if authenticated.
        caller: Option<Caller>,
        /// `ok`, `refused` (with `by`), or `none` (auth off).
        authentication: &'static str,
        /// The HTTP status the request was answered with.
        status: u16,
        /// What refused it: `token:<reason>`, `scope`, `approval:<type>`, `quota`, …
        #[serde(skip_serializing_if = "Option::is_none")]
        by: Option<String>,
    },
    /// A protocol request ended.
    Call {
        /// The method.
        method: String,
        /// The tool, prompt or resource.
        target: String,
        /// The caller.
        caller: Caller,
        /// `allow` or `deny`.
        decision: &'static str,
        /// What decided a denial: `scope`, `claim`, `policy:<id>`, `no-permit`, …
        #[serde(skip_serializing_if = "Option::is_none")]
        by: Option<String>,
        /// The type of the person's approval the call carried and spent (#32), if any.
        #[serde(skip_serializing_if = "Option::is_none")]
        approval: Option<String>,
        /// The plugin that served it, and its version (the component's SHA-256, 12 hex).
        #[serde(skip_serializing_if = "Option::is_none")]
        plugin: Option<String>,
        /// The plugin's version.
        #[serde(skip_serializing_if = "Option::is_none")]
        version: Option<String>,
        /// How long it took.
        duration_ms: f64,
        /// `ok`, `tool_error`, `invalid_arguments`, `task`, `error`, …
        outcome: String,
        /// Why the plugin failed, when it did: `timeout`, `memory`, `trap`, `busy`, …
        #[serde(skip_serializing_if = "Option::is_none")]
        fault: Option<&'static str>,
        /// The task the call became (`outcome` = `task`).
        #[serde(skip_serializing_if = "Option::is_none")]
        task: Option<String>,
        /// The call's arguments, where the operator opted in for the tool (size-capped).
        #[serde(skip_serializing_if = "Option::is_none")]
        arguments: Option<Value>,
    },
    /// A request a plugin sent to a downstream service through the gateway.
    Downstream {
        /// The plugin that sent it.
        plugin: String,
        /// The request's place among the call's downstream requests.
        #[serde(flatten)]
        call: DownstreamCall,
        /// Whose call it was.
        caller: Caller,
    },
    /// A task ended (completed, failed, cancelled).
    Task {
        /// The task.
        task: String,
        /// The tool it ran.
        tool: String,
        /// Its owner.
        caller: Caller,
        /// `completed`, `failed`, `cancelled`.
        status: String,
        /// From creation to end.
        duration_ms: f64,
        /// Why the plugin failed, when it did.
        #[serde(skip_serializing_if = "Option::is_none")]
        fault: Option<&'static str>,
    },
    /// Plugins or policies were reloaded.
    Reload {
        /// `plugins` or `policies`.
        what: &'static str,
        /// What serves now: each plugin with its version, or the policies' ids.
        serving: Vec<String>,
        /// What failed to load (the previous version keeps serving).
        #[serde(skip_serializing_if = "Vec::is_empty")]
        failed: Vec<String>,
    },
}

/// One downstream request, as the record names it: never its URL's query, headers or body.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct DownstreamCall {
    /// The service (a configured name, or `unknown`).
    pub service: String,
    /// The credential the gateway attached: `none`, `static`, `token-exchange`, …
    pub credential: &'static str,
    /// Where the token came from: `hit` (this replica's cache), `shared` (a concurrent
    /// request's), `replica` (another replica's), `issued`; absent without a token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache: Option<&'static str>,
    /// The HTTP status, or why there was none (`blocked`, `timeout`, `credential`, …).
    pub status: String,
    /// Whether a 401 was retried with a fresh token.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub retried: bool,
}

/// What one request's plugin calls did below the protocol layer (downstream requests, the
/// sandbox's verdict), gathered for its record. Bounded: a plugin that sends more requests
/// than [`Trail::MAX`] has the rest counted, not listed.
#[derive(Debug, Default)]
pub struct Trail {
    inner: parking_lot::Mutex<TrailInner>,
    /// Whether the request's own event has been recorded (a task's end waits for it, so the
    /// record never shows a task ending before the call that created it).
    recorded: std::sync::atomic::AtomicBool,
    recorded_now: tokio::sync::Notify,
}

#[derive(Debug, Default)]
struct TrailInner {
    downstream: Vec<DownstreamCall>,
    more: u64,
    fault: Option<&'static str>,
}

impl Trail {
    /// The most downstream requests one record lists.
    pub const MAX: usize = 64;

    /// A downstream request was sent (or refused).
    pub fn downstream(&self, call: DownstreamCall) {
        let mut t = self.inner.lock();
        if t.downstream.len() < Self::MAX {
            t.downstream.push(call);
        } else {
            t.more += 1;
        }
    }

    /// The sandbox stopped the plugin (the first cause is kept).
    pub fn fault(&self, cause: &'static str) {
        self.inner.lock().fault.get_or_insert(cause);
    }

    /// Take what was gathered so far: the downstream requests, how many more were not
    /// listed, and the fault.
    pub fn take(&self) -> (Vec<DownstreamCall>, u64, Option<&'static str>) {
        let mut t = self.inner.lock();
        (
            std::mem::take(&mut t.downstream),
            std::mem::take(&mut t.more),
            t.fault.take(),
        )
    }

    /// The request's own event is recorded.
    pub fn recorded(&self) {
        self.recorded
            .store(true, std::sync::atomic::Ordering::Release);
        self.recorded_now.notify_waiters();
    }

    /// Wait (at most `bound`) until the request's own event is recorded.
    pub async fn after_recorded(&self, bound: std::time::Duration) {
        let wait = async {
            loop {
                let notified = self.recorded_now.notified();
                if self.recorded.load(std::sync::atomic::Ordering::Acquire) {
                    return;
                }
                notified.await;
            }
        };
        let _ = tokio::time::timeout(bound, wait).await;
    }
}

/// One event with its common fields.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    /// When (RFC 3339, UTC).
    pub at: String,
    /// The tenant.
    pub tenant: String,
    /// The trace the request belongs to (hex), when traced.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    /// What happened.
    #[serde(flatten)]
    pub what: What,
}

/// The time now, as the record writes it.
pub fn now() -> String {
    crate::tasks::rfc3339(std::time::SystemTime::now())
}

/// Where events go: each sink gets every event, in order.
pub trait Sink: Send + Sync + std::fmt::Debug {
    /// Take one event (never blocking the request path for long).
    fn write(&self, event: &Map<String, Value>);
    /// Flush and close, within `bound`.
    fn stop(&self, bound: std::time::Duration);
}

/// Standard output, one JSON line per event.
#[derive(Debug)]
struct Stdout;

impl Sink for Stdout {
    fn write(&self, event: &Map<String, Value>) {
        println!("{}", Value::Object(event.clone()));
    }

    fn stop(&self, _bound: std::time::Duration) {}
}

/// The record of one gateway (and, per tenant, what it keeps of calls): where events go —
/// the file, stdout, OTLP, any of them or none (then recording costs nothing).
#[derive(Debug, Clone, Default)]
pub struct Audit {
    sinks: Arc<[Arc<dyn Sink>]>,
    /// Tools whose arguments this tenant records.
    arguments: Arc<HashSet<String>>,
    max_argument_bytes: usize,
}

impl Audit {
    /// No sinks.
    pub fn off() -> Self {
        Self::default()
    }

    /// The sinks `[audit]` configures (the file's checkpoint key from its environment
    /// variable; OTLP through `[telemetry]`'s exporter): an error names what is missing.
    pub fn from_config(config: &crate::config::Config) -> Result<Self, String> {
        let a = &config.audit;
        let mut sinks: Vec<Arc<dyn Sink>> = Vec::new();
        if let Some(path) = &a.file {
            let key = crate::config::secret_from_env(&a.key_env)
                .map_err(|e| format!("audit.key_env: {e}"))?;
            let path = config.resolve_path(path);
            let settings = file::FileSettings {
                path: path.clone(),
                key: key.into_bytes(),
                checkpoint_lines: a.checkpoint_lines.max(1),
                checkpoint_every: std::time::Duration::from_secs(a.checkpoint_secs.max(1)),
                max_bytes: a.max_bytes,
                keep: a.keep,
                queue: 65_536,
            };
            sinks
                .push(Arc::new(file::FileSink::open(settings).map_err(|e| {
                    format!("audit.file: {}: {e}", path.display())
                })?));
        }
        if a.stdout {
            sinks.push(Arc::new(Stdout));
        }
        if a.otlp {
            let logs = crate::telemetry::LogExport::start(Some(&config.telemetry), "portcullis.audit")
                .map_err(|e| format!("audit.otlp: {e:#}"))?
                .ok_or("audit.otlp: [telemetry] exports nowhere (set its endpoint or OTEL_EXPORTER_OTLP_ENDPOINT)")?;
            sinks.push(Arc::new(otlp::OtlpSink::new(logs)));
        }
        Ok(Self {
            sinks: sinks.into(),
            arguments: Arc::default(),
            max_argument_bytes: a.max_argument_bytes,
        })
    }

    /// Events to `sinks`.
    pub fn new(sinks: Vec<Arc<dyn Sink>>) -> Self {
        Self {
            sinks: sinks.into(),
            ..Self::default()
        }
    }

    /// This record for `tenant`: the same sinks, and the tools whose arguments it records.
    pub fn for_tenant(&self, tenant: &crate::config::TenantConfig) -> Self {
        Self {
            arguments: Arc::new(tenant.audit.arguments.iter().cloned().collect()),
            ..self.clone()
        }
    }

    /// Whether anything is recorded.
    pub fn on(&self) -> bool {
        !self.sinks.is_empty()
    }

    /// `arguments` of a call of `tool` as the record keeps them: `None` unless the tenant
    /// asked for this tool's; cut to `max_argument_bytes` of JSON (then `{"truncated": the
    /// first bytes, "bytes": the whole size}`).
    pub fn arguments(&self, _tenant: &str, tool: &str, arguments: &Value) -> Option<Value> {
        if !self.on() || !self.arguments.contains(tool) {
            return None;
        }
        let text = arguments.to_string();
        if text.len() <= self.max_argument_bytes {
            return Some(arguments.clone());
        }
        let mut cut = self.max_argument_bytes;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        Some(serde_json::json!({"truncated": &text[..cut], "bytes": text.len()}))
    }

    /// Record `what` for `tenant`.
    pub fn record(&self, tenant: &str, trace_id: Option<String>, what: What) {
        if !self.on() {
            return;
        }
        let event = Event {
            at: now(),
            tenant: tenant.to_string(),
            trace_id,
            what,
        };
        let Ok(Value::Object(fields)) = serde_json::to_value(&event) else {
            return;
        };
        for sink in self.sinks.iter() {
            sink.write(&fields);
        }
    }

    /// Flush every sink (the file ends with its final checkpoint).
    pub fn stop(&self) {
        for sink in self.sinks.iter() {
            sink.stop(std::time::Duration::from_secs(5));
        }
    }
}

/// The fields of an event as JSON (for tests and other sinks).
pub fn fields(event: &Event) -> Map<String, Value> {
    match serde_json::to_value(event) {
        Ok(Value::Object(m)) => m,
        _ => Map::new(),
    }
}
