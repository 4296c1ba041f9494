//! Approvals bound to the exact call (#32): a tool that needs a person's approval of each call
//! runs only for a token whose `authorization_details` authorize exactly that call — its type,
//! this tenant's resource, this tool, the caller, the bound argument values — issued recently
//! enough, and a single-use approval runs it once (a call that becomes an MCP Task spends it
//! at creation). Everything else gets 403 `insufficient_authorization` with the details that
//! would authorize the call it carried (never what an earlier refusal asked for). The
//! `payments` fixture declares its rules through the Rust SDK; tenant `b`'s operator overrides
//! one. The issuer here is the in-test one, so each attack's token can be written.

use base64::Engine as _;
use serde_json::{Value, json};

use crate::support::peers::{TestIssuer, now};
use crate::support::public_client::PublicClient;
use crate::support::{Client, Reply, TestGateway, get_json, plugin, toml_path};

const KIND: &str = "payment_refund";

async fn gateway(issuer: &TestIssuer) -> TestGateway {
    TestGateway::from_toml(&format!(
        r#"
        [auth]
        mode = "oauth"
        scopes_supported = ["payments:write"]
        [[auth.issuer]]
        issuer = "{issuer}"
        [tasks]
        deadline_ms = 20000
        [[tenant]]
        id = "a"
        plugins = [{payments}]
        [[tenant]]
        id = "b"
        plugins = [{payments}]
        # The operator's rule replaces the plugin's: approvals here last a minute.
        [tenant.plugin.payments.approvals."payments.refund"]
        type = "{KIND}"
        bind = ["amount", "currency", "account"]
        max_age_secs = 60
        # …and payouts reusable within their age.
        [tenant.plugin.payments.approvals."payments.payout"]
        type = "payment_initiation"
        single_use = false
        "#,
        issuer = issuer.url,
        payments = toml_path(&plugin("payments")),
    ))
    .await
}

fn refund(amount: &str, account: &str) -> Value {
    json!({"amount": amount, "currency": "EUR", "account": account})
}

/// A token of `sub` for `aud` carrying `details`, issued `age` seconds ago.
fn token(issuer: &TestIssuer, aud: &str, sub: &str, details: Value, age: u64) -> String {
    let iat = now() - age;
    issuer.token(
        "a",
        json!({"iss": issuer.url, "sub": sub, "aud": aud, "iat": iat, "exp": iat + 900,
               "scope": "payments:write", "jti": format!("{:x}", rand::random::<u64>()),
               "authorization_details": details}),
    )
}

/// What approves alice's refund with `arguments` at `resource`.
fn detail(resource: &str, arguments: Value) -> Value {
    detail_of("payments.refund", resource, "alice", arguments)
}

fn detail_of(tool: &str, resource: &str, subject: &str, arguments: Value) -> Value {
    json!([{"type": KIND, "locations": [resource], "actions": ["tools/call"],
            "tool": tool, "subject": subject, "arguments": arguments}])
}

/// The remediation object a refusal carries (the RAR remediation draft), decoded.
fn remediation_object(r: &Reply) -> Value {
    let header = r.headers["www-authenticate"].to_str().unwrap();
    assert!(
        header.contains("error=\"insufficient_authorization\""),
        "{header}"
    );
    let at = header.find("authorization_remediation=\"").unwrap() + 27;
    let encoded = header[at..].split('"').next().unwrap();
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(encoded)
            .unwrap(),
    )
    .unwrap()
}

/// The details a refusal's remediation names; a single-use approval's carries no
/// `authorization_reference` (no token a client holds can be used again).
fn remediation(r: &Reply) -> Value {
    let object = remediation_object(r);
    assert!(object.get("authorization_reference").is_none(), "{object}");
    object["authorization_details"].clone()
}

async fn call(url: &str, token: &str, arguments: Value, modern: bool) -> Reply {
    call_tool(url, token, "payments.refund", arguments, modern).await
}

async fn call_tool(url: &str, token: &str, tool: &str, arguments: Value, modern: bool) -> Reply {
    let mut c = if modern {
        Client::modern(url).bearer(token)
    } else {
        Client::initialize_with(url, "2025-11-25", Some(&format!("Bearer {token}"))).await
    };
    c.call_tool(tool, arguments).await
}

