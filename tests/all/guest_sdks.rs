//! Plugins written with the guest SDKs (#17), served side by side in one gateway: the Rust
//! example (`hello`, sdk/rust), the Python one (`plugins/examples/py-words`, componentize-py)
//! and the JavaScript one (`plugins/examples/js-words`, componentize-js), called by the
//! official TypeScript SDK client through the dev AS's OAuth flow: schemas derived in each
//! language and enforced by the host, structured output, `downstream` calls, a scope
//! denial answered by step-up, and log lines reaching the client.

use serde_json::{Value, json};

use crate::support::peers::api::DownstreamApi;
use crate::support::{
    BinaryGateway, Client, TestGateway, node, plugin, root, run_json_program, tempdir, toml_path,
};

/// The shared compiled-artifact cache: compiling the 12-18 MB Python and JavaScript
/// components takes a while in a debug build (the gateway checks the directory is private
/// and authenticates every artifact).
pub fn artifact_cache() -> std::path::PathBuf {
    let cache = root().join("target/test-artifacts");
    std::fs::create_dir_all(&cache).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o700)).unwrap();
    }
    cache
}

/// A gateway configuration without authentication serving `plugins` (example names) in tenant
/// `t`, each granted the `docs` service at `api`; `max_instances` in the sandbox.
fn serving_with_docs(plugins: &[&str], api: &DownstreamApi, max_instances: usize) -> String {
    let paths: Vec<String> = plugins.iter().map(|p| toml_path(&plugin(p))).collect();
    let grants: String = plugins
        .iter()
        .map(|p| format!("[tenant.plugin.{p}]\nservices = [\"docs\"]\n"))
        .collect();
    format!(
        "[sandbox]\nmax_instances = {max_instances}\ncache_dir = {cache}\n\
         [auth]\nmode = \"none\"\n\
         [[tenant]]\nid = \"t\"\nplugins = [{plugins}]\n\
         [[tenant.service]]\nname = \"docs\"\nbase_url = \"{api}/api\"\n{grants}",
        cache = toml_path(&artifact_cache()),
        plugins = paths.join(", "),
        api = api.base,
    )
}

fn call(name: &str, arguments: Value) -> Value {
    json!({"name": name, "arguments": arguments})
}

