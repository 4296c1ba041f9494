//! `portcullis call`: one tool of one component, run in the real sandbox without a server —
//! what a plugin author uses by hand and in tests.
//!
//! Owns: the configuration such a run uses (one tenant serving the component, its settings,
//! stub downstream services), the stub services (a loopback HTTP server answering canned
//! responses and recording what it was asked), and one MCP session over an in-process pipe
//! (initialize, logging at `debug`, the call). The call goes through the same handlers,
//! scope checks, schema checks and egress rules as a served one. Must not: listen anywhere
//! but the stubs' loopback port, or start the gateway itself (the caller does, from
//! [`configuration`]).

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;

use anyhow::{Context as _, bail};
use bytes::Bytes;
use parking_lot::Mutex;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};

use crate::auth::Principal;
use crate::config::{Config, ConfigError, Identity};
use crate::mcp::TenantContext;

/// The protocol revision the session speaks.
const PROTOCOL_VERSION: &str = "2025-11-25";

/// A canned answer for one downstream service: `NAME=STATUS:BODY`, `NAME=BODY` (200), or
/// `NAME=@FILE` (200, the file's bytes).
#[derive(Debug, Clone, PartialEq)]
pub struct Stub {
    /// The service name plugins pass to `downstream.fetch`.
    pub service: String,
    /// Only requests with this method (`GET`), if set.
    pub method: Option<String>,
    /// Only requests to this path (without the query unless it has one), if set.
    pub path: Option<String>,
    /// The HTTP status every request gets.
    pub status: u16,
    /// The body every request gets.
    pub body: Bytes,
}

impl FromStr for Stub {
    type Err = String;

    /// `NAME[ METHOD][ /PATH]=STATUS:BODY`, `...=BODY` or `...=@FILE`: `notes=[]`, or
    /// `notes GET /notes=[...]` and `notes POST /notes=201:{...}` for one service.
    fn from_str(spec: &str) -> Result<Self, String> {
        let (route, answer) = spec.split_once('=').ok_or_else(|| {
            format!("`{spec}`: expected NAME[ METHOD][ /PATH]=STATUS:BODY, ...=BODY or ...=@FILE")
        })?;
        let mut words = route.split_whitespace();
        let service = words.next().unwrap_or_default();
        let (mut method, mut path) = (None, None);
        for word in words {
            if word.starts_with('/') && path.is_none() {
                path = Some(word.to_string());
            } else if method.is_none()
                && path.is_none()
                && word.bytes().all(|b| b.is_ascii_alphabetic())
            {
                method = Some(word.to_ascii_uppercase());
            } else {
                return Err(format!(
                    "`{route}`: expected NAME, then optionally a METHOD and a /PATH"
                ));
            }
        }
        if service.is_empty()
            || !service
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(format!("`{service}` is not a service name"));
        }
        let (status, body) = match answer.split_once(':') {
            Some((code, body)) if code.len() == 3 && code.bytes().all(|b| b.is_ascii_digit()) => {
                let status: u16 = code
                    .parse()
                    .map_err(|_| format!("`{code}`: not a status"))?;
                if !(100..=599).contains(&status) {
                    return Err(format!("`{code}` is not an HTTP status"));
                }
                (status, body)
            }
            _ => (200, answer),
        };
        let body = match body.strip_prefix('@') {
            Some(file) => std::fs::read(file)
                .map_err(|e| format!("reading {file}: {e}"))?
                .into(),
            None => Bytes::copy_from_slice(body.as_bytes()),
        };
        Ok(Self {
            service: service.into(),
            method,
            path,
            status,
            body,
        })
    }
}

/// The stub for a request: the most specific that matches (method and path, then path, then
/// method, then the service's catch-all).
fn answer_for<'s>(stubs: &'s [Stub], service: &str, method: &str, path: &str) -> Option<&'s Stub> {
    let bare = path.split('?').next().unwrap_or(path);
    stubs
        .iter()
        .filter(|s| s.service == service)
        .filter(|s| s.method.as_deref().is_none_or(|m| m == method))
        .filter(|s| {
            s.path
                .as_deref()
                .is_none_or(|p| p == path || (!p.contains('?') && p == bare))
        })
        .max_by_key(|s| (s.path.is_some(), s.method.is_some()))
}

