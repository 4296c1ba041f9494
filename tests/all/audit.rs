//! The audit record (#33): a scripted run against a real authorization server (npm
//! oidc-provider, issuing the user's tokens and exchanging them for the downstream API's) —
//! refused unauthenticated, refused for a scope and stepped up, refused by a policy, a
//! downstream call with a token exchange and one from the cache, a task, a policy reload, a
//! quota refusal — leaves exactly those events, in order, in a hash-chained file that
//! `portcullis audit verify` accepts and rejects once a line is edited, removed, inserted,
//! reordered or the tail cut; the same events reach a real OTLP receiver as log records in
//! the traces of their requests; no token or secret is in either.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::peers::otlp::Receiver;
use crate::support::peers::{DownstreamApi, RealAs};
use crate::support::{BinaryGateway, Client, free_port, plugin, tempdir, toml_path};

const KEY: &str = "an audit checkpoint key for the tests";
const SECRET: &str = "gateway-secret";

fn verify(file: &std::path::Path) -> (bool, String) {
    crate::support::audit_verify(file, KEY)
}

/// The audit file's lines, once one satisfies `ready` (the writer appends as events come).
async fn lines_once(file: &std::path::Path, ready: impl Fn(&Value) -> bool) -> Vec<Value> {
    for _ in 0..200 {
        let lines: Vec<Value> = std::fs::read_to_string(file)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        if lines.iter().any(&ready) {
            return lines;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the audit file never showed the event awaited");
}

/// A plugin's version as the record names it: 12 hex of the component's SHA-256.
fn version(file: &std::path::Path) -> String {
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(std::fs::read(file).unwrap());
    digest.iter().take(6).map(|b| format!("{b:02x}")).collect()
}

/// An event, in short: its kind and what distinguishes it in this run.
fn short(l: &Value) -> String {
    let s = |k: &str| l[k].as_str().unwrap_or_default().to_string();
    match s("event").as_str() {
        "request" => format!("request {} {}", l["status"], s("by")),
        "call" => format!(
            "call {} {} {} {}",
            s("target"),
            s("decision"),
            s("outcome"),
            s("by")
        ),
        "downstream" => format!(
            "downstream {} {} {} {}",
            s("service"),
            s("credential"),
            s("cache"),
            s("status")
        ),
        "task" => format!("task {} {}", s("tool"), s("status")),
        "reload" => format!("reload {} {}", s("what"), l["serving"]),
        other => other.to_string(),
    }
}

#[tokio::test]
async fn a_scripted_run_is_recorded_in_order_verified_and_exported() {
    let receiver = Receiver::start().await;
    let api = DownstreamApi::start().await;
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}/mcp");
    let audience = format!("{}/api", api.base);
    let as_ = RealAs::start_with(
        std::slice::from_ref(&url),
        "mcp:tools notes:read payments:write",
        &[
            ("AS_EXCHANGE_RESOURCES", audience.as_str()),
            ("AS_EXCHANGE_TTL", "600"),
        ],
    )
    .await;
    let dir = tempdir();
    // The payments plugin from a directory of its own, so it can be redeployed.
    let payments = dir.join("payments.wasm");
    std::fs::copy(plugin("payments"), &payments).unwrap();
    let policy = dir.join("p.cedar");
    let permit = "permit (principal, action, resource);\n";
    let below_500 = r#"@id("transfers-below-500")
forbid (principal, action == Portcullis::Action::"payments.transfer", resource)
when { context has arguments && context.arguments.amount.greaterThanOrEqual(decimal("500.0")) };
"#;
    std::fs::write(&policy, format!("{permit}{below_500}")).unwrap();
    let file = dir.join("audit.jsonl");
    let body = format!(
        r#"
        [auth]
        mode = "oauth"
        scopes_supported = ["mcp:tools", "notes:read", "payments:write"]
        [[auth.issuer]]
        issuer = "{issuer}"
        algorithms = ["RS256"]
        [exchange]
        client_id = "gateway"
        client_secret_env = "GATEWAY_SECRET"
        [telemetry]
        endpoint = "{otlp}"
        metrics = false
        [audit]
        file = {file}
        otlp = true
        checkpoint_lines = 5
        [[tenant]]
        id = "t"
        plugins = [{payments}, {probe}, {conformance}]
        [tenant.quota]
        subject_requests_per_minute = 1
        subject_burst = 20
        [tenant.audit]
        arguments = ["payments.transfer"]
        [[tenant.service]]
        name = "notes"
        base_url = "{audience}"
        credential = "token-exchange"
        audience = "{audience}"
        [tenant.plugin.payments]
        tools = ["payments.transfer"]
        [tenant.plugin.probe]
        services = ["notes"]
        [tenant.plugin.conformance]
        tools = ["slow_compute"]
        [tenant.policy]
        files = [{policy}]
        "#,
        issuer = as_.issuer,
        otlp = receiver.base,
        file = toml_path(&file),
        payments = toml_path(&payments),
        probe = toml_path(&plugin("probe")),
        conformance = toml_path(&plugin("conformance")),
        policy = toml_path(&policy),
    );
    let gw = BinaryGateway::start_on_port(
        port,
        &body,
        &[("PORTCULLIS_AUDIT_KEY", KEY), ("GATEWAY_SECRET", SECRET)],
    )
    .await;
    let reader = as_.user_token(&url, "mcp:tools").await;
    let writer = as_
        .user_token(&url, "mcp:tools payments:write notes:read")
        .await;
    let transfer = |amount: u32| json!({"amount": amount, "to": "DE02"});
    let call = |token: Option<&str>, tool: &str, arguments: Value| {
        let mut client = Client::modern(&url);
        if let Some(t) = token {
            client = client.bearer(t);
        }
        let tool = tool.to_string();
        async move { client.call_tool(&tool, arguments).await }
    };

    // 1. No token. 2. Without the tool's scope, 3. then with it (the client stepped up).
    assert_eq!(
        call(None, "payments.transfer", transfer(1)).await.status,
        401
    );
    let r = call(Some(&reader), "payments.transfer", transfer(100)).await;
    assert_eq!(r.status, 403, "{r:?}");
    let r = call(Some(&writer), "payments.transfer", transfer(100)).await;
    assert_eq!(r.text(), "transferred 100.00 to DE02 for alice");
    // 4. Refused by a policy.
    let r = call(Some(&writer), "payments.transfer", transfer(900)).await;
    assert!(r.text().contains("transfers-below-500"), "{r:?}");
    // 5. Downstream, the user's token exchanged at the AS; 6. the exchanged token reused.
    let fetch = json!({"service": "notes", "path": "/echo"});
    for _ in 0..2 {
        let r = call(Some(&writer), "probe.fetch", fetch.clone()).await;
        assert!(r.text().starts_with("status 200: "), "{r:?}");
    }
    assert_eq!(as_.downstream_tokens_issued().await, 1);
    // 7. A call that becomes a task; its end is recorded once it ends.
    let caps = json!({"io.modelcontextprotocol/clientCapabilities":
        {"extensions": {"io.modelcontextprotocol/tasks": {}}}});
    let created = Client::modern(&url)
        .bearer(&writer)
        .request(
            "tools/call",
            json!({"name": "slow_compute", "arguments": {"seconds": 0}, "_meta": caps}),
        )
        .await;
    assert_eq!(created.result()["resultType"], "task", "{created:?}");
    let task_id = created.result()["taskId"].as_str().unwrap().to_string();
    lines_once(&file, |l| l["event"] == "task").await;
    // 8. The policies change on disk: reloaded.
    std::fs::write(
        &policy,
        format!("{permit}{below_500}@id(\"reads\")\npermit (principal, action == Portcullis::Action::\"probe.fetch\", resource);\n"),
    )
    .unwrap();
    lines_once(&file, |l| l["event"] == "reload").await;
    // 9. The payments plugin is redeployed (written aside, renamed over): reloaded.
    let staged = dir.join("payments.wasm.new");
    std::fs::copy(plugin("payments"), &staged).unwrap();
    std::fs::rename(&staged, &payments).unwrap();
    lines_once(&file, |l| l["event"] == "reload" && l["what"] == "plugins").await;
    // 10. The user's quota runs out.
    let mut allowed = 0;
    loop {
        let r = call(Some(&writer), "payments.transfer", transfer(1)).await;
        if r.status == 429 {
            break;
        }
        assert_eq!(r.text(), "transferred 1.00 to DE02 for alice");
        allowed += 1;
        assert!(allowed < 25, "the quota never refused");
    }
    // Stopped as an orchestrator stops it: the file ends with its final checkpoint, and the
    // log records are flushed to the receiver.
    gw.terminate().await;

    let text = std::fs::read_to_string(&file).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let events: Vec<&Value> = lines
        .iter()
        .filter(|l| l["event"] != "checkpoint")
        .collect();
    let mut expected: Vec<String> = [
        "request 401 missing_token",
        "request 403 insufficient_scope",
        "call payments.transfer allow ok ",
        "request 200 ",
        "call payments.transfer deny denied transfers-below-500",
        "request 200 ",
        "downstream notes token-exchange issued 200",
        "call probe.fetch allow ok ",
        "request 200 ",
        "downstream notes token-exchange hit 200",
        "call probe.fetch allow ok ",
        "request 200 ",
        "call slow_compute allow task ",
        "request 200 ",
        "task slow_compute completed",
        r#"reload policies ["p:policy0","transfers-below-500","reads"]"#,
        &format!(
            "reload plugins {}",
            json!([
                format!("payments@{}", version(&payments)),
                format!("probe@{}", version(&plugin("probe"))),
                format!("conformance@{}", version(&plugin("conformance"))),
            ])
        ),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for _ in 0..allowed {
        expected.push("call payments.transfer allow ok ".into());
        expected.push("request 200 ".into());
    }
    expected.push("request 429 quota".into());
    // The task's end is after the call that created it; where it falls among the requests
    // that ran meanwhile is not fixed (it ran on its own).
    let got: Vec<String> = events.iter().map(|l| short(l)).collect();
    let position = |list: &[String], what: &str| list.iter().position(|e| e == what);
    let task_at = position(&got, "task slow_compute completed").expect("the task's end");
    assert!(task_at > position(&got, "call slow_compute allow task ").unwrap());
    let without_task = |list: &[String]| -> Vec<String> {
        list.iter()
            .filter(|e| !e.starts_with("task "))
            .cloned()
            .collect()
    };
    assert_eq!(without_task(&got), without_task(&expected), "{text}");

    // What the events say beyond their kind.
    let find = |what: &str| events[position(&got, what).unwrap()];
    let allowed_call = find("call payments.transfer allow ok ");
    assert_eq!(
        allowed_call["caller"],
        json!({"issuer": as_.issuer, "subject": "alice", "client_id": "test-public"})
    );
    assert_eq!(allowed_call["plugin"], "payments");
    assert_eq!(allowed_call["version"].as_str().unwrap().len(), 12);
    assert_eq!(allowed_call["arguments"], transfer(100), "opted in");
    assert_eq!(
        find("call payments.transfer deny denied transfers-below-500")["arguments"],
        transfer(900)
    );
    assert!(
        find("call probe.fetch allow ok ")
            .get("arguments")
            .is_none(),
        "not opted in"
    );
    assert_eq!(
        find("call slow_compute allow task ")["task"],
        task_id.as_str()
    );
    assert_eq!(events[task_at]["task"], task_id.as_str());
    assert_eq!(lines.last().unwrap()["final"], true, "{text}");

    // No token, proof or secret in the file.
    let exchanged = api.bearer(0);
    let secrets = [
        writer.as_str(),
        reader.as_str(),
        exchanged.as_str(),
        KEY,
        SECRET,
    ];
    for secret in secrets {
        assert!(!text.contains(secret), "a secret in the audit file");
    }

    // The same events reached the OTLP receiver as log records, each in its request's trace.
    let records = receiver.wait("logs", |r| r.len() >= events.len()).await;
    assert_eq!(records.len(), events.len());
    for (record, event) in records.iter().zip(&events) {
        let body: Value = serde_json::from_str(record["body"].as_str().unwrap()).unwrap();
        // The event as the file has it, but for the file's own chain.
        let unchained: serde_json::Map<String, Value> = event
            .as_object()
            .unwrap()
            .iter()
            .filter(|(k, _)| *k != "seq" && *k != "prev")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        assert_eq!(body, Value::Object(unchained));
        assert_eq!(
            record["event_name"],
            format!("portcullis.audit.{}", event["event"].as_str().unwrap())
        );
        assert_eq!(record["attributes"]["tenant"], "t");
        if let Some(trace) = event["trace_id"].as_str() {
            assert_eq!(record["trace_id"], trace);
        }
    }
    let traced = events
        .iter()
        .filter(|e| e["event"] != "reload")
        .all(|e| e["trace_id"].as_str().is_some_and(|t| t.len() == 32));
    assert!(traced, "every request's event carries its trace id: {text}");
    let raw = receiver.get("raw").await;
    for secret in secrets {
        assert!(!raw.contains(secret), "a secret in the exported logs");
    }

    // `audit verify` accepts the file, and finds each kind of tampering.
    let (ok, said) = verify(&file);
    assert!(ok, "{said}");
    let raw: Vec<&str> = text.lines().collect();
    let write = |lines: Vec<String>| {
        let tampered = dir.join("tampered.jsonl");
        std::fs::write(
            &tampered,
            lines.iter().map(|l| format!("{l}\n")).collect::<String>(),
        )
        .unwrap();
        verify(&tampered)
    };
    let all = || raw.iter().map(|l| l.to_string()).collect::<Vec<String>>();
    let mut edited = all();
    edited[2] = edited[2].replace("\"allow\"", "\"deny\"");
    let mut removed = all();
    removed.remove(2);
    let mut inserted = all();
    inserted.insert(3, raw[3].to_string());
    let mut reordered = all();
    reordered.swap(2, 3);
    let mut cut = all();
    cut.pop();
    for (name, tampered) in [
        ("edited", edited),
        ("removed", removed),
        ("inserted", inserted),
        ("reordered", reordered),
        ("cut", cut),
    ] {
        let (ok, said) = write(tampered);
        assert!(!ok && said.contains("FAILED"), "{name}: {said}");
    }
}

/// #32/#33: the record of a call a person approved names the approval it spent; the call
/// refused for want of one names that at the front.
#[tokio::test]
async fn the_record_names_the_approval_a_call_spent() {
    use crate::support::peers::{TestIssuer, now};
    let issuer = TestIssuer::start(&["a"]).await;
    let dir = tempdir();
    let file = dir.join("audit.jsonl");
    let body = format!(
        r#"
        [auth]
        mode = "oauth"
        scopes_supported = ["payments:write"]
        [[auth.issuer]]
        issuer = "{issuer}"
        [audit]
        file = {file}
        [[tenant]]
        id = "a"
        plugins = [{payments}]
        [tenant.plugin.payments]
        tools = ["payments.refund"]
        "#,
        issuer = issuer.url,
        file = toml_path(&file),
        payments = toml_path(&plugin("payments")),
    );
    let gw = BinaryGateway::start(&body, &[("PORTCULLIS_AUDIT_KEY", KEY)]).await;
    let url = format!("{}/mcp", gw.base);
    let refund = json!({"amount": "5.00", "currency": "EUR", "account": "DE02"});
    let token = |details: Value| {
        let iat = now();
        issuer.token(
            "a",
            json!({"iss": issuer.url, "sub": "alice", "aud": url, "iat": iat, "exp": iat + 900,
                   "scope": "payments:write", "jti": format!("t-{}", details.to_string().len()),
                   "authorization_details": details}),
        )
    };
    let plain = token(json!([]));
    let r = Client::modern(&url)
        .bearer(&plain)
        .call_tool("payments.refund", refund.clone())
        .await;
    assert_eq!(r.status, 403, "{r:?}");
    let approved = token(json!([{"type": "payment_refund", "locations": [url],
        "actions": ["tools/call"], "tool": "payments.refund", "subject": "alice",
        "arguments": refund}]));
    let r = Client::modern(&url)
        .bearer(&approved)
        .call_tool("payments.refund", refund.clone())
        .await;
    assert!(r.text().starts_with("refunded 5.00 EUR to DE02"), "{r:?}");
    gw.terminate().await;
    let lines: Vec<Value> = std::fs::read_to_string(&file)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let events: Vec<String> = lines
        .iter()
        .filter(|l| l["event"] != "checkpoint")
        .map(|l| {
            let s = |k: &str| l[k].as_str().unwrap_or_default().to_string();
            format!(
                "{} {} {} {}",
                s("event"),
                s("by"),
                s("decision"),
                s("approval")
            )
        })
        .collect();
    assert_eq!(
        events,
        [
            "request insufficient_authorization  ",
            "call  allow payment_refund",
            "request   "
        ],
        "{lines:?}"
    );
}