#[tokio::test]
async fn an_approval_runs_exactly_its_call_once_and_nothing_else() {
    let issuer = TestIssuer::start(&["a"]).await;
    let gw = gateway(&issuer).await;
    let url = gw.url("/mcp");
    let other_tenant = gw.url("/t/b/mcp");
    let call_args = refund("120.00", "DE02");
    let before = gw.plugin_instances();

    // Without an approval: 403 with the details that authorize exactly this call, in both
    // forms, in both eras.
    let plain = token(&issuer, &url, "alice", json!([]), 0);
    for modern in [true, false] {
        let r = call(&url, &plain, call_args.clone(), modern).await;
        assert_eq!(r.status, 403, "{r:?}");
        assert_eq!(remediation(&r), detail(&url, call_args.clone()), "{r:?}");
        let body: Value = serde_json::from_str(&r.body).unwrap();
        let hint = &body["result"]["_meta"]["io.modelcontextprotocol/authorization"]["remediationHints"]
            [0];
        assert_eq!(hint["type"], "oauth_authorization_details", "{body}");
        assert_eq!(
            hint["authorization_details"],
            detail(&url, call_args.clone()),
            "{body}"
        );
    }

    // The approved token runs the call once; a memo (not bound) may differ.
    let approved = token(&issuer, &url, "alice", detail(&url, call_args.clone()), 10);
    let mut with_memo = call_args.clone();
    with_memo["memo"] = json!("order 7");
    let r = call(&url, &approved, with_memo, true).await;
    assert_eq!(
        r.text(),
        "refunded 120.00 EUR to DE02 for alice (order 7) [approved: payment_refund]",
        "{r:?}"
    );
    // The same in a 2025 session (a fresh approval: the first is spent).
    let in_session = token(&issuer, &url, "alice", detail(&url, call_args.clone()), 10);
    let r = call(&url, &in_session, call_args.clone(), false).await;
    assert_eq!(
        r.text(),
        "refunded 120.00 EUR to DE02 for alice [approved: payment_refund]",
        "{r:?}"
    );
    let ran = gw.plugin_instances();
    assert_eq!(ran, before + 2);

    // Refused, each with the remediation for the call it carried: the same approval again (a
    // session this time), another amount, another account, another tenant, another subject,
    // an approval too old (here, and at tenant b, whose operator allows a minute), one for
    // another resource, one of an unknown type.
    let mut other_type = detail(&url, call_args.clone());
    other_type[0]["type"] = json!("payment_initiation");
    let cases: Vec<(&str, String, String, Value)> = vec![
        (
            "by another subject",
            url.clone(),
            token(&issuer, &url, "bob", detail(&url, call_args.clone()), 0),
            call_args.clone(),
        ),
        (
            "too old for tenant b's operator",
            other_tenant.clone(),
            token(
                &issuer,
                &other_tenant,
                "alice",
                detail(&other_tenant, call_args.clone()),
                100,
            ),
            call_args.clone(),
        ),
        (
            "used once already",
            url.clone(),
            approved.clone(),
            call_args.clone(),
        ),
        (
            "another amount",
            url.clone(),
            token(&issuer, &url, "alice", detail(&url, call_args.clone()), 0),
            refund("999.00", "DE02"),
        ),
        (
            "another account",
            url.clone(),
            token(&issuer, &url, "alice", detail(&url, call_args.clone()), 0),
            refund("120.00", "XX99"),
        ),
        (
            "too old",
            url.clone(),
            token(&issuer, &url, "alice", detail(&url, call_args.clone()), 400),
            call_args.clone(),
        ),
        (
            "for another resource",
            url.clone(),
            token(
                &issuer,
                &url,
                "alice",
                detail(&other_tenant, call_args.clone()),
                0,
            ),
            call_args.clone(),
        ),
        (
            "of another type",
            url.clone(),
            token(&issuer, &url, "alice", other_type, 0),
            call_args.clone(),
        ),
        (
            "at another tenant",
            other_tenant.clone(),
            token(
                &issuer,
                &other_tenant,
                "alice",
                detail(&url, call_args.clone()),
                0,
            ),
            call_args.clone(),
        ),
    ];
    for (name, at, token, arguments) in cases {
        for modern in [true, false] {
            if name == "used once already" && !modern {
                continue;
            }
            let r = call(&at, &token, arguments.clone(), modern).await;
            assert_eq!(r.status, 403, "{name}: {r:?}");
            let subject = if name == "by another subject" {
                "bob"
            } else {
                "alice"
            };
            let wanted = detail_of("payments.refund", &at, subject, arguments.clone());
            assert_eq!(remediation(&r), wanted, "{name}");
        }
    }
    // Another tool: the refund's approval does not pay out a batch (which needs its own, of
    // its own type, binding the digest of all its arguments).
    let batch = json!({"batch": "B-1", "count": 3});
    let refund_approval = token(&issuer, &url, "alice", detail(&url, call_args.clone()), 0);
    let r = call_tool(
        &url,
        &refund_approval,
        "payments.payout",
        batch.clone(),
        true,
    )
    .await;
    assert_eq!(r.status, 403, "{r:?}");
    let wanted = json!([{"type": "payment_initiation", "locations": [url], "actions": ["tools/call"],
        "tool": "payments.payout", "subject": "alice",
        "arguments_digest": payout_digest(&batch)}]);
    assert_eq!(remediation(&r), wanted);
    // …and a fresh approval at b, within its minute, runs there.
    let at_b = token(
        &issuer,
        &other_tenant,
        "alice",
        detail(&other_tenant, call_args.clone()),
        30,
    );
    let r = call(&other_tenant, &at_b, call_args.clone(), false).await;
    assert_eq!(
        r.text(),
        "refunded 120.00 EUR to DE02 for alice [approved: payment_refund]",
        "{r:?}"
    );
    let ran = ran + 1;
    assert_eq!(
        gw.plugin_instances(),
        ran,
        "no refused call reached the plugin"
    );

    // A reusable approval (tenant b's payouts): the refusal also names the details'
    // reference, the same for the same call, so a client finds a token it already holds; and
    // one approval runs the call more than once.
    let plain_b = token(&issuer, &other_tenant, "alice", json!([]), 0);
    let mut references = Vec::new();
    for count in [3, 3, 4] {
        let arguments = json!({"batch": "B-1", "count": count});
        let r = call_tool(&other_tenant, &plain_b, "payments.payout", arguments, true).await;
        assert_eq!(r.status, 403, "{r:?}");
        let object = remediation_object(&r);
        references.push(object["authorization_reference"].clone());
    }
    assert!(references[0].is_string(), "{references:?}");
    assert_eq!(references[0], references[1]);
    assert_ne!(references[0], references[2]);
    let payout = json!([{"type": "payment_initiation", "locations": [other_tenant],
        "actions": ["tools/call"], "tool": "payments.payout", "subject": "alice",
        "arguments_digest": payout_digest(&batch)}]);
    let reusable = token(&issuer, &other_tenant, "alice", payout, 0);
    for _ in 0..2 {
        let r = call_tool(
            &other_tenant,
            &reusable,
            "payments.payout",
            batch.clone(),
            true,
        )
        .await;
        assert_eq!(
            r.text(),
            "paid out batch B-1 (3 payments) for alice",
            "{r:?}"
        );
    }

    // The operator's inventory lists each tool's rule, as this tenant has it (b's payouts are
    // reusable; the plugin's own refund rule is replaced by b's).
    let iat = now();
    let admin = issuer.token(
        "a",
        json!({"iss": issuer.url, "sub": "ops", "aud": other_tenant, "iat": iat,
               "exp": iat + 900, "scope": "portcullis:admin"}),
    );
    let inventory = crate::support::get_json_as(&gw.url("/admin/plugins?tenant=b"), &admin).await;
    let tool = |name: &str| {
        inventory["plugins"][0]["tools"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("{name} in {inventory}"))
    };
    assert_eq!(
        tool("payments.refund")["approval"]["max_age_secs"],
        60,
        "{inventory}"
    );
    assert!(tool("payments.transfer").get("approval").is_none());
    assert_eq!(
        tool("payments.payout")["approval"],
        json!({"type": "payment_initiation", "bind": [], "single_use": false, "max_age_secs": 300}),
        "the operator's rule, whole (the plugin's said 600 s): {inventory}"
    );

    // The metadata names the types the tenant enforces, with the types metadata of the RAR
    // remediation draft: the JSON Schema of the entries, which the details a refusal names
    // satisfy (and a detail without its bound arguments does not).
    let prm = get_json(&gw.url("/.well-known/oauth-protected-resource/mcp")).await;
    assert_eq!(
        prm["authorization_details_types_supported"],
        json!(["payment_initiation", KIND]),
        "{prm}"
    );
    let schema = &prm["authorization_details_types_metadata"][KIND]["schema"];
    let validator = jsonschema::validator_for(schema).unwrap();
    let named = detail(&url, call_args.clone());
    assert!(validator.is_valid(&named[0]), "{schema}");
    let mut unbound = named[0].clone();
    unbound["arguments"] = json!({"amount": "120.00"});
    assert!(!validator.is_valid(&unbound), "{schema}");
    let description = prm["authorization_details_types_metadata"][KIND]["description"]
        .as_str()
        .unwrap();
    assert!(description.contains("Refund a payment"), "{description}");
}

