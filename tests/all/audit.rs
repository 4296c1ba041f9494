//! The audit record (#33): a scripted run — refused unauthenticated, allowed, refused for a
//! scope, refused by a policy — leaves exactly those events, in order, in a hash-chained file
//! that `portcullis audit verify` accepts, and rejects once a line is edited, removed or the
//! tail cut; no token is in it.

use serde_json::{Value, json};

use crate::support::peers::{TestIssuer, now};
use crate::support::{BinaryGateway, Client, plugin, tempdir, toml_path};

const KEY: &str = "an audit checkpoint key for the tests";

fn verify(file: &std::path::Path) -> (bool, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["audit", "verify"])
        .arg(file)
        .env("PORTCULLIS_AUDIT_KEY", KEY)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[tokio::test]
async fn a_scripted_run_is_recorded_in_order_and_any_tampering_is_found() {
    let issuer = TestIssuer::start(&["a"]).await;
    let dir = tempdir();
    let policy = dir.join("p.cedar");
    std::fs::write(
        &policy,
        r#"permit (principal, action, resource);
@id("transfers-below-500")
forbid (principal, action == Portcullis::Action::"payments.transfer", resource)
when { context has arguments && context.arguments.amount.greaterThanOrEqual(decimal("500.0")) };"#,
    )
    .unwrap();
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
        tools = ["payments.transfer"]
        [tenant.policy]
        files = [{policy}]
        "#,
        issuer = issuer.url,
        file = toml_path(&file),
        payments = toml_path(&plugin("payments")),
        policy = toml_path(&policy),
    );
    let gw = BinaryGateway::start(&body, &[("PORTCULLIS_AUDIT_KEY", KEY)]).await;
    let url = format!("{}/mcp", gw.base);
    let token = |scope: &str| {
        let iat = now();
        issuer.token(
            "a",
            json!({"iss": issuer.url, "sub": "alice", "aud": url, "iat": iat, "exp": iat + 900,
                   "scope": scope, "client_id": "app"}),
        )
    };
    let (writer, reader) = (token("payments:write"), token("other"));
    let transfer = |amount: u32| json!({"amount": amount, "to": "DE02"});
    // 1. No token. 2. Allowed. 3. Without the tool's scope. 4. Refused by a policy.
    let r = Client::modern(&url)
        .call_tool("payments.transfer", transfer(1))
        .await;
    assert_eq!(r.status, 401);
    let r = Client::modern(&url)
        .bearer(&writer)
        .call_tool("payments.transfer", transfer(100))
        .await;
    assert_eq!(r.text(), "transferred 100.00 to DE02 for alice");
    let r = Client::modern(&url)
        .bearer(&reader)
        .call_tool("payments.transfer", transfer(100))
        .await;
    assert_eq!(r.status, 403);
    let r = Client::modern(&url)
        .bearer(&writer)
        .call_tool("payments.transfer", transfer(900))
        .await;
    assert!(r.text().contains("transfers-below-500"), "{r:?}");
    // Stopped as an orchestrator stops it: the file ends with its final checkpoint.
    gw.terminate().await;

    let text = std::fs::read_to_string(&file).unwrap();
    for secret in [writer.as_str(), reader.as_str(), KEY] {
        assert!(!text.contains(secret), "a secret in the audit file");
    }
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let events: Vec<(String, String, String)> = lines
        .iter()
        .filter(|l| l["event"] != "checkpoint")
        .map(|l| {
            let s = |k: &str| l[k].as_str().unwrap_or_default().to_string();
            (s("event"), s("by"), s("decision"))
        })
        .collect();
    let expected: Vec<(String, String, String)> = [
        ("request", "missing_token", ""),
        ("call", "", "allow"),
        ("request", "", ""),
        ("request", "insufficient_scope", ""),
        ("call", "transfers-below-500", "deny"),
        ("request", "", ""),
    ]
    .iter()
    .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
    .collect();
    assert_eq!(events, expected, "{text}");
    let allowed = lines.iter().find(|l| l["event"] == "call").unwrap();
    assert_eq!(
        allowed["caller"],
        json!({"issuer": issuer.url, "subject": "alice", "client_id": "app"})
    );
    assert_eq!(allowed["plugin"], "payments");
    assert_eq!(lines.last().unwrap()["final"], true, "{text}");

    let (ok, said) = verify(&file);
    assert!(ok, "{said}");
    // Each kind of tampering fails verification, naming the line.
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
    edited[1] = edited[1].replace("\"allow\"", "\"deny\"");
    let mut removed = all();
    removed.remove(2);
    let mut cut = all();
    cut.pop();
    for (name, tampered) in [("edited", edited), ("removed", removed), ("cut", cut)] {
        let (ok, said) = write(tampered);
        assert!(!ok && said.contains("FAILED"), "{name}: {said}");
    }
}
