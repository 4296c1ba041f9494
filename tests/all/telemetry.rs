//! OpenTelemetry end to end: the real `portcullis` binary exports over OTLP/HTTP to a real
//! receiver (`tests/py/otlp_receiver.py`, decoding with the official `opentelemetry-proto`
//! messages), and a tool call that reaches a downstream API through a token exchange must
//! arrive as one span tree continuing the caller's trace, with the trace carried on to the
//! API, metrics for what happened, and no token or secret anywhere in what was exported.

use serde_json::{Value, json};

use crate::support::Client;
use crate::support::peers::{DownstreamApi, Receiver, exchange_gateway_with};

fn find<'a>(spans: &'a [Value], name: &str, trace: &str) -> &'a Value {
    spans
        .iter()
        .find(|s| s["name"] == name && s["trace_id"] == trace)
        .unwrap_or_else(|| panic!("no span {name} in trace {trace}: {spans:#?}"))
}

fn child_of<'a>(spans: &'a [Value], parent: &Value, prefix: &str) -> &'a Value {
    spans
        .iter()
        .find(|s| {
            s["parent_span_id"] == parent["span_id"]
                && s["name"].as_str().unwrap().starts_with(prefix)
        })
        .unwrap_or_else(|| panic!("no span `{prefix}…` under {}: {spans:#?}", parent["name"]))
}

/// The exchange gateway exporting spans (every 100 ms) and metrics (every 300 ms) to `rx`.
async fn exporting_gateway(
    rx: &Receiver,
    api: &DownstreamApi,
) -> (crate::support::BinaryGateway, String) {
    let telemetry = format!(
        "[telemetry]\nendpoint = \"{}\"\nmetrics_interval_ms = 300\n",
        rx.base
    );
    exchange_gateway_with(
        &api.base,
        None,
        &telemetry,
        &[("OTEL_BSP_SCHEDULE_DELAY", "100")],
    )
    .await
}

const SPAN_SERVER: i64 = 2;
const SPAN_CLIENT: i64 = 3;

