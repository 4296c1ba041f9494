//! Policies (#33): a tenant's Cedar policies decide over who calls, which tool, with which
//! arguments, from which client and when — after the scopes and claim rules, in both eras,
//! for the official TypeScript client as for a raw stateless one; lists show what the
//! argument-free question permits; a denial names the policy; shadow mode refuses nothing
//! and logs what it would have refused; a policy file that breaks on reload leaves the old
//! set serving and the inventory says why.

use serde_json::{Value, json};

use crate::support::peers::{TestIssuer, now};
use crate::support::{
    Client, TestGateway, get_json_as, node, plugin, run_json_program, tempdir, toml_path,
};

/// Only finance may call tools; transfers stay below 500; contractors may not use destructive
/// tools during `[frozen_from, frozen_until)` ("after hours", as a window the test controls);
/// destructive tools only from the registered app.
fn policies(frozen_from: u64, frozen_until: u64) -> String {
    format!(
        r#"
@id("finance-only")
permit (principal, action in Portcullis::Action::"tools/call", resource)
when {{ principal.claims has groups && principal.claims.groups.contains("finance") }};

@id("transfers-below-500")
forbid (principal, action == Portcullis::Action::"payments.transfer", resource)
when {{ context has arguments && context.arguments.amount.greaterThanOrEqual(decimal("500.0")) }};

@id("contractors-after-hours")
forbid (principal, action in Portcullis::Action::"tools/call", resource)
when {{ resource.destructive && principal.claims has groups && principal.claims.groups.contains("contractor")
        && context.now.unix >= {frozen_from} && context.now.unix < {frozen_until} }};

@id("registered-clients-write")
forbid (principal, action in Portcullis::Action::"tools/call", resource)
when {{ resource.destructive }}
unless {{ principal has client_id && principal.client_id == "registered-app" }};
"#
    )
}

/// A gateway whose tenant serves `payments.transfer` and `payments.payout` under the policies
/// in `file`, in `mode`, listing `listing` tools.
async fn gateway(
    issuer: &TestIssuer,
    file: &std::path::Path,
    mode: &str,
    listing: &str,
) -> TestGateway {
    gateway_serving(
        issuer,
        file,
        (mode, listing),
        &["payments.transfer", "payments.payout"],
    )
    .await
}

/// The same, serving `tools` of the payments fixture.
async fn gateway_serving(
    issuer: &TestIssuer,
    file: &std::path::Path,
    (mode, listing): (&str, &str),
    tools: &[&str],
) -> TestGateway {
    TestGateway::from_toml(&format!(
        r#"
        [auth]
        mode = "oauth"
        scopes_supported = ["payments:write"]
        claims = ["groups"]
        tools_list = "{listing}"
        [[auth.issuer]]
        issuer = "{issuer}"
        [[tenant]]
        id = "a"
        plugins = [{payments}]
        [tenant.plugin.payments]
        tools = {tools:?}
        [tenant.policy]
        files = [{file}]
        mode = "{mode}"
        "#,
        issuer = issuer.url,
        payments = toml_path(&plugin("payments")),
        file = toml_path(file),
    ))
    .await
}

