//! Plugins written with the guest SDKs (#17), served side by side: the Python example
//! (`plugins/examples/py-words`, componentize-py) next to the Rust one (`hello`), its schema
//! derived from type hints and enforced by the host, its structured output, and a
//! `downstream` call through the gateway.

use serde_json::json;

use crate::support::peers::api::DownstreamApi;
use crate::support::{Client, TestGateway, plugin, root, toml_path};

#[tokio::test]
async fn a_python_plugin_serves_beside_a_rust_one() {
    let api = DownstreamApi::start().await;
    // Compiling an 18 MB Python component takes a while in a debug build: share the cache
    // across runs (the gateway checks the directory is private and authenticates artifacts).
    let cache = root().join("target/test-artifacts");
    std::fs::create_dir_all(&cache).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o700)).unwrap();
    }
    let gw = TestGateway::from_toml(&format!(
        r#"
        [sandbox]
        max_instances = 8
        cache_dir = {cache}
        [auth]
        mode = "none"
        [[tenant]]
        id = "t"
        plugins = [{py}, {hello}]
        [[tenant.service]]
        name = "docs"
        base_url = "{api}/api"
        [tenant.plugin.py-words]
        services = ["docs"]
        "#,
        cache = toml_path(&cache),
        py = toml_path(&plugin("py-words")),
        hello = toml_path(&plugin("hello")),
        api = api.base,
    ))
    .await;
    let mut c = Client::modern(&gw.url("/mcp"));
    let tools = c.request("tools/list", json!({})).await.tool_names();
    assert!(
        ["pywords.count", "pywords.fetch", "hello.greet"]
            .iter()
            .all(|t| tools.contains(&t.to_string())),
        "{tools:?}"
    );
    let counted = c
        .call_tool(
            "pywords.count",
            json!({"text": "a bb ccc", "min_length": 2}),
        )
        .await;
    assert_eq!(
        counted.result()["structuredContent"],
        json!({"words": 2, "longest": "ccc"}),
        "{counted:?}"
    );
    // The schema from the type hints, enforced before Python runs.
    let bad = c
        .call_tool("pywords.count", json!({"text": 5, "extra": true}))
        .await;
    assert!(bad.is_error(), "{bad:?}");
    assert!(
        bad.text()
            .starts_with("Invalid arguments for tool `pywords.count`"),
        "{}",
        bad.text()
    );
    let fetched = c
        .call_tool("pywords.fetch", json!({"path": "/hello"}))
        .await;
    assert_eq!(fetched.text(), "4 words", "{fetched:?}");
    let missing = c
        .call_tool("pywords.fetch", json!({"path": "/no-such-document"}))
        .await;
    assert!(
        missing.is_error() && missing.text().contains("HTTP 404"),
        "{missing:?}"
    );
    assert_eq!(
        c.call_tool("hello.greet", json!({"name": "Py"}))
            .await
            .text(),
        "Hello, Py!"
    );
}