#[tokio::test]
async fn a_tool_call_is_one_trace_from_the_caller_through_the_exchange_to_the_api() {
    let rx = Receiver::start().await;
    let api = DownstreamApi::start().await;
    let telemetry = format!(
        "[telemetry]\nendpoint = \"{}\"\nmetrics_interval_ms = 300\nservice_name = \"portcullis-under-test\"\n\
         resource = {{ \"deployment.environment.name\" = \"test\" }}\n",
        rx.base
    );
    let (gw, user_token) = exchange_gateway_with(
        &api.base,
        None,
        &telemetry,
        &[
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
            ("PORTCULLIS_LOG", "info"),
        ],
    )
    .await;
    let url = format!("{}/mcp", gw.base);

    // A 2025-11-25 session, and a caller that is itself traced: the gateway continues its trace.
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let caller_span = "00f067aa0ba902b7";
    let traceparent = format!("00-{trace}-{caller_span}-01");
    let mut client =
        Client::initialize_with(&url, "2025-11-25", Some(&format!("Bearer {user_token}"))).await;
    let session = client.session.clone().unwrap();
    let r = client
        .request_with(
            "tools/call",
            json!({"name": "probe.fetch", "arguments": {"service": "notes", "path": "/echo"}}),
            &[("traceparent", &traceparent)],
        )
        .await;
    assert!(!r.is_error(), "{r:?}");
    let seen_by_api: Value = serde_json::from_str(
        r.text()
            .strip_prefix("status 200: ")
            .expect("the API answered"),
    )
    .unwrap();
    let exchanged = api
        .authorizations()
        .last()
        .cloned()
        .flatten()
        .expect("the API received a credential")
        .strip_prefix("Bearer ")
        .unwrap()
        .to_string();

    let spans = rx
        .wait("spans", |s| {
            s.iter()
                .any(|x| x["trace_id"] == trace && x["name"].as_str().unwrap().starts_with("GET "))
                && s.iter()
                    .any(|x| x["trace_id"] == trace && x["name"] == "POST /mcp")
                && s.iter()
                    .any(|x| x["trace_id"] == trace && x["name"] == "tools/call probe.fetch")
        })
        .await;
    let http = find(&spans, "POST /mcp", trace);
    assert_eq!(
        http["parent_span_id"], caller_span,
        "continues the caller's span"
    );
    assert_eq!(http["kind"], SPAN_SERVER);
    assert_eq!(http["service"], "portcullis-under-test");
    assert_eq!(http["resource"]["deployment.environment.name"], "test");
    assert_eq!(http["attributes"]["http.request.method"], "POST");
    assert_eq!(http["attributes"]["http.response.status_code"], 200);
    assert_eq!(http["attributes"]["portcullis.tenant"], "t");

    let mcp = child_of(&spans, http, "tools/call");
    let a = &mcp["attributes"];
    assert_eq!(a["mcp.method.name"], "tools/call");
    assert_eq!(a["gen_ai.tool.name"], "probe.fetch");
    assert_eq!(a["gen_ai.operation.name"], "execute_tool");
    assert_eq!(a["portcullis.tenant"], "t");
    assert_eq!(a["portcullis.plugin"], "probe");
    assert_eq!(a["portcullis.plugin.version"].as_str().unwrap().len(), 12);
    assert_eq!(a["mcp.protocol.version"], "2025-11-25");
    let hashed = a["mcp.session.id"].as_str().unwrap();
    assert_eq!(hashed.len(), 16);
    assert!(
        !session.contains(hashed) && hashed != session,
        "the session id is hashed"
    );

    let plugin = child_of(&spans, mcp, "plugin probe call-tool");
    assert_eq!(plugin["attributes"]["portcullis.outcome"], "ok");
    assert_eq!(plugin["attributes"]["portcullis.item"], "probe.fetch");

    let downstream = child_of(&spans, plugin, "GET notes");
    assert_eq!(downstream["kind"], SPAN_CLIENT);
    assert_eq!(downstream["attributes"]["portcullis.service"], "notes");
    assert_eq!(downstream["attributes"]["http.response.status_code"], 200);
    assert_eq!(downstream["attributes"]["url.path"], "/api/echo");

    // Obtaining the service's token is part of the downstream request.
    let token = child_of(&spans, downstream, "token_exchange notes");
    assert_eq!(token["kind"], SPAN_CLIENT);
    assert_eq!(token["attributes"]["oauth.grant_type"], "token_exchange");
    assert_eq!(token["attributes"]["portcullis.cache"], "issued");
    assert_eq!(token["attributes"]["http.response.status_code"], 200);

    // The API got the same trace, with the downstream span as its parent.
    let carried = seen_by_api["headers"]["traceparent"].as_str().unwrap();
    assert_eq!(
        carried,
        format!("00-{trace}-{}-01", downstream["span_id"].as_str().unwrap()),
        "the downstream request carries the trace"
    );

    // A second call finds the exchanged token cached, inside its own trace this time.
    let r = client
        .call_tool("probe.fetch", json!({"service": "notes", "path": "/echo"}))
        .await;
    assert!(!r.is_error(), "{r:?}");
    let spans = rx
        .wait("spans", |s| {
            s.iter().any(|x| {
                x["name"] == "token_exchange notes"
                    && x["attributes"]["portcullis.cache"] == "hit"
                    && x["trace_id"] != trace
            })
        })
        .await;
    let hit = spans
        .iter()
        .find(|x| x["attributes"]["portcullis.cache"] == "hit")
        .unwrap();
    assert!(hit["trace_id"].as_str().unwrap().len() == 32 && hit["trace_id"] != "0".repeat(32));

    // A request without a token is denied; a plugin that traps is one.
    let denied = Client::new(&url)
        .post_raw(
            json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}),
            &[],
        )
        .await;
    assert_eq!(denied.status, 401);
    let trapped = client.call_tool("probe.trap", json!({})).await;
    assert!(trapped.is_error());

    // Metrics for all of it.
    let points = rx
        .wait("metrics", |p| {
            let has = |name: &str, pred: &dyn Fn(&Value) -> bool| {
                p.iter()
                    .any(|x| x["name"] == name && pred(&x["attributes"]))
            };
            has("portcullis.tool.calls", &|a| {
                a["gen_ai.tool.name"] == "probe.fetch"
                    && a["portcullis.outcome"] == "ok"
                    && a["portcullis.plugin"] == "probe"
                    && a["portcullis.tenant"] == "t"
            }) && has("portcullis.tool.calls", &|a| {
                a["gen_ai.tool.name"] == "probe.trap" && a["portcullis.outcome"] == "tool_error"
            }) && has("portcullis.sandbox.traps", &|a| {
                a["portcullis.outcome"] == "trap"
            }) && has("portcullis.auth.denials", &|a| {
                a["portcullis.reason"] == "missing_token"
            }) && has("portcullis.downstream.requests", &|a| {
                a["portcullis.service"] == "notes" && a["portcullis.outcome"] == "200"
            }) && has("portcullis.token.requests", &|a| {
                a["portcullis.outcome"] == "issued"
            }) && has("portcullis.token.requests", &|a| {
                a["portcullis.outcome"] == "hit"
            }) && has("portcullis.plugin.loads", &|a| {
                a["portcullis.outcome"] == "loaded"
            }) && has("http.server.request.duration", &|a| {
                a["http.response.status_code"] == "401"
            }) && has("mcp.server.operation.duration", &|a| {
                a["mcp.method.name"] == "tools/call"
            }) && has("portcullis.plugin.call.duration", &|a| {
                a["portcullis.plugin.export"] == "call-tool"
            })
        })
        .await;
    assert!(!points.is_empty());

    // Nothing secret was exported: not the caller's token, not the exchanged one, not the
    // gateway's client secret, not the raw session id.
    let raw = rx.get("raw").await + &rx.get("spans").await + &rx.get("metrics").await;
    for secret in [user_token.as_str(), exchanged.as_str()] {
        for part in secret.split('.').filter(|p| p.len() > 8) {
            assert!(!raw.contains(part), "a token segment was exported");
        }
    }
    assert!(!raw.contains("exchange-secret"));
    assert!(!raw.contains(&session));

    // Log lines name the trace they belong to.
    let log = gw.stop().await;
    assert!(
        log.lines()
            .any(|l| l.contains(&format!("trace_id={trace}")) && l.contains("downstream call")),
        "log lines carry the trace id:\n{log}"
    );
}