#[tokio::test]
async fn plugins_in_three_languages_serve_a_real_sdk_client_over_oauth() {
    let api = DownstreamApi::start().await;
    let config = format!(
        r#"
        [sandbox]
        max_instances = 8
        cache_dir = {cache}
        [auth]
        mode = "oauth"
        scopes_supported = ["mcp:tools"]
        challenge_scopes = ["mcp:tools"]
        [dev_as]
        enabled = true
        auto_approve = true

        [[tenant]]
        id = "default"
        plugins = [{hello}, {py}, {js}]
        [[tenant.service]]
        name = "docs"
        base_url = "{api}/api"
        [tenant.plugin.py-words]
        services = ["docs"]
        [tenant.plugin.js-words]
        services = ["docs"]
        "#,
        cache = toml_path(&artifact_cache()),
        hello = toml_path(&plugin("hello")),
        py = toml_path(&plugin("py-words")),
        js = toml_path(&plugin("js-words")),
        api = api.base,
    );
    let gw = BinaryGateway::start_command("dev", &config, &[]).await;
    let calls = json!([
        // Needs `words:read`, which the first token lacks: 403, then step-up.
        call("jswords.count", json!({"text": "a bb ccc", "minLength": 2})),
        call(
            "pywords.count",
            json!({"text": "a bb ccc", "min_length": 2})
        ),
        call("hello.greet", json!({"name": "SDKs"})),
        call("jswords.fetch", json!({"path": "/hello"})),
        call("pywords.fetch", json!({"path": "/hello"})),
        call("jswords.fetch", json!({"path": "/no-such-document"})),
        // Schema violations, refused by the host before the plugin runs.
        call("jswords.count", json!({"text": 5})),
        call("jswords.count", json!({"text": "a", "extra": true})),
        call("pywords.count", json!({})),
        call("hello.greet", json!({"name": 7})),
        // The engine's own fetch() needs wasi:http, which the gateway does not provide.
        call("jswords.web", json!({"url": "http://127.0.0.1:9/"})),
        // #30: Python `Annotated[int, Field(ge=1, le=50)] = 1` is a bound the host enforces;
        // an exception's message reaches the client; a list result is structured.
        call("pywords.count", json!({"text": "a", "min_length": 0})),
        call("pywords.ratio", json!({"text": "", "of": "a"})),
        call("pywords.longest", json!({"text": "a bb ccc", "top": 2})),
    ]);
    let mcp_url = format!("{}/mcp", gw.base);
    let t = run_json_program(
        &node(),
        "tests/js/oauth-client.mjs",
        &[mcp_url.as_ref()],
        &[("CALLS", &calls.to_string()), ("LOG_LEVEL", "info")],
    )
    .await;
    let log = gw.stop().await;
    let r = &t["calls"];
    let text = |i: usize| r[i]["content"][0]["text"].as_str().unwrap_or_default();

    // The scope denial: the token from the first authorization lacks `words:read`.
    assert_eq!(t["challenges"][0]["status"], 401, "{t}");
    assert_eq!(t["challenges"][1]["status"], 403, "{t}");
    assert!(
        t["challenges"][1]["scope"]
            .as_str()
            .is_some_and(|s| s.split(' ').any(|s| s == "words:read")),
        "{t}"
    );
    assert_eq!(t["authorizations"], 2, "one step-up: {t}");

    // Structured output from both script languages, schema-checked by the client too.
    for i in [0, 1] {
        assert_eq!(
            r[i]["structuredContent"],
            json!({"words": 2, "longest": "ccc"}),
            "{t}"
        );
    }
    assert_eq!(text(2), "Hello, SDKs!");
    // Downstream through the gateway (the service's credential never reaches the plugins).
    assert_eq!(text(3), "4 words", "{t}");
    assert_eq!(text(4), "4 words", "{t}");
    assert_eq!(r[5]["isError"], true);
    assert!(text(5).contains("HTTP 404"), "{t}");
    // Each violation is an isError result naming the problem.
    for (i, needle) in [(6, "text"), (7, "extra"), (8, "text"), (9, "name")] {
        assert_eq!(r[i]["isError"], true, "call {i}: {t}");
        assert!(
            text(i).starts_with("Invalid arguments for tool") && text(i).contains(needle),
            "call {i}: {}",
            text(i)
        );
    }
    assert_eq!(r[11]["isError"], true, "{t}");
    assert!(
        text(11).contains("at `/min_length`: value is less than the minimum of 1 (got 0)"),
        "{}",
        text(11)
    );
    assert_eq!(r[12]["isError"], true, "{t}");
    assert!(
        text(12).contains("tool `pywords.ratio` failed: ZeroDivisionError: division by zero"),
        "{}",
        text(12)
    );
    assert!(
        log.contains("Traceback") && log.contains("ZeroDivisionError"),
        "the traceback is in the operator's log"
    );
    assert_eq!(
        r[13]["structuredContent"],
        json!({"result": ["ccc", "bb"]}),
        "{t}"
    );
    // A JavaScript component importing wasi:http loaded; calling it fails, naming it.
    assert_eq!(r[10]["isError"], true, "{t}");
    assert!(text(10).contains("wasi:http"), "{}", text(10));
    assert!(
        log.contains("wasi:http"),
        "the operator's log names the import: {log}"
    );

    // The plugins' log lines reached the client (none from the refused calls).
    let logs: Vec<&Value> = t["logs"].as_array().unwrap().iter().collect();
    for logger in ["js-words", "py-words"] {
        let lines: Vec<_> = logs.iter().filter(|l| l["logger"] == logger).collect();
        assert_eq!(lines.len(), 1, "{logger}: {logs:?}");
        assert_eq!(lines[0]["level"], "info");
        assert!(
            lines[0]["data"]
                .as_str()
                .is_some_and(|d| d.starts_with("counted 2 words for ")),
            "{logs:?}"
        );
    }
}

