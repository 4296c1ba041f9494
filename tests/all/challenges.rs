//! Challenges every client can act on (#31 AC3): a tool call that more authorization would
//! cure is refused with the HTTP 401/403 challenge (what the SDK clients act on: their
//! step-up runs in `dev_as::typescript_sdk_client_completes_the_flow_against_the_dev_as` and
//! `real_as`) and, in the same answer's body, a tool result with `isError`,
//! `_meta["mcp/www_authenticate"]` holding the same challenges and the SEP-2643 denial
//! envelope — read here exactly as a client that acts only on tool results (ChatGPT) reads
//! it. Both eras; connect-time 401s stay plain; an unauthenticated body over 64 KiB is not
//! read for it; `challenges = "transport"` turns the in-band form off; a hidden tool answers
//! like an unknown one.

use serde_json::{Value, json};

use crate::support::dpop::dev_as_token;
use crate::support::{Client, Reply, TestGateway, get_json, plugin, toml_path};

/// A gateway with its development AS; `hello.whoami` needs `mcp:admin`.
async fn gateway(tenant_extra: &str, auth_extra: &str) -> TestGateway {
    TestGateway::from_toml(&format!(
        r#"
        [auth]
        mode = "oauth"
        scopes_supported = ["mcp:tools", "mcp:admin"]
        challenge_scopes = ["mcp:tools"]
        {auth_extra}
        [dev_as]
        enabled = true
        auto_approve = true
        [[tenant]]
        id = "default"
        plugins = [{hello}]
        {tenant_extra}
        [tenant.plugin.hello]
        scopes = {{ "hello.whoami" = ["mcp:admin"] }}
        "#,
        hello = toml_path(&plugin("hello")),
    ))
    .await
}

fn header(r: &Reply) -> String {
    r.headers["www-authenticate"].to_str().unwrap().to_string()
}

/// The in-band form as a tool-result-only client reads it: an `isError` result whose
/// `_meta["mcp/www_authenticate"]` lists challenges; it takes the first one's
/// `resource_metadata` and `scope` and signs in from there.
fn in_band(r: &Reply) -> (Vec<String>, Value) {
    let body: Value = serde_json::from_str(&r.body).unwrap_or_else(|_| panic!("{r:?}"));
    let result = &body["result"];
    assert_eq!(result["isError"], true, "{body}");
    let challenges = result["_meta"]["mcp/www_authenticate"]
        .as_array()
        .unwrap_or_else(|| panic!("no in-band challenge: {body}"))
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect();
    (
        challenges,
        result["_meta"]["io.modelcontextprotocol/authorization"].clone(),
    )
}

/// `name="value"` of a challenge.
fn param<'c>(challenge: &'c str, name: &str) -> Option<&'c str> {
    let at = challenge.find(&format!("{name}=\""))? + name.len() + 2;
    challenge[at..].split('"').next()
}