/// The stub services, served on a loopback port for as long as this value lives.
pub struct StubServer {
    base: String,
    requests: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl StubServer {
    /// Serve `stubs` on 127.0.0.1 (an ephemeral port): service `S` is `{base}/S`.
    pub async fn start(stubs: &[Stub]) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let base = format!("http://{}", listener.local_addr()?);
        let requests: Arc<Mutex<Vec<String>>> = Arc::default();
        let answers: Arc<Vec<Stub>> = Arc::new(stubs.to_vec());
        let seen = requests.clone();
        let app = axum::Router::new().fallback(move |req: axum::extract::Request| {
            let answers = answers.clone();
            let seen = seen.clone();
            async move {
                let path = req.uri().path();
                let (service, rest) = path
                    .trim_start_matches('/')
                    .split_once('/')
                    .map_or((path.trim_start_matches('/'), ""), |(s, r)| (s, r));
                let query = req
                    .uri()
                    .query()
                    .map(|q| format!("?{q}"))
                    .unwrap_or_default();
                seen.lock()
                    .push(format!("{service}: {} /{rest}{query}", req.method()));
                let (method, with_query) = (req.method().as_str(), format!("/{rest}{query}"));
                match answer_for(&answers, service, method, &with_query) {
                    Some(stub) => (
                        http::StatusCode::from_u16(stub.status).unwrap_or(http::StatusCode::OK),
                        stub.body.clone(),
                    ),
                    None => (http::StatusCode::NOT_FOUND, Bytes::new()),
                }
            }
        });
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.ok();
        });
        Ok(Self {
            base,
            requests,
            task,
        })
    }

    /// Where service `S` is served: `{base}/S`.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// The requests the stubs answered, as `service: METHOD /path?query`.
    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().clone()
    }
}

