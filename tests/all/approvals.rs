//! Approvals bound to the exact call (#32): a tool that needs a person's approval of each call
//! runs only for a token whose `authorization_details` authorize exactly that call — its type,
//! this tenant's resource, this tool, the bound argument values — issued recently enough, and
//! a single-use approval runs it once. Everything else gets 403 `insufficient_authorization`
//! with the details that would authorize the call it carried (never what an earlier refusal
//! asked for). The issuer here is the in-test one, so each attack's token can be written.

use base64::Engine as _;
use serde_json::{Value, json};

use crate::support::peers::{TestIssuer, now};
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
        [[tenant]]
        id = "a"
        plugins = [{payments}]
        [tenant.plugin.payments.approvals."payments.refund"]
        type = "{KIND}"
        bind = ["amount", "currency", "account"]
        [[tenant]]
        id = "b"
        plugins = [{payments}]
        [tenant.plugin.payments.approvals."payments.refund"]
        type = "{KIND}"
        bind = ["amount", "currency", "account"]
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

fn detail(resource: &str, arguments: Value) -> Value {
    json!([{"type": KIND, "locations": [resource], "actions": ["tools/call"],
            "tool": "payments.refund", "arguments": arguments}])
}

/// The remediation a refusal carries, decoded.
fn remediation(r: &Reply) -> Value {
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

async fn call(url: &str, token: &str, arguments: Value, modern: bool) -> Reply {
    let mut c = if modern {
        Client::modern(url).bearer(token)
    } else {
        Client::initialize_with(url, "2025-11-25", Some(&format!("Bearer {token}"))).await
    };
    c.call_tool("payments.refund", arguments).await
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
    // an approval too old, one for another resource, one of an unknown type.
    let mut other_type = detail(&url, call_args.clone());
    other_type[0]["type"] = json!("payment_initiation");
    let cases: Vec<(&str, String, String, Value)> = vec![
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
            assert_eq!(remediation(&r), detail(&at, arguments.clone()), "{name}");
        }
    }
    assert_eq!(
        gw.plugin_instances(),
        ran,
        "no refused call reached the plugin"
    );

    // The metadata names the type the tenant enforces.
    let prm = get_json(&gw.url("/.well-known/oauth-protected-resource/mcp")).await;
    assert_eq!(
        prm["authorization_details_types_supported"],
        json!([KIND]),
        "{prm}"
    );
}

/// #32: the development AS takes the details a refusal named — pushed first (RFC 9126, they
/// are large), shown on its consent page in plain words (the amount and the account), and
/// carried by the token it issues — and the retry runs the call once.
#[tokio::test]
async fn the_development_as_asks_for_and_issues_the_approval_a_refusal_named() {
    let gw = TestGateway::from_toml(
        &format!(
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
        [tenant.plugin.payments.approvals."payments.refund"]
        type = "{KIND}"
        bind = ["amount", "currency", "account"]
        "#,
            payments = toml_path(&plugin("payments")),
        )
        .replace("{auto}", "true"),
    )
    .await;
    let url = gw.url("/mcp");
    let meta = get_json(&gw.url("/.well-known/oauth-authorization-server/dev-as")).await;
    assert_eq!(
        meta["authorization_details_types_supported"],
        json!([KIND]),
        "{meta}"
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
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let redirect = "http://127.0.0.1:9/callback";
    let registered: Value = http
        .post(gw.url("/dev-as/register"))
        .json(
            &json!({"redirect_uris": [redirect], "token_endpoint_auth_method": "none",
                      "grant_types": ["authorization_code"], "response_types": ["code"]}),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let client_id = registered["client_id"].as_str().unwrap();
    let verifier = format!("{:064x}", rand::random::<u128>());
    let challenge = {
        use sha2::Digest as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(&verifier))
    };
    let details_text = details.to_string();
    let pushed: Value = http
        .post(&par)
        .form(&[
            ("response_type", "code"),
            ("client_id", client_id),
            ("redirect_uri", redirect),
            ("code_challenge", challenge.as_str()),
            ("code_challenge_method", "S256"),
            ("scope", "payments:write"),
            ("resource", url.as_str()),
            ("authorization_details", details_text.as_str()),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let request_uri = pushed["request_uri"]
        .as_str()
        .unwrap_or_else(|| panic!("{pushed}"));
    let mut authorize = reqwest::Url::parse(&gw.url("/dev-as/authorize")).unwrap();
    authorize
        .query_pairs_mut()
        .append_pair("client_id", client_id)
        .append_pair("request_uri", request_uri);
    let location = http.get(authorize.clone()).send().await.unwrap().headers()["location"]
        .to_str()
        .unwrap()
        .to_string();
    let code = reqwest::Url::parse(&location)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| panic!("{location}"));
    // The request_uri was good once.
    let again = http.get(authorize).send().await.unwrap();
    assert_eq!(again.status(), 400);
    let issued: Value = http
        .post(gw.url("/dev-as/token"))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", redirect),
            ("code_verifier", verifier.as_str()),
            ("client_id", client_id),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(issued["authorization_details"], details, "{issued}");
    let approved = issued["access_token"].as_str().unwrap();
    let r = call(&url, approved, arguments.clone(), true).await;
    assert_eq!(
        r.text(),
        "refunded 120.00 EUR to DE02 for alice [approved: payment_refund]",
        "{r:?}"
    );
    let r = call(&url, approved, arguments, true).await;
    assert_eq!(r.status, 403, "single use: {r:?}");

    // Unknown types and details for another resource are refused at the AS.
    for bad in [
        json!([{"type": "wire_transfer", "locations": [url]}]),
        json!([{"type": KIND, "locations": ["https://elsewhere.example/mcp"]}]),
    ] {
        let r = http
            .post(&par)
            .form(&[
                ("response_type", "code"),
                ("client_id", client_id),
                ("redirect_uri", redirect),
                ("code_challenge", challenge.as_str()),
                ("code_challenge_method", "S256"),
                ("resource", url.as_str()),
                ("authorization_details", bad.to_string().as_str()),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{bad}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"], "invalid_authorization_details", "{body}");
    }
}
