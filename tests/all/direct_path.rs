//! The direct path (a well-formed request for a plugin-running method, stateless 2026-07-28
//! or in a 2025 session whose client declared nothing the server could ask it for, answered
//! by the HTTP front without rmcp's per-request server or session worker) answers exactly as
//! rmcp does, leaves every unusual request to it, and keeps what rmcp's path guaranteed:
//! cancellation, session keep-alive, sessions bound to their tenant and creator.
//!
//! Each case is sent twice: as clients send it, which the direct path takes (its lone answers
//! are `application/json`), and with the same `Accept` preference spelled with weights
//! (`;q=1`), which it leaves to rmcp (whose 200 answers are SSE here). The JSON-RPC answers, the
//! notifications before them and the HTTP statuses must be equal; sealed `requestState`
//! values (random per answer) are compared by shape.

use serde_json::{Value, json};

use crate::support::{Client, Reply, TestGateway, plugin, toml_path};

/// `Accept` as the direct path leaves it to rmcp: the same media types, with weights.
const WEIGHTED_ACCEPT: &str = "application/json;q=1, text/event-stream;q=1";

async fn gateway() -> TestGateway {
    TestGateway::from_toml(&format!(
        r#"
        [auth]
        mode = "none"
        [[tenant]]
        id = "t"
        plugins = [{}, {}]
        "#,
        toml_path(&plugin("conformance")),
        toml_path(&plugin("probe")),
    ))
    .await
}

