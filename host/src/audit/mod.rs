//! The audit record (#33): one typed event per decision the gateway makes about a request,
//! in a file nobody can quietly edit.
//!
//! Owns: the events ([`What`]: a request's end at the front — who, how authenticated, what
//! refused it —, a protocol request's end — the decision and what decided it, the plugin, its
//! version, the duration, the outcome —, a downstream call, a reload, a task's change), their
//! common fields (time, tenant, trace id), and handing them to the sinks ([`Audit`]: the
//! hash-chained file, stdout). Never a token, a proof or a secret: callers are named by
//! issuer, subject and client; argument values only where the operator opts in. Must not:
//! decide anything, or block the request path (a sink that falls behind drops, and records
//! that it did).

pub mod chain;
pub mod file;

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
        /// The HTTP status the front answered with, or 0 when the protocol layer answered.
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
    },
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

/// Where events go: the file, stdout, both, or nowhere (then recording costs nothing).
#[derive(Debug, Clone, Default)]
pub struct Audit {
    file: Option<Arc<file::FileSink>>,
    stdout: bool,
}

impl Audit {
    /// No sinks.
    pub fn off() -> Self {
        Self::default()
    }

    /// The sinks `[audit]` configures (the file's checkpoint key from its environment
    /// variable): an error names what is missing.
    pub fn from_config(config: &crate::config::Config) -> Result<Self, String> {
        let a = &config.audit;
        let file = match &a.file {
            None => None,
            Some(path) => {
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
                Some(
                    file::FileSink::open(settings)
                        .map_err(|e| format!("audit.file: {}: {e}", path.display()))?,
                )
            }
        };
        Ok(Self::new(file, a.stdout))
    }

    /// Events to `file` and, with `stdout`, to standard output as well.
    pub fn new(file: Option<file::FileSink>, stdout: bool) -> Self {
        Self {
            file: file.map(Arc::new),
            stdout,
        }
    }

    /// Whether anything is recorded.
    pub fn on(&self) -> bool {
        self.file.is_some() || self.stdout
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
        if self.stdout {
            println!("{}", Value::Object(fields.clone()));
        }
        if let Some(file) = &self.file {
            file.write(fields);
        }
    }

    /// End the file with its final checkpoint.
    pub fn stop(&self) {
        if let Some(file) = &self.file {
            file.stop(std::time::Duration::from_secs(5));
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
