//! `probe`: a sandbox probe and test fixture.
//!
//! Its tools deliberately misbehave (spin forever, exhaust memory, trap) or try to reach
//! outside the sandbox (files, environment, arguments, sockets), and report everything the
//! plugin can observe. The gateway's tests use it to prove the sandbox holds; operators can
//! load it to see for themselves what a plugin can and cannot do.

wit_bindgen::generate!({
    world: "tools-plugin",
    path: "../../wit",
});

use exports::portcullis::plugin::tools::{CallOutcome, Guest, Tool, ToolError, ToolResult};
use portcullis::plugin::downstream;
use portcullis::plugin::types::{CallContext, Content, Continuation};
use serde_json::{Value, json};

struct Probe;

fn tool(name: &str, description: &str, schema: &str) -> Tool {
    Tool {
        name: name.into(),
        title: None,
        description: description.into(),
        input_schema: schema.into(),
        output_schema: None,
        annotations: None,
        required_scopes: vec![],
    }
}

const NO_ARGS: &str = r#"{"type":"object"}"#;

/// A downstream request from the probe's JSON arguments.
fn request(args: &Value) -> downstream::Request {
    let headers = args["headers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|h| Some((h[0].as_str()?.to_string(), h[1].as_str()?.to_string())))
        .collect();
    downstream::Request {
        method: args["method"].as_str().unwrap_or("GET").into(),
        path: args["path"].as_str().unwrap_or("/").into(),
        headers,
        body: args["body"].as_str().map(|b| b.as_bytes().to_vec()),
    }
}

/// Everything a downstream call returned: status, every header, the body, or the error.
fn fetch_outcome(args: &Value) -> Value {
    match downstream::fetch(args["service"].as_str().unwrap_or_default(), &request(args)) {
        Ok(r) => json!({
            "status": r.status,
            "headers": r.headers,
            "body": String::from_utf8_lossy(&r.body),
        }),
        Err(e) => json!({"error": format!("{e:?}")}),
    }
}

/// Every host function's answer, including deliberately bad calls: log at every level,
/// progress (also out of order), list-change notices, and the downstream requests in
/// `fetches` (which can name unknown services, escape paths, oversized bodies...).
fn exercise_host(args: &Value) -> Value {
    use portcullis::plugin::host::{self, ListKinds, LogLevel};
    for level in [
        LogLevel::Debug,
        LogLevel::Info,
        LogLevel::Notice,
        LogLevel::Warning,
        LogLevel::Error,
        LogLevel::Critical,
        LogLevel::Alert,
        LogLevel::Emergency,
    ] {
        host::log(level, Some("probe"), "probe log line");
    }
    host::progress(2.0, Some(1.0), Some("beyond the total"));
    host::progress(1.0, None, Some("going backwards"));
    host::notify_lists_changed(ListKinds::all());
    host::notify_resource_updated("probe://nothing");
    let fetches: Vec<Value> = args["fetches"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|f| json!({"request": f, "outcome": fetch_outcome(f)}))
        .collect();
    json!({"fetches": fetches})
}

/// Everything the plugin can see of its environment, as JSON.
fn observe(ctx: &CallContext) -> Value {
    let file = |path: &str| match std::fs::read(path) {
        Ok(bytes) => json!({"opened": true, "bytes": bytes.len()}),
        Err(e) => json!({"opened": false, "error": e.to_string()}),
    };
    let socket = |addr: &str| match std::net::TcpStream::connect(addr) {
        Ok(_) => json!({"connected": true}),
        Err(e) => json!({"connected": false, "error": e.to_string()}),
    };
    let list = |path: &str| match std::fs::read_dir(path) {
        Ok(entries) => json!({"listed": true, "entries": entries.count()}),
        Err(e) => json!({"listed": false, "error": e.to_string()}),
    };
    // Randomness is available (it is not ambient authority): RandomState seeds from it.
    let random =
        std::hash::BuildHasher::hash_one(&std::collections::hash_map::RandomState::new(), 0u8);
    json!({
        "context": {
            "tenant": ctx.tenant,
            "issuer": ctx.issuer,
            "subject": ctx.subject,
            "client_id": ctx.client_id,
            "scopes": ctx.scopes,
            "claims": ctx.claims,
            "request_id": ctx.request_id,
            "trace_parent": ctx.trace_parent,
            "config": ctx.config,
        },
        "env": std::env::vars().collect::<Vec<_>>(),
        "args": std::env::args().collect::<Vec<_>>(),
        "cwd": std::env::current_dir().map(|p| p.display().to_string()).unwrap_or_else(|e| format!("error: {e}")),
        "files": {
            "/etc/passwd": file("/etc/passwd"),
            "/proc/self/environ": file("/proc/self/environ"),
            "plugin.wasm": file("plugin.wasm"),
        },
        "root_dir": list("/"),
        "sockets": {
            "127.0.0.1:80": socket("127.0.0.1:80"),
            "169.254.169.254:80": socket("169.254.169.254:80"),
        },
        "cwd_dir": list("."),
        "clock_unix_secs": std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
        "clock_monotonic_ns": std::time::Instant::now().elapsed().as_nanos() as u64,
        "random_sample": random,
    })
}

impl Guest for Probe {
    fn list_tools() -> Vec<Tool> {
        vec![
            tool(
                "probe.observe",
                "Report everything the plugin can observe: context, env, args, files, sockets, clocks, random, and every host function's answer (downstream requests listed in `fetches`)",
                r#"{"type":"object","properties":{"fetches":{"type":"array","items":{"type":"object"}}}}"#,
            ),
            tool(
                "probe.spin",
                "Loop forever (tests the CPU deadline)",
                NO_ARGS,
            ),
            tool(
                "probe.sleep",
                "Sleep for `ms` milliseconds (tests the wall-clock deadline)",
                r#"{"type":"object","properties":{"ms":{"type":"integer","minimum":0}},"required":["ms"]}"#,
            ),
            tool(
                "probe.alloc",
                "Allocate memory until the limit stops it (tests the memory limit)",
                NO_ARGS,
            ),
            tool("probe.trap", "Trap (panic) immediately", NO_ARGS),
            tool("probe.echo", "Echo the arguments back", NO_ARGS),
            tool(
                "probe.fetch",
                "Call a downstream service through the host and report exactly what came back",
                r#"{"type":"object","properties":{"service":{"type":"string"},"path":{"type":"string"},"method":{"type":"string"},"headers":{"type":"array"},"body":{"type":"string"}},"required":["service"]}"#,
            ),
        ]
    }

    fn call_tool(
        ctx: CallContext,
        name: String,
        arguments: String,
        _c: Option<Continuation>,
    ) -> Result<CallOutcome, ToolError> {
        let text = |t: String| {
            Ok(CallOutcome::Done(ToolResult {
                content: vec![Content::Text(t)],
                structured_content: None,
                is_error: false,
            }))
        };
        match name.as_str() {
            "probe.observe" => {
                let args: Value = serde_json::from_str(&arguments).unwrap_or_default();
                let mut seen = observe(&ctx);
                seen["host"] = exercise_host(&args);
                let seen = seen.to_string();
                Ok(CallOutcome::Done(ToolResult {
                    content: vec![Content::Text(seen.clone())],
                    structured_content: Some(seen),
                    is_error: false,
                }))
            }
            "probe.spin" => {
                let mut n: u64 = 0;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            "probe.sleep" => {
                let args: Value = serde_json::from_str(&arguments).unwrap_or_default();
                let ms = args["ms"].as_u64().ok_or_else(|| {
                    ToolError::InvalidArguments("`ms` must be a non-negative integer".into())
                })?;
                std::thread::sleep(std::time::Duration::from_millis(ms));
                text(format!("slept {ms} ms"))
            }
            "probe.alloc" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    let mut chunk = vec![0u8; 1 << 20];
                    chunk[0] = 1;
                    hoard.push(std::hint::black_box(chunk));
                }
            }
            "probe.trap" => panic!("probe.trap was asked to trap"),
            "probe.echo" => text(arguments),
            "probe.fetch" => {
                let args: Value = serde_json::from_str(&arguments).unwrap_or_default();
                match downstream::fetch(
                    args["service"].as_str().unwrap_or_default(),
                    &request(&args),
                ) {
                    Ok(r) => text(format!(
                        "status {}: {}",
                        r.status,
                        String::from_utf8_lossy(&r.body)
                    )),
                    Err(e) => text(format!("error: {e:?}")),
                }
            }
            _ => Err(ToolError::UnknownTool),
        }
    }
}

export!(Probe);