#[tokio::test]
async fn a_tool_call_missing_a_scope_is_refused_in_both_forms_in_both_eras() {
    let gw = gateway("", "").await;
    let url = gw.url("/mcp");
    let token = dev_as_token(&gw.base, None, &url, "mcp:tools").await["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let mut stateless = Client::modern(&url).bearer(&token);
    let mut session =
        Client::initialize_with(&url, "2025-11-25", Some(&format!("Bearer {token}"))).await;
    for (era, r) in [
        (
            "2026-07-28",
            stateless.call_tool("hello.whoami", json!({})).await,
        ),
        (
            "2025-11-25",
            session.call_tool("hello.whoami", json!({})).await,
        ),
    ] {
        assert_eq!(r.status, 403, "{era}: {r:?}");
        let (challenges, envelope) = in_band(&r);
        // The payload is the header's challenges, one per entry.
        assert_eq!(challenges.join(", "), header(&r), "{era}");
        assert!(
            challenges[0].starts_with("Bearer error=\"insufficient_scope\""),
            "{era}: {challenges:?}"
        );
        assert_eq!(envelope["reason"], "insufficient_authorization", "{era}");
        assert_eq!(envelope["remediation"], "available", "{era}");
        // A tool-result-only client finds where to sign in, and with which scopes.
        let scope = param(&challenges[0], "scope").unwrap();
        assert!(
            scope.contains("mcp:admin") && scope.contains("mcp:tools"),
            "{scope}"
        );
        let prm = get_json(param(&challenges[0], "resource_metadata").unwrap()).await;
        assert_eq!(prm["resource"], url, "{prm}");
        assert_eq!(
            prm["authorization_servers"][0],
            format!("{}/dev-as", gw.base),
            "{prm}"
        );
        let text = r.message.as_ref().unwrap()["result"]["content"][0]["text"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(text.contains("mcp:admin"), "{era}: {text}");
    }
    // With the scope, the same call succeeds.
    let admin = dev_as_token(&gw.base, None, &url, "mcp:tools mcp:admin").await["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let r = Client::modern(&url)
        .bearer(&admin)
        .call_tool("hello.whoami", json!({}))
        .await;
    assert_eq!(
        r.result()["structuredContent"]["scopes"],
        json!(["mcp:admin", "mcp:tools"]),
        "{r:?}"
    );
}

#[tokio::test]
async fn an_unauthenticated_call_is_challenged_in_both_forms_and_connecting_stays_a_plain_401() {
    let gw = gateway("", "").await;
    let url = gw.url("/mcp");
    let r = Client::modern(&url)
        .call_tool("hello.greet", json!({"name": "x"}))
        .await;
    assert_eq!(r.status, 401, "{r:?}");
    let (challenges, envelope) = in_band(&r);
    assert_eq!(challenges.join(", "), header(&r));
    assert_eq!(envelope["reason"], "insufficient_authorization");
    // An expired or forged token on a tool call: the same, with the error.
    let r = Client::modern(&url)
        .bearer("not.a.token")
        .call_tool("hello.greet", json!({"name": "x"}))
        .await;
    assert_eq!(r.status, 401, "{r:?}");
    let (challenges, _) = in_band(&r);
    assert!(
        challenges[0].contains("error=\"invalid_token\""),
        "{challenges:?}"
    );

    // A large unauthenticated body is not read for it: the HTTP challenge alone.
    let big = Client::modern(&url)
        .call_tool("hello.greet", json!({"name": "x".repeat(70_000)}))
        .await;
    assert_eq!(big.status, 401, "{big:?}");
    assert!(header(&big).contains("resource_metadata="));
    let body: Value = serde_json::from_str(&big.body).unwrap();
    assert!(body.get("result").is_none(), "{body}");

    // Connecting (both eras) keeps its plain 401 at once: an OAuth error body, no tool result.
    let init = Client::new(&url)
        .post_raw(
            crate::support::initialize_request("2025-11-25", json!({})),
            &[],
        )
        .await;
    let discover = Client::modern(&url)
        .request("server/discover", json!({}))
        .await;
    for r in [init, discover] {
        assert_eq!(r.status, 401, "{r:?}");
        assert!(header(&r).contains("resource_metadata="), "{r:?}");
        let body: Value = serde_json::from_str(&r.body).unwrap();
        assert!(
            body.get("result").is_none() && body["error"].is_string(),
            "{body}"
        );
    }
}

#[tokio::test]
async fn transport_only_challenges_carry_no_in_band_form() {
    let gw = gateway("challenges = \"transport\"", "").await;
    let url = gw.url("/mcp");
    let token = dev_as_token(&gw.base, None, &url, "mcp:tools").await["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let r = Client::modern(&url)
        .bearer(&token)
        .call_tool("hello.whoami", json!({}))
        .await;
    assert_eq!(r.status, 403, "{r:?}");
    assert!(header(&r).contains("insufficient_scope"));
    let body: Value = serde_json::from_str(&r.body).unwrap();
    assert!(body.get("result").is_none(), "{body}");
}

/// A tool the caller may not see (`tools_list = "permitted"`) answers exactly like a tool that
/// does not exist: no challenge names its scopes.
#[tokio::test]
async fn a_hidden_tool_answers_like_an_unknown_one() {
    let gw = gateway("", "tools_list = \"permitted\"").await;
    let url = gw.url("/mcp");
    let token = dev_as_token(&gw.base, None, &url, "mcp:tools").await["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let mut c = Client::modern(&url).bearer(&token);
    let listed = c.request("tools/list", json!({})).await;
    assert!(
        !listed.tool_names().contains(&"hello.whoami".to_string()),
        "{listed:?}"
    );
    let hidden = c.call_tool("hello.whoami", json!({})).await;
    let unknown = c.call_tool("hello.nonesuch", json!({})).await;
    assert_eq!(hidden.status, unknown.status, "{hidden:?} / {unknown:?}");
    assert!(
        hidden.headers.get("www-authenticate").is_none(),
        "{hidden:?}"
    );
    assert_eq!(hidden.error()["code"], unknown.error()["code"]);
    assert_eq!(
        hidden.error()["message"]
            .as_str()
            .unwrap()
            .replace("hello.whoami", "NAME"),
        unknown.error()["message"]
            .as_str()
            .unwrap()
            .replace("hello.nonesuch", "NAME"),
    );
    // The tools it lists say what calling them takes (SEP-1488), beside the scopes.
    let greet = &listed.result()["tools"][0];
    assert_eq!(
        greet["_meta"]["securitySchemes"],
        json!([{"type": "oauth2", "scopes": ["mcp:tools"]}]),
        "{greet}"
    );
}