/// #17 AC3: Python components are big (about 14 core instances and a 12 MiB memory each);
/// the pool is sized in units measured from the components actually loaded, so 50 Python
/// instances in flight at once, next to Rust calls, all instantiate. A share too small for
/// even one instance is refused at load, naming the key to raise.
#[tokio::test]
async fn fifty_python_instances_in_flight_beside_rust_ones() {
    let api = DownstreamApi::start().await;
    let gw = TestGateway::from_toml(
        &serving_with_docs(&["py-words", "hello"], &api, 256)
            .replace("[auth]", "[limits]\nmax_concurrency = 64\n[auth]"),
    )
    .await;
    let url = gw.url("/mcp");
    let python = (0..50).map(|_| {
        let url = url.clone();
        tokio::spawn(async move {
            Client::modern(&url)
                .call_tool("pywords.fetch", json!({"path": "/hold"}))
                .await
        })
    });
    let rust = (0..10).map(|i| {
        let url = url.clone();
        tokio::spawn(async move {
            Client::modern(&url)
                .call_tool("hello.greet", json!({"name": format!("R{i}")}))
                .await
        })
    });
    let (python, rust): (Vec<_>, Vec<_>) = (
        futures::future::join_all(python).await,
        futures::future::join_all(rust).await,
    );
    for r in python {
        let r = r.unwrap();
        assert_eq!(r.text(), "1 words", "{r:?}");
    }
    for (i, r) in rust.into_iter().enumerate() {
        assert_eq!(r.unwrap().text(), format!("Hello, R{i}!"));
    }
    assert_eq!(
        api.peak_held(),
        50,
        "all 50 Python instances were in flight at once"
    );

    // A tenant whose share cannot hold one Python instance: refused at load, naming the key.
    let dir = tempdir();
    let config = dir.join("small-share.toml");
    std::fs::write(
        &config,
        format!(
            r#"
            [auth]
            mode = "none"
            [[tenant]]
            id = "t"
            plugins = [{py}, {hello}]
            [tenant.quota]
            max_instances = 2
            "#,
            py = toml_path(&plugin("py-words")),
            hello = toml_path(&plugin("hello")),
        ),
    )
    .unwrap();
    let (passed, text) = crate::support::check_config(&config);
    assert!(!passed, "{text}");
    assert!(
        text.contains("more than this tenant's whole share of 2")
            && text.contains("[tenant.quota] max_instances"),
        "{text}"
    );
}

/// The words plugin in each SDK, in one gateway, with the docs service they read.
async fn words_in_each_sdk() -> (DownstreamApi, TestGateway) {
    let api = DownstreamApi::start().await;
    let gw = TestGateway::from_toml(&serving_with_docs(
        &["rs-words", "py-words", "js-words"],
        &api,
        16,
    ))
    .await;
    (api, gw)
}

/// Each words plugin's tool prefix (`rs-words`, `py-words`, `js-words`).
const WORDS_PREFIXES: [&str; 3] = ["rswords", "pywords", "jswords"];