/// The digest the gateway binds for `payments.payout`: SHA-256 of the canonical JSON (members
/// sorted, no whitespace) of its arguments, written out here by hand.
fn payout_digest(batch: &Value) -> String {
    use sha2::Digest as _;
    let canonical = format!(
        "{{\"batch\":{},\"count\":{}}}",
        batch["batch"], batch["count"]
    );
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(canonical)))
}

/// #32 AC4: a call that becomes an MCP Task is checked like any other and spends its
/// single-use approval when the task is created, so the approval runs one task; the task runs
/// to its end for its caller.
#[tokio::test]
async fn an_approved_call_that_becomes_a_task_spends_its_approval_at_creation() {
    let issuer = TestIssuer::start(&["a"]).await;
    let gw = gateway(&issuer).await;
    let url = gw.url("/mcp");
    let batch = json!({"batch": "B-7", "count": 12});
    let caps = json!({"io.modelcontextprotocol/clientCapabilities":
        {"extensions": {"io.modelcontextprotocol/tasks": {}}}});
    let start = |token: String, arguments: Value| {
        let (url, caps) = (url.clone(), caps.clone());
        async move {
            Client::modern(&url)
                .bearer(&token)
                .request(
                    "tools/call",
                    json!({"name": "payments.payout", "arguments": arguments, "_meta": caps}),
                )
                .await
        }
    };
    let approval = json!([{"type": "payment_initiation", "locations": [url],
        "actions": ["tools/call"], "tool": "payments.payout", "subject": "alice",
        "arguments_digest": payout_digest(&batch)}]);

    // Without the approval no task is created: the same refusal as an inline call.
    let plain = token(&issuer, &url, "alice", json!([]), 0);
    let refused = start(plain, batch.clone()).await;
    assert_eq!(refused.status, 403, "{refused:?}");
    assert_eq!(remediation(&refused), approval);

    let approved = token(&issuer, &url, "alice", approval.clone(), 5);
    let created = start(approved.clone(), batch.clone()).await;
    assert_eq!(created.result()["resultType"], "task", "{created:?}");
    let id = created.result()["taskId"].as_str().unwrap().to_string();
    // Spent at creation: a second task from the same approval is refused at once, and so is
    // the approval for another batch.
    let again = start(approved.clone(), batch.clone()).await;
    assert_eq!(again.status, 403, "{again:?}");
    let fresh = token(&issuer, &url, "alice", approval.clone(), 0);
    let other = start(fresh, json!({"batch": "B-7", "count": 13})).await;
    assert_eq!(other.status, 403, "{other:?}");
    // The task finishes for alice.
    let mut status = Value::Null;
    for _ in 0..200 {
        let r = Client::modern(&url)
            .bearer(&approved)
            .request_with(
                "tasks/get",
                json!({"taskId": id, "_meta": caps}),
                &[("mcp-name", &id)],
            )
            .await;
        status = r.result()["status"].clone();
        if status == "completed" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(status, "completed");
}

/// #32: the development AS takes the details a refusal named — pushed first (RFC 9126, they
/// are large) — for the types the plugin declares, issues them to the user whose call they
/// name (never another's), and the token carries them; the retry runs the call once. (The
/// consent page a person reads is `approvals::a_person_approves_the_exact_call_in_a_browser`.)
#[tokio::test]
async fn the_development_as_asks_for_and_issues_the_approval_a_refusal_named() {
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
        "#,
        payments = toml_path(&plugin("payments")),
    ))
    .await;
    let url = gw.url("/mcp");
    let meta = get_json(&gw.url("/.well-known/oauth-authorization-server/dev-as")).await;
    assert_eq!(
        meta["authorization_details_types_supported"],
        json!(["payment_initiation", KIND]),
        "the types the plugin declares: {meta}"
    );
    let types = get_json(
        meta["authorization_details_types_metadata_endpoint"]
            .as_str()
            .unwrap(),
    )
    .await;
    assert_eq!(
        types["payment_initiation"]["schema"]["properties"]["type"]["const"], "payment_initiation",
        "{types}"
    );
    let par = meta["pushed_authorization_request_endpoint"]
        .as_str()
        .unwrap()
        .to_string();

    let plain = crate::support::dpop::dev_as_token(&gw.base, None, &url, "payments:write").await;
    let plain = plain["access_token"].as_str().unwrap();
    let arguments = refund("120.00", "DE02");
    let refused = call(&url, plain, arguments.clone(), true).await;
    assert_eq!(refused.status, 403, "{refused:?}");
    let details = remediation(&refused);

    // A public client pushes the request with those details, then authorizes by reference.
    let client = PublicClient::register(&gw.url("/dev-as/register"), "approvals-test").await;
    let push = |details: &Value| {
        let params = client.request(
            &url,
            "payments:write",
            &[("authorization_details", &details.to_string())],
        );
        let (client, par) = (&client, &par);
        async move { client.push(par, &params).await }
    };
    let (_, pushed) = push(&details).await;
    let request_uri = pushed["request_uri"]
        .as_str()
        .unwrap_or_else(|| panic!("{pushed}"));
    let authorize = client.pushed_url(&gw.url("/dev-as/authorize"), request_uri);
    let code = PublicClient::code(&client.follow(&authorize).await);
    // The request_uri was good once.
    let again = client.http.get(&authorize).send().await.unwrap();
    assert_eq!(again.status(), 400);
    let token_endpoint = gw.url("/dev-as/token");
    let redeemed = Redeemed::of(&client, &token_endpoint, &code, &url).await;
    assert_eq!(redeemed.response["authorization_details"], details);
    redeemed
        .runs_once(&url, &arguments, "refunded 120.00 EUR to DE02 for alice")
        .await;

    // Someone else's call is not this user's to approve.
    let mut theirs = details.clone();
    theirs[0]["subject"] = json!("mallory");
    let (_, pushed) = push(&theirs).await;
    let authorize = client.pushed_url(
        &gw.url("/dev-as/authorize"),
        pushed["request_uri"].as_str().unwrap(),
    );
    let location = client.follow(&authorize).await;
    assert!(location.contains("error=access_denied"), "{location}");

    // Unknown types and details for another resource are refused at the AS.
    for bad in [
        json!([{"type": "wire_transfer", "locations": [url]}]),
        json!([{"type": KIND, "locations": ["https://elsewhere.example/mcp"]}]),
    ] {
        let (status, body) = push(&bad).await;
        assert_eq!(status, 400, "{bad}");
        assert_eq!(body["error"], "invalid_authorization_details", "{body}");
    }
}

