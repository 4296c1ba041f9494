//! Entry points for the fuzz targets in `fuzz/` (feature `fuzzing`; not part of the API).
//!
//! Owns: one function per fuzzed boundary, each taking untrusted bytes and checking the
//! invariant that boundary promises beyond "no panic". Must not: be compiled into the
//! product (the feature is off by default) or change any behaviour.

use std::path::Path;

use crate::config::Config;

/// The configuration parser: any text is a configuration or a `ConfigError`.
pub fn config(text: &str) {
    let _ = Config::parse(text, Path::new("fuzz.toml"), Path::new("."));
}

/// The egress guard: a path it accepts never leaves the service's prefix, also as a backend
/// that decodes once and strips `;` path parameters reads it.
pub fn egress_path(path: &str) {
    let Ok(url) = crate::downstream::fuzz_url_for(path) else {
        return;
    };
    assert_eq!(url.host_str(), Some("api.example"), "{path} -> {url}");
    assert_eq!(url.port(), Some(8080), "{path} -> {url}");
    let decoded = percent_decode_lossy(url.path());
    assert!(
        decoded == "/v1" || decoded.starts_with("/v1/"),
        "{path} -> {url} ({decoded})"
    );
    for segment in decoded.split('/') {
        let name = segment.split(';').next().unwrap_or_default();
        assert!(name != ".." && name != ".", "{path} -> {url} ({decoded})");
    }
}

fn percent_decode_lossy(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Plugin-supplied schemas (#28): any text is compiled or refused with its reason, never a
/// panic; a schema the host accepts validates any value the JSON parser produces — the text
/// itself, the deepest object and array — within 1 MiB of stack (half a tokio worker's).
pub fn plugin_schema(text: &str) {
    let tool = crate::sandbox::wit::Tool {
        name: "fuzz.tool".into(),
        title: None,
        description: String::new(),
        input_schema: text.into(),
        output_schema: Some(text.into()),
        annotations: None,
        required_scopes: vec![],
    };
    let Ok(schemas) = crate::plugins::validate_tools(&[tool]) else {
        return;
    };
    let Some(schemas) = schemas.into_values().next() else {
        return;
    };
    let nested = |open: &str, close: &str| {
        let levels = (1..200)
            .take_while(|n| {
                serde_json::from_str::<serde_json::Value>(&format!(
                    "{}{}",
                    open.repeat(*n),
                    close.repeat(*n)
                ))
                .is_ok()
            })
            .last()
            .unwrap_or(1);
        serde_json::from_str::<serde_json::Value>(&format!(
            "{}{}",
            open.repeat(levels),
            close.repeat(levels)
        ))
        .unwrap_or_default()
    };
    let mut values = vec![
        serde_json::json!({}),
        nested("{\"a\":", "}")
            .pointer("/a")
            .cloned()
            .unwrap_or_default(),
        nested("[", "]"),
    ];
    values.extend(serde_json::from_str::<serde_json::Value>(text).ok());
    std::thread::Builder::new()
        .stack_size(1 << 20)
        .spawn(move || {
            for v in &values {
                let _ = schemas.check_arguments(v);
                let _ = schemas.check_output(Some(v));
            }
        })
        .expect("a thread")
        .join()
        .expect("validation of an accepted schema fits its stack");
}

/// `requestState` unsealing: arbitrary text is refused, never a panic.
pub fn request_state(token: &str) {
    crate::mcp::fuzz::request_state(token);
}

/// Plugin output: arbitrary tool results become a valid MCP result, never a panic.
pub fn plugin_output(data: &[u8]) {
    crate::mcp::fuzz::plugin_output(data);
}

/// Bearer tokens: any text as a JWT is refused (no issuer trusts it), never a panic.
pub fn jwt(token: &str) {
    static RUNTIME: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    let rt = RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime")
    });
    assert!(rt.block_on(crate::auth::fuzz_validate(token)));
}

/// The HTTP front: arbitrary bytes as one request (`METHOD PATH`, header lines, a blank line,
/// the body) to a gateway serving `hello` without authentication get an HTTP answer, never a
/// panic or a hang. The plugin is `PORTCULLIS_FUZZ_PLUGIN` (default
/// `../target/plugins/hello.wasm`, as `cargo xtask build-plugins` leaves it).
pub fn front(data: &[u8]) {
    let (rt, router) = front_gateway();
    let Some(request) = request_from(data) else {
        return;
    };
    front_answer(rt, router, request);
}

/// Start the `front` target's gateway (compiling its plugin), before the first input: the
/// fuzzer's per-input timeout must not count the start.
pub fn front_init() {
    front_gateway();
}

fn front_gateway() -> &'static (tokio::runtime::Runtime, axum::Router) {
    static GATEWAY: std::sync::OnceLock<(tokio::runtime::Runtime, axum::Router)> =
        std::sync::OnceLock::new();
    GATEWAY.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("a runtime");
        let plugin = std::env::var("PORTCULLIS_FUZZ_PLUGIN")
            .unwrap_or_else(|_| "../target/plugins/hello.wasm".into());
        let text = format!(
            "[sandbox]\nwatch = false\ncache_dir = \"\"\nmax_instances = 4\n[auth]\nmode = \"none\"\n\
             [[tenant]]\nid = \"t\"\nplugins = [{plugin:?}]\n"
        );
        let config = Config::parse(&text, Path::new("fuzz.toml"), Path::new(".")).expect("config");
        let gateway = rt
            .block_on(crate::Portcullis::start_local(config))
            .expect("gateway");
        let router = gateway.router();
        std::mem::forget(gateway);
        (rt, router)
    })
}

fn front_answer(
    rt: &tokio::runtime::Runtime,
    router: &axum::Router,
    request: http::Request<axum::body::Body>,
) {
    use tower::ServiceExt as _;
    // Within the fuzzer's own per-input timeout (10 s), so a hang is reported as this.
    let answer = rt.block_on(async {
        tokio::time::timeout(
            std::time::Duration::from_secs(5),
            router.clone().oneshot(request),
        )
        .await
    });
    let response = answer
        .expect("the front answers within 5 s")
        .expect("infallible");
    assert!(response.status().as_u16() >= 100);
}

fn request_from(data: &[u8]) -> Option<http::Request<axum::body::Body>> {
    let text = std::str::from_utf8(data).ok()?;
    let (head, body) = text.split_once("\n\n").unwrap_or((text, ""));
    let mut lines = head.lines();
    let (method, path) = lines.next()?.split_once(' ')?;
    let mut builder = http::Request::builder()
        .method(method)
        .uri(path)
        .header("host", "127.0.0.1:8080")
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream");
    for line in lines {
        let (k, v) = line.split_once(':')?;
        builder = builder.header(k.trim(), v.trim());
    }
    builder.body(axum::body::Body::from(body.to_string())).ok()
}