/// The tenant's policy status in the inventory, once `ready` holds for it (or as it is after
/// five seconds).
async fn policy_status_when(
    gw: &TestGateway,
    admin: &str,
    ready: impl Fn(&Value) -> bool,
) -> Value {
    let mut status = Value::Null;
    for _ in 0..100 {
        let inventory = get_json_as(&gw.url("/admin/plugins?tenant=a"), admin).await;
        status = inventory["policy"].clone();
        if ready(&status) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    status
}

/// A test issuer, and the policy file `name` holding `text` in a fresh directory.
async fn setup(name: &str, text: &str) -> (TestIssuer, std::path::PathBuf) {
    let issuer = TestIssuer::start(&["a"]).await;
    let file = tempdir().join(name);
    std::fs::write(&file, text).unwrap();
    (issuer, file)
}

/// An operator's token (`portcullis:admin`) for the endpoint `aud`.
fn admin_token(issuer: &TestIssuer, aud: &str) -> String {
    let iat = now();
    issuer.token(
        "a",
        json!({"iss": issuer.url, "sub": "ops", "aud": aud, "iat": iat, "exp": iat + 900,
               "scope": "portcullis:admin"}),
    )
}

/// `portcullis policy test --config CONFIG CASES`: whether it passed, and what it printed
/// then logged.
fn policy_test(config: &std::path::Path, cases: &std::path::Path) -> (bool, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["policy", "test", "--config"])
        .arg(config)
        .arg(cases)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A token of `sub` in `groups`, obtained by `client`.
fn token(issuer: &TestIssuer, aud: &str, sub: &str, groups: &[&str], client: &str) -> String {
    let iat = now();
    issuer.token(
        "a",
        json!({"iss": issuer.url, "sub": sub, "aud": aud, "iat": iat, "exp": iat + 900,
               "scope": "payments:write", "client_id": client, "groups": groups}),
    )
}

/// `tool` called by `token` stateless (2026-07-28) and in a 2025-11-25 session: the text of
/// each answer (the result's, or an error's message), which must agree.
async fn call_both(url: &str, token: &str, tool: &str, arguments: Value) -> String {
    let mut texts = Vec::new();
    for modern in [true, false] {
        let mut c = if modern {
            Client::modern(url).bearer(token)
        } else {
            Client::initialize_with(url, "2025-11-25", Some(&format!("Bearer {token}"))).await
        };
        let r = c.call_tool(tool, arguments.clone()).await;
        let failed = r.message.as_ref().is_some_and(|m| m.get("error").is_some());
        texts.push(if failed {
            r.error()["message"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        } else {
            r.text()
        });
    }
    assert_eq!(texts[0], texts[1], "{tool} {arguments}: the eras disagree");
    texts.remove(0)
}

#[tokio::test]
async fn policies_decide_over_arguments_groups_time_and_clients_in_both_eras() {
    let (issuer, file) = setup("payments.cedar", &policies(now() - 60, now() + 3600)).await;
    let gw = gateway(&issuer, &file, "enforce", "all").await;
    let url = gw.url("/mcp");
    let alice = token(&issuer, &url, "alice", &["finance"], "registered-app");
    let bob = token(&issuer, &url, "bob", &["sales"], "registered-app");
    let carol = token(&issuer, &url, "carol", &["finance"], "some-other-app");
    let dave = token(
        &issuer,
        &url,
        "dave",
        &["finance", "contractor"],
        "registered-app",
    );
    let small = json!({"amount": 120.5, "to": "DE02"});
    let large = json!({"amount": 900, "to": "DE02"});
    // The same user with a token of another group, and of another client, right after a
    // token that was allowed: each decided on its own token (the gateway keeps what it built
    // for a caller, never for another token's claims).
    let alice_in_sales = token(&issuer, &url, "alice", &["sales"], "registered-app");
    let alice_elsewhere = token(&issuer, &url, "alice", &["finance"], "some-other-app");

    // Allowed: finance, below the limit, from the registered app.
    assert_eq!(
        call_both(&url, &alice, "payments.transfer", small.clone()).await,
        "transferred 120.50 to DE02 for alice"
    );
    // Each refusal names what refused it.
    for (who, tool, arguments, refused_by) in [
        (
            &alice,
            "payments.transfer",
            &large,
            "policy `transfers-below-500`",
        ),
        (
            &dave,
            "payments.transfer",
            &small,
            "policy `contractors-after-hours`",
        ),
        (
            &bob,
            "payments.transfer",
            &small,
            "the policies (none permits it)",
        ),
        (
            &carol,
            "payments.transfer",
            &small,
            "policy `registered-clients-write`",
        ),
        (
            &alice_in_sales,
            "payments.transfer",
            &small,
            "the policies (none permits it)",
        ),
        (
            &alice_elsewhere,
            "payments.transfer",
            &small,
            "policy `registered-clients-write`",
        ),
    ] {
        let text = call_both(&url, who, tool, arguments.clone()).await;
        assert_eq!(
            text,
            format!("Forbidden: tool `{tool}` is refused by {refused_by}"),
            "{tool} {arguments}"
        );
    }
    // The official TypeScript client (a 2025 session) is answered the same.
    let ts = run_json_program(
        &node(),
        "tests/js/policy-client.mjs",
        &[url.as_ref(), alice.as_ref()],
        &[(
            "CALLS",
            &json!([["payments.transfer", small], ["payments.transfer", large]]).to_string(),
        )],
    )
    .await;
    assert_eq!(
        ts["calls"][0],
        json!({"ok": true, "text": "transferred 120.50 to DE02 for alice"}),
        "{ts}"
    );
    assert_eq!(ts["calls"][1]["ok"], false, "{ts}");
    assert!(
        ts["calls"][1]["text"]
            .as_str()
            .is_some_and(|t| t.contains("transfers-below-500")),
        "{ts}"
    );

    // Outside the window (the file edited: the new set serves within a second) dave may.
    std::fs::write(&file, policies(now() + 3600, now() + 7200)).unwrap();
    for _ in 0..100 {
        let mut c = Client::modern(&url).bearer(&dave);
        if !c
            .call_tool("payments.transfer", small.clone())
            .await
            .is_error()
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(
        call_both(&url, &dave, "payments.transfer", small.clone()).await,
        "transferred 120.50 to DE02 for dave"
    );

    // A broken file on reload: the previous set keeps serving, and the inventory says why.
    std::fs::write(
        &file,
        "permit (principal, action, resource) when { nonsense",
    )
    .unwrap();
    let admin = admin_token(&issuer, &url);
    let status = policy_status_when(&gw, &admin, |s| s["last_error"].is_string()).await;
    assert!(
        status["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("payments.cedar")),
        "{status}"
    );
    assert_eq!(
        status["policies"],
        json!([
            "finance-only",
            "transfers-below-500",
            "contractors-after-hours",
            "registered-clients-write"
        ])
    );
    assert_eq!(
        call_both(&url, &bob, "payments.transfer", small.clone()).await,
        "Forbidden: tool `payments.transfer` is refused by the policies (none permits it)",
        "the old set still decides"
    );
    // A policy that does not fit the schema (an argument the tool does not have) is refused
    // the same way.
    std::fs::write(
        &file,
        r#"forbid (principal, action == Portcullis::Action::"payments.transfer", resource) when { context has arguments && context.arguments.iban == "x" };"#,
    )
    .unwrap();
    let status = policy_status_when(&gw, &admin, |s| {
        s["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("schema"))
    })
    .await;
    assert!(
        status["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("iban")),
        "{status}"
    );
}

/// With `tools_list = "permitted"` a caller's list holds exactly the tools whose
/// argument-free question the policies permit, and a call of a hidden one is an unknown tool.
#[tokio::test]
async fn lists_agree_with_calls() {
    let (issuer, file) = setup("payments.cedar", &policies(now() - 60, now() + 3600)).await;
    let gw = gateway(&issuer, &file, "enforce", "permitted").await;
    let url = gw.url("/mcp");
    for (who, groups, client, listed) in [
        // An amount limit hides nothing (it needs arguments); the window hides dave's.
        (
            "alice",
            &["finance"][..],
            "registered-app",
            vec!["payments.payout", "payments.transfer"],
        ),
        (
            "dave",
            &["finance", "contractor"][..],
            "registered-app",
            vec![],
        ),
        ("bob", &["sales"][..], "registered-app", vec![]),
        ("carol", &["finance"][..], "other-app", vec![]),
    ] {
        let t = token(&issuer, &url, who, groups, client);
        let mut c = Client::modern(&url).bearer(&t);
        let names = c.request("tools/list", json!({})).await.tool_names();
        assert_eq!(names, listed, "{who}");
        for tool in ["payments.transfer", "payments.payout"] {
            let r = c
                .call_tool(
                    tool,
                    json!({"amount": 1, "to": "x", "batch": "b", "count": 1}),
                )
                .await;
            if !listed.contains(&tool) {
                assert_eq!(r.error()["code"], -32602, "{who} {tool}: {r:?}");
            }
        }
    }
}

/// Shadow mode evaluates and logs, and refuses nothing.
#[tokio::test]
async fn shadow_policies_refuse_nothing_and_log_what_they_would_refuse() {
    let (issuer, file) = setup("payments.cedar", &policies(now() - 60, now() + 3600)).await;
    let body = format!(
        r#"
        [auth]
        mode = "oauth"
        scopes_supported = ["payments:write"]
        claims = ["groups"]
        [[auth.issuer]]
        issuer = "{issuer}"
        [[tenant]]
        id = "a"
        plugins = [{payments}]
        [tenant.policy]
        files = [{file}]
        mode = "shadow"
        "#,
        issuer = issuer.url,
        payments = toml_path(&plugin("payments")),
        file = toml_path(&file),
    );
    let gw = crate::support::BinaryGateway::start(&body, &[]).await;
    let url = format!("{}/mcp", gw.base);
    let bob = token(&issuer, &url, "bob", &["sales"], "registered-app");
    assert_eq!(
        call_both(
            &url,
            &bob,
            "payments.transfer",
            json!({"amount": 900, "to": "DE02"})
        )
        .await,
        "transferred 900.00 to DE02 for bob"
    );
    let log = gw.stop().await;
    assert!(
        log.contains("shadow policies would refuse this: the policies (none permits it)"),
        "{log}"
    );
}

/// A policy that does not parse or fit stops the gateway from starting, naming the file.
#[test]
fn a_bad_policy_fails_the_check() {
    let dir = tempdir();
    let file = dir.join("bad.cedar");
    std::fs::write(
        &file,
        r#"permit (principal, action == Portcullis::Action::"payments.transfer", resource) when { context.arguments.amount > 1 };"#,
    )
    .unwrap();
    let config = dir.join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            "[[tenant]]\nid = \"a\"\nplugins = [{}]\n[tenant.policy]\nfiles = [{}]\n",
            toml_path(&plugin("payments")),
            toml_path(&file)
        ),
    )
    .unwrap();
    let (ok, said) = crate::support::check_config(&config);
    assert!(!ok, "{said}");
    assert!(
        said.contains("bad.cedar") || said.contains("policy"),
        "{said}"
    );
    assert!(said.contains("schema"), "{said}");
}

/// `portcullis policy test FILE`: operators' cases, decided as the gateway decides them; a
/// case not met fails the command and names it. `portcullis policy schema` prints what the
/// policies are checked against, with the tool's argument types.
#[test]
fn operators_test_their_policies_from_the_command_line() {
    let dir = tempdir();
    let file = dir.join("payments.cedar");
    std::fs::write(&file, policies(now() - 60, now() + 3600)).unwrap();
    let config = dir.join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            "[auth]\nmode = \"oauth\"\nclaims = [\"groups\"]\n[[auth.issuer]]\nissuer = \"https://issuer.example\"\n\
             [[tenant]]\nid = \"a\"\nplugins = [{}]\n[tenant.policy]\nfiles = [{}]\n",
            toml_path(&plugin("payments")),
            toml_path(&file)
        ),
    )
    .unwrap();
    let finance = json!({"subject": "alice", "client_id": "registered-app",
        "scopes": ["payments:write"], "claims": {"groups": ["finance"]}});
    let cases = |last_expect: &str| {
        json!([
            {"name": "finance transfers 120", "caller": finance, "tool": "payments.transfer",
             "arguments": {"amount": 120, "to": "DE02"}, "expect": "allow"},
            {"name": "not 900", "caller": finance, "tool": "payments.transfer",
             "arguments": {"amount": 900, "to": "DE02"}, "expect": "deny", "by": "transfers-below-500"},
            {"name": "sales may not", "caller": {"subject": "bob", "client_id": "registered-app",
             "scopes": ["payments:write"], "claims": {"groups": ["sales"]}},
             "tool": "payments.transfer", "expect": "deny", "by": "no-permit"},
            {"name": "a scope is a scope", "caller": {"subject": "alice"}, "tool": "payments.transfer",
             "expect": last_expect, "by": "scope"},
        ])
    };
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_portcullis"))
            .args(args)
            .output()
            .unwrap();
        // What it printed (stdout), then what it logged.
        let printed = String::from_utf8_lossy(&out.stdout).into_owned();
        let logged = String::from_utf8_lossy(&out.stderr).into_owned();
        (
            out.status.success(),
            format!("{printed}\n{logged}"),
            printed,
        )
    };
    let cases_file = dir.join("cases.json");
    std::fs::write(&cases_file, cases("deny").to_string()).unwrap();
    let config_arg = config.to_str().unwrap();
    let (ok, printed, logged) = policy_test(&config, &cases_file);
    let said = format!("{printed}\n{logged}");
    assert!(ok, "{said}");
    assert!(
        said.contains("ok      not 900 (deny (transfers-below-500))"),
        "{said}"
    );
    assert!(said.contains("4 cases, 0 failed"), "{said}");
    std::fs::write(&cases_file, cases("allow").to_string()).unwrap();
    let (ok, printed, logged) = policy_test(&config, &cases_file);
    let said = format!("{printed}\n{logged}");
    assert!(!ok, "{said}");
    assert!(
        said.contains("FAILED  a scope is a scope: expected allow, got deny (scope)"),
        "{said}"
    );
    let (ok, said, printed) = run(&["policy", "schema", "--config", config_arg]);
    assert!(ok, "{said}");
    let schema: Value = serde_json::from_str(&printed).unwrap();
    assert_eq!(
        schema["Portcullis"]["actions"]["payments.transfer"]["appliesTo"]["context"]["attributes"]
            ["arguments"]["attributes"]["amount"],
        json!({"type": "Extension", "name": "decimal"}),
        "{said}"
    );
}

/// Policies and approvals (#32): a call the policies refuse is refused as such — the caller is
/// not asked for a person's approval of a call that cannot run — and a rule can look at the
/// approval a call carries (`context.approval`).
#[tokio::test]
async fn policies_see_approvals_and_refuse_before_asking_for_one() {
    let (issuer, file) = setup(
        "refunds.cedar",
        r#"
permit (principal, action, resource);

@id("no-refunds-to-XX99")
forbid (principal, action == Portcullis::Action::"payments.refund", resource)
when { context has arguments && context.arguments.account == "XX99" };

@id("eve-approvals-not-honoured")
forbid (principal, action == Portcullis::Action::"payments.refund", resource)
when { context has approval && principal has subject && principal.subject == "eve" };
"#,
    )
    .await;
    let gw = gateway_serving(&issuer, &file, ("enforce", "all"), &["payments.refund"]).await;
    let url = gw.url("/mcp");
    let refund = |account: &str| json!({"amount": "5.00", "currency": "EUR", "account": account});
    let approved = |sub: &str, account: &str| {
        let iat = now();
        issuer.token(
            "a",
            json!({"iss": issuer.url, "sub": sub, "aud": url, "iat": iat, "exp": iat + 900,
                   "scope": "payments:write", "jti": format!("{sub}-{account}"),
                   "authorization_details": [{"type": "payment_refund", "locations": [url],
                       "actions": ["tools/call"], "tool": "payments.refund", "subject": sub,
                       "arguments": refund(account)}]}),
        )
    };
    let plain = token(&issuer, &url, "alice", &[], "app");
    let mut c = Client::modern(&url).bearer(&plain);
    let r = c.call_tool("payments.refund", refund("XX99")).await;
    assert_eq!(r.status, 200, "not an approval challenge: {r:?}");
    assert_eq!(
        r.text(),
        "Forbidden: tool `payments.refund` is refused by policy `no-refunds-to-XX99`"
    );
    let r = c.call_tool("payments.refund", refund("DE02")).await;
    assert_eq!(r.status, 403, "an approval is asked for: {r:?}");
    let mut c = Client::modern(&url).bearer(&approved("alice", "DE02"));
    assert_eq!(
        c.call_tool("payments.refund", refund("DE02")).await.text(),
        "refunded 5.00 EUR to DE02 for alice [approved: payment_refund]"
    );
    let mut c = Client::modern(&url).bearer(&approved("eve", "DE02"));
    assert_eq!(
        c.call_tool("payments.refund", refund("DE02")).await.text(),
        "Forbidden: tool `payments.refund` is refused by policy `eve-approvals-not-honoured`"
    );
}

/// A rule over how the token is presented: transfers only with a DPoP-bound token (RFC 9449)
/// — the same user's Bearer token is refused, naming the rule, in both eras; a token bound to
/// the client's key, presented with a fresh proof, runs the transfer.
#[tokio::test]
async fn a_rule_can_require_a_dpop_bound_token() {
    use crate::support::dpop::{DpopKey, dev_as_token};
    let file = tempdir().join("dpop.cedar");
    std::fs::write(
        &file,
        r#"
permit (principal, action, resource);

@id("transfers-need-dpop")
forbid (principal, action == Portcullis::Action::"payments.transfer", resource)
unless { principal.credential == "dpop" };
"#,
    )
    .unwrap();
    let gw = TestGateway::from_toml(&format!(
        r#"
        [auth]
        mode = "oauth"
        scopes_supported = ["payments:write"]
        [dev_as]
        enabled = true
        auto_approve = true
        [[tenant]]
        id = "a"
        plugins = [{payments}]
        [tenant.plugin.payments]
        tools = ["payments.transfer"]
        [tenant.policy]
        files = [{file}]
        "#,
        payments = toml_path(&plugin("payments")),
        file = toml_path(&file),
    ))
    .await;
    let url = gw.url("/mcp");
    let transfer = json!({"amount": 20, "to": "DE02"});
    let bearer = dev_as_token(&gw.base, None, &url, "payments:write").await;
    let bearer = bearer["access_token"].as_str().unwrap();
    assert_eq!(
        call_both(&url, bearer, "payments.transfer", transfer.clone()).await,
        "Forbidden: tool `payments.transfer` is refused by policy `transfers-need-dpop`"
    );
    let key = DpopKey::new();
    let bound = dev_as_token(&gw.base, Some(&key), &url, "payments:write").await;
    assert_eq!(bound["token_type"], "DPoP", "{bound}");
    let bound = bound["access_token"].as_str().unwrap();
    let mut client = Client::modern(&url);
    client.authorization = Some(format!("DPoP {bound}"));
    let proof = key.proof("POST", &url, Some(bound));
    let r = client
        .request_with(
            "tools/call",
            json!({"name": "payments.transfer", "arguments": transfer}),
            &[("dpop", &proof)],
        )
        .await;
    assert_eq!(r.text(), "transferred 20.00 to DE02 for alice", "{r:?}");
}

/// A plugin's suggested policies (`payments.cedar` beside `payments.wasm`) apply where the
/// operator enables them (`[tenant.policy] suggested`) and nowhere else; the inventory shows
/// that the plugin suggests them, and the status names the policies serving.
#[tokio::test]
async fn a_plugins_suggested_policies_apply_only_where_enabled() {
    let issuer = TestIssuer::start(&["a"]).await;
    let file = tempdir().join("permit.cedar");
    std::fs::write(&file, "permit (principal, action, resource);\n").unwrap();
    let tenant = |id: &str, suggested: &str| {
        format!(
            r#"
        [[tenant]]
        id = "{id}"
        path = "/t/{id}/mcp"
        plugins = [{payments}]
        [tenant.plugin.payments]
        tools = ["payments.transfer"]
        [tenant.policy]
        files = [{file}]
        {suggested}
        "#,
            payments = toml_path(&plugin("payments")),
            file = toml_path(&file),
        )
    };
    let gw = TestGateway::from_toml(&format!(
        r#"
        [auth]
        mode = "oauth"
        scopes_supported = ["payments:write"]
        [[auth.issuer]]
        issuer = "{issuer}"
        {a}
        {b}
        "#,
        issuer = issuer.url,
        a = tenant("a", r#"suggested = ["payments"]"#),
        b = tenant("b", ""),
    ))
    .await;
    let large = json!({"amount": 20000, "to": "DE02"});
    for (id, expected) in [
        (
            "a",
            "Forbidden: tool `payments.transfer` is refused by policy `payments:no-transfers-over-10000`",
        ),
        ("b", "transferred 20000.00 to DE02 for alice"),
    ] {
        let url = gw.url(&format!("/t/{id}/mcp"));
        let alice = token(&issuer, &url, "alice", &[], "app");
        assert_eq!(
            call_both(&url, &alice, "payments.transfer", large.clone()).await,
            expected,
            "tenant {id}"
        );
    }
    let admin = admin_token(&issuer, &gw.url("/t/a/mcp"));
    let inventory = get_json_as(&gw.url("/admin/plugins?tenant=a"), &admin).await;
    assert!(
        inventory["plugins"][0]["suggested_policies"]
            .as_str()
            .is_some_and(|f| f.ends_with("payments.cedar")),
        "{inventory}"
    );
    assert_eq!(
        inventory["policy"]["policies"],
        json!(["permit:policy0", "payments:no-transfers-over-10000"])
    );
}

/// A rule over where a request comes from (`context.client_address`, Cedar's `ipaddr`): large
/// transfers only from the office network. Over HTTP from loopback — both eras — a small
/// transfer runs and a large one is refused naming the rule; `portcullis policy test` decides
/// the same call from an office address as allowed.
#[tokio::test]
async fn a_rule_can_look_at_the_client_address() {
    let text = r#"
permit (principal, action, resource);

@id("large-transfers-from-the-office")
forbid (principal, action == Portcullis::Action::"payments.transfer", resource)
when { context has arguments && context.arguments.amount.greaterThan(decimal("100.0")) }
unless { context has client_address && context.client_address.isInRange(ip("10.0.0.0/8")) };
"#;
    let (issuer, file) = setup("office.cedar", text).await;
    let gw = gateway(&issuer, &file, "enforce", "all").await;
    let url = gw.url("/mcp");
    let alice = token(&issuer, &url, "alice", &[], "app");
    assert_eq!(
        call_both(
            &url,
            &alice,
            "payments.transfer",
            json!({"amount": 50, "to": "DE02"})
        )
        .await,
        "transferred 50.00 to DE02 for alice"
    );
    assert_eq!(
        call_both(
            &url,
            &alice,
            "payments.transfer",
            json!({"amount": 150, "to": "DE02"})
        )
        .await,
        "Forbidden: tool `payments.transfer` is refused by policy `large-transfers-from-the-office`"
    );
    let dir = tempdir();
    let config = dir.join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            "[auth]\nmode = \"oauth\"\n[[auth.issuer]]\nissuer = \"https://issuer.example\"\n\
             [[tenant]]\nid = \"a\"\nplugins = [{}]\n[tenant.policy]\nfiles = [{}]\n",
            toml_path(&plugin("payments")),
            toml_path(&file)
        ),
    )
    .unwrap();
    let caller = |address: &str| json!({"subject": "alice", "scopes": ["payments:write"], "address": address});
    let large = json!({"amount": 150, "to": "DE02"});
    let cases = dir.join("cases.json");
    std::fs::write(
        &cases,
        json!([
            {"name": "office", "caller": caller("10.1.2.3"), "tool": "payments.transfer",
             "arguments": large, "expect": "allow"},
            {"name": "home", "caller": caller("192.0.2.7"), "tool": "payments.transfer",
             "arguments": large, "expect": "deny", "by": "large-transfers-from-the-office"},
        ])
        .to_string(),
    )
    .unwrap();
    let (ok, said, logged) = policy_test(&config, &cases);
    assert!(ok && said.contains("2 cases, 0 failed"), "{said}\n{logged}");
}