fn content_type(r: &Reply) -> &str {
    r.headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

/// `v` with every `requestState` replaced by a marker (sealed state is random per answer).
fn masked(mut v: Value) -> Value {
    match &mut v {
        Value::Object(m) => {
            for (k, x) in m.iter_mut() {
                if k == "requestState" && x.is_string() {
                    *x = "<sealed>".into();
                } else {
                    *x = masked(x.take());
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|x| *x = masked(x.take())),
        _ => {}
    }
    v
}

/// Where the two requests compared were sent.
#[derive(Clone, Copy, PartialEq)]
enum Sent {
    /// Stateless, each with id 1: status, answer and notifications must match.
    Stateless,
    /// One after the other in a session: their ids differ, and rmcp's session puts plugin
    /// logs on the GET stream, so status and answer must match.
    InSession,
}

/// The JSON-RPC answer of `r` as compared (sealed state masked; in a session, the id too).
fn answer(r: &Reply, sent: Sent) -> Value {
    let mut m = masked(r.message.clone().unwrap_or(Value::Null));
    if sent == Sent::InSession {
        m["id"] = Value::Null;
    }
    m
}

/// The same answer from the direct path and from rmcp (what "same" covers: [`Sent`]).
fn assert_same(method: &str, direct: &Reply, generic: &Reply, sent: Sent) {
    assert_eq!(
        direct.status, generic.status,
        "{method} {direct:?} vs {generic:?}"
    );
    assert_eq!(
        answer(direct, sent),
        answer(generic, sent),
        "{method}: the answers differ"
    );
    if sent == Sent::Stateless {
        let others = |r: &Reply| r.others.iter().cloned().map(masked).collect::<Vec<_>>();
        assert_eq!(
            others(direct),
            others(generic),
            "{method}: the notifications differ"
        );
    }
}

/// Send `method`/`params` both ways and require the same answer; returns the direct one.
async fn same_both_ways(url: &str, method: &str, params: Value) -> Reply {
    let direct = Client::modern(url).request(method, params.clone()).await;
    let mut weighted = Client::modern(url);
    weighted.accept = Some(WEIGHTED_ACCEPT.into());
    let generic = weighted.request(method, params).await;
    // rmcp answers a 200 as SSE (a lone error with another status as JSON).
    assert!(
        generic.status != 200 || content_type(&generic).starts_with("text/event-stream"),
        "the weighted request went to rmcp (SSE answer): {generic:?}"
    );
    assert_same(method, &direct, &generic, Sent::Stateless);
    direct
}

#[tokio::test]
async fn the_direct_path_answers_every_plugin_method_as_rmcp_does() {
    let gw = gateway().await;
    let url = gw.url("/mcp");
    let tool = |name: &str, args: Value| json!({"name": name, "arguments": args});
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "tools/call",
            tool("probe.echo", json!({"n": 1})),
            "a result",
        ),
        (
            "tools/call",
            tool("probe.listed", json!({})),
            "a non-object structuredContent (kept on 2026-07-28)",
        ),
        (
            "tools/call",
            tool("test_error_handling", json!({})),
            "a tool error",
        ),
        (
            "tools/call",
            tool("no.such.tool", json!({})),
            "an unknown tool",
        ),
        (
            "tools/call",
            tool("probe.sleep", json!({})),
            "arguments the schema refuses",
        ),
        (
            "tools/call",
            tool("probe.trap", json!({})),
            "a crashing plugin",
        ),
        (
            "tools/call",
            tool("test_input_required_result_elicitation", json!({})),
            "input required, without the capability",
        ),
        (
            "tools/call",
            tool("test_missing_capability", json!({})),
            "a missing capability",
        ),
        (
            "resources/read",
            json!({"uri": "test://static-text"}),
            "a resource",
        ),
        (
            "resources/read",
            json!({"uri": "test://nothing-here"}),
            "an unknown resource",
        ),
        (
            "prompts/get",
            json!({"name": "test_simple_prompt"}),
            "a prompt",
        ),
        (
            "prompts/get",
            json!({"name": "test_prompt_with_arguments"}),
            "a prompt missing arguments",
        ),
        (
            "prompts/get",
            json!({"name": "no_such_prompt"}),
            "an unknown prompt",
        ),
        (
            "completion/complete",
            json!({"ref": {"type": "ref/prompt", "name": "test_prompt_with_arguments"},
                   "argument": {"name": "arg1", "value": "par"}}),
            "a completion",
        ),
    ];
    for (method, params, what) in cases {
        let direct = same_both_ways(&url, method, params).await;
        if direct.status == 200 {
            assert!(
                content_type(&direct).starts_with("application/json"),
                "{what}: the direct path answered (JSON): {direct:?}"
            );
        }
    }

    // With the capability declared: the sealed question, then the retry with its answer.
    let caps = json!({"io.modelcontextprotocol/clientCapabilities": {"elicitation": {}}});
    let mut params = tool("test_input_required_result_elicitation", json!({}));
    params["_meta"] = caps.clone();
    let asked = same_both_ways(&url, "tools/call", params.clone()).await;
    let asked = asked.result().clone();
    assert_eq!(asked["resultType"], "input_required", "{asked}");
    let key = asked["inputRequests"]
        .as_object()
        .unwrap()
        .keys()
        .next()
        .unwrap()
        .clone();
    params["inputResponses"] = json!({ key: {"action": "accept", "content": {"name": "Ada"}} });
    params["requestState"] = asked["requestState"].clone();
    let answered = Client::modern(&url).request("tools/call", params).await;
    assert!(answered.text().contains("Ada"), "{answered:?}");
}

#[tokio::test]
async fn notifications_stream_before_the_answer_on_the_direct_path() {
    let gw = gateway().await;
    let url = gw.url("/mcp");
    let mut logging = json!({"name": "test_tool_with_logging", "arguments": {}});
    logging["_meta"] = json!({"io.modelcontextprotocol/logLevel": "info"});
    let logged = same_both_ways(&url, "tools/call", logging).await;
    assert!(
        content_type(&logged).starts_with("text/event-stream"),
        "{logged:?}"
    );
    assert_eq!(
        logged.others.len(),
        3,
        "three log lines, then the answer: {logged:?}"
    );

    let mut progress = json!({"name": "test_tool_with_progress", "arguments": {}});
    progress["_meta"] = json!({"progressToken": "p-1"});
    let reported = same_both_ways(&url, "tools/call", progress).await;
    let seen: Vec<f64> = reported
        .others
        .iter()
        .map(|n| n["params"]["progress"].as_f64().unwrap())
        .collect();
    assert_eq!(seen, [0.0, 50.0, 100.0], "{reported:?}");
}

#[tokio::test]
async fn requests_the_direct_path_does_not_take_get_rmcp_precise_answers() {
    let gw = gateway().await;
    // A client that adds no headers of its own: each case shows every header it sends.
    let c = Client::new(&gw.url("/mcp"));
    let meta = json!({"io.modelcontextprotocol/protocolVersion": "2026-07-28",
                      "io.modelcontextprotocol/clientCapabilities": {}});
    let body = |meta: &Value| {
        json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
               "params": {"name": "probe.echo", "arguments": {}, "_meta": meta}})
    };
    let good = [
        ("mcp-protocol-version", "2026-07-28"),
        ("mcp-method", "tools/call"),
        ("mcp-name", "probe.echo"),
    ];
    let served = c.post_raw(body(&meta), &good).await;
    assert_eq!(served.status, 200, "{served:?}");
    assert!(!served.is_error(), "{served:?}");
    // Headers that contradict the body, or are missing: refused by either path, never served.
    let contradicting: [&[(&str, &str)]; 6] = [
        &[good[0], good[1], ("mcp-name", "test_error_handling")],
        &[good[0], ("mcp-method", "prompts/get"), good[2]],
        &[("mcp-protocol-version", "2025-11-25"), good[1], good[2]],
        &[good[0], good[2]],
        &[good[0], good[1]],
        &[good[0], good[1], good[2], ("mcp-name", "probe.echo")],
    ];
    for headers in contradicting {
        let r = c.post_raw(body(&meta), headers).await;
        assert_eq!(r.status, 400, "{headers:?}: {r:?}");
        assert_eq!(r.error()["code"], -32020, "header mismatch: {r:?}");
    }
    // A `_meta` without the client's capabilities: a malformed request.
    let r = c
        .post_raw(
            body(&json!({"io.modelcontextprotocol/protocolVersion": "2026-07-28"})),
            &good,
        )
        .await;
    assert_eq!(r.status, 400, "{r:?}");
    assert_eq!(r.error()["code"], -32602, "{r:?}");
}

