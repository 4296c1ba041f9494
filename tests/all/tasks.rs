//! MCP Tasks (`io.modelcontextprotocol/tasks`, #20) with a real SDK client: the official
//! TypeScript SDK (1.32.2) over a 2025-11-25 session, declaring the extension at initialize,
//! hearing `notifications/tasks` on the session.
//! Isolation, the per-caller cap and the TTL are in `isolation.rs`; the wire shapes in the
//! conformance runs (`tasks-*`).

use std::time::Duration;

use serde_json::Value;

use crate::support::{TestGateway, node, plugin, run_json_program, toml_path};

async fn gateway() -> TestGateway {
    TestGateway::start(
        "",
        &format!(
            "[auth]\nmode = \"none\"\n[[tenant]]\nid = \"t\"\nplugins = [{}]\n",
            toml_path(&plugin("conformance"))
        ),
    )
    .await
}

/// `tests/js/tasks-client.mjs` against `gw` in `mode`.
async fn sdk_client(gw: &TestGateway, mode: &str) -> Value {
    let url = gw.url("/mcp");
    run_json_program(
        &node(),
        "tests/js/tasks-client.mjs",
        &[std::ffi::OsStr::new(&url), std::ffi::OsStr::new(mode)],
        &[],
    )
    .await
}

/// How many instances of the conformance plugin are alive.
fn live_instances(gw: &TestGateway) -> u64 {
    let catalog = gw.tenants[0].plugins.catalog();
    let (plugin, _) = catalog.tool("slow_compute").expect("the fixture is loaded");
    plugin.code.live_instances()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_typescript_sdk_client_creates_polls_and_reads_a_task() {
    let gw = gateway().await;
    let t = sdk_client(&gw, "complete").await;
    assert_eq!(t["protocol"], "2025-11-25", "{t}");
    // The call answered at once with the task envelope, not the result.
    let created = &t["created"];
    assert_eq!(created["resultType"], "task", "{t}");
    assert_eq!(created["status"], "working", "{t}");
    assert!(created["ttlMs"].as_u64().unwrap() > 0, "{t}");
    assert!(created.get("content").is_none(), "{t}");
    // Polls saw it working, with the tool's progress as the status message, then the result.
    let statuses: Vec<&str> = t["statuses"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(statuses.contains(&"working"), "{t}");
    assert!(
        t["messages"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m.as_str().unwrap().starts_with("report: ")),
        "progress reached the task's status message: {t}"
    );
    assert_eq!(t["final"]["status"], "completed", "{t}");
    assert_eq!(
        t["final"]["result"]["content"][0]["text"], "report: computed after 3 s",
        "{t}"
    );
    assert_eq!(live_instances(&gw), 0);
    // The session heard the status change as notifications/tasks.
    assert_eq!(t["notified"], serde_json::json!(["completed"]), "{t}");
}

/// #30: a client can tell which tools may become tasks: `tools/list` marks them in `_meta`
/// under the extension's identifier (the extension defines no field on `Tool`), in both eras.
#[tokio::test]
async fn tools_that_may_become_tasks_are_marked_in_tools_list() {
    let gw = gateway().await;
    let url = gw.url("/mcp");
    let mut session = crate::support::Client::initialize(&url, "2025-11-25").await;
    for listed in [
        crate::support::Client::modern(&url)
            .request("tools/list", serde_json::json!({}))
            .await,
        session.request("tools/list", serde_json::json!({})).await,
    ] {
        let tools = listed.result()["tools"].as_array().unwrap().clone();
        let marker = |name: &str| {
            tools.iter().find(|t| t["name"] == name).unwrap()["_meta"]
                ["io.modelcontextprotocol/tasks"]
                .clone()
        };
        assert_eq!(
            marker("slow_compute"),
            serde_json::json!({"taskSupport": "optional"}),
            "{listed:?}"
        );
        assert!(marker("test_simple_text").is_null(), "{listed:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_task_drops_its_sandbox_instance() {
    let gw = gateway().await;
    let before = gw.tenants[0].tasks.len();
    let t = sdk_client(&gw, "cancel").await;
    // The ack carries no task envelope; the task reads `cancelled` with no result.
    assert!(
        t["cancel"].get("taskId").is_none() && t["cancel"].get("status").is_none(),
        "{t}"
    );
    assert_eq!(t["final"]["status"], "cancelled", "{t}");
    assert!(t["final"].get("result").is_none(), "{t}");
    assert_eq!(t["notified"], serde_json::json!(["cancelled"]), "{t}");
    // The 60 s call's instance is gone at once, not when its sleep would have ended.
    let mut live = live_instances(&gw);
    for _ in 0..40 {
        if live == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        live = live_instances(&gw);
    }
    assert_eq!(live, 0, "the cancelled task's instance is still alive");
    // The task itself is kept (cancelled) until its TTL, and nothing else was left behind.
    assert_eq!(gw.tenants[0].tasks.len(), before + 1);
}
