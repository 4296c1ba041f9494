//! Streamable HTTP behaviour over real loopback HTTP: status codes, sessions, eras, batches.

use std::time::Duration;

use serde_json::json;

use crate::support::{Client, TestGateway, collect, initialize_request, plugin, toml_path};

/// Tenant `t` (hello, conformance) without authentication, bodies up to 4096 bytes;
/// `server_extra` is appended to `[server]`.
async fn gateway_with_server(server_extra: &str) -> TestGateway {
    TestGateway::from_toml(&format!(
        r#"
        [server]
        max_body_bytes = 4096
        {server_extra}
        [sandbox]
        max_instances = 16
        [auth]
        mode = "none"

        [[tenant]]
        id = "t"
        plugins = [{hello}, {conformance}]
        "#,
        hello = toml_path(&plugin("hello")),
        conformance = toml_path(&plugin("conformance")),
    ))
    .await
}

#[tokio::test]
async fn notification_gets_202_and_empty_body() {
    let gw = gateway_with_server("").await;
    let c = Client::initialize(&gw.url("/mcp"), "2025-11-25").await;
    let r = c.post_raw(json!({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 99}}), &[]).await;
    assert_eq!(r.status, 202);
    assert!(r.body.is_empty(), "{r:?}");
}

#[tokio::test]
async fn unsupported_protocol_version_is_400() {
    let gw = gateway_with_server("").await;
    let c = Client::new(&gw.url("/mcp"));
    let r = c
        .post_raw(
            json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}),
            &[("mcp-protocol-version", "1999-01-01")],
        )
        .await;
    assert_eq!(r.status, 400, "{r:?}");
    assert!(r.body.contains("1999-01-01"), "{r:?}");
}

#[tokio::test]
async fn unknown_session_is_404_and_modern_get_is_405() {
    let gw = gateway_with_server("").await;
    let mut c = Client::new(&gw.url("/mcp"));
    c.session = Some("no-such-session".into());
    let r = c
        .post_raw(
            json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}),
            &[],
        )
        .await;
    assert_eq!(r.status, 404, "{r:?}");

    let get = reqwest::Client::new()
        .get(gw.url("/mcp"))
        .header("accept", "text/event-stream")
        .header("mcp-protocol-version", "2026-07-28")
        .send()
        .await
        .unwrap();
    assert_eq!(get.status().as_u16(), 405);
}

#[tokio::test]
async fn terminated_session_is_404() {
    let gw = gateway_with_server("").await;
    let c = Client::initialize(&gw.url("/mcp"), "2025-11-25").await;
    let del = reqwest::Client::new()
        .delete(gw.url("/mcp"))
        .header("mcp-session-id", c.session.clone().unwrap())
        .header("mcp-protocol-version", "2025-11-25")
        .send()
        .await
        .unwrap();
    assert!(del.status().is_success(), "{}", del.status());
    let r = c
        .post_raw(
            json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}),
            &[],
        )
        .await;
    assert_eq!(r.status, 404, "{r:?}");
}

#[tokio::test]
async fn bad_origin_and_bad_host_are_403() {
    let gw = gateway_with_server("").await;
    let c = Client::new(&gw.url("/mcp"));
    let ping = json!({"jsonrpc": "2.0", "id": 1, "method": "ping"});
    let r = c
        .post_raw(ping.clone(), &[("origin", "http://evil.example")])
        .await;
    assert_eq!(r.status, 403, "{r:?}");
    let r = c.post_raw(ping.clone(), &[("host", "evil.example")]).await;
    assert_eq!(r.status, 403, "{r:?}");
    // A loopback origin on any port is allowed for a loopback listener.
    let init = initialize_request("2025-11-25", json!({}));
    let r = c
        .post_raw(init, &[("origin", "http://localhost:5173")])
        .await;
    assert_eq!(r.status, 200, "{r:?}");
}

#[tokio::test]
async fn oversized_body_is_413_with_a_jsonrpc_error() {
    let gw = gateway_with_server("").await;
    let c = Client::initialize(&gw.url("/mcp"), "2025-11-25").await;
    let big = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": {"name": "hello.greet", "arguments": {"name": "x".repeat(10_000)}}});
    let r = c.post_raw(big, &[]).await;
    assert_eq!(r.status, 413, "{r:?}");
    assert_eq!(r.error()["code"], -32600);
}