impl Drop for StubServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What to run and as whom (the command line's options).
#[derive(Debug, Clone)]
pub struct Plan {
    /// The tenant the call is routed to.
    pub tenant: String,
    /// The caller.
    pub identity: Identity,
    /// The plugin's `config` values.
    pub settings: Vec<(String, String)>,
    /// `[sandbox] memory_mb`-style limit for the plugin, if set.
    pub memory_mb: Option<usize>,
}

/// The configuration of a run of `plugin`: one tenant serving it with `plan`'s settings,
/// authentication off (the identity is `plan`'s, applied by [`call`]), and each stub as a
/// granted service. Telemetry stays off; compiled artifacts go to the default cache.
pub fn configuration(
    plugin: &Path,
    plan: &Plan,
    stubs: &[Stub],
    stub_base: &str,
) -> Result<Config, ConfigError> {
    let stem = plugin
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let services: Vec<Value> = stubs
        .iter()
        .filter({
            let mut seen = std::collections::BTreeSet::new();
            move |s| seen.insert(s.service.clone())
        })
        .map(|s| json!({"name": s.service, "base_url": format!("{stub_base}/{}", s.service)}))
        .collect();
    let mut settings = json!({
        "config": plan.settings.iter().map(|(k, v)| (k.clone(), json!(v))).collect::<serde_json::Map<_, _>>(),
        "services": stubs
            .iter()
            .map(|s| s.service.clone())
            .collect::<std::collections::BTreeSet<_>>(),
    });
    if let Some(mb) = plan.memory_mb {
        settings["memory_mb"] = json!(mb);
    }
    let document = json!({
        // Off: the caller is the plan's identity (also what the "authentication is off"
        // warning names).
        "auth": {"mode": "none", "anonymous": {
            "subject": plan.identity.subject,
            "scopes": plan.identity.scopes,
        }},
        "sandbox": {"watch": false},
        "stdio": {"tenant": plan.tenant},
        "tenant": [{
            "id": plan.tenant,
            "plugins": [plugin.display().to_string()],
            "service": services,
            "plugin": {stem: settings},
        }],
    });
    let text = toml::to_string(&document).expect("a JSON object is a TOML document");
    let here = std::env::current_dir().unwrap_or_else(|_| ".".into());
    Config::parse(&text, Path::new("<portcullis call>"), &here)
}

/// What the call produced, as the client saw it.
#[derive(Debug)]
pub struct Transcript {
    /// The `tools/call` result (`content`, `structuredContent`, `isError`), or the JSON-RPC
    /// error the gateway answered instead (unknown tool, missing scope).
    pub outcome: Result<Value, Value>,
    /// The `notifications/message` params the plugin's logs became.
    pub logs: Vec<Value>,
    /// The `notifications/progress` params the plugin's progress reports became.
    pub progress: Vec<Value>,
}

/// Call `tool` with `arguments` on `tenant` as `plan.identity`, through one MCP session on an
/// in-process pipe.
pub async fn call(
    tenant: Arc<TenantContext>,
    plan: &Plan,
    tool: &str,
    arguments: Value,
) -> anyhow::Result<Transcript> {
    let principal = Principal::from_identity(tenant.plugins.tenant.clone(), &plan.identity);
    let (ours, theirs) = tokio::io::duplex(1 << 20);
    let (their_read, their_write) = tokio::io::split(theirs);
    let server = tokio::spawn(crate::mcp::serve_pipe(
        tenant,
        principal,
        (their_read, their_write),
    ));
    let (read, mut write) = tokio::io::split(ours);
    let mut lines = BufReader::new(read).lines();
    let requests = [
        json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": PROTOCOL_VERSION,
            "capabilities": {},
            "clientInfo": {"name": "portcullis-call", "version": env!("CARGO_PKG_VERSION")},
        }}),
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
        json!({"jsonrpc": "2.0", "id": 2, "method": "logging/setLevel", "params": {"level": "debug"}}),
        json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": tool, "arguments": arguments, "_meta": {"progressToken": 1}}}),
    ];
    for request in &requests {
        write.write_all(format!("{request}\n").as_bytes()).await?;
    }
    write.flush().await?;
    let mut logs = Vec::new();
    let mut progress = Vec::new();
    let outcome = loop {
        let Some(line) = lines.next_line().await? else {
            bail!("the session ended before the call was answered");
        };
        let message: Value = serde_json::from_str(&line).context("the gateway sent non-JSON")?;
        if message["method"] == "notifications/message" {
            logs.push(message["params"].clone());
            continue;
        }
        if message["method"] == "notifications/progress" {
            progress.push(message["params"].clone());
            continue;
        }
        if message["id"] != 3 {
            if let Some(error) = message.get("error") {
                bail!("the session was refused: {error}");
            }
            continue;
        }
        break match message.get("error") {
            Some(error) => Err(error.clone()),
            None => Ok(message["result"].clone()),
        };
    };
    drop(write);
    drop(lines);
    server.abort();
    Ok(Transcript {
        outcome,
        logs,
        progress,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stubs_by_method_and_path_answer_the_most_specific_request() {
        let stubs: Vec<Stub> = [
            "notes=404:",
            "notes GET /notes=[]",
            "notes POST /notes=201:{}",
            "notes /notes/1=one",
        ]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
        let body = |method: &str, path: &str| {
            answer_for(&stubs, "notes", method, path).map(|s| (s.status, s.body.clone()))
        };
        assert_eq!(body("GET", "/notes"), Some((200, "[]".into())));
        assert_eq!(body("GET", "/notes?limit=5"), Some((200, "[]".into())));
        assert_eq!(body("POST", "/notes"), Some((201, "{}".into())));
        assert_eq!(body("DELETE", "/notes/1"), Some((200, "one".into())));
        assert_eq!(
            body("GET", "/other"),
            Some((404, "".into())),
            "the catch-all"
        );
        assert!(answer_for(&stubs, "docs", "GET", "/").is_none());
        assert!("notes GET POST=x".parse::<Stub>().is_err());
    }

    #[test]
    fn stubs_parse_status_body_and_files() {
        let s: Stub = "docs=404:no such page".parse().unwrap();
        assert_eq!(
            (s.service.as_str(), s.status, &s.body[..]),
            ("docs", 404, &b"no such page"[..])
        );
        let s: Stub = "docs=a:b".parse().unwrap();
        assert_eq!(
            (s.status, &s.body[..]),
            (200, &b"a:b"[..]),
            "not a status: all body"
        );
        let s: Stub = "docs=".parse().unwrap();
        assert_eq!((s.status, s.body.len()), (200, 0));
        assert!("docs".parse::<Stub>().is_err());
        assert!("=x".parse::<Stub>().is_err());
        assert!("a/b=x".parse::<Stub>().is_err());
        assert!("docs=999:x".parse::<Stub>().is_err());
        assert!(
            "docs=@/no/such/file"
                .parse::<Stub>()
                .unwrap_err()
                .contains("/no/such/file")
        );
    }
}