/// A 2025 session whose client declared no capability the server could use to ask it
/// anything: the direct path serves its plugin calls.
async fn plain_session(url: &str) -> Client {
    let mut c = Client::new(url);
    c.initialize_declaring("2025-11-25", json!({})).await;
    c
}

/// Send `method`/`params` in `c`'s session both ways and require the same answer.
async fn same_both_ways_in_session(c: &mut Client, method: &str, params: Value) -> Reply {
    c.accept = None;
    let direct = c.request(method, params.clone()).await;
    c.accept = Some(WEIGHTED_ACCEPT.into());
    let generic = c.request(method, params).await;
    c.accept = None;
    assert!(
        content_type(&generic).starts_with("text/event-stream"),
        "the weighted request went to rmcp's session (SSE answer): {generic:?}"
    );
    assert!(
        content_type(&direct).starts_with("application/json") || !direct.others.is_empty(),
        "{method}: the direct path answered: {direct:?}"
    );
    assert_same(method, &direct, &generic, Sent::InSession);
    direct
}

#[tokio::test]
async fn the_direct_path_answers_in_a_session_as_rmcp_does() {
    let gw = gateway().await;
    let mut c = plain_session(&gw.url("/mcp")).await;
    let tool = |name: &str, args: Value| json!({"name": name, "arguments": args});
    let cases: Vec<(&str, Value)> = vec![
        ("tools/call", tool("probe.echo", json!({"n": 1}))),
        // A non-object structuredContent: a 2025 peer gets it as a text block (rmcp 3.11).
        ("tools/call", tool("probe.listed", json!({}))),
        ("tools/call", tool("test_error_handling", json!({}))),
        ("tools/call", tool("no.such.tool", json!({}))),
        ("tools/call", tool("probe.sleep", json!({}))),
        ("tools/call", tool("probe.trap", json!({}))),
        ("tools/call", tool("test_missing_capability", json!({}))),
        (
            "tools/call",
            tool("test_input_required_result_elicitation", json!({})),
        ),
        ("resources/read", json!({"uri": "test://static-text"})),
        ("resources/read", json!({"uri": "test://nothing-here"})),
        ("prompts/get", json!({"name": "test_simple_prompt"})),
        ("prompts/get", json!({"name": "no_such_prompt"})),
        (
            "completion/complete",
            json!({"ref": {"type": "ref/prompt", "name": "test_prompt_with_arguments"},
                   "argument": {"name": "arg1", "value": "par"}}),
        ),
    ];
    for (method, params) in cases {
        same_both_ways_in_session(&mut c, method, params).await;
    }
    let listed = c.call_tool("probe.listed", json!({})).await;
    assert!(
        listed.result().get("structuredContent").is_none(),
        "{listed:?}"
    );
    assert_eq!(
        listed.result()["content"][0]["text"],
        r#"["ada","grace"]"#,
        "{listed:?}"
    );
    assert_eq!(
        listed.result()["content"][1]["text"],
        "two names",
        "{listed:?}"
    );
    // The session's own log level applies (everything until logging/setLevel).
    let logged = c.call_tool("test_tool_with_logging", json!({})).await;
    assert_eq!(
        logged.others.len(),
        3,
        "three log lines, then the answer: {logged:?}"
    );
    let set = c
        .request("logging/setLevel", json!({"level": "error"}))
        .await;
    assert!(set.message.is_some(), "{set:?}");
    let quiet = c.call_tool("test_tool_with_logging", json!({})).await;
    assert!(
        quiet.others.is_empty(),
        "info lines are below the session's level: {quiet:?}"
    );
}