#[tokio::test]
async fn a_traceparent_in_the_request_meta_is_continued_too() {
    let rx = Receiver::start().await;
    let api = DownstreamApi::start().await;
    let (gw, user_token) = exporting_gateway(&rx, &api).await;
    let trace = "0af7651916cd43dd8448eb211c80319c";
    let parent = "b7ad6b7169203331";
    // Stateless 2026-07-28 request, trace context only in `_meta` (as MCP defines it).
    let r = Client::modern(&format!("{}/mcp", gw.base))
        .bearer(&user_token)
        .request(
            "tools/call",
            json!({"name": "probe.echo", "arguments": {},
                   "_meta": {"traceparent": format!("00-{trace}-{parent}-01")}}),
        )
        .await;
    assert!(!r.is_error(), "{r:?}");
    let spans = rx
        .wait("spans", |s| {
            s.iter()
                .any(|x| x["trace_id"] == trace && x["name"] == "plugin probe call-tool")
        })
        .await;
    let mcp = find(&spans, "tools/call probe.echo", trace);
    assert_eq!(mcp["parent_span_id"], parent);
    assert_eq!(mcp["attributes"]["mcp.protocol.version"], "2026-07-28");
    let plugin = child_of(&spans, mcp, "plugin probe");
    assert_eq!(plugin["attributes"]["portcullis.outcome"], "ok");
    gw.stop().await;
}

/// #16 AC2 and AC6, as the attack: 100 tool names of 64 KiB chosen by the caller add no
/// metric series and no long attribute anywhere (an unknown tool is recorded as `unknown`),
/// and a request refused with 404 (a session id this tenant does not know) exports its
/// `mcp.request` span with an error status.
#[tokio::test]
async fn caller_chosen_names_never_become_attributes_and_refusals_mark_their_spans() {
    let rx = Receiver::start().await;
    let api = DownstreamApi::start().await;
    let (gw, user_token) = exporting_gateway(&rx, &api).await;
    let url = format!("{}/mcp", gw.base);
    let mut client = Client::modern(&url).bearer(&user_token);
    for i in 0..100 {
        let name = format!("{i:03}{}", "x".repeat(64 << 10));
        let r = client.call_tool(&name, json!({})).await;
        assert_eq!(r.error()["code"], -32602, "{i}");
    }
    let ok = client.call_tool("probe.echo", json!({})).await;
    assert!(!ok.is_error(), "{ok:?}");

    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let stranger = Client::new(&url).bearer(&user_token);
    let refused = stranger
        .post_raw(
            json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
                   "params": {"name": "probe.echo", "arguments": {}}}),
            &[
                ("mcp-session-id", "no-such-session"),
                ("mcp-protocol-version", "2025-11-25"),
                ("traceparent", &format!("00-{trace}-00f067aa0ba902b7-01")),
            ],
        )
        .await;
    assert_eq!(refused.status, 404, "{refused:?}");

    let spans = rx
        .wait("spans", |s| {
            s.iter()
                .any(|x| x["trace_id"] == trace && x["name"] == "tools/call probe.echo")
        })
        .await;
    let span = find(&spans, "tools/call probe.echo", trace);
    assert_eq!(span["status"]["code"], 2, "error status: {span}");
    let points = rx
        .wait("metrics", |p| {
            p.iter().any(|x| {
                x["name"] == "mcp.server.operation.duration"
                    && x["attributes"]["gen_ai.tool.name"] == "unknown"
                    && x["count"].as_u64() >= Some(100)
            })
        })
        .await;
    let tool_series: std::collections::BTreeSet<String> = points
        .iter()
        .filter_map(|p| p["attributes"]["gen_ai.tool.name"].as_str())
        .map(str::to_string)
        .collect();
    assert!(tool_series.len() <= 3, "bounded: {tool_series:?}");
    let exported = rx.get("spans").await + &rx.get("metrics").await;
    assert!(
        !exported.contains(&"x".repeat(1024)),
        "no long caller-chosen value exported"
    );
    gw.stop().await;
}