/// #32 AC1, end to end with a person: a client's call is refused with the details of exactly
/// that call; the client pushes them to the development AS (RFC 9126); Debian's Chromium,
/// standing in for the person, reads the amount and the account on the consent page, signs in
/// as alice and approves; the client redeems the code, and the retry runs once. The person can
/// also say no: the client gets `access_denied` and no token.
#[tokio::test]
async fn a_person_approves_the_exact_call_in_a_browser() {
    let dir = crate::support::tempdir();
    let gw = crate::support::BinaryGateway::start(
        &format!(
            r#"
            [auth]
            mode = "oauth"
            scopes_supported = ["payments:write"]
            [dev_as]
            enabled = true
            key_file = {key}
            users = ["bob", "alice"]
            [[tenant]]
            id = "default"
            plugins = [{payments}]
            "#,
            key = toml_path(&dir.join("dev-as.key")),
            payments = toml_path(&plugin("payments")),
        ),
        &[],
    )
    .await;
    let url = format!("{}/mcp", gw.base);
    let plain = crate::support::mint_with_cli(&gw.config, "alice", "payments:write").await;
    let arguments = refund("120.00", "DE02");
    let refused = call(&url, &plain, arguments.clone(), true).await;
    assert_eq!(refused.status, 403, "{refused:?}");
    let details = remediation(&refused);
    assert_eq!(details, detail(&url, arguments.clone()));

    let meta = get_json(&format!(
        "{}/.well-known/oauth-authorization-server/dev-as",
        gw.base
    ))
    .await;
    let endpoint = |name: &str| meta[name].as_str().unwrap().to_string();
    let client = PublicClient::register(&endpoint("registration_endpoint"), "approver").await;

    let browse = |decision: &'static str| {
        let as_ = AsEndpoints::from(&meta);
        let (client, url, details) = (&client, &url, &details);
        async move {
            as_.approve_in_browser(client, (url, details), "alice", decision)
                .await
        }
    };

    // The person sees this call — the tool, the amount, the account, who for, once — and
    // approves it.
    let seen = browse("approve").await;
    assert_eq!(seen["values"], json!(["120.00", "EUR", "DE02"]), "{seen}");
    let words = seen["approvals"].as_str().unwrap();
    for shown in [
        "Refund a payment",
        "amount: 120.00",
        "account: DE02",
        "on behalf of alice",
        "Authorizes one call only.",
        "Valid for 300 s",
    ] {
        assert!(words.contains(shown), "{shown:?} not in {words:?}");
    }
    let code = PublicClient::code(seen["redirected"].as_str().unwrap());
    let redeemed = Redeemed::of(&client, &endpoint("token_endpoint"), &code, &url).await;
    assert_eq!(redeemed.response["authorization_details"], details);
    redeemed
        .runs_once(&url, &arguments, "refunded 120.00 EUR to DE02 for alice")
        .await;

    // Denied: back at the client with access_denied and no code.
    let seen = browse("deny").await;
    let back = seen["redirected"].as_str().unwrap();
    assert!(
        back.contains("error=access_denied") && !back.contains("code="),
        "{back}"
    );
}