#[tokio::test]
async fn sessions_whose_client_may_be_asked_for_input_stay_on_rmcp() {
    let gw = gateway().await;
    // Declares sampling and elicitation: server->client requests need the session's streams.
    let mut c = Client::initialize(&gw.url("/mcp"), "2025-11-25").await;
    let r = c.call_tool("probe.echo", json!({"n": 1})).await;
    assert!(!r.is_error(), "{r:?}");
    assert!(
        content_type(&r).starts_with("text/event-stream"),
        "served by rmcp's session: {r:?}"
    );
}

#[tokio::test]
async fn a_client_can_cancel_a_call_the_direct_path_serves() {
    let gw = gateway().await;
    let url = gw.url("/mcp");
    let mut c = plain_session(&url).await;
    let session = c.session.clone().unwrap();
    let started = std::time::Instant::now();
    let call = tokio::spawn(async move { c.call_tool("probe.sleep", json!({"ms": 20_000})).await });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let mut canceller = Client::new(&url);
    canceller.session = Some(session);
    canceller.version = "2025-11-25".into();
    // The first request of the spawned client has id 1.
    let note = canceller
        .post_raw(
            json!({"jsonrpc": "2.0", "method": "notifications/cancelled",
                   "params": {"requestId": 1, "reason": "the user gave up"}}),
            &[],
        )
        .await;
    assert_eq!(note.status, 202, "{note:?}");
    let answered = call.await.unwrap();
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "the call stopped when cancelled: {answered:?}"
    );
}

#[tokio::test]
async fn a_session_used_only_on_the_direct_path_does_not_idle_out() {
    let gw = TestGateway::from_toml(&format!(
        r#"
        [server]
        session_idle_timeout_secs = 1
        [auth]
        mode = "none"
        [[tenant]]
        id = "t"
        plugins = [{}]
        "#,
        toml_path(&plugin("probe")),
    ))
    .await;
    let mut c = plain_session(&gw.url("/mcp")).await;
    // Three seconds of calls, each on the direct path, none seen by rmcp's session worker.
    for _ in 0..12 {
        let r = c.call_tool("probe.echo", json!({})).await;
        assert_eq!(r.status, 200, "{r:?}");
        assert!(content_type(&r).starts_with("application/json"), "{r:?}");
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    // The session is still open for rmcp's own path.
    c.accept = Some(WEIGHTED_ACCEPT.into());
    let r = c.call_tool("probe.echo", json!({})).await;
    assert_eq!(r.status, 200, "the session stayed open while used: {r:?}");
    // And unused, it idles out as configured.
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    let r = c.call_tool("probe.echo", json!({})).await;
    assert_eq!(r.status, 404, "an idle session is closed: {r:?}");
}

#[tokio::test]
async fn a_session_id_from_another_tenant_is_unknown_on_the_direct_path() {
    let probe = toml_path(&plugin("probe"));
    let gw = TestGateway::from_toml(&format!(
        r#"
        [auth]
        mode = "none"
        [[tenant]]
        id = "a"
        path = "/a/mcp"
        plugins = [{probe}]
        [[tenant]]
        id = "b"
        path = "/b/mcp"
        plugins = [{probe}]
        "#,
    ))
    .await;
    let mut at_a = plain_session(&gw.url("/a/mcp")).await;
    let served = at_a.call_tool("probe.echo", json!({})).await;
    assert!(
        content_type(&served).starts_with("application/json"),
        "{served:?}"
    );
    let mut at_b = Client::new(&gw.url("/b/mcp"));
    at_b.session = at_a.session.clone();
    at_b.version = "2025-11-25".into();
    let r = at_b.call_tool("probe.echo", json!({})).await;
    assert_eq!(
        r.status, 404,
        "tenant a's session means nothing at tenant b: {r:?}"
    );
}
