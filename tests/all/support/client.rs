//! A small MCP-over-HTTP client that speaks both eras (2025 sessions, stateless 2026-07-28),
//! and how tests read a response (JSON or SSE).

use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderValue};
use serde_json::{Value, json};

/// A response: status, headers, and the JSON-RPC message carrying the request's answer (from
/// JSON or the last answer on an SSE stream), plus every other message on the stream.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: String,
    pub message: Option<Value>,
    pub others: Vec<Value>,
}

impl Reply {
    pub fn result(&self) -> &Value {
        let m = self
            .message
            .as_ref()
            .unwrap_or_else(|| panic!("no JSON-RPC message in {self:?}"));
        m.get("result")
            .unwrap_or_else(|| panic!("not a result: {m}"))
    }

    pub fn error(&self) -> &Value {
        let m = self
            .message
            .as_ref()
            .unwrap_or_else(|| panic!("no JSON-RPC message in {self:?}"));
        m.get("error")
            .unwrap_or_else(|| panic!("not an error: {m}"))
    }

    /// The text of a tool result's first content block.
    pub fn text(&self) -> String {
        self.result()["content"][0]["text"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    pub fn is_error(&self) -> bool {
        self.result()["isError"].as_bool().unwrap_or(false)
    }

    /// The tool names of a `tools/list` result, in order.
    pub fn tool_names(&self) -> Vec<String> {
        self.result()["tools"]
            .as_array()
            .unwrap_or_else(|| panic!("not a tools/list result: {self:?}"))
            .iter()
            .map(|t| t["name"].as_str().unwrap().to_string())
            .collect()
    }
}

/// A minimal MCP client over HTTP.
#[derive(Clone)]
pub struct Client {
    pub url: String,
    pub http: reqwest::Client,
    pub session: Option<String>,
    pub version: String,
    /// The `Authorization` header value to send, if any.
    pub authorization: Option<String>,
    /// The `Accept` header value to send instead of `application/json, text/event-stream`.
    pub accept: Option<String>,
    next_id: i64,
}

/// An `initialize` request for `version`, declaring `capabilities`.
pub fn initialize_request(version: &str, capabilities: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": version,
        "capabilities": capabilities,
        "clientInfo": {"name": "portcullis-tests", "version": "0"}}})
}

impl Client {
    pub fn new(url: &str) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap();
        Self {
            url: url.into(),
            http,
            session: None,
            version: "2025-11-25".into(),
            authorization: None,
            accept: None,
            next_id: 1,
        }
    }

    /// Initialize a 2025 session at `version`.
    pub async fn initialize(url: &str, version: &str) -> Self {
        Self::initialize_with(url, version, None).await
    }

    /// Initialize a 2025 session at `version`, sending `authorization` on every request.
    pub async fn initialize_with(url: &str, version: &str, authorization: Option<&str>) -> Self {
        let mut c = Self::new(url);
        c.authorization = authorization.map(str::to_string);
        c.initialize_declaring(version, json!({"sampling": {}, "elicitation": {}}))
            .await;
        c
    }

    /// Try to open a 2025-11-25 session declaring nothing, as one of a burst: the status of
    /// the `initialize`, and this client on the session if one was opened (initialized).
    pub async fn try_initialize(mut self) -> (u16, Self) {
        let r = self
            .post_raw(initialize_request("2025-11-25", json!({})), &[])
            .await;
        self.session = r
            .headers
            .get("mcp-session-id")
            .map(|v| v.to_str().unwrap().to_string());
        self.version = "2025-11-25".into();
        if self.session.is_some() {
            let note = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
            self.post_raw(note, &[]).await;
        }
        (r.status, self)
    }

    /// Initialize a 2025 session at `version` on this client, declaring `capabilities`.
    pub async fn initialize_declaring(&mut self, version: &str, capabilities: Value) {
        let c = self;
        c.version = version.into();
        let reply = c
            .post_raw(initialize_request(version, capabilities), &[])
            .await;
        assert_eq!(reply.status, 200, "initialize: {reply:?}");
        c.session = reply
            .headers
            .get("mcp-session-id")
            .map(|v| v.to_str().unwrap().to_string());
        assert!(c.session.is_some(), "no session id: {reply:?}");
        let note = c
            .post_raw(
                json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
                &[],
            )
            .await;
        assert_eq!(note.status, 202);
    }

    /// This client, sending `Authorization: Bearer <token>`.
    pub fn bearer(mut self, token: &str) -> Self {
        self.authorization = Some(format!("Bearer {token}"));
        self
    }

    /// A stateless 2026-07-28 client.
    pub fn modern(url: &str) -> Self {
        let mut c = Self::new(url);
        c.version = "2026-07-28".into();
        c
    }

    fn is_modern(&self) -> bool {
        self.version.as_str() >= "2026-07-28"
    }

    /// Send a request (method + params), adding what the era requires.
    pub async fn request(&mut self, method: &str, params: Value) -> Reply {
        self.request_with(method, params, &[]).await
    }

    /// Like [`Client::request`], with `extra` headers.
    pub async fn request_with(
        &mut self,
        method: &str,
        mut params: Value,
        extra: &[(&str, &str)],
    ) -> Reply {
        let id = self.next_id;
        self.next_id += 1;
        let mut headers = vec![];
        if self.is_modern() {
            let meta = params
                .as_object_mut()
                .unwrap()
                .entry("_meta")
                .or_insert_with(|| json!({}));
            meta["io.modelcontextprotocol/protocolVersion"] = self.version.clone().into();
            if meta
                .get("io.modelcontextprotocol/clientCapabilities")
                .is_none()
            {
                meta["io.modelcontextprotocol/clientCapabilities"] = json!({});
            }
            headers.push(("mcp-method".to_string(), method.to_string()));
            if let Some(name) = params
                .get("name")
                .or_else(|| params.get("uri"))
                .and_then(Value::as_str)
            {
                headers.push(("mcp-name".to_string(), name.to_string()));
            }
        }
        let hdrs: Vec<(&str, &str)> = headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .chain(extra.iter().copied())
            .collect();
        self.post_raw(
            json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}),
            &hdrs,
        )
        .await
    }

    pub async fn call_tool(&mut self, name: &str, arguments: Value) -> Reply {
        self.request("tools/call", json!({"name": name, "arguments": arguments}))
            .await
    }

    /// POST a JSON body with the session and version headers plus `extra`.
    pub async fn post_raw(&self, body: Value, extra: &[(&str, &str)]) -> Reply {
        self.post_bytes(body.to_string().into_bytes(), extra).await
    }

    pub async fn post_bytes(&self, body: Vec<u8>, extra: &[(&str, &str)]) -> Reply {
        let mut req = self
            .http
            .post(&self.url)
            .header("content-type", "application/json")
            .header(
                "accept",
                self.accept
                    .as_deref()
                    .unwrap_or("application/json, text/event-stream"),
            )
            .body(body);
        if let Some(s) = &self.session {
            req = req.header("mcp-session-id", s);
            req = req.header("mcp-protocol-version", &self.version);
        } else if self.is_modern() {
            req = req.header("mcp-protocol-version", &self.version);
        }
        if let Some(a) = &self.authorization {
            req = req.header("authorization", a);
        }
        for (k, v) in extra {
            req = req.header(*k, HeaderValue::from_str(v).unwrap());
        }
        read_reply(req.send().await.expect("request sent")).await
    }
}