/// Decisions the gateway remembers follow the clock: a rule that starts refusing at a time
/// refuses the same caller's same call from then on, though it was allowed a moment before.
#[tokio::test]
async fn a_remembered_decision_does_not_outlive_the_time_it_depends_on() {
    let (issuer, file) = setup("clock.cedar", "permit (principal, action, resource);\n").await;
    let gw = gateway(&issuer, &file, "enforce", "all").await;
    let url = gw.url("/mcp");
    let alice = token(&issuer, &url, "alice", &[], "app");
    let transfer = json!({"amount": 5, "to": "DE02"});
    let mut client = Client::modern(&url).bearer(&alice);
    // From a few seconds on, transfers close (written now that the gateway is serving).
    let from = now() + 4;
    std::fs::write(
        &file,
        format!(
            r#"
permit (principal, action, resource);

@id("closed-from-now-on")
forbid (principal, action == Portcullis::Action::"payments.transfer", resource)
when {{ context.now.unix >= {from} }};
"#
        ),
    )
    .unwrap();
    let admin = admin_token(&issuer, &url);
    policy_status_when(&gw, &admin, |s| {
        s["policies"].as_array().is_some_and(|p| p.len() == 2)
    })
    .await;
    let before = client
        .call_tool("payments.transfer", transfer.clone())
        .await
        .text();
    // Decided before `from` when answered before it.
    if now() < from {
        assert_eq!(before, "transferred 5.00 to DE02 for alice");
    }
    let mut after = String::new();
    for _ in 0..300 {
        after = client
            .call_tool("payments.transfer", transfer.clone())
            .await
            .text();
        if now() > from && after.contains("closed-from-now-on") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(
        after,
        "Forbidden: tool `payments.transfer` is refused by policy `closed-from-now-on`"
    );
}