#[tokio::test]
async fn malformed_json_is_a_parse_error() {
    let gw = gateway_with_server("").await;
    let c = Client::initialize(&gw.url("/mcp"), "2025-11-25").await;
    let r = c
        .post_bytes(b"{\"jsonrpc\": \"2.0\", \"id\": 1,".to_vec(), &[])
        .await;
    assert_eq!(r.status, 400, "{r:?}");
    assert_eq!(r.error()["code"], -32700);
}

#[tokio::test]
async fn unknown_tool_is_a_jsonrpc_error_in_both_eras() {
    let gw = gateway_with_server("").await;
    let mut legacy = Client::initialize(&gw.url("/mcp"), "2025-11-25").await;
    let r = legacy.call_tool("no.such.tool", json!({})).await;
    assert_eq!(r.error()["code"], -32602, "{r:?}");
    let mut modern = Client::modern(&gw.url("/mcp"));
    let r = modern.call_tool("no.such.tool", json!({})).await;
    assert_eq!(r.error()["code"], -32602, "{r:?}");
}

#[tokio::test]
async fn bad_arguments_are_an_is_error_result() {
    let gw = gateway_with_server("").await;
    let mut c = Client::initialize(&gw.url("/mcp"), "2025-11-25").await;
    let r = c.call_tool("hello.greet", json!({"nom": "typo"})).await;
    assert!(r.is_error(), "{r:?}");
    // The host checks the tool's inputSchema before the plugin runs.
    assert!(
        r.text().contains("\"name\" is a required property"),
        "{r:?}"
    );
    let ok = c.call_tool("hello.greet", json!({"name": "Ada"})).await;
    assert!(!ok.is_error());
    assert_eq!(ok.text(), "Hello, Ada!");
}