impl Client {
    /// Open the session's standalone GET stream; messages arrive on the returned channel.
    pub async fn open_get_stream(&self) -> tokio::sync::mpsc::UnboundedReceiver<Value> {
        let resp = self
            .http
            .get(&self.url)
            .header("accept", "text/event-stream")
            .header("mcp-session-id", self.session.clone().expect("a session"))
            .header("mcp-protocol-version", &self.version)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 200, "GET stream refused");
        sse_messages(resp)
    }

    /// A 2026-07-28 `subscriptions/listen` stream for `notifications` (the filter): every
    /// JSON-RPC message it carries, as it arrives.
    pub async fn open_listen_stream(
        &self,
        notifications: Value,
    ) -> tokio::sync::mpsc::UnboundedReceiver<Value> {
        let body = json!({"jsonrpc": "2.0", "id": 1, "method": "subscriptions/listen", "params": {
            "notifications": notifications,
            "_meta": {"io.modelcontextprotocol/protocolVersion": self.version,
                      "io.modelcontextprotocol/clientCapabilities": {}}}});
        let resp = self
            .http
            .post(&self.url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", &self.version)
            .header("mcp-method", "subscriptions/listen")
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 200, "listen refused");
        sse_messages(resp)
    }
}

/// The JSON-RPC messages of an SSE response, as they arrive.
fn sse_messages(resp: reqwest::Response) -> tokio::sync::mpsc::UnboundedReceiver<Value> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut resp = resp;
        let mut buf = String::new();
        while let Ok(Some(chunk)) = resp.chunk().await {
            buf.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = buf.find('\n') {
                let line: String = buf.drain(..=end).collect();
                if let Some(data) = line.trim_end().strip_prefix("data:")
                    && let Ok(v) = serde_json::from_str::<Value>(data.trim())
                    && tx.send(v).is_err()
                {
                    return;
                }
            }
        }
    });
    rx
}

/// Collect messages from `rx` for up to `wait`, stopping early once `want` have arrived.
pub async fn collect(
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<Value>,
    want: usize,
    wait: Duration,
) -> Vec<Value> {
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + wait;
    while out.len() < want {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(v)) => out.push(v),
            _ => break,
        }
    }
    out
}

/// Read a response: JSON or SSE.
pub async fn read_reply(resp: reqwest::Response) -> Reply {
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let sse = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    let body = resp.text().await.unwrap_or_default();
    let messages: Vec<Value> = if sse {
        body.lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .filter_map(|d| serde_json::from_str(d.trim()).ok())
            .collect()
    } else {
        serde_json::from_str(&body).ok().into_iter().collect()
    };
    let (answers, others): (Vec<Value>, Vec<Value>) = messages
        .into_iter()
        .partition(|m| m.get("result").is_some() || m.get("error").is_some());
    Reply {
        status,
        headers,
        body,
        message: answers.into_iter().last(),
        others,
    }
}