/// Exports are cumulative: the latest count of each series of metric `name`, summed over
/// the series with `key` = `value` (one per status code, say).
fn count(points: &[Value], name: &str, key: &str, value: &str) -> u64 {
    let mut latest = std::collections::BTreeMap::new();
    for x in points
        .iter()
        .filter(|x| x["name"] == name && x["attributes"][key] == value)
    {
        let n = x["count"].as_u64().or_else(|| x["value"].as_u64());
        let at = latest.entry(x["attributes"].to_string()).or_insert(0);
        *at = (*at).max(n.unwrap_or(0));
    }
    latest.values().sum()
}

/// #28 AC3. Before: any method token a client sent (hyper accepts extension methods of
/// hundreds of KiB), answered 401 or not, became its own `http.server.request.duration`
/// series and span name, and any service name a plugin made up became a
/// `portcullis.downstream.requests` series. Now both come from closed sets: the HTTP
/// methods and `_OTHER`, the configured services and `unknown`.
#[tokio::test]
async fn methods_and_service_names_the_caller_or_plugin_chooses_make_no_series() {
    let rx = Receiver::start().await;
    let api = DownstreamApi::start().await;
    let (gw, user_token) = exporting_gateway(&rx, &api).await;
    let url = format!("{}/mcp", gw.base);
    // One round: 100 made-up methods of 128 KiB each, 100 made-up service names.
    let round = |r: usize| {
        let (url, token) = (url.clone(), user_token.clone());
        async move {
            let http = reqwest::Client::new();
            for i in 0..100 {
                let name = format!("M{r}{i:03}{}", "X".repeat(128 << 10));
                let method = reqwest::Method::from_bytes(name.as_bytes()).unwrap();
                let mut req = http.request(method, &url);
                if i % 2 == 0 {
                    req = req.bearer_auth(&token);
                }
                let status = req.send().await.unwrap().status().as_u16();
                assert!([401, 405].contains(&status), "{i}: {status}");
            }
            let mut client = Client::modern(&url).bearer(&token);
            for i in 0..100 {
                let r = client
                    .call_tool(
                        "probe.fetch",
                        json!({"service": format!("made-up-{r}-{i:03}-{}", "s".repeat(4096))}),
                    )
                    .await;
                assert!(r.text().contains("UnknownService"), "{i}: {r:?}");
            }
        }
    };
    round(0).await;
    let others = |p: &[Value]| {
        count(
            p,
            "http.server.request.duration",
            "http.request.method",
            "_OTHER",
        )
    };
    let unknown = |p: &[Value]| {
        count(
            p,
            "portcullis.downstream.requests",
            "portcullis.service",
            "unknown",
        )
    };
    let points = rx
        .wait("metrics", |p| others(p) >= 100 && unknown(p) >= 100)
        .await;
    let values = |name: &str, key: &str| -> std::collections::BTreeSet<String> {
        points
            .iter()
            .filter(|p| p["name"] == name)
            .filter_map(|p| p["attributes"][key].as_str())
            .map(str::to_string)
            .collect()
    };
    let methods = values("http.server.request.duration", "http.request.method");
    assert!(
        methods
            .iter()
            .all(|m| ["GET", "POST", "DELETE", "_OTHER"].contains(&m.as_str())),
        "{methods:?}"
    );
    let services = values("portcullis.downstream.requests", "portcullis.service");
    assert_eq!(services, ["unknown".to_string()].into(), "{services:?}");
    let spans = rx
        .wait("spans", |s| s.iter().any(|x| x["name"] == "_OTHER /mcp"))
        .await;
    assert!(
        spans
            .iter()
            .all(|s| !s["name"].as_str().unwrap().contains("M00")),
        "no span is named after a made-up method"
    );
    let exported = rx.get("spans").await + &rx.get("metrics").await;
    // The plugin's error may be told in a (bounded) log event; never as a series or an
    // attribute.
    assert!(!rx.get("metrics").await.contains("made-up"), "no series");
    assert!(
        spans
            .iter()
            .all(|s| !s["attributes"].to_string().contains("made-up")),
        "no span attribute"
    );
    assert!(
        !exported.contains(&"X".repeat(64)),
        "no long method exported"
    );

    // Nor is anything of them kept: two more rounds (25 MiB of made-up methods, were each
    // kept once) leave the resident memory where the first left it.
    let before = gw.rss_bytes();
    round(1).await;
    round(2).await;
    rx.wait("metrics", |p| others(p) >= 300 && unknown(p) >= 300)
        .await;
    let after = gw.rss_bytes();
    assert!(
        after < before + (8 << 20),
        "resident memory grew from {before} to {after} bytes"
    );
    gw.stop().await;
}