#[tokio::test]
async fn batches_are_served_for_2025_03_26_and_refused_later() {
    let gw = gateway_with_server("").await;
    let old = Client::initialize(&gw.url("/mcp"), "2025-03-26").await;
    let batch = json!([
        {"jsonrpc": "2.0", "id": 1, "method": "ping"},
        {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "hello.greet", "arguments": {"name": "B"}}},
        {"jsonrpc": "2.0", "method": "notifications/initialized"}
    ]);
    let r = old.post_raw(batch.clone(), &[]).await;
    assert_eq!(r.status, 200, "{r:?}");
    let answers: Vec<serde_json::Value> = serde_json::from_str(&r.body).unwrap();
    assert_eq!(
        answers.len(),
        2,
        "one answer per request, none for the notification: {answers:?}"
    );
    assert_eq!(answers[0]["id"], 1);
    assert_eq!(answers[1]["result"]["content"][0]["text"], "Hello, B!");

    let new = Client::initialize(&gw.url("/mcp"), "2025-11-25").await;
    let r = new.post_raw(batch, &[]).await;
    assert_eq!(r.status, 400, "{r:?}");
    assert_eq!(r.error()["code"], -32600);
    assert!(
        r.error()["message"]
            .as_str()
            .unwrap()
            .contains("2025-11-25")
    );

    let init_in_batch = json!([{"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}}]);
    let r = Client::new(&gw.url("/mcp"))
        .post_raw(init_in_batch, &[("mcp-protocol-version", "2025-03-26")])
        .await;
    assert_eq!(r.status, 400, "{r:?}");
}

#[tokio::test]
async fn session_cap_refuses_new_sessions_with_503() {
    let gw = gateway_with_server("max_sessions = 2").await;
    let _a = Client::initialize(&gw.url("/mcp"), "2025-11-25").await;
    let _b = Client::initialize(&gw.url("/mcp"), "2025-11-25").await;
    let init = initialize_request("2025-11-25", json!({}));
    let r = Client::new(&gw.url("/mcp")).post_raw(init, &[]).await;
    assert_eq!(r.status, 503, "{r:?}");
    assert!(r.headers.contains_key("retry-after"));
    // Stateless requests still work at the cap.
    let mut modern = Client::modern(&gw.url("/mcp"));
    let r = modern
        .call_tool("hello.greet", json!({"name": "cap"}))
        .await;
    assert_eq!(r.text(), "Hello, cap!");
}

#[tokio::test]
async fn both_eras_list_the_same_tools_in_a_stable_order() {
    let gw = gateway_with_server("").await;
    let mut legacy = Client::initialize(&gw.url("/mcp"), "2025-06-18").await;
    let mut modern = Client::modern(&gw.url("/mcp"));
    let a = legacy.request("tools/list", json!({})).await;
    let b = modern.request("tools/list", json!({})).await;
    assert_eq!(a.tool_names(), b.tool_names());
    let mut sorted = a.tool_names();
    sorted.sort();
    assert_eq!(a.tool_names(), sorted);
    assert!(
        a.result().get("resultType").is_none(),
        "legacy results carry no resultType"
    );
    assert_eq!(b.result()["resultType"], "complete");
    assert!(b.result().get("ttlMs").is_some() && b.result()["cacheScope"] == "private");
    // Required scopes are visible so clients can step up.
    let greet = a.result()["tools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "hello.greet")
        .unwrap()
        .clone();
    assert_eq!(
        greet["_meta"]["dev.portcullis/requiredScopes"],
        json!(["mcp:tools"])
    );
}

#[tokio::test]
async fn progress_and_logs_reach_a_2025_session() {
    let gw = gateway_with_server("").await;
    let mut c = Client::initialize(&gw.url("/mcp"), "2025-11-25").await;
    // Progress rides the request's own stream, with the client's token type preserved.
    let r = c
        .request("tools/call", json!({"name": "test_tool_with_progress", "arguments": {}, "_meta": {"progressToken": 7}}))
        .await;
    let progress: Vec<_> = r
        .others
        .iter()
        .filter(|m| m["method"] == "notifications/progress")
        .collect();
    assert_eq!(progress.len(), 3, "{r:?}");
    assert!(
        progress.iter().all(|p| p["params"]["progressToken"] == 7),
        "integer token kept as integer"
    );
    let values: Vec<f64> = progress
        .iter()
        .map(|p| p["params"]["progress"].as_f64().unwrap())
        .collect();
    assert_eq!(values, vec![0.0, 50.0, 100.0]);

    // rmcp's session manager sends log notifications on the session's GET stream.
    let mut stream = c.open_get_stream().await;
    c.call_tool("test_tool_with_logging", json!({}))
        .await
        .result();
    let logs = collect(&mut stream, 3, Duration::from_secs(5)).await;
    let logs: Vec<_> = logs
        .iter()
        .filter(|m| m["method"] == "notifications/message")
        .collect();
    assert_eq!(logs.len(), 3, "{logs:?}");
    assert_eq!(logs[0]["params"]["data"], "Tool execution started");
    // After setLevel warning, info messages are filtered out.
    c.request("logging/setLevel", json!({"level": "warning"}))
        .await
        .result();
    c.call_tool("test_tool_with_logging", json!({}))
        .await
        .result();
    let more = collect(&mut stream, 1, Duration::from_millis(500)).await;
    assert!(
        more.iter().all(|m| m["method"] != "notifications/message"),
        "{more:?}"
    );
}

#[tokio::test]
async fn a_2026_request_gets_logs_only_when_it_asks_for_them() {
    let gw = gateway_with_server("").await;
    let mut c = Client::modern(&gw.url("/mcp"));
    let quiet = c.call_tool("test_tool_with_logging", json!({})).await;
    assert!(
        quiet
            .others
            .iter()
            .all(|m| m["method"] != "notifications/message"),
        "{quiet:?}"
    );
    let loud = c
        .request(
            "tools/call",
            json!({"name": "test_tool_with_logging", "arguments": {},
            "_meta": {"io.modelcontextprotocol/logLevel": "info"}}),
        )
        .await;
    let logs = loud
        .others
        .iter()
        .filter(|m| m["method"] == "notifications/message")
        .count();
    assert_eq!(logs, 3, "on the request's own stream: {loud:?}");
    assert_eq!(loud.result()["resultType"], "complete");
}

#[tokio::test]
async fn idle_sessions_expire() {
    let gw = gateway_with_server("session_idle_timeout_secs = 1").await;
    let c = Client::initialize(&gw.url("/mcp"), "2025-11-25").await;
    let r = c
        .post_raw(json!({"jsonrpc": "2.0", "id": 1, "method": "ping"}), &[])
        .await;
    assert_eq!(r.status, 200);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let r = c
        .post_raw(json!({"jsonrpc": "2.0", "id": 2, "method": "ping"}), &[])
        .await;
    assert_eq!(r.status, 404, "an idle session is gone: {r:?}");
}

/// A raw loopback connection to the gateway, and whether the server has closed it.
struct RawConn(tokio::net::TcpStream);

impl RawConn {
    async fn open(gw: &TestGateway, first_bytes: &[u8]) -> Self {
        use tokio::io::AsyncWriteExt as _;
        let addr = gw.base.trim_start_matches("http://");
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(first_bytes).await.unwrap();
        Self(s)
    }

    /// Everything the server sends until it closes the connection (`None` if it is still
    /// open after `wait`).
    async fn until_closed(&mut self, wait: Duration) -> Option<String> {
        use tokio::io::AsyncReadExt as _;
        let mut got = Vec::new();
        let read = async {
            let mut buf = [0u8; 4096];
            loop {
                match self.0.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                }
            }
        };
        tokio::time::timeout(wait, read).await.ok()?;
        Some(String::from_utf8_lossy(&got).into_owned())
    }
}

/// #16 AC1, as the attack: a slowloris client (20 partial request heads, a half-sent body,
/// idle keep-alive connections), bounded and on loopback, is disconnected within the
/// configured timeouts while a well-behaved client's calls keep succeeding.
#[tokio::test]
async fn slow_clients_are_dropped_while_others_are_served() {
    let gw = gateway_with_server("header_read_timeout_ms = 500\nbody_read_timeout_ms = 800").await;
    let started = std::time::Instant::now();
    let mut slow = Vec::new();
    for _ in 0..20 {
        slow.push(RawConn::open(&gw, b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Ty").await);
    }
    let mut half_body = RawConn::open(
        &gw,
        b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
          Accept: application/json, text/event-stream\r\nContent-Length: 200\r\n\r\n{\"jsonrpc\":",
    )
    .await;
    let mut idle = Vec::new();
    for _ in 0..5 {
        idle.push(RawConn::open(&gw, b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").await);
    }
    // Meanwhile, a well-behaved client is served.
    let mut c = Client::modern(&gw.url("/mcp"));
    for _ in 0..5 {
        let r = c.call_tool("hello.greet", json!({"name": "ok"})).await;
        assert_eq!(r.text(), "Hello, ok!");
    }
    for (i, conn) in slow.iter_mut().enumerate() {
        assert!(
            conn.until_closed(Duration::from_secs(3)).await.is_some(),
            "partial head {i} still open after {:?}",
            started.elapsed()
        );
    }
    let answer = half_body
        .until_closed(Duration::from_secs(3))
        .await
        .expect("the half-sent body's connection is closed");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    for conn in &mut idle {
        let answer = conn.until_closed(Duration::from_secs(3)).await;
        assert!(answer.is_some_and(|a| a.starts_with("HTTP/1.1 200")));
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let r = c.call_tool("hello.greet", json!({"name": "still"})).await;
    assert_eq!(r.text(), "Hello, still!");
}

/// #16 AC1: idle keep-alive connections, HTTP/2 ones included (which have no request head to
/// wait for), are closed after `idle_timeout_ms`; a connection carrying an open event stream
/// is not idle and stays up. (An HTTP/2 client that does not answer the graceful shutdown's
/// PING, like this raw one, is dropped a header-read timeout later.)
#[tokio::test]
async fn idle_connections_are_closed_but_open_streams_are_not() {
    let gw = gateway_with_server("idle_timeout_ms = 300\nheader_read_timeout_ms = 1500").await;
    // The HTTP/2 client preface and an empty SETTINGS frame, then nothing.
    let mut h2 = RawConn::open(&gw, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0").await;
    // An HTTP/1 keep-alive connection after one answered request.
    let mut h1 = RawConn::open(&gw, b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").await;
    let mut c = Client::initialize(&gw.url("/mcp"), "2025-06-18").await;
    let mut stream = c.open_get_stream().await;
    let started = std::time::Instant::now();
    let h1_answer = h1.until_closed(Duration::from_secs(3)).await;
    assert!(h1_answer.is_some_and(|a| a.starts_with("HTTP/1.1 200")));
    // Closed as idle, well before the header-read timeout would have closed it.
    assert!(
        started.elapsed() < Duration::from_millis(1200),
        "{:?}",
        started.elapsed()
    );
    let h2_answer = h2.until_closed(Duration::from_secs(3)).await;
    let h2_answer = h2_answer.expect("the idle HTTP/2 connection is closed");
    // A GOAWAY frame (8-byte payload, type 7) after the server's SETTINGS.
    assert!(
        h2_answer
            .as_bytes()
            .windows(4)
            .any(|w| w == b"\0\0\x08\x07"),
        "{h2_answer:?}"
    );
    // Well past the idle timeout, the event stream is still open and the session still serves.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert!(
        tokio::time::timeout(Duration::from_millis(300), stream.recv())
            .await
            .is_err(),
        "the open event stream was closed as idle"
    );
    let r = c
        .call_tool("hello.greet", json!({"name": "streaming"}))
        .await;
    assert_eq!(r.text(), "Hello, streaming!");
}

/// #16 AC1: the connection caps answer 503 and close, and a freed slot serves again.
#[tokio::test]
async fn connection_caps_refuse_cleanly() {
    let gw =
        gateway_with_server("max_connections_per_client = 3\nheader_read_timeout_ms = 5000").await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(RawConn::open(&gw, b"").await);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut over = RawConn::open(&gw, b"").await;
    let answer = over
        .until_closed(Duration::from_secs(2))
        .await
        .expect("refused and closed");
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("Retry-After: 1"), "{answer}");
    drop(held);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let r = Client::modern(&gw.url("/mcp"))
        .call_tool("hello.greet", json!({"name": "again"}))
        .await;
    assert_eq!(r.text(), "Hello, again!");
}

/// #16 AC7: a browser client at a configured origin gets its preflight answered (the MCP and
/// OAuth headers allowed) and can read `Mcp-Session-Id` and `WWW-Authenticate`; any other
/// origin is refused; with no origins configured no CORS header appears anywhere.
#[tokio::test]
async fn cors_is_answered_for_configured_origins_only() {
    let gw = gateway_with_server(r#"cors_origins = ["http://app.example"]"#).await;
    let http = reqwest::Client::new();
    let preflight = |url: String, origin: &'static str| {
        http.request(reqwest::Method::OPTIONS, url)
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "authorization, content-type, mcp-session-id, mcp-protocol-version, dpop",
            )
            .send()
    };
    let r = preflight(gw.url("/mcp"), "http://app.example")
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 204);
    let h = r.headers();
    assert_eq!(h["access-control-allow-origin"], "http://app.example");
    let allowed = h["access-control-allow-headers"].to_str().unwrap();
    for name in [
        "authorization",
        "mcp-session-id",
        "mcp-protocol-version",
        "mcp-method",
        "mcp-name",
        "dpop",
    ] {
        assert!(allowed.contains(name), "{name}: {allowed}");
    }
    let r = http
        .post(gw.url("/mcp"))
        .header("origin", "http://app.example")
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(initialize_request("2025-11-25", json!({})).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(
        r.headers()["access-control-allow-origin"],
        "http://app.example"
    );
    let exposed = r.headers()["access-control-expose-headers"]
        .to_str()
        .unwrap();
    assert!(
        exposed.contains("mcp-session-id") && exposed.contains("www-authenticate"),
        "{exposed}"
    );

    let r = preflight(gw.url("/mcp"), "http://evil.example")
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);
    assert!(r.headers().get("access-control-allow-origin").is_none());

    let plain = gateway_with_server("").await;
    let r = preflight(plain.url("/mcp"), "http://localhost:1234")
        .await
        .unwrap();
    assert!(
        r.headers().get("access-control-allow-origin").is_none(),
        "{r:?}"
    );
}

/// SIGTERM stops the gateway in order: for `server.shutdown_drain_ms` `/readyz` answers 503
/// while calls are still served; then the listener closes, and a session call in flight —
/// its answer streamed by the session as SSE — still finishes with its result.
#[tokio::test]
async fn sigterm_drains_then_lets_calls_in_flight_finish() {
    let gw = crate::support::BinaryGateway::start(
        &format!(
            "shutdown_drain_ms = 500\n[auth]\nmode = \"none\"\n[[tenant]]\nid = \"t\"\nplugins = [{}]\n",
            toml_path(&plugin("probe"))
        ),
        &[],
    )
    .await;
    let url = format!("{}/mcp", gw.base);
    let mut session = Client::initialize(&url, "2025-11-25").await;
    let base = gw.base.clone();
    let ready = || async {
        reqwest::get(format!("{base}/readyz"))
            .await
            .map(|r| r.status().as_u16())
            .unwrap_or(0)
    };
    assert_eq!(ready().await, 200);
    let slow = tokio::spawn(async move {
        // Through the drain (0.5 s) and past the listener's closing.
        session.call_tool("probe.sleep", json!({"ms": 1500})).await
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let term = tokio::process::Command::new("kill")
        .args(["-TERM", &gw.pid().to_string()])
        .status()
        .await
        .unwrap();
    assert!(term.success());
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(ready().await, 503, "draining: not ready");
    let r = Client::modern(&url)
        .call_tool("probe.echo", json!({"x": 1}))
        .await;
    assert_eq!(r.status, 200, "still served while draining: {r:?}");
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(ready().await, 0, "the listener is closed");
    let r = slow.await.unwrap();
    assert_eq!(
        r.text(),
        "slept 1500 ms",
        "the call in flight finished: {r:?}"
    );
    let log = gw.wait_for_exit(Duration::from_secs(15)).await;
    assert!(log.contains("draining"), "{log}");
}

/// #28 AC4, as the attack. Before: a client that sent a request and never read its 5 MB
/// answer kept the connection and the buffered answer for as long as it liked (20 such
/// clients: +140 MB). Now a connection whose client accepts no byte of its answer for
/// `write_timeout_ms` is closed and the answer freed, while other clients are served.
#[tokio::test]
async fn clients_that_never_read_their_answer_are_dropped_and_the_memory_returns() {
    use tokio::io::AsyncWriteExt as _;
    let body = format!(
        "max_body_bytes = 8388608\nwrite_timeout_ms = 1000\n[auth]\nmode = \"none\"\n\
         [[tenant]]\nid = \"t\"\nplugins = [{probe}]\n",
        probe = toml_path(&plugin("probe")),
    );
    // A fixed mmap threshold, as docs/DEPLOYMENT.md recommends and deploy/k8s sets: glibc's
    // adaptive one keeps freed multi-megabyte answers in its heap, so RSS would not show
    // whether they were freed.
    let gw =
        crate::support::BinaryGateway::start(&body, &[("MALLOC_MMAP_THRESHOLD_", "1048576")]).await;
    let url = format!("{}/mcp", gw.base);
    let big = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {
        "name": "probe.echo", "arguments": {"x": "y".repeat(5 << 20)},
        "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
                  "io.modelcontextprotocol/clientCapabilities": {}}}})
    .to_string();
    // A client that reads: the answer arrives whole (and the allocator has seen its size).
    let r = Client::modern(&url)
        .call_tool("probe.echo", json!({"x": "y".repeat(5 << 20)}))
        .await;
    assert_eq!(r.status, 200);
    assert!(r.body.len() > 5 << 20);
    let before = gw.rss_bytes();

    // Twenty that never read, with the smallest receive window the kernel allows.
    let addr: std::net::SocketAddr = gw.base.trim_start_matches("http://").parse().unwrap();
    let mut stuck = Vec::new();
    for _ in 0..20 {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        let mut s = socket.connect(addr).await.unwrap();
        let head = format!(
            "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
             Accept: application/json, text/event-stream\r\nMcp-Protocol-Version: 2026-07-28\r\n\
             Mcp-Method: tools/call\r\nMcp-Name: probe.echo\r\nContent-Length: {}\r\n\r\n",
            big.len()
        );
        s.write_all(head.as_bytes()).await.unwrap();
        s.write_all(big.as_bytes()).await.unwrap();
        stuck.push(s);
    }
    // Meanwhile, others are served.
    let mut c = Client::modern(&url);
    for _ in 0..5 {
        let r = c.call_tool("probe.echo", json!({"ok": 1})).await;
        assert_eq!(r.status, 200, "{r:?}");
    }
    // Each stuck connection is closed once its writes have been refused for a second.
    let closed = || {
        std::fs::read_to_string(&gw.log)
            .unwrap_or_default()
            .matches("closed a connection whose client accepted no byte of its answer")
            .count()
    };
    for _ in 0..200 {
        if closed() >= 20 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        closed(),
        20,
        "every client that stopped reading was dropped"
    );
    // And what was buffered for them is freed (waited for: the allocator returns it lazily).
    let mut after = gw.rss_bytes();
    for _ in 0..50 {
        if after <= before + (20 << 20) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        after = gw.rss_bytes();
    }
    assert!(
        after <= before + (20 << 20),
        "memory returns: {} MiB before, {} MiB after",
        before >> 20,
        after >> 20
    );
    let r = c.call_tool("probe.echo", json!({"still": 1})).await;
    assert_eq!(r.status, 200);
    drop(stuck);
    gw.stop().await;
}

/// An SSE event stream's events as (id, JSON-RPC message or null), read until it ends.
async fn sse_events(resp: reqwest::Response) -> Vec<(Option<String>, serde_json::Value)> {
    let body = resp.text().await.unwrap_or_default();
    body.split("\n\n")
        .filter(|e| e.lines().any(|l| !l.starts_with(':') && !l.is_empty()))
        .map(|event| {
            let field = |name: &str| {
                event
                    .lines()
                    .find_map(|l| l.strip_prefix(name))
                    .map(|v| v.trim().to_string())
            };
            let data = field("data:")
                .and_then(|d| serde_json::from_str(&d).ok())
                .unwrap_or(serde_json::Value::Null);
            (field("id:"), data)
        })
        .collect()
}

/// #28 (smaller): with `sse_close_after_ms`, a call's stream is cut and the client resumes it
/// with `GET` and `Last-Event-ID`. Before: a result that completed while the client was away
/// was gone (rmcp forgets a request's stream once its answer is sent), so the resumed stream
/// never carried it and the client's call hung. Now the gateway keeps the rest of a cut
/// stream for the session's caller until it is resumed; nobody else can resume it.
#[tokio::test]
async fn a_result_that_completes_while_the_client_is_away_is_resumed() {
    let rx = crate::support::peers::Receiver::start().await;
    let body = format!(
        "sse_close_after_ms = 300\n[sandbox]\nmax_instances = 8\n[auth]\nmode = \"none\"\n\
         [telemetry]\nendpoint = \"{}\"\n[[tenant]]\nid = \"t\"\nplugins = [{}]\n",
        rx.base,
        toml_path(&plugin("conformance"))
    );
    let gw =
        crate::support::BinaryGateway::start(&body, &[("OTEL_BSP_SCHEDULE_DELAY", "100")]).await;
    let url = format!("{}/mcp", gw.base);
    let c = Client::initialize(&url, "2025-11-25").await;
    let call = json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {
        "name": "slow_compute", "arguments": {"seconds": 1, "label": "away"},
        "_meta": {"progressToken": "p"}}});
    let session = c.session.clone().unwrap();
    let post = c
        .http
        .post(&url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-session-id", &session)
        .header("mcp-protocol-version", "2025-11-25")
        .body(call.to_string())
        .send()
        .await
        .unwrap();
    let cut = sse_events(post).await;
    assert!(
        cut.iter().all(|(_, m)| m.get("result").is_none()),
        "cut before the result: {cut:?}"
    );
    let last = cut
        .iter()
        .rev()
        .find_map(|(id, _)| id.clone())
        .expect("the cut stream's events carry ids");
    // The call ends while nobody listens (its span is exported once it has).
    rx.wait("spans", |s| {
        s.iter().any(|x| x["name"] == "tools/call slow_compute")
    })
    .await;
    let resume = |session: &str| {
        c.http
            .get(&url)
            .header("accept", "text/event-stream")
            .header("mcp-session-id", session)
            .header("mcp-protocol-version", "2025-11-25")
            .header("last-event-id", &last)
            .send()
    };
    // Another session of the same gateway cannot resume it.
    let other = Client::initialize(&url, "2025-11-25").await;
    let stranger = resume(other.session.as_deref().unwrap()).await.unwrap();
    let theirs = sse_events(stranger).await;
    assert!(
        theirs.iter().all(|(_, m)| m.get("result").is_none()),
        "{theirs:?}"
    );
    let resumed = resume(&session).await.unwrap();
    assert_eq!(resumed.status(), 200);
    let events = sse_events(resumed).await;
    let result = events
        .iter()
        .find_map(|(_, m)| m.get("result").map(|_| m.clone()))
        .unwrap_or_else(|| panic!("the result is resumed: {events:?}"));
    assert_eq!(result["id"], 7);
    assert_eq!(
        result["result"]["content"][0]["text"],
        "away: computed after 1 s"
    );
    // Once resumed to its end, it is gone.
    let again = sse_events(resume(&session).await.unwrap()).await;
    assert!(
        again.iter().all(|(_, m)| m.get("result").is_none()),
        "{again:?}"
    );
}