/// The token response for an approval, and its access token.
struct Redeemed {
    response: Value,
    token: String,
}

impl Redeemed {
    /// Redeem `code` as `client` at `token_endpoint` for `resource`.
    async fn of(client: &PublicClient, token_endpoint: &str, code: &str, resource: &str) -> Self {
        let response = client.redeem(token_endpoint, code, resource, None).await;
        let token = response["access_token"]
            .as_str()
            .unwrap_or_else(|| panic!("{response}"))
            .to_string();
        Self { response, token }
    }

    /// The approved refund runs once (a stateless call answering `said`, the approval's type
    /// appended), and the same token is refused the next time (in a session).
    async fn runs_once(&self, url: &str, arguments: &Value, said: &str) {
        let r = call(url, &self.token, arguments.clone(), true).await;
        assert_eq!(r.text(), format!("{said} [approved: {KIND}]"), "{r:?}");
        let r = call(url, &self.token, arguments.clone(), false).await;
        assert_eq!(r.status, 403, "single use: {r:?}");
    }
}

/// An authorization server's endpoints, from its metadata.
struct AsEndpoints {
    par: String,
    authorize: String,
}

impl AsEndpoints {
    fn from(meta: &Value) -> Self {
        let endpoint = |name: &str| {
            meta[name]
                .as_str()
                .unwrap_or_else(|| panic!("no {name} in {meta}"))
                .to_string()
        };
        Self {
            par: endpoint("pushed_authorization_request_endpoint"),
            authorize: endpoint("authorization_endpoint"),
        }
    }