/// #30 AC1: the same words plugin in each SDK (`rs-words`, `py-words`, `js-words`) serves
/// everything the parity table lists, not only tools, to the official TypeScript SDK client:
/// the task marker in `tools/list`, a resource template read through `downstream`, a missing
/// resource as MCP's -32002, a prompt, a completion, a tool result with a resource link, a
/// tool that asks for the client's roots, and one that asks the client's model and then its
/// user across two input rounds (the gateway asks the SDK client each time and calls the
/// plugin again with the answer and the state it kept).
#[tokio::test]
async fn plugins_in_each_sdk_serve_resources_prompts_completions_and_input_requests() {
    let (_api, gw) = words_in_each_sdk().await;
    let url = gw.url("/mcp");
    for prefix in WORDS_PREFIXES {
        let t = run_json_program(
            &node(),
            "tests/js/features-client.mjs",
            &[url.as_ref(), prefix.as_ref()],
            &[],
        )
        .await;
        let report = t["tools"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["name"] == format!("{prefix}.report"))
            .unwrap_or_else(|| panic!("{t}"));
        assert_eq!(
            report["_meta"]["io.modelcontextprotocol/tasks"]["taskSupport"], "optional",
            "{t}"
        );
        assert_eq!(
            t["read"]["contents"][0]["text"], "hello\nfrom\nthe\nAPI",
            "{t}"
        );
        assert_eq!(t["missing"]["code"], -32002, "{t}");
        assert!(
            t["prompt"]["messages"][0]["content"]["text"]
                .as_str()
                .is_some_and(|m| m.starts_with("Summarise this (brief):")),
            "{t}"
        );
        let described = &t["prompts"][0]["arguments"][0];
        assert_eq!(described["description"], "The text to summarise", "{t}");
        assert_eq!(t["completion"]["values"], json!(["bullets"]), "{t}");
        let content = t["report"]["content"].as_array().unwrap();
        assert_eq!(content[0]["text"], "4 words", "{t}");
        assert_eq!(content[1]["type"], "resource_link", "{t}");
        assert_eq!(content[1]["uri"], "words://hello", "{t}");
        // The plugin asked for the client's roots; the gateway asked the client.
        assert_eq!(
            t["roots"]["content"][0]["text"], "file:///work/project",
            "{t}"
        );
        // The model drafted from the text, the user approved the draft the plugin kept.
        assert_eq!(
            t["headline"]["content"][0]["text"], "Draft: the gateway checks every call, approved",
            "{t}"
        );
        assert_eq!(
            t["asked"],
            json!(["roots/list", "sampling/createMessage", "elicitation/create"]),
            "{t}"
        );
        // Written downstream, embedded in the result, and the resource list announced as
        // changed; the report announced the resource this session subscribed to.
        let published = &t["published"]["content"];
        assert_eq!(
            published[0]["text"],
            format!("published words://{prefix}-draft"),
            "{t}"
        );
        assert_eq!(
            published[1]["resource"],
            json!({"uri": format!("words://{prefix}-draft"), "mimeType": "text/plain", "text": "a b c"}),
            "{t}"
        );
        let heard: Vec<&str> = t["heard"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert!(
            heard.contains(&"updated words://hello") && heard.contains(&"resources/list_changed"),
            "{t}"
        );
        // The same image as a tool result and as a fixed resource's blob.
        let image = &t["logo"]["content"][0];
        assert_eq!(
            (&image["type"], &image["mimeType"]),
            (&json!("image"), &json!("image/png")),
            "{t}"
        );
        assert_eq!(image["data"], LOGO_PNG_BASE64, "{t}");
        assert_eq!(
            t["logoResource"]["contents"][0]["blob"], LOGO_PNG_BASE64,
            "{t}"
        );
    }
}

/// #30 AC1, tasks: each SDK's task tool (`<prefix>.report`, declared `optional`) runs as an
/// MCP Task for the TypeScript client that declares the extension: the call answers with the
/// task, polling reads it completed with the tool's result (its resource link included).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_sdks_task_tool_runs_as_an_mcp_task_for_a_real_client() {
    let (_api, gw) = words_in_each_sdk().await;
    let url = gw.url("/mcp");
    for prefix in WORDS_PREFIXES {
        let tool = format!("{prefix}.report");
        let t = run_json_program(
            &node(),
            "tests/js/tasks-client.mjs",
            &[
                url.as_ref(),
                "complete".as_ref(),
                tool.as_ref(),
                r#"{"path": "/hello"}"#.as_ref(),
            ],
            &[],
        )
        .await;
        assert_eq!(t["created"]["resultType"], "task", "{t}");
        assert_eq!(t["final"]["status"], "completed", "{t}");
        let content = &t["final"]["result"]["content"];
        assert_eq!(content[0]["text"], "4 words", "{t}");
        assert_eq!(content[1]["uri"], "words://hello", "{t}");
        assert_eq!(t["notified"], json!(["completed"]), "{t}");
    }
}

/// The 1×1 PNG each words plugin serves as its logo.
const LOGO_PNG_BASE64: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==";