    /// Push an authorization request for `details` at `resource` as `client`, then let
    /// Debian's Chromium, as `user`, take the decision (`approve` or `deny`) on the consent page
    /// (`tests/js/approve-browser.mjs`): what the page showed and where it sent the browser
    /// back to.
    async fn approve_in_browser(
        &self,
        client: &PublicClient,
        (resource, details): (&str, &Value),
        user: &str,
        decision: &str,
    ) -> Value {
        let params = client.request(
            resource,
            "payments:write",
            &[("authorization_details", &details.to_string())],
        );
        let (status, pushed) = client.push(&self.par, &params).await;
        assert_eq!(status, 201, "{pushed}");
        let at = client.pushed_url(&self.authorize, pushed["request_uri"].as_str().unwrap());
        crate::support::run_json_program(
            &crate::support::node(),
            "tests/js/approve-browser.mjs",
            &[at.as_ref()],
            &[
                ("USER_NAME", user),
                ("REDIRECT", crate::support::public_client::REDIRECT),
                ("DECISION", decision),
            ],
        )
        .await
    }
}

/// #32 AC3: the same flow with an independent authorization server as the gateway's issuer:
/// npm `oidc-provider` with its Rich Authorization Requests feature granting the fixture's
/// types (`tests/js/as.mjs`, `AS_RAR_TYPES`), PAR, and a consent page a browser reads. The
/// gateway as resource server refuses, names the details, and runs the approved call once;
/// the AS will not let alice approve someone else's call.
#[tokio::test]
async fn an_independent_authorization_server_grants_the_approval_a_refusal_named() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/mcp", listener.local_addr().unwrap());
    let as_ = crate::support::peers::oidc::RealAs::start_with(
        std::slice::from_ref(&url),
        "payments:write",
        &[
            ("AS_RAR_TYPES", "payment_refund payment_initiation"),
            ("AS_FORMS", "1"),
        ],
    )
    .await;
    let _gw = TestGateway::start_on(
        listener,
        "",
        &format!(
            "[auth]\nmode = \"oauth\"\nscopes_supported = [\"payments:write\"]\n\
             [[auth.issuer]]\nissuer = \"{}\"\nalgorithms = [\"RS256\"]\n\
             [[tenant]]\nid = \"default\"\nplugins = [{}]\n",
            as_.issuer,
            toml_path(&plugin("payments")),
        ),
    )
    .await;
    let meta = get_json(&format!("{}/.well-known/openid-configuration", as_.issuer)).await;
    assert_eq!(
        meta["authorization_details_types_supported"],
        json!(["payment_refund", "payment_initiation"]),
        "{meta}"
    );

    let plain = as_.user_token(&url, "payments:write").await;
    let arguments = refund("75.50", "FR76");
    let refused = call(&url, &plain, arguments.clone(), false).await;
    assert_eq!(refused.status, 403, "{refused:?}");
    let details = remediation(&refused);
    assert_eq!(details, detail(&url, arguments.clone()));

    let client =
        PublicClient::register(meta["registration_endpoint"].as_str().unwrap(), "approver").await;
    let endpoints = AsEndpoints::from(&meta);
    let seen = endpoints
        .approve_in_browser(&client, (&url, &details), "alice", "approve")
        .await;
    assert_eq!(seen["values"], json!(["75.50", "EUR", "FR76"]), "{seen}");
    let code = PublicClient::code(seen["redirected"].as_str().unwrap());
    let token_endpoint = meta["token_endpoint"].as_str().unwrap();
    let redeemed = Redeemed::of(&client, token_endpoint, &code, &url).await;
    assert_eq!(
        crate::support::jwt_part(&redeemed.token, 1)["authorization_details"],
        details
    );
    redeemed
        .runs_once(&url, &arguments, "refunded 75.50 EUR to FR76 for alice")
        .await;

    // Bob's call is not alice's to approve: the AS refuses, and nothing is issued.
    let mut theirs = details.clone();
    theirs[0]["subject"] = json!("bob");
    let seen = endpoints
        .approve_in_browser(&client, (&url, &theirs), "alice", "approve")
        .await;
    let back = seen["redirected"].as_str().unwrap();
    assert!(
        back.contains("error=access_denied") && !back.contains("code="),
        "{back}"
    );
}
